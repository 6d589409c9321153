//! # weir-connectors — sources and sinks
//!
//! Owns reading events from the outside world (file sources in text, JSON
//! lines and CSV; the seeded generator) and writing them out (file and
//! stdout sinks, the discarding sink). Sources stamp event time and emit
//! watermarks with the pure strategies of `weir_core::time`. Knows nothing
//! about tasks, channels, Wasm or state.
#![warn(missing_docs)]

mod committed;
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
    /// Nothing to read for now, nor until something changes outside (a
    /// subtask given no split): the caller marks the subtask idle at once,
    /// so it holds back no watermark, and calls again after this long.
    Idle(Duration),
    /// The input ended (a bounded source). The final watermark is the
    /// caller's to send.
    End,
}

/// A source subtask. Sources are replayable: a checkpoint keeps their
/// [`Source::position`], one element per split they read, as operator
/// state redistributed by even split; recovery [`Source::seek`]s to the
/// splits a subtask is given (its own when the parallelism is unchanged).
pub trait Source: Send {
    /// Appends up to `max` events, with watermark marks, to `batch`.
    fn next_batch(&mut self, batch: &mut Batch, max: usize) -> Result<Poll, SourceError>;
    /// Where the next batch starts: one element per split (with the
    /// watermark generator's state), for a checkpoint taken between
    /// batches.
    fn position(&self) -> Vec<Vec<u8>>;
    /// Reads from now on the splits given, as [`Source::position`] gave
    /// them (or one position of a checkpoint from before splits), before
    /// the first batch.
    fn seek(&mut self, splits: &[&[u8]]) -> Result<(), SourceError>;
}

/// Encodes an offset and a watermark generator's highest timestamp.
fn encode_position(offset: u64, max_seen: Option<i64>) -> Vec<u8> {
    let mut out = offset.to_le_bytes().to_vec();
    if let Some(m) = max_seen {
        out.extend_from_slice(&m.to_le_bytes());
    }
    out
}

/// Decodes what [`encode_position`] wrote.
fn decode_position(position: &[u8]) -> Option<(u64, Option<i64>)> {
    let word = |i: usize| position.get(i..i + 8).map(|b| b.try_into().expect("invariant: took 8 bytes"));
    let offset = u64::from_le_bytes(word(0)?);
    match position.len() {
        8 => Some((offset, None)),
        16 => Some((offset, Some(i64::from_le_bytes(word(8)?)))),
        _ => None,
    }
}

/// Opens subtask `subtask` of `parallelism` of the source `spec`.
pub fn open_source(spec: &SourceSpec, subtask: u32, parallelism: u32) -> Result<Box<dyn Source>, SourceError> {
    Ok(match spec.source_type {
        SourceType::File => Box::new(FileSource::open(spec)?),
        SourceType::Generator => Box::new(Generator::new(spec, subtask, parallelism)),
    })
}
