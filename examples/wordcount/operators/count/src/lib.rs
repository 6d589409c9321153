//! Counts words per key in a `ValueState` and emits each word's final
//! count when the watermark reaches the end of input (an event-time timer
//! at the largest timestamp, which only the final watermark passes).
use serde::Serialize;
use weir_sdk::{Context, Event, KeyedProcessFunction, OpenContext, Output, Result, TimeDomain, ValueState};

#[derive(Default)]
pub struct Count {
    count: ValueState<u64>,
}

#[derive(Serialize)]
struct WordCount<'a> {
    word: &'a str,
    count: u64,
}

impl KeyedProcessFunction for Count {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.count = ctx.value_state("count");
        Ok(())
    }

    fn process(&mut self, _event: &Event<'_>, ctx: &mut Context<'_>, _out: &mut Output) -> Result<()> {
        let n = self.count.value(ctx)?.unwrap_or(0) + 1;
        self.count.update(ctx, &n)?;
        if n == 1 {
            ctx.register_event_time_timer(i64::MAX);
        }
        Ok(())
    }

    fn on_timer(&mut self, _ts: i64, _domain: TimeDomain, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let count = self.count.value(ctx)?.unwrap_or(0);
        let word = ctx.key_str()?;
        out.emit_json(word.as_bytes(), &WordCount { word, count }, None)?;
        self.count.clear(ctx)
    }
}

weir_sdk::export_process!(Count);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::ProcessHarness;

    #[test]
    fn emits_the_count_once_at_end_of_input() {
        let mut h = ProcessHarness::new(Count::default()).unwrap();
        for _ in 0..3 {
            assert!(h.process_json(b"hi", "hi", None).unwrap().is_empty());
        }
        h.process_json(b"yo", "yo", None).unwrap();
        assert!(h.advance_watermark(1_000).unwrap().is_empty());
        let out = h.advance_watermark(i64::MAX).unwrap();
        let got: Vec<serde_json::Value> = out.iter().map(|e| e.json().unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&serde_json::json!({"word": "hi", "count": 3})));
        assert_eq!(h.value_state::<u64>(b"hi", "count").unwrap(), None);
    }
}
