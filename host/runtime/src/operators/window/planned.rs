//! The window operator with a Wasm trigger, one trigger call per stretch
//! of work instead of one per element.
//!
//! A trigger's decisions depend on its own state, its timers and the
//! clocks, never on the window's contents. So the operator works in two
//! passes over each stretch in which the watermark stands still (the
//! elements between two marks of a batch, or one chunk of timers a
//! watermark or the clock fires):
//!
//! 1. **Plan**: assign windows, merge sessions, find late elements, and
//!    write down the steps and, for each, the trigger's actions (Flink's
//!    `onElement`, `onEventTime`, `onProcessingTime`, `onMerge`, `clear`)
//!    in the order Flink would call them, over a table of the (key,
//!    window) slots involved with their trigger state.
//! 2. **Apply**: one Wasm call runs the actions; then each step runs in
//!    order with its action's decision, the timers the trigger changed up
//!    to that action, firing, purging and cleanup exactly as the built-in
//!    path does.
//!
//! Merging sets are kept in the plan pass (nothing in a stretch retires a
//! session window but a cleanup timer, which the apply pass handles as the
//! built-in path does).

use super::{At, Emit, Fail, OpError, WindowOp, scope};
use crate::window::aggregate::Num;
use crate::window::trigger::TRIGGER_STATE;
use crate::window::{Merge, Window};
use std::collections::HashMap;
use weir_core::{Batch, NO_TIMESTAMP};
use weir_state::{Timer, TimerDomain};
use weir_wasm::{TriggerCall, TriggerInstance, TriggerTimer};

/// A Wasm trigger and the scratch of its calls.
pub(crate) struct WasmTrigger {
    instance: TriggerInstance,
    /// Wrapped in `purging`: every firing purges too.
    purging: bool,
    call: TriggerCall,
    /// Each slot's key group and window, and the slot of each (key,
    /// window) so far in the call.
    groups: Vec<u16>,
    windows: Vec<Window>,
    slot_of: HashMap<(Vec<u8>, Window), u32>,
    steps: Vec<Step>,
}

/// One step of a stretch, with its trigger actions.
enum Step {
    /// Element `event` of the batch goes into `window` (its state in
    /// `state_window`).
    Element { event: u32, window: Window, state_window: Window, x: Num, action: u32 },
    /// Session windows merged, for element `event`: `action` is the
    /// merge's, `clears` the merged windows' clears.
    Merge { event: u32, merge: Merge, action: u32, clears: Vec<u32> },
    /// Element `event` is too late for all its windows.
    Late { event: u32 },
    /// Element `event` is rejected.
    Reject { event: u32, message: String },
    /// Timer `timer` of the chunk fired for `window`; `clear` is the
    /// trigger's clear when it is the window's cleanup time.
    Timer { timer: u32, window: Window, state_window: Window, action: u32, clear: Option<u32> },
}

impl WasmTrigger {
    pub fn new(instance: TriggerInstance, purging: bool) -> WasmTrigger {
        WasmTrigger {
            instance,
            purging,
            call: TriggerCall::default(),
            groups: Vec::new(),
            windows: Vec::new(),
            slot_of: HashMap::new(),
            steps: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.call.clear();
        self.groups.clear();
        self.windows.clear();
        self.slot_of.clear();
        self.steps.clear();
    }
}

impl WindowOp {
    /// The slot of `at`'s `window` in the call, added with its trigger
    /// state when new.
    fn slot(&mut self, t: &mut WasmTrigger, at: At<'_>, window: Window) -> u32 {
        if let Some(&s) = t.slot_of.get(&(at.key.to_vec(), window)) {
            return s;
        }
        let ns = window.namespace();
        self.buf.clear();
        let had = self.backend.value_get(TRIGGER_STATE, scope(at, &ns, window), &mut self.buf);
        let s = t.call.add_slot(at.key, window.bounds(), had.then_some(&self.buf[..]));
        t.groups.push(at.group);
        t.windows.push(window);
        t.slot_of.insert((at.key.to_vec(), window), s);
        s
    }

    /// Plans element `i` (Flink's `processElement`, the trigger's part
    /// written down as actions).
    fn plan_element(&mut self, t: &mut WasmTrigger, input: &Batch, i: usize, now: i64) -> Result<(), String> {
        let e = input.event(i);
        let at = self.at(input, i);
        self.element_gap(i)?;
        if self.assigner.is_event_time() && e.timestamp == NO_TIMESTAMP {
            return Err("an event-time window needs event timestamps, and this record has none; set `timestamp:` on its source, or window in processing time".to_owned());
        }
        let x = self.function.input(e.value)?;
        let event = i as u32;
        let mut windows = std::mem::take(&mut self.windows);
        // Processing-time windows take each element's arrival; the trigger
        // sees one processing time per call.
        let arrival = if self.assigner.is_event_time() { now } else { self.now() };
        self.assigner.assign(e.timestamp, arrival, &mut windows);
        let mut skipped = true;
        let result = (|| {
            if self.assigner.is_merging() {
                let mut set = self.sessions(at)?;
                for &w in &windows {
                    let before = set.clone();
                    let (actual, merges) = set.add(w);
                    if let Err(e) = self.check_merges(&merges) {
                        self.persist(at, &before);
                        return Err(e);
                    }
                    for m in merges {
                        let target = self.slot(t, at, m.result);
                        let merged: Vec<u32> = m.merged.iter().map(|&w| self.slot(t, at, w)).collect();
                        let action = t.call.merge(target, merged.clone());
                        let clears = merged.iter().map(|&s| t.call.clear_window(s)).collect();
                        t.steps.push(Step::Merge { event, merge: m, action, clears });
                    }
                    if self.is_window_late(actual) {
                        set.retire(actual);
                        continue;
                    }
                    skipped = false;
                    let state_window = set.state_window(actual).expect("invariant: the added window is mapped");
                    let slot = self.slot(t, at, actual);
                    let action = t.call.element(slot, e.timestamp);
                    t.steps.push(Step::Element { event, window: actual, state_window, x, action });
                }
                self.persist(at, &set);
            } else {
                for &w in &windows {
                    if self.is_window_late(w) {
                        continue;
                    }
                    skipped = false;
                    let slot = self.slot(t, at, w);
                    let action = t.call.element(slot, e.timestamp);
                    t.steps.push(Step::Element { event, window: w, state_window: w, x, action });
                }
            }
            Ok(())
        })();
        self.windows = windows;
        result?;
        if skipped && self.assigner.is_event_time() && e.timestamp.saturating_add(self.lateness) <= self.watermark {
            t.steps.push(Step::Late { event });
        }
        Ok(())
    }

    /// Registers or deletes a timer the trigger asked for.
    fn trigger_timer(&mut self, t: &WasmTrigger, op: &TriggerTimer) {
        let (group, window) = (t.groups[op.slot as usize], t.windows[op.slot as usize]);
        let at = At { group, key: t.call.slot_key(op.slot) };
        let ns = window.namespace();
        let domain = if op.event_time { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
        if op.delete {
            self.backend.timer_delete(domain, scope(at, &ns, window), op.timestamp);
        } else {
            self.backend.timer_register(domain, scope(at, &ns, window), op.timestamp);
        }
    }

    /// Makes the call and writes back the trigger state it changed.
    fn call_trigger(&mut self, t: &mut WasmTrigger, now: i64) -> Result<(), Fail> {
        let out = t.instance.run(&t.call, self.watermark, now).map_err(|e| {
            let message = match e {
                weir_wasm::CallError::Operator { message, .. } => format!("its trigger failed: {message}"),
                e => format!("its trigger: {e}"),
            };
            Fail::Op(OpError { origin: None, message })
        })?;
        let cleared = t.call.cleared_slots().map(|s| (s, None));
        for (slot, range) in out.writes.iter().cloned().chain(cleared) {
            let (group, window) = (t.groups[slot as usize], t.windows[slot as usize]);
            let at = At { group, key: t.call.slot_key(slot) };
            let ns = window.namespace();
            match range {
                Some(r) => self.backend.value_put(TRIGGER_STATE, scope(at, &ns, window), &out.states[r]),
                None => self.backend.value_clear(TRIGGER_STATE, scope(at, &ns, window)),
            }
        }
        Ok(())
    }

    /// Applies the timer operations of the actions up to `action`, from
    /// `*next` on.
    fn timers_upto(&mut self, t: &WasmTrigger, next: &mut usize, action: u32) {
        let out_timers = &t.instance.output().timers;
        while let Some(op) = out_timers.get(*next).filter(|op| op.action <= action) {
            let op = *op;
            self.trigger_timer(t, &op);
            *next += 1;
        }
    }

    /// Whether the trigger, on the timer of `action` that fired at `time`
    /// (due up to `upto`), registered that same timer again: it would
    /// fire again at once, forever.
    fn refires(t: &WasmTrigger, next: usize, action: u32, time: i64, event_time: bool, upto: i64) -> bool {
        t.instance.output().timers[next..]
            .iter()
            .take_while(|op| op.action == action)
            .any(|op| !op.delete && op.timestamp == time && op.event_time == event_time && time <= upto)
    }

    /// The decision of `action`: (fire, purge).
    fn decision(t: &WasmTrigger, action: u32) -> (bool, bool) {
        let (fire, purge) = t.instance.output().decisions[action as usize];
        (fire, purge || (t.purging && fire))
    }

    /// The stretch of elements `from..to` of `input` (no mark between).
    fn run_elements(
        &mut self,
        t: &mut WasmTrigger,
        input: &Batch,
        from: usize,
        to: usize,
        out: &mut dyn Emit,
    ) -> Result<(), Fail> {
        t.clear();
        let now = self.now();
        for i in from..to {
            if let Err(message) = self.plan_element(t, input, i, now) {
                t.steps.push(Step::Reject { event: i as u32, message });
            }
        }
        if !t.call.is_empty() {
            self.call_trigger(t, now)?;
        }
        let steps = std::mem::take(&mut t.steps);
        let mut next = 0usize;
        // An event rejected in one of its windows is not added to the rest
        // (as the built-in path stops at its first error).
        let mut failed: Option<u32> = None;
        for step in &steps {
            let event_of = match step {
                Step::Element { event, .. }
                | Step::Merge { event, .. }
                | Step::Late { event }
                | Step::Reject { event, .. } => *event,
                Step::Timer { .. } => unreachable!("invariant: element stretches plan no timers"),
            };
            if failed == Some(event_of) {
                if let Step::Element { action, .. } | Step::Merge { action, .. } = step {
                    self.timers_upto(t, &mut next, *action);
                }
                continue;
            }
            let r = match step {
                Step::Element { event, window, state_window, x, action } => {
                    let e = input.event(*event as usize);
                    let at = self.at(input, *event as usize);
                    self.add(at, *state_window, e.timestamp, e.value, *x);
                    self.timers_upto(t, &mut next, *action);
                    let (fire, purge) = Self::decision(t, *action);
                    let r = if fire { self.emit_window(at, *window, *state_window) } else { Ok(()) };
                    if purge {
                        self.clear_contents(at, *state_window);
                    }
                    self.register_cleanup(at, *window);
                    r.map_err(|m| (*event, m))
                }
                Step::Merge { event, merge, action, clears } => {
                    let at = self.at(input, *event as usize);
                    self.timers_upto(t, &mut next, *action);
                    for (&w, &clear) in merge.merged.iter().zip(clears) {
                        self.timers_upto(t, &mut next, clear);
                        self.delete_cleanup(at, w);
                    }
                    self.merge_state(at, merge);
                    Ok(())
                }
                Step::Late { event } => {
                    let e = input.event(*event as usize);
                    let at = self.at(input, *event as usize);
                    self.late(at, e.timestamp, e.value, e.origin);
                    Ok(())
                }
                Step::Reject { event, message } => Err((*event, message.clone())),
                Step::Timer { .. } => unreachable!("invariant: element stretches plan no timers"),
            };
            if let Err((event, message)) = r {
                failed = Some(event);
                self.reject(input, event as usize, message)?;
            }
            if self.out.len() >= super::EMIT_EVERY || self.fn_due() {
                self.flush(out)?;
            }
        }
        t.steps = steps;
        Ok(())
    }

    /// `process` with a Wasm trigger: stretches between the batch's marks.
    pub(super) fn process_planned(&mut self, mut input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        let marks = input.take_marks();
        let (mut next, mut from) = (0usize, 0usize);
        for i in 0..=input.len() {
            let at_mark = marks.get(next).is_some_and(|m| m.after as usize == i);
            if !at_mark && i < input.len() {
                continue;
            }
            if from < i {
                let mut t = self.wasm_trigger.take().expect("invariant: called with a Wasm trigger");
                let r = self.run_elements(&mut t, &input, from, i, out);
                self.wasm_trigger = Some(t);
                r?;
                from = i;
            }
            while let Some(m) = marks.get(next).filter(|m| m.after as usize == i) {
                next += 1;
                self.advance(m.watermark, out)?;
            }
        }
        self.run_function()?;
        self.check()?;
        self.flush(out)
    }

    /// `fire` with a Wasm trigger: the due timers in chunks, one call per
    /// chunk.
    pub(super) fn fire_planned(&mut self, domain: TimerDomain, upto: i64, out: &mut dyn Emit) -> Result<(), Fail> {
        let mut t = self.wasm_trigger.take().expect("invariant: called with a Wasm trigger");
        let r = (|| loop {
            self.fired.clear();
            self.backend.pop_timers(domain, upto, 1024, &mut self.fired);
            if self.fired.is_empty() {
                return Ok(());
            }
            let fired = std::mem::take(&mut self.fired);
            let r = self.run_timers(&mut t, domain, upto, &fired, out);
            self.fired = fired;
            r?;
            self.run_function()?;
            self.check()?;
        })();
        self.wasm_trigger = Some(t);
        r
    }

    /// One chunk of fired timers (Flink's `onEventTime` and
    /// `onProcessingTime`).
    fn run_timers(
        &mut self,
        t: &mut WasmTrigger,
        domain: TimerDomain,
        upto: i64,
        fired: &[Timer],
        out: &mut dyn Emit,
    ) -> Result<(), Fail> {
        t.clear();
        let now = self.now();
        let event_time = domain == TimerDomain::EventTime;
        let cleanup_domain =
            if self.assigner.is_event_time() { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
        let malformed = || {
            Fail::Op(OpError {
                origin: None,
                message: "a window timer with a malformed namespace; the state was changed or damaged".to_owned(),
            })
        };
        // Session windows this chunk cleans up: their later timers in the
        // chunk find no window, as on the built-in path.
        let mut retired: Vec<(&[u8], Window)> = Vec::new();
        for (i, timer) in fired.iter().enumerate() {
            let at = At { group: timer.group, key: &timer.key };
            let window = Window::from_namespace(&timer.namespace).ok_or_else(malformed)?;
            let state_window = if self.assigner.is_merging() {
                let set = self.sessions(at).map_err(|message| Fail::Op(OpError { origin: None, message }))?;
                let Some(sw) = set.state_window(window) else { continue };
                if retired.contains(&(&timer.key[..], window)) {
                    continue;
                }
                sw
            } else {
                window
            };
            let slot = self.slot(t, at, window);
            let action = t.call.timer(slot, timer.timestamp, event_time);
            let cleanup = domain == cleanup_domain && timer.timestamp == self.cleanup_time(window);
            let clear = cleanup.then(|| t.call.clear_window(slot));
            if cleanup && self.assigner.is_merging() {
                retired.push((&timer.key[..], window));
            }
            t.steps.push(Step::Timer { timer: i as u32, window, state_window, action, clear });
        }
        if t.call.is_empty() {
            return Ok(());
        }
        self.call_trigger(t, now)?;
        let steps = std::mem::take(&mut t.steps);
        let mut next = 0usize;
        for step in &steps {
            let Step::Timer { timer, window, state_window, action, clear } = step else {
                unreachable!("invariant: timer chunks plan only timers")
            };
            let timer = &fired[*timer as usize];
            let at = At { group: timer.group, key: &timer.key };
            if Self::refires(t, next, *action, timer.timestamp, event_time, upto) {
                return Err(Fail::Op(OpError {
                    origin: None,
                    message: format!(
                        "its trigger registered the timer that just fired at {} again, a time already passed: it would fire again at once, forever; register a later time",
                        timer.timestamp
                    ),
                }));
            }
            self.timers_upto(t, &mut next, *action);
            let (fire, purge) = Self::decision(t, *action);
            self.taken = false;
            if fire {
                self.take = clear.is_some() && !self.keep_elements;
                self.emit_window(at, *window, *state_window)
                    .map_err(|message| Fail::Op(OpError { origin: None, message }))?;
            }
            if purge && !self.taken {
                self.clear_contents(at, *state_window);
            }
            if let Some(clear) = clear {
                self.timers_upto(t, &mut next, *clear);
                let mut set = if self.assigner.is_merging() {
                    Some(self.sessions(at).map_err(|message| Fail::Op(OpError { origin: None, message }))?)
                } else {
                    None
                };
                self.clear_all(at, *window, *state_window, set.as_mut());
                if let Some(s) = &set {
                    self.persist(at, s);
                }
            }
            if self.out.len() >= super::EMIT_EVERY || self.fn_due() {
                self.flush(out)?;
            }
        }
        t.steps = steps;
        Ok(())
    }
}
