//! Checkpoints of a running job, by asynchronous barrier snapshots: the
//! checkpointer (one thread per job execution, driving the pure
//! [`CheckpointTracker`]) asks the sources to inject a barrier; each task
//! snapshots its chain when the barrier has come in on every input (after
//! aligning them, for exactly-once), hands the bytes to the checkpointer
//! and passes the barrier on. The checkpointer writes each task's file as
//! it arrives (the task goes on meanwhile), and once every task has
//! acknowledged it writes the metadata, which completes the checkpoint;
//! then tasks are told, and two-phase-commit sinks commit.

mod format;
mod inspect;
mod spread;
mod storage;
mod store;

pub(crate) use format::{
    Reader, Writer, read_in_flight, read_keyed, read_lists, write_changes, write_in_flight, write_keyed, write_lists,
};
pub use inspect::{KeyState, ListReport, OperatorState, StateReport, inspect, key_state};
pub use spread::{CheckpointCommand, CheckpointLink, Ledger, LedgerLink, PartReport, SavepointTarget, WorkerPart};
pub use store::{CheckpointStore, Restored, load_from};
pub(crate) use store::{StageRecord, StageState, write_stages};

use crate::job::JobShared;
use crate::operators::Shape;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_core::checkpoint::{AckResult, CheckpointEvent, CheckpointTiming, CheckpointTracker};

/// One task's part of a checkpoint: its stages' snapshots.
pub(crate) struct TaskAck {
    pub checkpoint: u64,
    pub task: usize,
    pub stages: Vec<StagePart>,
    /// For a final snapshot ([`FINISHED`]): the latest checkpoint whose
    /// barrier the task saw (acknowledged, or abandoned). It stands in
    /// only for later ones: one it abandoned cannot complete.
    pub seen: u64,
    /// How the task took it.
    pub timing: AckTiming,
}

/// How a task took a checkpoint, for its statistics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AckTiming {
    /// When its first barrier reached the task (a source: when it injected
    /// it); `None` for a final snapshot standing in.
    pub barrier_at: Option<Instant>,
    /// First barrier to the last (aligned), or to the in-flight data being
    /// complete (unaligned).
    pub alignment: Duration,
    /// Its synchronous snapshot of every stage.
    pub sync: Duration,
    /// Whether it took it unaligned.
    pub unaligned: bool,
    /// When the task handed its part over (not when the checkpointer,
    /// writing earlier parts, took it).
    pub acked_at: Option<Instant>,
}

/// The "checkpoint" of a task's final snapshot, sent once it finished:
/// it stands for the task in every checkpoint after.
pub(crate) const FINISHED: u64 = u64::MAX;

/// One stage's snapshot.
#[derive(Clone)]
pub(crate) struct StagePart {
    pub vertex: String,
    pub subtask: u32,
    /// The task's input watermark.
    pub watermark: i64,
    pub state: Vec<u8>,
    pub shape: Shape,
    /// Its operator state (`format::write_lists`; empty: none).
    pub operator: Vec<u8>,
    /// The task's in-flight data of an unaligned checkpoint, on its first
    /// stage (`format::write_in_flight`; empty: none).
    pub channels: Vec<u8>,
}

/// How a checkpoint ended, for the REST API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CheckpointStatus {
    /// Still being taken.
    InProgress,
    /// Every task acknowledged it and its metadata is written.
    Completed,
    /// Aborted: it took too long, could not be written, or the job ended.
    Failed,
}

/// One checkpoint of the job: when, how long and how large.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointStats {
    /// Its number.
    pub id: u64,
    /// Its status.
    pub status: CheckpointStatus,
    /// When it was triggered, epoch milliseconds.
    pub triggered_at_ms: u64,
    /// From trigger to completion (or to now).
    pub duration_ms: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Tasks that acknowledged it, of how many.
    pub acknowledged: usize,
    /// Tasks of the job.
    pub tasks: usize,
    /// For a savepoint: its folder.
    pub savepoint: Option<std::path::PathBuf>,
    /// Its folder (`weir state` reads it; a checkpoint's may be removed
    /// once newer ones are retained).
    pub folder: std::path::PathBuf,
    /// Why it failed.
    pub failure: Option<String>,
    /// Every task that acknowledged it, in the order they did (once it
    /// has completed or failed; empty while in progress).
    pub parts: Arc<Vec<TaskCheckpointStats>>,
}

/// One task's part of a checkpoint (Flink's subtask checkpoint
/// statistics).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskCheckpointStats {
    /// The task's number in the job.
    pub task: usize,
    /// The ids of the vertices chained in it, first to last.
    pub vertices: Vec<String>,
    /// Its subtask index.
    pub subtask: u32,
    /// From trigger to its acknowledgement reaching the checkpointer.
    pub ack_ms: u64,
    /// From trigger to its first barrier reaching it (a source: injecting
    /// it); the backpressure a barrier waited behind.
    pub start_delay_ms: u64,
    /// From its first barrier to the last (aligned checkpoints), or to its
    /// in-flight data being complete (unaligned).
    pub alignment_ms: u64,
    /// Its synchronous snapshot, microseconds.
    pub sync_us: u64,
    /// Bytes written for it.
    pub bytes: u64,
    /// Bytes of in-flight data kept with it (unaligned checkpoints).
    pub in_flight_bytes: u64,
    /// Whether it took the checkpoint unaligned.
    pub unaligned: bool,
    /// Whether it had finished, and its final snapshot stood in for it.
    pub finished: bool,
}

/// Checkpoints kept in a job's history.
const HISTORY: usize = 100;

/// What tasks and the checkpointer share.
pub(crate) struct CheckpointShared {
    /// The latest checkpoint sources are asked to inject (0: none yet).
    pub trigger: AtomicU64,
    /// The latest completed checkpoint (0: none yet).
    pub completed: AtomicU64,
    /// Align barriers (exactly-once) or not (at-least-once).
    pub exactly_once: bool,
    /// A stop-with-savepoint's id: sources stop after its barrier (0: none).
    pub stop_at: AtomicU64,
    /// Per task: the latest completed checkpoint it was told of.
    pub notified: Vec<AtomicU64>,
    /// Whether keyed operators may snapshot only what changed.
    pub incremental: bool,
    /// Unaligned checkpoints: barriers overtake queued data, which goes
    /// into the checkpoint (savepoints stay aligned).
    pub unaligned: bool,
    /// The latest completed checkpoint that is not a savepoint:
    /// incremental snapshots diff against it.
    pub base: AtomicU64,
    /// Per task: the base its operators were told of (their snapshots
    /// diff against it or a later one).
    pub rebased: Vec<AtomicU64>,
    /// Savepoints in progress (they hold everything, and are no base).
    savepoints: Mutex<HashSet<u64>>,
    acks: Mutex<mpsc::Sender<TaskAck>>,
    history: Mutex<Vec<CheckpointStats>>,
    requests: Mutex<Vec<(SavepointRequest, Arc<Savepoint>)>>,
}

/// What a savepoint asks for.
#[derive(Debug, Clone)]
pub struct SavepointRequest {
    /// The folder it goes in, as `savepoint-<n>-<time>`.
    pub dir: std::path::PathBuf,
    /// Stop the job once it is taken and committed (sources stop after its
    /// barrier).
    pub stop: bool,
}

/// A savepoint on its way: wait for its folder or why it failed.
#[derive(Debug, Default)]
pub struct Savepoint {
    outcome: Mutex<Option<Result<std::path::PathBuf, String>>>,
    done: std::sync::Condvar,
    id: AtomicU64,
}

impl Savepoint {
    /// Its checkpoint number (0 until triggered).
    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    fn finish(&self, outcome: Result<std::path::PathBuf, String>) {
        let mut o = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if o.is_none() {
            *o = Some(outcome);
        }
        self.done.notify_all();
    }

    /// A savepoint taken elsewhere (by a remote worker's job): its number
    /// and outcome are set as that worker reports them.
    pub fn reported(id: u64, outcome: Option<Result<std::path::PathBuf, String>>) -> Arc<Savepoint> {
        let s = Arc::new(Savepoint::default());
        s.update(id, outcome);
        s
    }

    /// Sets what a remote worker reported: its number, and its outcome
    /// once it has one (the first outcome stays).
    pub fn update(&self, id: u64, outcome: Option<Result<std::path::PathBuf, String>>) {
        if id > 0 {
            self.id.store(id, Ordering::Release);
        }
        if let Some(o) = outcome {
            self.finish(o);
        }
    }

    /// Its outcome, if it has one yet.
    pub fn outcome(&self) -> Option<Result<std::path::PathBuf, String>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` for its outcome.
    pub fn wait(&self, timeout: Duration) -> Option<Result<std::path::PathBuf, String>> {
        let o = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        let (o, _) = self.done.wait_timeout_while(o, timeout, |o| o.is_none()).unwrap_or_else(|p| p.into_inner());
        o.clone()
    }
}

impl CheckpointShared {
    /// A task's part of a checkpoint. The checkpointer may have stopped
    /// (the job is ending): then the part is dropped with the checkpoint.
    pub fn ack(&self, mut ack: TaskAck) {
        ack.timing.acked_at = Some(Instant::now());
        let _ = self.acks.lock().unwrap_or_else(|p| p.into_inner()).send(ack);
    }

    /// Whether checkpoint `id` is a savepoint.
    pub fn is_savepoint(&self, id: u64) -> bool {
        self.savepoints.lock().unwrap_or_else(|p| p.into_inner()).contains(&id)
    }

    /// Asks for a savepoint.
    pub fn savepoint(&self, request: SavepointRequest) -> Arc<Savepoint> {
        let ticket = Arc::new(Savepoint::default());
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push((request, ticket.clone()));
        ticket
    }

    /// Whether every task still running was told checkpoint `id` (or a
    /// later one) completed: its sinks committed it.
    pub fn all_notified(&self, id: u64, finished: &dyn Fn(usize) -> bool) -> bool {
        self.notified.iter().enumerate().all(|(t, n)| finished(t) || n.load(Ordering::Acquire) >= id)
    }

    /// The checkpoints so far, oldest first (the last hundred).
    pub fn history(&self) -> Vec<CheckpointStats> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, stats: CheckpointStats) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        match h.iter_mut().find(|s| s.id == stats.id) {
            Some(s) => *s = stats,
            None => {
                h.push(stats);
                if h.len() > HISTORY {
                    h.remove(0);
                }
            }
        }
    }
}

/// What the checkpointer needs to run.
pub(crate) struct Plan {
    pub timing: CheckpointTiming,
    pub store: CheckpointStore,
    pub job: String,
    pub retain: usize,
    pub exactly_once: bool,
    pub incremental: bool,
    pub unaligned: bool,
    /// The tasks whose head is a source: once they have all finished no
    /// barrier can come any more.
    pub sources: Vec<usize>,
    /// The first checkpoint's number: past every folder's, even one of a
    /// damaged checkpoint recovery skipped, and past the one restored.
    pub first: u64,
    /// The checkpoint restored from (numbering goes on after it).
    pub restored: Option<u64>,
    /// (id, parallelism, kind) of every vertex.
    pub vertices: Vec<(String, u32, &'static str)>,
    pub max_parallelism: u32,
    /// Per task here: its number in the whole job (empty: the same).
    pub global: Vec<usize>,
    /// A job spread over several workers: the coordinator's link.
    pub link: Option<CheckpointLink>,
}

struct InFlight {
    triggered: Instant,
    /// When its barriers were asked for, its folder made: start delays
    /// count from here.
    injected: Instant,
    triggered_at_ms: u64,
    files: Vec<store::TaskFile>,
    /// Chains of the stages kept in shared files.
    shared: Vec<store::SharedChain>,
    bytes: u64,
    /// Its folder (`chk-N`, or a savepoint's).
    dir: store::Folder,
    /// For a savepoint: who waits for it.
    savepoint: Option<Arc<Savepoint>>,
    /// Tasks whose part is written.
    acked: HashSet<usize>,
    /// Their statistics.
    tasks: Vec<TaskCheckpointStats>,
}

impl InFlight {
    fn new(dir: store::Folder, savepoint: Option<Arc<Savepoint>>) -> InFlight {
        InFlight {
            triggered: Instant::now(),
            injected: Instant::now(),
            triggered_at_ms: epoch_ms(),
            files: Vec::new(),
            shared: Vec::new(),
            bytes: 0,
            dir,
            savepoint,
            acked: HashSet::new(),
            tasks: Vec::new(),
        }
    }

    /// It failed: a savepoint's waiter is told why, and (`remove`) its
    /// folder goes. A spread job's worker leaves that to the coordinator,
    /// whose folder it is.
    fn fail(self, why: &str, remove: bool) {
        if remove && let Err(e) = self.dir.remove_all() {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
        if let Some(s) = &self.savepoint {
            s.finish(Err(why.to_owned()));
        }
    }
}

/// The checkpointer's thread body, to run once the tasks run.
pub(crate) type Checkpointer = Box<dyn FnOnce(Arc<JobShared>) + Send>;

impl CheckpointShared {
    /// What a checkpointer of `tasks` tasks shares, and the receiving end
    /// of their acknowledgements.
    fn new(plan: &Plan, tasks: usize) -> (Arc<CheckpointShared>, mpsc::Receiver<TaskAck>) {
        let (tx, rx) = mpsc::channel();
        let restored = plan.restored.unwrap_or(0);
        let shared = Arc::new(CheckpointShared {
            trigger: AtomicU64::new(0),
            completed: AtomicU64::new(restored),
            exactly_once: plan.exactly_once,
            stop_at: AtomicU64::new(0),
            notified: (0..tasks).map(|_| AtomicU64::new(restored)).collect(),
            incremental: plan.incremental,
            unaligned: plan.unaligned,
            base: AtomicU64::new(0),
            rebased: (0..tasks).map(|_| AtomicU64::new(0)).collect(),
            savepoints: Mutex::new(HashSet::new()),
            acks: Mutex::new(tx),
            history: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        });
        (shared, rx)
    }
}

/// Starts the checkpointer of a job with `tasks` tasks; the shared part
/// goes to the tasks. It stops by itself when the job ends. A finished
/// task's final snapshot stands for it in every later checkpoint
/// (FLIP-147); once every source has finished no more are taken.
///
/// With [`Plan::link`] (a job spread over several workers) it takes only
/// this worker's part: the coordinator's [`Ledger`] triggers and
/// completes checkpoints, and the checkpointer serves its finished tasks'
/// final snapshots until the coordinator says the job is over.
pub(crate) fn start(plan: Plan, tasks: usize) -> (Arc<CheckpointShared>, Checkpointer) {
    let (shared, rx) = CheckpointShared::new(&plan, tasks);
    let cp = shared.clone();
    let run = move |job: Arc<JobShared>| run(plan, tasks, cp, rx, job);
    (shared, Box::new(run))
}

/// Per completed checkpoint: per (vertex, subtask), its chain of shared
/// files.
type Chains = BTreeMap<u64, HashMap<(String, u32), Vec<store::TaskFile>>>;

/// Writes task `task`'s part of checkpoint `id` (`task` is its number in
/// the whole job, which names its files): each stage kept in shared files
/// gets its own (a delta's chain is its base's plus it), the rest goes in
/// the task's file.
fn write_part(
    store: &CheckpointStore,
    flight: &mut InFlight,
    id: u64,
    task: usize,
    stages: Vec<StagePart>,
    chains: &Chains,
) -> Result<(), String> {
    let mut inline = Vec::with_capacity(stages.len());
    for (i, part) in stages.iter().enumerate() {
        let mut chain = match part.shape {
            Shape::Inline => {
                inline.push(StageRecord {
                    vertex: &part.vertex,
                    subtask: part.subtask,
                    watermark: part.watermark,
                    state: &part.state,
                    operator: &part.operator,
                    channels: &part.channels,
                });
                continue;
            }
            Shape::Full => Vec::new(),
            Shape::Delta { base } => {
                let found = chains.get(&base).and_then(|c| c.get(&(part.vertex.clone(), part.subtask)));
                found.cloned().ok_or_else(|| {
                    format!(
                        "`{}` subtask {} sent what changed since checkpoint {base}, whose files are no longer kept",
                        part.vertex, part.subtask
                    )
                })?
            }
        };
        let name = format!("chk-{id}-task-{task}-{i}");
        let file = store.write_shared(&name, &part.state).map_err(|e| format!("cannot write {name}: {e}"))?;
        flight.bytes += file.bytes;
        chain.push(file);
        flight.shared.push(store::SharedChain { vertex: part.vertex.clone(), subtask: part.subtask, files: chain });
        inline.push(StageRecord {
            vertex: &part.vertex,
            subtask: part.subtask,
            watermark: part.watermark,
            state: &[],
            operator: &part.operator,
            channels: &part.channels,
        });
    }
    let file =
        store::write_task(&flight.dir, &format!("task-{task}"), &write_stages(&inline)).map_err(|e| e.to_string())?;
    flight.bytes += file.bytes;
    flight.files.push(file);
    Ok(())
}

/// The task (its number in the job) whose part a shared file
/// (`chk-<id>-task-<task>-<stage>`) holds.
fn shared_file_task(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("chk-")?;
    let (_, rest) = rest.split_once("-task-")?;
    rest.split_once('-')?.0.parse().ok()
}

/// Forgets the chains no snapshot can diff against any more (those of
/// checkpoints before the latest one every task's operators were told
/// of, `floor`), then removes the shared files that neither they,
/// checkpoints in progress nor the completed checkpoints kept list. With
/// `own` (a spread job's worker) only files of those tasks are
/// removed: the others are other workers'.
fn collect(
    store: &CheckpointStore,
    chains: &mut Chains,
    flights: &HashMap<u64, InFlight>,
    floor: u64,
    own: Option<&HashSet<usize>>,
) {
    let newest_below = chains.range(..=floor).next_back().map(|(&id, _)| id);
    if let Some(keep_from) = newest_below {
        chains.retain(|&id, _| id >= keep_from);
    }
    let mut live: HashSet<String> = HashSet::new();
    let in_chains = chains.values().flat_map(|c| c.values()).flatten();
    let in_flights = flights.values().flat_map(|f| f.shared.iter()).flat_map(|c| c.files.iter());
    live.extend(in_chains.chain(in_flights).map(|f| f.file.clone()));
    let owns = |name: &str| own.is_none_or(|own| shared_file_task(name).is_some_and(|t| own.contains(&t)));
    store.collect_shared(&live, &owns);
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A checkpoint's statistics now.
fn stats_of(id: u64, f: &InFlight, status: CheckpointStatus, acknowledged: usize, tasks: usize) -> CheckpointStats {
    CheckpointStats {
        id,
        status,
        triggered_at_ms: f.triggered_at_ms,
        duration_ms: f.triggered.elapsed().as_millis() as u64,
        bytes: f.bytes,
        acknowledged,
        tasks,
        savepoint: f.savepoint.as_ref().map(|_| f.dir.path()),
        folder: f.dir.path(),
        failure: None,
        // Parts once it has ended: copied on every acknowledgement, they
        // would cost tasks² per checkpoint.
        parts: match status {
            CheckpointStatus::InProgress => Arc::default(),
            _ => Arc::new(f.tasks.clone()),
        },
    }
}

/// Checkpoint `id` has begun: recorded as in progress, its barriers
/// asked for from now (start delays count from here).
fn begin_flight(shared: &CheckpointShared, id: u64, f: InFlight, flights: &mut HashMap<u64, InFlight>, tasks: usize) {
    let mut f = f;
    shared.record(stats_of(id, &f, CheckpointStatus::InProgress, 0, tasks));
    f.injected = Instant::now();
    flights.insert(id, f);
}

/// Checkpoint `id` failed: recorded with why, and its flight ended
/// (`remove`: its folder too).
fn fail_flight(shared: &CheckpointShared, id: u64, f: InFlight, why: &str, tasks: usize, remove: bool) {
    let failed = CheckpointStats {
        failure: Some(why.to_owned()),
        ..stats_of(id, &f, CheckpointStatus::Failed, f.files.len(), tasks)
    };
    shared.record(failed);
    shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    f.fail(why, remove);
}

/// Completes checkpoint `f`: its shared files' folder entries made
/// durable before the metadata that lists them, then the metadata.
/// `Err`: why it cannot complete.
fn write_completion(store: &CheckpointStore, f: &InFlight, metadata: &store::Metadata) -> Result<(), String> {
    let synced = if f.shared.is_empty() { Ok(()) } else { store.sync_shared() };
    synced.and_then(|()| store::complete(&f.dir, metadata)).map_err(|e| format!("cannot write its metadata: {e}"))
}

/// The metadata that completes checkpoint `id`.
fn metadata_of(plan: &Plan, id: u64, f: &InFlight) -> store::Metadata {
    store::Metadata {
        format: store::FORMAT,
        job: plan.job.clone(),
        checkpoint: id,
        completed_at_ms: epoch_ms(),
        max_parallelism: plan.max_parallelism,
        vertices: plan
            .vertices
            .iter()
            .map(|(id, p, kind)| store::VertexParallelism { id: id.clone(), parallelism: *p, kind: (*kind).to_owned() })
            .collect(),
        tasks: f.files.clone(),
        shared: f.shared.clone(),
    }
}

/// Checkpoint `id`'s metadata is written: it is recorded, becomes the
/// base of incremental snapshots (unless a savepoint), tasks may commit
/// it, a savepoint's waiter is told, and older checkpoints in progress are
/// subsumed (`remove`: their folders go).
#[allow(clippy::too_many_arguments)]
fn on_completed(
    plan: &Plan,
    shared: &CheckpointShared,
    id: u64,
    f: InFlight,
    tasks: usize,
    flights: &mut HashMap<u64, InFlight>,
    chains: &mut Chains,
    remove: bool,
) {
    let done = stats_of(id, &f, CheckpointStatus::Completed, tasks, tasks);
    tracing::info!("checkpoint {id} of `{}` completed: {} bytes in {} ms", plan.job, done.bytes, done.duration_ms);
    shared.record(done);
    if f.savepoint.is_none() {
        let stages = f.shared.iter().map(|c| ((c.vertex.clone(), c.subtask), c.files.clone()));
        chains.insert(id, stages.collect());
        shared.base.store(id, Ordering::Release);
    }
    shared.completed.fetch_max(id, Ordering::AcqRel);
    if let Some(s) = &f.savepoint {
        tracing::info!("savepoint of `{}` written to {}", plan.job, f.dir.display());
        s.finish(Ok(f.dir.path()));
    }
    for old in flights.keys().copied().filter(|&o| o < id).collect::<Vec<_>>() {
        if let Some(f) = flights.remove(&old) {
            fail_flight(shared, old, f, "a later checkpoint completed first", tasks, remove);
        }
    }
}

fn run(mut plan: Plan, tasks: usize, shared: Arc<CheckpointShared>, rx: mpsc::Receiver<TaskAck>, job: Arc<JobShared>) {
    let link = plan.link.take();
    let remote = link.is_some();
    let report = |r: PartReport| {
        if let Some(l) = &link {
            (l.reports)(r);
        }
    };
    // A task's number in the whole job (its files are named by it).
    let global = |task: usize| plan.global.get(task).copied().unwrap_or(task);
    let own: Option<HashSet<usize>> = remote.then(|| (0..tasks).map(global).collect());
    let store = &plan.store;
    if !remote {
        store.discard_incomplete();
    }
    // Never reuse a folder's number, even one of a damaged checkpoint
    // that recovery skipped.
    let first = plan.first;
    let t0 = Instant::now();
    let now_ms = || t0.elapsed().as_millis() as u64;
    let mut tracker = CheckpointTracker::new(plan.timing, tasks, first, now_ms());
    let mut flights: HashMap<u64, InFlight> = HashMap::new();
    let stats = |id: u64, f: &InFlight, status: CheckpointStatus, acknowledged: usize| {
        stats_of(id, f, status, acknowledged, tasks)
    };
    // Only the coordinator removes a spread job's folders.
    let fail = |id: u64, f: InFlight, why: &str| fail_flight(&shared, id, f, why, tasks, !remote);
    let mut stopped = false;
    // Finished tasks' final snapshots, which stand for them in every
    // checkpoint after (FLIP-147), and the acknowledgements made of them.
    let mut finished: BTreeMap<usize, Vec<StagePart>> = BTreeMap::new();
    let mut made: std::collections::VecDeque<TaskAck> = std::collections::VecDeque::new();
    // A spread job's barriers may come from another worker before the
    // coordinator's trigger does: their acknowledgements wait for it,
    // and so does a finished task's last barrier seen.
    let mut early: BTreeMap<u64, Vec<TaskAck>> = BTreeMap::new();
    let mut last_seen: HashMap<usize, u64> = HashMap::new();
    let mut triggered = 0;
    let stand_in =
        |finished: &BTreeMap<usize, Vec<StagePart>>, id: u64, made: &mut std::collections::VecDeque<TaskAck>| {
            for (&task, stages) in finished {
                made.push_back(TaskAck {
                    checkpoint: id,
                    task,
                    stages: stages.clone(),
                    seen: 0,
                    timing: AckTiming::default(),
                });
            }
        };
    // Per completed checkpoint (not savepoint), the chains of its stages
    // kept in shared files: what incremental snapshots diff against.
    let mut chains: Chains = BTreeMap::new();
    let (mut collect_due, mut collected_at) = (true, 0);
    'run: loop {
        let (running, ended) = job.task_counts();
        // A spread job's worker serves its finished tasks' final snapshots
        // for as long as the rest of the job runs.
        if ended && !(remote && job.finished()) {
            break;
        }
        // Once every source has finished no barrier can come: no more
        // checkpoints (as the tasks still draining finish, the job ends).
        // A spread job's coordinator knows when that is.
        if !remote && !stopped && (running == 0 || plan.sources.iter().all(|t| finished.contains_key(t))) {
            stopped = true;
            if running > 0 {
                tracing::info!(
                    "every source of `{}` finished: no more checkpoints (output of exactly-once file sinks becomes \
                     visible at the end of the job)",
                    plan.job
                );
            }
            for id in tracker.stop() {
                if let Some(f) = flights.remove(&id) {
                    fail(id, f, "every source of the job finished before every task acknowledged it");
                }
            }
        }
        while let Some(l) = &link {
            let command = match l.commands.try_recv() {
                Ok(c) => c,
                Err(mpsc::TryRecvError::Empty) => break,
                // The coordinator is gone: so is the job.
                Err(mpsc::TryRecvError::Disconnected) => break 'run,
            };
            match command {
                CheckpointCommand::Trigger { id, savepoint } => {
                    let (dir, ticket) = match &savepoint {
                        None => (store.checkpoint_dir(id), None),
                        Some(t) => match store::Folder::at(&t.folder) {
                            Ok(d) => (d, Some(Arc::new(Savepoint::default()))),
                            Err(e) => {
                                report(PartReport::Declined { id, why: format!("{}: {e}", t.folder.display()) });
                                triggered = triggered.max(id);
                                continue;
                            }
                        },
                    };
                    triggered = triggered.max(id);
                    let acks = early.remove(&id).unwrap_or_default();
                    early.retain(|&k, _| k > id);
                    // A task that finished after this barrier reached it,
                    // without acknowledging it, abandoned it.
                    let abandoned = finished
                        .keys()
                        .find(|t| last_seen.get(t).is_some_and(|&s| s >= id) && !acks.iter().any(|a| a.task == **t));
                    // Declined, its barrier still goes: tasks aligning on it
                    // would wait for this worker's sources otherwise.
                    if let Some(&t) = abandoned {
                        let why = format!("task {} abandoned it before it finished", global(t));
                        report(PartReport::Declined { id, why });
                        if savepoint.is_none() {
                            shared.trigger.fetch_max(id, Ordering::AcqRel);
                        }
                        continue;
                    }
                    if let Err(e) = store::begin(&dir) {
                        report(PartReport::Declined { id, why: format!("cannot make {}: {e}", dir.display()) });
                        // A savepoint's barrier goes nowhere: it is injected
                        // only once every worker is ready.
                        if savepoint.is_none() {
                            shared.trigger.fetch_max(id, Ordering::AcqRel);
                        }
                        continue;
                    }
                    if let Some(t) = &savepoint {
                        shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                        if t.stop {
                            shared.stop_at.store(id, Ordering::Release);
                        }
                    }
                    begin_flight(&shared, id, InFlight::new(dir, ticket), &mut flights, tasks);
                    let stood_for: HashSet<usize> = acks.iter().map(|a| a.task).collect();
                    made.extend(acks);
                    for (&task, stages) in finished.iter().filter(|(t, _)| !stood_for.contains(t)) {
                        let timing = AckTiming::default();
                        made.push_back(TaskAck { checkpoint: id, task, stages: stages.clone(), seen: 0, timing });
                    }
                    if savepoint.is_some() {
                        // Its barrier waits until every worker knows.
                        report(PartReport::Ready { id });
                    } else {
                        shared.trigger.fetch_max(id, Ordering::AcqRel);
                    }
                }
                CheckpointCommand::Inject { id } => {
                    if flights.contains_key(&id) {
                        shared.trigger.fetch_max(id, Ordering::AcqRel);
                    }
                }
                CheckpointCommand::Complete { id } => {
                    if let Some(f) = flights.remove(&id) {
                        shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        on_completed(&plan, &shared, id, f, tasks, &mut flights, &mut chains, false);
                        collect_due = true;
                    }
                }
                CheckpointCommand::Abort { id, why } => {
                    if let Some(f) = flights.remove(&id) {
                        fail(id, f, &why);
                    }
                }
                CheckpointCommand::Over => break 'run,
            }
        }
        let requests = std::mem::take(&mut *shared.requests.lock().unwrap_or_else(|p| p.into_inner()));
        for (request, ticket) in requests {
            if stopped || remote {
                ticket.finish(Err(if remote {
                    "the job is spread over several workers: its savepoints are asked of the coordinator".into()
                } else {
                    "every source of the job has finished (its input ended), so no savepoint can be taken any more"
                        .into()
                }));
                continue;
            }
            let id = tracker.trigger_now(now_ms());
            ticket.id.store(id, Ordering::Release);
            let path = request.dir.join(format!("savepoint-{id}-{}", epoch_ms()));
            let dir = store::Folder::at(&path);
            if let Err(e) = dir.as_ref().map_err(String::clone).and_then(|d| store::begin(d).map_err(|e| e.to_string()))
            {
                tracker.abort(id, now_ms());
                ticket.finish(Err(format!("cannot make {}: {e}", path.display())));
                continue;
            }
            let Ok(dir) = dir else { continue };
            shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
            if request.stop {
                shared.stop_at.store(id, Ordering::Release);
                tracker.pause();
            }
            begin_flight(&shared, id, InFlight::new(dir, Some(ticket)), &mut flights, tasks);
            stand_in(&finished, id, &mut made);
            shared.trigger.store(id, Ordering::Release);
        }
        let events = if remote { Vec::new() } else { tracker.poll(now_ms()) };
        for event in events {
            match event {
                CheckpointEvent::Trigger(id) => {
                    let flight = InFlight::new(store.checkpoint_dir(id), None);
                    if let Err(e) = store::begin(&flight.dir) {
                        tracing::warn!("checkpoint {id} of `{}` cannot start: {e}", plan.job);
                        tracker.abort(id, now_ms());
                        fail(id, flight, &format!("cannot make its folder: {e}"));
                        continue;
                    }
                    begin_flight(&shared, id, flight, &mut flights, tasks);
                    stand_in(&finished, id, &mut made);
                    shared.trigger.store(id, Ordering::Release);
                }
                CheckpointEvent::Expired(id) => {
                    tracing::warn!("checkpoint {id} of `{}` expired before every task acknowledged it", plan.job);
                    if let Some(f) = flights.remove(&id) {
                        fail(id, f, "it took longer than the checkpoint timeout");
                    }
                }
            }
        }
        // Read before the channel is found empty: every snapshot taken
        // against an older base was sent before its task moved on, so it
        // has been received by then (see `collect`).
        let floor = shared.rebased.iter().map(|r| r.load(Ordering::Acquire)).min().unwrap_or(0);
        let received = match made.pop_front() {
            Some(ack) => Ok(ack),
            None => rx.recv_timeout(Duration::from_millis(5)),
        };
        let ack = match received {
            Ok(ack) if ack.checkpoint == FINISHED => {
                // It stands in for the task in checkpoints it never saw; one
                // it saw and did not acknowledge was abandoned there.
                let mut abandoned = Vec::new();
                for (&id, f) in &flights {
                    if f.acked.contains(&ack.task) {
                        continue;
                    }
                    if id <= ack.seen {
                        abandoned.push(id);
                    } else {
                        made.push_back(TaskAck {
                            checkpoint: id,
                            task: ack.task,
                            stages: ack.stages.clone(),
                            seen: 0,
                            timing: AckTiming::default(),
                        });
                    }
                }
                for id in abandoned {
                    let why = format!("task {} abandoned it before it finished", global(ack.task));
                    if remote {
                        report(PartReport::Declined { id, why: why.clone() });
                    }
                    tracker.abort(id, now_ms());
                    if let Some(f) = flights.remove(&id) {
                        fail(id, f, &why);
                    }
                }
                report(PartReport::Finished { task: global(ack.task) });
                last_seen.insert(ack.task, ack.seen);
                finished.insert(ack.task, ack.stages);
                continue;
            }
            Ok(ack) => ack,
            // Acknowledgements waiting for their trigger may diff against
            // chains a collection now would forget.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if early.is_empty() && (collect_due || floor > collected_at) {
                    collect(store, &mut chains, &flights, floor, own.as_ref());
                    (collect_due, collected_at) = (false, floor);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let id = ack.checkpoint;
        if remote && id > triggered {
            early.entry(id).or_default().push(ack);
            continue;
        }
        let Some(flight) = flights.get_mut(&id) else { continue };
        if !flight.acked.insert(ack.task) {
            continue;
        }
        let task_stats = TaskCheckpointStats {
            task: global(ack.task),
            vertices: ack.stages.iter().map(|st| st.vertex.clone()).collect(),
            subtask: ack.stages.first().map_or(0, |st| st.subtask),
            ack_ms: ack
                .timing
                .acked_at
                .map_or_else(|| flight.triggered.elapsed(), |at| at.saturating_duration_since(flight.triggered))
                .as_millis() as u64,
            start_delay_ms: ack
                .timing
                .barrier_at
                .map_or(0, |at| at.saturating_duration_since(flight.injected).as_millis() as u64),
            alignment_ms: ack.timing.alignment.as_millis() as u64,
            sync_us: ack.timing.sync.as_micros() as u64,
            bytes: 0,
            in_flight_bytes: ack.stages.iter().map(|st| st.channels.len() as u64).sum(),
            unaligned: ack.timing.unaligned,
            finished: ack.timing.barrier_at.is_none(),
        };
        let before = flight.bytes;
        match write_part(store, flight, id, global(ack.task), ack.stages, &chains) {
            Ok(()) => flight.tasks.push(TaskCheckpointStats { bytes: flight.bytes - before, ..task_stats }),
            Err(e) => {
                let why = format!("cannot write task {}'s part: {e}", global(ack.task));
                tracing::warn!("checkpoint {id} of `{}`: {why}", plan.job);
                if remote {
                    report(PartReport::Declined { id, why: why.clone() });
                }
                tracker.abort(id, now_ms());
                let f = flights.remove(&id).expect("invariant: the flight was just found");
                fail(id, f, &why);
                continue;
            }
        }
        if remote {
            // The worker's part is whole once each of its tasks wrote its
            // own; the coordinator completes the checkpoint.
            if flight.acked.len() == tasks {
                report(PartReport::Part { id, part: spread::WorkerPart::of(flight) });
            } else {
                shared.record(stats(id, flight, CheckpointStatus::InProgress, flight.acked.len()));
            }
            continue;
        }
        match tracker.ack(id, ack.task, now_ms()) {
            AckResult::Pending => {
                let acked = flight.files.len();
                let s = stats(id, flight, CheckpointStatus::InProgress, acked);
                shared.record(s);
            }
            AckResult::Ignored => {}
            AckResult::Complete { .. } => {
                let f = flights.remove(&id).expect("invariant: the flight was just found");
                shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                match write_completion(store, &f, &metadata_of(&plan, id, &f)) {
                    Ok(()) => {
                        on_completed(&plan, &shared, id, f, tasks, &mut flights, &mut chains, true);
                        collect_due = true;
                        store.retain(plan.retain);
                    }
                    Err(why) => {
                        tracing::warn!("checkpoint {id} of `{}`: {why}", plan.job);
                        fail(id, f, &why);
                    }
                }
            }
        }
    }
    for (id, f) in flights {
        fail(id, f, "the job ended before every task acknowledged it");
    }
    for (_, ticket) in std::mem::take(&mut *shared.requests.lock().unwrap_or_else(|p| p.into_inner())) {
        ticket.finish(Err("the job ended before the savepoint could be taken".into()));
    }
}
