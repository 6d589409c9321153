//! Counts events per key in a `ValueState<u64>` and emits, for every event,
//! the key's running count (a JSON number) under the same key.
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, ValueState};

#[derive(Default)]
pub struct KeyedCounter {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for KeyedCounter {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.count = ctx.value_state("count");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let n = self.count.value(ctx)?.unwrap_or(0) + 1;
        self.count.update(ctx, &n)?;
        out.emit_json(event.key, &n, event.timestamp)
    }
}

weir_sdk::export_process!(KeyedCounter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::ProcessHarness;

    #[test]
    fn counts_per_key() {
        let mut h = ProcessHarness::new(KeyedCounter::default()).unwrap();
        h.process(b"a", b"x", None).unwrap();
        h.process(b"b", b"x", None).unwrap();
        let out = h.process(b"a", b"x", None).unwrap();
        assert_eq!(out[0].json::<u64>().unwrap(), 2);
        assert_eq!(h.value_state::<u64>(b"b", "count").unwrap(), Some(1));
    }
}
