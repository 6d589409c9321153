//! Flink's three evictors as one Wasm component (the `evictor` world), the
//! same as the built-in ones, to show a custom evictor gives the same
//! results. Config:
//!
//! - `{"type": "count", "count": 2}`: keeps the last `count` elements;
//! - `{"type": "time", "keep_ms": 5000}`: keeps the elements newer than the
//!   newest one's timestamp minus `keep_ms`;
//! - `{"type": "delta", "field": "value", "threshold": 10}`: keeps the
//!   elements whose numeric `field` is within `threshold` of the last
//!   element's;
//!
//! each with `"after": true` to evict after the window's function instead
//! of before.
use serde_json::Value;
use weir_sdk::{Error, Event, Evictor, EvictorContext, Result, Window};

#[derive(Default)]
pub struct Evictors {
    rule: Rule,
    after: bool,
}

#[derive(Default)]
enum Rule {
    #[default]
    Unset,
    Count(usize),
    Time(i64),
    Delta {
        field: String,
        threshold: f64,
    },
}

impl Evictor for Evictors {
    fn open(&mut self, config: &Value) -> Result<()> {
        let bad = |what: &str| {
            Error::new(format!(
                "evictors: {what}; config is {{\"type\": \"count\", \"count\": 2}}, {{\"type\": \"time\", \"keep_ms\": 5000}} or {{\"type\": \"delta\", \"field\": \"value\", \"threshold\": 10}}"
            ))
        };
        let number = |name: &str| config.get(name).ok_or_else(|| bad(&format!("`{name}` is missing")));
        self.rule = match config.get("type").and_then(Value::as_str) {
            Some("count") => Rule::Count(
                number("count")?.as_u64().filter(|c| *c > 0).ok_or_else(|| bad("`count` is a positive integer"))?
                    as usize,
            ),
            Some("time") => Rule::Time(
                number("keep_ms")?.as_i64().filter(|k| *k >= 0).ok_or_else(|| bad("`keep_ms` is ms, 0 or more"))?,
            ),
            Some("delta") => Rule::Delta {
                field: config
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`field` names a number"))?
                    .to_owned(),
                threshold: number("threshold")?.as_f64().ok_or_else(|| bad("`threshold` is a number"))?,
            },
            _ => return Err(bad("`type` is count, time or delta")),
        };
        self.after = config.get("after").and_then(Value::as_bool).unwrap_or(false);
        Ok(())
    }

    fn evict_before(&mut self, elements: &[Event<'_>], _: Window, _: &EvictorContext, keep: &mut [bool]) -> Result<()> {
        if self.after { Ok(()) } else { self.evict(elements, keep) }
    }

    fn evict_after(&mut self, elements: &[Event<'_>], _: Window, _: &EvictorContext, keep: &mut [bool]) -> Result<()> {
        if self.after { self.evict(elements, keep) } else { Ok(()) }
    }
}

impl Evictors {
    fn evict(&self, elements: &[Event<'_>], keep: &mut [bool]) -> Result<()> {
        match &self.rule {
            Rule::Unset => Ok(()),
            Rule::Count(count) => {
                let drop = elements.len().saturating_sub(*count);
                keep[..drop].iter_mut().for_each(|k| *k = false);
                Ok(())
            }
            Rule::Time(keep_ms) => {
                // Flink evicts by time only when the elements carry timestamps.
                if elements.first().is_none_or(|e| e.timestamp.is_none()) {
                    return Ok(());
                }
                let newest = elements.iter().filter_map(|e| e.timestamp).max().unwrap_or(i64::MIN);
                let cutoff = newest.saturating_sub(*keep_ms);
                for (k, e) in keep.iter_mut().zip(elements) {
                    *k = e.timestamp.is_none_or(|t| t > cutoff);
                }
                Ok(())
            }
            Rule::Delta { field, threshold } => {
                let Some(last) = elements.last() else { return Ok(()) };
                let value = |e: &Event<'_>| -> Result<f64> {
                    let v: Value = e.json()?;
                    v.get(field).and_then(Value::as_f64).ok_or_else(|| {
                        Error::new(format!(
                            "the delta evictor needs a number in `{field}`; fix the data or its `field`"
                        ))
                    })
                };
                let last = value(last)?;
                for (k, e) in keep.iter_mut().zip(elements) {
                    *k = (value(e)? - last).abs() < *threshold;
                }
                Ok(())
            }
        }
    }
}

weir_sdk::export_evictor!(Evictors);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kept(config: Value, ts: &[i64]) -> Result<Vec<i64>> {
        let mut e = Evictors::default();
        e.open(&config)?;
        let values: Vec<Vec<u8>> = ts.iter().map(|t| json!({"value": t}).to_string().into_bytes()).collect();
        let events: Vec<Event<'_>> =
            ts.iter().zip(&values).map(|(t, v)| Event { key: b"", value: v, timestamp: Some(*t) }).collect();
        let mut keep = vec![true; ts.len()];
        let w = Window { start: i64::MIN, end: i64::MAX };
        let ctx = EvictorContext { watermark: 0, processing_time: 0 };
        e.evict_before(&events, w, &ctx, &mut keep)?;
        e.evict_after(&events, w, &ctx, &mut keep)?;
        Ok(ts.iter().zip(keep).filter(|(_, k)| *k).map(|(t, _)| *t).collect())
    }

    #[test]
    fn each_rule_keeps_what_flinks_evictor_keeps() {
        let ts = [5, 1, 9, 3];
        assert_eq!(kept(json!({"type": "count", "count": 2}), &ts).unwrap(), [9, 3]);
        assert_eq!(kept(json!({"type": "time", "keep_ms": 4}), &ts).unwrap(), [9]);
        assert_eq!(kept(json!({"type": "time", "keep_ms": 6}), &ts).unwrap(), [5, 9]);
        assert_eq!(kept(json!({"type": "delta", "field": "value", "threshold": 3}), &ts).unwrap(), [5, 1, 3]);
        assert_eq!(kept(json!({"type": "count", "count": 1, "after": true}), &ts).unwrap(), [3]);
    }

    #[test]
    fn a_bad_config_says_what_to_write() {
        let err = kept(json!({"type": "count"}), &[1]).unwrap_err();
        assert!(err.message().contains("`count` is missing"), "{err}");
        let err = kept(json!({"type": "nope"}), &[1]).unwrap_err();
        assert!(err.message().contains("count, time or delta"), "{err}");
    }
}
