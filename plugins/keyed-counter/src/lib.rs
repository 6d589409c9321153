//! Counts events per key in a `ValueState<u64>` and emits, for every event,
//! the key's running count (a JSON number) under the same key.
//!
//! With `config: {state: map}` it counts in a `MapState<u8, u64>` instead,
//! per key and per the event value's first byte modulo 8 (up to 8 entries
//! per key), and emits that entry's count: `weir bench`'s MapState
//! workload.
use weir_sdk::{Context, Event, KeyedProcessFunction, MapState, OpenContext, Output, Result, ValueState};

#[derive(Default)]
pub struct KeyedCounter {
    count: ValueState<u64>,
    map: Option<MapState<u8, u64>>,
}

impl KeyedProcessFunction for KeyedCounter {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        match ctx.config().get("state").and_then(|s| s.as_str()) {
            Some("map") => self.map = Some(ctx.map_state("counts")),
            Some("value") | None => self.count = ctx.value_state("count"),
            Some(other) => return Err(format!("config `state: {other}`: use `value` or `map`").into()),
        }
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let n = match &self.map {
            Some(map) => {
                let bucket = event.value.first().map_or(0, |b| b % 8);
                let n = map.get(ctx, &bucket)?.unwrap_or(0) + 1;
                map.put(ctx, &bucket, &n)?;
                n
            }
            None => {
                let n = self.count.value(ctx)?.unwrap_or(0) + 1;
                self.count.update(ctx, &n)?;
                n
            }
        };
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

    #[test]
    fn counts_per_key_and_bucket_in_map_state() {
        let config = weir_sdk::serde_json::json!({"state": "map"});
        let mut h = ProcessHarness::with_config(KeyedCounter::default(), config).unwrap();
        h.process(b"a", b"x", None).unwrap();
        h.process(b"a", b"y", None).unwrap();
        let out = h.process(b"a", b"x", None).unwrap();
        assert_eq!(out[0].json::<u64>().unwrap(), 2, "x and y fall in different buckets");
    }
}
