//! Custom window triggers: the window operator builds a [`TriggerCall`]
//! (the (key, window) slots of a stretch of its work, each with its
//! trigger state, and the actions in order), [`TriggerInstance::run`]
//! makes one Wasm call of it, and the checked [`TriggerOutput`] says what
//! each action decided, which timers to register or delete, and which
//! slots' state changed.

use crate::bindings::trigger::exports::weir::operator::window_trigger as wt;
use crate::bindings::trigger::weir::operator::types::TimeDomain;
use crate::engine::{Component, Pre, WasmRuntime};
use crate::instance::{CallError, budget_ticks, call_error, start_instance};
use crate::sandbox::{HostState, Limits};
use wasmtime::Store;

/// One call's worth of trigger work.
pub struct TriggerCall {
    actions: Vec<wt::Action>,
    table: wt::TriggerTable,
}

impl Default for TriggerCall {
    fn default() -> Self {
        TriggerCall {
            actions: Vec::new(),
            table: wt::TriggerTable {
                keys: Vec::new(),
                key_ends: Vec::new(),
                windows: Vec::new(),
                states: Vec::new(),
                state_lens: Vec::new(),
            },
        }
    }
}

impl TriggerCall {
    /// Empties the call, keeping its buffers.
    pub fn clear(&mut self) {
        self.actions.clear();
        let t = &mut self.table;
        t.keys.clear();
        t.key_ends.clear();
        t.windows.clear();
        t.states.clear();
        t.state_lens.clear();
    }

    /// Whether the call has no action.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Slots so far.
    pub fn slots(&self) -> usize {
        self.table.windows.len()
    }

    /// The key of `slot`.
    pub fn slot_key(&self, slot: u32) -> &[u8] {
        crate::window_function::slot_key(&self.table.keys, &self.table.key_ends, slot)
    }

    /// The window of `slot`, as `(start, end)`.
    pub fn slot_window(&self, slot: u32) -> (i64, i64) {
        let w = &self.table.windows[slot as usize];
        (w.start, w.end)
    }

    /// Slots whose last action in the call is a clear: the host removes
    /// their state whatever the guest wrote.
    pub fn cleared_slots(&self) -> impl Iterator<Item = u32> + '_ {
        let mut last_clear = vec![false; self.slots()];
        for a in &self.actions {
            last_clear[action_slot(a) as usize] = matches!(a, wt::Action::Clear(_));
        }
        last_clear.into_iter().enumerate().filter(|(_, c)| *c).map(|(s, _)| s as u32)
    }

    /// Adds a slot: `key` in `window` (`(start, end)`, the global window
    /// `(i64::MIN, i64::MAX)`), with its trigger state as the call starts.
    pub fn add_slot(&mut self, key: &[u8], window: (i64, i64), state: Option<&[u8]>) -> u32 {
        let t = &mut self.table;
        t.keys.extend_from_slice(key);
        t.key_ends.push(t.keys.len() as u32);
        t.windows.push(wt::Window { start: window.0, end: window.1 });
        crate::window_function::push_cell(state, &mut t.states, &mut t.state_lens);
        (t.windows.len() - 1) as u32
    }

    fn push(&mut self, a: wt::Action) -> u32 {
        self.actions.push(a);
        (self.actions.len() - 1) as u32
    }

    /// An element at `time` was added to the slot's window; the action's
    /// number.
    pub fn element(&mut self, slot: u32, time: i64) -> u32 {
        self.push(wt::Action::Element(wt::SlotTime { slot, time }))
    }

    /// A timer of the slot fired at `time`.
    pub fn timer(&mut self, slot: u32, time: i64, event_time: bool) -> u32 {
        let st = wt::SlotTime { slot, time };
        self.push(if event_time { wt::Action::EventTime(st) } else { wt::Action::ProcessingTime(st) })
    }

    /// `merged` merged into the slot's window.
    pub fn merge(&mut self, slot: u32, merged: Vec<u32>) -> u32 {
        self.push(wt::Action::Merge(wt::MergedWindows { slot, merged }))
    }

    /// The slot's window is gone.
    pub fn clear_window(&mut self, slot: u32) -> u32 {
        self.push(wt::Action::Clear(slot))
    }
}

/// The slot an action is for (a merge's: the window merged into).
fn action_slot(a: &wt::Action) -> u32 {
    match a {
        wt::Action::Element(s) | wt::Action::EventTime(s) | wt::Action::ProcessingTime(s) => s.slot,
        wt::Action::Merge(m) => m.slot,
        wt::Action::Clear(s) => *s,
    }
}

/// A timer a trigger registered or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerTimer {
    /// The action it was made in.
    pub action: u32,
    /// Its slot.
    pub slot: u32,
    /// When it fires.
    pub timestamp: i64,
    /// Event time (else processing time).
    pub event_time: bool,
    /// Deleted (else registered).
    pub delete: bool,
}

/// What a checked trigger call returned.
#[derive(Debug, Default)]
pub struct TriggerOutput {
    /// Per action: whether the window fires, and whether it purges.
    pub decisions: Vec<(bool, bool)>,
    /// Timer operations, in action order.
    pub timers: Vec<TriggerTimer>,
    /// Slots whose state changed: the slot and its new state (`None`:
    /// cleared) as a range of `states`.
    pub writes: Vec<(u32, Option<std::ops::Range<usize>>)>,
    /// The new states' bytes.
    pub states: Vec<u8>,
}

/// An instance of a `trigger` component.
pub struct TriggerInstance {
    store: Store<HostState>,
    bindings: crate::bindings::trigger::Trigger,
    limits: Limits,
    out: TriggerOutput,
}

impl TriggerInstance {
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
        let Pre::Trigger(pre) = &component.pre else {
            return Err(CallError::Init(format!("{} is not a trigger component", component.path.display())));
        };
        let (store, bindings, ()) = start_instance(
            rt,
            operator,
            limits,
            |s| pre.instantiate(s),
            |b: &crate::bindings::trigger::Trigger, s| b.weir_operator_window_trigger().call_init(s, config),
        )?;
        Ok(TriggerInstance { store, bindings, limits, out: TriggerOutput::default() })
    }

    /// What the last [`TriggerInstance::run`] returned.
    pub fn output(&self) -> &TriggerOutput {
        &self.out
    }

    /// Runs `call`; everything the guest returns is checked against it.
    pub fn run(&mut self, call: &TriggerCall, watermark: i64, now: i64) -> Result<&TriggerOutput, CallError> {
        self.store.set_epoch_deadline(budget_ticks(self.limits));
        let r = self.bindings.weir_operator_window_trigger().call_run(
            &mut self.store,
            &call.actions,
            &call.table,
            watermark,
            now,
        );
        let r = r
            .map_err(|e| call_error(&self.store, e, self.limits))?
            .map_err(|message| CallError::Operator { index: 0, message })?;
        let (actions, slots) = (call.actions.len(), call.slots());
        let bad = |what: String| Err(CallError::Protocol(format!("the trigger's run returned {what}")));
        if r.decisions.len() != actions {
            return bad(format!("{} decisions for {actions} actions; return one per action", r.decisions.len()));
        }
        let out = &mut self.out;
        out.decisions.clear();
        for (i, (d, a)) in r.decisions.iter().zip(&call.actions).enumerate() {
            let quiet = matches!(a, wt::Action::Merge(_) | wt::Action::Clear(_));
            out.decisions.push(match d {
                wt::Decision::Continue => (false, false),
                _ if quiet => return bad(format!("a decision other than `continue` for action {i}, a merge or clear")),
                wt::Decision::Fire => (true, false),
                wt::Decision::Purge => (false, true),
                wt::Decision::FireAndPurge => (true, true),
            });
        }
        out.timers.clear();
        let mut last = 0;
        for t in &r.timers {
            if t.action as usize >= actions
                || t.action < last
                || t.slot != action_slot(&call.actions[t.action as usize])
            {
                return bad(format!(
                    "a timer of action {} and slot {} ({actions} actions, timers in action order, each for its action's slot)",
                    t.action, t.slot
                ));
            }
            last = t.action;
            out.timers.push(TriggerTimer {
                action: t.action,
                slot: t.slot,
                timestamp: t.timestamp,
                event_time: t.domain == TimeDomain::EventTime,
                delete: t.delete,
            });
        }
        out.writes = crate::window_function::cells(
            "the trigger's run",
            "state",
            &r.state_slots,
            &r.state_lens,
            r.states.len(),
            slots,
        )?;
        out.states = r.states;
        Ok(&self.out)
    }
}
