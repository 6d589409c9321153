//! Custom window evictors (the `evictor` world), after Flink's `Evictor`.

use crate::{Event, Result};

/// A window as an evictor sees it: `[start, end)`, or the global window
/// (`start == i64::MIN`, `end == i64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond.
    pub start: i64,
    /// One past the last millisecond.
    pub end: i64,
}

impl Window {
    /// Whether this is the global window (global and count windows).
    pub fn is_global(&self) -> bool {
        self.start == i64::MIN && self.end == i64::MAX
    }

    /// The window's last millisecond (Flink's `maxTimestamp`; `i64::MAX`
    /// for the global window, as Flink's `GlobalWindow`).
    pub fn max_timestamp(&self) -> i64 {
        if self.is_global() { i64::MAX } else { self.end.saturating_sub(1) }
    }
}

/// The operator's clocks when a window fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictorContext {
    /// The current watermark.
    pub watermark: i64,
    /// The current processing time (epoch ms).
    pub processing_time: i64,
}

/// Decides which elements leave a firing window, before its function runs
/// and after (Flink's `Evictor.evictBefore` / `evictAfter`). Elements are
/// the window's, in arrival order, with their timestamps; clear an entry
/// of `keep` to evict that element. Both default to keeping everything.
///
/// An evictor keeps every element of a window in state, so the window's
/// function cannot pre-aggregate.
pub trait Evictor: 'static {
    /// Called once per instance before any window, with the evictor's
    /// `config` from the spec (JSON `null` when the spec has none).
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Evicts before the window's function runs.
    fn evict_before(
        &mut self,
        elements: &[Event<'_>],
        window: Window,
        ctx: &EvictorContext,
        keep: &mut [bool],
    ) -> Result<()> {
        let _ = (elements, window, ctx, keep);
        Ok(())
    }

    /// Evicts after the window's function ran.
    fn evict_after(
        &mut self,
        elements: &[Event<'_>],
        window: Window,
        ctx: &EvictorContext,
        keep: &mut [bool],
    ) -> Result<()> {
        let _ = (elements, window, ctx, keep);
        Ok(())
    }
}
