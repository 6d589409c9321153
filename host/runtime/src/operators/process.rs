//! The Wasm keyed `process` operator: builds each call's key table from the
//! backend, applies the returned writes and timer changes, and fires
//! timers in timestamp order when watermarks pass them. Every call's
//! output is emitted as soon as the call returns.

use super::{Emit, Fail, OpError, Operator, TIMER_ORIGIN};
use crate::cutter::{Cut, Cutter};
use std::collections::HashMap;
use weir_core::{Batch, Mark};
use weir_state::{Clock, KeyedStateBackend, Scope, Timer, TimerDomain};
use weir_wasm::{FiredTimer, KeyTable, Limits, ProcessInstance, ProcessOutput};

/// Slots of a batch call by key (a process function's namespace is
/// always empty, so the key alone is hashed: one hasher call per event).
type KeyIndex<'a> = HashMap<&'a [u8], u32, foldhash::fast::FixedState>;
/// Slots of a timer call by key and namespace.
type TimerIndex<'a> = HashMap<(&'a [u8], &'a [u8]), u32, foldhash::fast::FixedState>;

/// Timers fired per `on-timers` call.
const TIMERS_PER_CALL: usize = 1024;

pub(crate) struct ProcessOp {
    instance: ProcessInstance,
    limits: Limits,
    value_states: usize,
    watermark: i64,
    table: KeyTable,
    slots: Vec<u32>,
    segment: Batch,
    fired: Vec<Timer>,
    timers: Vec<FiredTimer>,
    clock: Clock,
    /// When the next sweep of expired state is due (processing time).
    next_expiry: i64,
    /// The namespace of every event's state and timers (empty for a
    /// process function; a window operator sets the window).
    namespace: Vec<u8>,
    increments: super::Increments,
}

impl ProcessOp {
    pub fn new(instance: ProcessInstance, limits: Limits, clock: Clock) -> Self {
        let value_states = instance.states().value.len();
        ProcessOp {
            instance,
            limits,
            value_states,
            watermark: i64::MIN,
            table: KeyTable::default(),
            slots: Vec::new(),
            segment: Batch::new(),
            fired: Vec::new(),
            timers: Vec::new(),
            clock,
            next_expiry: i64::MIN,
            namespace: Vec::new(),
            increments: super::Increments::default(),
        }
    }

    /// Adds a slot for `at` to the table, with its value state; its number.
    fn slot_of(table: &mut KeyTable, backend: &mut dyn KeyedStateBackend, states: usize, at: Scope<'_>) -> u32 {
        let slot = table.push_slot(at);
        for s in 0..states {
            let before = table.values.len();
            let len = if backend.value_get(s as u32, at, &mut table.values) {
                (table.values.len() - before) as u32
            } else {
                u32::MAX
            };
            table.value_lens.push(len);
        }
        slot
    }

    /// Applies what a call returned to the backend; sends its side output
    /// on and returns its main output and input ends.
    fn apply(&mut self, r: ProcessOutput, out: &mut dyn Emit) -> Result<(Batch, Vec<u32>), Fail> {
        let states = self.value_states.max(1) as u32;
        let backend = self.instance.backend();
        let mut at = 0usize;
        for (&cell, &len) in r.write_cells.iter().zip(&r.write_lens) {
            let scope = self.table.scope((cell / states) as usize);
            if len == u32::MAX {
                backend.value_clear(cell % states, scope);
            } else {
                backend.value_put(cell % states, scope, &r.write_data[at..at + len as usize]);
                at += len as usize;
            }
        }
        for t in &r.timers {
            let scope = self.table.scope(t.key_slot as usize);
            let domain = if t.event_time { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
            if t.delete {
                backend.timer_delete(domain, scope, t.timestamp);
            } else {
                backend.timer_register(domain, scope, t.timestamp);
            }
        }
        // The quota bounds the timers in memory: the lsm backend keeps
        // the rest on disk.
        if backend.timers_in_memory() > self.limits.pending_timers {
            return Err(Fail::Op(OpError {
                origin: None,
                message: format!(
                    "operator exceeded a quota: it holds {} timers in memory, over the quota of {} (`pending_timers`); delete timers it no longer needs, or use the lsm state backend, which keeps timers on disk",
                    backend.timers_in_memory(),
                    self.limits.pending_timers
                ),
            }));
        }
        out.side(r.output.side)?;
        Ok((r.output.events, r.output.input_ends))
    }

    /// Processes events `a..b` of `input` in one call, with `inner` marks
    /// (relative to `a`) at which no backend timer is due, and emits the
    /// output. A call whose key table would pass `key_table_bytes` stops
    /// early (one key always fits): returns the end it reached, having
    /// taken the marks up to there.
    fn run_segment(
        &mut self,
        input: &Batch,
        a: usize,
        b: usize,
        inner: &[Mark],
        out: &mut dyn Emit,
    ) -> Result<usize, Fail> {
        if a == b {
            if let Some(w) = inner.iter().map(|m| m.watermark).max() {
                self.watermark = self.watermark.max(w);
                out.emit(Batch::watermark(self.watermark))?;
            }
            return Ok(b);
        }
        self.table.clear();
        self.slots.clear();
        let end = {
            let backend = self.instance.backend();
            let mut index = KeyIndex::with_capacity_and_hasher((b - a).min(4096), Default::default());
            let mut i = a;
            while i < b {
                let key = input.key(i);
                let slot = match index.get(key) {
                    Some(&s) => s,
                    None => {
                        let at = Scope { group: input.key_groups()[i], key, namespace: &self.namespace };
                        let s = Self::slot_of(&mut self.table, backend, self.value_states, at);
                        index.insert(key, s);
                        s
                    }
                };
                self.slots.push(slot);
                i += 1;
                if self.table.bytes() > self.limits.key_table_bytes {
                    break;
                }
            }
            i
        };
        let len = (end - a) as u32;
        let now: Vec<Mark> = inner.iter().filter(|m| m.after <= len).copied().collect();
        let whole = a == 0 && end == input.len();
        if !whole {
            self.segment.clear();
            for i in a..end {
                self.segment.push_from(input, i);
            }
        }
        let seg = if whole { input } else { &self.segment };
        let mut start_wm = self.watermark;
        for m in now.iter().filter(|m| m.after == 0) {
            start_wm = start_wm.max(m.watermark);
        }
        let marks: Vec<Mark> = now.iter().filter(|m| m.after > 0).copied().collect();
        let r = self
            .instance
            .process_batch(seg, &self.slots, &marks, &self.table, start_wm, self.clock.now())
            .map_err(|e| OpError::call(e, seg.origins()))?;
        let (mut events, ends) = self.apply(r, out)?;
        self.check_state()?;
        super::carry_marks(&now, &ends, 0, &mut events);
        for m in &now {
            self.watermark = self.watermark.max(m.watermark);
        }
        out.emit(events)?;
        Ok(end)
    }

    /// Fires every timer of `domain` due at `upto`, earliest first, in
    /// calls of up to 1024 timers (timers they register fire too if due),
    /// emitting each call's output as it returns.
    fn fire(&mut self, domain: TimerDomain, upto: i64, out: &mut dyn Emit) -> Result<(), Fail> {
        let pending = self.instance.backend().timers_pending();
        let budget = pending.saturating_add(self.limits.timers_per_firing);
        let mut fired = 0usize;
        loop {
            self.fired.clear();
            self.instance.backend().pop_timers(domain, upto, TIMERS_PER_CALL, &mut self.fired);
            if self.fired.is_empty() {
                return Ok(());
            }
            fired += self.fired.len();
            if fired > budget {
                return Err(Fail::Op(OpError {
                    origin: None,
                    message: format!(
                        "operator exceeded a quota: {fired} timers fired at {} {upto} where {pending} were pending; it keeps registering timers that time has already passed (`timers_per_firing`)",
                        if domain == TimerDomain::EventTime { "watermark" } else { "processing time" }
                    ),
                }));
            }
            self.table.clear();
            self.timers.clear();
            {
                let backend = self.instance.backend();
                if self.value_states > 0 && self.fired.len() > 1 {
                    let at: Vec<Scope<'_>> = self
                        .fired
                        .iter()
                        .map(|t| Scope { group: t.group, key: &t.key, namespace: &t.namespace })
                        .collect();
                    for s in 0..self.value_states {
                        backend.prefetch_values(s as u32, &at);
                    }
                }
                let mut index = TimerIndex::with_capacity_and_hasher(self.fired.len(), Default::default());
                for t in &self.fired {
                    let slot = match index.get(&(t.key.as_slice(), t.namespace.as_slice())) {
                        Some(&s) => s,
                        None => {
                            let at = Scope { group: t.group, key: &t.key, namespace: &t.namespace };
                            let s = Self::slot_of(&mut self.table, backend, self.value_states, at);
                            index.insert((&t.key, &t.namespace), s);
                            s
                        }
                    };
                    self.timers.push(FiredTimer {
                        key_slot: slot,
                        timestamp: t.timestamp,
                        event_time: domain == TimerDomain::EventTime,
                    });
                }
            }
            let origins = vec![TIMER_ORIGIN; self.timers.len()];
            let r = self
                .instance
                .on_timers(&self.timers, &self.table, self.watermark, self.clock.now(), &origins)
                .map_err(|e| OpError::call(e, &origins))?;
            let (events, _) = self.apply(r, out)?;
            self.check_state()?;
            out.emit(events)?;
        }
    }

    /// Sets the namespace the next batches' events are processed in.
    pub fn set_namespace(&mut self, namespace: &[u8]) {
        self.namespace.clear();
        self.namespace.extend_from_slice(namespace);
    }

    /// The subtask's state backend.
    pub fn backend(&mut self) -> &mut dyn KeyedStateBackend {
        self.instance.backend()
    }

    /// Fails the job when the state backend failed during the call (its
    /// reads may have missed state), before the call's output leaves.
    fn check_state(&mut self) -> Result<(), Fail> {
        self.instance.backend().check().map_err(|e| Fail::Op(OpError { origin: None, message: e.to_string() }))
    }
}

impl Operator for ProcessOp {
    fn open(&mut self, groups: &super::Groups, restored: &[super::Chain<'_>]) -> Result<(), String> {
        let names = self.instance.states().clone();
        super::restore_keyed(self.instance.backend(), groups, restored, Some(&names))
    }

    fn restore_lists(&mut self, lists: &[weir_wasm::OperatorList], restored: bool) -> Result<(), String> {
        self.instance.restore_state(lists, restored).map_err(|e| e.to_string())
    }

    fn keeps_lists(&self) -> bool {
        self.instance.has_operator_state()
    }

    fn snapshot_lists(&mut self, checkpoint: u64) -> Result<Vec<weir_wasm::OperatorList>, OpError> {
        self.instance.snapshot_state(checkpoint).map_err(|e| OpError { origin: None, message: e.to_string() })
    }

    fn snapshot(
        &mut self,
        snap: super::Snap,
        groups: &super::Groups,
        out: &mut crate::checkpoint::Writer,
    ) -> Result<super::Shape, OpError> {
        let names = self.instance.states().clone();
        let inc = (snap, &mut self.increments);
        super::snapshot_keyed(self.instance.backend(), groups, Some(&names), inc, out)
    }

    fn rebase(&mut self, checkpoint: u64) {
        self.increments.rebase(checkpoint, self.instance.backend());
    }

    /// Runs the batch in the calls the [`Cutter`] plans: they end where a
    /// held timer is due at a watermark (the host fires those between
    /// calls) or where the key table is full.
    fn process(&mut self, mut input: Batch, out: &mut dyn Emit) -> Result<(), Fail> {
        let mut cutter = Cutter::new(input.len(), input.take_marks());
        loop {
            match cutter.next(self.instance.backend().next_timer(TimerDomain::EventTime)) {
                Cut::Done => return Ok(()),
                Cut::Call { from, to, inner } => {
                    let reached = self.run_segment(&input, from, to, &inner, out)?;
                    cutter.reached(reached);
                }
                Cut::Fire(watermark) => {
                    self.watermark = self.watermark.max(watermark);
                    self.fire(TimerDomain::EventTime, self.watermark, out)?;
                    out.emit(Batch::watermark(self.watermark))?;
                }
            }
        }
    }

    /// Fires due processing-time timers, and sweeps expired state out of
    /// memory once per TTL (between once a second and once a minute).
    fn on_processing_time(&mut self, now: i64, out: &mut dyn Emit) -> Result<(), Fail> {
        if now >= self.next_expiry {
            let every = self.instance.backend().expire().map_or(i64::MAX, |ttl| ttl.clamp(1_000, 60_000) as i64);
            self.next_expiry = now.saturating_add(every);
        }
        if self.instance.backend().next_timer(TimerDomain::ProcessingTime).is_some_and(|t| t <= now) {
            self.fire(TimerDomain::ProcessingTime, now, out)?;
        }
        Ok(())
    }
}
