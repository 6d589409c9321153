//! Test operator: every kind of keyed state, driven by commands. Each
//! event's value is a JSON command (`{"value": 5}`, `{"list_add_all":
//! [1, 2]}`, `{"map_put": ["a", 3]}`, …, see [`Command`]); after applying
//! it, the operator emits what every state of the key then holds, so a
//! test sees each state type's behaviour through the real host backend.
use serde::{Deserialize, Serialize};
use serde_json::json;
use weir_sdk::{
    AggregateFunction, AggregatingState, Context, Event, Json, KeyedProcessFunction, ListState, MapState, OpenContext,
    Output, ReducingState, Result, StateTtl, ValueState,
};

/// One command per event.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Value(u64),
    ValueClear,
    Text(String),
    ListAdd(i64),
    ListAddAll(Vec<i64>),
    ListUpdate(Vec<i64>),
    ListClear,
    MapPut(String, i64),
    MapPutAll(Vec<(String, i64)>),
    MapRemove(String),
    MapClear,
    /// Puts `n` entries `e0000`..: more than one chunk of the host's scan.
    MapFill(u32),
    Reduce(i64),
    ReduceClear,
    Average(f64),
    AverageClear,
    /// Changes nothing: reads every state.
    Peek,
}

/// The average of the inputs: (count, sum) as accumulator.
pub struct Average;

impl AggregateFunction<f64, (u64, f64), f64> for Average {
    fn create_accumulator(&self) -> (u64, f64) {
        (0, 0.0)
    }
    fn add(&self, value: f64, (n, sum): (u64, f64)) -> (u64, f64) {
        (n + 1, sum + value)
    }
    fn get_result(&self, &(n, sum): &(u64, f64)) -> f64 {
        sum / n as f64
    }
}

#[derive(Default)]
pub struct StateKinds {
    value: ValueState<u64>,
    text: ValueState<String, Json>,
    list: ListState<i64>,
    map: MapState<String, i64>,
    sum: ReducingState<i64>,
    average: AggregatingState<f64, (u64, f64), f64>,
}

impl KeyedProcessFunction for StateKinds {
    fn open(&mut self, ctx: &mut OpenContext) -> Result<()> {
        self.value = ctx.value_state("value");
        self.text = ctx.value_state("text");
        self.list = ctx.list_state("list");
        self.map = ctx.map_state("map");
        self.sum = ctx.reducing_state("sum", |a, b| a + b);
        self.average = ctx.aggregating_state("average", Average);
        // `{"ttl_ms": N, "ttl_read": bool}`: value, list and map expire.
        if let Some(ms) = ctx.config().get("ttl_ms").and_then(|t| t.as_u64()) {
            let mut ttl = StateTtl::new(std::time::Duration::from_millis(ms));
            if ctx.config().get("ttl_read").and_then(|r| r.as_bool()) == Some(true) {
                ttl = ttl.update_on_read_and_write();
            }
            for name in ["value", "list", "map"] {
                ctx.enable_time_to_live(name, ttl);
            }
        }
        // `{"ttl_on": NAME}`: a time-to-live on a state by name, declared or not.
        if let Some(name) = ctx.config().get("ttl_on").and_then(|n| n.as_str()).map(str::to_owned) {
            ctx.enable_time_to_live(&name, StateTtl::new(std::time::Duration::from_secs(1)));
        }
        if ctx.config().get("conflict").is_some() {
            let _: ListState<u64> = ctx.list_state("value");
        }
        Ok(())
    }

    fn process(&mut self, event: &Event<'_>, ctx: &mut Context<'_>, out: &mut Output) -> Result<()> {
        let command: Command = event.json::<serde_json::Value>().and_then(|v| {
            serde_json::from_value(v.get("cmd").cloned().unwrap_or(v)).map_err(|e| format!("bad command: {e}").into())
        })?;
        match command {
            Command::Value(v) => self.value.update(ctx, &v)?,
            Command::ValueClear => self.value.clear(ctx)?,
            Command::Text(t) => self.text.update(ctx, &t)?,
            Command::ListAdd(v) => self.list.add(ctx, &v)?,
            Command::ListAddAll(v) => self.list.add_all(ctx, &v)?,
            Command::ListUpdate(v) => self.list.update(ctx, &v)?,
            Command::ListClear => self.list.clear(ctx)?,
            Command::MapPut(k, v) => self.map.put(ctx, &k, &v)?,
            Command::MapPutAll(entries) => self.map.put_all(ctx, &entries)?,
            Command::MapRemove(k) => self.map.remove(ctx, &k)?,
            Command::MapClear => self.map.clear(ctx)?,
            Command::MapFill(n) => {
                let entries: Vec<(String, i64)> = (0..n).map(|i| (format!("e{i:04}"), i64::from(i))).collect();
                self.map.put_all(ctx, &entries)?;
            }
            Command::Reduce(v) => self.sum.add(ctx, v)?,
            Command::ReduceClear => self.sum.clear(ctx)?,
            Command::Average(v) => self.average.add(ctx, v)?,
            Command::AverageClear => self.average.clear(ctx)?,
            Command::Peek => {}
        }
        let entries = self.map.entries(ctx)?;
        // Big maps are summarized, so outputs stay small.
        let (map, keys, values) = if entries.len() > 20 {
            let keys = self.map.keys(ctx)?;
            let values = self.map.values(ctx)?;
            let sorted = keys.windows(2).all(|w| w[0] < w[1]);
            (json!({"len": entries.len(), "sorted": sorted}), json!(keys.len()), json!(values.iter().sum::<i64>()))
        } else {
            (json!(entries), json!(self.map.keys(ctx)?), json!(self.map.values(ctx)?))
        };
        let probe = "a".to_owned();
        let snapshot = json!({
            "key": ctx.key_str()?,
            "ns": String::from_utf8_lossy(ctx.namespace()),
            "value": self.value.value(ctx)?,
            "text": self.text.value(ctx)?,
            "list": self.list.get(ctx)?,
            "map": map,
            "keys": keys,
            "values": values,
            "empty": self.map.is_empty(ctx)?,
            "a": self.map.get(ctx, &probe)?,
            "has_a": self.map.contains(ctx, &probe)?,
            "sum": self.sum.get(ctx)?,
            "average": self.average.get(ctx)?,
        });
        out.emit_json(event.key, &snapshot, event.timestamp)
    }
}

weir_sdk::export_process!(StateKinds);
