//! Test operator that churns timers the way windows do: every event
//! registers a timer `delay` after it and one at the end of its window
//! (`size`), and deletes the one `2 * delay` after it on every third
//! timestamp; every timer, a few times per key, registers the next
//! window's end (often a timer that is still waiting in the same firing),
//! deletes and re-registers the timer `delay` after it, and once registers
//! itself again. Each event and timer emits a line, so the output shows
//! every firing: a timer that fires twice shows twice.
use serde_json::json;
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, TimeDomain, ValueState};

#[derive(Default)]
pub struct TimerChurn {
    delay: i64,
    size: i64,
    firings: ValueState<u32>,
}

fn window_end(ts: i64, size: i64) -> i64 {
    ts.saturating_sub(ts.rem_euclid(size)).saturating_add(size)
}

impl KeyedProcessFunction for TimerChurn {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.delay = ctx.config().get("delay").and_then(|d| d.as_i64()).unwrap_or(10);
        self.size = ctx.config().get("size").and_then(|d| d.as_i64()).unwrap_or(50).max(1);
        self.firings = ctx.value_state("firings");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let ts = event.timestamp.ok_or("event has no timestamp")?;
        out.emit_json(event.key, &json!({"k": ctx.key_str()?, "e": ts}), Some(ts))?;
        ctx.register_event_time_timer(ts.saturating_add(self.delay));
        ctx.register_event_time_timer(window_end(ts, self.size));
        if ts % 3 == 0 {
            ctx.delete_event_time_timer(ts.saturating_add(2 * self.delay));
        }
        Ok(())
    }

    fn on_timer(&mut self, ts: i64, _domain: TimeDomain, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let k = ctx.key_str()?.to_owned();
        out.emit_json(k.as_bytes(), &json!({"k": k, "t": ts, "wm": ctx.current_watermark()}), Some(ts))?;
        let n = self.firings.value(ctx)?.unwrap_or(0) + 1;
        self.firings.update(ctx, &n)?;
        if n <= 4 {
            ctx.register_event_time_timer(window_end(ts, self.size));
            ctx.delete_event_time_timer(ts.saturating_add(self.delay));
            ctx.register_event_time_timer(ts.saturating_add(self.delay));
            if n == 2 {
                ctx.register_event_time_timer(ts);
            }
        }
        Ok(())
    }
}

weir_sdk::export_process!(TimerChurn);
