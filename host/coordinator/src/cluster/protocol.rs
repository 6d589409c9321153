//! The control plane's messages between the coordinator and a worker,
//! after the worker has joined and connected with its certificate. Each
//! side writes its messages on one unidirectional QUIC stream it opens
//! ([`weir_net::control`] frames them). The first message each way is the
//! handshake: [`ToCoordinator::Hello`] with the protocol version, answered
//! by [`ToWorker::Welcome`] or [`ToWorker::Refused`] saying why.
//!
//! A component is fetched on a bidirectional stream of its own: the worker
//! writes a [`Fetch`] and finishes; the coordinator answers with the
//! blob's bytes, or nothing if it has none.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use weir_core::spec::Spec;
use weir_runtime::{CheckpointCommand, CheckpointStats, JobStatus, JobSummary, PartReport, TaskError, VertexMetrics};

/// How often a worker reports (its heartbeat).
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(500);

/// A worker unheard of for this long is lost: its jobs fail over.
pub const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A worker that hears nothing from the coordinator for this long
/// (the coordinator pings every [`HEARTBEAT`]) stops its jobs: by then
/// the coordinator is about to restart them elsewhere.
pub const FENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The most slots one worker may offer.
pub const MAX_SLOTS: u32 = 1024;

/// The largest component a worker fetches.
pub const MAX_BLOB: usize = 1 << 30;

/// What a worker sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum ToCoordinator {
    /// The handshake: who it is (its certificate says its name) and what
    /// it offers.
    Hello {
        /// Its [`weir_net::join::PROTOCOL`].
        protocol: u32,
        /// Its weir version, for messages.
        version: String,
        /// Its slots.
        slots: u32,
        /// The UDP port of its data plane (on the address it connects
        /// from).
        data_port: u16,
    },
    /// A deployment started (`errors` empty) or could not.
    Deployed {
        /// The job.
        job: String,
        /// Which deployment of it.
        attempt: u64,
        /// Why it did not start.
        errors: Vec<TaskError>,
    },
    /// The heartbeat: every job it runs, now.
    Report {
        /// Its jobs.
        jobs: Vec<JobReport>,
    },
    /// A savepoint asked of a job it does not run (any more): it failed.
    SavepointFailed {
        /// The job.
        job: String,
        /// Which deployment of it.
        attempt: u64,
        /// The request's number.
        request: u64,
        /// Why.
        message: String,
    },
    /// Its part of a spread job's checkpoint, for the coordinator's
    /// ledger of them.
    Checkpoint {
        /// The job.
        job: String,
        /// Which deployment of it.
        attempt: u64,
        /// What its checkpointer says.
        report: PartReport,
    },
}

/// One job on a worker, as its heartbeat reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobReport {
    /// The job.
    pub job: String,
    /// Which deployment of it.
    pub attempt: u64,
    /// Its status: terminal only once `summary` is known (its threads
    /// were joined); a terminal job is reported once, then forgotten.
    pub status: JobStatus,
    /// Records in and out per vertex.
    pub metrics: Vec<VertexMetrics>,
    /// Its failures so far.
    pub errors: Vec<TaskError>,
    /// Its checkpoints, when they changed since the last report.
    pub checkpoints: Option<Vec<CheckpointStats>>,
    /// The newest checkpoint every running task committed.
    pub committed: u64,
    /// Once ended: what it did (`None` if it failed or was cancelled).
    pub summary: Option<JobSummary>,
    /// Savepoints asked for, by request.
    pub savepoints: Vec<SavepointReport>,
}

/// A savepoint a worker was asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointReport {
    /// The request's number.
    pub request: u64,
    /// Its checkpoint number (0 until triggered).
    pub id: u64,
    /// Its folder, or why it failed; `None` while it is taken.
    pub outcome: Option<Result<PathBuf, String>>,
}

/// What the coordinator sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum ToWorker {
    /// The handshake answer: registered.
    Welcome,
    /// The coordinator is there (every [`HEARTBEAT`]).
    Ping,
    /// The handshake answer: refused, and why.
    Refused {
        /// What is wrong and what to do.
        message: String,
    },
    /// Run a job.
    Deploy(Box<Deploy>),
    /// Stop a job.
    Cancel {
        /// The job.
        job: String,
        /// Which deployment of it.
        attempt: u64,
    },
    /// Take a savepoint of a job.
    Savepoint {
        /// The job.
        job: String,
        /// Which deployment of it.
        attempt: u64,
        /// The request's number, for its reports.
        request: u64,
        /// The folder it goes in.
        dir: PathBuf,
        /// Stop the job once it is taken and committed.
        stop: bool,
    },
    /// A spread job's checkpoint, from the coordinator's ledger.
    Checkpoint {
        /// The job.
        job: String,
        /// Which deployment of it.
        attempt: u64,
        /// What its checkpointer is to do.
        command: CheckpointCommand,
    },
}

/// A job to run: [`crate::worker::Deployment`] as it travels. Components
/// are named by their SHA-256 (their file name in the spec); the worker
/// fetches those it has not cached.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Deploy {
    /// The job.
    pub job: String,
    /// Which deployment of it (a restart is another).
    pub attempt: u64,
    /// The spec, placed.
    pub spec: Spec,
    /// The folder its checkpoints go in.
    pub checkpoint_name: String,
    /// The checkpoint or savepoint folder to restore it from.
    pub restore: Option<PathBuf>,
    /// Drop restored state of operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// When the job is spread over several workers: who runs which slot.
    pub spread: Option<Spread>,
    /// The job is spread and takes checkpoints: the coordinator keeps
    /// them ([`ToWorker::Checkpoint`], [`ToCoordinator::Checkpoint`]).
    #[serde(default)]
    pub coordinated: bool,
}

/// A job spread over several workers: per slot, the worker that runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Spread {
    /// The execution's id: its channels carry it.
    pub exchange: String,
    /// Per slot (slot `i` holds subtask `i` of every vertex).
    pub slots: Vec<super::data::Peer>,
}

/// A worker asks for a component.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Fetch {
    /// Its SHA-256, hex.
    pub sha256: String,
}
