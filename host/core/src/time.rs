//! Pure event-time state machines: watermark generation at sources and the
//! combination of per-input watermarks in tasks (after Flink's
//! `StatusWatermarkValve`). Time comes in as
//! arguments; nothing here reads a clock.

/// The watermark before any: nothing is known about event time yet.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The final watermark a bounded input emits at its end.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Flink's bounded-out-of-orderness strategy, emitted after every event
/// (punctuated): `watermark = max timestamp seen − delay − 1`.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    delay: i64,
    max_seen: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator that tolerates events up to `delay_ms` out of order.
    pub fn new(delay_ms: i64) -> Self {
        BoundedOutOfOrderness { delay: delay_ms.max(0), max_seen: None }
    }

    /// The highest timestamp seen (what a checkpoint keeps).
    pub fn max_seen(&self) -> Option<i64> {
        self.max_seen
    }

    /// Goes on from a checkpoint: `max_seen` as [`Self::max_seen`] gave it.
    pub fn resume(&mut self, max_seen: Option<i64>) {
        self.max_seen = max_seen;
    }

    /// Feeds one timestamp; returns the new watermark when it advanced.
    pub fn on_event(&mut self, timestamp: i64) -> Option<i64> {
        if self.max_seen.is_some_and(|m| m >= timestamp) {
            return None;
        }
        self.max_seen = Some(timestamp);
        Some(timestamp.saturating_sub(self.delay).saturating_sub(1))
    }
}

#[derive(Debug, Clone, Copy)]
struct Input {
    watermark: i64,
    idle: bool,
    /// Whether the input takes part in the minimum: active, and its
    /// watermark has caught up with the combined one since it was last
    /// idle.
    aligned: bool,
    ended: bool,
}

/// What a step of the [`WatermarkValve`] changed downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValveChange {
    /// The combined watermark advanced to this.
    pub watermark: Option<i64>,
    /// The task's own status changed: `Some(true)` when it went idle
    /// (every input idle), `Some(false)` when it became active again.
    pub idle: Option<bool>,
}

/// Combines the watermarks of a task's inputs by Flink's rules (its
/// `StatusWatermarkValve`):
///
/// - the combined watermark is the minimum over *aligned* inputs: active
///   ones whose watermark has reached the combined one; it never goes back;
/// - an input that goes idle leaves the minimum; one that becomes active
///   again rejoins only once its watermark catches up;
/// - when the last active input goes idle and it held the minimum, the
///   combined watermark advances to the highest watermark of any input,
///   and the task is idle towards its consumers until an input is active
///   again;
/// - an ended input stays at `MAX_WATERMARK` and active (Flink sends
///   `MAX_WATERMARK` at the end of input), so it never holds anything back
///   and a task with an ended input is never idle.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    inputs: Vec<Input>,
    current: i64,
    idle: bool,
}

impl WatermarkValve {
    /// A valve over `inputs` inputs, all active at `MIN_WATERMARK`.
    pub fn new(inputs: usize) -> Self {
        let input = Input { watermark: MIN_WATERMARK, idle: false, aligned: true, ended: false };
        WatermarkValve { inputs: vec![input; inputs], current: MIN_WATERMARK, idle: false }
    }

    /// A valve over `inputs` inputs going on from a checkpoint whose
    /// combined watermark was `current`: it emits nothing at or below it.
    pub fn resume(inputs: usize, current: i64) -> Self {
        WatermarkValve { current, ..WatermarkValve::new(inputs) }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Whether every input is idle (the task is idle towards its consumers).
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Whether every input has ended.
    pub fn all_ended(&self) -> bool {
        self.inputs.iter().all(|i| i.ended)
    }

    /// Input `input` said it is active again.
    fn activate(&mut self, input: usize) -> ValveChange {
        let current = self.current;
        let i = &mut self.inputs[input];
        let mut change = ValveChange::default();
        if i.idle {
            i.idle = false;
            i.aligned = i.watermark >= current;
            if self.idle {
                self.idle = false;
                change.idle = Some(false);
            }
        }
        change
    }

    /// Input `input` reached `watermark`. As in Flink, a watermark of an
    /// idle input is ignored: only an active-again message
    /// ([`WatermarkValve::set_idle`] with `false`) changes an input's
    /// status, not data.
    pub fn watermark(&mut self, input: usize, watermark: i64) -> ValveChange {
        let mut change = ValveChange::default();
        let current = self.current;
        let i = &mut self.inputs[input];
        if i.idle {
            return change;
        }
        if watermark > i.watermark {
            i.watermark = watermark;
            if !i.aligned && watermark >= current {
                i.aligned = true;
            }
            change.watermark = self.advance_to_min();
        }
        change
    }

    /// Input `input` went idle, or active again.
    pub fn set_idle(&mut self, input: usize, idle: bool) -> ValveChange {
        if !idle {
            return self.activate(input);
        }
        let i = &mut self.inputs[input];
        if i.idle || i.ended {
            return ValveChange::default();
        }
        i.idle = true;
        i.aligned = false;
        let held_min = i.watermark == self.current;
        let mut change = ValveChange::default();
        if self.inputs.iter().all(|i| i.idle) {
            if held_min {
                let max = self.inputs.iter().map(|i| i.watermark).max().unwrap_or(MIN_WATERMARK);
                change.watermark = self.advance(max);
            }
            self.idle = true;
            change.idle = Some(true);
        } else if held_min {
            change.watermark = self.advance_to_min();
        }
        change
    }

    /// Input `input` reached its end: it is at `MAX_WATERMARK` for good,
    /// and active (an idle source that ends still ends event time).
    pub fn end(&mut self, input: usize) -> ValveChange {
        let mut change = self.activate(input);
        change.watermark = self.watermark(input, MAX_WATERMARK).watermark;
        self.inputs[input].ended = true;
        change
    }

    fn advance_to_min(&mut self) -> Option<i64> {
        let min = self.inputs.iter().filter(|i| i.aligned).map(|i| i.watermark).min()?;
        self.advance(min)
    }

    fn advance(&mut self, to: i64) -> Option<i64> {
        (to > self.current).then(|| {
            self.current = to;
            to
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_follows_the_max_timestamp() {
        let mut g = BoundedOutOfOrderness::new(2000);
        assert_eq!(g.on_event(10_000), Some(7_999));
        assert_eq!(g.on_event(9_000), None);
        assert_eq!(g.on_event(10_000), None);
        assert_eq!(g.on_event(10_001), Some(8_000));
    }

    #[test]
    fn combined_watermark_is_the_minimum_of_inputs() {
        let mut c = WatermarkValve::new(2);
        assert_eq!(c.watermark(0, 100).watermark, None);
        assert_eq!(c.watermark(1, 50).watermark, Some(50));
        assert_eq!(c.watermark(1, 200).watermark, Some(100));
        assert_eq!(c.watermark(0, 90).watermark, None, "a watermark never goes back");
        assert_eq!(c.current(), 100);
    }

    #[test]
    fn a_resumed_input_rejoins_the_minimum_only_once_it_catches_up() {
        let mut c = WatermarkValve::new(2);
        c.watermark(0, 100);
        assert_eq!(c.set_idle(1, true).watermark, Some(100));
        assert_eq!(c.watermark(0, 150).watermark, Some(150));
        assert_eq!(c.watermark(1, 500), ValveChange::default(), "an idle input's watermark is ignored");
        c.set_idle(1, false);
        assert_eq!(c.watermark(1, 120).watermark, None, "a resumed input never moves the watermark back");
        assert_eq!(
            c.watermark(0, 300).watermark,
            Some(300),
            "nor holds it back before it caught up (Flink's alignment)"
        );
        assert_eq!(c.watermark(1, 310).watermark, None);
        assert_eq!(c.watermark(0, 400).watermark, Some(310), "once caught up it takes part in the minimum again");
    }

    #[test]
    fn all_idle_inputs_advance_to_the_highest_watermark() {
        let mut c = WatermarkValve::new(2);
        c.watermark(0, 10);
        c.watermark(1, 20);
        assert_eq!(c.set_idle(1, true), ValveChange::default(), "input 0 still holds the minimum");
        assert_eq!(c.set_idle(0, true), ValveChange { watermark: Some(20), idle: Some(true) });
        assert!(c.is_idle());
        assert_eq!(c.set_idle(0, false), ValveChange { watermark: None, idle: Some(false) });
        assert_eq!(c.watermark(0, 30).watermark, Some(30));
        assert!(!c.is_idle());
    }

    #[test]
    fn all_idle_does_not_flush_when_the_last_input_to_go_idle_was_behind() {
        let mut c = WatermarkValve::new(2);
        c.watermark(0, 10);
        c.watermark(1, 20);
        c.set_idle(0, true);
        assert_eq!(c.current(), 20);
        c.set_idle(0, false);
        c.watermark(0, 15);
        assert_eq!(c.set_idle(1, true).watermark, None, "input 1 held the minimum: input 0 is the only one left");
        assert_eq!(c.set_idle(0, true), ValveChange { watermark: None, idle: Some(true) }, "input 0 was behind");
    }

    #[test]
    fn an_ended_input_next_to_an_idle_one_ends_event_time() {
        let mut c = WatermarkValve::new(2);
        c.watermark(0, 10);
        c.watermark(1, 20);
        c.set_idle(1, true);
        assert_eq!(c.end(0).watermark, Some(MAX_WATERMARK), "as in Flink: the ended input is at +inf and active");
        assert!(!c.is_idle());
        assert!(!c.all_ended());
        c.end(1);
        assert!(c.all_ended());
    }
}
