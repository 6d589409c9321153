//! # weir-runtime — running a job graph in one process
//!
//! Owns the job graph built from a spec, chaining (forward edges of equal
//! parallelism run in one task, no channel between them), tasks (one
//! thread per chain subtask), data exchange through bounded channels
//! (backpressure), in-band watermarks combined by minimum, and the drivers
//! that call Wasm operators a batch at a time with keyed state and timers.
//! It does not parse YAML, speak to the network or know of a coordinator.
#![warn(missing_docs)]

mod exchange;
mod graph;
mod operators;
mod task;

pub use operators::{NativeMapFn, NativeProcessFn};
pub use task::{JobError, JobSummary, TaskError, VertexMetrics, run};

use std::collections::HashMap;
use weir_wasm::Limits;

/// A native operator standing in for the component of the operator with
/// the same id (benchmarks compare the two). Factories are called once per
/// subtask.
pub enum Native {
    /// A native map.
    Map(Box<dyn Fn() -> NativeMapFn>),
    /// A native keyed function over the subtask's state backend.
    Process(Box<dyn Fn() -> NativeProcessFn>),
}

/// How to run a job.
pub struct RunOptions {
    /// Limits of every operator instance.
    pub limits: Limits,
    /// Batches a channel holds before its sender blocks.
    pub channel_capacity: usize,
    /// Native stand-ins by operator id.
    pub native: HashMap<String, Native>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { limits: Limits::default(), channel_capacity: 16, native: HashMap::new() }
    }
}
