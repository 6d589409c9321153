//! A test window function written as a Flink `ReduceFunction`: keeps the
//! element whose `field` (config `{"field": "v"}`) is largest (the first
//! of equals), and emits it with the window's bounds and firing.
use serde_json::{Value, json};
use weir_sdk::{Error, Output, ReduceFunction, Result, WindowContext};

#[derive(Default)]
pub struct MaxBy {
    field: String,
}

impl MaxBy {
    fn of(&self, v: &Value) -> Result<f64> {
        v.get(&self.field).and_then(Value::as_f64).ok_or_else(|| Error::new(format!("no number in `{}`", self.field)))
    }
}

impl ReduceFunction for MaxBy {
    type T = Value;

    fn open(&mut self, config: &Value) -> Result<()> {
        self.field = config.get("field").and_then(Value::as_str).unwrap_or("v").to_owned();
        Ok(())
    }

    fn reduce(&mut self, a: Value, b: Value) -> Result<Value> {
        Ok(if self.of(&b)? > self.of(&a)? { b } else { a })
    }

    fn result(&mut self, value: &Value, ctx: &WindowContext<'_>, out: &mut Output) -> Result<()> {
        let v = json!({"key": String::from_utf8_lossy(ctx.key), "start": ctx.window.start, "end": ctx.window.end, "firing": ctx.firing, "max": value});
        out.emit_json(ctx.key, &v, None)
    }
}

weir_sdk::export_window_function!(reduce MaxBy);
