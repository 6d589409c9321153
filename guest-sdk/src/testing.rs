//! A native test harness: runs an operator as plain Rust, without Wasm or a
//! cluster, with in-memory state and timers and a watermark the test
//! advances. The same operator code is what the export macros put into the
//! component.
//!
//! ```
//! use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, ValueState};
//! use weir_sdk::testing::ProcessHarness;
//!
//! #[derive(Default)]
//! struct Count { n: ValueState<u64> }
//!
//! impl KeyedProcessFunction for Count {
//!     fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
//!         self.n = ctx.value_state("n");
//!         Ok(())
//!     }
//!     fn process(&mut self, e: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
//!         let n = self.n.value(ctx)?.unwrap_or(0) + 1;
//!         self.n.update(ctx, &n)?;
//!         out.emit_json(e.key, &n, e.timestamp)
//!     }
//! }
//!
//! let mut h = ProcessHarness::new(Count::default()).unwrap();
//! h.process_json(b"a", &(), Some(1)).unwrap();
//! let out = h.process_json(b"a", &(), Some(2)).unwrap();
//! assert_eq!(out[0].json::<u64>().unwrap(), 2);
//! assert_eq!(h.value_state::<u64>(b"a", "n").unwrap(), Some(2));
//! ```

use crate::event::{Output, SideEvent, ts_from_wire};
use crate::state::{CodecKind, Context, KeyedBackend, OpenContext, TimeDomain, items};
use crate::{Binary, Codec, Json};
use crate::{Error, Event, KeyedProcessFunction, Map, Result, TriggerResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An event an operator emitted, as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEvent {
    /// The key bytes (empty: no key).
    pub key: Vec<u8>,
    /// The value bytes.
    pub value: Vec<u8>,
    /// The event's timestamp.
    pub timestamp: Option<i64>,
    /// The side-output tag, `None` for the main output.
    pub side_output: Option<String>,
}

impl OutputEvent {
    /// The value, deserialized from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.value)?)
    }
}

fn collect(out: Output) -> Vec<OutputEvent> {
    let mut events: Vec<OutputEvent> = out
        .events()
        .map(|e| OutputEvent {
            key: e.key.to_vec(),
            value: e.value.to_vec(),
            timestamp: e.timestamp,
            side_output: None,
        })
        .collect();
    events.extend(out.side.into_iter().map(|SideEvent { tag, key, value, timestamp }| OutputEvent {
        key,
        value,
        timestamp: ts_from_wire(timestamp),
        side_output: Some(tag),
    }));
    events
}

/// Runs a [`Map`] operator natively.
pub struct MapHarness<M: Map> {
    op: M,
}

impl<M: Map> MapHarness<M> {
    /// Opens the operator with a `null` config.
    pub fn new(op: M) -> Result<Self> {
        Self::with_config(op, serde_json::Value::Null)
    }

    /// Opens the operator with `config`, as the spec's `config` would.
    pub fn with_config(mut op: M, config: serde_json::Value) -> Result<Self> {
        op.open(&config)?;
        Ok(MapHarness { op })
    }

    /// Maps one event with raw bytes.
    pub fn map(&mut self, key: &[u8], value: &[u8], timestamp: Option<i64>) -> Result<Vec<OutputEvent>> {
        let mut out = Output::new();
        self.op.map(&Event { key, value, timestamp }, &mut out)?;
        Ok(collect(out))
    }

    /// Maps one event whose value is `value` as JSON.
    pub fn map_json<T: Serialize + ?Sized>(
        &mut self,
        key: &[u8],
        value: &T,
        timestamp: Option<i64>,
    ) -> Result<Vec<OutputEvent>> {
        let value = serde_json::to_vec(value)?;
        self.map(key, &value, timestamp)
    }
}

impl<M: Map + crate::CheckpointedFunction> MapHarness<M> {
    /// Hands a checkpointed operator its operator state, as the host does
    /// once before the first event: what [`MapHarness::snapshot_state`] of
    /// an earlier instance took (marked restored), or, for a fresh start,
    /// `OperatorState::default()`.
    pub fn initialize_state(&mut self, state: &crate::OperatorState) -> Result<()> {
        initialize(&mut self.op, state)
    }

    /// The operator's lists at checkpoint `checkpoint`, as the host takes
    /// them.
    pub fn snapshot_state(&mut self, checkpoint: u64) -> Result<crate::OperatorState> {
        snapshot(&mut self.op, checkpoint)
    }
}

/// Hands `op` its lists as the host would (lists from a snapshot count as
/// restored).
fn initialize(op: &mut dyn crate::CheckpointedFunction, state: &crate::OperatorState) -> Result<()> {
    let restored = crate::OperatorState { restored: !state.lists.is_empty() || state.restored, ..state.clone() };
    op.initialize_state(&restored)
}

/// `op`'s lists at checkpoint `checkpoint`.
fn snapshot(op: &mut dyn crate::CheckpointedFunction, checkpoint: u64) -> Result<crate::OperatorState> {
    let mut state = crate::OperatorState::default();
    op.snapshot_state(checkpoint, &mut state)?;
    Ok(state)
}

/// State of one (state id, key).
type Cell = (u32, Vec<u8>);

/// In-memory keyed state and timers of a [`ProcessHarness`].
#[derive(Debug, Default)]
struct Store {
    values: HashMap<Cell, Vec<u8>>,
    lists: HashMap<Cell, Vec<Vec<u8>>>,
    maps: HashMap<Cell, BTreeMap<Vec<u8>, Vec<u8>>>,
    timers: BTreeSet<(TimeDomain, i64, Vec<u8>)>,
}

struct StoreBackend<'a> {
    store: &'a mut Store,
    key: &'a [u8],
}

impl StoreBackend<'_> {
    fn k(&self, state: u32) -> (u32, Vec<u8>) {
        (state, self.key.to_vec())
    }
}

impl KeyedBackend for StoreBackend<'_> {
    fn key(&self) -> &[u8] {
        self.key
    }
    fn namespace(&self) -> &[u8] {
        &[]
    }
    fn value_get(&self, state: u32) -> Option<&[u8]> {
        self.store.values.get(&self.k(state)).map(Vec::as_slice)
    }
    fn value_set(&mut self, state: u32, value: Option<&[u8]>) {
        let k = self.k(state);
        match value {
            Some(v) => self.store.values.insert(k, v.to_vec()),
            None => self.store.values.remove(&k),
        };
    }
    fn list_get(&mut self, state: u32, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        for item in self.store.lists.get(&self.k(state)).into_iter().flatten() {
            data.extend_from_slice(item);
            ends.push(data.len() as u32);
        }
    }
    fn list_add(&mut self, state: u32, element: &[u8]) {
        let k = self.k(state);
        self.store.lists.entry(k).or_default().push(element.to_vec());
    }
    fn list_add_all(&mut self, state: u32, data: &[u8], ends: &[u32]) {
        if ends.is_empty() {
            return;
        }
        let k = self.k(state);
        self.store.lists.entry(k).or_default().extend(items(data, ends).map(<[u8]>::to_vec));
    }
    fn list_update(&mut self, state: u32, data: &[u8], ends: &[u32]) {
        let k = self.k(state);
        if ends.is_empty() {
            self.store.lists.remove(&k);
        } else {
            self.store.lists.insert(k, items(data, ends).map(<[u8]>::to_vec).collect());
        }
    }
    fn list_clear(&mut self, state: u32) {
        let k = self.k(state);
        self.store.lists.remove(&k);
    }
    fn map_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
        self.store.maps.get(&self.k(state)).and_then(|m| m.get(key)).cloned()
    }
    fn map_contains(&mut self, state: u32, key: &[u8]) -> bool {
        self.store.maps.get(&self.k(state)).is_some_and(|m| m.contains_key(key))
    }
    fn map_put(&mut self, state: u32, key: &[u8], value: &[u8]) {
        let k = self.k(state);
        self.store.maps.entry(k).or_default().insert(key.to_vec(), value.to_vec());
    }
    fn map_put_all(&mut self, state: u32, data: &[u8], ends: &[u32]) {
        let mut it = items(data, ends);
        while let (Some(key), Some(value)) = (it.next(), it.next()) {
            self.map_put(state, key, value);
        }
    }
    fn map_remove(&mut self, state: u32, key: &[u8]) {
        let k = self.k(state);
        if let Some(m) = self.store.maps.get_mut(&k) {
            m.remove(key);
            if m.is_empty() {
                self.store.maps.remove(&k);
            }
        }
    }
    fn map_scan(&mut self, state: u32, after: Option<&[u8]>, limit: u32, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        use std::ops::Bound;
        let Some(m) = self.store.maps.get(&self.k(state)) else { return };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        for (k, v) in m.range::<[u8], _>((from, Bound::Unbounded)).take(limit as usize) {
            data.extend_from_slice(k);
            ends.push(data.len() as u32);
            data.extend_from_slice(v);
            ends.push(data.len() as u32);
        }
    }
    fn map_clear(&mut self, state: u32) {
        let k = self.k(state);
        self.store.maps.remove(&k);
    }
    fn timer(&mut self, domain: TimeDomain, timestamp: i64, delete: bool) {
        let t = (domain, timestamp, self.key.to_vec());
        if delete {
            self.store.timers.remove(&t);
        } else {
            self.store.timers.insert(t);
        }
    }
}

/// Runs a [`KeyedProcessFunction`] natively: in-memory keyed state, timers
/// that fire in timestamp order when the test advances the watermark or
/// the processing time.
pub struct ProcessHarness<P: KeyedProcessFunction> {
    op: P,
    declared: OpenContext,
    store: Store,
    watermark: i64,
    processing_time: i64,
    scratch: Vec<u8>,
}

impl<P: KeyedProcessFunction + crate::CheckpointedFunction> ProcessHarness<P> {
    /// Hands a checkpointed function its operator state, as
    /// [`MapHarness::initialize_state`] does.
    pub fn initialize_state(&mut self, state: &crate::OperatorState) -> Result<()> {
        initialize(&mut self.op, state)
    }

    /// The function's operator-state lists at checkpoint `checkpoint`.
    pub fn snapshot_state(&mut self, checkpoint: u64) -> Result<crate::OperatorState> {
        snapshot(&mut self.op, checkpoint)
    }
}

impl<P: KeyedProcessFunction> ProcessHarness<P> {
    /// Opens the operator with a `null` config.
    pub fn new(op: P) -> Result<Self> {
        Self::with_config(op, serde_json::Value::Null)
    }

    /// Opens the operator with `config`, as the spec's `config` would.
    pub fn with_config(mut op: P, config: serde_json::Value) -> Result<Self> {
        let mut declared = OpenContext::new(config);
        op.open(&mut declared)?;
        declared.check()?;
        Ok(ProcessHarness {
            op,
            declared,
            store: Store::default(),
            watermark: i64::MIN,
            processing_time: 0,
            scratch: Vec::new(),
        })
    }

    /// Processes one event with raw bytes for key `key`.
    pub fn process(&mut self, key: &[u8], value: &[u8], timestamp: Option<i64>) -> Result<Vec<OutputEvent>> {
        let mut out = Output::new();
        let mut backend = StoreBackend { store: &mut self.store, key };
        let mut ctx = Context {
            backend: &mut backend,
            timestamp,
            watermark: self.watermark,
            processing_time: self.processing_time,
            scratch: &mut self.scratch,
        };
        self.op.process(&Event { key, value, timestamp }, &mut ctx, &mut out)?;
        Ok(collect(out))
    }

    /// Processes one event whose value is `value` as JSON.
    pub fn process_json<T: Serialize + ?Sized>(
        &mut self,
        key: &[u8],
        value: &T,
        timestamp: Option<i64>,
    ) -> Result<Vec<OutputEvent>> {
        let value = serde_json::to_vec(value)?;
        self.process(key, &value, timestamp)
    }

    /// Advances the watermark to `watermark` and fires every event-time
    /// timer at or below it, in timestamp order (timers registered while
    /// firing fire too when they are due). A watermark never goes back.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<OutputEvent>> {
        self.watermark = self.watermark.max(watermark);
        self.fire(TimeDomain::EventTime, self.watermark)
    }

    /// Sets processing time to `now` and fires due processing-time timers.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<Vec<OutputEvent>> {
        self.processing_time = self.processing_time.max(now);
        self.fire(TimeDomain::ProcessingTime, self.processing_time)
    }

    fn fire(&mut self, domain: TimeDomain, upto: i64) -> Result<Vec<OutputEvent>> {
        let mut fired = Vec::new();
        loop {
            let due = self.store.timers.range((domain, i64::MIN, Vec::new())..).next().cloned();
            let Some(timer @ (d, ts, _)) = due else { break };
            if d != domain || ts > upto {
                break;
            }
            self.store.timers.remove(&timer);
            let key = timer.2;
            let mut out = Output::new();
            let mut backend = StoreBackend { store: &mut self.store, key: &key };
            let mut ctx = Context {
                backend: &mut backend,
                timestamp: Some(ts),
                watermark: self.watermark,
                processing_time: self.processing_time,
                scratch: &mut self.scratch,
            };
            self.op.on_timer(ts, domain, &mut ctx, &mut out)?;
            fired.extend(collect(out));
        }
        Ok(fired)
    }

    /// The value of the value state `name` for `key`, as the operator left
    /// it, decoded with the state's codec (for a reducing state: its
    /// value; for an aggregating state: its accumulator).
    pub fn value_state<T: DeserializeOwned>(&self, key: &[u8], name: &str) -> Result<Option<T>> {
        let missing = || Error::new(format!("no value state named `{name}` was declared in open"));
        let codec = self.declared.find(name).ok_or_else(missing)?.codec;
        let id = self.declared.value_states.iter().position(|n| n == name).ok_or_else(missing)?;
        let bytes = self.store.values.get(&(id as u32, key.to_vec()));
        bytes
            .map(|b| match codec {
                CodecKind::Binary => Binary::decode(b),
                CodecKind::Json => Json::decode(b),
            })
            .transpose()
    }

    /// The pending event-time timers of `key`, in order.
    pub fn event_time_timers(&self, key: &[u8]) -> Vec<i64> {
        self.store
            .timers
            .iter()
            .filter(|(d, _, k)| *d == TimeDomain::EventTime && k == key)
            .map(|(_, ts, _)| *ts)
            .collect()
    }

    /// The current watermark (`i64::MIN` before the first).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }
}

/// Runs a [`Trigger`](crate::Trigger) natively, one action at a time,
/// with its state and timers kept per key and window as the host keeps
/// them. The clocks are the test's to set.
///
/// ```
/// use weir_sdk::{Result, Trigger, TriggerContext, TriggerResult, Window};
/// use weir_sdk::testing::TriggerHarness;
///
/// #[derive(Default)]
/// struct EveryOther;
///
/// impl Trigger for EveryOther {
///     fn on_element(&mut self, _: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
///         let n = ctx.state_i64().unwrap_or(0) + 1;
///         ctx.set_state_i64(n % 2);
///         Ok(if n == 2 { TriggerResult::Fire } else { TriggerResult::Continue })
///     }
///     fn clear(&mut self, _: &mut TriggerContext<'_>) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// let mut h = TriggerHarness::new(EveryOther).unwrap();
/// let w = Window { start: 0, end: 10 };
/// assert_eq!(h.element(b"a", w, 1).unwrap(), TriggerResult::Continue);
/// assert_eq!(h.element(b"a", w, 2).unwrap(), TriggerResult::Fire);
/// ```
pub struct TriggerHarness<T: crate::Trigger> {
    trigger: T,
    states: HashMap<(Vec<u8>, crate::Window), Vec<u8>>,
    timers: BTreeSet<(Vec<u8>, crate::Window, bool, i64)>,
    watermark: i64,
    processing_time: i64,
}

impl<T: crate::Trigger> TriggerHarness<T> {
    /// Opens the trigger with a `null` config.
    pub fn new(trigger: T) -> Result<Self> {
        Self::with_config(trigger, serde_json::Value::Null)
    }

    /// Opens the trigger with `config`, as the spec's `config` would.
    pub fn with_config(mut trigger: T, config: serde_json::Value) -> Result<Self> {
        trigger.open(&config)?;
        Ok(TriggerHarness {
            trigger,
            states: HashMap::new(),
            timers: BTreeSet::new(),
            watermark: i64::MIN,
            processing_time: 0,
        })
    }

    /// Sets the watermark the next calls see.
    pub fn set_watermark(&mut self, watermark: i64) {
        self.watermark = watermark;
    }

    /// Sets the processing time the next calls see.
    pub fn set_processing_time(&mut self, now: i64) {
        self.processing_time = now;
    }

    /// Runs one action over `windows` (slot 0 is the action's window; the
    /// rest are merged windows), all of `key`.
    fn call(&mut self, key: &[u8], windows: &[crate::Window], action: crate::trigger::Action) -> Result<TriggerResult> {
        let mut states: Vec<Option<Vec<u8>>> =
            windows.iter().map(|w| self.states.get(&(key.to_vec(), *w)).cloned()).collect();
        let keys = key.repeat(windows.len());
        let key_ends: Vec<u32> = (1..=windows.len()).map(|i| (i * key.len()) as u32).collect();
        let slots = crate::trigger::Slots { keys: &keys, key_ends: &key_ends, windows };
        let out = crate::trigger::run(
            &mut self.trigger,
            std::slice::from_ref(&action),
            &slots,
            &mut states,
            self.watermark,
            self.processing_time,
        )?;
        for (w, state) in windows.iter().zip(states) {
            match state {
                Some(s) => self.states.insert((key.to_vec(), *w), s),
                None => self.states.remove(&(key.to_vec(), *w)),
            };
        }
        for t in &out.timers {
            let entry = (key.to_vec(), windows[t.slot as usize], t.event_time, t.timestamp);
            if t.delete {
                self.timers.remove(&entry);
            } else {
                self.timers.insert(entry);
            }
        }
        Ok(out.decisions[0])
    }

    /// An element with `timestamp` was added to `window` of `key`.
    pub fn element(&mut self, key: &[u8], window: crate::Window, timestamp: i64) -> Result<TriggerResult> {
        self.call(key, &[window], crate::trigger::Action::Element { slot: 0, time: timestamp })
    }

    /// An event-time timer of `key` and `window` fires at `time`.
    pub fn event_time(&mut self, key: &[u8], window: crate::Window, time: i64) -> Result<TriggerResult> {
        self.timers.remove(&(key.to_vec(), window, true, time));
        self.call(key, &[window], crate::trigger::Action::EventTime { slot: 0, time })
    }

    /// A processing-time timer of `key` and `window` fires at `time`.
    pub fn processing_time(&mut self, key: &[u8], window: crate::Window, time: i64) -> Result<TriggerResult> {
        self.timers.remove(&(key.to_vec(), window, false, time));
        self.call(key, &[window], crate::trigger::Action::ProcessingTime { slot: 0, time })
    }

    /// `merged` merged into `window`; each merged window is cleared after,
    /// as the host does.
    pub fn merge(&mut self, key: &[u8], window: crate::Window, merged: &[crate::Window]) -> Result<()> {
        let mut windows = vec![window];
        windows.extend_from_slice(merged);
        let slots = (1..windows.len() as u32).collect();
        self.call(key, &windows, crate::trigger::Action::Merge { slot: 0, merged: slots })?;
        for w in merged {
            self.clear(key, *w)?;
        }
        Ok(())
    }

    /// `window` of `key` is gone.
    pub fn clear(&mut self, key: &[u8], window: crate::Window) -> Result<()> {
        self.call(key, &[window], crate::trigger::Action::Clear(0)).map(|_| ())
    }

    /// The trigger's state for `key` and `window`.
    pub fn state(&self, key: &[u8], window: crate::Window) -> Option<&[u8]> {
        self.states.get(&(key.to_vec(), window)).map(Vec::as_slice)
    }

    /// The timers registered for `key` and `window`, as (event time?,
    /// timestamp), in order.
    pub fn timers(&self, key: &[u8], window: crate::Window) -> Vec<(bool, i64)> {
        self.timers.iter().filter(|(k, w, _, _)| k == key && *w == window).map(|(_, _, e, t)| (*e, *t)).collect()
    }
}

/// Runs a window function natively, as the host would: an accumulator
/// (or, for a process-window function, the elements) per key and window,
/// merges, and firings that return what the function emitted.
///
/// ```
/// use weir_sdk::{WindowAggregateFunction, Event, Output, Result, Window, WindowContext};
/// use weir_sdk::testing::WindowFunctionHarness;
///
/// #[derive(Default)]
/// struct Count;
///
/// impl WindowAggregateFunction for Count {
///     type Acc = u64;
///     fn create_accumulator(&mut self) -> u64 { 0 }
///     fn add(&mut self, _: &Event<'_>, acc: &mut u64) -> Result<()> { *acc += 1; Ok(()) }
///     fn get_result(&mut self, acc: &u64, ctx: &WindowContext<'_>, out: &mut Output) -> Result<()> {
///         out.emit_json(ctx.key, acc, None)
///     }
/// }
///
/// let mut h = WindowFunctionHarness::aggregate(Count).unwrap();
/// let w = Window { start: 0, end: 10 };
/// h.add(b"a", w, b"{}", 1).unwrap();
/// h.add(b"a", w, b"{}", 2).unwrap();
/// assert_eq!(h.fire(b"a", w).unwrap()[0].json::<u64>().unwrap(), 2);
/// ```
pub struct WindowFunctionHarness {
    f: Box<dyn crate::window_function::Erased>,
    accs: HashMap<KeyWindow, Vec<u8>>,
    /// Per key and window: the elements' values and timestamps.
    elements: HashMap<KeyWindow, Vec<(Vec<u8>, i64)>>,
    firings: HashMap<KeyWindow, u32>,
    window_states: HashMap<KeyWindow, Vec<u8>>,
    global_states: HashMap<Vec<u8>, Vec<u8>>,
}

/// A key and one of its windows.
type KeyWindow = (Vec<u8>, crate::Window);

impl WindowFunctionHarness {
    fn open(mut f: Box<dyn crate::window_function::Erased>, config: serde_json::Value) -> Result<Self> {
        f.open(&config)?;
        Ok(WindowFunctionHarness {
            f,
            accs: HashMap::new(),
            elements: HashMap::new(),
            firings: HashMap::new(),
            window_states: HashMap::new(),
            global_states: HashMap::new(),
        })
    }

    /// An [`WindowAggregateFunction`](crate::WindowAggregateFunction) with a `null` config.
    pub fn aggregate<A: crate::WindowAggregateFunction>(a: A) -> Result<Self> {
        Self::open(Box::new(crate::window_function::Aggregating(a)), serde_json::Value::Null)
    }

    /// An [`WindowAggregateFunction`](crate::WindowAggregateFunction) with `config`.
    pub fn aggregate_with<A: crate::WindowAggregateFunction>(a: A, config: serde_json::Value) -> Result<Self> {
        Self::open(Box::new(crate::window_function::Aggregating(a)), config)
    }

    /// A [`ReduceFunction`](crate::ReduceFunction) with `config`.
    pub fn reduce_with<R: crate::ReduceFunction>(r: R, config: serde_json::Value) -> Result<Self> {
        Self::open(Box::new(crate::window_function::Reducing(r)), config)
    }

    /// A [`ProcessWindowFunction`](crate::ProcessWindowFunction) with `config`.
    pub fn process_with<P: crate::ProcessWindowFunction>(p: P, config: serde_json::Value) -> Result<Self> {
        Self::open(Box::new(crate::window_function::Processing(p)), config)
    }

    fn call(
        &mut self,
        key: &[u8],
        windows: &[crate::Window],
        action: crate::window_function::Action,
        elements: &[Event<'_>],
    ) -> Result<Output> {
        let mut accs: Vec<Option<Vec<u8>>> =
            windows.iter().map(|w| self.accs.get(&(key.to_vec(), *w)).cloned()).collect();
        let keys = key.repeat(windows.len());
        let key_ends: Vec<u32> = (1..=windows.len()).map(|i| (i * key.len()) as u32).collect();
        let slots = crate::trigger::Slots { keys: &keys, key_ends: &key_ends, windows };
        let states = self.f.keyed_state().then(|| {
            let window = windows.iter().map(|w| self.window_states.get(&(key.to_vec(), *w)).cloned()).collect();
            let global = windows.iter().map(|_| self.global_states.get(key).cloned()).collect();
            crate::window_function::States::new(&slots, Some(window), global)
        });
        let states = states.transpose()?;
        let out =
            crate::window_function::run(self.f.as_mut(), &[action], &slots, &mut accs, elements, states.as_ref())?;
        if !out.outputs.side.is_empty() {
            return Err(Error::new(
                "a window function emits to the window's main output only; side outputs are not supported",
            ));
        }
        if let Some(st) = &states {
            for (w, c) in windows.iter().zip(&st.window).filter(|(_, c)| c.dirty.get()) {
                match c.value.borrow().clone() {
                    Some(v) => self.window_states.insert((key.to_vec(), *w), v),
                    None => self.window_states.remove(&(key.to_vec(), *w)),
                };
            }
            if let Some(c) = st.global.first().filter(|c| c.dirty.get()) {
                match c.value.borrow().clone() {
                    Some(v) => self.global_states.insert(key.to_vec(), v),
                    None => self.global_states.remove(key),
                };
            }
        }
        for (w, acc) in windows.iter().zip(accs) {
            match acc {
                Some(a) => self.accs.insert((key.to_vec(), *w), a),
                None => self.accs.remove(&(key.to_vec(), *w)),
            };
        }
        Ok(out.outputs)
    }

    /// Adds an element (raw value bytes) to `window` of `key`.
    pub fn add(&mut self, key: &[u8], window: crate::Window, value: &[u8], timestamp: i64) -> Result<()> {
        if self.f.all_elements() {
            self.elements.entry((key.to_vec(), window)).or_default().push((value.to_vec(), timestamp));
            return Ok(());
        }
        let e = Event { key: b"", value, timestamp: Some(timestamp) };
        self.call(key, &[window], crate::window_function::Action::Add { slot: 0, element: 0 }, &[e]).map(|_| ())
    }

    /// Adds an element whose value is `value` as JSON.
    pub fn add_json<T: Serialize + ?Sized>(
        &mut self,
        key: &[u8],
        window: crate::Window,
        value: &T,
        timestamp: i64,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        self.add(key, window, &bytes, timestamp)
    }

    /// Merges `from` into `into` (session windows).
    pub fn merge(&mut self, key: &[u8], into: crate::Window, from: crate::Window) -> Result<()> {
        if into == from {
            return Ok(());
        }
        self.firings.remove(&(key.to_vec(), from));
        if self.f.all_elements() {
            let moved = self.elements.remove(&(key.to_vec(), from)).unwrap_or_default();
            self.elements.entry((key.to_vec(), into)).or_default().extend(moved);
            return Ok(());
        }
        self.call(key, &[into, from], crate::window_function::Action::Merge { slot: 0, from: 1 }, &[]).map(|_| ())
    }

    /// The window's end (plus its lateness): its contents and its window
    /// state go, as the host does at cleanup.
    pub fn clean_up(&mut self, key: &[u8], window: crate::Window) -> Result<()> {
        self.window_states.remove(&(key.to_vec(), window));
        self.firings.remove(&(key.to_vec(), window));
        self.clear(key, window)
    }

    /// The key's global state.
    pub fn global_state(&self, key: &[u8]) -> Option<&[u8]> {
        self.global_states.get(key).map(Vec::as_slice)
    }

    /// Drops `window`'s accumulator or elements (a purge, or its end).
    pub fn clear(&mut self, key: &[u8], window: crate::Window) -> Result<()> {
        if self.f.all_elements() {
            self.elements.remove(&(key.to_vec(), window));
            return Ok(());
        }
        self.call(key, &[window], crate::window_function::Action::Clear(0), &[]).map(|_| ())
    }

    /// Fires `window` of `key`: what the function emitted, keyed and
    /// stamped as the host does (the window's key, its last millisecond).
    pub fn fire(&mut self, key: &[u8], window: crate::Window) -> Result<Vec<OutputEvent>> {
        let number = self.firings.entry((key.to_vec(), window)).or_insert(0);
        let n = *number;
        *number += 1;
        let stored = self.elements.get(&(key.to_vec(), window)).cloned().unwrap_or_default();
        let events: Vec<Event<'_>> =
            stored.iter().map(|(v, t)| Event { key: b"", value: v, timestamp: Some(*t) }).collect();
        let elements = self.f.all_elements().then_some((0, events.len() as u32));
        let action = crate::window_function::Action::Fire { slot: 0, window, number: n, elements };
        let out = self.call(key, &[window], action, &events)?;
        let mut events = collect(out);
        for e in &mut events {
            e.key = key.to_vec();
            e.timestamp = Some(window.max_timestamp());
        }
        Ok(events)
    }
}
