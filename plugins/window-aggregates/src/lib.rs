//! Window aggregates as a Wasm component of the `function` world, written
//! as a Flink `AggregateFunction`: `sum`, `count`, `min`, `max` and `avg`
//! over a numeric JSON field, folded incrementally into one accumulator
//! per window, with the same output as the built-in functions
//! (`{"key", "start", "end", "firing", "<type>": result}`), to show a Wasm
//! function gives the same results. Config: `{"type": "sum", "field":
//! "value"}` (`count` needs no field).
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weir_sdk::{Error, Event, Output, Result, WindowAggregateFunction, WindowContext};

#[derive(Default)]
pub struct Aggregates {
    kind: String,
    field: Option<String>,
}

/// A JSON number: integers stay integers until a float joins them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_add(b).map_or(Num::Float(a as f64 + b as f64), Num::Int),
            (a, b) => Num::Float(a.f64() + b.f64()),
        }
    }

    fn less(self, other: Num) -> bool {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a < b,
            (a, b) => a.f64() < b.f64(),
        }
    }

    fn json(self) -> Value {
        match self {
            Num::Int(i) => json!(i),
            Num::Float(f) => json!(f),
        }
    }
}

/// Everything every kind needs; only its own part is used.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Acc {
    count: u64,
    sum: Option<Num>,
    /// The mean's sum, in floating point as the built-in `avg` keeps it.
    fsum: f64,
    min: Option<Num>,
    max: Option<Num>,
}

impl Aggregates {
    fn number(&self, event: &Event<'_>) -> Result<Option<Num>> {
        let Some(field) = &self.field else { return Ok(None) };
        let v: Value = event.json()?;
        // A name or a /json/pointer, as the built-ins read it.
        let found = if field.starts_with('/') { v.pointer(field) } else { v.get(field) };
        match found {
            Some(Value::Number(n)) => Ok(Some(match n.as_i64() {
                Some(i) => Num::Int(i),
                None => Num::Float(n.as_f64().ok_or_else(|| Error::new(format!("`{field}` is not a finite number")))?),
            })),
            Some(other) => Err(Error::new(format!("`{field}` holds {other}, not a number"))),
            None => Err(Error::new(format!("value has no field `{field}`"))),
        }
    }
}

impl WindowAggregateFunction for Aggregates {
    type Acc = Acc;

    fn open(&mut self, config: &Value) -> Result<()> {
        let bad = |what: &str| {
            Error::new(format!(
                "window-aggregates: {what}; config is {{\"type\": \"sum\", \"field\": \"value\"}} (sum, count, min, max or avg)"
            ))
        };
        self.kind = match config.get("type").and_then(Value::as_str) {
            Some(k @ ("sum" | "count" | "min" | "max" | "avg")) => k.to_owned(),
            _ => return Err(bad("`type` is sum, count, min, max or avg")),
        };
        self.field = config.get("field").and_then(Value::as_str).map(str::to_owned);
        if self.field.is_none() && self.kind != "count" {
            return Err(bad("`field` names the number read"));
        }
        Ok(())
    }

    fn create_accumulator(&mut self) -> Acc {
        Acc::default()
    }

    fn add(&mut self, event: &Event<'_>, acc: &mut Acc) -> Result<()> {
        acc.count += 1;
        if let Some(x) = self.number(event)? {
            acc.sum = Some(acc.sum.map_or(x, |s| s.add(x)));
            acc.fsum += x.f64();
            acc.min = Some(acc.min.map_or(x, |m| if x.less(m) { x } else { m }));
            acc.max = Some(acc.max.map_or(x, |m| if m.less(x) { x } else { m }));
        }
        Ok(())
    }

    fn merge(&mut self, acc: &mut Acc, other: Acc) -> Result<()> {
        acc.count += other.count;
        acc.fsum += other.fsum;
        let pick = |a: Option<Num>, b: Option<Num>, f: fn(Num, Num) -> Num| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        acc.sum = pick(acc.sum, other.sum, Num::add);
        acc.min = pick(acc.min, other.min, |a, b| if b.less(a) { b } else { a });
        acc.max = pick(acc.max, other.max, |a, b| if a.less(b) { b } else { a });
        Ok(())
    }

    fn get_result(&mut self, acc: &Acc, ctx: &WindowContext<'_>, out: &mut Output) -> Result<()> {
        let result = match self.kind.as_str() {
            "count" => json!(acc.count),
            "sum" => acc.sum.unwrap_or(Num::Int(0)).json(),
            "min" => acc.min.map_or(Value::Null, Num::json),
            "max" => acc.max.map_or(Value::Null, Num::json),
            _ if acc.count > 0 => json!(acc.fsum / acc.count as f64),
            _ => Value::Null,
        };
        let mut v = serde_json::Map::new();
        if !ctx.key.is_empty() {
            v.insert("key".into(), json!(String::from_utf8_lossy(ctx.key)));
        }
        if !ctx.window.is_global() {
            v.insert("start".into(), json!(ctx.window.start));
            v.insert("end".into(), json!(ctx.window.end));
        }
        v.insert("firing".into(), json!(ctx.firing));
        v.insert(self.kind.clone(), result);
        out.emit_json(ctx.key, &v, None)
    }
}

weir_sdk::export_window_function!(aggregate Aggregates);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::Window;

    fn run(config: Value, values: &[Value]) -> Value {
        let mut h = weir_sdk::testing::WindowFunctionHarness::aggregate_with(Aggregates::default(), config).unwrap();
        // Two halves merged, as session windows would.
        let (w, other) = (Window { start: 0, end: 10 }, Window { start: 5, end: 15 });
        for (i, v) in values.iter().enumerate() {
            h.add_json(b"k", if i % 2 == 0 { w } else { other }, v, 0).unwrap();
        }
        h.merge(b"k", w, other).unwrap();
        h.fire(b"k", w).unwrap()[0].json().unwrap()
    }

    #[test]
    fn each_kind_aggregates_as_the_built_in() {
        let vs = [json!({"v": 1}), json!({"v": 2}), json!({"v": -7})];
        let f = |k: &str| json!({"type": k, "field": "v"});
        assert_eq!(run(f("sum"), &vs)["sum"], json!(-4));
        assert_eq!(run(json!({"type": "count"}), &vs)["count"], json!(3));
        assert_eq!(run(f("min"), &vs)["min"], json!(-7));
        assert_eq!(run(f("max"), &vs)["max"], json!(2));
        assert_eq!(run(f("avg"), &[json!({"v": 1}), json!({"v": 2})])["avg"], json!(1.5));
        assert_eq!(run(f("sum"), &[json!({"v": 1}), json!({"v": 2.5})])["sum"], json!(3.5));
        let r = run(f("sum"), &vs);
        assert_eq!((r["key"].clone(), r["start"].clone(), r["end"].clone()), (json!("k"), json!(0), json!(10)));
    }
}
