//! Operators as a task runs them: one call per batch, watermarks (marks)
//! carried through to the output at the right positions, and output handed
//! on as it is made (never gathered over a whole input batch or a whole
//! watermark's timers), so it flows in bounded batches with backpressure.

use crate::TaskError;
use crate::checkpoint::{Reader, Writer, read_keyed, write_changes, write_keyed};
use std::ops::RangeInclusive;
use weir_connectors::Sink;
use weir_core::{Batch, EventRef, Mark};
use weir_state::{Change, KeyedStateBackend, Piece, StateKind};
use weir_wasm::{CallError, CallOutput, MapInstance, OperatorList, SideEvent, StateNames};

mod process;
mod window;
pub(crate) use process::ProcessOp;
pub(crate) use window::{WindowOp, WindowWasm};

/// The origin given to events emitted by timers.
pub(crate) const TIMER_ORIGIN: u64 = u64::MAX;

/// A failure inside an operator, before the task adds its name.
#[derive(Debug)]
pub(crate) struct OpError {
    pub origin: Option<u64>,
    pub message: String,
}

impl OpError {
    pub fn call(e: CallError, origins: &[u64]) -> OpError {
        let origin = match &e {
            CallError::Operator { index, .. } | CallError::Trap { index: Some(index), .. } => {
                origins.get(*index as usize).copied()
            }
            _ => None,
        };
        OpError { origin, message: e.to_string() }
    }
}

/// Why a stage stopped: its own failure, or one downstream of it (already
/// named) that it passes on.
#[derive(Debug)]
pub(crate) enum Fail {
    Op(OpError),
    Downstream(TaskError),
}

impl From<OpError> for Fail {
    fn from(e: OpError) -> Self {
        Fail::Op(e)
    }
}

impl From<TaskError> for Fail {
    fn from(e: TaskError) -> Self {
        Fail::Downstream(e)
    }
}

/// Where a stage's output goes: the rest of the chain, then the routers.
pub(crate) trait Emit {
    /// Main-output events with the watermarks between them. Large batches
    /// are cut to the job's batch bounds on the way.
    fn emit(&mut self, batch: Batch) -> Result<(), TaskError>;
    /// Side-output events (sent before the main output of the same call).
    fn side(&mut self, events: Vec<SideEvent>) -> Result<(), TaskError>;
}

/// A stage of a chain.
pub(crate) trait Operator: Send {
    /// Processes a batch, emitting its output (with marks) as it goes.
    fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail>;

    /// Fires processing-time timers due at `now` (epoch ms).
    fn on_processing_time(&mut self, _now: i64, _out: &mut dyn Emit) -> Result<(), Fail> {
        Ok(())
    }

    /// End of input: flush.
    fn finish(&mut self, _out: &mut dyn Emit) -> Result<(), Fail> {
        Ok(())
    }

    /// Called once before anything else: `restored` holds what this
    /// operator's subtask (or, after a change of parallelism, every old
    /// subtask) wrote into the checkpoint restored from, each as its
    /// chain of snapshots (one, unless incremental: a full one, then what
    /// changed since); empty for a fresh start. Keyed operators keep the
    /// pieces of their key groups.
    fn open(&mut self, _groups: &Groups, _restored: &[Chain<'_>]) -> Result<(), String> {
        Ok(())
    }

    /// Checkpoint `snap.checkpoint`'s barrier reached the operator: write
    /// its state (a point-in-time copy; the task goes on once it returns)
    /// and say how it is kept.
    fn snapshot(&mut self, _snap: Snap, _groups: &Groups, _out: &mut Writer) -> Result<Shape, OpError> {
        Ok(Shape::Inline)
    }

    /// Called once, after [`Operator::open`]: the operator-state lists of
    /// this subtask (redistributed from the old subtasks'), `restored`
    /// when the checkpoint held the operator.
    fn restore_lists(&mut self, _lists: &[OperatorList], _restored: bool) -> Result<(), String> {
        Ok(())
    }

    /// Whether it keeps operator state at all (else restored lists with
    /// elements are refused, or dropped when that is allowed).
    fn keeps_lists(&self) -> bool {
        false
    }

    /// The operator-state lists at checkpoint `checkpoint`'s barrier
    /// (right after [`Operator::snapshot`]).
    fn snapshot_lists(&mut self, _checkpoint: u64) -> Result<Vec<OperatorList>, OpError> {
        Ok(Vec::new())
    }

    /// Checkpoint `checkpoint` completed (two-phase-commit sinks commit).
    fn notify_complete(&mut self, _checkpoint: u64) -> Result<(), OpError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` completed and is the latest complete one
    /// (not a savepoint): incremental snapshots diff against it from now.
    fn rebase(&mut self, _checkpoint: u64) {}
}

/// One old subtask's snapshots of an operator, oldest first.
pub(crate) type Chain<'a> = Vec<&'a [u8]>;

/// What a snapshot is taken for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snap {
    /// The checkpoint's (or savepoint's) number.
    pub checkpoint: u64,
    /// Whether it may hold only what changed: a checkpoint of a job with
    /// incremental checkpoints (a savepoint holds everything).
    pub incremental: bool,
}

/// How an operator's snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// In the task's file: everything, on its own.
    Inline,
    /// Everything, in a shared file later snapshots build on.
    Full,
    /// What changed since checkpoint `base`, in a shared file: restored
    /// after the chain `base` was restored from.
    Delta {
        /// The checkpoint it diffs against.
        base: u64,
    },
}

/// Snapshots in a chain at most: then a full one starts the next, so a
/// restore reads at most this many files per operator subtask.
const MAX_CHAIN: usize = 16;

/// An operator subtask's incremental snapshots: those taken and not yet
/// known complete, and the latest complete one, which the next diffs
/// against.
#[derive(Debug, Default)]
pub(crate) struct Increments {
    taken: Vec<Taken>,
    base: Option<Taken>,
    /// Full snapshots to take before trying a delta again: after a delta
    /// larger than a full one (state that churns between checkpoints).
    fulls: u32,
}

/// Full snapshots taken after a delta that was larger than a full one.
const FULLS_AFTER_CHURN: u32 = 8;

#[derive(Debug, Clone, Copy)]
struct Taken {
    checkpoint: u64,
    /// The backend's mark at the snapshot.
    mark: u64,
    /// Snapshots in its chain, itself included.
    files: usize,
    /// Bytes of the chain's full snapshot, and of its changes since.
    full: usize,
    changes: usize,
}

impl Increments {
    /// Checkpoint `checkpoint` completed: the next snapshot diffs
    /// against it, and the backend forgets changes before it.
    pub fn rebase(&mut self, checkpoint: u64, backend: &mut dyn KeyedStateBackend) {
        // Not found (more snapshots in flight than are kept): no base,
        // so the next snapshot is a full one rather than a delta against
        // a base whose files may be gone.
        self.base = self.taken.iter().find(|t| t.checkpoint == checkpoint).copied();
        if let Some(t) = self.base {
            backend.confirm(t.mark);
        }
        self.taken.retain(|t| t.checkpoint > checkpoint);
    }

    fn took(&mut self, t: Taken) {
        // Checkpoints that never complete are not kept for ever.
        if self.taken.len() >= MAX_CHAIN {
            self.taken.remove(0);
        }
        self.taken.push(t);
    }
}

/// The key groups an operator subtask owns (`None`: it owns none).
pub(crate) type Groups = Option<RangeInclusive<u16>>;

/// Writes the keyed state and timers of `groups` for a checkpoint: the
/// names of the declared states first (value, list, map; empty for the
/// built-in operators, whose state ids are fixed), so a restore into an
/// upgraded component matches state by name, then every piece, or, for
/// an incremental snapshot, what changed since the latest complete
/// checkpoint (and every timer).
pub(crate) fn snapshot_keyed(
    backend: &mut dyn KeyedStateBackend,
    groups: &Groups,
    names: Option<&StateNames>,
    (snap, inc): (Snap, &mut Increments),
    out: &mut Writer,
) -> Result<Shape, OpError> {
    let shape = write_snapshot(backend, groups, names, (snap, inc), out);
    // A read that failed while the snapshot was written (a disk error
    // under `lsm`) left a piece out, or turned it into a reset: the
    // checkpoint must not complete with it.
    backend.check().map_err(|e| OpError { origin: None, message: format!("cannot snapshot its state: {e}") })?;
    Ok(shape)
}

fn write_snapshot(
    backend: &mut dyn KeyedStateBackend,
    groups: &Groups,
    names: Option<&StateNames>,
    (snap, inc): (Snap, &mut Increments),
    out: &mut Writer,
) -> Shape {
    for list in names.map_or([&[][..]; 3], |n| [&n.value[..], &n.list[..], &n.map[..]]) {
        out.u32(list.len() as u32);
        for name in list {
            out.str(name);
        }
    }
    let start = out.buf.len();
    if !snap.incremental {
        write_keyed(backend, groups.clone(), out);
        return Shape::Inline;
    }
    let base = inc.base.filter(|b| b.files < MAX_CHAIN && b.changes <= b.full / 2);
    let churned = inc.fulls > 0;
    inc.fulls = inc.fulls.saturating_sub(1);
    if let Some(b) = base.filter(|_| !churned)
        && write_changes(backend, groups.clone(), b.mark, out)
    {
        let bytes = out.buf.len() - start;
        if bytes > b.full {
            inc.fulls = FULLS_AFTER_CHURN;
        }
        let changes = b.changes + bytes;
        if let Some(mark) = backend.cut() {
            inc.took(Taken { checkpoint: snap.checkpoint, mark, files: b.files + 1, full: b.full, changes });
        }
        return Shape::Delta { base: b.checkpoint };
    }
    write_keyed(backend, groups.clone(), out);
    match backend.cut() {
        Some(mark) => {
            let full = out.buf.len() - start;
            inc.took(Taken { checkpoint: snap.checkpoint, mark, files: 1, full, changes: 0 });
            Shape::Full
        }
        None => Shape::Inline,
    }
}

/// Puts back the keyed state and timers of `groups` from every part,
/// matching each state by name to `names` (the component's declared
/// states; `None` for built-in operators). A state the component no longer
/// declares, or declares as another kind, is refused by name.
pub(crate) fn restore_keyed(
    backend: &mut dyn KeyedStateBackend,
    groups: &Groups,
    restored: &[Chain<'_>],
    names: Option<&StateNames>,
) -> Result<(), String> {
    const KINDS: [&str; 3] = ["value", "list", "map"];
    let damaged = |e: String| format!("its checkpointed state is damaged: {e}");
    let parts = restored.iter().flat_map(|chain| chain.iter().enumerate().map(|(i, p)| (p, i + 1 == chain.len())));
    for (part, last) in parts {
        let mut r = Reader::new(part);
        // Per kind: old state id → new state id.
        let mut remap: [Vec<u32>; 3] = Default::default();
        let mut named = false;
        for (kind, map) in remap.iter_mut().enumerate() {
            let n = r.u32().map_err(damaged)?;
            for id in 0..n {
                let name = r.str().map_err(damaged)?;
                named = true;
                let Some(names) = names else {
                    map.push(id);
                    continue;
                };
                let declared = [&names.value, &names.list, &names.map];
                match declared[kind].iter().position(|d| d == name) {
                    Some(new) => map.push(new as u32),
                    None => {
                        let other = (0..3).find(|&k| declared[k].iter().any(|d| d == name));
                        return Err(match other {
                            Some(k) => format!(
                                "the checkpoint holds {} state `{name}`, which the component now declares as {}                                  state; keep its kind, or give the new state another name",
                                KINDS[kind], KINDS[k]
                            ),
                            None => format!(
                                "the checkpoint holds {} state `{name}`, which the component no longer declares (renamed or removed?); declare it again, or start the job without this state",
                                KINDS[kind]
                            ),
                        });
                    }
                }
            }
        }
        let keep = |g: u16| groups.as_ref().is_some_and(|r| r.contains(&g));
        let id = |kind: usize, state: u32| if named { remap[kind].get(state as usize).copied() } else { Some(state) };
        backend.restore_hint(r.clone().u64().unwrap_or(0) as usize);
        let mut bad = None;
        let unlisted = || Some("a piece of state names a state its table does not list".to_owned());
        let read = read_keyed(&mut r, &keep, last, &mut |change| {
            let piece = match change {
                Change::Piece(Piece::Value { state, at, value }) => {
                    id(0, state).map(|state| Piece::Value { state, at, value })
                }
                Change::Piece(Piece::List { state, at, element }) => {
                    id(1, state).map(|state| Piece::List { state, at, element })
                }
                Change::Piece(Piece::Map { state, at, map_key, value }) => {
                    id(2, state).map(|state| Piece::Map { state, at, map_key, value })
                }
                Change::Piece(timer @ Piece::Timer { .. }) => Some(timer),
                Change::Reset { kind, state, at } => {
                    match (kind, id(kind as usize, state)) {
                        (_, None) => bad = unlisted(),
                        (StateKind::Value, Some(s)) => backend.value_clear(s, at),
                        (StateKind::List, Some(s)) => backend.list_clear(s, at),
                        (StateKind::Map, Some(s)) => backend.map_clear(s, at),
                    }
                    return;
                }
            };
            match piece {
                Some(p) => backend.restore(p),
                None => bad = unlisted(),
            }
        });
        // Before the next file's resets (see `restore_end`), and before an
        // error: nothing stays held back in a backend.
        backend.restore_end();
        read.map_err(damaged)?;
        if let Some(e) = bad {
            return Err(damaged(e));
        }
    }
    backend.check().map_err(|e| e.to_string())
}

/// Puts `marks` into `out` at the positions the operator's `input_ends`
/// give (mark after input `k` → after the output of inputs `0..k`), plus
/// `base` events already in `out`.
pub(crate) fn carry_marks(marks: &[Mark], input_ends: &[u32], base: u32, out: &mut Batch) {
    for m in marks {
        let after = if m.after == 0 { 0 } else { input_ends[m.after as usize - 1] };
        out.mark_at(base + after, m.watermark);
    }
}

/// A source's own stage: what the source emits goes on unchanged.
pub(crate) struct PassThrough;

impl Operator for PassThrough {
    fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        Ok(out.emit(input)?)
    }
}

/// A Wasm `map` operator.
pub(crate) struct MapOp {
    pub instance: MapInstance,
    /// The operator's id and its `dead-letter` tag, if it has one.
    pub id: String,
    pub dead_letter: Option<String>,
}

/// The dead letter of event `i` of `input`, rejected by operator `id` with
/// `message`: `{"error", "operator", "offset", "record"}` with the
/// record's key and timestamp; the record is the value as JSON, or as a
/// string when it is not JSON.
pub(crate) fn dead_letter(tag: &str, id: &str, input: &Batch, i: usize, message: &str) -> SideEvent {
    let e = input.event(i);
    let record = serde_json::from_slice::<serde_json::Value>(e.value)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(e.value).into_owned()));
    // (A window's output has no record offset: `null`.)
    let offset = (e.origin != TIMER_ORIGIN).then_some(e.origin);
    let value = serde_json::json!({"error": message, "operator": id, "offset": offset, "record": record});
    SideEvent {
        tag: tag.to_owned(),
        key: e.key.to_vec(),
        value: value.to_string().into_bytes(),
        timestamp: e.timestamp,
        origin: e.origin,
    }
}

/// `input` split around event `i`: the events before it with the marks up
/// to just after it, and the events after it with the later marks.
fn split_around(input: &Batch, i: usize) -> (Batch, Batch) {
    let (mut before, mut after) = (Batch::new(), Batch::new());
    for j in 0..input.len() {
        match j.cmp(&i) {
            std::cmp::Ordering::Less => before.push_from(input, j),
            std::cmp::Ordering::Greater => after.push_from(input, j),
            std::cmp::Ordering::Equal => {}
        }
    }
    for m in input.marks() {
        if m.after as usize <= i + 1 {
            before.mark_at(m.after.min(i as u32), m.watermark);
        } else {
            after.mark_at(m.after - i as u32 - 1, m.watermark);
        }
    }
    (before, after)
}

impl Operator for MapOp {
    fn process(&mut self, mut input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        loop {
            if input.is_empty() {
                return Ok(out.emit(input)?);
            }
            match self.instance.map_batch(&input) {
                Ok(CallOutput { mut events, input_ends, side }) => {
                    carry_marks(input.marks(), &input_ends, 0, &mut events);
                    out.side(side)?;
                    return Ok(out.emit(events)?);
                }
                // With a dead-letter output, the rejected record goes there,
                // the records before it run again (their output was lost
                // with the call) and the rest go on: each record is mapped
                // at most twice.
                Err(CallError::Operator { index, message })
                    if self.dead_letter.is_some() && (index as usize) < input.len() =>
                {
                    let tag = self.dead_letter.as_deref().unwrap_or_default();
                    let (before, rest) = split_around(&input, index as usize);
                    out.side(vec![dead_letter(tag, &self.id, &input, index as usize, &message)])?;
                    self.process(before, out)?;
                    input = rest;
                }
                Err(e) => return Err(OpError::call(e, input.origins()).into()),
            }
        }
    }

    fn restore_lists(&mut self, lists: &[OperatorList], restored: bool) -> Result<(), String> {
        self.instance.restore_state(lists, restored).map_err(|e| e.to_string())
    }

    fn keeps_lists(&self) -> bool {
        self.instance.has_operator_state()
    }

    fn snapshot_lists(&mut self, checkpoint: u64) -> Result<Vec<OperatorList>, OpError> {
        self.instance.snapshot_state(checkpoint).map_err(|e| OpError { origin: None, message: e.to_string() })
    }
}

/// A native map function (benchmarks compare Wasm operators with these).
pub type NativeMapFn = Box<dyn FnMut(EventRef<'_>, &mut Batch) + Send>;

/// A native keyed function: event, its key group, its subtask's state
/// backend, output.
pub type NativeProcessFn = Box<dyn FnMut(EventRef<'_>, u16, &mut dyn KeyedStateBackend, &mut Batch) + Send>;

pub(crate) struct NativeMapOp {
    pub f: NativeMapFn,
    pub ends: Vec<u32>,
}

impl Operator for NativeMapOp {
    fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        let mut events = Batch::with_capacity(input.len(), input.bytes());
        self.ends.clear();
        for i in 0..input.len() {
            (self.f)(input.event(i), &mut events);
            self.ends.push(events.len() as u32);
        }
        carry_marks(input.marks(), &self.ends, 0, &mut events);
        Ok(out.emit(events)?)
    }
}

pub(crate) struct NativeProcessOp {
    pub f: NativeProcessFn,
    pub backend: Box<dyn KeyedStateBackend>,
    pub ends: Vec<u32>,
    pub increments: Increments,
}

impl Operator for NativeProcessOp {
    fn process(&mut self, input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        let mut events = Batch::with_capacity(input.len(), input.len() * 16);
        self.ends.clear();
        for i in 0..input.len() {
            (self.f)(input.event(i), input.key_groups()[i], self.backend.as_mut(), &mut events);
            self.ends.push(events.len() as u32);
        }
        self.backend.check().map_err(|e| OpError { origin: None, message: e.to_string() })?;
        carry_marks(input.marks(), &self.ends, 0, &mut events);
        Ok(out.emit(events)?)
    }

    fn open(&mut self, groups: &Groups, restored: &[Chain<'_>]) -> Result<(), String> {
        restore_keyed(self.backend.as_mut(), groups, restored, None)
    }

    fn snapshot(&mut self, snap: Snap, groups: &Groups, out: &mut Writer) -> Result<Shape, OpError> {
        snapshot_keyed(self.backend.as_mut(), groups, None, (snap, &mut self.increments), out)
    }

    fn rebase(&mut self, checkpoint: u64) {
        self.increments.rebase(checkpoint, self.backend.as_mut());
    }
}

/// A sink at the end of a chain.
pub(crate) struct SinkOp {
    /// `None`: the discarding sink.
    pub sink: Option<Box<dyn Sink>>,
}

impl Operator for SinkOp {
    fn process(&mut self, input: Batch, _out: &mut dyn Emit) -> Result<(), Fail> {
        if let Some(s) = &mut self.sink {
            s.write(&input).map_err(|e| OpError { origin: None, message: e.message })?;
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut dyn Emit) -> Result<(), Fail> {
        if let Some(s) = &mut self.sink {
            s.finish().map_err(|e| OpError { origin: None, message: e.message })?;
        }
        Ok(())
    }

    fn open(&mut self, _groups: &Groups, restored: &[Chain<'_>]) -> Result<(), String> {
        let Some(s) = &mut self.sink else { return Ok(()) };
        match restored {
            [] => s.start(None),
            [one] if one.len() == 1 => s.start(Some(one[0])),
            _ => return Err("a sink's parallelism cannot change when it is restored from a checkpoint".into()),
        }
        .map_err(|e| e.message)
    }

    fn snapshot(&mut self, snap: Snap, _groups: &Groups, out: &mut Writer) -> Result<Shape, OpError> {
        if let Some(s) = &mut self.sink {
            out.buf = s.snapshot(snap.checkpoint).map_err(|e| OpError { origin: None, message: e.message })?;
        }
        Ok(Shape::Inline)
    }

    fn notify_complete(&mut self, checkpoint: u64) -> Result<(), OpError> {
        if let Some(s) = &mut self.sink {
            s.commit(checkpoint).map_err(|e| OpError { origin: None, message: e.message })?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Collects what a stage emits.
    #[derive(Default)]
    pub(crate) struct Collect {
        pub batches: Vec<Batch>,
        pub side: Vec<SideEvent>,
    }

    impl Emit for Collect {
        fn emit(&mut self, batch: Batch) -> Result<(), TaskError> {
            self.batches.push(batch);
            Ok(())
        }
        fn side(&mut self, events: Vec<SideEvent>) -> Result<(), TaskError> {
            self.side.extend(events);
            Ok(())
        }
    }

    #[test]
    fn marks_follow_the_output_of_the_inputs_before_them() {
        let mut out = Batch::new();
        for i in 0..5 {
            out.push(b"", &[i], 0, 0);
        }
        // Inputs 0..3 produced 2, 0 and 3 events; marks after input 1 and 3.
        carry_marks(
            &[Mark { after: 0, watermark: 1 }, Mark { after: 1, watermark: 5 }, Mark { after: 3, watermark: 9 }],
            &[2, 2, 5],
            0,
            &mut out,
        );
        assert_eq!(
            out.marks(),
            &[Mark { after: 0, watermark: 1 }, Mark { after: 2, watermark: 5 }, Mark { after: 5, watermark: 9 }]
        );
    }

    #[test]
    fn a_native_map_emits_one_batch_per_input_with_its_marks() {
        let mut op = NativeMapOp {
            f: Box::new(|e, out| {
                out.push(e.key, e.value, e.timestamp, e.origin);
                out.push(e.key, e.value, e.timestamp, e.origin);
            }),
            ends: Vec::new(),
        };
        let mut input = Batch::new();
        input.push(b"", b"a", 1, 0);
        input.mark(1);
        input.push(b"", b"b", 2, 1);
        let mut c = Collect::default();
        op.process(input, &mut c).unwrap();
        assert_eq!(c.batches.len(), 1);
        assert_eq!(c.batches[0].len(), 4);
        assert_eq!(c.batches[0].marks(), &[Mark { after: 2, watermark: 1 }]);
    }

    #[test]
    fn a_native_process_function_keeps_state_per_key_group_and_key() {
        let mut op = NativeProcessOp {
            f: Box::new(|e, group, state, out| {
                let at = weir_state::Scope::key(group, e.key);
                let mut buf = Vec::new();
                let n = if state.value_get(0, at, &mut buf) { buf[0] + 1 } else { 1 };
                state.value_put(0, at, &[n]);
                out.push(e.key, &[n], e.timestamp, e.origin);
            }),
            backend: Box::new(weir_state::MemoryBackend::new()),
            ends: Vec::new(),
            increments: Increments::default(),
        };
        let mut input = Batch::new();
        for (key, group) in [(b"a", 1u16), (b"b", 2), (b"a", 1), (b"a", 1)] {
            input.push_keyed(key, group, b"", 0, 0);
        }
        input.mark(3);
        let mut c = Collect::default();
        op.process(input, &mut c).unwrap();
        let counts: Vec<u8> = (0..4).map(|i| c.batches[0].event(i).value[0]).collect();
        assert_eq!(counts, vec![1, 1, 2, 3]);
        assert_eq!(c.batches[0].last_watermark(), Some(3));
    }

    #[test]
    fn a_file_sink_stage_writes_everything_only_when_the_input_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut op = SinkOp { sink: Some(Box::new(weir_connectors::FileSink::create("out", &path).unwrap())) };
        let mut input = Batch::new();
        input.push(b"", b"one", 0, 0);
        input.push(b"", b"two", 0, 1);
        let mut c = Collect::default();
        op.process(input, &mut c).unwrap();
        assert!(!path.exists(), "no half-written file under the final name");
        op.finish(&mut c).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert!(c.batches.is_empty(), "a sink emits nothing");
    }
}
