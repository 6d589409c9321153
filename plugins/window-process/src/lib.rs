//! A process-window function as a Wasm component of the `function`
//! world (Flink's `ProcessWindowFunction`): the host keeps every element
//! of a window and hands them over when it fires. Config:
//!
//! - `{"type": "median", "field": "value"}`: the median of the numeric
//!   `field` (the mean of the middle two for an even count), as
//!   `{"key", "start", "end", "firing", "count", "median"}`;
//! - `{"type": "list"}`: every element's value in arrival order, as
//!   `{"key", "start", "end", "firing", "values": [...]}`.
use serde_json::{Value, json};
use weir_sdk::{Error, Event, Output, ProcessWindowFunction, Result, WindowContext};

#[derive(Default)]
pub struct WindowProcess {
    median_of: Option<String>,
}

impl ProcessWindowFunction for WindowProcess {
    fn open(&mut self, config: &Value) -> Result<()> {
        let bad = |what: &str| {
            Error::new(format!(
                "window-process: {what}; config is {{\"type\": \"median\", \"field\": \"value\"}} or {{\"type\": \"list\"}}"
            ))
        };
        self.median_of = match config.get("type").and_then(Value::as_str) {
            Some("median") => Some(
                config.get("field").and_then(Value::as_str).ok_or_else(|| bad("`field` names the number"))?.to_owned(),
            ),
            Some("list") => None,
            _ => return Err(bad("`type` is median or list")),
        };
        Ok(())
    }

    fn process(&mut self, elements: &[Event<'_>], ctx: &WindowContext<'_>, out: &mut Output) -> Result<()> {
        let mut v = serde_json::Map::new();
        if !ctx.key.is_empty() {
            v.insert("key".into(), json!(String::from_utf8_lossy(ctx.key)));
        }
        if !ctx.window.is_global() {
            v.insert("start".into(), json!(ctx.window.start));
            v.insert("end".into(), json!(ctx.window.end));
        }
        v.insert("firing".into(), json!(ctx.firing));
        match &self.median_of {
            Some(field) => {
                let mut xs = elements
                    .iter()
                    .map(|e| {
                        let v: Value = e.json()?;
                        v.get(field).and_then(Value::as_f64).ok_or_else(|| {
                            Error::new(format!("the median needs a number in `{field}`; fix the data or its `field`"))
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?;
                xs.sort_by(f64::total_cmp);
                let n = xs.len();
                let median = match n {
                    0 => Value::Null,
                    _ if n % 2 == 1 => json!(xs[n / 2]),
                    _ => json!((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
                };
                v.insert("count".into(), json!(n));
                v.insert("median".into(), median);
            }
            None => {
                let values = elements.iter().map(|e| e.json::<Value>()).collect::<Result<Vec<Value>>>()?;
                v.insert("values".into(), Value::Array(values));
            }
        }
        out.emit_json(ctx.key, &v, None)
    }
}

weir_sdk::export_window_function!(process WindowProcess);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::Window;
    use weir_sdk::testing::WindowFunctionHarness;

    #[test]
    fn the_median_and_the_list_see_every_element() {
        let w = Window { start: 0, end: 10 };
        let mut h =
            WindowFunctionHarness::process_with(WindowProcess::default(), json!({"type": "median", "field": "v"}))
                .unwrap();
        for x in [5, 1, 9, 3] {
            h.add_json(b"k", w, &json!({"v": x}), 0).unwrap();
        }
        let out: Value = h.fire(b"k", w).unwrap()[0].json().unwrap();
        assert_eq!((out["median"].clone(), out["count"].clone()), (json!(4.0), json!(4)));
        let mut h = WindowFunctionHarness::process_with(WindowProcess::default(), json!({"type": "list"})).unwrap();
        h.add_json(b"k", w, &json!(1), 0).unwrap();
        h.add_json(b"k", Window { start: 5, end: 15 }, &json!(2), 0).unwrap();
        h.merge(b"k", w, Window { start: 5, end: 15 }).unwrap();
        let out: Value = h.fire(b"k", w).unwrap()[0].json().unwrap();
        assert_eq!(out["values"], json!([1, 2]));
        let again: Value = h.fire(b"k", w).unwrap()[0].json().unwrap();
        assert_eq!(again["firing"], json!(1));
    }
}
