//! # weir-runtime — running a job graph in one process
//!
//! Owns the job graph built from a spec, chaining (forward edges of equal
//! parallelism run in one task, no channel between them), tasks (one
//! thread per chain subtask), data exchange through bounded channels
//! (backpressure), in-band watermarks combined by minimum, and the drivers
//! that call Wasm operators a batch at a time with keyed state and timers.
//! It does not parse YAML, speak to the network or know of a coordinator.
#![warn(missing_docs)]

mod checkpoint;
mod cutter;
mod driver;
mod exchange;
mod gate;
mod graph;
mod job;
mod metrics;
mod operator_state;
mod operators;
mod remote;
mod state;
mod task;
mod window;

pub use checkpoint::{
    CheckpointCommand, CheckpointLink, CheckpointStats, CheckpointStatus, CheckpointStore, KeyState, Ledger,
    LedgerLink, ListReport, OperatorState, PartReport, Restored, Savepoint, SavepointRequest, SavepointTarget,
    StateReport, TaskCheckpointStats, WorkerPart, inspect, key_state, load_from,
};
pub use driver::ProcessDriver;
pub use graph::{PlanVertex, plan};
pub use job::{JobError, JobHandle, JobStatus, JobSummary, VertexMetrics, ledger, run, start};
pub use metrics::{ChannelMetrics, SubtaskMetrics};
pub use operators::{NativeMapFn, NativeProcessFn};
pub use remote::{ChannelFailure, ChannelMessage, Placement, RemoteExchange, RemoteInbox, RemoteSender};
pub use task::TaskError;

use std::collections::HashMap;
use std::time::Duration;
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

/// How to run a job: every knob that is policy, in one place, with
/// defaults that are right for most jobs.
pub struct RunOptions {
    /// Limits and quotas of every operator instance.
    pub limits: Limits,
    /// Bytes one input queue of a task holds before its sender blocks (the
    /// credit a remote channel will grant). Default 1 MiB: more in flight
    /// only falls out of cache (measured with `weir bench`).
    pub channel_bytes: usize,
    /// Most bytes of keys and values in one batch between stages and tasks
    /// (the spec's `batch-size` bounds the events). Default 4 MiB; an
    /// event larger than that travels alone.
    pub batch_bytes: usize,
    /// How often tasks check processing time (processing-time timers).
    /// Default 50 ms.
    pub tick_interval: Duration,
    /// Most Wasm instances (operator subtasks) one job may run in this
    /// process. Each reserves 8 GiB of address space for its linear memory
    /// (wasmtime's guard regions), and the 47-bit user address space holds
    /// about 16,000 such: past that instances fail midway. Default 10,000.
    pub max_instances: usize,
    /// Native stand-ins by operator id.
    pub native: HashMap<String, Native>,
    /// The processing-time clock of timers and state TTL (the system's;
    /// tests set a manual one).
    pub clock: weir_state::Clock,
    /// The folder, under the spec's `checkpoints: dir`, the job's
    /// checkpoints go in (`<dir>/<name>/chk-N`). Default: the spec's name.
    pub checkpoint_name: Option<String>,
    /// The checkpoint to restore every task from (see
    /// [`CheckpointStore::latest`]).
    pub restore: Option<std::sync::Arc<Restored>>,
    /// Restore even when the checkpoint holds state of operators the job
    /// no longer has (dropping it); refused otherwise, naming them.
    pub allow_non_restored_state: bool,
    /// Run only part of the job here (a cluster worker's slots), with
    /// channels to the rest; `None`: all of it.
    pub placement: Option<Placement>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            limits: Limits::default(),
            channel_bytes: 1 << 20,
            batch_bytes: 4 << 20,
            tick_interval: Duration::from_millis(50),
            max_instances: 10_000,
            native: HashMap::new(),
            clock: weir_state::Clock::System,
            checkpoint_name: None,
            restore: None,
            allow_non_restored_state: false,
            placement: None,
        }
    }
}
