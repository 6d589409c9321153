//! Instances: one per operator subtask, called one batch at a time.
//!
//! Everything a guest returns is untrusted: offsets, ends and slots are
//! checked before the host uses them.

use crate::bindings::{evictor as eb, map as mb, process as pb};
use crate::engine::{Component, EPOCH_TICK, Pre, WasmRuntime};
use crate::operator_state::{OperatorList, StateExport};
use crate::sandbox::{HostState, Limits};
use std::sync::Arc;
use wasmtime::Store;
use weir_core::Batch;
use weir_state::{Clock, KeyedStateBackend, Scope, StateKind, Ttl, TtlBackend, TtlUpdate};

/// Why a call into an operator failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The operator returned an error for one of its inputs.
    #[error("operator error on input {index} of the batch: {message}")]
    Operator {
        /// Index of the input (event or fired timer) in the call.
        index: u32,
        /// The operator's message.
        message: String,
    },
    /// The guest trapped (a Rust panic, an out-of-bounds access, the memory
    /// limit…).
    #[error("operator trapped: {message}")]
    Trap {
        /// The trap, the guest's last stderr lines and its stack.
        message: String,
        /// The input (event or fired timer) the guest was at, when its
        /// panic message says (`… on input N: …`).
        index: Option<u32>,
    },
    /// One call ran longer than the time budget.
    #[error(
        "operator exceeded its time budget of {budget_ms} ms for one call and was interrupted: a loop that does not \
         end, or a timer callback that keeps registering a timer the watermark has already passed, ends this way"
    )]
    Timeout {
        /// The budget.
        budget_ms: u64,
    },
    /// The guest returned something that breaks the WIT contract.
    #[error("operator broke the weir:operator contract: {0}")]
    Protocol(String),
    /// `init` refused the operator's config, or declared state the host
    /// refuses.
    #[error("operator refused to start: {0}")]
    Init(String),
    /// The host could not create the instance (memory, address space).
    #[error("{0}")]
    Resources(String),
    /// The operator used more than a quota of its [`crate::Limits`].
    #[error("operator exceeded a quota: {0}")]
    Quota(String),
    /// The operator's `snapshot-state` returned an error.
    #[error("operator could not snapshot its operator state: {0}")]
    Snapshot(String),
}

/// An event sent to a side output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideEvent {
    /// The side output's tag.
    pub tag: String,
    /// Key bytes.
    pub key: Vec<u8>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Timestamp.
    pub timestamp: i64,
    /// Origin of the input it came from.
    pub origin: u64,
}

/// What an operator emitted for one call.
#[derive(Debug)]
pub struct CallOutput {
    /// Main-output events; origins are those of the inputs they came from.
    pub events: Batch,
    /// For input `i`, how many main-output events inputs `0..=i` produced.
    pub input_ends: Vec<u32>,
    /// Side-output events.
    pub side: Vec<SideEvent>,
}

/// Names of the state an operator declared; ids are indexes per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateNames {
    /// Value states.
    pub value: Vec<String>,
    /// List states.
    pub list: Vec<String>,
    /// Map states.
    pub map: Vec<String>,
}

impl StateNames {
    /// The time-to-live of each state `ttls` names, checked against the
    /// declared states.
    fn ttls(
        &self,
        ttls: &[pb::exports::weir::operator::keyed_process::StateTtl],
    ) -> Result<Vec<(StateKind, u32, Ttl)>, String> {
        use pb::exports::weir::operator::keyed_process::{StateKind as K, TtlUpdate as U};
        let mut out: Vec<(StateKind, u32, Ttl)> = Vec::with_capacity(ttls.len());
        for t in ttls {
            let (kind, names) = match t.kind {
                K::Value => (StateKind::Value, &self.value),
                K::List => (StateKind::List, &self.list),
                K::Map => (StateKind::Map, &self.map),
            };
            let what = format!("{kind:?} state {}", t.state).to_lowercase();
            if t.state as usize >= names.len() {
                return Err(format!(
                    "it gives a time-to-live to {what}, but declares only {} such states",
                    names.len()
                ));
            }
            if t.ttl_ms == 0 {
                return Err(format!("it gives {what} a time-to-live of 0 ms; give at least 1 ms"));
            }
            if out.iter().any(|(k, s, _)| (*k, *s) == (kind, t.state)) {
                return Err(format!("it gives {what} a time-to-live twice"));
            }
            let update = match t.update {
                U::OnCreateAndWrite => TtlUpdate::OnCreateAndWrite,
                U::OnReadAndWrite => TtlUpdate::OnReadAndWrite,
            };
            out.push((kind, t.state, Ttl { millis: t.ttl_ms, update }));
        }
        Ok(out)
    }

    /// At most `max` names over all kinds, each non-empty, at most 256
    /// bytes and unique within its kind.
    fn check(&self, max: usize) -> Result<(), String> {
        let total = self.value.len() + self.list.len() + self.map.len();
        if total > max {
            return Err(format!("it declares {total} states; at most {max} are allowed"));
        }
        for (kind, names) in [("value", &self.value), ("list", &self.list), ("map", &self.map)] {
            let mut seen = std::collections::HashSet::new();
            for n in names {
                if n.is_empty() || n.len() > 256 {
                    return Err(format!("{kind} state name {n:?} must be 1 to 256 bytes"));
                }
                if !seen.insert(n) {
                    return Err(format!("it declares {kind} state `{n}` twice"));
                }
            }
        }
        Ok(())
    }
}

/// The key slots of one `process` call (key, namespace and key group of
/// each) and their value state, built by the caller (see the `key-table`
/// record of the WIT contract).
#[derive(Debug, Default, Clone)]
pub struct KeyTable {
    keys: Vec<u8>,
    key_ends: Vec<u32>,
    namespaces: Vec<u8>,
    namespace_ends: Vec<u32>,
    groups: Vec<u16>,
    /// Value-state cells' bytes, concatenated.
    pub values: Vec<u8>,
    /// Per cell (`slot * value_states + state`), its length or `u32::MAX`.
    pub value_lens: Vec<u32>,
}

fn part(ends: &[u32], slot: usize) -> std::ops::Range<usize> {
    let start = if slot == 0 { 0 } else { ends[slot - 1] as usize };
    start..ends[slot] as usize
}

impl KeyTable {
    /// Empties the table, keeping its buffers.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.key_ends.clear();
        self.namespaces.clear();
        self.namespace_ends.clear();
        self.groups.clear();
        self.values.clear();
        self.value_lens.clear();
    }

    /// Adds a slot for `at`; its number. The caller appends its value
    /// cells to `values` and `value_lens`.
    pub fn push_slot(&mut self, at: Scope<'_>) -> u32 {
        self.keys.extend_from_slice(at.key);
        self.key_ends.push(self.keys.len() as u32);
        if !at.namespace.is_empty() {
            self.namespaces.extend_from_slice(at.namespace);
        }
        self.namespace_ends.push(self.namespaces.len() as u32);
        self.groups.push(at.group);
        (self.groups.len() - 1) as u32
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Bytes of keys, namespaces and values: what the call copies into
    /// the guest.
    pub fn bytes(&self) -> usize {
        self.keys.len() + self.namespaces.len() + self.values.len()
    }

    /// Key, namespace and key group of slot `slot`.
    pub fn scope(&self, slot: usize) -> Scope<'_> {
        // Process functions' tables have no namespaces at all.
        let namespace =
            if self.namespaces.is_empty() { &[][..] } else { &self.namespaces[part(&self.namespace_ends, slot)] };
        Scope { group: self.groups[slot], key: &self.keys[part(&self.key_ends, slot)], namespace }
    }

    fn wire(&self) -> pb::exports::weir::operator::keyed_process::KeyTable<'_> {
        pb::exports::weir::operator::keyed_process::KeyTable {
            keys: &self.keys,
            key_ends: &self.key_ends,
            namespaces: &self.namespaces,
            namespace_ends: &self.namespace_ends,
            values: &self.values,
            value_lens: &self.value_lens,
        }
    }
}

/// A timer change requested by a `process` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerOp {
    /// Key slot in the call's key table (checked).
    pub key_slot: u32,
    /// Timer timestamp.
    pub timestamp: i64,
    /// Event time (true) or processing time.
    pub event_time: bool,
    /// Delete instead of register.
    pub delete: bool,
}

/// A timer to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiredTimer {
    /// Key slot in the call's key table.
    pub key_slot: u32,
    /// Timer timestamp.
    pub timestamp: i64,
    /// Event time (true) or processing time.
    pub event_time: bool,
}

/// What a `process` call returned.
#[derive(Debug)]
pub struct ProcessOutput {
    /// Emitted events.
    pub output: CallOutput,
    /// Written value-state cells (checked against the table's size).
    pub write_cells: Vec<u32>,
    /// Length of each written cell, `u32::MAX` for cleared.
    pub write_lens: Vec<u32>,
    /// Written bytes, concatenated (lengths checked).
    pub write_data: Vec<u8>,
    /// Timer changes.
    pub timers: Vec<TimerOp>,
}

pub(crate) fn new_store(
    rt: &WasmRuntime,
    operator: &str,
    limits: Limits,
    backend: Option<Box<dyn KeyedStateBackend>>,
) -> Store<HostState> {
    let mut store = Store::new(&rt.engine, HostState::new(Arc::from(operator), limits, backend));
    store.limiter(|s| &mut s.limits);
    // Instantiation runs the component's start functions: budget it too.
    store.set_epoch_deadline(budget_ticks(limits));
    store.epoch_deadline_trap();
    store
}

/// Instantiates `component` into `store`: its world's bindings (`bind`)
/// and, when it has one, its `operator-state` export.
fn instantiate<B>(
    store: &mut Store<HostState>,
    pre: &wasmtime::component::InstancePre<HostState>,
    component: &Component,
    bind: impl FnOnce(&mut Store<HostState>, &wasmtime::component::Instance) -> wasmtime::Result<B>,
) -> wasmtime::Result<(B, Option<StateExport>)> {
    let instance = pre.instantiate(&mut *store)?;
    let bindings = bind(&mut *store, &instance)?;
    let state = match &component.state {
        Some(indices) => Some(StateExport::load(indices, store, &instance)?),
        None => None,
    };
    Ok((bindings, state))
}

/// Instantiates a component for `operator` (`instantiate`) and calls its
/// `init` (`init`), both within the call budget: the store, the bindings
/// and what `init` returned.
pub(crate) fn start_instance<B, R>(
    rt: &WasmRuntime,
    operator: &str,
    limits: Limits,
    instantiate: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<B>,
    init: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
) -> Result<(Store<HostState>, B, R), CallError> {
    let mut store = new_store(rt, operator, limits, None);
    let bindings = instantiate(&mut store).map_err(|e| instantiate_error(&store, e, limits))?;
    store.set_epoch_deadline(budget_ticks(limits));
    let r = init(&bindings, &mut store).map_err(|e| call_error(&store, e, limits))?;
    Ok((store, bindings, r.map_err(CallError::Init)?))
}

pub(crate) fn budget_ticks(limits: Limits) -> u64 {
    (limits.call_budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

pub(crate) fn call_error(store: &Store<HostState>, e: wasmtime::Error, limits: Limits) -> CallError {
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return CallError::Timeout { budget_ms: limits.call_budget.as_millis() as u64 };
    }
    let recent = store.data().recent_stderr.lock().map(|r| r.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let mut message = String::new();
    if !recent.is_empty() {
        message.push_str("guest stderr:\n");
        for line in &recent {
            message.push_str("    ");
            message.push_str(line);
            message.push('\n');
        }
    }
    message.push_str(&format!("{e:?}"));
    message.push_str(&format!(
        "\n(instance limits: {} MiB of memory, {} ms per batch)",
        limits.memory_bytes >> 20,
        limits.call_budget.as_millis()
    ));
    // The SDK's panic hook names the input it was at.
    let index = recent.iter().rev().find(|l| l.starts_with("operator panicked")).and_then(|l| {
        let rest = &l[l.find(" on input ")? + " on input ".len()..];
        rest[..rest.find(':')?].parse().ok()
    });
    CallError::Trap { message, index }
}

/// An instantiation that failed: a trap or the time budget (a start
/// function that runs away) is the guest's; anything else is the host
/// running out of resources for one more instance (memory, address space),
/// which says what to do instead of calling it a trap.
pub(crate) fn instantiate_error(store: &Store<HostState>, e: wasmtime::Error, limits: Limits) -> CallError {
    if e.downcast_ref::<wasmtime::Trap>().is_some() {
        return call_error(store, e, limits);
    }
    let text = format!("{e:#}");
    if text.contains("type mismatch") {
        // Exports whose types differ from this host's: a component built
        // against another version of the WIT, not a lack of memory.
        return CallError::Protocol(format!(
            "its exports do not match this host's weir:operator WIT ({text}); rebuild it against this weir-sdk"
        ));
    }
    CallError::Resources(format!(
        "cannot create an instance of the component: {e:#}. This machine may not have the memory or address space for this many instances ({} MiB of memory each); lower the parallelism or the number of operators",
        limits.memory_bytes >> 20
    ))
}

/// Checks a returned batch and the input ends, then builds the host batch
/// with origins carried over from the inputs.
fn to_output(
    b: mb::weir::operator::types::BatchResult,
    input_ends: Vec<u32>,
    side: impl Iterator<Item = (String, Vec<u8>, Vec<u8>, i64)>,
    origins: &[u64],
) -> Result<CallOutput, CallError> {
    let n = b.timestamps.len();
    if input_ends.len() != origins.len()
        || input_ends.windows(2).any(|w| w[0] > w[1])
        || input_ends.last().map_or(0, |&e| e as usize) != n
    {
        return Err(CallError::Protocol(format!(
            "input-ends must have one non-decreasing entry per input ({}) ending at the output count ({n})",
            origins.len()
        )));
    }
    let one_to_one = input_ends.len() == n && input_ends.iter().enumerate().all(|(i, &e)| e as usize == i + 1);
    let out_origins = if one_to_one {
        origins.to_vec()
    } else {
        let mut out_origins = Vec::with_capacity(n);
        let mut start = 0usize;
        for (&end, &origin) in input_ends.iter().zip(origins) {
            out_origins.extend(std::iter::repeat_n(origin, end as usize - start));
            start = end as usize;
        }
        out_origins
    };
    let events = Batch::from_parts(b.data, b.offsets, b.timestamps, out_origins)
        .map_err(|e| CallError::Protocol(format!("output: {e}")))?;
    let side = side
        .map(|(tag, key, value, timestamp)| SideEvent {
            tag,
            key,
            value,
            timestamp,
            origin: origins.first().copied().unwrap_or(0),
        })
        .collect();
    Ok(CallOutput { events, input_ends, side })
}

fn wire_batch(b: &Batch) -> mb::weir::operator::types::BatchParam<'_> {
    mb::weir::operator::types::BatchParam { data: b.data(), offsets: b.offsets(), timestamps: b.timestamps() }
}

/// An instance of an `evictor` component.
pub struct EvictorInstance {
    store: Store<HostState>,
    bindings: eb::Evictor,
    limits: Limits,
    keep: Vec<bool>,
}

impl EvictorInstance {
    /// The operator's own metrics, as it reports them.
    pub fn user_metrics(&self) -> std::sync::Arc<crate::UserMetrics> {
        self.store.data().user_metrics.clone()
    }

    /// Instantiates `component` for `operator` and calls `init` with
    /// `config` (JSON).
    pub fn new(
        rt: &WasmRuntime,
        component: &Component,
        operator: &str,
        config: &str,
        limits: Limits,
    ) -> Result<Self, CallError> {
        let Pre::Evictor(pre) = &component.pre else {
            return Err(CallError::Init(format!("{} is not an evictor component", component.path.display())));
        };
        let (store, bindings, ()) = start_instance(
            rt,
            operator,
            limits,
            |s| pre.instantiate(s),
            |b: &eb::Evictor, s| b.weir_operator_window_evictor().call_init(s, config),
        )?;
        Ok(EvictorInstance { store, bindings, limits, keep: Vec::new() })
    }

    /// Which of a window's `elements` stay (one flag per element), before
    /// the window's function runs (`before`) or after. `window` is
    /// `(start, end)`, the global window `(i64::MIN, i64::MAX)`.
    pub fn evict(
        &mut self,
        window: (i64, i64),
        elements: &Batch,
        before: bool,
        watermark: i64,
        now: i64,
    ) -> Result<&[bool], CallError> {
        self.store.set_epoch_deadline(budget_ticks(self.limits));
        let w = eb::exports::weir::operator::window_evictor::Window { start: window.0, end: window.1 };
        // (Owned: bindgen's borrowing mode does not compile for this world;
        // one copy per firing window, not per element.)
        let batch = eb::weir::operator::types::Batch {
            data: elements.data().to_vec(),
            offsets: elements.offsets().to_vec(),
            timestamps: elements.timestamps().to_vec(),
        };
        let r =
            self.bindings.weir_operator_window_evictor().call_evict(&mut self.store, w, &batch, before, watermark, now);
        let keep = r
            .map_err(|e| call_error(&self.store, e, self.limits))?
            .map_err(|message| CallError::Operator { index: 0, message })?;
        if keep.len() != elements.len() {
            return Err(CallError::Protocol(format!(
                "evict returned {} flags for {} elements; return one per element",
                keep.len(),
                elements.len()
            )));
        }
        self.keep = keep;
        Ok(&self.keep)
    }
}

/// An instance of a `map` component.
pub struct MapInstance {
    store: Store<HostState>,
    bindings: mb::Map,
    limits: Limits,
    state: Option<StateExport>,
}

impl MapInstance {
    /// The operator's own metrics, as it reports them.
    pub fn user_metrics(&self) -> std::sync::Arc<crate::UserMetrics> {
        self.store.data().user_metrics.clone()
    }

    /// Instantiates `component` for `operator` (e.g. `split[0]`) and calls
    /// `init` with `config` (JSON).
    pub fn new(
        rt: &WasmRuntime,
        component: &Component,
        operator: &str,
        config: &str,
        limits: Limits,
    ) -> Result<Self, CallError> {
        let Pre::Map(pre) = &component.pre else {
            return Err(CallError::Init(format!("{} is not a map component", component.path.display())));
        };
        let mut store = new_store(rt, operator, limits, None);
        let (bindings, state) = instantiate(&mut store, pre.instance_pre(), component, |s, i| mb::Map::new(s, i))
            .map_err(|e| instantiate_error(&store, e, limits))?;
        store.set_epoch_deadline(budget_ticks(limits));
        let r =
            bindings.weir_operator_mapper().call_init(&mut store, config).map_err(|e| call_error(&store, e, limits))?;
        r.map_err(CallError::Init)?;
        Ok(MapInstance { store, bindings, limits, state })
    }

    /// Whether the operator keeps operator state.
    pub fn has_operator_state(&self) -> bool {
        self.state.is_some()
    }

    /// Hands a stateful operator its operator state, once, before any
    /// batch (`restored`: the job was restored). Nothing for one without.
    pub fn restore_state(&mut self, lists: &[OperatorList], restored: bool) -> Result<(), CallError> {
        StateExport::restore_in(&self.state, &mut self.store, self.limits, lists, restored)
    }

    /// A stateful operator's lists at checkpoint `checkpoint` (none for
    /// one without).
    pub fn snapshot_state(&mut self, checkpoint: u64) -> Result<Vec<OperatorList>, CallError> {
        StateExport::snapshot_in(&self.state, &mut self.store, self.limits, checkpoint)
    }

    /// Maps one batch.
    pub fn map_batch(&mut self, input: &Batch) -> Result<CallOutput, CallError> {
        self.store.set_epoch_deadline(budget_ticks(self.limits));
        let r = self.bindings.weir_operator_mapper().call_map_batch(&mut self.store, wire_batch(input));
        let out = r.map_err(|e| call_error(&self.store, e, self.limits))?;
        let out = out.map_err(|e| CallError::Operator { index: e.index, message: e.message })?;
        to_output(
            out.events,
            out.input_ends,
            out.side.into_iter().map(|s| (s.tag, s.key, s.value, s.timestamp)),
            input.origins(),
        )
    }
}

/// An instance of a `process` component, owning its subtask's keyed state.
pub struct ProcessInstance {
    store: Store<HostState>,
    bindings: pb::Process,
    limits: Limits,
    states: StateNames,
    state: Option<StateExport>,
}

impl ProcessInstance {
    /// The operator's own metrics, as it reports them.
    pub fn user_metrics(&self) -> std::sync::Arc<crate::UserMetrics> {
        self.store.data().user_metrics.clone()
    }

    /// Instantiates `component` for `operator`, calls `init` with `config`,
    /// and keeps `backend` as the subtask's keyed state.
    pub fn new(
        rt: &WasmRuntime,
        component: &Component,
        operator: &str,
        config: &str,
        limits: Limits,
        backend: Box<dyn KeyedStateBackend>,
        clock: Clock,
    ) -> Result<Self, CallError> {
        let Pre::Process(pre) = &component.pre else {
            return Err(CallError::Init(format!("{} is not a process component", component.path.display())));
        };
        let mut store = new_store(rt, operator, limits, Some(backend));
        let (bindings, state) = instantiate(&mut store, pre.instance_pre(), component, |s, i| pb::Process::new(s, i))
            .map_err(|e| instantiate_error(&store, e, limits))?;
        store.set_epoch_deadline(budget_ticks(limits));
        let r = bindings.weir_operator_keyed_process().call_init(&mut store, config);
        let decl = r.map_err(|e| call_error(&store, e, limits))?.map_err(CallError::Init)?;
        let states = StateNames { value: decl.value_states, list: decl.list_states, map: decl.map_states };
        states.check(limits.max_states).map_err(CallError::Init)?;
        let ttls = states.ttls(&decl.ttls).map_err(CallError::Init)?;
        if !ttls.is_empty() {
            let inner = store.data_mut().backend.take().expect("invariant: a process store has a backend");
            store.data_mut().backend = Some(Box::new(TtlBackend::new(inner, clock, &ttls)));
        }
        store.data_mut().declared_lists = states.list.len() as u32;
        store.data_mut().declared_maps = states.map.len() as u32;
        Ok(ProcessInstance { store, bindings, limits, states, state })
    }

    /// Whether the operator keeps operator state (besides keyed state).
    pub fn has_operator_state(&self) -> bool {
        self.state.is_some()
    }

    /// Hands a stateful operator its operator state, once, before any
    /// call (`restored`: the job was restored). Nothing for one without.
    pub fn restore_state(&mut self, lists: &[OperatorList], restored: bool) -> Result<(), CallError> {
        StateExport::restore_in(&self.state, &mut self.store, self.limits, lists, restored)
    }

    /// A stateful operator's lists at checkpoint `checkpoint` (none for
    /// one without).
    pub fn snapshot_state(&mut self, checkpoint: u64) -> Result<Vec<OperatorList>, CallError> {
        StateExport::snapshot_in(&self.state, &mut self.store, self.limits, checkpoint)
    }

    /// The state the operator declared.
    pub fn states(&self) -> &StateNames {
        &self.states
    }

    /// The subtask's keyed state and timers.
    pub fn backend(&mut self) -> &mut dyn KeyedStateBackend {
        self.store.data_mut().backend.as_deref_mut().expect("invariant: process instances are created with a backend")
    }

    fn before_call(&mut self, table: &KeyTable) {
        self.store.data_mut().call_state_bytes = 0;
        if !self.states.list.is_empty() || !self.states.map.is_empty() {
            self.store.data_mut().call_table.clone_from(table);
        }
        self.store.set_epoch_deadline(budget_ticks(self.limits));
    }

    /// Processes a batch whose event `i` has key slot `key_slots[i]`.
    /// `marks` are watermarks inside the batch at which no timer of the
    /// backend is due (the guest fires timers the call itself registers).
    pub fn process_batch(
        &mut self,
        input: &Batch,
        key_slots: &[u32],
        marks: &[weir_core::Mark],
        table: &KeyTable,
        watermark: i64,
        processing_time: i64,
    ) -> Result<ProcessOutput, CallError> {
        self.before_call(table);
        let marks: Vec<pb::weir::operator::types::Mark> =
            marks.iter().map(|m| pb::weir::operator::types::Mark { after: m.after, watermark: m.watermark }).collect();
        let ctx = pb::exports::weir::operator::keyed_process::CallContext { watermark, processing_time };
        let batch = pb::weir::operator::types::BatchParam {
            data: input.data(),
            offsets: input.offsets(),
            timestamps: input.timestamps(),
        };
        let r = self.bindings.weir_operator_keyed_process().call_process_batch(
            &mut self.store,
            batch,
            key_slots,
            &marks,
            table.wire(),
            ctx,
        );
        let r = r.map_err(|e| call_error(&self.store, e, self.limits))?;
        let r = r.map_err(|e| CallError::Operator { index: e.index, message: e.message })?;
        self.finish(r, table, input.origins())
    }

    /// Fires `timers` in the order given.
    pub fn on_timers(
        &mut self,
        timers: &[FiredTimer],
        table: &KeyTable,
        watermark: i64,
        processing_time: i64,
        origins: &[u64],
    ) -> Result<ProcessOutput, CallError> {
        use pb::weir::operator::types::TimeDomain;
        self.before_call(table);
        let wire: Vec<pb::exports::weir::operator::keyed_process::FiredTimer> = timers
            .iter()
            .map(|t| pb::exports::weir::operator::keyed_process::FiredTimer {
                key_slot: t.key_slot,
                timestamp: t.timestamp,
                domain: if t.event_time { TimeDomain::EventTime } else { TimeDomain::ProcessingTime },
            })
            .collect();
        let ctx = pb::exports::weir::operator::keyed_process::CallContext { watermark, processing_time };
        let r = self.bindings.weir_operator_keyed_process().call_on_timers(&mut self.store, &wire, table.wire(), ctx);
        let r = r.map_err(|e| call_error(&self.store, e, self.limits))?;
        let r = r.map_err(|e| CallError::Operator { index: e.index, message: e.message })?;
        self.finish(r, table, origins)
    }

    fn finish(
        &mut self,
        r: pb::exports::weir::operator::keyed_process::ProcessResult,
        table: &KeyTable,
        origins: &[u64],
    ) -> Result<ProcessOutput, CallError> {
        use pb::weir::operator::types::TimeDomain;
        let o = r.output;
        let events = mb::weir::operator::types::BatchResult {
            data: o.events.data,
            offsets: o.events.offsets,
            timestamps: o.events.timestamps,
        };
        let output =
            to_output(events, o.input_ends, o.side.into_iter().map(|s| (s.tag, s.key, s.value, s.timestamp)), origins)?;
        let cells = table.len().saturating_mul(self.states.value.len()).min(u32::MAX as usize) as u32;
        let w = r.writes;
        if w.cells.len() != w.lens.len() || w.cells.iter().any(|&c| c >= cells) {
            return Err(CallError::Protocol("value writes name cells outside the key table".into()));
        }
        let total: u64 = w.lens.iter().filter(|&&l| l != u32::MAX).map(|&l| u64::from(l)).sum();
        let host_written = self.store.data().call_state_bytes as u64;
        if total + host_written > self.limits.state_bytes_per_call as u64 {
            return Err(CallError::Quota(format!(
                "it wrote {} MiB of keyed state in one call, over the quota of {} MiB (`state_bytes_per_call`)",
                (total + host_written) >> 20,
                self.limits.state_bytes_per_call >> 20
            )));
        }
        if r.timers.len() > self.limits.timers_per_call {
            return Err(CallError::Quota(format!(
                "it changed {} timers in one call, over the quota of {} (`timers_per_call`)",
                r.timers.len(),
                self.limits.timers_per_call
            )));
        }
        if total != w.data.len() as u64 {
            return Err(CallError::Protocol("value write lengths do not add up to the written bytes".into()));
        }
        let slots = table.len() as u32;
        if r.timers.iter().any(|t| t.key_slot >= slots) {
            return Err(CallError::Protocol("a timer names a key slot outside the key table".into()));
        }
        let timers = r
            .timers
            .iter()
            .map(|t| TimerOp {
                key_slot: t.key_slot,
                timestamp: t.timestamp,
                event_time: matches!(t.domain, TimeDomain::EventTime),
                delete: t.delete,
            })
            .collect();
        Ok(ProcessOutput { output, write_cells: w.cells, write_lens: w.lens, write_data: w.data, timers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_slots_give_back_their_scope_and_count_the_bytes_copied() {
        let mut t = KeyTable::default();
        assert!(t.is_empty());
        let a = t.push_slot(Scope::key(3, b"alice"));
        let b = t.push_slot(Scope { group: 7, key: b"bob", namespace: b"w[0,10)" });
        let c = t.push_slot(Scope::key(0, b""));
        assert_eq!((a, b, c, t.len()), (0, 1, 2, 3));
        assert_eq!(t.scope(0), Scope::key(3, b"alice"));
        assert_eq!(t.scope(1), Scope { group: 7, key: b"bob", namespace: b"w[0,10)" });
        assert_eq!(t.scope(2), Scope::key(0, b""));
        t.values.extend_from_slice(b"12");
        assert_eq!(t.bytes(), 5 + 3 + 7 + 2, "keys, namespaces and values");
        let wire = t.wire();
        assert_eq!((wire.key_ends, wire.namespace_ends), (&[5u32, 8, 8][..], &[0u32, 7, 7][..]));
        t.clear();
        assert!(t.is_empty() && t.bytes() == 0);
        assert_eq!(t.push_slot(Scope::key(1, b"x")), 0, "slots number from 0 again");
    }

    #[test]
    fn declared_state_names_are_bounded_unique_and_non_empty() {
        let names = |value: &[&str], list: &[&str]| StateNames {
            value: value.iter().map(|s| s.to_string()).collect(),
            list: list.iter().map(|s| s.to_string()).collect(),
            map: Vec::new(),
        };
        assert_eq!(names(&["count"], &["count"]).check(2), Ok(()), "names are per kind");
        assert!(names(&["a", "b"], &["c"]).check(2).unwrap_err().contains("3 states; at most 2"));
        assert!(names(&["a", "a"], &[]).check(8).unwrap_err().contains("value state `a` twice"));
        assert!(names(&[""], &[]).check(8).unwrap_err().contains("1 to 256 bytes"));
        assert!(names(&[&"x".repeat(257)], &[]).check(8).unwrap_err().contains("1 to 256 bytes"));
    }

    #[test]
    fn a_time_to_live_must_name_a_declared_state_once_and_last_at_least_a_millisecond() {
        use pb::exports::weir::operator::keyed_process::{StateKind as K, StateTtl, TtlUpdate as U};
        let names = StateNames { value: vec!["count".into()], list: Vec::new(), map: vec!["seen".into()] };
        let ttl = |kind, state, ttl_ms| StateTtl { kind, state, ttl_ms, update: U::OnReadAndWrite };
        let ok = names.ttls(&[ttl(K::Value, 0, 5), ttl(K::Map, 0, 7)]).unwrap();
        assert_eq!(ok[0], (StateKind::Value, 0, Ttl { millis: 5, update: TtlUpdate::OnReadAndWrite }));
        assert_eq!((ok[1].0, ok[1].2.millis), (StateKind::Map, 7));
        let err = |ttls: &[StateTtl]| names.ttls(ttls).unwrap_err();
        assert!(err(&[ttl(K::List, 0, 5)]).contains("list state 0, but declares only 0 such states"));
        assert!(err(&[ttl(K::Value, 1, 5)]).contains("value state 1, but declares only 1"));
        assert!(err(&[ttl(K::Value, 0, 0)]).contains("time-to-live of 0 ms; give at least 1 ms"));
        assert!(err(&[ttl(K::Map, 0, 5), ttl(K::Map, 0, 9)]).contains("map state 0 a time-to-live twice"));
    }
}
