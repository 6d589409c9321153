//! The boundary between the coordinator and the workers that run its
//! jobs. A job master hands a [`Worker`] a [`Deployment`] and watches the
//! [`Execution`] it gets back; it never touches tasks, channels or Wasm
//! itself. Today the one implementation is [`EmbeddedWorker`], which runs
//! jobs in this process; a remote worker (reached over QUIC, the cluster's)
//! implements the same two traits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_core::spec::Spec;
use weir_runtime::{
    CheckpointStats, JobHandle, JobStatus, JobSummary, Restored, RunOptions, Savepoint, SavepointRequest, TaskError,
    VertexMetrics,
};
use weir_wasm::WasmRuntime;

/// What a worker needs to run one job: the spec with every path resolved
/// (components in the blob store, files in the job's working directory).
pub struct Deployment {
    /// The job id.
    pub job: String,
    /// The spec, placed.
    pub spec: Spec,
    /// The job's working directory.
    pub working_dir: PathBuf,
    /// The folder its checkpoints go in, under the spec's
    /// `checkpoints: dir`.
    pub checkpoint_name: String,
    /// The checkpoint to restore it from.
    pub restore: Option<Arc<Restored>>,
    /// Drop restored state of operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// When the job is spread over several workers: who runs which slot
    /// (this worker runs its own, with channels to the others).
    pub spread: Option<crate::cluster::protocol::Spread>,
    /// A spread job taking checkpoints: where its part's checkpoint
    /// reports go (the coordinator's ledger).
    pub checkpoints: Option<std::sync::mpsc::Sender<weir_runtime::PartReport>>,
}

/// A worker: slots to run jobs in.
pub trait Worker: Send + Sync {
    /// Its id, as the REST API shows it.
    fn id(&self) -> &str;
    /// Where it runs (`embedded` for the coordinator's own).
    fn address(&self) -> &str;
    /// How many slots it offers.
    fn slots(&self) -> u32;
    /// Whether it is still there (a remote worker that missed its
    /// heartbeats is not, and offers no slots).
    fn alive(&self) -> bool {
        true
    }
    /// Where other workers reach its data plane; `None`: it has none (the
    /// embedded worker), so no job is spread over it.
    fn data_address(&self) -> Option<std::net::SocketAddr> {
        None
    }
    /// Starts `deployment`. Errors before anything runs (a component that
    /// does not load, a file that cannot be opened) come back here as the
    /// job's exceptions; later ones through the execution.
    fn deploy(&self, deployment: Deployment) -> Result<Arc<dyn Execution>, Vec<TaskError>>;
}

/// A job running on a worker.
pub trait Execution: Send + Sync {
    /// Its status now.
    fn status(&self) -> JobStatus;
    /// Records in and out per vertex, now.
    fn metrics(&self) -> Vec<VertexMetrics>;
    /// Every task failure so far, the root cause first.
    fn errors(&self) -> Vec<TaskError>;
    /// Asks it to stop.
    fn cancel(&self);
    /// Waits up to `timeout` for its end; its status then.
    fn wait_timeout(&self, timeout: Duration) -> JobStatus;
    /// Once it has ended: what it did (`None` if it failed or was
    /// cancelled). Waits for its tasks' threads.
    fn summary(&self) -> Option<JobSummary>;
    /// Its checkpoints so far, oldest first.
    fn checkpoints(&self) -> Vec<CheckpointStats>;
    /// Asks for a savepoint.
    fn savepoint(&self, request: SavepointRequest) -> Result<Arc<Savepoint>, String>;
    /// Whether every running task committed checkpoint `id`.
    fn committed(&self, id: u64) -> bool;
    /// Passes a spread job's checkpoint command to this part of it.
    fn coordinate(&self, _command: weir_runtime::CheckpointCommand) -> Result<(), String> {
        Err("this execution is no part of a spread job".into())
    }
}

/// The worker inside the coordinator's process: jobs run on its threads,
/// through `weir-runtime`, with no network hop.
pub struct EmbeddedWorker {
    rt: Arc<WasmRuntime>,
    slots: u32,
}

impl EmbeddedWorker {
    /// A worker of `slots` slots loading components with `rt`.
    pub fn new(rt: Arc<WasmRuntime>, slots: u32) -> EmbeddedWorker {
        EmbeddedWorker { rt, slots }
    }
}

impl Worker for EmbeddedWorker {
    fn id(&self) -> &str {
        "embedded"
    }

    fn address(&self) -> &str {
        "embedded"
    }

    fn slots(&self) -> u32 {
        self.slots
    }

    fn deploy(&self, d: Deployment) -> Result<Arc<dyn Execution>, Vec<TaskError>> {
        self.deploy_part(d, None)
    }
}

impl EmbeddedWorker {
    /// Starts `d`, or (with `placement`) this worker's part of it.
    pub(crate) fn deploy_part(
        &self,
        d: Deployment,
        placement: Option<weir_runtime::Placement>,
    ) -> Result<Arc<dyn Execution>, Vec<TaskError>> {
        let options = RunOptions {
            checkpoint_name: Some(d.checkpoint_name),
            restore: d.restore,
            allow_non_restored_state: d.allow_non_restored_state,
            placement,
            ..RunOptions::default()
        };
        match weir_runtime::start(&d.spec, &self.rt, options) {
            Ok(handle) => Ok(Arc::new(Local(handle))),
            Err(weir_runtime::JobError::Task(e)) => Err(vec![e]),
            Err(e) => Err(vec![TaskError::job(d.spec.name.as_deref().unwrap_or(&d.job), e.to_string())]),
        }
    }
}

struct Local(JobHandle);

impl Execution for Local {
    fn status(&self) -> JobStatus {
        self.0.status()
    }

    fn metrics(&self) -> Vec<VertexMetrics> {
        self.0.metrics()
    }

    fn errors(&self) -> Vec<TaskError> {
        self.0.errors()
    }

    fn cancel(&self) {
        self.0.cancel()
    }

    fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        self.0.wait_timeout(timeout)
    }

    fn summary(&self) -> Option<JobSummary> {
        self.0.wait().ok()
    }

    fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.0.checkpoints()
    }

    fn savepoint(&self, request: SavepointRequest) -> Result<Arc<Savepoint>, String> {
        self.0.savepoint(request)
    }

    fn committed(&self, id: u64) -> bool {
        self.0.committed(id)
    }
}
