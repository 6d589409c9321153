//! Operators' own metrics (counters and gauges, as Flink's
//! `getMetricGroup()`), reported by the guest through `host.report-metrics`
//! at the end of a call and read by the control plane. One
//! [`UserMetrics`] per instance, shared with whoever reads it.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most metrics one instance may have.
pub const MAX_METRICS: usize = 256;

/// One metric's value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum UserMetric {
    /// A counter: the sum of its increments.
    Counter(i64),
    /// A gauge: its last value.
    Gauge(f64),
}

/// An instance's metrics, by name.
#[derive(Debug, Default)]
pub struct UserMetrics {
    by_name: Mutex<BTreeMap<String, UserMetric>>,
}

/// Whether `name` may name a metric: 1 to 128 of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl UserMetrics {
    /// Every metric now, by name.
    pub fn snapshot(&self) -> Vec<(String, UserMetric)> {
        let m = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Applies a guest's flat report (`report-metrics`): metric `i` named
    /// by `names[ends[i-1]..ends[i]]`, changed by value `i`.
    pub(crate) fn report(
        &self,
        names: &[u8],
        ends: &[u32],
        values: impl ExactSizeIterator<Item = UserMetric>,
    ) -> Result<(), String> {
        if ends.len() != values.len() || ends.len() > MAX_METRICS {
            return Err(format!(
                "a report names {} metrics and gives {} values; it must give one value per name, at most {MAX_METRICS}",
                ends.len(),
                values.len()
            ));
        }
        let mut updates = Vec::with_capacity(ends.len());
        let mut start = 0usize;
        for (&end, value) in ends.iter().zip(values) {
            let end = end as usize;
            let name = names
                .get(start..end)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| format!("metric names: bytes {start}..{end} of {} are not a UTF-8 name", names.len()))?;
            updates.push((name.to_owned(), value));
            start = end;
        }
        self.apply(updates)
    }

    /// Applies a report: all of it, or (on the first bad update) none of
    /// it, with the reason.
    pub(crate) fn apply(&self, updates: impl IntoIterator<Item = (String, UserMetric)>) -> Result<(), String> {
        let mut m = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = m.clone();
        for (name, value) in updates {
            if let UserMetric::Gauge(g) = value
                && !g.is_finite()
            {
                return Err(format!("gauge `{name}` is {g}: a gauge must be a finite number"));
            }
            if !valid_name(&name) {
                let shown: String = name.chars().take(40).collect();
                return Err(format!(
                    "metric name `{shown}` is not 1 to 128 characters of letters, digits, `_`, `.` and `-`"
                ));
            }
            let len = next.len();
            match (next.get_mut(&name), value) {
                (Some(UserMetric::Counter(c)), UserMetric::Counter(d)) => *c = c.saturating_add(d),
                (Some(UserMetric::Gauge(g)), UserMetric::Gauge(v)) => *g = v,
                (Some(_), _) => {
                    return Err(format!("metric `{name}` is a counter and a gauge; give each its own name"));
                }
                (None, _) if len >= MAX_METRICS => {
                    return Err(format!("metric `{name}` is one too many: an operator has at most {MAX_METRICS}"));
                }
                (None, v) => {
                    next.insert(name, v);
                }
            }
        }
        *m = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_gauges_replace_and_a_bad_report_changes_nothing() {
        let m = UserMetrics::default();
        m.apply([("words".into(), UserMetric::Counter(3)), ("lag".into(), UserMetric::Gauge(1.5))]).unwrap();
        m.apply([("words".into(), UserMetric::Counter(4)), ("lag".into(), UserMetric::Gauge(0.5))]).unwrap();
        assert_eq!(
            m.snapshot(),
            vec![("lag".into(), UserMetric::Gauge(0.5)), ("words".into(), UserMetric::Counter(7))]
        );
        let e = m.apply([("words".into(), UserMetric::Counter(1)), ("words".into(), UserMetric::Gauge(1.0))]);
        assert!(e.unwrap_err().contains("a counter and a gauge"));
        assert!(m.apply([("no spaces".into(), UserMetric::Counter(1))]).is_err());
        assert_eq!(m.snapshot()[1], ("words".into(), UserMetric::Counter(7)), "nothing of a refused report");
        let many = (0..MAX_METRICS).map(|i| (format!("m{i}"), UserMetric::Counter(1)));
        assert!(m.apply(many).unwrap_err().contains("one too many"));
        assert!(m.apply([("nan".into(), UserMetric::Gauge(f64::NAN))]).unwrap_err().contains("finite"));
    }

    #[test]
    fn a_flat_report_is_split_by_its_ends_and_checked() {
        let m = UserMetrics::default();
        let values = [UserMetric::Counter(2), UserMetric::Gauge(0.5)];
        m.report(b"wordslag", &[5, 8], values.into_iter()).unwrap();
        assert_eq!(
            m.snapshot(),
            vec![("lag".into(), UserMetric::Gauge(0.5)), ("words".into(), UserMetric::Counter(2))]
        );
        assert!(m.report(b"words", &[5, 9], values.into_iter()).is_err(), "an end past the names");
        assert!(m.report(b"words", &[5], values.into_iter()).is_err(), "two values for one name");
        assert!(m.report(b"\xff\xfe", &[2], [UserMetric::Counter(1)].into_iter()).is_err(), "not UTF-8");
    }
}
