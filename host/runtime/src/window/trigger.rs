//! Flink's built-in triggers, over the operator's keyed state backend:
//! their state is value state [`TRIGGER_STATE`] in the window's namespace,
//! their timers the backend's timers in that namespace.

use super::Window;
use weir_core::spec::TriggerSpec;
use weir_state::{KeyedStateBackend, Scope, TimerDomain};

/// Value state id of a trigger's per-window state.
pub(crate) const TRIGGER_STATE: u32 = 2;

/// What a trigger decides (Flink's `TriggerResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub fire: bool,
    pub purge: bool,
}

impl Decision {
    pub const CONTINUE: Decision = Decision { fire: false, purge: false };
    pub const FIRE: Decision = Decision { fire: true, purge: false };
    pub const FIRE_AND_PURGE: Decision = Decision { fire: true, purge: true };
}

/// What a trigger sees and changes: the key's state and timers in one
/// window's namespace, and the clocks.
pub(crate) struct TriggerCtx<'a> {
    pub backend: &'a mut dyn KeyedStateBackend,
    pub group: u16,
    pub key: &'a [u8],
    pub window: Window,
    pub watermark: i64,
    pub now: i64,
}

impl TriggerCtx<'_> {
    fn register(&mut self, domain: TimerDomain, timestamp: i64) {
        let ns = self.window.namespace();
        let at = Scope { group: self.group, key: self.key, namespace: &ns[..self.window.namespace_len()] };
        self.backend.timer_register(domain, at, timestamp);
    }

    fn delete(&mut self, domain: TimerDomain, timestamp: i64) {
        let ns = self.window.namespace();
        let at = Scope { group: self.group, key: self.key, namespace: &ns[..self.window.namespace_len()] };
        self.backend.timer_delete(domain, at, timestamp);
    }

    /// The trigger's number in `window` (this context's by default).
    fn get(&mut self, window: Window) -> Option<i64> {
        let ns = window.namespace();
        let at = Scope { group: self.group, key: self.key, namespace: &ns[..window.namespace_len()] };
        let mut out = Vec::with_capacity(8);
        if !self.backend.value_get(TRIGGER_STATE, at, &mut out) {
            return None;
        }
        out.try_into().ok().map(i64::from_le_bytes)
    }

    fn put(&mut self, value: Option<i64>) {
        let ns = self.window.namespace();
        let at = Scope { group: self.group, key: self.key, namespace: &ns[..self.window.namespace_len()] };
        match value {
            Some(v) => self.backend.value_put(TRIGGER_STATE, at, &v.to_le_bytes()),
            None => self.backend.value_clear(TRIGGER_STATE, at),
        }
    }

    fn max_timestamp(&self) -> i64 {
        self.window.max_timestamp()
    }
}

/// A built-in trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    EventTime,
    ProcessingTime,
    Count(u64),
    Purging(Box<Trigger>),
    ContinuousEventTime(i64),
    ContinuousProcessingTime(i64),
    Never,
}

impl Trigger {
    pub fn of(spec: &TriggerSpec) -> Trigger {
        match spec {
            TriggerSpec::EventTime => Trigger::EventTime,
            TriggerSpec::ProcessingTime => Trigger::ProcessingTime,
            TriggerSpec::Count { count } => Trigger::Count(*count),
            TriggerSpec::Purging { of } => Trigger::Purging(Box::new(Trigger::of(of))),
            TriggerSpec::ContinuousEventTime { interval_ms } => Trigger::ContinuousEventTime(*interval_ms),
            TriggerSpec::ContinuousProcessingTime { interval_ms } => Trigger::ContinuousProcessingTime(*interval_ms),
            TriggerSpec::Never => Trigger::Never,
            // (A Wasm trigger is called by the window operator's batched
            // path; the built-in one stands aside.)
            TriggerSpec::Component { .. } => Trigger::Never,
        }
    }

    /// Whether the trigger reads processing time.
    pub fn reads_processing_time(&self) -> bool {
        match self {
            Trigger::ProcessingTime | Trigger::ContinuousProcessingTime(_) => true,
            Trigger::Purging(inner) => inner.reads_processing_time(),
            _ => false,
        }
    }

    /// An element was added to the window.
    pub fn on_element(&self, ctx: &mut TriggerCtx<'_>, timestamp: i64) -> Decision {
        match self {
            Trigger::EventTime => {
                if ctx.max_timestamp() <= ctx.watermark {
                    return Decision::FIRE;
                }
                ctx.register(TimerDomain::EventTime, ctx.max_timestamp());
                Decision::CONTINUE
            }
            Trigger::ProcessingTime => {
                ctx.register(TimerDomain::ProcessingTime, ctx.max_timestamp());
                Decision::CONTINUE
            }
            Trigger::Count(n) => {
                let count = ctx.get(ctx.window).unwrap_or(0) + 1;
                if count as u64 >= *n {
                    ctx.put(None);
                    Decision::FIRE
                } else {
                    ctx.put(Some(count));
                    Decision::CONTINUE
                }
            }
            Trigger::Purging(inner) => purging(inner.on_element(ctx, timestamp)),
            Trigger::ContinuousEventTime(interval) => {
                if ctx.max_timestamp() <= ctx.watermark {
                    return Decision::FIRE;
                }
                ctx.register(TimerDomain::EventTime, ctx.max_timestamp());
                if ctx.get(ctx.window).is_none() {
                    let start = timestamp - timestamp.rem_euclid(*interval);
                    next_fire(ctx, TimerDomain::EventTime, start, *interval);
                }
                Decision::CONTINUE
            }
            Trigger::ContinuousProcessingTime(interval) => {
                if ctx.get(ctx.window).is_none() {
                    let now = ctx.now;
                    next_fire(ctx, TimerDomain::ProcessingTime, now - now.rem_euclid(*interval), *interval);
                }
                Decision::CONTINUE
            }
            Trigger::Never => Decision::CONTINUE,
        }
    }

    /// An event-time timer of the window fired at `time`.
    pub fn on_event_time(&self, ctx: &mut TriggerCtx<'_>, time: i64) -> Decision {
        match self {
            Trigger::EventTime => {
                if time == ctx.max_timestamp() {
                    Decision::FIRE
                } else {
                    Decision::CONTINUE
                }
            }
            Trigger::Purging(inner) => purging(inner.on_event_time(ctx, time)),
            Trigger::ContinuousEventTime(interval) => {
                if time == ctx.max_timestamp() {
                    return Decision::FIRE;
                }
                if ctx.get(ctx.window) == Some(time) {
                    ctx.put(None);
                    next_fire(ctx, TimerDomain::EventTime, time, *interval);
                    return Decision::FIRE;
                }
                Decision::CONTINUE
            }
            _ => Decision::CONTINUE,
        }
    }

    /// A processing-time timer of the window fired at `time`.
    pub fn on_processing_time(&self, ctx: &mut TriggerCtx<'_>, time: i64) -> Decision {
        match self {
            Trigger::ProcessingTime => Decision::FIRE,
            Trigger::Purging(inner) => purging(inner.on_processing_time(ctx, time)),
            Trigger::ContinuousProcessingTime(interval) => {
                if ctx.get(ctx.window) == Some(time) {
                    ctx.put(None);
                    next_fire(ctx, TimerDomain::ProcessingTime, time, *interval);
                    return Decision::FIRE;
                }
                Decision::CONTINUE
            }
            _ => Decision::CONTINUE,
        }
    }

    /// Windows `merged` merged into the context's window: merge their
    /// state into it and set its timers.
    pub fn on_merge(&self, ctx: &mut TriggerCtx<'_>, merged: &[Window]) {
        match self {
            Trigger::EventTime => {
                if ctx.max_timestamp() > ctx.watermark {
                    ctx.register(TimerDomain::EventTime, ctx.max_timestamp());
                }
            }
            Trigger::ProcessingTime => {
                if ctx.max_timestamp() > ctx.now {
                    ctx.register(TimerDomain::ProcessingTime, ctx.max_timestamp());
                }
            }
            Trigger::Count(_) => {
                let mut sum = ctx.get(ctx.window);
                for m in merged {
                    if let Some(c) = ctx.get(*m) {
                        sum = Some(sum.unwrap_or(0) + c);
                    }
                }
                if sum.is_some() {
                    ctx.put(sum);
                }
            }
            Trigger::Purging(inner) => inner.on_merge(ctx, merged),
            Trigger::ContinuousEventTime(_) | Trigger::ContinuousProcessingTime(_) => {
                let mut min = ctx.get(ctx.window);
                for m in merged {
                    if let Some(t) = ctx.get(*m) {
                        min = Some(min.map_or(t, |x| x.min(t)));
                    }
                }
                if let Some(t) = min {
                    ctx.put(Some(t));
                    let domain = if matches!(self, Trigger::ContinuousEventTime(_)) {
                        TimerDomain::EventTime
                    } else {
                        TimerDomain::ProcessingTime
                    };
                    ctx.register(domain, t);
                }
            }
            Trigger::Never => {}
        }
    }

    /// The window is gone: delete the trigger's timers and state.
    pub fn clear(&self, ctx: &mut TriggerCtx<'_>) {
        match self {
            Trigger::EventTime => ctx.delete(TimerDomain::EventTime, ctx.max_timestamp()),
            Trigger::ProcessingTime => ctx.delete(TimerDomain::ProcessingTime, ctx.max_timestamp()),
            Trigger::Count(_) => ctx.put(None),
            Trigger::Purging(inner) => inner.clear(ctx),
            Trigger::ContinuousEventTime(_) | Trigger::ContinuousProcessingTime(_) => {
                if let Some(t) = ctx.get(ctx.window) {
                    let domain = if matches!(self, Trigger::ContinuousEventTime(_)) {
                        TimerDomain::EventTime
                    } else {
                        TimerDomain::ProcessingTime
                    };
                    ctx.delete(domain, t);
                    ctx.put(None);
                }
            }
            Trigger::Never => {}
        }
    }
}

fn purging(d: Decision) -> Decision {
    if d.fire { Decision::FIRE_AND_PURGE } else { d }
}

/// Flink's `registerNextFireTimestamp`: the next firing one interval on,
/// but no later than the window's end.
fn next_fire(ctx: &mut TriggerCtx<'_>, domain: TimerDomain, time: i64, interval: i64) {
    let next = time.saturating_add(interval).min(ctx.max_timestamp());
    let next = match ctx.get(ctx.window) {
        Some(t) => t.min(next),
        None => next,
    };
    ctx.put(Some(next));
    ctx.register(domain, next);
}
