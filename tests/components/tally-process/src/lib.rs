//! `tally-map` as a keyed process function (tests): the same even-split
//! count and union run number, as operator state beside keyed state (a
//! per-key count, so the function uses both).

use weir_sdk::{
    CheckpointedFunction, Context, Event, Json, KeyedProcessFunction, OpenContext, OperatorState, Output,
    Redistribution, Result, ValueState,
};

#[derive(Default)]
pub struct Tally {
    count: u64,
    runs: u64,
    per_key: ValueState<u64>,
}

impl KeyedProcessFunction for Tally {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.per_key = ctx.value_state("per-key");
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        self.count += 1;
        let n = self.per_key.value(ctx)?.unwrap_or(0) + 1;
        self.per_key.update(ctx, &n)?;
        out.emit(event.key, format!("{},{}", self.count, self.runs).as_bytes(), event.timestamp)
    }
}

impl CheckpointedFunction for Tally {
    fn initialize_state(&mut self, state: &OperatorState) -> Result<()> {
        self.count = state.list_with::<u64, Json>("count")?.iter().sum();
        self.runs = state.list_with::<u64, Json>("runs")?.into_iter().max().unwrap_or(0) + 1;
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint: u64, state: &mut OperatorState) -> Result<()> {
        state.set_list_with::<u64, Json>("count", Redistribution::EvenSplit, &[self.count])?;
        state.set_list_with::<u64, Json>("runs", Redistribution::Union, &[self.runs])
    }
}

weir_sdk::export_process!(checkpointed Tally);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::ProcessHarness;

    #[test]
    fn the_count_goes_on_after_a_restore() {
        let mut h = ProcessHarness::new(Tally::default()).unwrap();
        h.initialize_state(&OperatorState::default()).unwrap();
        h.process(b"k", b"a", None).unwrap();
        let state = h.snapshot_state(1).unwrap();
        let mut again = ProcessHarness::new(Tally::default()).unwrap();
        again.initialize_state(&state).unwrap();
        assert_eq!(again.process(b"k", b"b", None).unwrap()[0].value, b"2,2");
    }
}
