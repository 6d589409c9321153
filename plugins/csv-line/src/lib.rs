//! Formats JSON objects as CSV lines: each event's value becomes a JSON
//! string holding one line — an optional `prefix` cell, then the `fields`
//! named in the config, in order — for a sink with `format: text`.
//!
//! Config: `{"prefix": "tumble", "fields": ["key", "start", "end", "sum"],
//! "add": {"firing": 1}}`. `add` shifts integer fields (for counts that
//! start at 1 rather than 0). Strings are written as their text, other
//! values as JSON; a cell holding a comma, quote or line break is quoted
//! as RFC 4180 says. Keys and timestamps pass through unchanged.
use serde_json::Value;
use weir_sdk::{Error, Event, Map, Output, Result};

#[derive(Default)]
pub struct CsvLine {
    prefix: Option<String>,
    fields: Vec<(String, i64)>,
}

impl Map for CsvLine {
    fn open(&mut self, config: &Value) -> Result<()> {
        let bad = |what: &str| {
            Error::new(format!(
                "csv-line: {what}; config is {{\"prefix\": \"…\", \"fields\": [\"a\", \"b\"], \"add\": {{\"a\": 1}}}}"
            ))
        };
        self.prefix = match config.get("prefix") {
            None => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return Err(bad("`prefix` must be a string")),
        };
        let add = config.get("add").and_then(Value::as_object);
        let fields = config
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("`fields` (a list of field names) is missing"))?;
        for f in fields {
            let name = f.as_str().ok_or_else(|| bad("every entry of `fields` must be a field name"))?;
            let shift = match add.and_then(|a| a.get(name)) {
                None => 0,
                Some(v) => v.as_i64().ok_or_else(|| bad("`add` gives integers"))?,
            };
            self.fields.push((name.to_owned(), shift));
        }
        if self.fields.is_empty() {
            return Err(bad("`fields` is empty"));
        }
        Ok(())
    }

    fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
        let value: Value = event.json()?;
        let mut line = String::with_capacity(64);
        if let Some(p) = &self.prefix {
            cell(&mut line, p);
        }
        for (i, (name, shift)) in self.fields.iter().enumerate() {
            if i > 0 || self.prefix.is_some() {
                line.push(',');
            }
            let v = value.get(name).ok_or_else(|| Error::new(format!("csv-line: the value has no field `{name}`")))?;
            match v {
                Value::String(s) => cell(&mut line, s),
                Value::Number(n) if *shift != 0 => {
                    let i = n.as_i64().ok_or_else(|| {
                        Error::new(format!("csv-line: `add` shifts `{name}`, which is not an integer"))
                    })?;
                    line.push_str(&(i + shift).to_string());
                }
                other => cell(&mut line, &other.to_string()),
            }
        }
        out.emit_json(event.key, &line, event.timestamp)
    }
}

/// Appends one CSV cell, quoted when it must be.
fn cell(line: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&text.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(text);
    }
}

weir_sdk::export_map!(CsvLine);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::MapHarness;

    fn format(config: Value, value: Value) -> Result<String> {
        let mut h = MapHarness::with_config(CsvLine::default(), config)?;
        let out = h.map(b"k", value.to_string().as_bytes(), Some(7))?;
        out[0].json::<String>()
    }

    #[test]
    fn fields_become_one_line_in_order() {
        let line = format(
            json!({"prefix": "tumble", "fields": ["key", "start", "sum"]}),
            json!({"sum": 12, "key": "k0", "start": 1000, "end": 2000}),
        )
        .unwrap();
        assert_eq!(line, "tumble,k0,1000,12");
    }

    #[test]
    fn add_shifts_integers_and_cells_are_quoted_when_needed() {
        let line = format(
            json!({"fields": ["key", "firing", "note"], "add": {"firing": 1}}),
            json!({"key": "a,b", "firing": 0, "note": "say \"hi\""}),
        )
        .unwrap();
        assert_eq!(line, "\"a,b\",1,\"say \"\"hi\"\"\"");
    }

    #[test]
    fn a_missing_field_or_bad_config_is_named() {
        let err = format(json!({"fields": ["nope"]}), json!({"key": "k"})).unwrap_err();
        assert!(err.message().contains("no field `nope`"), "{err}");
        let err = format(json!({"prefix": 3, "fields": ["a"]}), json!({})).unwrap_err();
        assert!(err.message().contains("`prefix` must be a string"), "{err}");
    }
}
