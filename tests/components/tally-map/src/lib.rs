//! A map with operator state (tests): counts the events its subtask has
//! mapped and emits `count,runs` for each. The count is an even-split list
//! (after a rescale a subtask sums the counts it gets, so the counts of
//! all subtasks always add up to the events mapped); `runs` is a union
//! list (every subtask learns how many runs came before, over all old
//! subtasks).

use weir_sdk::{CheckpointedFunction, Event, Json, Map, OperatorState, Output, Redistribution, Result};

#[derive(Default)]
pub struct Tally {
    count: u64,
    runs: u64,
}

impl Map for Tally {
    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        self.count += 1;
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

weir_sdk::export_map!(checkpointed Tally);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::MapHarness;

    #[test]
    fn counts_go_on_after_a_restore_and_runs_are_numbered() {
        let mut h = MapHarness::new(Tally::default()).unwrap();
        h.initialize_state(&OperatorState::default()).unwrap();
        h.map(b"", b"a", None).unwrap();
        let state = h.snapshot_state(1).unwrap();
        let mut again = MapHarness::new(Tally::default()).unwrap();
        again.initialize_state(&state).unwrap();
        let out = again.map(b"", b"b", None).unwrap();
        assert_eq!(out[0].value, b"2,2");
    }
}
