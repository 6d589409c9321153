//! # weir-connectors — sources and sinks
//!
//! Owns reading events from the outside world (file sources in text, JSON
//! lines and CSV; the seeded generator) and writing them out (file and
//! stdout sinks, the discarding sink). Sources stamp event time and emit
//! watermarks with the pure strategies of `weir_core::time`. Knows nothing
//! about tasks, channels, Wasm or state.
#![warn(missing_docs)]

mod csv_rows;
mod file;
mod generator;
mod sink;

pub use file::FileSource;
pub use generator::{Generator, key_number};
pub use sink::{FileSink, Sink, SinkError};

use std::time::Duration;
use weir_core::Batch;
use weir_core::spec::{SourceSpec, SourceType};

/// A record a source could not read: which source, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source `{source_id}`: {place}: {message}")]
pub struct SourceError {
    /// The source's id.
    pub source_id: String,
    /// Where: a file and byte offset, or the file alone.
    pub place: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// What a call to [`Source::next_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Events (or marks) were added; call again.
    Ready,
    /// Nothing is due yet; call again after this long.
    Wait(Duration),
    /// The input ended (a bounded source). The final watermark is the
    /// caller's to send.
    End,
}

/// A source subtask.
pub trait Source: Send {
    /// Appends up to `max` events, with watermark marks, to `batch`.
    fn next_batch(&mut self, batch: &mut Batch, max: usize) -> Result<Poll, SourceError>;
}

/// Opens subtask `subtask` of `parallelism` of the source `spec`.
pub fn open_source(spec: &SourceSpec, subtask: u32, parallelism: u32) -> Result<Box<dyn Source>, SourceError> {
    Ok(match spec.source_type {
        SourceType::File => Box::new(FileSource::open(spec)?),
        SourceType::Generator => Box::new(Generator::new(spec, subtask, parallelism)),
    })
}
