//! Wasm window functions: the window operator writes down a stretch's
//! accumulator changes and firings in a [`FunctionCall`] (the (key,
//! window) slots with their accumulators, the actions in order, and the
//! elements they name), [`FunctionInstance::run`] makes one Wasm call of
//! it, and the checked [`FunctionOutput`] holds each firing's outputs and
//! the accumulators that changed.

use crate::bindings::function::exports::weir::operator::window_function as wf;
use crate::engine::{Component, Pre, WasmRuntime};
use crate::instance::{CallError, budget_ticks, call_error, start_instance};
use crate::sandbox::{HostState, Limits};
use wasmtime::Store;
use weir_core::Batch;

/// Appends a cell (`None`: absent) to flat `data` and its `lens`, as the
/// worlds' tables carry per-slot state.
pub(crate) fn push_cell(cell: Option<&[u8]>, data: &mut Vec<u8>, lens: &mut Vec<u32>) {
    match cell {
        Some(v) => {
            data.extend_from_slice(v);
            lens.push(v.len() as u32);
        }
        None => lens.push(ABSENT),
    }
}

/// Key `slot` of a table's `keys` split at `key_ends`.
pub(crate) fn slot_key<'a>(keys: &'a [u8], key_ends: &[u32], slot: u32) -> &'a [u8] {
    let s = slot as usize;
    let from = if s == 0 { 0 } else { key_ends[s - 1] as usize };
    &keys[from..key_ends[s] as usize]
}

/// Who returns what `run` returned, for errors.
const RUN: &str = "the window function's run";

/// An accumulator length that holds none.
const ABSENT: u32 = u32::MAX;

/// One call's worth of window-function work.
pub struct FunctionCall {
    actions: Vec<wf::Action>,
    table: wf::FunctionTable,
    elements: Batch,
    fires: usize,
}

impl Default for FunctionCall {
    fn default() -> Self {
        FunctionCall {
            actions: Vec::new(),
            table: wf::FunctionTable {
                keys: Vec::new(),
                key_ends: Vec::new(),
                windows: Vec::new(),
                accs: Vec::new(),
                acc_lens: Vec::new(),
                window_states: Vec::new(),
                window_state_lens: Vec::new(),
                global_states: Vec::new(),
                global_state_lens: Vec::new(),
            },
            elements: Batch::new(),
            fires: 0,
        }
    }
}

impl FunctionCall {
    /// Empties the call, keeping its buffers.
    pub fn clear(&mut self) {
        self.actions.clear();
        let t = &mut self.table;
        t.keys.clear();
        t.key_ends.clear();
        t.windows.clear();
        t.accs.clear();
        t.acc_lens.clear();
        t.window_states.clear();
        t.window_state_lens.clear();
        t.global_states.clear();
        t.global_state_lens.clear();
        self.elements.clear();
        self.fires = 0;
    }

    /// Whether the call has no action.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Slots so far.
    pub fn slots(&self) -> usize {
        self.table.windows.len()
    }

    /// Bytes of the elements so far.
    pub fn element_bytes(&self) -> usize {
        self.elements.data().len()
    }

    /// Elements so far.
    pub fn element_count(&self) -> u32 {
        self.elements.len() as u32
    }

    /// Fire actions so far.
    pub fn fires(&self) -> usize {
        self.fires
    }

    /// The key of `slot`.
    pub fn slot_key(&self, slot: u32) -> &[u8] {
        slot_key(&self.table.keys, &self.table.key_ends, slot)
    }

    /// Adds a slot: `key` in `window` (`(start, end)`), with its
    /// accumulator as the call starts.
    pub fn add_slot(&mut self, key: &[u8], window: (i64, i64), acc: Option<&[u8]>) -> u32 {
        let t = &mut self.table;
        t.keys.extend_from_slice(key);
        t.key_ends.push(t.keys.len() as u32);
        t.windows.push(wf::Window { start: window.0, end: window.1 });
        push_cell(acc, &mut t.accs, &mut t.acc_lens);
        (t.windows.len() - 1) as u32
    }

    /// With keyed state: the slot just added's window state (outer
    /// `None`: the window has none to offer, a session; the same for every
    /// slot of a call) and its key's global state.
    pub fn slot_states(&mut self, window: Option<Option<&[u8]>>, global: Option<&[u8]>) {
        let t = &mut self.table;
        if let Some(w) = window {
            push_cell(w, &mut t.window_states, &mut t.window_state_lens);
        }
        push_cell(global, &mut t.global_states, &mut t.global_state_lens);
    }

    /// Adds an element (its value and timestamp) for the actions to name.
    pub fn element(&mut self, value: &[u8], timestamp: i64) -> u32 {
        self.elements.push(b"", value, timestamp, 0);
        (self.elements.len() - 1) as u32
    }

    /// Folds element `element` into the slot's accumulator.
    pub fn add(&mut self, slot: u32, element: u32) {
        self.actions.push(wf::Action::Add(wf::SlotElement { slot, element }));
    }

    /// Merges `from`'s accumulator into `slot`'s.
    pub fn merge(&mut self, slot: u32, from: u32) {
        self.actions.push(wf::Action::Merge(wf::SlotPair { slot, from }));
    }

    /// The slot's accumulator goes.
    pub fn clear_acc(&mut self, slot: u32) {
        self.actions.push(wf::Action::Clear(slot));
    }

    /// `window` fires (its `number`-th firing), over the slot's
    /// accumulator or over `elements` (`(first, count)`); the fire's number
    /// among the call's fires.
    pub fn fire(&mut self, slot: u32, window: (i64, i64), number: u32, elements: Option<(u32, u32)>) -> usize {
        let window = wf::Window { start: window.0, end: window.1 };
        self.actions.push(wf::Action::Fire(wf::Firing { slot, window, number, elements }));
        self.fires += 1;
        self.fires - 1
    }
}

/// What a checked function call returned.
#[derive(Debug, Default)]
pub struct FunctionOutput {
    /// The firings' outputs (values; keys and timestamps as the guest set
    /// them, which the host replaces).
    pub outputs: Batch,
    /// For fire `i`, the end of its outputs in `outputs`.
    pub output_ends: Vec<u32>,
    /// Slots whose accumulator changed, with the new one (`None`: gone)
    /// as a range of `accs`.
    pub writes: Vec<CellWrite>,
    /// The new accumulators' bytes.
    pub accs: Vec<u8>,
    /// Window states that changed, as `writes`.
    pub window_writes: Vec<CellWrite>,
    /// Their bytes.
    pub window_states: Vec<u8>,
    /// Global states that changed, each named by a slot of its key.
    pub global_writes: Vec<CellWrite>,
    /// Their bytes.
    pub global_states: Vec<u8>,
}

/// A changed cell: its slot and its new value as a range of the bytes
/// (`None`: removed).
pub type CellWrite = (u32, Option<std::ops::Range<usize>>);

/// Checks changed cells (slots, lengths, bytes) against `slots` slots.
pub(crate) fn cells(
    call: &str,
    what: &str,
    slot_list: &[u32],
    lens: &[u32],
    bytes: usize,
    slots: usize,
) -> Result<Vec<CellWrite>, CallError> {
    let bad = |m: String| Err(CallError::Protocol(format!("{call} returned {m}")));
    if lens.len() != slot_list.len() {
        return bad(format!("{} {what} lengths for {} slots", lens.len(), slot_list.len()));
    }
    let mut writes = Vec::with_capacity(slot_list.len());
    let mut seen = vec![false; slots];
    let mut from = 0usize;
    for (&slot, &len) in slot_list.iter().zip(lens) {
        if slot as usize >= slots || std::mem::replace(&mut seen[slot as usize], true) {
            return bad(format!("a {what} for slot {slot} of {slots}, or twice"));
        }
        if len == ABSENT {
            writes.push((slot, None));
            continue;
        }
        let to = from + len as usize;
        if to > bytes {
            return bad(format!("{what}s that run past their {bytes} bytes"));
        }
        writes.push((slot, Some(from..to)));
        from = to;
    }
    if from != bytes {
        return bad(format!("{what} lengths that add up to {from} of its {bytes} bytes"));
    }
    Ok(writes)
}

/// An instance of a `function` component.
pub struct FunctionInstance {
    store: Store<HostState>,
    bindings: crate::bindings::function::Function,
    limits: Limits,
    all_elements: bool,
    keyed_state: bool,
    out: FunctionOutput,
}

impl FunctionInstance {
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
        let Pre::Function(pre) = &component.pre else {
            return Err(CallError::Init(format!("{} is not a window-function component", component.path.display())));
        };
        let (store, bindings, info) = start_instance(
            rt,
            operator,
            limits,
            |s| pre.instantiate(s),
            |b: &crate::bindings::function::Function, s| b.weir_operator_window_function().call_init(s, config),
        )?;
        Ok(FunctionInstance {
            store,
            bindings,
            limits,
            all_elements: info.kind == wf::FunctionKind::AllElements,
            keyed_state: info.keyed_state,
            out: FunctionOutput::default(),
        })
    }

    /// Whether the function computes over all of a window's elements
    /// (process-window), so the host keeps them.
    pub fn all_elements(&self) -> bool {
        self.all_elements
    }

    /// Whether firings use keyed state (window and global), so the host
    /// hands it over.
    pub fn keyed_state(&self) -> bool {
        self.keyed_state
    }

    /// What the last [`FunctionInstance::run`] returned.
    pub fn output(&self) -> &FunctionOutput {
        &self.out
    }

    /// Runs `call`; everything the guest returns is checked against it.
    pub fn run(&mut self, call: &FunctionCall) -> Result<&FunctionOutput, CallError> {
        self.store.set_epoch_deadline(budget_ticks(self.limits));
        let elements = wf::Batch {
            data: call.elements.data().to_vec(),
            offsets: call.elements.offsets().to_vec(),
            timestamps: call.elements.timestamps().to_vec(),
        };
        let r = self.bindings.weir_operator_window_function().call_run(
            &mut self.store,
            &call.actions,
            &call.table,
            &elements,
        );
        let r = r
            .map_err(|e| call_error(&self.store, e, self.limits))?
            .map_err(|message| CallError::Operator { index: 0, message })?;
        let bad = |what: String| Err(CallError::Protocol(format!("the window function's run returned {what}")));
        let n = r.outputs.timestamps.len();
        if r.output_ends.len() != call.fires
            || r.output_ends.windows(2).any(|w| w[0] > w[1])
            || r.output_ends.last().is_some_and(|&e| e as usize != n)
            || (r.output_ends.is_empty() && n != 0)
        {
            return bad(format!(
                "{} output ends for {} firings and {n} outputs; return one non-decreasing end per firing, the last at the output count",
                r.output_ends.len(),
                call.fires
            ));
        }
        let outputs = Batch::from_parts(r.outputs.data, r.outputs.offsets, r.outputs.timestamps, vec![0; n])
            .map_err(|e| CallError::Protocol(format!("the window function's outputs: {e}")))?;
        let slots = call.slots();
        let writes = cells(RUN, "accumulator", &r.acc_slots, &r.acc_lens, r.accs.len(), slots)?;
        let window_writes =
            cells(RUN, "window state", &r.window_state_slots, &r.window_state_lens, r.window_states.len(), slots)?;
        let global_writes =
            cells(RUN, "global state", &r.global_state_slots, &r.global_state_lens, r.global_states.len(), slots)?;
        if !self.keyed_state && (!window_writes.is_empty() || !global_writes.is_empty()) {
            return bad("keyed state from a function that declared none".to_owned());
        }
        self.out = FunctionOutput {
            outputs,
            output_ends: r.output_ends,
            writes,
            accs: r.accs,
            window_writes,
            window_states: r.window_states,
            global_writes,
            global_states: r.global_states,
        };
        Ok(&self.out)
    }
}
