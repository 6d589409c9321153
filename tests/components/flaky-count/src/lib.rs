//! Test operator: counts events per key in a `ValueState<u64>` and emits,
//! for every event, the line `key,count` (a JSON string). It traps on the
//! event whose `value` field equals the config's `trap-on` while
//! processing time is before `until-ms`: a failure that happens once, and
//! not again after a restart that comes later than that.
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, ValueState};

#[derive(Default)]
pub struct FlakyCount {
    count: ValueState<u64>,
    trap_on: Option<i64>,
    until_ms: i64,
}

#[derive(serde::Deserialize)]
struct Row {
    value: i64,
}

impl KeyedProcessFunction for FlakyCount {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.count = ctx.value_state("count");
        self.trap_on = ctx.config().get("trap-on").and_then(|v| v.as_i64());
        self.until_ms = ctx.config().get("until-ms").and_then(|v| v.as_i64()).unwrap_or(i64::MIN);
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let row: Row = event.json()?;
        if Some(row.value) == self.trap_on && ctx.current_processing_time() < self.until_ms {
            panic!("flaky-count traps on value {} until {}", row.value, self.until_ms);
        }
        let n = self.count.value(ctx)?.unwrap_or(0) + 1;
        self.count.update(ctx, &n)?;
        let line = format!("{},{n}", String::from_utf8_lossy(event.key));
        out.emit_json(event.key, &line, event.timestamp)
    }
}

weir_sdk::export_process!(FlakyCount);
