//! Test operator: version 2 of `flaky-count` (without its trap), for
//! savepoint upgrades. It declares a new value state `seen` before
//! `count`, so their state ids differ from version 1's: state restored
//! from a savepoint of version 1 must be matched by name. Its output is
//! version 1's: `key,count` per event.
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, ValueState};

#[derive(Default)]
pub struct CountV2 {
    seen: ValueState<bool>,
    count: ValueState<u64>,
}

impl KeyedProcessFunction for CountV2 {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.seen = ctx.value_state("seen");
        self.count = ctx.value_state("count");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        self.seen.update(ctx, &true)?;
        let n = self.count.value(ctx)?.unwrap_or(0) + 1;
        self.count.update(ctx, &n)?;
        let line = format!("{},{n}", String::from_utf8_lossy(event.key));
        out.emit_json(event.key, &line, event.timestamp)
    }
}

weir_sdk::export_process!(CountV2);
