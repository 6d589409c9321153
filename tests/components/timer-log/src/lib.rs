//! Test operator: for each event, emits `{"k", "e": ts}` and registers an
//! event-time timer at the event's timestamp plus `config.delay` (default
//! 0); each timer emits `{"k", "t": ts, "wm": watermark}`. The output
//! sequence shows exactly when timers fired relative to events. With
//! `config.processing: true` it registers processing-time timers at
//! processing time + delay instead, which emit `{"k", "pt": ts, "now": …}`.
//! With `config.fail-at: T` it returns an operator error on the event with
//! timestamp `T`.
use serde_json::json;
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, TimeDomain};

#[derive(Default)]
pub struct TimerLog {
    delay: i64,
    processing: bool,
    fail_at: Option<i64>,
}

impl KeyedProcessFunction for TimerLog {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.delay = ctx.config().get("delay").and_then(|d| d.as_i64()).unwrap_or(0);
        self.processing = ctx.config().get("processing").and_then(|p| p.as_bool()).unwrap_or(false);
        self.fail_at = ctx.config().get("fail-at").and_then(|f| f.as_i64());
        weir_sdk::log(weir_sdk::Level::Info, &format!("timer-log opened with delay {}", self.delay));
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let ts = event.timestamp.ok_or("event has no timestamp")?;
        if self.fail_at == Some(ts) {
            return Err(format!("failing at timestamp {ts} as configured").into());
        }
        out.emit_json(event.key, &json!({"k": ctx.key_str()?, "e": ts}), Some(ts))?;
        if self.processing {
            let at = ctx.current_processing_time() + self.delay;
            ctx.register_processing_time_timer(at);
        } else {
            ctx.register_event_time_timer(ts + self.delay);
        }
        Ok(())
    }

    fn on_timer(&mut self, ts: i64, domain: TimeDomain, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let wm = ctx.current_watermark();
        let k = ctx.key_str()?.to_owned();
        if domain == TimeDomain::ProcessingTime {
            return out.emit_json(k.as_bytes(), &json!({"k": k, "pt": ts, "now": ctx.current_processing_time()}), None);
        }
        out.emit_json(k.as_bytes(), &json!({"k": k, "t": ts, "wm": wm}), Some(ts))
    }
}

weir_sdk::export_process!(TimerLog);
