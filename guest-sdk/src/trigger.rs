//! Custom window triggers (the `trigger` world), after Flink's `Trigger`.
//!
//! The host hands a trigger its work in calls of many actions (the
//! elements between two watermarks, or the timers one watermark fires);
//! [`run`] plays them in order against the [`Trigger`] trait, keeping each
//! (key, window)'s state in memory for the call and returning what
//! changed. The Wasm glue and the native [`crate::testing::TriggerHarness`]
//! both go through it.

use crate::{Error, Result, Window};

/// What a window does after a trigger's call (Flink's `TriggerResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing.
    Continue,
    /// Runs the window's function and emits its result; the contents stay.
    Fire,
    /// Drops the window's contents without emitting.
    Purge,
    /// Fires, then drops the contents.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window fires.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the window's contents go.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// A window merged into another (session windows), with its trigger state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergedWindow<'a> {
    /// The window that merged away.
    pub window: Window,
    /// Its trigger state (it is cleared right after `on_merge`).
    pub state: Option<&'a [u8]>,
}

/// Decides when a window fires and purges (Flink's `Trigger`).
///
/// Each method sees one window of one key through its
/// [`TriggerContext`]: the window, the clocks, the trigger's own state for
/// that key and window (bytes the trigger encodes as it likes), and timers
/// to register or delete. Timers the trigger registers come back as
/// [`Trigger::on_event_time`] and [`Trigger::on_processing_time`] calls;
/// the window operator's own timers (its cleanup at the window's end plus
/// the allowed lateness) reach the trigger too, as in Flink, so compare the
/// time with what you registered.
pub trait Trigger: 'static {
    /// Called once per instance before any window, with the trigger's
    /// `config` from the spec (JSON `null` when the spec has none).
    fn open(&mut self, config: &serde_json::Value) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// An element with `timestamp` was added to the context's window.
    fn on_element(&mut self, timestamp: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult>;

    /// An event-time timer of the context's window fired at `time`.
    fn on_event_time(&mut self, time: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let _ = (time, ctx);
        Ok(TriggerResult::Continue)
    }

    /// A processing-time timer of the context's window fired at `time`.
    fn on_processing_time(&mut self, time: i64, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult> {
        let _ = (time, ctx);
        Ok(TriggerResult::Continue)
    }

    /// Windows `merged` merged into the context's window (session
    /// windows): combine their state into it and set its timers. Each
    /// merged window gets [`Trigger::clear`] right after. Triggers that do
    /// not implement it cannot be used with session windows.
    fn on_merge(&mut self, merged: &[MergedWindow<'_>], ctx: &mut TriggerContext<'_>) -> Result<()> {
        let _ = (merged, ctx);
        Err(Error::new("this trigger cannot merge windows, and session windows merge; implement `Trigger::on_merge`"))
    }

    /// The context's window is gone: delete the timers the trigger
    /// registered for it. Its state is cleared after this returns.
    fn clear(&mut self, ctx: &mut TriggerContext<'_>) -> Result<()>;
}

/// A timer a trigger registered or deleted.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerRequest {
    pub action: u32,
    pub slot: u32,
    pub timestamp: i64,
    pub event_time: bool,
    pub delete: bool,
}

/// One window of one key, as a trigger call sees it.
pub struct TriggerContext<'a> {
    key: &'a [u8],
    window: Window,
    watermark: i64,
    processing_time: i64,
    state: &'a mut Option<Vec<u8>>,
    dirty: &'a mut bool,
    timers: &'a mut Vec<TimerRequest>,
    action: u32,
    slot: u32,
}

impl TriggerContext<'_> {
    /// The key (empty for `window-all`).
    pub fn key(&self) -> &[u8] {
        self.key
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The current watermark (i64 minimum before the first).
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The current processing time (epoch ms).
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// The trigger's state for this key and window.
    pub fn state(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }

    /// Replaces the trigger's state for this key and window.
    pub fn set_state(&mut self, value: &[u8]) {
        let s = self.state.get_or_insert_with(Vec::new);
        s.clear();
        s.extend_from_slice(value);
        *self.dirty = true;
    }

    /// Removes the trigger's state for this key and window.
    pub fn clear_state(&mut self) {
        if self.state.take().is_some() {
            *self.dirty = true;
        }
    }

    /// The state read as an `i64` (little-endian), if it is one.
    pub fn state_i64(&self) -> Option<i64> {
        self.state().and_then(|s| s.try_into().ok()).map(i64::from_le_bytes)
    }

    /// Stores an `i64` (little-endian) as the state.
    pub fn set_state_i64(&mut self, value: i64) {
        self.set_state(&value.to_le_bytes());
    }

    fn timer(&mut self, timestamp: i64, event_time: bool, delete: bool) {
        self.timers.push(TimerRequest { action: self.action, slot: self.slot, timestamp, event_time, delete });
    }

    /// Registers an event-time timer for this key and window (one per
    /// timestamp: registering it again does nothing).
    pub fn register_event_time_timer(&mut self, timestamp: i64) {
        self.timer(timestamp, true, false);
    }

    /// Registers a processing-time timer for this key and window.
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        self.timer(timestamp, false, false);
    }

    /// Deletes an event-time timer of this key and window.
    pub fn delete_event_time_timer(&mut self, timestamp: i64) {
        self.timer(timestamp, true, true);
    }

    /// Deletes a processing-time timer of this key and window.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        self.timer(timestamp, false, true);
    }
}

/// One action of a call.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Element { slot: u32, time: i64 },
    EventTime { slot: u32, time: i64 },
    ProcessingTime { slot: u32, time: i64 },
    Merge { slot: u32, merged: Vec<u32> },
    Clear(u32),
}

/// The slots of a call: keys (`keys` split at `key_ends`) and windows.
#[doc(hidden)]
pub struct Slots<'a> {
    pub keys: &'a [u8],
    pub key_ends: &'a [u32],
    pub windows: &'a [Window],
}

/// What a call changed: a decision per action, the timer requests in
/// order, and which slots' state changed (`states` holds every slot's
/// state at the end).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct RunOut {
    pub decisions: Vec<TriggerResult>,
    pub timers: Vec<TimerRequest>,
    pub dirty: Vec<bool>,
}

/// Plays `actions` against `trigger` in order; `states` holds each slot's
/// state (as the call starts, and as it ends when this returns).
#[doc(hidden)]
pub fn run(
    trigger: &mut dyn Trigger,
    actions: &[Action],
    slots: &Slots<'_>,
    states: &mut [Option<Vec<u8>>],
    watermark: i64,
    processing_time: i64,
) -> Result<RunOut> {
    let n = slots.windows.len();
    if slots.key_ends.len() != n || states.len() != n {
        return Err(Error::new(format!(
            "trigger table is malformed: {n} windows, {} key ends and {} states; the host and the SDK disagree on the WIT",
            slots.key_ends.len(),
            states.len()
        )));
    }
    let mut out = RunOut { decisions: Vec::with_capacity(actions.len()), timers: Vec::new(), dirty: vec![false; n] };
    let key = |s: usize| -> Result<&[u8]> {
        let from = if s == 0 { 0 } else { slots.key_ends[s - 1] as usize };
        slots
            .keys
            .get(from..slots.key_ends[s] as usize)
            .ok_or_else(|| Error::new(format!("trigger table: slot {s}'s key is out of bounds")))
    };
    let check = |s: u32| -> Result<usize> {
        let s = s as usize;
        if s < n { Ok(s) } else { Err(Error::new(format!("trigger action names slot {s} of {n}"))) }
    };
    for (i, action) in actions.iter().enumerate() {
        let slot = match action {
            Action::Element { slot, .. }
            | Action::EventTime { slot, .. }
            | Action::ProcessingTime { slot, .. }
            | Action::Merge { slot, .. }
            | Action::Clear(slot) => check(*slot)?,
        };
        // Merged windows' states are read before the target's is borrowed.
        let merged: Vec<(Window, Option<Vec<u8>>)> = match action {
            Action::Merge { merged, .. } => merged
                .iter()
                .map(|m| check(*m).map(|m| (slots.windows[m], states[m].clone())))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let mut ctx = TriggerContext {
            key: key(slot)?,
            window: slots.windows[slot],
            watermark,
            processing_time,
            state: &mut states[slot],
            dirty: &mut out.dirty[slot],
            timers: &mut out.timers,
            action: i as u32,
            slot: slot as u32,
        };
        let decision = match action {
            Action::Element { time, .. } => trigger.on_element(*time, &mut ctx)?,
            Action::EventTime { time, .. } => trigger.on_event_time(*time, &mut ctx)?,
            Action::ProcessingTime { time, .. } => trigger.on_processing_time(*time, &mut ctx)?,
            Action::Merge { .. } => {
                let merged: Vec<MergedWindow<'_>> = merged
                    .iter()
                    .map(|(window, state)| MergedWindow { window: *window, state: state.as_deref() })
                    .collect();
                trigger.on_merge(&merged, &mut ctx)?;
                TriggerResult::Continue
            }
            Action::Clear(_) => {
                trigger.clear(&mut ctx)?;
                ctx.clear_state();
                TriggerResult::Continue
            }
        };
        out.decisions.push(decision);
    }
    Ok(out)
}
