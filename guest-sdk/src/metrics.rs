//! The operator's own metrics, as Flink's `getMetricGroup()`: counters and
//! gauges by name, shown per subtask beside the built-in metrics (the REST
//! API's `user-metrics`, `/metrics`). Changes are kept in the instance and
//! reported to the host once at the end of each call that made any, never
//! per record.
//!
//! ```
//! use weir_sdk::metrics::{Counter, Gauge};
//!
//! let words = Counter::new("words");
//! let longest = Gauge::new("longest-word");
//! words.add(3);
//! words.inc();
//! longest.set(11.0);
//! ```

use std::cell::RefCell;

/// Most metrics one operator instance may have.
pub const MAX_METRICS: usize = 256;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
}

struct Metric {
    name: String,
    kind: Kind,
    /// The counter's increment, or the gauge's value, since the last report.
    pending: f64,
    delta: i64,
    dirty: bool,
}

thread_local! {
    static METRICS: RefCell<Vec<Metric>> = const { RefCell::new(Vec::new()) };
}

fn register(name: &str, kind: Kind) -> usize {
    let valid =
        (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    assert!(valid, "metric name `{name}` is not 1 to 128 characters of letters, digits, `_`, `.` and `-`");
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(i) = m.iter().position(|x| x.name == name) {
            assert!(m[i].kind == kind, "metric `{name}` is a counter and a gauge; give each its own name");
            return i;
        }
        assert!(m.len() < MAX_METRICS, "metric `{name}` is one too many: an operator has at most {MAX_METRICS}");
        // Dirty from the start: a counter that stays at zero is shown too.
        m.push(Metric { name: name.to_owned(), kind, pending: 0.0, delta: 0, dirty: true });
        m.len() - 1
    })
}

/// A counter: a total that its increments change (a negative one counts
/// down). Two `Counter`s of one name are one counter.
#[derive(Debug, Clone, Copy)]
pub struct Counter(usize);

impl Counter {
    /// The counter `name` (1 to 128 of `A-Z a-z 0-9 _ . -`), starting at
    /// zero. Panics on a bad name, or a name that is a gauge.
    pub fn new(name: &str) -> Counter {
        Counter(register(name, Kind::Counter))
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: i64) {
        METRICS.with(|m| {
            let mut m = m.borrow_mut();
            let x = &mut m[self.0];
            x.delta = x.delta.saturating_add(n);
            x.dirty = true;
        });
    }
}

/// A gauge: a value the operator sets.
#[derive(Debug, Clone, Copy)]
pub struct Gauge(usize);

impl Gauge {
    /// The gauge `name`. Panics on a bad name, or a name that is a counter.
    pub fn new(name: &str) -> Gauge {
        Gauge(register(name, Kind::Gauge))
    }

    /// Sets its value. It must be a finite number: the host refuses a NaN
    /// or infinite gauge, failing the job with its name.
    pub fn set(&self, value: f64) {
        METRICS.with(|m| {
            let mut m = m.borrow_mut();
            let x = &mut m[self.0];
            x.pending = value;
            x.dirty = true;
        });
    }
}

/// A metric's change since the last report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    Counter(i64),
    Gauge(f64),
}

/// Takes the changes since the last call (the SDK reports them to the
/// host at the end of each call; natively, tests read them).
pub(crate) fn take_changes() -> Vec<(String, Change)> {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        let mut out = Vec::new();
        for x in m.iter_mut().filter(|x| x.dirty) {
            out.push((
                x.name.clone(),
                match x.kind {
                    Kind::Counter => Change::Counter(std::mem::take(&mut x.delta)),
                    Kind::Gauge => Change::Gauge(x.pending),
                },
            ));
            x.dirty = false;
        }
        out
    })
}

/// Reports the changes since the last report to the host (a component's
/// export glue calls it at the end of each call).
#[cfg(target_arch = "wasm32")]
pub(crate) fn flush() {
    use crate::__wasm::map_bindings::weir::operator::{host, types};
    let changes = take_changes();
    if changes.is_empty() {
        return;
    }
    let mut names = Vec::new();
    let mut ends = Vec::with_capacity(changes.len());
    let mut values = Vec::with_capacity(changes.len());
    for (name, c) in changes {
        names.extend_from_slice(name.as_bytes());
        ends.push(names.len() as u32);
        values.push(match c {
            Change::Counter(d) => types::MetricValue::Counter(d),
            Change::Gauge(v) => types::MetricValue::Gauge(v),
        });
    }
    if let Err(e) = host::report_metrics(&names, &ends, &values) {
        panic!("the host refused the operator's metrics: {e}");
    }
}

/// The totals of the metrics reported so far in this thread (native
/// tests: the harnesses report after each call as a component would).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn flush() {
    let changes = take_changes();
    TOTALS.with(|t| {
        let mut t = t.borrow_mut();
        for (name, c) in changes {
            let e = t.entry(name).or_insert(match c {
                Change::Counter(_) => Change::Counter(0),
                Change::Gauge(v) => Change::Gauge(v),
            });
            match (e, c) {
                (Change::Counter(total), Change::Counter(d)) => *total = total.saturating_add(d),
                (g, c) => *g = c,
            }
        }
    });
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static TOTALS: RefCell<std::collections::BTreeMap<String, Change>> = const { RefCell::new(std::collections::BTreeMap::new()) };
}

/// A metric's value as the host would show it (natively, in tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn reported(name: &str) -> Option<f64> {
    flush();
    TOTALS.with(|t| {
        t.borrow().get(name).map(|c| match c {
            Change::Counter(n) => *n as f64,
            Change::Gauge(v) => *v,
        })
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_gauges_keep_their_last_value() {
        let c = Counter::new("events");
        let again = Counter::new("events");
        c.add(2);
        again.inc();
        let g = Gauge::new("level");
        g.set(4.0);
        g.set(2.5);
        assert_eq!(reported("events"), Some(3.0));
        assert_eq!(reported("level"), Some(2.5));
        c.inc();
        assert_eq!(reported("events"), Some(4.0));
        assert_eq!(reported("unknown"), None);
    }

    #[test]
    #[should_panic(expected = "is a counter and a gauge")]
    fn one_name_is_one_kind() {
        Counter::new("both");
        Gauge::new("both");
    }
}
