//! The classic fraud detector as a keyed process function: per account,
//! alert on a transaction over 500.00 that is the account's next
//! transaction after one under 1.00, if it comes within one minute of event
//! time of the small one. The flag lives in value state; an event-time
//! timer clears it one minute after the small transaction.
use serde::{Deserialize, Serialize};
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, TimeDomain, ValueState};

const SMALL: f64 = 1.00;
const LARGE: f64 = 500.00;
const ONE_MINUTE: i64 = 60_000;

#[derive(Deserialize, Serialize)]
struct Transaction<'a> {
    account: &'a str,
    amount: f64,
    ts: i64,
}

#[derive(Default)]
pub struct FraudDetector {
    /// Timestamp of the account's last transaction when it was small.
    small_at: ValueState<i64>,
    /// The pending clean-up timer.
    timer: ValueState<i64>,
}

impl FraudDetector {
    fn clean_up(&self, ctx: &mut Context<'_>) -> Result<()> {
        if let Some(t) = self.timer.value(ctx)? {
            ctx.delete_event_time_timer(t);
        }
        self.timer.clear(ctx)?;
        self.small_at.clear(ctx)
    }
}

impl KeyedProcessFunction for FraudDetector {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.small_at = ctx.value_state("small-at");
        self.timer = ctx.value_state("timer");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let tx: Transaction = event.json()?;
        if let Some(small_at) = self.small_at.value(ctx)? {
            if tx.amount > LARGE && tx.ts - small_at <= ONE_MINUTE {
                out.emit_json(event.key, &tx, Some(tx.ts))?;
            }
            self.clean_up(ctx)?;
        }
        if tx.amount < SMALL {
            self.small_at.update(ctx, &tx.ts)?;
            let timer = tx.ts + ONE_MINUTE;
            ctx.register_event_time_timer(timer);
            self.timer.update(ctx, &timer)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _ts: i64, _domain: TimeDomain, ctx: &mut Context<'_>, _out: &mut Output) -> Result<()> {
        self.timer.clear(ctx)?;
        self.small_at.clear(ctx)
    }
}

weir_sdk::export_process!(FraudDetector);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::ProcessHarness;

    fn tx(h: &mut ProcessHarness<FraudDetector>, amount: f64, ts: i64) -> Vec<serde_json::Value> {
        let out = h.process_json(b"a", &json!({"account": "a", "amount": amount, "ts": ts}), Some(ts)).unwrap();
        out.iter().map(|e| e.json().unwrap()).collect()
    }

    #[test]
    fn small_then_large_within_a_minute_alerts() {
        let mut h = ProcessHarness::new(FraudDetector::default()).unwrap();
        assert!(tx(&mut h, 0.5, 1_000).is_empty());
        assert_eq!(tx(&mut h, 612.0, 31_000), vec![json!({"account": "a", "amount": 612.0, "ts": 31_000})]);
        assert!(h.event_time_timers(b"a").is_empty(), "alerting cleans up the timer");
    }

    #[test]
    fn the_timer_clears_the_flag_after_a_minute() {
        let mut h = ProcessHarness::new(FraudDetector::default()).unwrap();
        tx(&mut h, 0.5, 1_000);
        assert_eq!(h.event_time_timers(b"a"), vec![61_000]);
        h.advance_watermark(61_000).unwrap();
        assert_eq!(h.value_state::<i64>(b"a", "small-at").unwrap(), None);
        assert!(tx(&mut h, 900.0, 61_000).is_empty());
    }

    #[test]
    fn large_after_more_than_a_minute_does_not_alert_even_before_the_timer() {
        let mut h = ProcessHarness::new(FraudDetector::default()).unwrap();
        tx(&mut h, 0.5, 1_000);
        assert!(tx(&mut h, 900.0, 61_001).is_empty());
    }

    #[test]
    fn only_the_next_transaction_counts() {
        let mut h = ProcessHarness::new(FraudDetector::default()).unwrap();
        tx(&mut h, 0.5, 1_000);
        assert!(tx(&mut h, 20.0, 2_000).is_empty());
        assert!(tx(&mut h, 900.0, 3_000).is_empty());
    }
}
