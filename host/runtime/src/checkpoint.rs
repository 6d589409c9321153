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
mod store;

pub(crate) use format::{Reader, Writer, read_keyed, write_keyed};
pub use store::{CheckpointStore, Restored};
pub(crate) use store::{StageState, write_stages};

use crate::job::JobShared;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_core::checkpoint::{AckResult, CheckpointEvent, CheckpointTiming, CheckpointTracker};

/// One task's part of a checkpoint: per stage (vertex id, subtask, input
/// watermark, state).
pub(crate) struct TaskAck {
    pub checkpoint: u64,
    pub task: usize,
    pub stages: Vec<(String, u32, i64, Vec<u8>)>,
}

/// How a checkpoint ended, for the REST API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// Still being taken.
    InProgress,
    /// Every task acknowledged it and its metadata is written.
    Completed,
    /// Aborted: it took too long, could not be written, or the job ended.
    Failed,
}

/// One checkpoint of the job: when, how long and how large.
#[derive(Debug, Clone, PartialEq)]
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
    acks: Mutex<mpsc::Sender<TaskAck>>,
    history: Mutex<Vec<CheckpointStats>>,
}

impl CheckpointShared {
    /// A task's part of a checkpoint. The checkpointer may have stopped
    /// (the job is ending): then the part is dropped with the checkpoint.
    pub fn ack(&self, ack: TaskAck) {
        let _ = self.acks.lock().unwrap_or_else(|p| p.into_inner()).send(ack);
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
    /// The checkpoint restored from (numbering goes on after it).
    pub restored: Option<u64>,
    pub vertices: Vec<(String, u32)>,
}

struct InFlight {
    triggered: Instant,
    triggered_at_ms: u64,
    files: Vec<store::TaskFile>,
    bytes: u64,
    failed: bool,
}

/// The checkpointer's thread body, to run once the tasks run.
pub(crate) type Checkpointer = Box<dyn FnOnce(Arc<JobShared>) + Send>;

/// Starts the checkpointer of a job with `tasks` tasks; the shared part
/// goes to the tasks. It stops by itself when the job ends, and takes no
/// more checkpoints once a task has finished (as Flink did before
/// FLIP-147: a finished task has no barrier to pass on).
pub(crate) fn start(plan: Plan, tasks: usize) -> (Arc<CheckpointShared>, Checkpointer) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(CheckpointShared {
        trigger: AtomicU64::new(0),
        completed: AtomicU64::new(plan.restored.unwrap_or(0)),
        exactly_once: plan.exactly_once,
        acks: Mutex::new(tx),
        history: Mutex::new(Vec::new()),
    });
    let cp = shared.clone();
    let run = move |job: Arc<JobShared>| run(plan, tasks, cp, rx, job);
    (shared, Box::new(run))
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn run(plan: Plan, tasks: usize, shared: Arc<CheckpointShared>, rx: mpsc::Receiver<TaskAck>, job: Arc<JobShared>) {
    let store = &plan.store;
    store.discard_incomplete();
    // Never reuse a folder's number, even one of a damaged checkpoint
    // that recovery skipped.
    let first = store.ids().last().copied().unwrap_or(0).max(plan.restored.unwrap_or(0)) + 1;
    let t0 = Instant::now();
    let now_ms = || t0.elapsed().as_millis() as u64;
    let mut tracker = CheckpointTracker::new(plan.timing, tasks, first, now_ms());
    let mut flights: HashMap<u64, InFlight> = HashMap::new();
    let stats = |id: u64, f: &InFlight, status: CheckpointStatus, acknowledged: usize| CheckpointStats {
        id,
        status,
        triggered_at_ms: f.triggered_at_ms,
        duration_ms: f.triggered.elapsed().as_millis() as u64,
        bytes: f.bytes,
        acknowledged,
        tasks,
    };
    let mut stopped = false;
    loop {
        let (running, ended) = job.task_counts();
        if ended {
            break;
        }
        if !stopped && running < tasks {
            stopped = true;
            for id in tracker.stop() {
                if let Some(f) = flights.remove(&id) {
                    shared.record(stats(id, &f, CheckpointStatus::Failed, f.files.len()));
                }
                store.discard(id);
            }
        }
        for event in tracker.poll(now_ms()) {
            match event {
                CheckpointEvent::Trigger(id) => {
                    let flight = InFlight {
                        triggered: Instant::now(),
                        triggered_at_ms: epoch_ms(),
                        files: Vec::new(),
                        bytes: 0,
                        failed: false,
                    };
                    if let Err(e) = store.begin(id) {
                        tracing::warn!("checkpoint {id} of `{}` cannot start: {e}", plan.job);
                        tracker.abort(id, now_ms());
                        shared.record(stats(id, &flight, CheckpointStatus::Failed, 0));
                        continue;
                    }
                    shared.record(stats(id, &flight, CheckpointStatus::InProgress, 0));
                    flights.insert(id, flight);
                    shared.trigger.store(id, Ordering::Release);
                }
                CheckpointEvent::Expired(id) => {
                    tracing::warn!("checkpoint {id} of `{}` expired before every task acknowledged it", plan.job);
                    if let Some(f) = flights.remove(&id) {
                        shared.record(stats(id, &f, CheckpointStatus::Failed, f.files.len()));
                    }
                    store.discard(id);
                }
            }
        }
        let ack = match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(ack) => ack,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let id = ack.checkpoint;
        let Some(flight) = flights.get_mut(&id) else { continue };
        if flight.failed {
            continue;
        }
        match store.write_task(id, &format!("task-{}", ack.task), &write_stages(&ack.stages)) {
            Ok(file) => {
                flight.bytes += file.bytes;
                flight.files.push(file);
            }
            Err(e) => {
                tracing::warn!("checkpoint {id} of `{}`: cannot write task {}'s part: {e}", plan.job, ack.task);
                flight.failed = true;
                tracker.abort(id, now_ms());
                let f = flights.remove(&id).expect("invariant: the flight was just found");
                shared.record(stats(id, &f, CheckpointStatus::Failed, f.files.len()));
                store.discard(id);
                continue;
            }
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
                let metadata = store::Metadata {
                    format: 1,
                    job: plan.job.clone(),
                    checkpoint: id,
                    completed_at_ms: epoch_ms(),
                    vertices: plan
                        .vertices
                        .iter()
                        .map(|(id, p)| store::VertexParallelism { id: id.clone(), parallelism: *p })
                        .collect(),
                    tasks: f.files.clone(),
                };
                match store.complete(&metadata) {
                    Ok(()) => {
                        shared.record(stats(id, &f, CheckpointStatus::Completed, tasks));
                        shared.completed.store(id, Ordering::Release);
                        // Subsumed checkpoints go with retention.
                        for old in flights.keys().copied().filter(|&o| o < id).collect::<Vec<_>>() {
                            if let Some(f) = flights.remove(&old) {
                                shared.record(stats(old, &f, CheckpointStatus::Failed, f.files.len()));
                            }
                            store.discard(old);
                        }
                        store.retain(plan.retain);
                    }
                    Err(e) => {
                        tracing::warn!("checkpoint {id} of `{}`: cannot write its metadata: {e}", plan.job);
                        shared.record(stats(id, &f, CheckpointStatus::Failed, tasks));
                        store.discard(id);
                    }
                }
            }
        }
    }
    for (id, f) in flights {
        shared.record(stats(id, &f, CheckpointStatus::Failed, f.files.len()));
        store.discard(id);
    }
}
