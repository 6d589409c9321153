//! Checkpoints of a job spread over several workers, split as Flink splits
//! them between its JobManager's checkpoint coordinator and the tasks.
//! Each worker's checkpointer writes its own tasks' parts into the job's
//! checkpoint folder and reports them ([`PartReport`]); the coordinator's
//! [`Ledger`] triggers checkpoints and savepoints, counts the parts of
//! every task, writes the metadata that completes a checkpoint, and then
//! tells the workers ([`CheckpointCommand`]), whose sinks commit only
//! then. The messages travel the control plane: nothing here touches the
//! network.

use super::{
    CheckpointShared, CheckpointStats, CheckpointStatus, InFlight, Plan, Savepoint, SavepointRequest,
    TaskCheckpointStats, begin_flight, epoch_ms, fail_flight, metadata_of, on_completed, stats_of, store,
    write_completion,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use weir_core::checkpoint::{AckResult, CheckpointEvent, CheckpointTracker};

/// What the coordinator tells a worker's checkpointer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum CheckpointCommand {
    /// Take checkpoint `id` (sources inject its barrier). A savepoint's
    /// barrier waits for [`CheckpointCommand::Inject`]: every worker must
    /// know it is one before any task meets it (a savepoint is taken
    /// whole and aligned), and another worker's barrier may come first.
    Trigger {
        /// Its number.
        id: u64,
        /// For a savepoint: its folder, and whether the job stops after it.
        savepoint: Option<SavepointTarget>,
    },
    /// Every worker is ready for savepoint `id`: sources inject it.
    Inject {
        /// Its number.
        id: u64,
    },
    /// Checkpoint `id` is complete (its metadata is written): tasks may
    /// commit it.
    Complete {
        /// Its number.
        id: u64,
    },
    /// Checkpoint `id` was aborted.
    Abort {
        /// Its number.
        id: u64,
        /// Why.
        why: String,
    },
    /// The job has ended: no more checkpoints.
    Over,
}

/// A savepoint's folder, as the coordinator made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointTarget {
    /// Its folder (`…/savepoint-<n>-<time>`).
    pub folder: PathBuf,
    /// Stop the job after it (sources stop after its barrier).
    pub stop: bool,
}

/// What a worker's checkpointer tells the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum PartReport {
    /// Every task of the worker has written its part of checkpoint `id`.
    Part {
        /// Its number.
        id: u64,
        /// What the worker wrote.
        part: WorkerPart,
    },
    /// The worker cannot take checkpoint `id` (a file it cannot write, a
    /// task that finished before its barrier came).
    Declined {
        /// Its number.
        id: u64,
        /// Why.
        why: String,
    },
    /// Task `task` (its number in the whole job) finished: its final
    /// snapshot stands for it from now on.
    Finished {
        /// The task.
        task: usize,
    },
    /// The worker knows savepoint `id` is one: its barrier may come.
    Ready {
        /// Its number.
        id: u64,
    },
}

/// A worker's part of a checkpoint: the files it wrote, for the metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WorkerPart {
    files: Vec<store::TaskFile>,
    shared: Vec<store::SharedChain>,
    bytes: u64,
    tasks: Vec<TaskCheckpointStats>,
}

impl WorkerPart {
    pub(super) fn of(flight: &InFlight) -> WorkerPart {
        WorkerPart {
            files: flight.files.clone(),
            shared: flight.shared.clone(),
            bytes: flight.bytes,
            tasks: flight.tasks.clone(),
        }
    }
}

/// A worker's end of a spread job's checkpoints: commands in, reports out.
pub struct CheckpointLink {
    /// From the coordinator, in order. Closed: the coordinator is gone,
    /// and the checkpointer stops.
    pub commands: mpsc::Receiver<CheckpointCommand>,
    /// To the coordinator.
    pub reports: Box<dyn Fn(PartReport) + Send>,
}

/// The coordinator's end: reports in (from every worker), commands out
/// (to every worker).
pub struct LedgerLink {
    /// From the workers.
    pub reports: mpsc::Receiver<PartReport>,
    /// To every worker of the job.
    pub commands: Box<dyn Fn(CheckpointCommand) + Send>,
    /// How many workers run the job (each answers a savepoint's trigger
    /// with [`PartReport::Ready`]).
    pub workers: usize,
}

/// The checkpoints of one execution of a spread job, kept by the
/// coordinator: it triggers them, and completes each once every task's
/// part is written. It runs until [`Ledger::stop`] (or drop).
pub struct Ledger {
    shared: Arc<CheckpointShared>,
    over: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Ledger {
    pub(crate) fn start(plan: Plan, tasks: usize, link: LedgerLink) -> Result<Ledger, String> {
        let (shared, _acks) = CheckpointShared::new(&plan, tasks);
        let over = Arc::new(AtomicBool::new(false));
        let (s, o) = (shared.clone(), over.clone());
        let thread = std::thread::Builder::new()
            .name("weir-ledger".into())
            .spawn(move || run(plan, tasks, &s, link, &o))
            .map_err(|e| format!("cannot start the checkpoint coordinator's thread: {e}"))?;
        Ok(Ledger { shared, over, thread: Mutex::new(Some(thread)) })
    }

    /// The checkpoints so far, oldest first.
    pub fn history(&self) -> Vec<CheckpointStats> {
        self.shared.history()
    }

    /// Asks for a savepoint.
    pub fn savepoint(&self, request: SavepointRequest) -> Arc<Savepoint> {
        self.shared.savepoint(request)
    }

    /// The job has ended: checkpoints in progress fail, workers are told,
    /// and the ledger's thread ends (waited for).
    pub fn stop(&self) {
        self.over.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(plan: Plan, tasks: usize, shared: &CheckpointShared, link: LedgerLink, over: &AtomicBool) {
    let store = &plan.store;
    store.discard_incomplete();
    let t0 = Instant::now();
    let now_ms = || t0.elapsed().as_millis() as u64;
    let mut tracker = CheckpointTracker::new(plan.timing, tasks, plan.first, now_ms());
    let mut flights: HashMap<u64, InFlight> = HashMap::new();
    let mut finished: HashSet<usize> = HashSet::new();
    // Savepoints triggered: the workers ready for them so far.
    let mut ready: HashMap<u64, usize> = HashMap::new();
    let mut stopped = false;
    let send = |c: CheckpointCommand| (link.commands)(c);
    let fail = |id: u64, f: InFlight, why: &str| {
        fail_flight(shared, id, f, why, tasks, true);
        send(CheckpointCommand::Abort { id, why: why.to_owned() });
    };
    while !over.load(Ordering::Acquire) {
        let requests = std::mem::take(&mut *shared.requests.lock().unwrap_or_else(|p| p.into_inner()));
        for (request, ticket) in requests {
            if stopped {
                ticket.finish(Err("every source of the job has finished (its input ended), so no savepoint \
                                   can be taken any more"
                    .into()));
                continue;
            }
            let id = tracker.trigger_now(now_ms());
            ticket.id.store(id, Ordering::Release);
            let path = request.dir.join(format!("savepoint-{id}-{}", epoch_ms()));
            let dir = match store::Folder::at(&path) {
                Ok(d) => d,
                Err(e) => {
                    tracker.abort(id, now_ms());
                    ticket.finish(Err(format!("cannot make {}: {e}", path.display())));
                    continue;
                }
            };
            if let Err(e) = store::begin(&dir) {
                tracker.abort(id, now_ms());
                ticket.finish(Err(format!("cannot make {}: {e}", path.display())));
                continue;
            }
            shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
            if request.stop {
                tracker.pause();
            }
            begin_flight(shared, id, InFlight::new(dir, Some(ticket)), &mut flights, tasks);
            ready.insert(id, 0);
            let savepoint = Some(SavepointTarget { folder: path, stop: request.stop });
            send(CheckpointCommand::Trigger { id, savepoint });
        }
        for event in tracker.poll(now_ms()) {
            match event {
                CheckpointEvent::Trigger(id) => {
                    let flight = InFlight::new(store.checkpoint_dir(id), None);
                    if let Err(e) = store::begin(&flight.dir) {
                        tracing::warn!("checkpoint {id} of `{}` cannot start: {e}", plan.job);
                        tracker.abort(id, now_ms());
                        fail_flight(shared, id, flight, &format!("cannot make its folder: {e}"), tasks, true);
                        continue;
                    }
                    begin_flight(shared, id, flight, &mut flights, tasks);
                    send(CheckpointCommand::Trigger { id, savepoint: None });
                }
                CheckpointEvent::Expired(id) => {
                    tracing::warn!("checkpoint {id} of `{}` expired before every task acknowledged it", plan.job);
                    if let Some(f) = flights.remove(&id) {
                        fail(id, f, "it took longer than the checkpoint timeout");
                    }
                }
            }
        }
        let report = match link.reports.recv_timeout(Duration::from_millis(5)) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // The workers' links are gone; the job ends with them.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        match report {
            PartReport::Ready { id } => {
                let Some(n) = ready.get_mut(&id) else { continue };
                *n += 1;
                if *n >= link.workers {
                    ready.remove(&id);
                    if flights.contains_key(&id) {
                        send(CheckpointCommand::Inject { id });
                    }
                }
            }
            PartReport::Finished { task } => {
                finished.insert(task);
                if !stopped && plan.sources.iter().all(|t| finished.contains(t)) {
                    stopped = true;
                    tracing::info!("every source of `{}` finished: no more checkpoints", plan.job);
                    for id in tracker.stop() {
                        if let Some(f) = flights.remove(&id) {
                            fail(id, f, "every source of the job finished before every task acknowledged it");
                        }
                    }
                }
            }
            PartReport::Declined { id, why } => {
                tracker.abort(id, now_ms());
                if let Some(f) = flights.remove(&id) {
                    tracing::warn!("checkpoint {id} of `{}` was declined: {why}", plan.job);
                    fail(id, f, &why);
                }
            }
            PartReport::Part { id, part } => {
                let Some(flight) = flights.get_mut(&id) else { continue };
                flight.files.extend(part.files);
                flight.shared.extend(part.shared);
                flight.bytes += part.bytes;
                let mut result = AckResult::Ignored;
                for t in part.tasks {
                    if flight.acked.insert(t.task) {
                        result = tracker.ack(id, t.task, now_ms());
                        flight.tasks.push(t);
                    }
                }
                match result {
                    AckResult::Pending => {
                        shared.record(stats_of(id, flight, CheckpointStatus::InProgress, flight.acked.len(), tasks))
                    }
                    AckResult::Ignored => {}
                    AckResult::Complete { .. } => {
                        let f = flights.remove(&id).expect("invariant: the flight was just found");
                        shared.savepoints.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        if let Err(why) = every_file_there(store, &f) {
                            tracing::warn!("checkpoint {id} of `{}`: {why}", plan.job);
                            fail(id, f, &why);
                            continue;
                        }
                        match write_completion(store, &f, &metadata_of(&plan, id, &f)) {
                            Ok(()) => {
                                let mut chains = Default::default();
                                on_completed(&plan, shared, id, f, tasks, &mut flights, &mut chains, true);
                                send(CheckpointCommand::Complete { id });
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
        }
    }
    for (id, f) in flights {
        // Their folders stay until the next attempt's start discards
        // them: a worker still writing into one (its part lost, not yet
        // fenced) cannot meet a new checkpoint of the same number.
        fail_flight(shared, id, f, "the job ended before every task acknowledged it", tasks, false);
        send(CheckpointCommand::Abort { id, why: "the job ended".into() });
    }
    for (_, ticket) in std::mem::take(&mut *shared.requests.lock().unwrap_or_else(|p| p.into_inner())) {
        ticket.finish(Err("the job ended before the savepoint could be taken".into()));
    }
    send(CheckpointCommand::Over);
}

/// Whether the coordinator sees every file the workers say they wrote:
/// a spread job's checkpoints need storage they all share.
fn every_file_there(store: &store::CheckpointStore, f: &InFlight) -> Result<(), String> {
    let shared_dir = store.dir();
    let missing = |what: &str, e: String| {
        format!(
            "{what}, which a worker wrote, is not there for the coordinator ({e}): a job spread over several \
             workers needs its `checkpoints: dir` (and savepoint folder) on storage the coordinator and every \
             worker share, such as object storage (`s3://…`) or a shared volume"
        )
    };
    for t in &f.files {
        match f.dir.exists(&t.file) {
            Ok(true) => {}
            Ok(false) => return Err(missing(&f.dir.display_file(&t.file), "not found".into())),
            Err(e) => return Err(missing(&f.dir.display_file(&t.file), e.to_string())),
        }
    }
    for file in f.shared.iter().flat_map(|c| c.files.iter()) {
        match store.shared_exists(&file.file) {
            Ok(true) => {}
            Ok(false) => return Err(missing(&format!("{}/{}", shared_dir.display(), file.file), "not found".into())),
            Err(e) => return Err(missing(&format!("{}/{}", shared_dir.display(), file.file), e.to_string())),
        }
    }
    Ok(())
}
