//! Sinks: JSON lines to a file or stdout, or nowhere (benchmarks).

use crate::committed::Committed;
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

/// Where events end. Under checkpoints a sink takes part in them by two
/// phases, as Flink's two-phase-commit sinks do: [`Sink::snapshot`] at a
/// checkpoint's barrier makes what was written durable but not yet
/// visible (pre-commit) and returns what the checkpoint keeps;
/// [`Sink::commit`] once the checkpoint completed makes it visible; and
/// [`Sink::start`] after a failure re-commits what the restored checkpoint
/// pre-committed and discards the rest. A database or Kafka transaction
/// fits the same three calls.
pub trait Sink: Send {
    /// Starts the sink: fresh (`None`), or from the state a checkpoint
    /// kept. Called once, before anything is written.
    fn start(&mut self, state: Option<&[u8]>) -> Result<(), SinkError> {
        let _ = state;
        Ok(())
    }
    /// Writes a batch's events (marks are ignored).
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Flushes everything; called once at the end of input.
    fn finish(&mut self) -> Result<(), SinkError>;
    /// Checkpoint `checkpoint`'s barrier: pre-commit what was written
    /// since the last one; the state the checkpoint keeps.
    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        let _ = checkpoint;
        Ok(Vec::new())
    }
    /// Checkpoint `checkpoint` completed: commit what it (and every
    /// checkpoint before it) pre-committed.
    fn commit(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        let _ = checkpoint;
        Ok(())
    }
}

/// Writes each event's value as one line (values are JSON, so the output is
/// JSON lines), to a file or to stdout.
///
/// A file is written as a hidden in-progress file beside its path and
/// renamed onto the path when the input ends, so the path only ever holds
/// a whole output, and two jobs writing the same path never interleave
/// (the last to finish wins). A job that fails leaves no in-progress file.
pub struct FileSink {
    id: String,
    /// Writes JSON string values as their plain text.
    text: bool,
    scratch: Vec<u8>,
    place: Option<PathBuf>,
    in_progress: Option<PathBuf>,
    out: BufWriter<Box<dyn Write + Send>>,
    /// Under checkpoints: the file grows by commits instead.
    committed: Option<Committed>,
}

impl FileSink {
    /// Starts writing `path` (created, with its folder, when the input ends).
    pub fn create(id: &str, path: &Path) -> Result<Self, SinkError> {
        let err = |e: std::io::Error| SinkError {
            sink_id: id.to_owned(),
            message: format!("cannot create {}: {e}", path.display()),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tmp = path.with_file_name(format!(".{name}.inprogress-{}-{nanos}", std::process::id()));
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(err)?;
        Ok(FileSink {
            id: id.to_owned(),
            text: false,
            scratch: Vec::new(),
            place: Some(path.to_owned()),
            in_progress: Some(tmp),
            out: BufWriter::with_capacity(1 << 16, Box::new(file)),
            committed: None,
        })
    }

    /// Writes `path` under checkpoints: by two-phase commit
    /// (`exactly_once`: lines become visible when their checkpoint
    /// completes) or straight through (at-least-once). See
    /// [`Sink::start`]; nothing is touched before it.
    pub fn checkpointed(id: &str, path: &Path, exactly_once: bool) -> FileSink {
        FileSink {
            id: id.to_owned(),
            text: false,
            scratch: Vec::new(),
            place: Some(path.to_owned()),
            in_progress: None,
            out: BufWriter::new(Box::new(std::io::sink())),
            committed: Some(Committed::new(path, exactly_once)),
        }
    }

    /// Writes to standard output. Fails when stdout is closed (`>&-`),
    /// which Rust's own stdout would silently treat as a sink.
    pub fn stdout(id: &str) -> Result<Self, SinkError> {
        use std::os::fd::AsFd;
        let fd = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| SinkError {
            sink_id: id.to_owned(),
            message: format!("standard output is not open ({e}); redirect it to a file, or use a file sink"),
        })?;
        Ok(FileSink {
            id: id.to_owned(),
            text: false,
            scratch: Vec::new(),
            place: None,
            in_progress: None,
            out: BufWriter::new(Box::new(File::from(fd))),
            committed: None,
        })
    }

    /// Writes JSON string values as their plain text (`format: text`):
    /// the JSON string `"a,b"` is the line `a,b`; other values stay JSON.
    pub fn plain_text(mut self) -> Self {
        self.text = true;
        self
    }

    fn io(&self, e: std::io::Error) -> SinkError {
        let place = self.place.as_ref().map_or("stdout".to_owned(), |p| p.display().to_string());
        SinkError { sink_id: self.id.clone(), message: format!("cannot write to {place}: {e}") }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if let Some(c) = self.committed.as_mut() {
            c.abandon();
        }
        if let Some(tmp) = self.in_progress.take() {
            // Not finished: the output is not whole, so it is not kept.
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for i in 0..batch.len() {
            let mut value = batch.value(i);
            if self.text && value.first() == Some(&b'"') {
                let text: String = serde_json::from_slice(value).map_err(|e| SinkError {
                    sink_id: self.id.clone(),
                    message: format!(
                        "the value of the record from offset {} starts like a JSON string but is not one ({e}); emit valid JSON",
                        batch.origins()[i]
                    ),
                })?;
                self.scratch.clear();
                self.scratch.extend_from_slice(text.as_bytes());
                value = &self.scratch;
            }
            if value.contains(&b'\n') {
                return Err(SinkError {
                    sink_id: self.id.clone(),
                    message: format!(
                        "the value of the record from offset {} holds a newline, which would break JSON lines; emit compact JSON",
                        batch.origins()[i]
                    ),
                });
            }
            let written = match self.committed.as_mut() {
                Some(c) => c.write_line(value),
                None => self.out.write_all(value).and_then(|()| self.out.write_all(b"\n")),
            };
            written.map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn start(&mut self, state: Option<&[u8]>) -> Result<(), SinkError> {
        let r = self.committed.as_mut().map_or(Ok(()), |c| c.start(state));
        r.map_err(|e| self.io(e))
    }

    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        // stdout (or a whole-file sink): nothing to commit, but written
        // lines are out of the buffer at each checkpoint.
        let r = match self.committed.as_mut() {
            Some(c) => c.snapshot(checkpoint),
            None => self.out.flush().map(|()| Vec::new()),
        };
        r.map_err(|e| self.io(e))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        let r = self.committed.as_mut().map_or(Ok(()), |c| c.commit(checkpoint));
        r.map_err(|e| self.io(e))
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(c) = self.committed.as_mut() {
            let r = c.finish();
            return r.map_err(|e| self.io(e));
        }
        self.out.flush().map_err(|e| self.io(e))?;
        if let (Some(tmp), Some(path)) = (&self.in_progress, &self.place) {
            // Durable before it is visible: sync the data, rename, then
            // sync the folder so the rename itself survives a crash.
            let sync = File::open(tmp).and_then(|f| f.sync_all());
            sync.and_then(|()| std::fs::rename(tmp, path)).map_err(|e| self.io(e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(|e| self.io(e))?;
            }
            self.in_progress = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: bool, values: &[&str]) -> Result<String, SinkError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut sink = FileSink::create("out", &path)?;
        if text {
            sink = sink.plain_text();
        }
        let mut b = Batch::new();
        for (i, v) in values.iter().enumerate() {
            b.push(b"", v.as_bytes(), 0, i as u64);
        }
        sink.write(&b)?;
        sink.finish()?;
        Ok(std::fs::read_to_string(path).unwrap())
    }

    #[test]
    fn text_format_writes_json_strings_as_plain_lines_and_the_rest_as_json() {
        let values = [r#""tumble,k0,\"x\"""#, r#"{"a":1}"#, "42"];
        assert_eq!(write(true, &values).unwrap(), "tumble,k0,\"x\"\n{\"a\":1}\n42\n");
        assert_eq!(write(false, &values).unwrap(), format!("{}\n{}\n{}\n", values[0], values[1], values[2]));
    }

    #[test]
    fn text_that_would_break_lines_or_is_not_json_is_refused_with_its_offset() {
        let err = write(true, &["\"ok\"", r#""two\nlines""#]).unwrap_err();
        assert!(err.message.contains("offset 1 holds a newline"), "{err}");
        let err = write(true, &[r#""unterminated"#]).unwrap_err();
        assert!(err.message.contains("offset 0 starts like a JSON string but is not one"), "{err}");
    }
}
