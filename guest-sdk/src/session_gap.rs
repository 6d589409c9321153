//! Dynamic session gaps (the `session-gap` world), after Flink's
//! `SessionWindowTimeGapExtractor`.

use crate::{Event, Result};

/// Gives each element the gap of its session window: a session ends
/// after `gap` ms without an element, and an element's window is
/// `[timestamp, timestamp + gap)`, merged with the windows it overlaps or
/// touches. The host calls it once per input batch, over all its
/// elements (keys as the window operator is keyed).
pub trait SessionGap: 'static {
    /// Called once per instance before any element, with the `config` of
    /// the window's `gap` in the spec (JSON `null` when the spec has none).
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// The gap (ms, positive) of `event`'s session window.
    fn gap(&mut self, event: &Event<'_>) -> Result<i64>;
}
