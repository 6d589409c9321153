//! A task: one chain of operators for one subtask, run on its own thread,
//! fed by a source or by its inbox through the input gate, writing to
//! routers. Output flows stage to stage as each stage emits it.

use crate::checkpoint::{StagePart, TaskAck, Writer};
use crate::exchange::{Closed, Inbox, MessageKind, Recv, RouteError, Router};
use crate::gate::{InputGate, Step};
use crate::job::JobShared;
use crate::operators::{Emit, Fail, Groups, OpError, Operator, TIMER_ORIGIN};
use crate::operators::{Shape, Snap};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weir_connectors::{Poll, Source};
use weir_core::Batch;
use weir_core::time::MAX_WATERMARK;
use weir_wasm::SideEvent;

/// A task failed: which vertex and subtask, which record, and why.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize)]
#[error("{what} `{vertex}` (subtask {subtask}){}: {message}", record.as_ref().map(|r| format!(", {r}")).unwrap_or_default())]
pub struct TaskError {
    /// "operator", "source" or "sink" ("job" for the job as a whole).
    pub what: &'static str,
    /// The vertex id.
    pub vertex: String,
    /// The subtask index.
    pub subtask: u32,
    /// The record being processed, when known.
    pub record: Option<String>,
    /// What went wrong.
    pub message: String,
    pub(crate) cancelled: bool,
}

/// A task error read back (from a remote worker's report): its `what`
/// one of the words this host writes, else `task`.
impl<'de> serde::Deserialize<'de> for TaskError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wire {
            what: String,
            vertex: String,
            subtask: u32,
            record: Option<String>,
            message: String,
            cancelled: bool,
        }
        let w = Wire::deserialize(d)?;
        let what = ["operator", "source", "sink", "job"].into_iter().find(|k| *k == w.what).unwrap_or("task");
        Ok(TaskError {
            what,
            vertex: w.vertex,
            subtask: w.subtask,
            record: w.record,
            message: w.message,
            cancelled: w.cancelled,
        })
    }
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

    /// A failure of the job as a whole (`what` is "job"), not of one task:
    /// it could not be set up or scheduled.
    pub fn job(name: &str, message: impl Into<String>) -> TaskError {
        TaskError {
            what: "job",
            vertex: name.to_owned(),
            subtask: 0,
            record: None,
            message: message.into(),
            cancelled: false,
        }
    }

    /// Whether this is the echo of a cancellation (the job was being torn
    /// down), not a failure of its own.
    pub fn is_cancellation(&self) -> bool {
        self.cancelled
    }
}

impl From<Closed> for TaskError {
    fn from(_: Closed) -> Self {
        TaskError::cancelled()
    }
}

/// How a vertex is named in errors.
#[derive(Clone)]
pub(crate) struct VertexInfo {
    pub id: String,
    pub what: &'static str,
    /// How to name a record's origin: the one upstream source, if any.
    pub origin: Option<String>,
}

pub(crate) struct Stage {
    pub vertex: usize,
    pub op: Box<dyn Operator>,
    /// The key groups of this subtask (what its checkpoint holds).
    pub groups: Groups,
    pub side_routers: Vec<(String, Router)>,
    pub unread_side: HashMap<String, u64>,
}

/// What every stage of a task shares: where output leaves the chain, how
/// to name errors, the job's counters and the batch bounds.
pub(crate) struct Tail {
    pub routers: Vec<Router>,
    pub last_vertex: usize,
    pub subtask: u32,
    /// The task's number in the job (its checkpoint acknowledgements').
    pub task: usize,
    pub names: Arc<Vec<VertexInfo>>,
    pub shared: Arc<JobShared>,
    pub batch_events: usize,
    pub batch_bytes: usize,
    /// The processing-time clock.
    pub clock: weir_state::Clock,
    pub key_buf: Vec<u8>,
}

impl Tail {
    pub fn error(&self, vertex: usize, e: OpError) -> TaskError {
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

    fn fail(&self, vertex: usize, f: Fail) -> TaskError {
        match f {
            Fail::Op(e) => self.error(vertex, e),
            Fail::Downstream(e) => e,
        }
    }

    fn route_error(&self, vertex: usize, e: RouteError) -> TaskError {
        match e {
            RouteError::Cancelled => TaskError::cancelled(),
            RouteError::Key(message) => self.error(vertex, OpError { origin: None, message }),
        }
    }

    fn route(&mut self, batch: Batch) -> Result<(), TaskError> {
        let n = self.routers.len();
        let mut batch = Some(batch);
        for i in 0..n {
            // Every consumer but the last gets a copy; the last takes the batch.
            let b = if i + 1 == n { batch.take() } else { batch.clone() };
            let b = b.expect("invariant: the batch is taken only by the last router");
            let r = self.routers[i].route(b, &mut self.key_buf);
            r.map_err(|e| self.route_error(self.last_vertex, e))?;
        }
        Ok(())
    }
}

/// Runs `batch` through `stages`, then out through the tail's routers.
fn push(stages: &mut [Stage], tail: &mut Tail, batch: Batch) -> Result<(), TaskError> {
    if stages.is_empty() {
        return tail.route(batch);
    }
    let counters = &tail.shared.counters[stages[0].vertex][tail.subtask as usize];
    counters.received(batch.len(), batch.bytes(), batch.last_watermark());
    call_stage(stages, 0, tail, |op, next| op.process(batch, next))
}

/// Calls stage `si` with the rest of the chain as its output.
fn call_stage(
    stages: &mut [Stage],
    si: usize,
    tail: &mut Tail,
    f: impl FnOnce(&mut dyn Operator, &mut dyn Emit) -> Result<(), Fail>,
) -> Result<(), TaskError> {
    let (head, rest) = stages.split_at_mut(si + 1);
    let Stage { vertex, op, side_routers, unread_side, .. } = &mut head[si];
    let mut next = Next { vertex: *vertex, side_routers, unread_side, rest, tail };
    let r = f(op.as_mut(), &mut next);
    r.map_err(|f| next.tail.fail(*vertex, f))
}

/// The output of one stage: the stages after it, its side outputs, and
/// the tail.
struct Next<'a> {
    vertex: usize,
    side_routers: &'a mut Vec<(String, Router)>,
    unread_side: &'a mut HashMap<String, u64>,
    rest: &'a mut [Stage],
    tail: &'a mut Tail,
}

impl Emit for Next<'_> {
    fn emit(&mut self, batch: Batch) -> Result<(), TaskError> {
        if batch.is_void() {
            return Ok(());
        }
        let watermark = batch.last_watermark();
        let counters = &self.tail.shared.counters[self.vertex][self.tail.subtask as usize];
        counters.sent(batch.len(), batch.bytes(), watermark);
        if batch.fits(self.tail.batch_events, self.tail.batch_bytes) {
            push(self.rest, self.tail, batch)?;
        } else {
            for piece in batch.split(self.tail.batch_events, self.tail.batch_bytes) {
                push(self.rest, self.tail, piece)?;
            }
        }
        if let Some(w) = watermark {
            // Side outputs see the stage's watermarks too.
            for (_, router) in self.side_routers.iter_mut() {
                let r = router.route(Batch::watermark(w), &mut self.tail.key_buf);
                r.map_err(|e| self.tail.route_error(self.vertex, e))?;
            }
        }
        Ok(())
    }

    fn side(&mut self, events: Vec<SideEvent>) -> Result<(), TaskError> {
        if events.is_empty() {
            return Ok(());
        }
        for e in &events {
            if !self.side_routers.iter().any(|(t, _)| *t == e.tag) {
                *self.unread_side.entry(e.tag.clone()).or_default() += 1;
            }
        }
        for (tag, router) in self.side_routers.iter_mut() {
            let mut b = Batch::new();
            for e in events.iter().filter(|e| e.tag == *tag) {
                b.push(&e.key, &e.value, e.timestamp, e.origin);
            }
            for piece in b.split(self.tail.batch_events, self.tail.batch_bytes) {
                let r = router.route(piece, &mut self.tail.key_buf);
                r.map_err(|e| self.tail.route_error(self.vertex, e))?;
            }
        }
        Ok(())
    }
}

/// A chain of stages for one subtask and where its output goes.
pub(crate) struct Chain {
    pub stages: Vec<Stage>,
    pub tail: Tail,
    /// The last checkpoint the stages were told completed.
    pub notified: u64,
    /// The last base of incremental snapshots the stages were told of.
    pub rebased: u64,
}

impl Chain {
    pub fn head(&self) -> usize {
        self.stages[0].vertex
    }

    fn run(&mut self, batch: Batch) -> Result<(), TaskError> {
        push(&mut self.stages, &mut self.tail, batch)
    }

    fn tick(&mut self, now: i64) -> Result<(), TaskError> {
        for si in 0..self.stages.len() {
            call_stage(&mut self.stages, si, &mut self.tail, |op, next| op.on_processing_time(now, next))?;
        }
        Ok(())
    }

    fn all_routers(&mut self) -> impl Iterator<Item = &mut Router> {
        let side = self.stages.iter_mut().flat_map(|s| s.side_routers.iter_mut().map(|(_, r)| r));
        self.tail.routers.iter_mut().chain(side)
    }

    /// Sends what waited its buffer timeout in keyed routes; how long
    /// until the next part is due (`None`: none waits).
    fn flush_due(&mut self, now: Instant) -> Result<Option<Duration>, TaskError> {
        let mut next: Option<Duration> = None;
        for r in self.all_routers() {
            if let Some(d) = r.flush_due(now)? {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        Ok(next)
    }

    /// Tells every consumer this task is idle (or active again).
    fn set_idle(&mut self, idle: bool) -> Result<(), TaskError> {
        for r in self.all_routers() {
            r.idle(idle)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        for si in 0..self.stages.len() {
            call_stage(&mut self.stages, si, &mut self.tail, |op, next| op.finish(next))?;
        }
        for r in self.all_routers() {
            r.end()?;
        }
        Ok(())
    }

    /// Checkpoint `id`'s barrier passed the chain's input at `watermark`:
    /// snapshot every stage (the source's position standing in for its
    /// own stage), hand the parts to the checkpointer, pass the barrier on
    /// (ahead of queued data when the checkpoint is unaligned).
    fn checkpoint(
        &mut self,
        id: u64,
        watermark: i64,
        source: Option<Vec<Vec<u8>>>,
        barrier_at: Instant,
    ) -> Result<(), TaskError> {
        let Some(cp) = self.tail.shared.checkpoints.clone() else { return Ok(()) };
        let mut ack = self.snapshot(&cp, id, watermark, source)?;
        ack.timing.barrier_at = Some(barrier_at);
        ack.timing.alignment = barrier_at.elapsed().saturating_sub(ack.timing.sync);
        cp.ack(ack);
        self.barriers(id, cp.unaligned && !cp.is_savepoint(id))
    }

    /// The task finished: its final snapshot stands for it in every later
    /// checkpoint (FLIP-147), so checkpoints go on while other tasks run.
    /// `seen`: the latest checkpoint whose barrier it saw.
    fn finished(&mut self, watermark: i64, source: Option<Vec<Vec<u8>>>, seen: u64) -> Result<(), TaskError> {
        let Some(cp) = self.tail.shared.checkpoints.clone() else { return Ok(()) };
        let mut ack = self.snapshot(&cp, crate::checkpoint::FINISHED, watermark, source)?;
        ack.seen = seen;
        // It diffs against nothing any more: no base of its keeps older
        // shared files alive.
        if let Some(r) = cp.rebased.get(self.tail.task) {
            r.store(u64::MAX, Ordering::Release);
        }
        cp.ack(ack);
        Ok(())
    }

    /// The first barrier of unaligned checkpoint `id` came: snapshot every
    /// stage and pass the barrier on ahead of queued data. The parts go
    /// to the checkpointer once the in-flight data is complete
    /// ([`Chain::ack_unaligned`]).
    fn checkpoint_unaligned(&mut self, id: u64, watermark: i64) -> Result<Option<InFlight>, TaskError> {
        let Some(cp) = self.tail.shared.checkpoints.clone() else { return Ok(None) };
        let barrier_at = Instant::now();
        let mut ack = self.snapshot(&cp, id, watermark, None)?;
        ack.timing.barrier_at = Some(barrier_at);
        ack.timing.unaligned = true;
        self.barriers(id, true)?;
        Ok(Some(InFlight { ack, data: Vec::new() }))
    }

    /// Hands an unaligned checkpoint's parts, with its in-flight data, to
    /// the checkpointer.
    fn ack_unaligned(&mut self, mut flight: InFlight) {
        let Some(cp) = self.tail.shared.checkpoints.clone() else { return };
        if let Some(head) = flight.ack.stages.first_mut() {
            head.channels = crate::checkpoint::write_in_flight(&flight.data);
        }
        let t = &mut flight.ack.timing;
        t.alignment = t.barrier_at.map_or(Duration::ZERO, |at| at.elapsed().saturating_sub(t.sync));
        cp.ack(flight.ack);
    }

    fn snapshot(
        &mut self,
        cp: &crate::checkpoint::CheckpointShared,
        id: u64,
        watermark: i64,
        mut source: Option<Vec<Vec<u8>>>,
    ) -> Result<TaskAck, TaskError> {
        // A checkpoint that completed just before this barrier came is
        // the base, even when the task has not been told yet.
        self.rebase(cp);
        let started = Instant::now();
        let mut stages = Vec::with_capacity(self.stages.len());
        // (A final snapshot is whole: it is used again and again.)
        let whole = cp.is_savepoint(id) || id == crate::checkpoint::FINISHED;
        let snap = Snap { checkpoint: id, incremental: cp.incremental && !whole };
        for stage in &mut self.stages {
            let (state, shape, operator) = match source.take() {
                Some(splits) => {
                    let mut list =
                        weir_wasm::OperatorList::new(crate::job::SPLITS, weir_wasm::Redistribution::EvenSplit);
                    for split in &splits {
                        list.push(split)
                            .map_err(|m| self.tail.error(stage.vertex, OpError { origin: None, message: m }))?;
                    }
                    (Vec::new(), Shape::Inline, crate::checkpoint::write_lists(&[list]))
                }
                None => {
                    let mut w = Writer::default();
                    let r = stage.op.snapshot(snap, &stage.groups, &mut w);
                    let shape = r.map_err(|e| self.tail.error(stage.vertex, e))?;
                    let lists = stage.op.snapshot_lists(id).map_err(|e| self.tail.error(stage.vertex, e))?;
                    (w.buf, shape, crate::checkpoint::write_lists(&lists))
                }
            };
            let vertex = self.tail.names[stage.vertex].id.clone();
            let subtask = self.tail.subtask;
            stages.push(StagePart { vertex, subtask, watermark, state, shape, operator, channels: Vec::new() });
        }
        let timing = crate::checkpoint::AckTiming { sync: started.elapsed(), ..Default::default() };
        Ok(TaskAck { checkpoint: id, task: self.tail.task, stages, seen: 0, timing })
    }

    /// Passes checkpoint `id`'s barrier on to every consumer.
    fn barriers(&mut self, id: u64, unaligned: bool) -> Result<(), TaskError> {
        for r in self.all_routers() {
            r.barrier(id, unaligned)?;
        }
        Ok(())
    }

    /// Tells the stages of the latest completed checkpoint their
    /// incremental snapshots diff against from now.
    fn rebase(&mut self, cp: &crate::checkpoint::CheckpointShared) {
        let base = cp.base.load(Ordering::Acquire);
        if base > self.rebased {
            // Snapshots sent so far went before this store (the
            // checkpointer relies on it to forget older bases).
            self.rebased = base;
            for stage in &mut self.stages {
                stage.op.rebase(base);
            }
            if let Some(r) = cp.rebased.get(self.tail.task) {
                r.store(base, Ordering::Release);
            }
        }
    }

    /// Tells the stages of checkpoints completed since the last call.
    fn notify(&mut self) -> Result<(), TaskError> {
        let Some(cp) = self.tail.shared.checkpoints.clone() else { return Ok(()) };
        self.rebase(&cp);
        let completed = cp.completed.load(Ordering::Acquire);
        if completed <= self.notified {
            return Ok(());
        }
        self.notified = completed;
        if let Some(n) = cp.notified.get(self.tail.task) {
            n.store(completed, Ordering::Release);
        }
        for stage in &mut self.stages {
            let r = stage.op.notify_complete(completed);
            r.map_err(|e| self.tail.error(stage.vertex, e))?;
        }
        Ok(())
    }

    /// Side-output events nobody reads: (vertex, tag, count).
    pub fn unread_side_outputs(&self) -> Vec<(usize, String, u64)> {
        let per_stage = self.stages.iter().map(|s| (s.vertex, &s.unread_side));
        per_stage.flat_map(|(v, m)| m.iter().map(move |(t, n)| (v, t.clone(), *n))).collect()
    }
}

/// How a task is fed.
pub(crate) enum Head {
    Source {
        source: Box<dyn Source>,
        idle_timeout: Option<Duration>,
        batch_size: usize,
    },
    /// `replay`: the in-flight data of the unaligned checkpoint restored
    /// from, per input, taken before anything new.
    Input {
        inbox: Arc<Inbox>,
        gate: InputGate,
        replay: Vec<(usize, Batch)>,
    },
}

/// An unaligned checkpoint a task has snapshotted, and the in-flight data
/// it keeps until every input's barrier has come.
pub(crate) struct InFlight {
    ack: TaskAck,
    /// (input, data), in the order they came.
    data: Vec<(usize, Batch)>,
}

/// Runs a task to its end; returns its chain for the summary. A task
/// restored from a checkpoint first runs the watermark it had then
/// through its chain (timers at or before it fired before the checkpoint,
/// so none fires again; operators know their watermark again).
pub(crate) fn run_task(head: Head, chain: &mut Chain, resume: Option<i64>) -> Result<(), TaskError> {
    if let Some(w) = resume.filter(|&w| w > i64::MIN) {
        chain.run(Batch::watermark(w))?;
    }
    match head {
        Head::Source { source, idle_timeout, batch_size } => {
            run_source(source, chain, batch_size, idle_timeout, resume.unwrap_or(i64::MIN))
        }
        // Restored from its final snapshot (its input had ended): it only
        // waits for its inputs to end again, and fires no processing-time
        // timer it would never have fired.
        Head::Input { inbox, gate, replay } => {
            let finished = resume == Some(MAX_WATERMARK);
            run_input(&inbox, gate, replay, chain, finished)
        }
    }
}

fn run_source(
    mut source: Box<dyn Source>,
    chain: &mut Chain,
    batch_size: usize,
    idle_timeout: Option<Duration>,
    mut watermark: i64,
) -> Result<(), TaskError> {
    let head = chain.head();
    let mut last_data = Instant::now();
    let mut idle = false;
    // Bytes of the last batch: the next one is made that large at once,
    // plus an eighth, as batches of the same source differ by a few bytes
    // and one byte too few would copy the whole buffer to grow it.
    let mut last_bytes = batch_size * 64;
    let checkpoints = chain.tail.shared.checkpoints.clone();
    let mut injected = chain.notified;
    loop {
        if chain.tail.shared.cancelled() {
            return Err(TaskError::cancelled());
        }
        if let Some(cp) = &checkpoints {
            // Every id in turn, even one that expired meanwhile: a task
            // aligning it downstream waits for its barrier on every input.
            let due = cp.trigger.load(Ordering::Acquire);
            while injected < due {
                injected += 1;
                chain.checkpoint(injected, watermark, Some(source.position()), Instant::now())?;
                if injected == cp.stop_at.load(Ordering::Acquire) {
                    // Stop with a savepoint: nothing after its barrier.
                    return stopped(chain);
                }
            }
            chain.notify()?;
        }
        let flush_in = chain.flush_due(Instant::now())?;
        let mut batch = Batch::with_capacity(batch_size, last_bytes + last_bytes / 8);
        let poll = source.next_batch(&mut batch, batch_size).map_err(|e| {
            chain.tail.error(head, OpError { origin: None, message: format!("{}: {}", e.place, e.message) })
        })?;
        match poll {
            Poll::Ready => {
                last_bytes = batch.bytes();
                watermark = batch.last_watermark().unwrap_or(watermark);
                if idle {
                    idle = false;
                    chain.set_idle(false)?;
                }
                last_data = Instant::now();
                chain.run(batch)?;
            }
            Poll::Idle(d) => {
                if !idle {
                    idle = true;
                    chain.set_idle(true)?;
                }
                chain.tick(chain.tail.clock.now())?;
                // In short naps: a barrier, a cancel or a stop is not
                // kept waiting by an idle subtask.
                // What the tick emitted may wait for a flush too.
                let flush_in = chain.flush_due(Instant::now())?.or(flush_in);
                let waiting = crate::metrics::begin(crate::metrics::Wait::Idle);
                let nap = flush_in.map_or(d, |f| d.min(f));
                std::thread::sleep(nap.min(Duration::from_millis(10)));
                waiting.end();
            }
            Poll::Wait(d) => {
                if !batch.is_void() {
                    watermark = batch.last_watermark().unwrap_or(watermark);
                    chain.run(batch)?;
                }
                if let Some(t) = idle_timeout
                    && !idle
                    && last_data.elapsed() >= t
                {
                    idle = true;
                    chain.set_idle(true)?;
                }
                chain.tick(chain.tail.clock.now())?;
                let flush_in = chain.flush_due(Instant::now())?.or(flush_in);
                let waiting = crate::metrics::begin(crate::metrics::Wait::Idle);
                std::thread::sleep(flush_in.map_or(d, |f| d.min(f)));
                waiting.end();
            }
            Poll::End => {
                if !batch.is_void() {
                    chain.run(batch)?;
                }
                // The end makes this input active again downstream (the
                // valve), so the final watermark is never held back.
                chain.run(Batch::watermark(MAX_WATERMARK))?;
                chain.finish()?;
                return chain.finished(MAX_WATERMARK, Some(source.position()), injected);
            }
        }
    }
}

/// A source stopped by a savepoint: it emits nothing more, and waits for
/// the job to be cancelled once the savepoint is committed.
fn stopped(chain: &mut Chain) -> Result<(), TaskError> {
    loop {
        if chain.tail.shared.cancelled() {
            return Err(TaskError::cancelled());
        }
        chain.notify()?;
        let waiting = crate::metrics::begin(crate::metrics::Wait::Idle);
        std::thread::sleep(Duration::from_millis(10));
        waiting.end();
    }
}

fn run_input(
    inbox: &Inbox,
    mut gate: InputGate,
    replay: Vec<(usize, Batch)>,
    chain: &mut Chain,
    finished: bool,
) -> Result<(), TaskError> {
    let mut steps = Vec::new();
    let release = |gate: &InputGate| (0..gate.inputs()).for_each(|i| inbox.hold(i, false));
    // The unaligned checkpoint in progress, if any.
    let mut flight: Option<InFlight> = None;
    let mut replay = replay.into_iter();
    loop {
        let (input, message) = match replay.next() {
            // What was in flight at the checkpoint restored from comes
            // first, as it came then.
            Some((input, batch)) => (input, MessageKind::Data(batch)),
            None => {
                chain.notify()?;
                let now = Instant::now();
                if gate.tick_due(now) && !finished {
                    // Under steady input recv never times out: check the clock here.
                    chain.tick(chain.tail.clock.now())?;
                }
                let flush_in = chain.flush_due(now)?;
                let wait = flush_in.map_or(gate.until_tick(now), |f| f.min(gate.until_tick(now)));
                match inbox.recv(wait)? {
                    Recv::Message(input, message) => (input, message),
                    Recv::Timeout => continue,
                }
            }
        };
        if let (Some(f), MessageKind::Data(batch)) = (&mut flight, &message)
            && gate.in_flight(input)
        {
            f.data.push((input, batch.clone()));
        }
        gate.on_message(input, message, &mut steps);
        for step in steps.drain(..) {
            match step {
                Step::Run(batch) => chain.run(batch)?,
                Step::Idle(idle) => chain.set_idle(idle)?,
                Step::Finish => {
                    chain.finish()?;
                    return chain.finished(gate.watermark(), None, gate.last_seen());
                }
                Step::Hold(input) => inbox.hold(input, true),
                Step::Checkpoint(id) => {
                    let first = gate.first_barrier().unwrap_or_else(Instant::now);
                    chain.checkpoint(id, gate.watermark(), None, first)?;
                    release(&gate);
                }
                Step::Release => {
                    // (An abandoned unaligned checkpoint is never acknowledged.)
                    flight = None;
                    release(&gate);
                }
                Step::Snapshot(id) => flight = chain.checkpoint_unaligned(id, gate.watermark())?,
                Step::Overtaken(input, data) => {
                    if let Some(f) = &mut flight {
                        f.data.extend(data.into_iter().map(|b| (input, b)));
                    }
                }
                Step::Complete(_) => {
                    if let Some(f) = flight.take() {
                        chain.ack_unaligned(f);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{InputSender, MessageKind, Route};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    /// Emits every input event `times` times in one batch, then the
    /// input's marks at the end.
    struct Repeat(usize);

    impl Operator for Repeat {
        fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
            let mut b = Batch::new();
            for i in 0..input.len() {
                let e = input.event(i);
                for _ in 0..self.0 {
                    b.push(e.key, e.value, e.timestamp, e.origin);
                }
            }
            for m in input.marks() {
                b.mark(m.watermark);
            }
            Ok(out.emit(b)?)
        }
    }

    /// Records the sizes of the batches it is given, and passes them on.
    struct Record(Arc<Mutex<Vec<usize>>>);

    impl Operator for Record {
        fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
            self.0.lock().unwrap().push(input.len());
            Ok(out.emit(input)?)
        }
    }

    /// Sends its input's events to side outputs by their value (the tag),
    /// and a watermark on the main output.
    struct Sides;

    impl Operator for Sides {
        fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
            let side = (0..input.len())
                .map(|i| {
                    let e = input.event(i);
                    SideEvent {
                        tag: String::from_utf8(e.value.to_vec()).unwrap(),
                        key: e.key.to_vec(),
                        value: b"v".to_vec(),
                        timestamp: e.timestamp,
                        origin: e.origin,
                    }
                })
                .collect();
            out.side(side)?;
            Ok(out.emit(Batch::watermark(42))?)
        }
    }

    /// Fails on every batch, naming its first record.
    struct Failing;

    impl Operator for Failing {
        fn process(&mut self, input: Batch, _out: &mut dyn Emit) -> Result<(), Fail> {
            Err(OpError { origin: Some(input.event(0).origin), message: "bad record".into() }.into())
        }
    }

    fn to(inbox: &Arc<Inbox>) -> Router {
        Router::new(
            "next".into(),
            Route::Forward,
            vec![InputSender::Local {
                inbox: inbox.clone(),
                input: 0,
                channel: crate::metrics::ChannelTimes::new("next", 0, false),
            }],
        )
    }

    fn stage(vertex: usize, op: impl Operator + 'static) -> Stage {
        Stage { vertex, op: Box::new(op), groups: None, side_routers: Vec::new(), unread_side: HashMap::new() }
    }

    /// A chain of `stages` whose main output goes to `inbox`, batches cut
    /// at `batch_events` events.
    fn chain(stages: Vec<Stage>, inbox: &Arc<Inbox>, batch_events: usize) -> Chain {
        let n = stages.len();
        let names = (0..n)
            .map(|v| VertexInfo { id: format!("op{v}"), what: "operator", origin: Some("input.csv".into()) })
            .collect();
        Chain {
            stages,
            tail: Tail {
                routers: vec![to(inbox)],
                last_vertex: n - 1,
                subtask: 0,
                task: 0,
                names: Arc::new(names),
                shared: Arc::new(JobShared::new(vec![1; n])),
                batch_events,
                batch_bytes: 1 << 20,
                clock: weir_state::Clock::System,
                key_buf: Vec::new(),
            },
            notified: 0,
            rebased: 0,
        }
    }

    fn one_event(origin: u64, value: &[u8], watermark: Option<i64>) -> Batch {
        let mut b = Batch::new();
        b.push(b"k", value, 1, origin);
        if let Some(w) = watermark {
            b.mark(w);
        }
        b
    }

    /// Everything queued in `inbox`, in order.
    fn drain(inbox: &Inbox) -> Vec<MessageKind> {
        let mut out = Vec::new();
        while let Ok(Recv::Message(_, m)) = inbox.recv(Duration::ZERO) {
            out.push(m);
        }
        out
    }

    fn data(messages: &[MessageKind]) -> Vec<&Batch> {
        messages.iter().filter_map(|m| if let MessageKind::Data(b) = m { Some(b) } else { None }).collect()
    }

    #[test]
    fn output_past_the_batch_bounds_reaches_the_next_stage_and_the_routers_in_pieces() {
        let inbox = Inbox::new(1, 1 << 20);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut c = chain(vec![stage(0, Repeat(10)), stage(1, Record(seen.clone()))], &inbox, 4);
        c.run(one_event(7, b"x", Some(5))).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![4, 4, 2], "the next stage sees bounded batches");
        let messages = drain(&inbox);
        let batches = data(&messages);
        assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert_eq!(batches[2].last_watermark(), Some(5), "the watermark ends the last piece");
        assert!(batches[..2].iter().all(|b| b.marks().is_empty()), "no watermark overtakes events");
        let counters = &c.tail.shared.counters;
        assert_eq!(counters[0][0].records_in.load(Ordering::Relaxed), 1);
        assert_eq!(counters[0][0].records_out.load(Ordering::Relaxed), 10);
        assert_eq!(counters[1][0].records_in.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn side_outputs_reach_their_consumers_with_the_watermark_and_unread_ones_are_counted() {
        let (main, late) = (Inbox::new(1, 1 << 20), Inbox::new(1, 1 << 20));
        let mut c = chain(vec![stage(0, Sides)], &main, 1024);
        c.stages[0].side_routers.push(("late".into(), to(&late)));
        let mut input = Batch::new();
        for (i, tag) in ["late", "lost", "late", "lost", "late"].iter().enumerate() {
            input.push(b"k", tag.as_bytes(), i as i64, i as u64);
        }
        c.run(input).unwrap();
        let side = drain(&late);
        let batches = data(&side);
        assert_eq!(batches.len(), 2, "the side events, then the stage's watermark");
        assert_eq!(batches[0].origins(), &[0, 2, 4]);
        assert_eq!((batches[1].len(), batches[1].last_watermark()), (0, Some(42)));
        assert_eq!(data(&drain(&main))[0].last_watermark(), Some(42));
        assert_eq!(c.unread_side_outputs(), vec![(0, "lost".to_owned(), 2)]);
    }

    #[test]
    fn idleness_and_the_end_reach_the_main_and_side_consumers() {
        let (main, late) = (Inbox::new(1, 1 << 20), Inbox::new(1, 1 << 20));
        let mut c = chain(vec![stage(0, Repeat(1))], &main, 1024);
        c.stages[0].side_routers.push(("late".into(), to(&late)));
        c.set_idle(true).unwrap();
        c.finish().unwrap();
        for inbox in [&main, &late] {
            let got = drain(inbox);
            assert!(matches!(got[..], [MessageKind::Idle(true), MessageKind::End]), "{got:?}");
        }
    }

    #[test]
    fn an_operator_error_names_the_operator_subtask_and_record() {
        let inbox = Inbox::new(1, 1 << 20);
        let mut c = chain(vec![stage(0, Repeat(1)), stage(1, Failing)], &inbox, 1024);
        let e = c.run(one_event(123, b"x", None)).unwrap_err();
        assert!(!e.is_cancellation());
        assert_eq!(
            e.to_string(),
            "operator `op1` (subtask 0), record at input.csv offset 123: bad record",
            "the failing stage, not the chain's head, is named"
        );
    }

    #[test]
    fn a_closed_consumer_is_a_cancellation_not_a_failure() {
        let inbox = Inbox::new(1, 1 << 20);
        let mut c = chain(vec![stage(0, Repeat(1))], &inbox, 1024);
        inbox.close();
        let e = c.run(one_event(1, b"x", None)).unwrap_err();
        assert!(e.is_cancellation(), "{e}");
    }
}
