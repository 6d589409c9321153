//! The window operator, after Flink's `WindowOperator` and
//! `EvictingWindowOperator`: elements go into the windows their assigner
//! gives (merging sessions), the trigger decides when a window fires and
//! purges, the built-in function computes what a firing emits, allowed
//! lateness keeps windows for late elements, and elements later than that
//! go to the late side output. Everything lives in the keyed state
//! backend with the window as namespace:
//!
//! | state | id | namespace | holds |
//! |---|---|---|---|
//! | value | 0 | state window | the function's accumulator (unless the window keeps its elements) |
//! | value | 1 | state window | firings so far (the output's `firing`) |
//! | value | 2 | window | the trigger's state |
//! | value | 3 | empty | a key's session windows (merging assigners) |
//! | value | 4 | state window | a Wasm function's window state |
//! | value | 5 | empty | a Wasm function's global state |
//! | list | 0 | state window | elements, `timestamp i64 LE ++ value` (an evictor, or a Wasm process-window function) |
//!
//! Timers are the backend's, in the window's namespace: the trigger's and
//! the cleanup timer at `end - 1 + allowed lateness`.

use super::{Emit, Fail, OpError, Operator, TIMER_ORIGIN};
use crate::window::aggregate::{Aggregate, Evictor};
use crate::window::trigger::{Trigger, TriggerCtx};
use crate::window::{Assigner, Merge, MergingSet, Window};
use weir_core::spec::{OperatorKind, OperatorSpec, TimeKind, TriggerSpec, WindowSpec};
use weir_core::{Batch, NO_TIMESTAMP};
use weir_state::{Clock, KeyedStateBackend, Scope, Timer, TimerDomain};
use weir_wasm::{EvictorInstance, FunctionInstance, SessionGapInstance, SideEvent, TriggerInstance};

mod function;
mod planned;
mod sliced;
use sliced::Slices;

const ACC: u32 = 0;
const FIRINGS: u32 = 1;
const SESSIONS: u32 = 3;
/// A Wasm window function's window state (namespace: the state window)
/// and global state (empty namespace).
const WINDOW_STATE: u32 = 4;
const GLOBAL_STATE: u32 = 5;
const ELEMENTS: u32 = 0;

/// The names of the states above, by id, as checkpoints list them.
fn state_names() -> weir_wasm::StateNames {
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
    weir_wasm::StateNames {
        value: names(&["accumulator", "firings", "trigger", "sessions", "window-state", "global-state"]),
        list: names(&["elements", "slice-keys"]),
        map: Vec::new(),
    }
}

/// Output events gathered before they are emitted: half the default
/// batch size, so one more firing (a sliced window emits a key group's
/// keys at once) rarely takes a batch past the size the task would cut
/// it to, copying.
const EMIT_EVERY: usize = 512;

pub(crate) struct WindowOp {
    backend: Box<dyn KeyedStateBackend>,
    increments: super::Increments,
    assigner: Assigner,
    trigger: Trigger,
    evictor: Option<WindowEvictor>,
    /// A Wasm trigger, called in batches (see `planned`).
    wasm_trigger: Option<Box<planned::WasmTrigger>>,
    /// A Wasm window function, called in batches (see `function`).
    wasm_fn: Option<Box<function::WasmFunction>>,
    /// Whether windows keep their elements (an evictor, or a
    /// process-window function), not an accumulator.
    keep_elements: bool,
    /// A Wasm session gap, called once per input batch, and the gaps of
    /// the batch.
    gap_fn: Option<Box<SessionGapInstance>>,
    gaps: Vec<Result<i64, String>>,
    function: Aggregate,
    lateness: i64,
    late_tag: Option<String>,
    dead_letter: Option<String>,
    /// The next firing may take the accumulator out (its window is
    /// cleaned up right after), and whether it did.
    take: bool,
    taken: bool,
    /// Aligned windows kept by slices (see `sliced`).
    slices: Option<Slices>,
    /// Scratch of a sliced firing: each slice's keys, and merged
    /// accumulators.
    slice_keys: Vec<(Vec<u8>, Vec<u32>)>,
    merged: Vec<Vec<u8>>,
    /// Per key group, the sliced timer registered last (to skip
    /// registering it again).
    registered: Vec<i64>,
    id: String,
    keyed: bool,
    watermark: i64,
    clock: Clock,
    /// Whether anything reads processing time (else the clock is not read
    /// per element).
    needs_clock: bool,
    /// Whether a window can fire more than once (else no firing count is
    /// kept: every firing is the first).
    counts_firings: bool,
    /// Whether the cleanup timer is the trigger's own timer at the
    /// window's end (event-time trigger, no lateness): then it is neither
    /// registered twice nor deleted after it fired.
    cleanup_is_trigger_timer: bool,
    /// Elements dropped as too late with no late output to go to.
    pub dropped: u64,
    windows: Vec<Window>,
    /// The output's text after the key, and the window and firing it is
    /// for.
    middle: Vec<u8>,
    middle_for: Option<(Window, u64)>,
    buf: Vec<u8>,
    acc: Vec<u8>,
    fired: Vec<Timer>,
    out: Batch,
    side: Vec<SideEvent>,
}

/// The items of a flat list (`data` split at `ends`), each end clamped
/// so a damaged list gives short items, never a panic.
fn items<'a>(data: &'a [u8], ends: &'a [u32]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut from = 0usize;
    ends.iter().map(move |&e| {
        let e = (e as usize).clamp(from, data.len());
        let item = &data[from..e];
        from = e;
        item
    })
}

/// The Wasm components of a window operator, each optional.
pub(crate) struct WindowWasm {
    pub evictor: Option<EvictorInstance>,
    pub trigger: Option<TriggerInstance>,
    pub gap: Option<SessionGapInstance>,
    pub function: Option<FunctionInstance>,
}

/// A window's evictor: built in, or a Wasm component.
enum WindowEvictor {
    Builtin(Evictor),
    Wasm(Box<EvictorInstance>),
}

impl WindowEvictor {
    /// Evicts from a firing window's elements (timestamp, value), before
    /// the function (`before`) or after it.
    fn evict(
        &mut self,
        window: Window,
        elements: &mut Vec<(i64, Vec<u8>)>,
        before: bool,
        watermark: i64,
        now: i64,
    ) -> Result<(), String> {
        match self {
            WindowEvictor::Builtin(e) if before => e.before(elements),
            WindowEvictor::Builtin(e) => e.after_function(elements),
            WindowEvictor::Wasm(instance) => {
                let mut batch = Batch::with_capacity(elements.len(), elements.iter().map(|(_, v)| v.len()).sum());
                for (t, v) in elements.iter() {
                    batch.push(b"", v, *t, 0);
                }
                let bounds = window.bounds();
                let keep =
                    instance.evict(bounds, &batch, before, watermark, now).map_err(|e| format!("the evictor: {e}"))?;
                let mut i = 0;
                elements.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
                Ok(())
            }
        }
    }
}

/// Where an element or timer is: its key and key group.
#[derive(Clone, Copy)]
struct At<'a> {
    group: u16,
    key: &'a [u8],
}

fn scope<'a>(at: At<'a>, ns: &'a [u8; 16], w: Window) -> Scope<'a> {
    Scope { group: at.group, key: at.key, namespace: &ns[..w.namespace_len()] }
}

impl WindowOp {
    /// The operator of a validated window spec, over `backend`; `wasm`:
    /// the instances of its components (evictor, trigger, session gap,
    /// function), those it has.
    pub fn new(spec: &OperatorSpec, backend: Box<dyn KeyedStateBackend>, clock: Clock, wasm: WindowWasm) -> WindowOp {
        let WindowWasm { evictor: wasm, trigger: wasm_trigger, gap, function: wasm_fn } = wasm;
        let wasm_fn = wasm_fn.map(|f| Box::new(function::WasmFunction::new(f)));
        let window = spec.window.as_ref().expect("invariant: validated window operators have a window");
        let function = spec.function.as_ref().expect("invariant: validated window operators have a function");
        let assigner = Assigner::of(window);
        let (trigger, evictor) = match window {
            WindowSpec::Count { size, slide: None } => (Trigger::Purging(Box::new(Trigger::Count(*size))), None),
            WindowSpec::Count { size, slide: Some(slide) } => (
                Trigger::Count(*slide),
                Evictor::new(&weir_core::spec::EvictorSpec::Count { count: *size, after: false })
                    .map(WindowEvictor::Builtin),
            ),
            _ => {
                let default = match window {
                    WindowSpec::Global => TriggerSpec::Never,
                    WindowSpec::Tumbling { time: TimeKind::Processing, .. }
                    | WindowSpec::Sliding { time: TimeKind::Processing, .. }
                    | WindowSpec::Session { time: TimeKind::Processing, .. } => TriggerSpec::ProcessingTime,
                    _ => TriggerSpec::EventTime,
                };
                let evictor = match wasm {
                    Some(instance) => Some(WindowEvictor::Wasm(Box::new(instance))),
                    None => spec.evictor.as_ref().and_then(Evictor::new).map(WindowEvictor::Builtin),
                };
                let trigger = spec.trigger.as_ref().unwrap_or(&default);
                // (A Wasm trigger is called by `planned`; the built-in one
                // then does nothing.)
                let builtin = if wasm_trigger.is_some() { Trigger::Never } else { Trigger::of(trigger) };
                (builtin, evictor)
            }
        };
        let wasm_trigger = wasm_trigger.map(|instance| {
            let purging = matches!(spec.trigger, Some(TriggerSpec::Purging { .. }));
            Box::new(planned::WasmTrigger::new(instance, purging))
        });
        let needs_clock = !assigner.is_event_time() || trigger.reads_processing_time() || wasm_trigger.is_some();
        let plain = trigger == Trigger::EventTime && spec.allowed_lateness_ms == 0 && assigner.is_event_time();
        let slices = match assigner {
            _ if !plain || evictor.is_some() || wasm_fn.is_some() => None,
            Assigner::Tumbling { size, offset, .. } => Some(Slices { size, slide: size, offset }),
            Assigner::Sliding { size, slide, offset, .. } if size % slide == 0 => Some(Slices { size, slide, offset }),
            _ => None,
        };
        WindowOp {
            increments: super::Increments::default(),
            wasm_trigger,
            gap_fn: gap.map(Box::new),
            gaps: Vec::new(),
            take: false,
            taken: false,
            slices,
            slice_keys: Vec::new(),
            merged: Vec::new(),
            registered: Vec::new(),
            needs_clock,
            counts_firings: !(plain && evictor.is_none() && !wasm_fn.as_ref().is_some_and(|f| f.all_elements())),
            keep_elements: evictor.is_some() || wasm_fn.as_ref().is_some_and(|f| f.all_elements()),
            wasm_fn,
            cleanup_is_trigger_timer: plain,
            backend,
            assigner,
            trigger,
            evictor,
            function: Aggregate::new(function.kind, function.field.as_deref()),
            lateness: spec.allowed_lateness_ms,
            late_tag: spec.late_output.clone(),
            dead_letter: spec.dead_letter.clone(),
            id: spec.id.clone(),
            keyed: spec.kind == OperatorKind::Window,
            watermark: i64::MIN,
            clock,
            dropped: 0,
            windows: Vec::new(),
            middle: Vec::new(),
            middle_for: None,
            buf: Vec::new(),
            acc: Vec::new(),
            fired: Vec::new(),
            out: Batch::new(),
            side: Vec::new(),
        }
    }

    /// Processing time, when anything reads it.
    fn now(&self) -> i64 {
        if self.needs_clock { self.clock.now() } else { i64::MIN }
    }

    /// Flink's `cleanupTime`: when a window's state goes.
    fn cleanup_time(&self, w: Window) -> i64 {
        if self.assigner.is_event_time() {
            w.max_timestamp().checked_add(self.lateness).unwrap_or(i64::MAX)
        } else {
            w.max_timestamp()
        }
    }

    fn is_window_late(&self, w: Window) -> bool {
        self.assigner.is_event_time() && self.cleanup_time(w) <= self.watermark
    }

    fn register_cleanup(&mut self, at: At<'_>, w: Window) {
        let time = self.cleanup_time(w);
        if time == i64::MAX || self.cleanup_is_trigger_timer {
            return;
        }
        let ns = w.namespace();
        let domain = if self.assigner.is_event_time() { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
        self.backend.timer_register(domain, scope(at, &ns, w), time);
    }

    fn delete_cleanup(&mut self, at: At<'_>, w: Window) {
        let time = self.cleanup_time(w);
        if time == i64::MAX {
            return;
        }
        let ns = w.namespace();
        let domain = if self.assigner.is_event_time() { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
        self.backend.timer_delete(domain, scope(at, &ns, w), time);
    }

    fn trigger_ctx<'a>(
        backend: &'a mut dyn KeyedStateBackend,
        at: At<'a>,
        window: Window,
        watermark: i64,
        now: i64,
    ) -> TriggerCtx<'a> {
        TriggerCtx { backend, group: at.group, key: at.key, window, watermark, now }
    }

    fn sessions(&mut self, at: At<'_>) -> Result<MergingSet, String> {
        self.buf.clear();
        if !self.backend.value_get(SESSIONS, Scope::key(at.group, at.key), &mut self.buf) {
            return Ok(MergingSet::default());
        }
        MergingSet::decode(&self.buf).ok_or_else(|| {
            "the session windows stored for a key are malformed; the state was changed or damaged".to_owned()
        })
    }

    fn persist(&mut self, at: At<'_>, set: &MergingSet) {
        if set.mapping.is_empty() {
            self.backend.value_clear(SESSIONS, Scope::key(at.group, at.key));
        } else {
            set.encode(&mut self.buf);
            self.backend.value_put(SESSIONS, Scope::key(at.group, at.key), &self.buf);
        }
    }

    /// Adds an element to the contents of `state_window`.
    fn add(
        &mut self,
        at: At<'_>,
        state_window: Window,
        timestamp: i64,
        value: &[u8],
        x: crate::window::aggregate::Num,
    ) {
        let ns = state_window.namespace();
        let s = scope(at, &ns, state_window);
        if self.keep_elements {
            self.buf.clear();
            self.buf.extend_from_slice(&timestamp.to_le_bytes());
            self.buf.extend_from_slice(value);
            self.backend.list_add(ELEMENTS, s, &self.buf);
        } else if self.wasm_fn.is_some() {
            self.fn_add(at, state_window, timestamp, value);
        } else {
            self.buf.clear();
            let had = self.backend.value_get(ACC, s, &mut self.buf);
            self.function.fold(had.then_some(&self.buf[..]), x, &mut self.acc);
            self.backend.value_put(ACC, s, &self.acc);
        }
    }

    fn clear_contents(&mut self, at: At<'_>, state_window: Window) {
        let ns = state_window.namespace();
        let s = scope(at, &ns, state_window);
        if self.keep_elements {
            self.backend.list_clear(ELEMENTS, s);
        } else if self.wasm_fn.is_some() {
            self.fn_clear(at, state_window);
        } else {
            self.backend.value_clear(ACC, s);
        }
    }

    /// Flink's `clearAllState`: contents, firing count, the trigger's
    /// state and timers, and the window in the key's sessions.
    fn clear_all(&mut self, at: At<'_>, window: Window, state_window: Window, set: Option<&mut MergingSet>) {
        if !self.taken {
            self.clear_contents(at, state_window);
        }
        self.taken = false;
        let ns = state_window.namespace();
        if self.counts_firings {
            self.backend.value_clear(FIRINGS, scope(at, &ns, state_window));
        }
        if !self.cleanup_is_trigger_timer {
            // (Otherwise the trigger's only timer is the one firing.)
            let now = self.now();
            let mut ctx = Self::trigger_ctx(self.backend.as_mut(), at, window, self.watermark, now);
            self.trigger.clear(&mut ctx);
        }
        if self.wasm_fn.is_some() {
            self.fn_cleaned(at, state_window);
        }
        if let Some(set) = set {
            set.retire(window);
        }
    }

    /// Runs the function over the window's contents and emits the result,
    /// stamped with the window's last timestamp; nothing when the window
    /// holds nothing.
    fn emit_window(&mut self, at: At<'_>, window: Window, state_window: Window) -> Result<(), String> {
        let take = std::mem::take(&mut self.take);
        let ns = state_window.namespace();
        let s = scope(at, &ns, state_window);
        let mut acc: Vec<u8> = Vec::new();
        if self.keep_elements {
            let mut evictor = self.evictor.take();
            let r = self.emit_evicting(evictor.as_mut(), at, window, state_window);
            self.evictor = evictor;
            return r;
        }
        if self.wasm_fn.is_some() {
            if !self.fn_present(at, state_window) {
                return Ok(());
            }
            let firing = self.next_firing(at, state_window);
            self.fn_fire(at, window, state_window, firing, None);
            if take {
                self.taken = true;
                self.fn_clear(at, state_window);
            }
            return Ok(());
        }
        let found = if take {
            // The window's state goes right after this firing: read it out.
            self.taken = true;
            self.backend.value_take(ACC, s, &mut acc)
        } else {
            self.backend.value_get(ACC, s, &mut acc)
        };
        if !found {
            return Ok(());
        }
        self.write_output(at, window, state_window, Some(&acc[..]));
        Ok(())
    }

    /// `emit_window` of a window that keeps its elements: evicted before
    /// and after the function when there is an evictor.
    fn emit_evicting(
        &mut self,
        mut evictor: Option<&mut WindowEvictor>,
        at: At<'_>,
        window: Window,
        state_window: Window,
    ) -> Result<(), String> {
        let ns = state_window.namespace();
        let s = scope(at, &ns, state_window);
        {
            let (mut data, mut ends) = (Vec::new(), Vec::new());
            self.backend.list_get(ELEMENTS, s, &mut data, &mut ends);
            if ends.is_empty() {
                return Ok(());
            }
            let mut elements = Vec::with_capacity(ends.len());
            for item in items(&data, &ends) {
                let (t, v) = item.split_at_checked(8).ok_or_else(|| {
                    "a window element stored without its timestamp; the state was changed or damaged".to_owned()
                })?;
                elements.push((i64::from_le_bytes(t.try_into().expect("invariant: eight bytes")), v.to_vec()));
            }
            let before = elements.len();
            let (watermark, now) = (self.watermark, self.now());
            if let Some(e) = evictor.as_deref_mut() {
                e.evict(window, &mut elements, true, watermark, now)?;
            }
            let mut folded: Option<Vec<u8>> = None;
            if self.wasm_fn.is_some() {
                let firing = self.next_firing(at, state_window);
                self.fn_fire(at, window, state_window, firing, Some(&elements));
            } else {
                for (_, v) in &elements {
                    let x = self.function.input(v)?;
                    self.function.fold(folded.as_deref(), x, &mut self.acc);
                    folded = Some(self.acc.clone());
                }
            }
            if let Some(e) = evictor {
                e.evict(window, &mut elements, false, watermark, now)?;
            }
            if elements.len() != before {
                let (mut data, mut ends) = (Vec::new(), Vec::new());
                for (t, v) in &elements {
                    data.extend_from_slice(&t.to_le_bytes());
                    data.extend_from_slice(v);
                    ends.push(data.len() as u32);
                }
                self.backend.list_replace(ELEMENTS, s, &data, &ends);
            }
            if self.wasm_fn.is_none() {
                self.write_output(at, window, state_window, Some(folded.as_deref().unwrap_or_default()));
            }
        }
        Ok(())
    }

    /// The number of this firing of `state_window` (counted from 0),
    /// counted.
    fn next_firing(&mut self, at: At<'_>, state_window: Window) -> u64 {
        let ns = state_window.namespace();
        let s = scope(at, &ns, state_window);
        self.buf.clear();
        let firing = if !self.counts_firings {
            0
        } else if self.backend.value_get(FIRINGS, s, &mut self.buf) {
            self.buf.as_slice().try_into().map_or(0, u64::from_le_bytes)
        } else {
            0
        };
        if self.counts_firings {
            self.backend.value_put(FIRINGS, s, &(firing + 1).to_le_bytes());
        }
        firing
    }

    fn write_output(&mut self, at: At<'_>, window: Window, state_window: Window, acc: Option<&[u8]>) {
        let firing = self.next_firing(at, state_window);
        // What follows the key is the same for every key of a firing (a
        // sliced firing emits a key group's keys at once): formatted once.
        if self.middle_for != Some((window, firing)) {
            let (mid, mut n) = (&mut self.middle, itoa::Buffer::new());
            mid.clear();
            if let Window::Time { start, end } = window {
                mid.extend_from_slice(b"\"start\":");
                mid.extend_from_slice(n.format(start).as_bytes());
                mid.extend_from_slice(b",\"end\":");
                mid.extend_from_slice(n.format(end).as_bytes());
                mid.push(b',');
            }
            mid.extend_from_slice(b"\"firing\":");
            mid.extend_from_slice(n.format(firing).as_bytes());
            mid.extend_from_slice(b",\"");
            mid.extend_from_slice(self.function.kind.name().as_bytes());
            mid.extend_from_slice(b"\":");
            self.middle_for = Some((window, firing));
        }
        let (keyed, function, middle) = (self.keyed, &self.function, &self.middle);
        self.out.push_with(at.key, window.max_timestamp(), TIMER_ORIGIN, |v| {
            v.push(b'{');
            if keyed {
                v.extend_from_slice(b"\"key\":");
                // Printable ASCII without quotes or backslashes (the common
                // key) goes as it is, checked in one pass; the rest through
                // serde_json.
                if at.key.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
                    v.push(b'"');
                    v.extend_from_slice(at.key);
                    v.push(b'"');
                } else {
                    let _ = serde_json::to_writer(&mut *v, &String::from_utf8_lossy(at.key));
                }
                v.push(b',');
            }
            v.extend_from_slice(middle);
            function.result(acc, v);
            v.push(b'}');
        });
    }

    /// One element (Flink's `processElement`).
    fn element(&mut self, at: At<'_>, timestamp: i64, value: &[u8], origin: u64) -> Result<(), String> {
        if self.assigner.is_event_time() && timestamp == NO_TIMESTAMP {
            return Err("an event-time window needs event timestamps, and this record has none; set `timestamp:` on its source, or window in processing time".to_owned());
        }
        let x = self.function.input(value)?;
        if let Some(s) = self.slices {
            if !self.sliced_element(s, at, timestamp, x) && timestamp <= self.watermark {
                self.late(at, timestamp, value, origin);
            }
            return Ok(());
        }
        let now = self.now();
        let mut windows = std::mem::take(&mut self.windows);
        self.assigner.assign(timestamp, now, &mut windows);
        let mut skipped = true;
        let result: Result<(), String> = if self.assigner.is_merging() {
            let mut set = self.sessions(at)?;
            for &w in &windows {
                let before = set.clone();
                let (actual, merges) = set.add(w);
                if let Err(e) = self.merge(at, &merges) {
                    set = before;
                    self.persist(at, &set);
                    return Err(e);
                }
                if self.is_window_late(actual) {
                    set.retire(actual);
                    continue;
                }
                skipped = false;
                let state_window = set.state_window(actual).expect("invariant: the added window is mapped");
                self.add(at, state_window, timestamp, value, x);
                self.after_add(at, actual, state_window, timestamp)?;
            }
            self.persist(at, &set);
            Ok(())
        } else {
            for &w in &windows {
                if self.is_window_late(w) {
                    continue;
                }
                skipped = false;
                self.add(at, w, timestamp, value, x);
                self.after_add(at, w, w, timestamp)?;
            }
            Ok(())
        };
        self.windows = windows;
        result?;
        if skipped && self.assigner.is_event_time() && timestamp.saturating_add(self.lateness) <= self.watermark {
            self.late(at, timestamp, value, origin);
        }
        Ok(())
    }

    /// An element too late for all its windows: to the late output, or
    /// dropped and counted.
    fn late(&mut self, at: At<'_>, timestamp: i64, value: &[u8], origin: u64) {
        match &self.late_tag {
            Some(tag) => self.side.push(SideEvent {
                tag: tag.clone(),
                key: at.key.to_vec(),
                value: value.to_vec(),
                timestamp,
                origin,
            }),
            None => self.dropped += 1,
        }
    }

    /// The trigger's verdict on an element just added to `window`.
    fn after_add(&mut self, at: At<'_>, window: Window, state_window: Window, timestamp: i64) -> Result<(), String> {
        let now = self.now();
        let mut ctx = Self::trigger_ctx(self.backend.as_mut(), at, window, self.watermark, now);
        let d = self.trigger.on_element(&mut ctx, timestamp);
        if d.fire {
            self.emit_window(at, window, state_window)?;
        }
        if d.purge {
            self.clear_contents(at, state_window);
        }
        self.register_cleanup(at, window);
        Ok(())
    }

    /// Applies the merges of adding a session window: triggers merge
    /// their state, merged windows lose their timers, state windows fold
    /// into the one that stays.
    fn merge(&mut self, at: At<'_>, merges: &[Merge]) -> Result<(), String> {
        let now = self.now();
        self.check_merges(merges)?;
        for m in merges {
            let mut ctx = Self::trigger_ctx(self.backend.as_mut(), at, m.result, self.watermark, now);
            self.trigger.on_merge(&mut ctx, &m.merged);
            for &w in &m.merged {
                let mut ctx = Self::trigger_ctx(self.backend.as_mut(), at, w, self.watermark, now);
                self.trigger.clear(&mut ctx);
                self.delete_cleanup(at, w);
            }
            self.merge_state(at, m);
        }
        Ok(())
    }

    /// Whether merging would end a window the watermark has passed.
    fn check_merges(&self, merges: &[Merge]) -> Result<(), String> {
        for m in merges {
            if self.assigner.is_event_time() && self.cleanup_time(m.result) <= self.watermark {
                return Err(format!(
                    "merging session windows would end window {:?} before the current watermark {}",
                    m.result, self.watermark
                ));
            }
        }
        Ok(())
    }

    /// Folds the state windows a merge merged into the one that stays.
    fn merge_state(&mut self, at: At<'_>, m: &Merge) {
        {
            let target = m.state_window.namespace();
            let target = scope(at, &target, m.state_window);
            for &sw in &m.merged_state {
                let ns = sw.namespace();
                let from = scope(at, &ns, sw);
                if self.keep_elements {
                    let (mut data, mut ends) = (Vec::new(), Vec::new());
                    self.backend.list_get(ELEMENTS, from, &mut data, &mut ends);
                    for item in items(&data, &ends) {
                        self.backend.list_add(ELEMENTS, target, item);
                    }
                    self.backend.list_clear(ELEMENTS, from);
                } else if self.wasm_fn.is_some() {
                    self.fn_merge(at, m.state_window, sw);
                } else {
                    let mut b = Vec::new();
                    if self.backend.value_get(ACC, from, &mut b) {
                        self.buf.clear();
                        if self.backend.value_get(ACC, target, &mut self.buf) {
                            let a = std::mem::take(&mut self.buf);
                            self.function.merge(&a, &b, &mut self.acc);
                            self.buf = a;
                        } else {
                            self.acc.clone_from(&b);
                        }
                        self.backend.value_put(ACC, target, &self.acc);
                        self.backend.value_clear(ACC, from);
                    }
                }
                self.backend.value_clear(FIRINGS, from);
            }
        }
    }

    /// Fires the timers of `domain` due at `upto` (Flink's `onEventTime`
    /// and `onProcessingTime`).
    fn fire(&mut self, domain: TimerDomain, upto: i64, out: &mut dyn Emit) -> Result<(), Fail> {
        if self.wasm_trigger.is_some() {
            return self.fire_planned(domain, upto, out);
        }
        loop {
            self.fired.clear();
            self.backend.pop_timers(domain, upto, 1024, &mut self.fired);
            if self.fired.is_empty() {
                return Ok(());
            }
            let fired = std::mem::take(&mut self.fired);
            // A window's accumulator, firing count and trigger state live
            // in the timer's own scope (its namespace is the window) when
            // windows neither merge nor share slices: read them for the
            // whole chunk at once (a range scan per key group on `lsm`).
            if self.slices.is_none() && !self.assigner.is_merging() && !self.keep_elements && fired.len() > 1 {
                let at: Vec<Scope<'_>> =
                    fired.iter().map(|t| Scope { group: t.group, key: &t.key, namespace: &t.namespace }).collect();
                for state in [ACC, FIRINGS, crate::window::trigger::TRIGGER_STATE] {
                    self.backend.prefetch_values(state, &at);
                }
            }
            for t in &fired {
                let at = At { group: t.group, key: &t.key };
                self.timer(domain, at, &t.namespace, t.timestamp)
                    .map_err(|message| OpError { origin: None, message })?;
                if self.out.len() >= EMIT_EVERY || self.fn_due() {
                    self.flush(out)?;
                }
            }
            self.fired = fired;
            self.run_function()?;
            self.check()?;
        }
    }

    fn timer(&mut self, domain: TimerDomain, at: At<'_>, ns: &[u8], time: i64) -> Result<(), String> {
        if let Some(s) = self.slices {
            return self.sliced_fire(s, at.group, time);
        }
        let window = Window::from_namespace(ns)
            .ok_or_else(|| "a window timer with a malformed namespace; the state was changed or damaged".to_owned())?;
        let mut set = None;
        let state_window = if self.assigner.is_merging() {
            let s = self.sessions(at)?;
            let Some(sw) = s.state_window(window) else { return Ok(()) };
            set = Some(s);
            sw
        } else {
            window
        };
        let now = self.now();
        let mut ctx = Self::trigger_ctx(self.backend.as_mut(), at, window, self.watermark, now);
        let d = match domain {
            TimerDomain::EventTime => self.trigger.on_event_time(&mut ctx, time),
            TimerDomain::ProcessingTime => self.trigger.on_processing_time(&mut ctx, time),
        };
        let cleanup_domain =
            if self.assigner.is_event_time() { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
        let cleanup = domain == cleanup_domain && time == self.cleanup_time(window);
        self.taken = false;
        if d.fire {
            self.take = cleanup && !self.keep_elements;
            self.emit_window(at, window, state_window)?;
        }
        if d.purge && !self.taken {
            self.clear_contents(at, state_window);
        }
        if cleanup {
            self.clear_all(at, window, state_window, set.as_mut());
        }
        if let Some(s) = &set {
            self.persist(at, s);
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), Fail> {
        self.backend.check().map_err(|e| Fail::Op(OpError { origin: None, message: e.to_string() }))
    }

    /// Sends what was gathered: late elements first, then the output.
    fn flush(&mut self, out: &mut dyn Emit) -> Result<(), Fail> {
        self.run_function()?;
        if !self.side.is_empty() {
            out.side(std::mem::take(&mut self.side))?;
        }
        if !self.out.is_empty() || !self.out.marks().is_empty() {
            out.emit(std::mem::take(&mut self.out))?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: i64, out: &mut dyn Emit) -> Result<(), Fail> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire(TimerDomain::EventTime, watermark, out)?;
            self.run_function()?;
            self.out.mark(self.watermark);
        }
        Ok(())
    }
}

impl WindowOp {
    /// A record the operator rejects with `message`: to the dead-letter
    /// output, or the job fails naming it.
    fn reject(&mut self, input: &Batch, i: usize, message: String) -> Result<(), Fail> {
        let Some(tag) = &self.dead_letter else {
            return Err(Fail::Op(OpError { origin: Some(input.event(i).origin), message }));
        };
        self.side.push(super::dead_letter(tag, &self.id, input, i, &message));
        Ok(())
    }

    /// With a Wasm session gap: every element's gap of `input`, in one
    /// call.
    fn compute_gaps(&mut self, input: &Batch) -> Result<(), Fail> {
        if let Some(g) = self.gap_fn.as_mut().filter(|_| !input.is_empty()) {
            let gaps = g
                .gaps(input)
                .map_err(|e| Fail::Op(OpError { origin: None, message: format!("its session gap: {e}") }))?;
            self.gaps.clear();
            self.gaps.extend(gaps.iter().cloned());
        }
        Ok(())
    }

    /// With a Wasm session gap: sessions of element `i` take its gap.
    fn element_gap(&mut self, i: usize) -> Result<(), String> {
        if self.gap_fn.is_none() {
            return Ok(());
        }
        let gap = match &self.gaps[i] {
            Ok(gap) => *gap,
            Err(message) => return Err(format!("its session gap: {message}")),
        };
        if gap <= 0 {
            return Err(format!(
                "the session gap component gave this record a gap of {gap} ms; a gap must be a positive number of ms"
            ));
        }
        if let Assigner::Session { event_time, .. } = self.assigner {
            self.assigner = Assigner::Session { gap, event_time };
        }
        Ok(())
    }

    /// Where event `i` of `input` is.
    fn at<'a>(&self, input: &'a Batch, i: usize) -> At<'a> {
        if self.keyed {
            At { group: input.key_groups()[i], key: input.event(i).key }
        } else {
            At { group: 0, key: b"" }
        }
    }
}

impl Operator for WindowOp {
    fn open(&mut self, groups: &super::Groups, restored: &[super::Chain<'_>]) -> Result<(), String> {
        super::restore_keyed(self.backend.as_mut(), groups, restored, Some(&state_names()))
    }

    fn snapshot(
        &mut self,
        snap: super::Snap,
        groups: &super::Groups,
        out: &mut crate::checkpoint::Writer,
    ) -> Result<super::Shape, OpError> {
        let inc = (snap, &mut self.increments);
        super::snapshot_keyed(self.backend.as_mut(), groups, Some(&state_names()), inc, out)
    }

    fn rebase(&mut self, checkpoint: u64) {
        self.increments.rebase(checkpoint, self.backend.as_mut());
    }

    fn process(&mut self, mut input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        self.compute_gaps(&input)?;
        if self.wasm_trigger.is_some() {
            return self.process_planned(input, out);
        }
        let marks = input.take_marks();
        let mut next = 0usize;
        for i in 0..=input.len() {
            while let Some(m) = marks.get(next).filter(|m| m.after as usize == i) {
                next += 1;
                self.advance(m.watermark, out)?;
            }
            if i == input.len() {
                break;
            }
            let e = input.event(i);
            let at = self.at(&input, i);
            if let Err(message) = self.element_gap(i).and_then(|()| self.element(at, e.timestamp, e.value, e.origin)) {
                self.reject(&input, i, message)?;
            }
            if self.out.len() >= EMIT_EVERY || self.fn_due() {
                self.flush(out)?;
            }
        }
        self.run_function()?;
        self.check()?;
        self.flush(out)
    }

    fn on_processing_time(&mut self, now: i64, out: &mut dyn Emit) -> Result<(), Fail> {
        if self.backend.next_timer(TimerDomain::ProcessingTime).is_some_and(|t| t <= now) {
            self.fire(TimerDomain::ProcessingTime, now, out)?;
            self.flush(out)?;
        }
        Ok(())
    }
}
