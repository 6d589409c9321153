//! Operators as a task runs them: one call per batch, watermarks (marks)
//! carried through to the output at the right positions.

use std::collections::HashMap;

type KeyIndex<'a> = HashMap<&'a [u8], u32, foldhash::fast::FixedState>;
use weir_connectors::Sink;
use weir_core::{Batch, EventRef, Mark};
use weir_state::{KeyedStateBackend, TimerDomain};
use weir_wasm::{CallError, CallOutput, FiredTimer, KeyTable, MapInstance, ProcessInstance, ProcessOutput, SideEvent};

/// Timers fired per `on-timers` call.
const TIMERS_PER_CALL: usize = 1024;

/// The origin given to events emitted by timers.
pub(crate) const TIMER_ORIGIN: u64 = u64::MAX;

/// A failure inside an operator, before the task adds its name.
pub(crate) struct OpError {
    pub origin: Option<u64>,
    pub message: String,
}

impl OpError {
    fn call(e: CallError, origins: &[u64]) -> OpError {
        let origin = match &e {
            CallError::Operator { index, .. } => origins.get(*index as usize).copied(),
            _ => None,
        };
        OpError { origin, message: e.to_string() }
    }
}

/// A stage of a chain.
pub(crate) trait Operator: Send {
    /// Processes a batch; returns the main output (with marks) and pushes
    /// side-output events to `side`.
    fn process(&mut self, input: Batch, side: &mut Vec<SideEvent>) -> Result<Batch, OpError>;

    /// Fires processing-time timers due at `now` (epoch ms).
    fn on_processing_time(&mut self, _now: i64, _side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        Ok(Batch::new())
    }

    /// End of input: flush.
    fn finish(&mut self) -> Result<(), OpError> {
        Ok(())
    }
}

/// Output marks at the positions the operator's `input_ends` give.
fn carry_marks(marks: &[Mark], input_ends: &[u32], base: u32, out: &mut Batch) {
    for m in marks {
        let after = if m.after == 0 { 0 } else { input_ends[m.after as usize - 1] };
        push_mark_at(out, base + after, m.watermark);
    }
}

fn push_mark_at(out: &mut Batch, after: u32, watermark: i64) {
    match out.marks.last_mut() {
        Some(last) if last.watermark >= watermark => {}
        Some(last) if last.after == after => last.watermark = watermark,
        _ => out.marks.push(Mark { after, watermark }),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A Wasm `map` operator.
pub(crate) struct MapOp {
    pub instance: MapInstance,
}

impl Operator for MapOp {
    fn process(&mut self, input: Batch, side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        if input.is_empty() {
            return Ok(input);
        }
        let CallOutput { mut events, input_ends, side: s } =
            self.instance.map_batch(&input).map_err(|e| OpError::call(e, &input.origins))?;
        carry_marks(&input.marks, &input_ends, 0, &mut events);
        side.extend(s);
        Ok(events)
    }
}

/// A native map function (benchmarks compare Wasm operators with these).
pub type NativeMapFn = Box<dyn FnMut(EventRef<'_>, &mut Batch) + Send>;

/// A native keyed function: event, its subtask's state backend, output.
pub type NativeProcessFn = Box<dyn FnMut(EventRef<'_>, &mut dyn KeyedStateBackend, &mut Batch) + Send>;

pub(crate) struct NativeMapOp {
    pub f: NativeMapFn,
    pub ends: Vec<u32>,
}

impl Operator for NativeMapOp {
    fn process(&mut self, input: Batch, _side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        let mut out = Batch::with_capacity(input.len(), input.bytes());
        self.ends.clear();
        for i in 0..input.len() {
            (self.f)(input.event(i), &mut out);
            self.ends.push(out.len() as u32);
        }
        carry_marks(&input.marks, &self.ends, 0, &mut out);
        Ok(out)
    }
}

pub(crate) struct NativeProcessOp {
    pub f: NativeProcessFn,
    pub backend: Box<dyn KeyedStateBackend>,
    pub ends: Vec<u32>,
}

impl Operator for NativeProcessOp {
    fn process(&mut self, input: Batch, _side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        let mut out = Batch::with_capacity(input.len(), input.len() * 16);
        self.ends.clear();
        for i in 0..input.len() {
            (self.f)(input.event(i), self.backend.as_mut(), &mut out);
            self.ends.push(out.len() as u32);
        }
        carry_marks(&input.marks, &self.ends, 0, &mut out);
        Ok(out)
    }
}

/// A sink at the end of a chain.
pub(crate) struct SinkOp {
    /// `None`: the discarding sink.
    pub sink: Option<Box<dyn Sink>>,
}

impl Operator for SinkOp {
    fn process(&mut self, input: Batch, _side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        if let Some(s) = &mut self.sink {
            s.write(&input).map_err(|e| OpError { origin: None, message: e.message })?;
        }
        Ok(Batch::new())
    }

    fn finish(&mut self) -> Result<(), OpError> {
        match &mut self.sink {
            Some(s) => s.finish().map_err(|e| OpError { origin: None, message: e.message }),
            None => Ok(()),
        }
    }
}

/// A Wasm keyed `process` operator: builds each call's key table from the
/// backend, applies the returned writes and timer changes, and fires
/// timers in timestamp order when watermarks pass them.
pub(crate) struct ProcessOp {
    pub instance: ProcessInstance,
    pub value_states: usize,
    pub watermark: i64,
    pub table: KeyTable,
    pub slots: Vec<u32>,
    pub segment: Batch,
    pub fired: Vec<(i64, Vec<u8>)>,
}

impl ProcessOp {
    pub fn new(instance: ProcessInstance) -> Self {
        let value_states = instance.states().value.len();
        ProcessOp {
            instance,
            value_states,
            watermark: i64::MIN,
            table: KeyTable::default(),
            slots: Vec::new(),
            segment: Batch::new(),
            fired: Vec::new(),
        }
    }

    /// Adds `key` to the table (with its value state) if new; its slot.
    fn slot_of(table: &mut KeyTable, backend: &dyn KeyedStateBackend, states: usize, key: &[u8]) -> u32 {
        table.keys.extend_from_slice(key);
        table.key_ends.push(table.keys.len() as u32);
        for s in 0..states {
            let before = table.values.len();
            let len = if backend.value_get(s as u32, key, &mut table.values) {
                (table.values.len() - before) as u32
            } else {
                u32::MAX
            };
            table.value_lens.push(len);
        }
        (table.key_ends.len() - 1) as u32
    }

    /// Applies what a call returned to the backend and appends its events.
    fn apply(&mut self, r: ProcessOutput, out: &mut Batch, side: &mut Vec<SideEvent>) -> Vec<u32> {
        let states = self.value_states.max(1) as u32;
        let backend = self.instance.backend();
        let mut at = 0usize;
        for (&cell, &len) in r.write_cells.iter().zip(&r.write_lens) {
            let key = self.table.key((cell / states) as usize);
            if len == u32::MAX {
                backend.value_clear(cell % states, key);
            } else {
                backend.value_put(cell % states, key, &r.write_data[at..at + len as usize]);
                at += len as usize;
            }
        }
        for t in &r.timers {
            let key = self.table.key(t.key_slot as usize);
            let domain = if t.event_time { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
            if t.delete {
                backend.timer_delete(domain, key, t.timestamp);
            } else {
                backend.timer_register(domain, key, t.timestamp);
            }
        }
        side.extend(r.output.side);
        let events = r.output.events;
        if out.is_void() {
            *out = events;
        } else {
            for i in 0..events.len() {
                out.push_from(&events, i);
            }
        }
        r.output.input_ends
    }

    /// Processes events `a..b` of `input`, with `inner` marks (relative to
    /// `a`) at which no backend timer is due.
    fn run_segment(
        &mut self,
        input: &Batch,
        a: usize,
        b: usize,
        inner: &[Mark],
        out: &mut Batch,
        side: &mut Vec<SideEvent>,
    ) -> Result<(), OpError> {
        if a == b {
            for m in inner {
                self.watermark = self.watermark.max(m.watermark);
                out.mark(self.watermark);
            }
            return Ok(());
        }
        let whole = a == 0 && b == input.len();
        if !whole {
            self.segment.clear();
            for i in a..b {
                self.segment.push_from(input, i);
            }
        }
        let seg = if whole { input } else { &self.segment };
        let mut start_wm = self.watermark;
        for m in inner.iter().filter(|m| m.after == 0) {
            start_wm = start_wm.max(m.watermark);
        }
        self.table.clear();
        self.slots.clear();
        {
            let backend = self.instance.backend();
            let mut index = KeyIndex::with_capacity_and_hasher(seg.len().min(4096), Default::default());
            for i in 0..seg.len() {
                let key = seg.key(i);
                let slot = match index.get(key) {
                    Some(&s) => s,
                    None => {
                        let s = Self::slot_of(&mut self.table, backend, self.value_states, key);
                        index.insert(key, s);
                        s
                    }
                };
                self.slots.push(slot);
            }
        }
        let marks: Vec<Mark> = inner.iter().filter(|m| m.after > 0).copied().collect();
        let r = self
            .instance
            .process_batch(seg, &self.slots, &marks, &self.table, start_wm, now_ms())
            .map_err(|e| OpError::call(e, &seg.origins))?;
        let base = out.len() as u32;
        let ends = self.apply(r, out, side);
        for m in inner {
            let after = if m.after == 0 { 0 } else { ends[m.after as usize - 1] };
            push_mark_at(out, base + after, m.watermark);
            self.watermark = self.watermark.max(m.watermark);
        }
        Ok(())
    }

    /// Fires every timer of `domain` due at `upto`, earliest first, in
    /// calls of up to 1024 timers (timers they register fire too if due).
    fn fire(
        &mut self,
        domain: TimerDomain,
        upto: i64,
        out: &mut Batch,
        side: &mut Vec<SideEvent>,
    ) -> Result<(), OpError> {
        loop {
            self.fired.clear();
            self.instance.backend().pop_timers(domain, upto, TIMERS_PER_CALL, &mut self.fired);
            if self.fired.is_empty() {
                return Ok(());
            }
            self.table.clear();
            let mut timers = Vec::with_capacity(self.fired.len());
            {
                let backend = self.instance.backend();
                let mut index = KeyIndex::with_capacity_and_hasher(self.fired.len(), Default::default());
                for (ts, key) in &self.fired {
                    let slot = match index.get(key.as_slice()) {
                        Some(&s) => s,
                        None => {
                            let s = Self::slot_of(&mut self.table, backend, self.value_states, key);
                            index.insert(key.as_slice(), s);
                            s
                        }
                    };
                    timers.push(FiredTimer {
                        key_slot: slot,
                        timestamp: *ts,
                        event_time: domain == TimerDomain::EventTime,
                    });
                }
            }
            let origins = vec![TIMER_ORIGIN; timers.len()];
            let r = self
                .instance
                .on_timers(&timers, &self.table, self.watermark, now_ms(), &origins)
                .map_err(|e| OpError::call(e, &origins))?;
            self.apply(r, out, side);
        }
    }
}

impl Operator for ProcessOp {
    fn process(&mut self, mut input: Batch, side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        let n = input.len();
        let marks = std::mem::take(&mut input.marks);
        let mut out = Batch::new();
        let mut start = 0usize;
        let mut inner: Vec<Mark> = Vec::new();
        for m in &marks {
            let due = self.instance.backend().next_timer(TimerDomain::EventTime).is_some_and(|t| t <= m.watermark);
            if !due {
                inner.push(Mark { after: m.after - start as u32, watermark: m.watermark });
                continue;
            }
            self.run_segment(&input, start, m.after as usize, &inner, &mut out, side)?;
            inner.clear();
            self.watermark = self.watermark.max(m.watermark);
            self.fire(TimerDomain::EventTime, self.watermark, &mut out, side)?;
            out.mark(self.watermark);
            start = m.after as usize;
        }
        if start < n || !inner.is_empty() {
            self.run_segment(&input, start, n, &inner, &mut out, side)?;
        }
        Ok(out)
    }

    fn on_processing_time(&mut self, now: i64, side: &mut Vec<SideEvent>) -> Result<Batch, OpError> {
        let mut out = Batch::new();
        if self.instance.backend().next_timer(TimerDomain::ProcessingTime).is_some_and(|t| t <= now) {
            self.fire(TimerDomain::ProcessingTime, now, &mut out, side)?;
        }
        Ok(out)
    }
}
