//! Building tasks from the job graph, running them on threads, and the
//! job's summary or first error.

use crate::exchange::{Message, MessageKind, Route, RouteError, Router};
use crate::graph::{JobGraph, Partition, VertexKind};
use crate::operators::{
    MapOp, NativeMapOp, NativeProcessOp, OpError, Operator, ProcessOp, SinkOp, TIMER_ORIGIN, now_ms,
};
use crate::{Native, RunOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};
use weir_connectors::{FileSink, Poll, Sink, Source, open_source};
use weir_core::spec::{OperatorKind, SinkType, SourceType, Spec};
use weir_core::time::{MAX_WATERMARK, WatermarkCombiner};
use weir_core::{Batch, Mark};
use weir_state::MemoryBackend;
use weir_wasm::{Component, MapInstance, ProcessInstance, SideEvent, WasmRuntime, World};

/// A task failed: which vertex and subtask, which record, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} `{vertex}` (subtask {subtask}){}: {message}", record.as_ref().map(|r| format!(", {r}")).unwrap_or_default())]
pub struct TaskError {
    /// "operator", "source" or "sink".
    pub what: &'static str,
    /// The vertex id.
    pub vertex: String,
    /// The subtask index.
    pub subtask: u32,
    /// The record being processed, when known.
    pub record: Option<String>,
    /// What went wrong.
    pub message: String,
    cancelled: bool,
}

impl TaskError {
    pub(crate) fn cancelled() -> TaskError {
        TaskError {
            what: "task",
            vertex: String::new(),
            subtask: 0,
            record: None,
            message: "cancelled".into(),
            cancelled: true,
        }
    }
}

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
}

/// Records in and out of one vertex, over all its subtasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexMetrics {
    /// The vertex id.
    pub id: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// `numRecordsIn`.
    pub records_in: u64,
    /// `numRecordsOut`.
    pub records_out: u64,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// Per vertex, in spec order.
    pub vertices: Vec<VertexMetrics>,
    /// Side-output events that no vertex reads: (operator, tag, count).
    pub unread_side_outputs: Vec<(String, String, u64)>,
    /// Wall time from start to the last task's end.
    pub elapsed: Duration,
}

#[derive(Default)]
struct Counters {
    records_in: AtomicU64,
    records_out: AtomicU64,
}

struct Stage {
    vertex: usize,
    op: Box<dyn Operator>,
    side_routers: Vec<(String, Router)>,
    unread_side: HashMap<String, u64>,
}

struct Chain {
    stages: Vec<Stage>,
    routers: Vec<Router>,
    subtask: u32,
    names: Arc<Vec<VertexInfo>>,
    counters: Arc<Vec<Counters>>,
    key_buf: Vec<u8>,
    side: Vec<SideEvent>,
}

#[derive(Clone)]
struct VertexInfo {
    id: String,
    what: &'static str,
    /// How to name a record's origin: the one upstream source, if any.
    origin: Option<String>,
}

impl Chain {
    fn error(&self, vertex: usize, e: OpError) -> TaskError {
        let info = &self.names[vertex];
        let record = e.origin.map(|o| match (o, &info.origin) {
            (TIMER_ORIGIN, _) => "while firing a timer".to_owned(),
            (o, Some(src)) => format!("record at {src} offset {o}"),
            (o, None) => format!("record at offset {o} of its source"),
        });
        TaskError {
            what: info.what,
            vertex: info.id.clone(),
            subtask: self.subtask,
            record,
            message: e.message,
            cancelled: false,
        }
    }

    fn route_error(&self, vertex: usize, e: RouteError) -> TaskError {
        match e {
            RouteError::Cancelled => TaskError::cancelled(),
            RouteError::Key(message) => self.error(vertex, OpError { origin: None, message }),
        }
    }

    fn run(&mut self, batch: Batch) -> Result<(), TaskError> {
        self.run_from(0, batch)
    }

    fn run_from(&mut self, first: usize, mut batch: Batch) -> Result<(), TaskError> {
        for si in first..self.stages.len() {
            let v = self.stages[si].vertex;
            self.counters[v].records_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
            let wm = batch.last_watermark();
            let out = self.stages[si].op.process(batch, &mut self.side);
            batch = out.map_err(|e| self.error(v, e))?;
            self.counters[v].records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.route_side(si, wm)?;
        }
        self.route_main(batch)
    }

    fn route_main(&mut self, batch: Batch) -> Result<(), TaskError> {
        let last = self.stages.last().map_or(0, |s| s.vertex);
        let n = self.routers.len();
        let mut batch = Some(batch);
        for i in 0..n {
            // Every consumer but the last gets a copy; the last takes the batch.
            let b = if i + 1 == n { batch.take() } else { batch.clone() };
            let b = b.expect("invariant: the batch is taken only by the last router");
            self.routers[i].route(b, &mut self.key_buf).map_err(|m| self.route_error(last, m))?;
        }
        Ok(())
    }

    fn route_side(&mut self, si: usize, wm: Option<i64>) -> Result<(), TaskError> {
        if self.side.is_empty() && (wm.is_none() || self.stages[si].side_routers.is_empty()) {
            return Ok(());
        }
        let events = std::mem::take(&mut self.side);
        let stage = &mut self.stages[si];
        for e in &events {
            if !stage.side_routers.iter().any(|(t, _)| *t == e.tag) {
                *stage.unread_side.entry(e.tag.clone()).or_default() += 1;
            }
        }
        let v = stage.vertex;
        for ri in 0..self.stages[si].side_routers.len() {
            let stage = &mut self.stages[si];
            let (tag, router) = &mut stage.side_routers[ri];
            let mut b = Batch::new();
            for e in events.iter().filter(|e| e.tag == *tag) {
                b.push(&e.key, &e.value, e.timestamp, e.origin);
            }
            if let Some(wm) = wm {
                b.mark(wm);
            }
            if let Err(m) = router.route(b, &mut self.key_buf) {
                return Err(self.route_error(v, m));
            }
        }
        self.side = events;
        self.side.clear();
        Ok(())
    }

    fn tick(&mut self, now: i64) -> Result<(), TaskError> {
        for si in 0..self.stages.len() {
            let out = self.stages[si].op.on_processing_time(now, &mut self.side);
            let v = self.stages[si].vertex;
            let out = out.map_err(|e| self.error(v, e))?;
            self.route_side(si, None)?;
            if !out.is_void() {
                self.counters[v].records_out.fetch_add(out.len() as u64, Ordering::Relaxed);
                self.run_from(si + 1, out)?;
            }
        }
        Ok(())
    }

    /// Tells every consumer this task is idle (or active again).
    fn set_idle(&self, idle: bool) -> Result<(), TaskError> {
        for r in self.routers.iter().chain(self.stages.iter().flat_map(|s| s.side_routers.iter().map(|(_, r)| r))) {
            r.idle(idle)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        for si in 0..self.stages.len() {
            let v = self.stages[si].vertex;
            let r = self.stages[si].op.finish();
            r.map_err(|e| self.error(v, e))?;
        }
        for r in self.routers.iter().chain(self.stages.iter().flat_map(|s| s.side_routers.iter().map(|(_, r)| r))) {
            r.end()?;
        }
        Ok(())
    }
}

fn mark_only(watermark: i64) -> Batch {
    let mut b = Batch::new();
    b.marks.push(Mark { after: 0, watermark });
    b
}

fn run_source(
    mut source: Box<dyn Source>,
    mut chain: Chain,
    batch_size: usize,
    idle_timeout: Option<Duration>,
    cancel: &AtomicBool,
) -> Result<Chain, TaskError> {
    let head = chain.stages[0].vertex;
    let mut last_data = Instant::now();
    let mut idle = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::cancelled());
        }
        let mut batch = Batch::with_capacity(batch_size, batch_size * 64);
        let poll = source
            .next_batch(&mut batch, batch_size)
            .map_err(|e| chain.error(head, OpError { origin: None, message: format!("{}: {}", e.place, e.message) }))?;
        match poll {
            Poll::Ready => {
                if idle {
                    idle = false;
                    chain.set_idle(false)?;
                }
                last_data = Instant::now();
                chain.run(batch)?;
            }
            Poll::Wait(d) => {
                if !batch.is_void() {
                    chain.run(batch)?;
                }
                if let Some(t) = idle_timeout
                    && !idle
                    && last_data.elapsed() >= t
                {
                    idle = true;
                    chain.set_idle(true)?;
                }
                chain.tick(now_ms())?;
                std::thread::sleep(d);
            }
            Poll::End => {
                if !batch.is_void() {
                    chain.run(batch)?;
                }
                chain.run(mark_only(MAX_WATERMARK))?;
                chain.finish()?;
                return Ok(chain);
            }
        }
    }
}

/// How often a task with processing-time timers checks the clock.
const TICK: Duration = Duration::from_millis(50);

fn run_input(rx: Receiver<Message>, inputs: usize, mut chain: Chain) -> Result<Chain, TaskError> {
    let mut combiner = WatermarkCombiner::new(inputs);
    let mut ended = 0usize;
    let mut last_tick = Instant::now();
    let mut idle = false;
    loop {
        if last_tick.elapsed() >= TICK {
            // Under steady input recv never times out: check the clock here too.
            last_tick = Instant::now();
            chain.tick(now_ms())?;
        }
        let msg = match rx.recv_timeout(TICK) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                chain.tick(now_ms())?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Err(TaskError::cancelled()),
        };
        let input = msg.input as usize;
        let kind = msg.kind;
        if idle && !matches!(kind, MessageKind::Idle(true)) {
            idle = false;
            chain.set_idle(false)?;
        }
        match kind {
            MessageKind::Data(mut batch) => {
                let marks = std::mem::take(&mut batch.marks);
                for m in marks {
                    if let Some(w) = combiner.update(input, m.watermark) {
                        batch.marks.push(Mark { after: m.after, watermark: w });
                    }
                }
                chain.run(batch)?;
            }
            MessageKind::Idle(input_idle) => {
                if let Some(w) = combiner.set_idle(input, input_idle) {
                    chain.run(mark_only(w))?;
                }
            }
            MessageKind::End => {
                ended += 1;
                if let Some(w) = combiner.end(input) {
                    chain.run(mark_only(w))?;
                }
                if ended == inputs {
                    chain.finish()?;
                    return Ok(chain);
                }
            }
        }
        if !idle && combiner.all_idle() {
            idle = true;
            chain.set_idle(true)?;
        }
    }
}

enum Head {
    Source(Box<dyn Source>, Option<Duration>),
    Input(Receiver<Message>, usize),
}

/// Runs `spec` to the end of its input (bounded sources) and returns what
/// every vertex did, or the first error.
pub fn run(spec: &Spec, rt: &WasmRuntime, options: RunOptions) -> Result<JobSummary, JobError> {
    let started = Instant::now();
    let graph = JobGraph::from_spec(spec);
    let names = Arc::new(vertex_infos(&graph));
    let counters: Arc<Vec<Counters>> = Arc::new(graph.vertices.iter().map(|_| Counters::default()).collect());
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

    // Components: loaded and checked once per operator.
    let mut components: HashMap<usize, Component> = HashMap::new();
    for (vi, v) in graph.vertices.iter().enumerate() {
        if let VertexKind::Operator(o) = &v.kind
            && !options.native.contains_key(&o.id)
        {
            let world = match o.kind {
                OperatorKind::Map => World::Map,
                OperatorKind::Process => World::Process,
            };
            let c = rt.load(&o.component, world).map_err(|source| JobError::Load { operator: o.id.clone(), source })?;
            components.insert(vi, c);
        }
    }

    // Channels: one per (chain head with inputs, subtask).
    let chains = graph.chains();
    let mut senders: HashMap<(usize, u32), SyncSender<Message>> = HashMap::new();
    let mut receivers: HashMap<(usize, u32), Receiver<Message>> = HashMap::new();
    for chain in &chains {
        let head = chain[0];
        if graph.vertices[head].inputs.is_empty() {
            continue;
        }
        for s in 0..graph.vertices[head].parallelism {
            let (tx, rx) = sync_channel(options.channel_capacity.max(1));
            senders.insert((head, s), tx);
            receivers.insert((head, s), rx);
        }
    }
    let routers_for = |v: usize, tag: Option<&str>, s: u32| -> Vec<Router> {
        let mut out = Vec::new();
        for (c, ei) in graph.consumers(v) {
            let e = &graph.vertices[c].inputs[ei];
            if e.tag.as_deref() != tag || graph.chained_to_upstream(c) {
                continue;
            }
            let base = graph.input_layout(c).1[ei] as u32;
            let p = graph.vertices[c].parallelism;
            let all = || (0..p).map(|t| senders[&(c, t)].clone()).collect::<Vec<_>>();
            let id = graph.vertices[c].id.clone();
            out.push(match &e.partition {
                Partition::Forward => Router::new(id, Route::Forward, vec![senders[&(c, s)].clone()], base),
                Partition::Hash(sel) => Router::new(
                    id,
                    Route::Hash { selector: sel.clone(), max_parallelism: graph.max_parallelism },
                    all(),
                    base + s,
                ),
                Partition::Rebalance => Router::new(id, Route::Rebalance { next: s as usize }, all(), base + s),
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
    let mut tasks: Vec<(Head, Chain)> = Vec::new();
    for chain in &chains {
        let head = chain[0];
        let last = *chain.last().expect("invariant: chains are not empty");
        for s in 0..graph.vertices[head].parallelism {
            let mut stages = Vec::new();
            for &v in chain {
                let op = build_operator(&graph, v, s, &components, rt, &options).map_err(|m| start_err(v, s, m))?;
                let side_routers = side_tags(v).into_iter().map(|t| {
                    let rs = routers_for(v, Some(&t), s);
                    rs.into_iter().map(move |r| (t.clone(), r))
                });
                stages.push(Stage {
                    vertex: v,
                    op,
                    side_routers: side_routers.flatten().collect(),
                    unread_side: HashMap::new(),
                });
            }
            let chain = Chain {
                stages,
                routers: routers_for(last, None, s),
                subtask: s,
                names: names.clone(),
                counters: counters.clone(),
                key_buf: Vec::new(),
                side: Vec::new(),
            };
            let h = match &graph.vertices[head].kind {
                VertexKind::Source(src) => {
                    let p = graph.vertices[head].parallelism;
                    let source = open_source(src, s, p)
                        .map_err(|e| start_err(head, s, format!("{}: {}", e.place, e.message)))?;
                    Head::Source(source, src.watermark.idle_timeout_ms.map(Duration::from_millis))
                }
                _ => Head::Input(
                    receivers.remove(&(head, s)).expect("invariant: every head with inputs has a channel"),
                    graph.input_layout(head).0,
                ),
            };
            tasks.push((h, chain));
        }
    }
    drop(senders);

    let cancel = Arc::new(AtomicBool::new(false));
    let batch_size = spec.batch_size;
    let handles: Vec<_> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, (head, chain))| {
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name(format!("weir-task-{i}"))
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match head {
                        Head::Source(src, idle) => run_source(src, chain, batch_size, idle, &cancel),
                        Head::Input(rx, n) => run_input(rx, n, chain),
                    }));
                    if !matches!(r, Ok(Ok(_))) {
                        // Stop the sources so the other tasks drain and end.
                        cancel.store(true, Ordering::Relaxed);
                    }
                    match r {
                        Ok(r) => r,
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                })
                .expect("the OS refused to start a task thread")
        })
        .collect();

    let mut first_error: Option<TaskError> = None;
    let mut unread: HashMap<(usize, String), u64> = HashMap::new();
    for h in handles {
        match h.join() {
            Ok(Ok(chain)) => {
                for st in chain.stages {
                    for (tag, n) in st.unread_side {
                        *unread.entry((st.vertex, tag)).or_default() += n;
                    }
                }
            }
            Ok(Err(e)) if e.cancelled => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                first_error.get_or_insert(TaskError {
                    what: "task",
                    vertex: String::new(),
                    subtask: 0,
                    record: None,
                    message: format!(
                        "internal error (a bug in Weir, please report it): {}",
                        message.unwrap_or_default()
                    ),
                    cancelled: false,
                });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(JobError::Task(e));
    }
    let vertices = graph
        .vertices
        .iter()
        .zip(counters.iter())
        .map(|(v, c)| VertexMetrics {
            id: v.id.clone(),
            parallelism: v.parallelism,
            records_in: c.records_in.load(Ordering::Relaxed),
            records_out: c.records_out.load(Ordering::Relaxed),
        })
        .collect();
    let mut unread_side_outputs: Vec<(String, String, u64)> =
        unread.into_iter().map(|((v, tag), n)| (graph.vertices[v].id.clone(), tag, n)).collect();
    unread_side_outputs.sort();
    Ok(JobSummary { vertices, unread_side_outputs, elapsed: started.elapsed() })
}

fn build_operator(
    graph: &JobGraph,
    v: usize,
    subtask: u32,
    components: &HashMap<usize, Component>,
    rt: &WasmRuntime,
    options: &RunOptions,
) -> Result<Box<dyn Operator>, String> {
    let vertex = &graph.vertices[v];
    let name = format!("{}[{subtask}]", vertex.id);
    Ok(match &vertex.kind {
        VertexKind::Source(_) => Box::new(PassThrough),
        VertexKind::Sink(s) => {
            let sink: Option<Box<dyn Sink>> = match s.sink_type {
                SinkType::File => Some(Box::new(
                    FileSink::create(&s.id, s.path.as_ref().expect("invariant: validated file sinks have a path"))
                        .map_err(|e| e.message)?,
                )),
                SinkType::Stdout => Some(Box::new(FileSink::stdout(&s.id))),
                SinkType::Discard => None,
            };
            Box::new(SinkOp { sink })
        }
        VertexKind::Operator(o) => match options.native.get(&o.id) {
            Some(Native::Map(f)) => Box::new(NativeMapOp { f: f(), ends: Vec::new() }),
            Some(Native::Process(f)) => {
                Box::new(NativeProcessOp { f: f(), backend: Box::new(MemoryBackend::new()), ends: Vec::new() })
            }
            None => {
                let component = &components[&v];
                let config = o.config.as_ref().map_or_else(|| "null".to_owned(), |c| c.to_string());
                match o.kind {
                    OperatorKind::Map => Box::new(MapOp {
                        instance: MapInstance::new(rt, component, &name, &config, options.limits)
                            .map_err(|e| e.to_string())?,
                    }),
                    OperatorKind::Process => {
                        let instance = ProcessInstance::new(
                            rt,
                            component,
                            &name,
                            &config,
                            options.limits,
                            Box::new(MemoryBackend::new()),
                        )
                        .map_err(|e| e.to_string())?;
                        Box::new(ProcessOp::new(instance))
                    }
                }
            }
        },
    })
}

/// A source's own stage: what the source emits goes on unchanged.
struct PassThrough;

impl Operator for PassThrough {
    fn process(&mut self, input: Batch, _side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        Ok(input)
    }
}

fn vertex_infos(graph: &JobGraph) -> Vec<VertexInfo> {
    fn sources(graph: &JobGraph, v: usize, out: &mut Vec<usize>) {
        if graph.vertices[v].inputs.is_empty() {
            if !out.contains(&v) {
                out.push(v);
            }
            return;
        }
        for e in &graph.vertices[v].inputs {
            sources(graph, e.from, out);
        }
    }
    graph
        .vertices
        .iter()
        .enumerate()
        .map(|(vi, v)| {
            let mut srcs = Vec::new();
            sources(graph, vi, &mut srcs);
            let origin = match srcs.as_slice() {
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
