//! Starting a job (components, inboxes, routers and tasks built from the
//! job graph, one thread per task) and the [`JobHandle`] that watches and
//! cancels it: live metrics, status, the first error and the exception
//! history. Every failure ends the job promptly: the first real error
//! cancels every source and closes every inbox, which wakes every task,
//! whatever the graph's shape and order.

use crate::checkpoint::{CheckpointShared, CheckpointStats, CheckpointStore, Restored, Savepoint, SavepointRequest};
use crate::exchange::{Inbox, InputSender, RemoteInput, Route, Router};
use crate::gate::InputGate;
use crate::graph::{JobGraph, Partition, VertexKind};
use crate::metrics::{SubtaskCounters, SubtaskMetrics, TaskTimes};
use crate::operators::Groups;
use crate::operators::{
    MapOp, NativeMapOp, NativeProcessOp, Operator, PassThrough, ProcessOp, SinkOp, WindowOp, WindowWasm,
};
use crate::state::Backends;
use crate::task::{Chain, Head, Stage, Tail, TaskError, VertexInfo, run_task};
use crate::{Native, RunOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_connectors::{FileSink, Sink, open_source};
use weir_core::spec::{EvictorSpec, OperatorKind, SinkFormat, SinkType, SourceType, Spec, WindowSpec};
use weir_wasm::{
    Component, EvictorInstance, FunctionInstance, MapInstance, ProcessInstance, SessionGapInstance, TriggerInstance,
    WasmRuntime, World,
};

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A component could not be loaded or does not fit its world.
    #[error("operator `{operator}`: {source}")]
    Load {
        /// The operator id.
        operator: String,
        /// The load error.
        source: weir_wasm::LoadError,
    },
    /// A task could not start or failed.
    #[error("{0}")]
    Task(TaskError),
    /// The job needs more than one process can run.
    #[error("{0}")]
    TooLarge(String),
    /// The state backend could not be set up.
    #[error("{0}")]
    State(String),
    /// The job was cancelled before it finished.
    #[error("the job was cancelled")]
    Cancelled,
}

/// The states of a job, after Flink's `JobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// Tasks are running.
    Running,
    /// A task failed; the others are being stopped.
    Failing,
    /// The job failed (see [`JobHandle::errors`]).
    Failed,
    /// Cancellation was asked for; tasks are stopping.
    Cancelling,
    /// The job was cancelled.
    Canceled,
    /// Every task reached the end of its input.
    Finished,
}

impl JobStatus {
    /// Whether the job has ended (finished, failed or canceled).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled | JobStatus::Finished)
    }
}

/// Records in and out of one vertex, over all its subtasks, and each
/// subtask's metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VertexMetrics {
    /// The vertex id.
    pub id: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// `numRecordsIn`.
    pub records_in: u64,
    /// `numRecordsOut`.
    pub records_out: u64,
    /// Per subtask, in order.
    pub subtasks: Vec<SubtaskMetrics>,
}

impl VertexMetrics {
    fn of(id: &str, parallelism: u32, counters: &[SubtaskCounters]) -> VertexMetrics {
        let subtasks: Vec<SubtaskMetrics> = counters.iter().enumerate().map(|(s, c)| c.snapshot(s as u32)).collect();
        VertexMetrics {
            id: id.to_owned(),
            parallelism,
            records_in: subtasks.iter().map(|s| s.records_in).sum(),
            records_out: subtasks.iter().map(|s| s.records_out).sum(),
            subtasks,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSummary {
    /// Per vertex, in spec order.
    pub vertices: Vec<VertexMetrics>,
    /// Side-output events that no vertex reads: (operator, tag, count).
    pub unread_side_outputs: Vec<(String, String, u64)>,
    /// Wall time from start to the last task's end.
    pub elapsed: Duration,
}

struct Progress {
    running: usize,
    status: JobStatus,
    errors: Vec<TaskError>,
    unread: HashMap<(usize, String), u64>,
    ended_at: Option<Instant>,
}

/// What the job's tasks and its handle share.
pub(crate) struct JobShared {
    /// Checkpoints, when the spec asks for them.
    pub checkpoints: Option<Arc<CheckpointShared>>,
    cancel: AtomicBool,
    inboxes: Mutex<Vec<Arc<Inbox>>>,
    /// Closers of channels to other processes: stopping the job wakes
    /// tasks waiting for their credit.
    pub(crate) remote_closers: Mutex<Vec<Arc<dyn Fn() + Send + Sync>>>,
    /// Per vertex, per subtask.
    pub counters: Vec<Vec<SubtaskCounters>>,
    progress: Mutex<Progress>,
    ended: Condvar,
}

impl JobShared {
    #[cfg(test)]
    /// A running job whose vertices have `parallelism` subtasks each, every
    /// subtask its own task, with no inbox yet.
    pub fn new(parallelism: Vec<u32>) -> JobShared {
        let counters = parallelism
            .iter()
            .map(|&p| (0..p).map(|_| SubtaskCounters::new(Arc::new(TaskTimes::default()))).collect())
            .collect();
        JobShared::with_counters(counters, None)
    }

    /// A running job with these counters, with no inbox yet.
    fn with_counters(counters: Vec<Vec<SubtaskCounters>>, checkpoints: Option<Arc<CheckpointShared>>) -> JobShared {
        JobShared {
            checkpoints,
            cancel: AtomicBool::new(false),
            inboxes: Mutex::new(Vec::new()),
            remote_closers: Mutex::new(Vec::new()),
            counters,
            progress: Mutex::new(Progress {
                running: 0,
                status: JobStatus::Running,
                errors: Vec::new(),
                unread: HashMap::new(),
                ended_at: None,
            }),
            ended: Condvar::new(),
        }
    }

    /// Whether sources should stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tasks still running, and whether the job still runs (not failing,
    /// cancelling or ended).
    pub fn task_counts(&self) -> (usize, bool) {
        let p = self.progress();
        (p.running, p.running == 0 || p.status != JobStatus::Running)
    }

    /// Stops sources and closes every inbox: every task wakes and ends.
    fn stop_all(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        for inbox in self.inboxes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            inbox.close();
        }
        for close in self.remote_closers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            close();
        }
    }

    /// Whether every task ended, and none failed or was cancelled.
    pub(crate) fn finished(&self) -> bool {
        self.progress().status == JobStatus::Finished
    }

    /// Whether the job still runs (not failing, cancelling or ended).
    pub(crate) fn running(&self) -> bool {
        self.progress().status == JobStatus::Running
    }

    /// Something outside the tasks failed the job (a channel from another
    /// process broke): it is the job's error, and every task stops.
    /// Once the job is stopping anyway, channels break as it stops: that
    /// is no error of its own, and is dropped.
    pub(crate) fn fail(&self, e: TaskError) {
        let mut p = self.progress();
        if p.status != JobStatus::Running || self.cancelled() {
            return;
        }
        p.errors.push(e);
        p.status = JobStatus::Failing;
        drop(p);
        self.stop_all();
    }
}

impl Drop for JobShared {
    /// A job dropped (one that failed to start, too) closes its inboxes:
    /// a channel from another process blocked in one wakes.
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl JobShared {
    /// A task ended with `result`.
    fn task_ended(&self, result: Result<Vec<(usize, String, u64)>, TaskError>) {
        let mut p = self.progress();
        p.running -= 1;
        match result {
            Ok(unread) => {
                for (v, tag, n) in unread {
                    *p.unread.entry((v, tag)).or_default() += n;
                }
            }
            Err(e) if e.cancelled => {}
            Err(e) => {
                p.errors.push(e);
                if p.status == JobStatus::Running {
                    p.status = JobStatus::Failing;
                    drop(p);
                    self.stop_all();
                    p = self.progress();
                }
            }
        }
        if p.running == 0 {
            p.status = match p.status {
                JobStatus::Running => JobStatus::Finished,
                JobStatus::Failing => JobStatus::Failed,
                JobStatus::Cancelling => JobStatus::Canceled,
                s => s,
            };
            p.ended_at = Some(Instant::now());
            self.ended.notify_all();
        }
    }
}

/// A running job: watch it, cancel it, wait for its end.
pub struct JobHandle {
    shared: Arc<JobShared>,
    /// Per task: whether it ended.
    task_finished: Vec<Arc<AtomicBool>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// A spread job's checkpointer, which outlives its tasks when they
    /// finish (their final snapshots stand in until the job ends): joined
    /// only when they did not.
    detached: Mutex<Option<std::thread::JoinHandle<()>>>,
    vertices: Vec<(String, u32)>,
    started: Instant,
}

impl JobHandle {
    /// The job's status now.
    pub fn status(&self) -> JobStatus {
        self.shared.progress().status
    }

    /// Records in and out per vertex, now.
    pub fn metrics(&self) -> Vec<VertexMetrics> {
        let vertices = self.vertices.iter().zip(&self.shared.counters);
        vertices.map(|((id, parallelism), c)| VertexMetrics::of(id, *parallelism, c)).collect()
    }

    /// Every task failure so far, first (the root cause) first.
    pub fn errors(&self) -> Vec<TaskError> {
        self.shared.progress().errors.clone()
    }

    /// Asks the job to stop; [`JobHandle::wait`] then returns
    /// [`JobError::Cancelled`] (or the failure that came first).
    pub fn cancel(&self) {
        let mut p = self.shared.progress();
        if p.status == JobStatus::Running {
            p.status = JobStatus::Cancelling;
        }
        drop(p);
        self.shared.stop_all();
    }

    /// Waits up to `timeout` for the job to end; its status then.
    pub fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        let p = self.shared.progress();
        let (p, _) =
            self.shared.ended.wait_timeout_while(p, timeout, |p| p.running > 0).unwrap_or_else(|e| e.into_inner());
        p.status
    }

    /// The job's checkpoints so far, oldest first (empty without a
    /// `checkpoints:` section).
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.shared.checkpoints.as_ref().map_or_else(Vec::new, |c| c.history())
    }

    /// Asks for a savepoint (see [`SavepointRequest`]); refused when the
    /// job takes no checkpoints.
    pub fn savepoint(&self, request: SavepointRequest) -> Result<Arc<Savepoint>, String> {
        match &self.shared.checkpoints {
            Some(c) => Ok(c.savepoint(request)),
            None => Err("the job takes no checkpoints: savepoints need a `checkpoints:` section in its spec".into()),
        }
    }

    /// Whether every task still running has been told checkpoint `id`
    /// completed (its sinks committed it).
    pub fn committed(&self, id: u64) -> bool {
        let Some(c) = &self.shared.checkpoints else { return true };
        let finished = |t: usize| self.task_finished.get(t).is_some_and(|f| f.load(Ordering::Acquire));
        c.all_notified(id, &finished)
    }

    /// The latest completed checkpoint of this execution, or the one it
    /// was restored from.
    pub fn latest_checkpoint(&self) -> Option<u64> {
        let c = self.shared.checkpoints.as_ref()?.completed.load(Ordering::Acquire);
        (c > 0).then_some(c)
    }

    /// The vertices, in spec order: (id, parallelism).
    pub fn vertices(&self) -> &[(String, u32)] {
        &self.vertices
    }

    /// Waits for the job to end: its summary, or its first error. Can be
    /// called again, from any thread, with the same answer.
    pub fn wait(&self) -> Result<JobSummary, JobError> {
        {
            let p = self.shared.progress();
            let _ended = self.shared.ended.wait_while(p, |p| p.running > 0).unwrap_or_else(|e| e.into_inner());
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            // Tasks catch their own panics and report them as errors.
            let _ = t.join();
        }
        if self.status() != JobStatus::Finished {
            // Failed or cancelled: it stops now, and has stopped writing
            // before the job is said to have ended.
            let detached = self.detached.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = detached {
                let _ = t.join();
            }
        }
        let p = self.shared.progress();
        if let Some(e) = p.errors.first() {
            return Err(JobError::Task(e.clone()));
        }
        if p.status == JobStatus::Canceled {
            return Err(JobError::Cancelled);
        }
        let vertices = self.metrics();
        let mut unread_side_outputs: Vec<(String, String, u64)> =
            p.unread.iter().map(|((v, tag), n)| (self.vertices[*v].0.clone(), tag.clone(), *n)).collect();
        unread_side_outputs.sort();
        let elapsed = p.ended_at.unwrap_or_else(Instant::now) - self.started;
        Ok(JobSummary { vertices, unread_side_outputs, elapsed })
    }
}

impl Drop for JobHandle {
    /// A handle dropped while the job runs cancels it.
    fn drop(&mut self) {
        let waited = self.threads.get_mut().map_or(true, |t| t.is_empty());
        if !waited && !self.status().is_terminal() {
            // `wait` takes the threads, so this is a handle nobody waited on.
            self.cancel();
        }
    }
}

/// Runs `spec` to the end of its input (bounded sources) and returns what
/// every vertex did, or the first error.
pub fn run(spec: &Spec, rt: &WasmRuntime, options: RunOptions) -> Result<JobSummary, JobError> {
    start(spec, rt, options)?.wait()
}

/// Starts `spec`: loads its components, builds every task and starts them
/// on their threads. Errors before anything runs (a component that does
/// not load, a file that cannot be opened, an instance that cannot be
/// created) come back here; later ones through the handle.
pub fn start(spec: &Spec, rt: &WasmRuntime, mut options: RunOptions) -> Result<JobHandle, JobError> {
    let started = Instant::now();
    let graph = JobGraph::from_spec(spec);
    let mut placement = options.placement.take();
    let link = placement.as_mut().and_then(|p| p.checkpoints.take());
    let local = |s: u32| placement.as_ref().is_none_or(|p| p.is_local(s));
    if placement.is_some() && spec.checkpoints.is_some() && link.is_none() {
        return Err(JobError::State(
            "a job spread over several workers takes checkpoints only with the coordinator's link to them".into(),
        ));
    }
    let instances: usize = graph
        .vertices
        .iter()
        .filter(|v| matches!(&v.kind, VertexKind::Operator(o) if !options.native.contains_key(&o.id)))
        .map(|v| {
            let VertexKind::Operator(o) = &v.kind else { return 0 };
            let per_subtask = if o.kind.is_window() {
                usize::from(matches!(o.evictor, Some(EvictorSpec::Component { .. })))
                    + usize::from(o.trigger.as_ref().is_some_and(|t| t.component().is_some()))
                    + usize::from(matches!(o.window, Some(WindowSpec::Session { gap: Some(_), .. })))
                    + usize::from(o.function.as_ref().is_some_and(|f| f.component.is_some()))
            } else {
                1
            };
            per_subtask * v.parallelism as usize
        })
        .sum();
    if instances > options.max_instances {
        return Err(JobError::TooLarge(format!(
            "the job needs {instances} Wasm instances (one per operator subtask), and one process runs at most {} \
             (each reserves 8 GiB of address space for its memory); lower the parallelism, or split the pipeline \
             into jobs",
            options.max_instances
        )));
    }
    let names = Arc::new(vertex_infos(&graph));
    let start_err = |v: usize, subtask: u32, message: String| {
        JobError::Task(TaskError {
            what: names[v].what,
            vertex: names[v].id.clone(),
            subtask,
            record: None,
            message,
            cancelled: false,
        })
    };

    // Components: loaded and checked once per file and world, however
    // many operators use it (a chain of thousands of operators of one
    // component reads, verifies and links it once).
    let mut components: HashMap<(usize, World), Component> = HashMap::new();
    let mut loaded: HashMap<(&std::path::Path, World), Component> = HashMap::new();
    for (vi, v) in graph.vertices.iter().enumerate() {
        let VertexKind::Operator(o) = &v.kind else { continue };
        let wasm: Vec<(&std::path::Path, World)> = if options.native.contains_key(&o.id) {
            Vec::new()
        } else {
            let world = |name: &str| World::named(name).expect("invariant: the spec names only worlds that exist");
            o.components().into_iter().map(|(path, name)| (path, world(name))).collect()
        };
        for (path, world) in wasm {
            let c = match loaded.entry((path, world)) {
                std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                std::collections::hash_map::Entry::Vacant(e) => e
                    .insert(rt.load(path, world).map_err(|source| JobError::Load { operator: o.id.clone(), source })?)
                    .clone(),
            };
            components.insert((vi, world), c);
        }
    }

    // Keyed state: one store per job (per worker, once jobs share one),
    // its memory budget shared evenly by the keyed subtasks.
    let keyed: usize = graph
        .vertices
        .iter()
        .filter(|v| matches!(&v.kind, VertexKind::Operator(o) if o.kind != OperatorKind::Map))
        .map(|v| v.parallelism as usize)
        .sum();
    let backends = Backends::new(&spec.state, keyed).map_err(JobError::State)?;

    // Counters: per vertex and subtask; the vertices of one chain subtask
    // (one task, one thread) share its times.
    let chains = graph.chains();
    let mut counters: Vec<Vec<Option<SubtaskCounters>>> =
        graph.vertices.iter().map(|v| (0..v.parallelism).map(|_| None).collect()).collect();
    for chain in &chains {
        let times: Vec<Arc<TaskTimes>> =
            (0..graph.vertices[chain[0]].parallelism).map(|_| Arc::new(TaskTimes::default())).collect();
        for &v in chain {
            for (slot, t) in counters[v].iter_mut().zip(&times) {
                *slot = Some(SubtaskCounters::new(t.clone()));
            }
        }
    }
    let counters = counters
        .into_iter()
        .map(|v| v.into_iter().map(|c| c.expect("invariant: every vertex is in a chain")).collect())
        .collect();
    // Checkpoints: where, how often; the checkpointer starts with the tasks.
    let restore = options.restore.as_deref();
    if let Some(r) = restore {
        check_restorable(r, &graph, options.allow_non_restored_state).map_err(JobError::State)?;
    }
    let mut checkpointer = None;
    // A spread job's checkpointer serves its finished tasks until the
    // coordinator's end: the job's end does not wait for it.
    let detached = link.is_some();
    let checkpoints = match checkpoint_plan(spec, &graph, options.checkpoint_name.clone(), restore, &local)? {
        None => None,
        Some((mut plan, tasks)) => {
            plan.link = link;
            let (cp, run) = crate::checkpoint::start(plan, tasks);
            checkpointer = Some(run);
            Some(cp)
        }
    };
    let exactly_once = checkpoints.as_ref().is_none_or(|c| c.exactly_once);
    let restored_id = restore.map_or(0, |r| r.checkpoint);
    let shared = Arc::new(JobShared::with_counters(counters, checkpoints));

    // Inboxes: one per (chain head with inputs, subtask), a queue per input.
    let mut inboxes: HashMap<(usize, u32), Arc<Inbox>> = HashMap::new();
    for chain in &chains {
        let head = chain[0];
        if graph.vertices[head].inputs.is_empty() {
            continue;
        }
        let inputs = graph.input_layout(head).0;
        for s in (0..graph.vertices[head].parallelism).filter(|&s| local(s)) {
            let inbox = Inbox::new(inputs, options.channel_bytes);
            if let Some(p) = &placement {
                let v = &graph.vertices[head];
                let bases = graph.input_layout(head).1;
                let edges = v.inputs.iter().zip(bases).map(|(e, &base)| {
                    let forward = e.partition == crate::graph::Partition::Forward;
                    let n = if forward { 1 } else { graph.vertices[e.from].parallelism as usize };
                    (base, n, forward)
                });
                let keyed = v.inputs.iter().any(|e| matches!(e.partition, crate::graph::Partition::Hash(_)));
                let remote = crate::remote::RemoteInbox {
                    inbox: inbox.clone(),
                    inputs,
                    edges: edges.collect(),
                    groups: keyed
                        .then(|| weir_core::keys::key_group_range(s, graph.max_parallelism, v.parallelism))
                        .flatten(),
                    vertex: v.id.clone(),
                    subtask: s,
                    what: names[head].what,
                    job: Arc::downgrade(&shared),
                };
                p.exchange.serve(&graph.vertices[head].id, s, remote);
            }
            inboxes.insert((head, s), inbox);
        }
    }
    *shared.inboxes.lock().unwrap_or_else(|p| p.into_inner()) = inboxes.values().cloned().collect();
    let routers_for = |v: usize, tag: Option<&str>, s: u32| -> Vec<Router> {
        let mut out = Vec::new();
        for &(c, ei) in graph.consumers(v) {
            let e = &graph.vertices[c].inputs[ei];
            if e.tag.as_deref() != tag || graph.chained_to_upstream(c) {
                continue;
            }
            let base = graph.input_layout(c).1[ei];
            let p = graph.vertices[c].parallelism;
            let id = graph.vertices[c].id.clone();
            let to = |t: u32, input: usize| match &placement {
                Some(p) if !p.is_local(t) => {
                    let failure = crate::remote::ChannelFailure {
                        job: Arc::downgrade(&shared),
                        producer: (names[v].what, names[v].id.clone(), s),
                        consumer: (graph.vertices[c].id.clone(), t),
                    };
                    let (sender, close) = p.exchange.connect(&graph.vertices[c].id, t, input, s, failure.clone());
                    shared.remote_closers.lock().unwrap_or_else(|p| p.into_inner()).push(close);
                    let channel = crate::metrics::ChannelTimes::new(&graph.vertices[c].id, t, true);
                    InputSender::Remote(Arc::new(RemoteInput { sender: Mutex::new(sender), failure, channel }))
                }
                _ => InputSender::Local {
                    inbox: inboxes[&(c, t)].clone(),
                    input,
                    channel: crate::metrics::ChannelTimes::new(&graph.vertices[c].id, t, false),
                },
            };
            out.push(match &e.partition {
                Partition::Forward => Router::new(id, Route::Forward, vec![to(s, base)]),
                Partition::Hash(sel) => Router::new(
                    id,
                    Route::Hash { selector: sel.clone(), max_parallelism: graph.max_parallelism },
                    (0..p).map(|t| to(t, base + s as usize)).collect(),
                )
                .lingering(
                    Duration::from_millis(spec.buffer_timeout_ms),
                    spec.batch_size,
                    options.batch_bytes,
                ),
                Partition::Rebalance => Router::new(
                    id,
                    Route::Rebalance { next: s as usize },
                    (0..p).map(|t| to(t, base + s as usize)).collect(),
                ),
                Partition::Rescale => {
                    // Flink's rescale: upstream subtask `s` of `up` feeds its
                    // share of the `p` downstream subtasks (or one of them).
                    let up = graph.vertices[v].parallelism as usize;
                    let (s, p) = (s as usize, p as usize);
                    let first = s * p / up;
                    let count = ((s + 1) * p / up).saturating_sub(first).max(1);
                    Router::new(
                        id,
                        Route::Rescale { next: 0, first, count },
                        (0..p as u32).map(|t| to(t, base + s)).collect(),
                    )
                }
                Partition::Broadcast => {
                    Router::new(id, Route::Broadcast, (0..p).map(|t| to(t, base + s as usize)).collect())
                }
            });
        }
        out
    };
    let side_tags = |v: usize| -> Vec<String> {
        let mut tags: Vec<String> =
            graph.consumers(v).iter().filter_map(|&(c, ei)| graph.vertices[c].inputs[ei].tag.clone()).collect();
        tags.sort();
        tags.dedup();
        tags
    };

    // Tasks: build every chain subtask (instances, sources, sinks), then start.
    let mut tasks: Vec<(Head, Chain, Option<i64>)> = Vec::new();
    for chain in &chains {
        let head = chain[0];
        let last = *chain.last().expect("invariant: chains are not empty");
        for s in (0..graph.vertices[head].parallelism).filter(|&s| local(s)) {
            let mut stages = Vec::new();
            let task = tasks.len();
            for &v in chain {
                let (mut op, user) = build_operator(&graph, v, s, &components, rt, &options, &backends)
                    .map_err(|m| start_err(v, s, m))?;
                let vertex = &graph.vertices[v];
                let groups: Groups = weir_core::keys::key_group_range(s, graph.max_parallelism, vertex.parallelism);
                let parts = restore.map_or_else(Vec::new, |r| restored_parts(r, &vertex.id, s, vertex.parallelism));
                if let (Some(r), true, VertexKind::Sink(sink)) = (restore, parts.is_empty(), &vertex.kind)
                    && let Some(path) = sink.path.as_ref().filter(|_| sink.sink_type == SinkType::File)
                    && std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
                {
                    // A renamed sink would start afresh and empty its file.
                    return Err(start_err(
                        v,
                        s,
                        format!(
                            "{} holds no state of this sink, and its file {} is not empty: starting the sink afresh \
                             would empty it. Give the sink the id it had, or move the file away",
                            r.path.display(),
                            path.display()
                        ),
                    ));
                }
                if !parts.is_empty() && matches!(vertex.kind, VertexKind::Source(_)) {
                    // A source's part is its position, taken up below.
                } else {
                    let chains: Vec<Vec<&[u8]>> = parts.iter().map(|p| p.chain()).collect();
                    op.open(&groups, &chains).map_err(|m| start_err(v, s, m))?;
                    let (mut lists, restored) =
                        restored_lists(restore, &vertex.id, s, vertex.parallelism).map_err(|m| start_err(v, s, m))?;
                    let held: Vec<&str> = lists.iter().filter(|l| !l.is_empty()).map(|l| l.name.as_str()).collect();
                    if !held.is_empty() && !op.keeps_lists() {
                        let what = format!(
                            "the checkpoint holds operator state of `{}` (lists `{}`), and it keeps none now",
                            vertex.id,
                            held.join("`, `")
                        );
                        if !options.allow_non_restored_state {
                            return Err(start_err(
                                v,
                                s,
                                format!(
                                    "{what}: use a component that keeps it, or pass --allow-non-restored-state to \
                                     drop it"
                                ),
                            ));
                        }
                        tracing::warn!("{what}: dropped (--allow-non-restored-state)");
                        lists.clear();
                    }
                    op.restore_lists(&lists, restored).map_err(|m| start_err(v, s, m))?;
                }
                let _ = shared.counters[v][s as usize].user.set(user);
                let side_routers = side_tags(v).into_iter().flat_map(|t| {
                    let rs = routers_for(v, Some(&t), s);
                    rs.into_iter().map(move |r| (t.clone(), r))
                });
                stages.push(Stage {
                    vertex: v,
                    op,
                    groups,
                    side_routers: side_routers.collect(),
                    unread_side: HashMap::new(),
                });
            }
            let head_vertex = &graph.vertices[head];
            let head_parts =
                restore.map_or_else(Vec::new, |r| restored_parts(r, &head_vertex.id, s, head_vertex.parallelism));
            let resume = head_parts.iter().map(|p| p.watermark).min();
            let tail = Tail {
                routers: routers_for(last, None, s),
                last_vertex: last,
                subtask: s,
                task,
                names: names.clone(),
                shared: shared.clone(),
                batch_events: spec.batch_size,
                batch_bytes: options.batch_bytes,
                key_buf: Vec::new(),
                clock: options.clock.clone(),
            };
            // Each vertex's channels downstream, for its metrics.
            for stage in &stages {
                let mut channels: Vec<_> = stage.side_routers.iter().flat_map(|(_, r)| r.channels()).cloned().collect();
                if stage.vertex == last {
                    channels.extend(tail.routers.iter().flat_map(|r| r.channels()).cloned());
                }
                let _ = shared.counters[stage.vertex][s as usize].channels.set(channels);
            }
            let h = match &graph.vertices[head].kind {
                VertexKind::Source(src) => {
                    let p = graph.vertices[head].parallelism;
                    let mut source = open_source(src, s, p)
                        .map_err(|e| start_err(head, s, format!("{}: {}", e.place, e.message)))?;
                    let seek_err =
                        |e: weir_connectors::SourceError| start_err(head, s, format!("{}: {}", e.place, e.message));
                    let same = restore.and_then(|r| r.parallelism(&src.id)) == Some(p);
                    match head_parts.as_slice() {
                        [] => {}
                        // Before splits: the subtask's own position.
                        [one] if one.operator.is_empty() && !one.state.is_empty() && same => {
                            source.seek(&[&one.state]).map_err(seek_err)?
                        }
                        parts if parts.iter().any(|p| p.operator.is_empty() && !p.state.is_empty()) => {
                            return Err(start_err(
                                head,
                                s,
                                "this checkpoint was taken before sources kept splits: a source restored from it \
                                 keeps its parallelism"
                                    .into(),
                            ));
                        }
                        _ => {
                            let (lists, _) =
                                restored_lists(restore, &src.id, s, p).map_err(|m| start_err(head, s, m))?;
                            let splits = lists.iter().find(|l| l.name == SPLITS);
                            let splits: Vec<&[u8]> =
                                splits.map_or_else(Vec::new, |l| (0..l.len()).map(|i| l.element(i)).collect());
                            source.seek(&splits).map_err(seek_err)?;
                        }
                    }
                    Head::Source {
                        source,
                        idle_timeout: src.watermark.idle_timeout_ms.map(Duration::from_millis),
                        batch_size: spec.batch_size,
                    }
                }
                _ => {
                    let inputs = graph.input_layout(head).0;
                    let gate = InputGate::new(inputs, options.tick_interval, Instant::now()).aligned(exactly_once);
                    let gate = match resume {
                        Some(w) => gate.resume(restored_id, w),
                        None if restore.is_some() => gate.resume(restored_id, i64::MIN),
                        None => gate,
                    };
                    // Restored at the same parallelism (see `check_restorable`),
                    // the task has its own part, whose inputs are as they were.
                    let replay = match head_parts.as_slice() {
                        [own] => crate::checkpoint::read_in_flight(&own.channels, inputs).map_err(|e| {
                            start_err(head, s, format!("its in-flight data in the checkpoint is damaged: {e}"))
                        })?,
                        _ => Vec::new(),
                    };
                    Head::Input { inbox: inboxes[&(head, s)].clone(), gate, replay }
                }
            };
            tasks.push((h, Chain { stages, tail, notified: restored_id, rebased: 0 }, resume));
        }
    }
    drop(inboxes);
    if let Some(r) = restore {
        tracing::info!(
            "restored every task from checkpoint {} ({}) in {} ms",
            r.checkpoint,
            r.path.display(),
            started.elapsed().as_millis()
        );
    }

    shared.progress().running = tasks.len();
    let mut threads = Vec::with_capacity(tasks.len());
    let task_finished: Vec<Arc<AtomicBool>> = (0..tasks.len()).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut handle = JobHandle {
        shared: shared.clone(),
        task_finished: task_finished.clone(),
        threads: Mutex::new(Vec::new()),
        detached: Mutex::new(None),
        vertices: graph.vertices.iter().map(|v| (v.id.clone(), v.parallelism)).collect(),
        started,
    };
    let total = tasks.len();
    for (i, (head, mut chain, resume)) in tasks.into_iter().enumerate() {
        let task_shared = shared.clone();
        let finished = task_finished[i].clone();
        // A chain runs its stages by recursion: give long chains the stack.
        let stack = (2 << 20) + chain.stages.len() * (4 << 10);
        let spawned = std::thread::Builder::new().name(format!("weir-task-{i}")).stack_size(stack).spawn(move || {
            let first_times = task_shared.counters[chain.head()][chain.tail.subtask as usize].times.clone();
            crate::metrics::enter(first_times.clone());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_task(head, &mut chain, resume)));
            let r = match r {
                Ok(Ok(())) => Ok(chain.unread_side_outputs()),
                Ok(Err(e)) => Err(e),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let info = &chain.tail.names[chain.head()];
                    Err(TaskError {
                        what: info.what,
                        vertex: info.id.clone(),
                        subtask: chain.tail.subtask,
                        record: None,
                        message: format!("internal error (a bug in Weir, please report it): {message}"),
                        cancelled: false,
                    })
                }
            };
            // Drop the chain (its routers, instances, files) before reporting.
            drop(chain);
            first_times.finished.store(true, Ordering::Relaxed);
            finished.store(true, Ordering::Release);
            task_shared.task_ended(r);
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Tasks not started count as ended; stop the ones that did.
                let mut p = shared.progress();
                p.running -= total - i;
                p.errors.push(TaskError {
                    what: "job",
                    vertex: spec.name.clone().unwrap_or_default(),
                    subtask: 0,
                    record: None,
                    message: format!(
                        "cannot start task {} of {total}: {e}. This machine cannot run that many tasks; lower the parallelism",
                        i + 1
                    ),
                    cancelled: false,
                });
                p.status = JobStatus::Failing;
                if p.running == 0 {
                    p.status = JobStatus::Failed;
                    p.ended_at = Some(Instant::now());
                    shared.ended.notify_all();
                }
                drop(p);
                shared.stop_all();
                break;
            }
        }
    }
    if let Some(run) = checkpointer
        && threads.len() == total
    {
        let job = shared.clone();
        match std::thread::Builder::new().name("weir-checkpointer".into()).spawn(move || run(job)) {
            Ok(t) if detached => *handle.detached.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::warn!("cannot start the checkpointer ({e}); the job runs without checkpoints");
            }
        }
    }
    *handle.threads.get_mut().unwrap_or_else(|p| p.into_inner()) = threads;
    Ok(handle)
}

/// What a job's checkpointer needs, and how many tasks run here (those
/// of the slots `local` says; every task of the job is numbered, its
/// part named by its number), or `None` without a `checkpoints:` section.
fn checkpoint_plan(
    spec: &Spec,
    graph: &JobGraph,
    checkpoint_name: Option<String>,
    restore: Option<&Restored>,
    local: &dyn Fn(u32) -> bool,
) -> Result<Option<(crate::checkpoint::Plan, usize)>, JobError> {
    let Some(c) = &spec.checkpoints else { return Ok(None) };
    let name = checkpoint_name.or_else(|| spec.name.clone()).unwrap_or_else(|| "job".into());
    let store = CheckpointStore::new(&c.dir.join(&name)).map_err(JobError::State)?;
    // Never a folder's number again (the store cannot be listed: the job
    // does not start, rather than overwrite checkpoints).
    let first = store.next_id().map_err(JobError::State)?.max(restore.map_or(0, |r| r.checkpoint) + 1);
    let mut plan = crate::checkpoint::Plan {
        timing: weir_core::checkpoint::CheckpointTiming::of(c),
        store,
        first,
        job: name,
        retain: c.retain as usize,
        exactly_once: c.mode == weir_core::spec::CheckpointMode::ExactlyOnce,
        incremental: c.incremental,
        unaligned: c.unaligned,
        sources: Vec::new(),
        restored: restore.map(|r| r.checkpoint),
        vertices: graph.vertices.iter().map(|v| (v.id.clone(), v.parallelism, v.kind_name())).collect(),
        max_parallelism: graph.max_parallelism,
        global: Vec::new(),
        link: None,
    };
    // Tasks in the order `start` builds them: chain by chain, subtask by
    // subtask.
    let mut all = 0;
    for chain in graph.chains() {
        let head = &graph.vertices[chain[0]];
        for s in 0..head.parallelism {
            if local(s) {
                if matches!(head.kind, VertexKind::Source(_)) {
                    plan.sources.push(plan.global.len());
                }
                plan.global.push(all);
            }
            all += 1;
        }
    }
    let tasks = plan.global.len();
    Ok(Some((plan, tasks)))
}

/// The coordinator's side of the checkpoints of a job spread over
/// several workers: it triggers them, and completes each once every
/// worker has written its tasks' parts (`None`: the spec takes no
/// checkpoints).
pub fn ledger(
    spec: &Spec,
    checkpoint_name: Option<String>,
    restore: Option<&Restored>,
    link: crate::checkpoint::LedgerLink,
) -> Result<Option<crate::checkpoint::Ledger>, JobError> {
    let graph = JobGraph::from_spec(spec);
    let Some((plan, tasks)) = checkpoint_plan(spec, &graph, checkpoint_name, restore, &|_| true)? else {
        return Ok(None);
    };
    crate::checkpoint::Ledger::start(plan, tasks, link).map(Some).map_err(JobError::State)
}

/// Refuses a checkpoint or savepoint the job cannot take up: another
/// number of key groups, or state of operators the job no longer has
/// (unless dropping it is allowed).
fn check_restorable(r: &Restored, graph: &JobGraph, allow_non_restored: bool) -> Result<(), String> {
    let at = r.path.display();
    if r.metadata.max_parallelism != graph.max_parallelism {
        return Err(format!(
            "{at} was taken with max-parallelism {}, and the job has {}: keyed state is kept per key group, so set \
             `max-parallelism: {}` again",
            r.metadata.max_parallelism, graph.max_parallelism, r.metadata.max_parallelism
        ));
    }
    let gone: Vec<&str> = r
        .metadata
        .vertices
        .iter()
        .filter(|v| !graph.vertices.iter().any(|g| g.id == v.id))
        .filter(|v| r.stages.iter().any(|((id, _), s)| *id == v.id && s.holds_state()))
        .map(|v| v.id.as_str())
        .collect();
    let rescaled: Vec<&str> = r
        .metadata
        .vertices
        .iter()
        .filter(|v| graph.vertices.iter().any(|g| g.id == v.id && g.parallelism != v.parallelism))
        .map(|v| v.id.as_str())
        .collect();
    if !rescaled.is_empty() && r.stages.values().any(|s| !s.channels.is_empty()) {
        return Err(format!(
            "{at} is an unaligned checkpoint that holds in-flight data, which restores only at the parallelism it \
             was taken at, and `{}` changed it. Keep the parallelism, or stop the job with a savepoint (always \
             aligned) and rescale from that",
            rescaled.join("`, `")
        ));
    }
    if !gone.is_empty() && !allow_non_restored {
        return Err(format!(
            "{at} holds state of {} the job no longer has: `{}`. State is matched to operators by `id`: keep \
             their ids, or pass --allow-non-restored-state to drop that state",
            if gone.len() == 1 { "an operator" } else { "operators" },
            gone.join("`, `")
        ));
    }
    Ok(())
}

/// The operator-state list a source keeps its splits in (even split).
pub(crate) const SPLITS: &str = "splits";

/// What checkpoint `r` holds for subtask `s` of vertex `id`, now of
/// `parallelism`: its own part when the parallelism is the same, every
/// old subtask's when it changed (keyed operators keep their key groups).
fn restored_parts<'a>(r: &'a Restored, id: &str, s: u32, parallelism: u32) -> Vec<&'a crate::checkpoint::StageState> {
    match r.parallelism(id) {
        None => Vec::new(),
        Some(p) if p == parallelism => r.stages.get(&(id.to_owned(), s)).into_iter().collect(),
        Some(p) => (0..p).filter_map(|old| r.stages.get(&(id.to_owned(), old))).collect(),
    }
}

/// The operator-state lists subtask `s` of vertex `id`, now of
/// `parallelism`, restores from `r` (redistributed from every old
/// subtask's), and whether `r` holds the vertex at all.
fn restored_lists(
    r: Option<&Restored>,
    id: &str,
    s: u32,
    parallelism: u32,
) -> Result<(Vec<weir_wasm::OperatorList>, bool), String> {
    let Some((r, old)) = r.and_then(|r| Some((r, r.parallelism(id)?))) else { return Ok((Vec::new(), false)) };
    let mut lists = Vec::with_capacity(old as usize);
    for o in 0..old {
        let bytes = r.stages.get(&(id.to_owned(), o)).map_or(&[][..], |st| st.operator.as_slice());
        let read = crate::checkpoint::read_lists(bytes);
        lists.push(read.map_err(|e| format!("{}: its operator state is damaged: {e}", r.path.display()))?);
    }
    Ok((crate::operator_state::redistribute(&lists, s, parallelism)?, true))
}

/// The metrics of an operator subtask's Wasm instances.
type InstanceMetrics = Vec<Arc<weir_wasm::UserMetrics>>;

fn build_operator(
    graph: &JobGraph,
    v: usize,
    subtask: u32,
    components: &HashMap<(usize, World), Component>,
    rt: &WasmRuntime,
    options: &RunOptions,
    backends: &Backends,
) -> Result<(Box<dyn Operator>, InstanceMetrics), String> {
    let vertex = &graph.vertices[v];
    let name = format!("{}[{subtask}]", vertex.id);
    // The metrics of the Wasm instances it makes.
    let mut user = Vec::new();
    let op: Box<dyn Operator> = match &vertex.kind {
        VertexKind::Source(_) => Box::new(PassThrough),
        VertexKind::Sink(s) => {
            let text = |f: FileSink| if s.format == SinkFormat::Text { f.plain_text() } else { f };
            let sink: Option<Box<dyn Sink>> = match s.sink_type {
                SinkType::File => {
                    let path = s.path.as_ref().expect("invariant: validated file sinks have a path");
                    let sink = match graph.checkpoints {
                        Some(mode) => {
                            FileSink::checkpointed(&s.id, path, mode == weir_core::spec::CheckpointMode::ExactlyOnce)
                        }
                        None => FileSink::create(&s.id, path).map_err(|e| e.message)?,
                    };
                    Some(Box::new(text(sink)))
                }
                SinkType::Stdout => Some(Box::new(text(FileSink::stdout(&s.id).map_err(|e| e.message)?))),
                SinkType::Discard => None,
            };
            Box::new(SinkOp { sink })
        }
        VertexKind::Operator(o) => match options.native.get(&o.id) {
            Some(Native::Map(f)) => Box::new(NativeMapOp { f: f(), ends: Vec::new() }),
            Some(Native::Process(f)) => Box::new(NativeProcessOp {
                f: f(),
                backend: backends.make(),
                ends: Vec::new(),
                increments: Default::default(),
            }),
            None => {
                let config = o.config.as_ref().map_or_else(|| "null".to_owned(), |c| c.to_string());
                match o.kind {
                    OperatorKind::Window | OperatorKind::WindowAll => {
                        let json =
                            |c: Option<&serde_json::Value>| c.map_or_else(|| "null".to_owned(), |c| c.to_string());
                        let evictor = match (&o.evictor, components.get(&(v, World::Evictor))) {
                            (Some(EvictorSpec::Component { config, .. }), Some(component)) => Some(
                                EvictorInstance::new(rt, component, &name, &json(config.as_ref()), options.limits)
                                    .map_err(|e| format!("its evictor: {e}"))?,
                            ),
                            _ => None,
                        };
                        let trigger = match (
                            o.trigger.as_ref().and_then(|t| t.component()),
                            components.get(&(v, World::Trigger)),
                        ) {
                            (Some((_, config)), Some(component)) => Some(
                                TriggerInstance::new(rt, component, &name, &json(config), options.limits)
                                    .map_err(|e| format!("its trigger: {e}"))?,
                            ),
                            (Some((path, _)), None) => {
                                return Err(format!("its trigger component {} was not loaded", path.display()));
                            }
                            (None, _) => None,
                        };
                        let gap = match (&o.window, components.get(&(v, World::SessionGap))) {
                            (Some(WindowSpec::Session { gap: Some(gap), .. }), Some(component)) => Some(
                                SessionGapInstance::new(
                                    rt,
                                    component,
                                    &name,
                                    &json(gap.config.as_ref()),
                                    options.limits,
                                )
                                .map_err(|e| format!("its session gap: {e}"))?,
                            ),
                            (Some(WindowSpec::Session { gap: Some(gap), .. }), None) => {
                                return Err(format!(
                                    "its session gap component {} was not loaded",
                                    gap.component.display()
                                ));
                            }
                            _ => None,
                        };
                        let function = match (o.function.as_ref(), components.get(&(v, World::Function))) {
                            (Some(f), Some(component)) if f.component.is_some() => Some(
                                FunctionInstance::new(rt, component, &name, &json(f.config.as_ref()), options.limits)
                                    .map_err(|e| format!("its window function: {e}"))?,
                            ),
                            (Some(f), None) if f.component.is_some() => {
                                return Err("its window function component was not loaded".to_owned());
                            }
                            _ => None,
                        };
                        user.extend(evictor.as_ref().map(EvictorInstance::user_metrics));
                        user.extend(trigger.as_ref().map(TriggerInstance::user_metrics));
                        user.extend(gap.as_ref().map(SessionGapInstance::user_metrics));
                        user.extend(function.as_ref().map(FunctionInstance::user_metrics));
                        let wasm = WindowWasm { evictor, trigger, gap, function };
                        Box::new(WindowOp::new(o, backends.make(), options.clock.clone(), wasm))
                    }
                    OperatorKind::Map => {
                        let instance =
                            MapInstance::new(rt, &components[&(v, World::Map)], &name, &config, options.limits)
                                .map_err(|e| e.to_string())?;
                        user.push(instance.user_metrics());
                        Box::new(MapOp { instance, id: o.id.clone(), dead_letter: o.dead_letter.clone() })
                    }
                    OperatorKind::Process => {
                        let backend = backends.make();
                        let instance = ProcessInstance::new(
                            rt,
                            &components[&(v, World::Process)],
                            &name,
                            &config,
                            options.limits,
                            backend,
                            options.clock.clone(),
                        )
                        .map_err(|e| e.to_string())?;
                        user.push(instance.user_metrics());
                        Box::new(ProcessOp::new(instance, options.limits, options.clock.clone()))
                    }
                }
            }
        },
    };
    Ok((op, user))
}

/// How each vertex is named in errors; a record's origin is named by the
/// one source upstream of the vertex, when there is exactly one.
fn vertex_infos(graph: &JobGraph) -> Vec<VertexInfo> {
    // Sources upstream of each vertex, in topological order (linear in
    // the graph's size; a set per vertex is capped at two: "one" or "many").
    let order = graph.topological_order();
    let mut upstream: Vec<Vec<usize>> = vec![Vec::new(); graph.vertices.len()];
    for &v in &order {
        if graph.vertices[v].inputs.is_empty() {
            upstream[v] = vec![v];
            continue;
        }
        let mut set: Vec<usize> = Vec::new();
        for e in &graph.vertices[v].inputs {
            for &s in &upstream[e.from] {
                if !set.contains(&s) && set.len() < 2 {
                    set.push(s);
                }
            }
        }
        upstream[v] = set;
    }
    graph
        .vertices
        .iter()
        .enumerate()
        .map(|(vi, v)| {
            let origin = match upstream[vi].as_slice() {
                [one] => match &graph.vertices[*one].kind {
                    VertexKind::Source(s) if s.source_type == SourceType::File => {
                        Some(format!("{} byte", s.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()))
                    }
                    VertexKind::Source(s) => Some(format!("generator `{}` sequence", s.id)),
                    _ => None,
                },
                _ => None,
            };
            let what = match v.kind {
                VertexKind::Source(_) => "source",
                VertexKind::Operator(_) => "operator",
                VertexKind::Sink(_) => "sink",
            };
            VertexInfo { id: v.id.clone(), what, origin }
        })
        .collect()
}
