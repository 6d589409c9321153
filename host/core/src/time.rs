//! Pure event-time state machines: watermark generation at sources and the
//! combination of per-input watermarks in tasks. Time comes in as
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
    ended: bool,
}

/// Combines the watermarks of a task's inputs: the minimum over inputs
/// that are neither idle nor ended. When every input has ended it is
/// `MAX_WATERMARK`; when the rest are all idle it stays where it is (an
/// idle input may still send data).
#[derive(Debug, Clone)]
pub struct WatermarkCombiner {
    inputs: Vec<Input>,
    current: i64,
}

impl WatermarkCombiner {
    /// A combiner over `inputs` inputs, all at `MIN_WATERMARK`.
    pub fn new(inputs: usize) -> Self {
        WatermarkCombiner {
            inputs: vec![Input { watermark: MIN_WATERMARK, idle: false, ended: false }; inputs],
            current: MIN_WATERMARK,
        }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Input `input` reached `watermark` (it is active again if it was
    /// idle). Returns the new combined watermark when it advanced.
    pub fn update(&mut self, input: usize, watermark: i64) -> Option<i64> {
        let i = &mut self.inputs[input];
        i.idle = false;
        i.watermark = i.watermark.max(watermark);
        self.recompute()
    }

    /// Marks input `input` idle (or active again). Returns the new
    /// combined watermark when excluding it advanced it.
    pub fn set_idle(&mut self, input: usize, idle: bool) -> Option<i64> {
        self.inputs[input].idle = idle;
        self.recompute()
    }

    /// Input `input` reached its end. Returns the new combined watermark
    /// when it advanced.
    pub fn end(&mut self, input: usize) -> Option<i64> {
        let i = &mut self.inputs[input];
        i.ended = true;
        i.idle = false;
        self.recompute()
    }

    /// Whether every input that has not ended is idle, and one has not (then
    /// this task is idle towards its own consumers, as Flink's watermark
    /// status).
    pub fn all_idle(&self) -> bool {
        let mut open = self.inputs.iter().filter(|i| !i.ended).peekable();
        open.peek().is_some() && open.all(|i| i.idle)
    }

    fn recompute(&mut self) -> Option<i64> {
        let min = if self.inputs.iter().all(|i| i.ended) {
            MAX_WATERMARK
        } else {
            self.inputs.iter().filter(|i| !i.idle && !i.ended).map(|i| i.watermark).min()?
        };
        if min > self.current {
            self.current = min;
            Some(min)
        } else {
            None
        }
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
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.update(0, 100), None);
        assert_eq!(c.update(1, 50), Some(50));
        assert_eq!(c.update(1, 200), Some(100));
        assert_eq!(c.update(0, 90), None, "a watermark never goes back");
        assert_eq!(c.current(), 100);
    }

    #[test]
    fn idle_inputs_are_excluded_until_they_resume() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 100);
        assert_eq!(c.set_idle(1, true), Some(100));
        assert_eq!(c.update(0, 150), Some(150));
        assert_eq!(c.update(1, 120), None, "a resumed input never moves the watermark back");
        assert_eq!(c.update(0, 300), None, "but it holds it until it catches up");
        assert_eq!(c.update(1, 200), Some(200));
    }

    #[test]
    fn all_idle_inputs_hold_the_watermark() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 10);
        c.update(1, 20);
        c.set_idle(0, true);
        assert_eq!(c.current(), 20);
        assert_eq!(c.set_idle(1, true), None);
        assert_eq!(c.current(), 20);
        assert!(c.all_idle());
        c.update(0, 30);
        assert!(!c.all_idle(), "a watermark makes its input active again");
    }

    #[test]
    fn an_ended_input_does_not_push_past_an_idle_one() {
        let mut c = WatermarkCombiner::new(2);
        c.update(0, 10);
        c.update(1, 20);
        c.set_idle(1, true);
        assert_eq!(c.end(0), None, "input 1 is idle, not ended: hold");
        assert_eq!(c.current(), 10);
        assert!(c.all_idle());
        assert_eq!(c.update(1, 50), Some(50));
        assert_eq!(c.end(1), Some(MAX_WATERMARK));
    }
}
