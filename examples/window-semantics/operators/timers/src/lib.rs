//! Case (f) of Flink's reference: each event registers an event-time timer
//! 4 s after its timestamp (one timer per key and timestamp), and each
//! firing emits the CSV line `timer,key,timer_ts,count` with the number of
//! the key's events seen so far.
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, TimeDomain, ValueState};

const DELAY_MS: i64 = 4000;

#[derive(Default)]
pub struct Timers {
    seen: ValueState<u64>,
}

impl KeyedProcessFunction for Timers {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.seen = ctx.value_state("seen");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, _out: &mut Output) -> Result<()> {
        let n = self.seen.value(ctx)?.unwrap_or(0) + 1;
        self.seen.update(ctx, &n)?;
        let ts = event.timestamp.ok_or("the timer case needs event timestamps; set `timestamp:` on the source")?;
        ctx.register_event_time_timer(ts + DELAY_MS);
        Ok(())
    }

    fn on_timer(&mut self, ts: i64, _domain: TimeDomain, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let count = self.seen.value(ctx)?.unwrap_or(0);
        let line = format!("timer,{},{ts},{count}", ctx.key_str()?);
        out.emit_json(ctx.key(), &line, Some(ts))
    }
}

weir_sdk::export_process!(Timers);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::ProcessHarness;

    #[test]
    fn a_timer_per_key_and_timestamp_reports_the_count_when_it_fires() {
        let mut h = ProcessHarness::new(Timers::default()).unwrap();
        h.process(b"k0", b"{}", Some(1000)).unwrap();
        h.process(b"k0", b"{}", Some(1000)).unwrap();
        h.process(b"k0", b"{}", Some(2000)).unwrap();
        let out = h.advance_watermark(5000).unwrap();
        let lines: Vec<String> = out.iter().map(|e| e.json().unwrap()).collect();
        assert_eq!(lines, ["timer,k0,5000,3"], "two events at 1000 share one timer");
    }
}
