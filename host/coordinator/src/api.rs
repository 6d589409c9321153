//! The REST API's request and response bodies. Field names are
//! kebab-case, as Flink's REST API writes them; times are milliseconds
//! since the Unix epoch. These types are the API's contract: the OpenAPI
//! document is generated from them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A problem with a request: where, and what is wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ErrorItem {
    /// Where: an archive entry, `spec.yaml:LINE:COLUMN`, a field of the
    /// request, an operator.
    pub place: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Errors {
    /// Every problem found, not just the first.
    pub errors: Vec<ErrorItem>,
}

/// The cluster at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Overview {
    /// The coordinator's version.
    pub version: String,
    /// The WIT package and version operators are built against.
    pub wit: String,
    /// Workers registered.
    pub workers: u32,
    /// Slots of all workers.
    pub slots_total: u32,
    /// Slots no job holds.
    pub slots_available: u32,
    /// Jobs by state (only states some job is in).
    pub jobs: BTreeMap<String, u32>,
    /// Bundles stored.
    pub bundles: u32,
    /// Whether calls that change something are refused (a local `weir
    /// run`'s API).
    pub read_only: bool,
}

/// One component of a stored bundle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ComponentInfo {
    /// Its entry in the bundle.
    pub path: String,
    /// The WIT world it implements.
    pub world: String,
    /// The WIT package and version it was built against.
    pub wit: String,
    /// Its SHA-256 (its name in the blob store).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The spec's `component:` values that name it.
    pub refs: Vec<String>,
}

/// A stored bundle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BundleInfo {
    /// Its id: the SHA-256 of the uploaded file.
    pub id: String,
    /// The pipeline's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Bytes of the uploaded file.
    pub size: u64,
    /// When it was uploaded.
    pub uploaded_at: u64,
    /// Its components.
    pub components: Vec<ComponentInfo>,
    /// Its sample data: paths relative to a job's working directory.
    pub data: Vec<String>,
    /// Its spec, verbatim.
    pub spec: String,
    /// Jobs submitted from it.
    pub jobs: Vec<String>,
}

/// The bundles stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BundleList {
    /// Newest first.
    pub bundles: Vec<BundleInfo>,
}

/// A component uploaded alone, for a job submitted as a spec.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ComponentUploaded {
    /// Its SHA-256: name it in a submission's `components`.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A job to run: from a stored bundle, or from a spec whose components
/// were uploaded alone (`POST /v1/components`). Overrides apply to either.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubmitRequest {
    /// The id of a stored bundle.
    #[serde(default)]
    pub bundle: Option<String>,
    /// A spec (YAML text), when there is no bundle.
    #[serde(default)]
    pub spec: Option<String>,
    /// With `spec`: each `component:` value it names → the SHA-256 of an
    /// uploaded component.
    #[serde(default)]
    pub components: BTreeMap<String, String>,
    /// The job's name (default: the spec's).
    #[serde(default)]
    pub name: Option<String>,
    /// A savepoint (or retained checkpoint) folder to start from.
    #[serde(default)]
    pub from_savepoint: Option<String>,
    /// With `from-savepoint`: drop state of operators the job no longer
    /// has, instead of refusing.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Default parallelism of operators (the spec's `parallelism`).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Operator id → its `config` (replacing the spec's).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// `memory` or `lsm` (the spec's `state: backend`).
    #[serde(default)]
    pub state_backend: Option<String>,
    /// MiB of keyed state the lsm backend keeps in memory.
    #[serde(default)]
    pub state_memory_mb: Option<u64>,
}

/// A job was accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Submitted {
    /// Its id: poll `GET /v1/jobs/{id}`.
    pub id: String,
}

/// The states of a job, Flink's.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted; waiting for slots or being deployed.
    Created,
    /// Its tasks run.
    Running,
    /// A task failed; the others are being stopped.
    Failing,
    /// It failed (see its exceptions).
    Failed,
    /// Cancellation was asked for; its tasks are stopping.
    Cancelling,
    /// It was cancelled.
    Canceled,
    /// Every task reached the end of its input.
    Finished,
    /// A task failed and the restart strategy restarts it from its latest
    /// checkpoint (after the strategy's delay).
    Restarting,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Failed | JobState::Canceled | JobState::Finished)
    }

    /// The name the API uses.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
        }
    }
}

/// A job in a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct JobInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// When it was submitted.
    pub start_time: u64,
    /// When it ended, if it has.
    pub end_time: Option<u64>,
    /// Milliseconds from submission to its end (or to now).
    pub duration: u64,
    /// The bundle it was submitted from.
    pub bundle: Option<String>,
}

/// The jobs the coordinator knows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobInfo>,
}

/// Metrics of a vertex (or of one of its subtasks), Flink's names. Rates
/// and times per second are over the last sample (each second).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Metrics {
    /// Records received.
    #[serde(rename = "numRecordsIn")]
    pub num_records_in: u64,
    /// Records sent.
    #[serde(rename = "numRecordsOut")]
    pub num_records_out: u64,
    /// Records received per second.
    #[serde(rename = "numRecordsInPerSecond")]
    pub num_records_in_per_second: f64,
    /// Records sent per second.
    #[serde(rename = "numRecordsOutPerSecond")]
    pub num_records_out_per_second: f64,
    /// Bytes of keys and values received.
    #[serde(rename = "numBytesIn")]
    pub num_bytes_in: u64,
    /// Bytes of keys and values sent.
    #[serde(rename = "numBytesOut")]
    pub num_bytes_out: u64,
    /// Bytes received per second.
    #[serde(rename = "numBytesInPerSecond")]
    pub num_bytes_in_per_second: f64,
    /// Bytes sent per second.
    #[serde(rename = "numBytesOutPerSecond")]
    pub num_bytes_out_per_second: f64,
    /// The watermark of the input (a vertex: its subtasks' lowest);
    /// -9223372036854775808 (i64's least) when there is none yet, as Flink.
    #[serde(rename = "currentInputWatermark")]
    pub current_input_watermark: i64,
    /// The watermark sent on (a vertex: its subtasks' lowest).
    #[serde(rename = "currentOutputWatermark")]
    pub current_output_watermark: i64,
    /// Milliseconds per second the task worked (a vertex: its busiest subtask).
    #[serde(rename = "busyTimeMsPerSecond")]
    pub busy_time_ms_per_second: f64,
    /// Milliseconds per second the task waited for input (a vertex: its
    /// least idle subtask).
    #[serde(rename = "idleTimeMsPerSecond")]
    pub idle_time_ms_per_second: f64,
    /// Milliseconds per second the task waited for room downstream (a
    /// vertex: its most back-pressured subtask).
    #[serde(rename = "backPressuredTimeMsPerSecond")]
    pub back_pressured_time_ms_per_second: f64,
}

/// Backpressure by Flink's thresholds on the back-pressured time: OK up
/// to 10 %, LOW up to 50 %, HIGH above.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Backpressure {
    /// At most 100 ms per second back-pressured.
    #[default]
    Ok,
    /// At most 500 ms per second.
    Low,
    /// More.
    High,
}

impl Backpressure {
    /// The level of `ms` back-pressured milliseconds per second.
    pub fn of(ms: f64) -> Backpressure {
        if ms > 500.0 {
            Backpressure::High
        } else if ms > 100.0 {
            Backpressure::Low
        } else {
            Backpressure::Ok
        }
    }
}

/// A metric the operator defines itself (a counter or gauge of the SDK's
/// `metrics`, Flink's `getMetricGroup()`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct UserMetricInfo {
    /// Its name.
    pub name: String,
    /// `counter` or `gauge`.
    pub kind: String,
    /// A counter's total, or a gauge's last value.
    pub value: f64,
}

/// One subtask of a vertex.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SubtaskInfo {
    /// Its index.
    pub subtask: u32,
    /// Its backpressure level.
    pub backpressure: Backpressure,
    /// Its metrics.
    pub metrics: Metrics,
    /// The operator's own metrics, by name.
    pub user_metrics: Vec<UserMetricInfo>,
    /// Its channels to the subtasks it sends to: which one keeps it
    /// waiting.
    #[serde(default)]
    pub channels: Vec<ChannelInfo>,
}

/// A channel from a subtask to a subtask downstream, and the time its
/// sender waits for room in it: a slow consumer shows on exactly the
/// channels into it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ChannelInfo {
    /// The vertex it sends to.
    pub to: String,
    /// Which of its subtasks.
    pub subtask: u32,
    /// Whether it crosses to another worker (over QUIC).
    pub remote: bool,
    /// Milliseconds per second the sender waited for room (a full queue,
    /// or no credit from the other worker).
    #[serde(rename = "backPressuredTimeMsPerSecond")]
    pub back_pressured_time_ms_per_second: f64,
    /// Its level.
    pub backpressure: Backpressure,
}

/// A vertex of the job graph: a source, operator or sink.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct VertexInfo {
    /// Its id in the spec.
    pub id: String,
    /// `source`, `operator` or `sink`.
    pub kind: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// The vertices it reads (ids, with `#tag` for side outputs).
    pub inputs: Vec<String>,
    /// Its most back-pressured subtask's level.
    pub backpressure: Backpressure,
    /// Over all its subtasks: counts and rates summed, watermarks the
    /// lowest, times the busiest subtask's.
    pub metrics: Metrics,
    /// The operator's own metrics over its subtasks: counters summed,
    /// gauges the highest.
    pub user_metrics: Vec<UserMetricInfo>,
    /// Each subtask (empty until the job runs).
    pub subtasks: Vec<SubtaskInfo>,
}

/// A job in full.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct JobDetail {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Why it is in that state, when that needs saying (waiting for
    /// slots, the root cause of a failure).
    pub status_message: Option<String>,
    /// When it entered each state it has been in.
    pub timestamps: BTreeMap<String, u64>,
    /// When it was submitted.
    pub start_time: u64,
    /// When it ended, if it has.
    pub end_time: Option<u64>,
    /// Milliseconds from submission to its end (or to now).
    pub duration: u64,
    /// The bundle it was submitted from.
    pub bundle: Option<String>,
    /// Default parallelism.
    pub parallelism: u32,
    /// Key groups (the upper bound of any parallelism).
    pub max_parallelism: u32,
    /// Slots it holds (or waits for).
    pub slots: u32,
    /// Its working directory on the worker.
    pub working_dir: String,
    /// Times it was restarted after a failure (Flink's
    /// `numRestarts`).
    #[serde(default)]
    pub restarts: u32,
    /// Its vertices, in spec order.
    pub vertices: Vec<VertexInfo>,
}

/// One failure of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ExceptionInfo {
    /// What failed and why, with the guest's own message.
    pub exception: String,
    /// `operator`, `source`, `sink` or `job`.
    pub kind: String,
    /// The failing vertex (or the job's name).
    pub operator: String,
    /// The failing subtask.
    pub subtask: u32,
    /// The record being processed, when known (its origin and offset).
    pub record: Option<String>,
    /// When it was seen.
    pub timestamp: u64,
}

/// A job's failures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Exceptions {
    /// The first failure: the root cause.
    pub root_exception: Option<ExceptionInfo>,
    /// Every failure, oldest first.
    pub exception_history: Vec<ExceptionInfo>,
}

/// A job's checkpoints and savepoints (Flink's `/jobs/{id}/checkpoints`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Checkpoints {
    /// How many, by status.
    pub counts: CheckpointCounts,
    /// The latest completed one.
    pub latest_completed: Option<CheckpointInfo>,
    /// The latest ones, oldest first (the last hundred of each execution).
    pub history: Vec<CheckpointInfo>,
}

/// Checkpoints by status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointCounts {
    /// Being taken.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed or aborted.
    pub failed: u64,
}

/// One checkpoint or savepoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointInfo {
    /// Its number.
    pub id: u64,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub status: String,
    /// Whether it is a savepoint.
    pub is_savepoint: bool,
    /// When it was triggered, epoch ms.
    pub trigger_timestamp: u64,
    /// From trigger to completion (or to now), ms.
    pub end_to_end_duration: u64,
    /// Bytes written.
    pub state_size: u64,
    /// Tasks that acknowledged it.
    pub num_acknowledged_subtasks: usize,
    /// Tasks of the job.
    pub num_subtasks: usize,
    /// A savepoint's folder.
    pub external_path: Option<String>,
    /// The longest barrier alignment of a task, ms.
    pub alignment_duration: u64,
    /// The longest synchronous snapshot of a task, µs.
    pub sync_duration_us: u64,
    /// Bytes of in-flight data kept with it (unaligned checkpoints).
    pub persisted_data: u64,
    /// Why it failed.
    pub failure_message: Option<String>,
}

/// One checkpoint with every task's part (Flink's
/// `/jobs/{id}/checkpoints/details/{checkpoint}` with its subtasks).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointDetail {
    /// The checkpoint.
    pub checkpoint: CheckpointInfo,
    /// Every task that acknowledged it, in the order they did.
    pub tasks: Vec<TaskCheckpointInfo>,
}

/// One task's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskCheckpointInfo {
    /// The ids of the vertices chained in the task, first to last.
    pub vertices: Vec<String>,
    /// Its subtask index.
    pub subtask: u32,
    /// From trigger to its acknowledgement, ms.
    pub end_to_end_duration: u64,
    /// From trigger to its first barrier reaching it: how long the
    /// barrier waited behind data, ms.
    pub start_delay: u64,
    /// From its first barrier to its last (aligned), or to its in-flight
    /// data being complete (unaligned), ms.
    pub alignment_duration: u64,
    /// Its synchronous snapshot, µs.
    pub sync_duration_us: u64,
    /// Bytes written for it.
    pub state_size: u64,
    /// Bytes of in-flight data kept with it.
    pub persisted_data: u64,
    /// Whether it took the checkpoint unaligned.
    pub unaligned: bool,
    /// Whether it had finished, and its final snapshot stood in for it.
    pub finished: bool,
}

/// A worker and its slots.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct WorkerInfo {
    /// Its id.
    pub id: String,
    /// Where it runs.
    pub address: String,
    /// Its slots.
    pub slots_total: u32,
    /// Slots no job holds.
    pub slots_free: u32,
    /// Jobs holding its slots.
    pub jobs: Vec<String>,
}

/// The workers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// Every registered worker.
    pub workers: Vec<WorkerInfo>,
}

/// A long operation was started: poll it by its trigger id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Triggered {
    /// Poll `GET …/{trigger-id}` with it.
    pub request_id: String,
}

/// A savepoint to take (Flink's `POST /jobs/{id}/savepoints`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SavepointBody {
    /// The folder it goes in (as `savepoint-N-<time>/`); default the
    /// coordinator's `<data-dir>/savepoints` (under `weir run`: the
    /// spec's checkpoint folder's `savepoints/`). Must be inside a folder
    /// the coordinator allows.
    #[serde(default)]
    pub target_directory: Option<String>,
    /// Stop the job once the savepoint is taken and committed (`weir stop
    /// --savepoint`): it ends FINISHED, and a job started from the
    /// savepoint goes on exactly where it stopped.
    #[serde(default)]
    pub stop: bool,
}

/// Where a savepoint is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointOperation {
    /// In progress or completed.
    pub status: OperationStatus,
    /// Its folder, once completed.
    pub location: Option<String>,
    /// Why it failed, once completed, if it did.
    pub failure_cause: Option<String>,
    /// The job's state now.
    pub job_state: JobState,
}

/// Where a long operation is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    /// Still going.
    InProgress,
    /// Done (see `failure-cause` for whether it worked).
    Completed,
}

/// A long operation's progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Operation {
    /// In progress or completed.
    pub status: OperationStatus,
    /// The job's state now.
    pub job_state: JobState,
    /// Why it did not work, once completed, if it did not.
    pub failure_cause: Option<String>,
}

/// A spec to check (`POST /v1/specs/validate`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SpecText {
    /// The spec, YAML text.
    pub spec: String,
}

/// What is wrong with a spec, at its line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SpecProblem {
    /// Its line (1-based), when known.
    pub line: Option<usize>,
    /// Its column (1-based), when known.
    pub column: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// A spec checked: its problems, or what it needs to be submitted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SpecCheck {
    /// Whether it parses and validates.
    pub valid: bool,
    /// Its problems (the first the parser met).
    pub problems: Vec<SpecProblem>,
    /// Its job name.
    pub name: Option<String>,
    /// The components it names (`component:` values), each to be
    /// uploaded and mapped in a submission's `components`.
    pub components: Vec<ComponentRef>,
}

/// A component a spec names.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ComponentRef {
    /// The `component:` value.
    pub path: String,
    /// The world it must implement.
    pub world: String,
}

/// What a job's latest completed checkpoint (or savepoint) holds, read
/// from its files (`weir state PATH`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct JobStateInfo {
    /// The checkpoint's number.
    pub checkpoint: u64,
    /// Its folder.
    pub path: String,
    /// When it completed, epoch ms.
    pub completed_at: u64,
    /// Key groups of the job.
    pub max_parallelism: u32,
    /// Every vertex, in job order.
    pub operators: Vec<OperatorStateInfo>,
}

/// One vertex's state in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct OperatorStateInfo {
    /// Its id.
    pub id: String,
    /// `source`, `sink`, `map`, `process`, `window` or `window-all`.
    pub kind: String,
    /// Its parallelism then.
    pub parallelism: u32,
    /// Bytes of state over its subtasks.
    pub bytes: u64,
    /// Keyed state: per state, its keys.
    pub states: Vec<NamedStateInfo>,
    /// Operator-state lists.
    pub lists: Vec<OperatorListInfo>,
    /// Records in flight into it (unaligned checkpoints).
    pub in_flight: u64,
}

/// One keyed state of an operator.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct NamedStateInfo {
    /// Its kind and name (`value count`, `timers`, …).
    pub name: String,
    /// Keys with an entry.
    pub keys: u64,
    /// Key group → keys with an entry in it.
    pub keys_per_group: BTreeMap<u16, u64>,
}

/// One operator-state list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct OperatorListInfo {
    /// Its name.
    pub name: String,
    /// Redistributed as a union (else: even split).
    pub union: bool,
    /// Subtask → its elements as text.
    pub elements: BTreeMap<u32, Vec<String>>,
}

/// One key's state in one operator.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct KeyStateInfo {
    /// The checkpoint read.
    pub checkpoint: u64,
    /// The key's key group.
    pub key_group: u16,
    /// State → its entries, decoded.
    pub states: BTreeMap<String, Vec<String>>,
}

/// A job's rates over the last ten minutes, one sample a second or so
/// (`GET /v1/jobs/{id}/rates`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RateHistory {
    /// When each sample was taken, epoch ms, oldest first.
    pub timestamps: Vec<u64>,
    /// Vertex id → its values at those times.
    pub vertices: BTreeMap<String, VertexRates>,
}

/// One vertex's rates, a value per sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct VertexRates {
    /// Records received per second (summed over subtasks).
    pub records_in_per_second: Vec<f64>,
    /// Records sent per second.
    pub records_out_per_second: Vec<f64>,
    /// Its busiest subtask's busy ms per second.
    pub busy_time_ms_per_second: Vec<f64>,
    /// Its most back-pressured subtask's back-pressured ms per second.
    pub back_pressured_time_ms_per_second: Vec<f64>,
}
