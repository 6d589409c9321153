//! Window triggers as one Wasm component (the `trigger` world): two of
//! Flink's built-ins, to show a custom trigger gives the same results, and
//! one Flink composes from two (`ProcessingTimeoutTrigger.of(CountTrigger)`).
//! Config:
//!
//! - `{"type": "event-time"}`: fires when the watermark passes the
//!   window's end (Flink's `EventTimeTrigger`), and on each late element
//!   within the allowed lateness;
//! - `{"type": "count", "count": 3}`: fires on every `count`-th element
//!   (Flink's `CountTrigger`);
//! - `{"type": "count-timeout", "count": 3, "timeout_ms": 1000}`: fires on
//!   the `count`-th element, or `timeout_ms` of processing time after the
//!   first element of the window, whichever comes first, then counts
//!   again; as Flink's `ProcessingTimeoutTrigger`, any other timer of the
//!   window (its end, on time windows) fires it too;
//!
//! each with `"purge": true` to purge the window whenever it fires (Flink's
//! `PurgingTrigger`).
//!
//! State per key and window: the count (i64 LE) for `count`; the count
//! and the timeout's deadline (i64 LE each, the deadline `i64::MIN` when
//! none) for `count-timeout`; none for `event-time`.
use serde_json::Value;
use weir_sdk::{Error, MergedWindow, Result, Trigger, TriggerContext, TriggerResult};

#[derive(Default)]
pub struct Triggers {
    rule: Rule,
    purge: bool,
}

#[derive(Default, Clone, Copy)]
enum Rule {
    #[default]
    Unset,
    EventTime,
    Count(i64),
    CountTimeout {
        count: i64,
        timeout_ms: i64,
    },
}

/// The count-timeout state: elements so far and the deadline.
fn count_and_deadline(ctx: &TriggerContext<'_>) -> (i64, i64) {
    match ctx.state() {
        Some(s) if s.len() == 16 => (
            i64::from_le_bytes(s[..8].try_into().expect("eight bytes")),
            i64::from_le_bytes(s[8..].try_into().expect("eight bytes")),
        ),
        _ => (0, i64::MIN),
    }
}

fn set_count_and_deadline(ctx: &mut TriggerContext<'_>, count: i64, deadline: i64) {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&count.to_le_bytes());
    s[8..].copy_from_slice(&deadline.to_le_bytes());
    ctx.set_state(&s);
}

impl Triggers {
    fn purging(&self, r: TriggerResult) -> TriggerResult {
        if self.purge && r.is_fire() { TriggerResult::FireAndPurge } else { r }
    }
}

impl Trigger for Triggers {
    fn open(&mut self, config: &Value) -> Result<()> {
        let bad = |what: &str| {
            Error::new(format!(
                "triggers: {what}; config is {{\"type\": \"event-time\"}}, {{\"type\": \"count\", \"count\": 3}} or {{\"type\": \"count-timeout\", \"count\": 3, \"timeout_ms\": 1000}}, with \"purge\": true to purge on firing"
            ))
        };
        let positive = |name: &str| {
            config
                .get(name)
                .ok_or_else(|| bad(&format!("`{name}` is missing")))?
                .as_i64()
                .filter(|c| *c > 0)
                .ok_or_else(|| bad(&format!("`{name}` is a positive integer")))
        };
        self.rule = match config.get("type").and_then(Value::as_str) {
            Some("event-time") => Rule::EventTime,
            Some("count") => Rule::Count(positive("count")?),
            Some("count-timeout") => {
                Rule::CountTimeout { count: positive("count")?, timeout_ms: positive("timeout_ms")? }
            }
            _ => return Err(bad("`type` is event-time, count or count-timeout")),
        };
        self.purge = config.get("purge").and_then(Value::as_bool).unwrap_or(false);
        Ok(())
    }

    fn on_element(&mut self, _timestamp: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let r = match self.rule {
            Rule::Unset => TriggerResult::Continue,
            Rule::EventTime => {
                let end = ctx.window().max_timestamp();
                if end <= ctx.current_watermark() {
                    TriggerResult::Fire
                } else {
                    ctx.register_event_time_timer(end);
                    TriggerResult::Continue
                }
            }
            Rule::Count(max) => {
                let n = ctx.state_i64().unwrap_or(0) + 1;
                if n >= max {
                    ctx.clear_state();
                    TriggerResult::Fire
                } else {
                    ctx.set_state_i64(n);
                    TriggerResult::Continue
                }
            }
            Rule::CountTimeout { count, timeout_ms } => {
                let (n, deadline) = count_and_deadline(ctx);
                if n + 1 >= count {
                    self.clear(ctx)?;
                    TriggerResult::Fire
                } else if deadline == i64::MIN {
                    let deadline = ctx.current_processing_time().saturating_add(timeout_ms);
                    ctx.register_processing_time_timer(deadline);
                    set_count_and_deadline(ctx, n + 1, deadline);
                    TriggerResult::Continue
                } else {
                    set_count_and_deadline(ctx, n + 1, deadline);
                    TriggerResult::Continue
                }
            }
        };
        Ok(self.purging(r))
    }

    fn on_event_time(&mut self, time: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let r = match self.rule {
            Rule::EventTime if time == ctx.window().max_timestamp() => TriggerResult::Fire,
            // As Flink's ProcessingTimeoutTrigger: any timer of the window
            // (its timeout, or the window's end) fires what it holds.
            Rule::CountTimeout { .. } => {
                self.clear(ctx)?;
                TriggerResult::Fire
            }
            _ => TriggerResult::Continue,
        };
        Ok(self.purging(r))
    }

    fn on_processing_time(&mut self, _time: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let r = match self.rule {
            Rule::CountTimeout { .. } => {
                self.clear(ctx)?;
                TriggerResult::Fire
            }
            _ => TriggerResult::Continue,
        };
        Ok(self.purging(r))
    }

    fn on_merge(&mut self, merged: &[MergedWindow<'_>], ctx: &mut TriggerContext<'_>) -> Result<()> {
        match self.rule {
            Rule::Unset => Ok(()),
            Rule::EventTime => {
                let end = ctx.window().max_timestamp();
                if end > ctx.current_watermark() {
                    ctx.register_event_time_timer(end);
                }
                Ok(())
            }
            Rule::Count(_) => {
                let mut sum = ctx.state_i64();
                for m in merged {
                    if let Some(c) = m.state.and_then(|s| s.try_into().ok()).map(i64::from_le_bytes) {
                        sum = Some(sum.unwrap_or(0) + c);
                    }
                }
                if let Some(sum) = sum {
                    ctx.set_state_i64(sum);
                }
                Ok(())
            }
            Rule::CountTimeout { .. } => Err(Error::new(
                "the count-timeout trigger does not merge windows: use it with tumbling, sliding, global or count windows",
            )),
        }
    }

    fn clear(&mut self, ctx: &mut TriggerContext<'_>) -> Result<()> {
        match self.rule {
            Rule::EventTime => ctx.delete_event_time_timer(ctx.window().max_timestamp()),
            Rule::CountTimeout { .. } => {
                let (_, deadline) = count_and_deadline(ctx);
                if deadline != i64::MIN {
                    ctx.delete_processing_time_timer(deadline);
                }
            }
            Rule::Unset | Rule::Count(_) => {}
        }
        ctx.clear_state();
        Ok(())
    }
}

weir_sdk::export_trigger!(Triggers);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::Window;
    use weir_sdk::testing::TriggerHarness;

    const W: Window = Window { start: 0, end: 1000 };

    fn harness(config: Value) -> TriggerHarness<Triggers> {
        TriggerHarness::with_config(Triggers::default(), config).unwrap()
    }

    #[test]
    fn the_count_trigger_fires_every_nth_element_and_merges_counts() {
        let mut h = harness(json!({"type": "count", "count": 3}));
        let got: Vec<TriggerResult> = (0..6).map(|t| h.element(b"k", W, t).unwrap()).collect();
        use TriggerResult::{Continue as C, Fire as F};
        assert_eq!(got, [C, C, F, C, C, F]);
        let other = Window { start: 1000, end: 2000 };
        h.element(b"k", W, 1).unwrap();
        h.element(b"k", other, 1).unwrap();
        h.merge(b"k", W, &[other]).unwrap();
        assert_eq!(h.state(b"k", W), Some(&2i64.to_le_bytes()[..]));
        assert_eq!(h.state(b"k", other), None, "merged windows are cleared");
        assert_eq!(h.element(b"k", W, 1).unwrap(), F);
    }

    #[test]
    fn the_event_time_trigger_fires_at_the_windows_end_and_on_late_elements() {
        let mut h = harness(json!({"type": "event-time"}));
        assert_eq!(h.element(b"k", W, 5).unwrap(), TriggerResult::Continue);
        assert_eq!(h.timers(b"k", W), [(true, 999)]);
        assert_eq!(h.event_time(b"k", W, 998).unwrap(), TriggerResult::Continue);
        assert_eq!(h.event_time(b"k", W, 999).unwrap(), TriggerResult::Fire);
        h.set_watermark(1500);
        assert_eq!(h.element(b"k", W, 7).unwrap(), TriggerResult::Fire, "late, within the lateness");
        h.clear(b"k", W).unwrap();
        assert!(h.timers(b"k", W).is_empty());
    }

    #[test]
    fn count_timeout_fires_on_the_count_or_after_the_timeout() {
        let mut h = harness(json!({"type": "count-timeout", "count": 3, "timeout_ms": 100, "purge": true}));
        h.set_processing_time(1_000);
        assert_eq!(h.element(b"k", W, 1).unwrap(), TriggerResult::Continue);
        assert_eq!(h.timers(b"k", W), [(false, 1_100)]);
        h.element(b"k", W, 2).unwrap();
        assert_eq!(h.element(b"k", W, 3).unwrap(), TriggerResult::FireAndPurge, "the count");
        assert!(h.timers(b"k", W).is_empty() && h.state(b"k", W).is_none());
        h.set_processing_time(2_000);
        h.element(b"k", W, 4).unwrap();
        assert_eq!(h.processing_time(b"k", W, 2_100).unwrap(), TriggerResult::FireAndPurge, "the timeout");
        assert!(h.state(b"k", W).is_none() && h.timers(b"k", W).is_empty());
        h.element(b"k", W, 5).unwrap();
        assert_eq!(h.event_time(b"k", W, 999).unwrap(), TriggerResult::FireAndPurge, "the window's end");
        assert!(h.state(b"k", W).is_none() && h.timers(b"k", W).is_empty(), "the timeout is deleted");
        let err = h.merge(b"k", W, &[Window { start: 5, end: 6 }]).unwrap_err();
        assert!(err.message().contains("does not merge"), "{err}");
    }

    #[test]
    fn a_bad_config_says_what_to_write() {
        let err = TriggerHarness::with_config(Triggers::default(), json!({"type": "count"})).err().unwrap();
        assert!(err.message().contains("`count` is missing"), "{err}");
        let err = TriggerHarness::with_config(Triggers::default(), json!({"type": "nope"})).err().unwrap();
        assert!(err.message().contains("event-time, count or count-timeout"), "{err}");
    }
}
