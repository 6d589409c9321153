//! The window operator with a Wasm window function (aggregate, reduce or
//! process-window), one call per stretch of work instead of one per
//! element.
//!
//! The operator runs as with a built-in function, but every accumulator
//! change (fold an element in, merge two windows, drop one) and every
//! firing is written down as an action of a [`FunctionCall`] over the
//! (key, state window) slots involved, with their accumulators as they
//! were when the call began. The call runs before anything that must come
//! after its outputs: a watermark going out, a batch of output, the end
//! of a chunk of fired timers. Then the changed accumulators go back to
//! the backend (value state 0, as the built-ins'), and each firing's
//! outputs are emitted keyed by the window's key and stamped with its
//! last millisecond.
//!
//! The host follows which slots hold an accumulator (it knows every
//! action), so a window without one does not fire, as with a built-in
//! function. A process-window function keeps the window's elements (list
//! state 0, as with an evictor) and gets them when it fires.

use super::{ACC, At, Fail, GLOBAL_STATE, OpError, TIMER_ORIGIN, WINDOW_STATE, WindowOp, scope};
use crate::window::Window;
use std::collections::HashMap;
use weir_state::Scope;
use weir_wasm::{FunctionCall, FunctionInstance};

/// Element bytes a pending call holds at most before it is made.
const PENDING_BYTES: usize = 16 << 20;

/// A Wasm window function and the scratch of its calls.
pub(crate) struct WasmFunction {
    instance: FunctionInstance,
    call: FunctionCall,
    groups: Vec<u16>,
    windows: Vec<Window>,
    /// Whether each slot holds an accumulator at this point of the call,
    /// and whether it did when the call began.
    present: Vec<bool>,
    initial: Vec<bool>,
    /// Slots whose window was cleaned up after their actions: their
    /// window state goes, whatever the call writes.
    cleaned: Vec<bool>,
    slot_of: HashMap<(Vec<u8>, Window), u32>,
    /// Per fire: its slot and the window it emits for.
    fires: Vec<(u32, Window)>,
}

impl WasmFunction {
    pub fn new(instance: FunctionInstance) -> WasmFunction {
        WasmFunction {
            instance,
            call: FunctionCall::default(),
            groups: Vec::new(),
            windows: Vec::new(),
            present: Vec::new(),
            initial: Vec::new(),
            cleaned: Vec::new(),
            slot_of: HashMap::new(),
            fires: Vec::new(),
        }
    }

    /// Whether firings use keyed state.
    pub fn keyed_state(&self) -> bool {
        self.instance.keyed_state()
    }

    /// Whether the function needs every element of a window.
    pub fn all_elements(&self) -> bool {
        self.instance.all_elements()
    }

    fn clear(&mut self) {
        self.call.clear();
        self.groups.clear();
        self.windows.clear();
        self.present.clear();
        self.initial.clear();
        self.cleaned.clear();
        self.slot_of.clear();
        self.fires.clear();
    }
}

impl WindowOp {
    /// The function's slot of `at`'s `state_window`, added with its
    /// accumulator when new.
    fn fn_slot(&mut self, f: &mut WasmFunction, at: At<'_>, state_window: Window) -> u32 {
        if let Some(&s) = f.slot_of.get(&(at.key.to_vec(), state_window)) {
            return s;
        }
        let ns = state_window.namespace();
        let mut acc = Vec::new();
        let had = !f.all_elements() && self.backend.value_get(ACC, scope(at, &ns, state_window), &mut acc);
        let s = f.call.add_slot(at.key, state_window.bounds(), had.then_some(&acc[..]));
        if f.keyed_state() {
            // Session windows have no window state (as in Flink): none is
            // handed over, and the SDK refuses reads and writes of it.
            let (mut window, mut global) = (Vec::new(), Vec::new());
            let w = !self.assigner.is_merging()
                && self.backend.value_get(WINDOW_STATE, scope(at, &ns, state_window), &mut window);
            let g = self.backend.value_get(GLOBAL_STATE, Scope::key(at.group, at.key), &mut global);
            let window_cell = (!self.assigner.is_merging()).then_some(w.then_some(&window[..]));
            f.call.slot_states(window_cell, g.then_some(&global[..]));
        }
        f.groups.push(at.group);
        f.windows.push(state_window);
        f.present.push(had);
        f.initial.push(had);
        f.cleaned.push(false);
        f.slot_of.insert((at.key.to_vec(), state_window), s);
        s
    }

    /// Runs `op` with the Wasm function taken out of `self`.
    fn with_fn<R>(&mut self, op: impl FnOnce(&mut WindowOp, &mut WasmFunction) -> R) -> R {
        let mut f = self.wasm_fn.take().expect("invariant: called with a Wasm function");
        let r = op(self, &mut f);
        self.wasm_fn = Some(f);
        r
    }

    /// Folds an element into `state_window`'s accumulator.
    pub(super) fn fn_add(&mut self, at: At<'_>, state_window: Window, timestamp: i64, value: &[u8]) {
        self.with_fn(|op, f| {
            let slot = op.fn_slot(f, at, state_window);
            let e = f.call.element(value, timestamp);
            f.call.add(slot, e);
            f.present[slot as usize] = true;
        });
    }

    /// Merges `from`'s accumulator into `into`'s.
    pub(super) fn fn_merge(&mut self, at: At<'_>, into: Window, from: Window) {
        self.with_fn(|op, f| {
            let (into, from) = (op.fn_slot(f, at, into), op.fn_slot(f, at, from));
            if into != from {
                f.call.merge(into, from);
                f.present[into as usize] |= std::mem::take(&mut f.present[from as usize]);
            }
        });
    }

    /// Drops `state_window`'s accumulator.
    pub(super) fn fn_clear(&mut self, at: At<'_>, state_window: Window) {
        self.with_fn(|op, f| {
            let slot = op.fn_slot(f, at, state_window);
            f.call.clear_acc(slot);
            f.present[slot as usize] = false;
        });
    }

    /// `state_window` was cleaned up: its window state goes now, and a
    /// pending call's write of it is dropped.
    pub(super) fn fn_cleaned(&mut self, at: At<'_>, state_window: Window) {
        let ns = state_window.namespace();
        self.backend.value_clear(WINDOW_STATE, scope(at, &ns, state_window));
        if let Some(f) = self.wasm_fn.as_mut()
            && let Some(&s) = f.slot_of.get(&(at.key.to_vec(), state_window))
        {
            f.cleaned[s as usize] = true;
        }
    }

    /// Whether `state_window` holds an accumulator now.
    pub(super) fn fn_present(&mut self, at: At<'_>, state_window: Window) -> bool {
        self.with_fn(|op, f| {
            let slot = op.fn_slot(f, at, state_window);
            f.present[slot as usize]
        })
    }

    /// `window` fires (its `firing`-th time) over `state_window`'s
    /// accumulator, or over `elements` (timestamp, value).
    pub(super) fn fn_fire(
        &mut self,
        at: At<'_>,
        window: Window,
        state_window: Window,
        firing: u64,
        elements: Option<&[(i64, Vec<u8>)]>,
    ) {
        self.with_fn(|op, f| {
            let slot = op.fn_slot(f, at, state_window);
            let range = elements.map(|els| {
                let first = f.call.element_count();
                for (t, v) in els {
                    f.call.element(v, *t);
                }
                (first, els.len() as u32)
            });
            f.call.fire(slot, window.bounds(), firing.min(u32::MAX as u64) as u32, range);
            f.fires.push((slot, window));
        });
    }

    /// Whether the pending call should be made now: it holds a batch's
    /// worth of firings or 16 MiB of elements. (Made by the operator's
    /// loops, after the element or timer at hand, as a flush: its errors
    /// fail the job, never one record.)
    pub(super) fn fn_due(&self) -> bool {
        self.wasm_fn
            .as_ref()
            .is_some_and(|f| f.call.fires() >= super::EMIT_EVERY || f.call.element_bytes() > PENDING_BYTES)
    }

    /// Makes the call written down so far, writes the accumulators back
    /// and emits the firings' outputs.
    pub(super) fn run_function(&mut self) -> Result<(), Fail> {
        let Some(mut f) = self.wasm_fn.take() else { return Ok(()) };
        let r = self.run_function_with(&mut f);
        f.clear();
        self.wasm_fn = Some(f);
        r
    }

    fn run_function_with(&mut self, f: &mut WasmFunction) -> Result<(), Fail> {
        if f.call.is_empty() {
            return Ok(());
        }
        let all_elements = f.all_elements();
        let out = f.instance.run(&f.call).map_err(|e| {
            let message = match e {
                weir_wasm::CallError::Operator { message, .. } => format!("its window function failed: {message}"),
                e => format!("its window function: {e}"),
            };
            Fail::Op(OpError { origin: None, message })
        })?;
        // The host knows from the actions which slots hold an accumulator
        // at the end: the guest's writes must agree, and a process-window
        // function keeps none.
        let protocol = |message: String| {
            Fail::Op(OpError { origin: None, message: format!("its window function broke the contract: {message}") })
        };
        if all_elements && out.writes.iter().any(|(_, r)| r.is_some()) {
            return Err(protocol("a process-window function returned accumulators".to_owned()));
        }
        if self.assigner.is_merging() && !out.window_writes.is_empty() {
            return Err(Fail::Op(OpError {
                origin: None,
                message: "its window function keeps window state, which session windows do not allow (as in Flink): keep it in the global state".to_owned(),
            }));
        }
        // One global state per key: a second write of a key's is a guest
        // that does not share it across the key's slots.
        for (i, (a, _)) in out.global_writes.iter().enumerate() {
            let key = f.call.slot_key(*a);
            if out.global_writes[..i].iter().any(|(b, _)| f.call.slot_key(*b) == key) {
                return Err(protocol(format!("two global states for one key (slot {a})")));
            }
        }
        let mut last = f.initial.clone();
        for (slot, range) in &out.writes {
            last[*slot as usize] = range.is_some();
        }
        if let Some(s) = (0..last.len()).find(|&s| last[s] != f.present[s]) {
            return Err(protocol(format!(
                "slot {s} {} an accumulator after the call, and its actions leave it {}",
                if last[s] { "holds" } else { "has no" },
                if f.present[s] { "with one" } else { "without" }
            )));
        }
        for (slot, range) in &out.writes {
            let (group, window) = (f.groups[*slot as usize], f.windows[*slot as usize]);
            let at = At { group, key: f.call.slot_key(*slot) };
            let ns = window.namespace();
            match range {
                Some(r) => self.backend.value_put(ACC, scope(at, &ns, window), &out.accs[r.clone()]),
                None => self.backend.value_clear(ACC, scope(at, &ns, window)),
            }
        }
        for (slot, range) in &out.window_writes {
            if f.cleaned[*slot as usize] {
                continue;
            }
            let (group, window) = (f.groups[*slot as usize], f.windows[*slot as usize]);
            let at = At { group, key: f.call.slot_key(*slot) };
            let ns = window.namespace();
            match range {
                Some(r) => self.backend.value_put(WINDOW_STATE, scope(at, &ns, window), &out.window_states[r.clone()]),
                None => self.backend.value_clear(WINDOW_STATE, scope(at, &ns, window)),
            }
        }
        for (slot, range) in &out.global_writes {
            let at = Scope::key(f.groups[*slot as usize], f.call.slot_key(*slot));
            match range {
                Some(r) => self.backend.value_put(GLOBAL_STATE, at, &out.global_states[r.clone()]),
                None => self.backend.value_clear(GLOBAL_STATE, at),
            }
        }
        let mut from = 0usize;
        for (&(slot, window), &end) in f.fires.iter().zip(&out.output_ends) {
            let key = f.call.slot_key(slot);
            for i in from..end as usize {
                self.out.push(key, out.outputs.value(i), window.max_timestamp(), TIMER_ORIGIN);
            }
            from = end as usize;
        }
        Ok(())
    }
}
