//! Sinks: JSON lines to a file or stdout, or nowhere (benchmarks).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use weir_core::Batch;

/// A sink that could not write.
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink_id}`: {message}")]
pub struct SinkError {
    /// The sink's id.
    pub sink_id: String,
    /// What went wrong.
    pub message: String,
}

/// Where events end.
pub trait Sink: Send {
    /// Writes a batch's events (marks are ignored).
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Flushes everything; called once at the end of input.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// Writes each event's value as one line (values are JSON, so the output is
/// JSON lines), to a file or to stdout.
pub struct FileSink {
    id: String,
    place: Option<PathBuf>,
    out: BufWriter<Box<dyn Write + Send>>,
}

impl FileSink {
    /// Creates (or truncates) `path`, creating its folder.
    pub fn create(id: &str, path: &Path) -> Result<Self, SinkError> {
        let err = |e: std::io::Error| SinkError {
            sink_id: id.to_owned(),
            message: format!("cannot create {}: {e}", path.display()),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = File::create(path).map_err(err)?;
        Ok(FileSink {
            id: id.to_owned(),
            place: Some(path.to_owned()),
            out: BufWriter::with_capacity(1 << 16, Box::new(file)),
        })
    }

    /// Writes to standard output.
    pub fn stdout(id: &str) -> Self {
        FileSink { id: id.to_owned(), place: None, out: BufWriter::new(Box::new(std::io::stdout())) }
    }

    fn io(&self, e: std::io::Error) -> SinkError {
        let place = self.place.as_ref().map_or("stdout".to_owned(), |p| p.display().to_string());
        SinkError { sink_id: self.id.clone(), message: format!("cannot write to {place}: {e}") }
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for i in 0..batch.len() {
            let value = batch.value(i);
            if value.contains(&b'\n') {
                return Err(SinkError {
                    sink_id: self.id.clone(),
                    message: format!(
                        "the value of the record from offset {} holds a newline, which would break JSON lines; emit compact JSON",
                        batch.origins()[i]
                    ),
                });
            }
            self.out.write_all(value).and_then(|()| self.out.write_all(b"\n")).map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io(e))
    }
}
