//! A dynamic session gap (the `session-gap` world), Flink's
//! `SessionWindowTimeGapExtractor`: each element's session gap is the
//! number in its JSON `field`, or `gap_ms` when it has none. Config:
//! `{"field": "gap_ms", "gap_ms": 3000}` (both optional; without either,
//! every element needs the field `gap_ms`).
use serde_json::Value;
use weir_sdk::{Error, Event, Result, SessionGap};

#[derive(Default)]
pub struct FieldGap {
    field: String,
    default: Option<i64>,
}

impl SessionGap for FieldGap {
    fn open(&mut self, config: &Value) -> Result<()> {
        let bad = |what: &str| {
            Error::new(format!("session-gap: {what}; config is {{\"field\": \"gap_ms\", \"gap_ms\": 3000}}"))
        };
        self.field = match config.get("field") {
            None => "gap_ms".to_owned(),
            Some(f) => f.as_str().ok_or_else(|| bad("`field` names a JSON field"))?.to_owned(),
        };
        self.default = match config.get("gap_ms") {
            None => None,
            Some(g) => Some(g.as_i64().filter(|g| *g > 0).ok_or_else(|| bad("`gap_ms` is a positive integer"))?),
        };
        Ok(())
    }

    fn gap(&mut self, event: &Event<'_>) -> Result<i64> {
        let value: Value = event.json()?;
        match value.get(&self.field) {
            Some(v) => v.as_i64().ok_or_else(|| {
                Error::new(format!(
                    "`{}` is {v}, not a whole number of ms; fix the data or the gap's `field`",
                    self.field
                ))
            }),
            None => self.default.ok_or_else(|| {
                Error::new(format!("the record has no `{}` and the gap has no `gap_ms` to fall back on", self.field))
            }),
        }
    }
}

weir_sdk::export_session_gap!(FieldGap);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gap(config: Value, value: Value) -> Result<i64> {
        let mut g = FieldGap::default();
        g.open(&config)?;
        let bytes = value.to_string().into_bytes();
        g.gap(&Event { key: b"k", value: &bytes, timestamp: Some(1) })
    }

    #[test]
    fn the_field_gives_the_gap_and_the_config_the_fallback() {
        assert_eq!(gap(json!({}), json!({"gap_ms": 700})).unwrap(), 700);
        assert_eq!(gap(json!({"field": "g", "gap_ms": 50}), json!({"v": 1})).unwrap(), 50);
        assert_eq!(gap(json!({"field": "g", "gap_ms": 50}), json!({"g": 9})).unwrap(), 9);
        let err = gap(json!({}), json!({"v": 1})).unwrap_err();
        assert!(err.message().contains("no `gap_ms`"), "{err}");
        let err = gap(json!({"gap_ms": -1}), json!({})).unwrap_err();
        assert!(err.message().contains("positive"), "{err}");
    }
}
