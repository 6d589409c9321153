//! # weir-core — the vocabulary every other Weir crate speaks
//!
//! Owns the pipeline spec (parsing and validation, with file:line:column
//! errors), the host-side flat [`Batch`] of events, key groups, the pure
//! time state machines (watermark generation and combination), restart
//! strategies and the checkpoint coordinator's bookkeeping. It does no
//! I/O besides reading a spec file and knows nothing about Wasm, state
//! backends, threads or the network.
#![warn(missing_docs)]

mod batch;
pub mod checkpoint;
pub mod keys;
pub mod restart;
pub mod spec;
pub mod time;

pub use batch::{Batch, BatchError, EventRef, Mark, NO_KEY_GROUP, NO_TIMESTAMP};
