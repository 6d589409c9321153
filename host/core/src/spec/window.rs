//! The spec of a window operator (`kind: window` or `window-all`): its
//! assigner, trigger, evictor, lateness and function, after Flink's
//! `WindowedStream`. Checked here; the runtime trusts what passes.

use serde::{Deserialize, Serialize};

/// Which windows an element belongs to (Flink's `WindowAssigner`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum WindowSpec {
    /// Fixed-size, non-overlapping windows `[start, start + size)`, with
    /// `start` aligned to `offset` (epoch-aligned by default).
    Tumbling {
        /// Window length (ms).
        size_ms: i64,
        /// Shift of the window starts (ms), `0 <= offset < size`.
        #[serde(default)]
        offset_ms: i64,
        /// Event time (default) or processing time.
        #[serde(default)]
        time: TimeKind,
    },
    /// Windows of `size` starting every `slide`: an element is in
    /// `size / slide` of them.
    Sliding {
        /// Window length (ms).
        size_ms: i64,
        /// Distance between window starts (ms).
        slide_ms: i64,
        /// Shift of the window starts (ms), `0 <= offset < slide`.
        #[serde(default)]
        offset_ms: i64,
        /// Event time (default) or processing time.
        #[serde(default)]
        time: TimeKind,
    },
    /// Windows of activity that end after `gap` without an element; an
    /// element's window `[ts, ts + gap)` merges with those it overlaps or
    /// touches.
    Session {
        /// Inactivity gap (ms); or `gap`, computed per element.
        #[serde(default)]
        gap_ms: Option<i64>,
        /// A Wasm component of the `session-gap` world that gives each
        /// element's gap (Flink's `withDynamicGap`), instead of `gap-ms`.
        #[serde(default)]
        gap: Option<ComponentSpec>,
        /// Event time (default) or processing time.
        #[serde(default)]
        time: TimeKind,
    },
    /// One window per key for all time; its default trigger never fires.
    Global,
    /// Count windows: `size` elements per window, a new one every `slide`
    /// elements (default: `size`, tumbling). Flink's `countWindow`: a
    /// global window with a count trigger (purging when tumbling) and, when
    /// sliding, a count evictor.
    Count {
        /// Elements per window.
        size: u64,
        /// Elements between firings (default: `size`).
        #[serde(default)]
        slide: Option<u64>,
    },
}

/// A Wasm component with its config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentSpec {
    /// The `.wasm` component.
    pub component: std::path::PathBuf,
    /// Handed to its `init` as JSON.
    #[serde(default)]
    #[cfg_attr(feature = "arbitrary", arbitrary(with = super::arbitrary_config))]
    pub config: Option<serde_json::Value>,
}

impl Eq for ComponentSpec {}

/// Which clock a time window follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum TimeKind {
    /// The events' timestamps and the watermark.
    #[default]
    Event,
    /// The worker's wall clock when the element arrives.
    Processing,
}

/// When a window's function runs and when its contents go (Flink's
/// built-in `Trigger`s).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum TriggerSpec {
    /// Fires when the watermark passes the window's end (the default of
    /// event-time windows); re-fires on each element within the allowed
    /// lateness.
    EventTime,
    /// Fires when the wall clock passes the window's end (the default of
    /// processing-time windows).
    ProcessingTime,
    /// Fires on every `count`-th element of the window, then counts again.
    Count {
        /// Elements per firing.
        count: u64,
    },
    /// The wrapped trigger, with every firing also purging the window.
    Purging {
        /// The trigger that decides when.
        of: Box<TriggerSpec>,
    },
    /// Fires every `interval-ms` of event time, and at the window's end.
    ContinuousEventTime {
        /// Event time between firings (ms).
        interval_ms: i64,
    },
    /// Fires every `interval-ms` of processing time, and at the window's
    /// end.
    ContinuousProcessingTime {
        /// Processing time between firings (ms).
        interval_ms: i64,
    },
    /// Never fires (the global window's default).
    Never,
    /// A Wasm component of the `trigger` world decides.
    Component {
        /// The `.wasm` component.
        component: std::path::PathBuf,
        /// Handed to its `init` as JSON.
        #[serde(default)]
        #[cfg_attr(feature = "arbitrary", arbitrary(with = super::arbitrary_config))]
        config: Option<serde_json::Value>,
    },
}

impl TriggerSpec {
    /// The trigger's component, if it is one (also inside `purging`).
    pub fn component(&self) -> Option<(&std::path::Path, Option<&serde_json::Value>)> {
        match self {
            TriggerSpec::Component { component, config } => Some((component, config.as_ref())),
            TriggerSpec::Purging { of } => of.component(),
            _ => None,
        }
    }

    /// The component's path, to resolve against the spec's folder.
    pub fn component_mut(&mut self) -> Option<&mut std::path::PathBuf> {
        match self {
            TriggerSpec::Component { component, .. } => Some(component),
            TriggerSpec::Purging { of } => of.component_mut(),
            _ => None,
        }
    }
}

/// Which elements leave a window before or after its function runs
/// (Flink's built-in `Evictor`s). An evictor keeps every element, so the
/// function cannot pre-aggregate.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum EvictorSpec {
    /// Keeps the last `count` elements (in arrival order).
    Count {
        /// Elements kept.
        count: u64,
        /// Evict after the function runs instead of before.
        #[serde(default)]
        after: bool,
    },
    /// Keeps the elements at most `keep-ms` older than the newest one.
    Time {
        /// Age kept (ms), counted back from the newest element's timestamp.
        keep_ms: i64,
        /// Evict after the function runs instead of before.
        #[serde(default)]
        after: bool,
    },
    /// A Wasm component of the `evictor` world decides.
    Component {
        /// The `.wasm` component.
        component: std::path::PathBuf,
        /// Handed to its `init` as JSON.
        #[serde(default)]
        #[cfg_attr(feature = "arbitrary", arbitrary(with = super::arbitrary_config))]
        config: Option<serde_json::Value>,
    },
    /// Evicts the elements whose `field` differs from the last element's
    /// by `threshold` or more.
    Delta {
        /// The numeric JSON field compared (a name or a /json/pointer).
        field: String,
        /// Smallest difference evicted.
        threshold: f64,
        /// Evict after the function runs instead of before.
        #[serde(default)]
        after: bool,
    },
}

impl Eq for EvictorSpec {}

impl Eq for TriggerSpec {}

impl Eq for WindowFunctionSpec {}

/// What a window computes when it fires.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WindowFunctionSpec {
    /// A built-in aggregate, or `component`.
    #[serde(rename = "type")]
    pub kind: AggregateKind,
    /// The JSON field it reads (a name or a /json/pointer); not for
    /// `count`.
    #[serde(default)]
    pub field: Option<String>,
    /// `type: component`: a Wasm component of the `function` world
    /// (aggregate, reduce or process-window).
    #[serde(default)]
    pub component: Option<std::path::PathBuf>,
    /// Handed to the component's `init` as JSON.
    #[serde(default)]
    #[cfg_attr(feature = "arbitrary", arbitrary(with = super::arbitrary_config))]
    pub config: Option<serde_json::Value>,
}

/// Built-in aggregates over one numeric JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum AggregateKind {
    /// Sum (integers stay integers until one is not).
    Sum,
    /// Number of elements.
    Count,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Arithmetic mean.
    Avg,
    /// A Wasm component of the `function` world computes the output.
    Component,
}

impl AggregateKind {
    /// The output field that carries the result.
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Sum => "sum",
            AggregateKind::Count => "count",
            AggregateKind::Min => "min",
            AggregateKind::Max => "max",
            AggregateKind::Avg => "avg",
            AggregateKind::Component => "component",
        }
    }
}

/// What is wrong with a window operator's settings, if anything.
pub(crate) fn check(
    id: &str,
    window: Option<&WindowSpec>,
    trigger: Option<&TriggerSpec>,
    evictor: Option<&EvictorSpec>,
    function: Option<&WindowFunctionSpec>,
    allowed_lateness_ms: i64,
) -> Result<(), String> {
    let Some(window) = window else {
        return Err(format!(
            "window operator `{id}` needs `window:` (tumbling, sliding, session, global or count), e.g. `window: {{type: tumbling, size-ms: 5000}}`"
        ));
    };
    let positive = |what: &str, v: i64| {
        if v > 0 { Ok(()) } else { Err(format!("window operator `{id}`: {what} must be a positive number of ms")) }
    };
    match *window {
        WindowSpec::Tumbling { size_ms, offset_ms, .. } => {
            positive("size-ms", size_ms)?;
            if !(0..size_ms).contains(&offset_ms) {
                return Err(format!("window operator `{id}`: offset-ms must be at least 0 and below size-ms"));
            }
        }
        WindowSpec::Sliding { size_ms, slide_ms, offset_ms, .. } => {
            positive("size-ms", size_ms)?;
            positive("slide-ms", slide_ms)?;
            if !(0..slide_ms).contains(&offset_ms) {
                return Err(format!("window operator `{id}`: offset-ms must be at least 0 and below slide-ms"));
            }
            if size_ms / slide_ms > 10_000 {
                return Err(format!(
                    "window operator `{id}`: size-ms / slide-ms puts each element in more than 10000 windows; slide further"
                ));
            }
        }
        WindowSpec::Session { gap_ms: Some(gap_ms), gap: None, .. } => positive("gap-ms", gap_ms)?,
        WindowSpec::Session { gap_ms: None, gap: Some(_), .. } => {}
        WindowSpec::Session { .. } => {
            return Err(format!(
                "window operator `{id}`: a session window needs one of `gap-ms` (a fixed gap) and `gap: {{component: x.wasm}}` (a gap per element)"
            ));
        }
        WindowSpec::Global => {}
        WindowSpec::Count { size, slide } => {
            if size == 0 || slide == Some(0) {
                return Err(format!("window operator `{id}`: count windows need a size (and slide) of at least 1"));
            }
            if trigger.is_some() || evictor.is_some() {
                return Err(format!(
                    "window operator `{id}`: count windows set their own trigger and evictor; use `type: global` to choose them"
                ));
            }
        }
    }
    if allowed_lateness_ms < 0 {
        return Err(format!("window operator `{id}`: allowed-lateness-ms must not be negative"));
    }
    let mut t = trigger;
    while let Some(tr) = t {
        t = None;
        match tr {
            TriggerSpec::Count { count: 0 } => {
                return Err(format!("window operator `{id}`: a count trigger needs a count of at least 1"));
            }
            TriggerSpec::ContinuousEventTime { interval_ms }
            | TriggerSpec::ContinuousProcessingTime { interval_ms } => {
                positive("the trigger's interval-ms", *interval_ms)?
            }
            TriggerSpec::Purging { of } => t = Some(of),
            _ => {}
        }
    }
    match evictor {
        Some(EvictorSpec::Count { count: 0, .. }) => {
            return Err(format!("window operator `{id}`: a count evictor needs a count of at least 1"));
        }
        Some(EvictorSpec::Time { keep_ms, .. }) if *keep_ms < 0 => {
            return Err(format!("window operator `{id}`: a time evictor's keep-ms must not be negative"));
        }
        Some(EvictorSpec::Delta { threshold, .. }) if !threshold.is_finite() => {
            return Err(format!("window operator `{id}`: a delta evictor's threshold must be a finite number"));
        }
        _ => {}
    }
    let Some(f) = function else {
        return Err(format!(
            "window operator `{id}` needs `function:` (sum, count, min, max or avg), e.g. `function: {{type: sum, field: value}}`"
        ));
    };
    match (f.kind, &f.component) {
        (AggregateKind::Component, None) => {
            return Err(format!(
                "window operator `{id}`: function `component` needs the `component` (a .wasm of the `function` world)"
            ));
        }
        (AggregateKind::Component, Some(_)) if f.field.is_some() => {
            return Err(format!(
                "window operator `{id}`: function `component` reads what it likes; give the field in its `config`, not `field`"
            ));
        }
        (AggregateKind::Component, Some(_)) => return Ok(()),
        (_, None) if f.config.is_some() => {
            return Err(format!(
                "window operator `{id}`: `config` is for `function: {{type: component}}`; built-in functions take only `field`"
            ));
        }
        (_, Some(_)) => {
            return Err(format!(
                "window operator `{id}`: `component` is for `function: {{type: component}}`; built-in functions take only `field`"
            ));
        }
        _ => {}
    }
    match (f.kind, &f.field) {
        (AggregateKind::Count, _) => Ok(()),
        (k, None) => Err(format!(
            "window operator `{id}`: function `{}` needs the `field` it reads (a name or a /json/pointer)",
            k.name()
        )),
        (_, Some(_)) => Ok(()),
    }
}
