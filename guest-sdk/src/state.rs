//! Typed keyed state handles, timers and the per-call context.
//!
//! Handles are plain ids; the data lives behind a `KeyedBackend`: in a
//! component, the key table the host sent with the batch (value state) and
//! host imports (list and map state); in [`crate::testing`], hash maps.

use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

const UNBOUND: u32 = u32::MAX;

/// Time domains of timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Fires when the watermark passes the timer's timestamp.
    EventTime,
    /// Fires when the wall clock passes the timer's timestamp.
    ProcessingTime,
}

/// Where the state of the current key lives.
pub(crate) trait KeyedBackend {
    fn key(&self) -> &[u8];
    fn namespace(&self) -> &[u8];
    fn value_get(&self, state: u32) -> Option<&[u8]>;
    fn value_set(&mut self, state: u32, value: Option<&[u8]>);
    fn list_get(&mut self, state: u32) -> Vec<Vec<u8>>;
    fn list_add(&mut self, state: u32, element: &[u8]);
    fn list_update(&mut self, state: u32, elements: &[Vec<u8>]);
    fn list_clear(&mut self, state: u32);
    fn map_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>>;
    fn map_put(&mut self, state: u32, key: &[u8], value: &[u8]);
    fn map_remove(&mut self, state: u32, key: &[u8]);
    fn map_entries(&mut self, state: u32) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn map_clear(&mut self, state: u32);
    fn timer(&mut self, domain: TimeDomain, timestamp: i64, delete: bool);
}

/// Given to [`crate::KeyedProcessFunction::open`]: the operator's config and
/// the place to declare keyed state.
#[derive(Debug)]
pub struct OpenContext {
    config: serde_json::Value,
    pub(crate) value_states: Vec<String>,
    pub(crate) list_states: Vec<String>,
    pub(crate) map_states: Vec<String>,
}

fn declare(names: &mut Vec<String>, name: &str) -> u32 {
    match names.iter().position(|n| n == name) {
        Some(i) => i as u32,
        None => {
            names.push(name.to_owned());
            (names.len() - 1) as u32
        }
    }
}

impl OpenContext {
    pub(crate) fn new(config: serde_json::Value) -> Self {
        OpenContext { config, value_states: Vec::new(), list_states: Vec::new(), map_states: Vec::new() }
    }

    /// The operator's `config` from the spec (`null` when absent).
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// Declares a value state named `name` (the name identifies the state
    /// in savepoints, so keep it stable across versions).
    pub fn value_state<T>(&mut self, name: &str) -> ValueState<T> {
        ValueState { id: declare(&mut self.value_states, name), _t: PhantomData }
    }

    /// Declares a list state named `name`.
    pub fn list_state<T>(&mut self, name: &str) -> ListState<T> {
        ListState { id: declare(&mut self.list_states, name), _t: PhantomData }
    }

    /// Declares a map state named `name`.
    pub fn map_state<K, V>(&mut self, name: &str) -> MapState<K, V> {
        MapState { id: declare(&mut self.map_states, name), _t: PhantomData }
    }
}

/// The context of one `process` or `on_timer` call: the current key, time,
/// timers and the backend behind state handles.
pub struct Context<'a> {
    pub(crate) backend: &'a mut dyn KeyedBackend,
    pub(crate) timestamp: Option<i64>,
    pub(crate) watermark: i64,
    pub(crate) processing_time: i64,
    pub(crate) scratch: &'a mut Vec<u8>,
}

impl Context<'_> {
    /// The current key.
    pub fn key(&self) -> &[u8] {
        self.backend.key()
    }

    /// The namespace of the current key's state and timers: empty for
    /// process functions; window functions see their window here.
    pub fn namespace(&self) -> &[u8] {
        self.backend.namespace()
    }

    /// The current key as UTF-8 text.
    pub fn key_str(&self) -> Result<&str> {
        std::str::from_utf8(self.backend.key()).map_err(|_| Error::new("key is not UTF-8"))
    }

    /// The timestamp of the current event or timer.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The current watermark, or `None` before the first one arrived.
    pub fn current_watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// Processing time in epoch milliseconds, as the host hands it in.
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Registers an event-time timer for the current key (one per key and
    /// timestamp: registering it twice fires it once).
    pub fn register_event_time_timer(&mut self, timestamp: i64) {
        self.backend.timer(TimeDomain::EventTime, timestamp, false);
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, timestamp: i64) {
        self.backend.timer(TimeDomain::EventTime, timestamp, true);
    }

    /// Registers a processing-time timer for the current key.
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        self.backend.timer(TimeDomain::ProcessingTime, timestamp, false);
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        self.backend.timer(TimeDomain::ProcessingTime, timestamp, true);
    }
}

#[inline]
fn bound(id: u32, kind: &str) -> Result<u32> {
    if id == UNBOUND {
        return Err(Error::new(format!("{kind} used before it was declared in `open` (OpenContext::{kind})")));
    }
    Ok(id)
}

#[inline]
fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::new(format!("{what} holds bytes of another type: {e}")))
}

/// A single value per key, after Flink's `ValueState`.
pub struct ValueState<T> {
    id: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Default for ValueState<T> {
    fn default() -> Self {
        ValueState { id: UNBOUND, _t: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The current key's value, `None` when it has none.
    #[inline]
    pub fn value(&self, ctx: &Context<'_>) -> Result<Option<T>> {
        let id = bound(self.id, "value_state")?;
        ctx.backend.value_get(id).map(|b| decode(b, "value state")).transpose()
    }

    /// Sets the current key's value.
    #[inline]
    pub fn update(&self, ctx: &mut Context<'_>, value: &T) -> Result<()> {
        let id = bound(self.id, "value_state")?;
        ctx.scratch.clear();
        serde_json::to_writer(&mut *ctx.scratch, value)?;
        ctx.backend.value_set(id, Some(ctx.scratch));
        Ok(())
    }

    /// Removes the current key's value.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "value_state")?;
        ctx.backend.value_set(id, None);
        Ok(())
    }
}

/// A list of values per key, after Flink's `ListState`.
pub struct ListState<T> {
    id: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Default for ListState<T> {
    fn default() -> Self {
        ListState { id: UNBOUND, _t: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// All elements of the current key's list (empty when none).
    pub fn get(&self, ctx: &mut Context<'_>) -> Result<Vec<T>> {
        let id = bound(self.id, "list_state")?;
        ctx.backend.list_get(id).iter().map(|b| decode(b, "list state")).collect()
    }

    /// Appends an element.
    pub fn add(&self, ctx: &mut Context<'_>, value: &T) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        ctx.scratch.clear();
        serde_json::to_writer(&mut *ctx.scratch, value)?;
        ctx.backend.list_add(id, ctx.scratch);
        Ok(())
    }

    /// Replaces the whole list.
    pub fn update(&self, ctx: &mut Context<'_>, values: &[T]) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        let encoded = values.iter().map(serde_json::to_vec).collect::<Result<Vec<_>, _>>()?;
        ctx.backend.list_update(id, &encoded);
        Ok(())
    }

    /// Removes the whole list.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        ctx.backend.list_clear(id);
        Ok(())
    }
}

/// A map per key, after Flink's `MapState`.
pub struct MapState<K, V> {
    id: u32,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Default for MapState<K, V> {
    fn default() -> Self {
        MapState { id: UNBOUND, _t: PhantomData }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// The value under `key` in the current key's map.
    pub fn get(&self, ctx: &mut Context<'_>, key: &K) -> Result<Option<V>> {
        let id = bound(self.id, "map_state")?;
        let k = serde_json::to_vec(key)?;
        ctx.backend.map_get(id, &k).map(|b| decode(&b, "map state")).transpose()
    }

    /// Whether the current key's map has `key`.
    pub fn contains(&self, ctx: &mut Context<'_>, key: &K) -> Result<bool> {
        let id = bound(self.id, "map_state")?;
        let k = serde_json::to_vec(key)?;
        Ok(ctx.backend.map_get(id, &k).is_some())
    }

    /// Puts `value` under `key`.
    pub fn put(&self, ctx: &mut Context<'_>, key: &K, value: &V) -> Result<()> {
        let id = bound(self.id, "map_state")?;
        let k = serde_json::to_vec(key)?;
        ctx.scratch.clear();
        serde_json::to_writer(&mut *ctx.scratch, value)?;
        ctx.backend.map_put(id, &k, ctx.scratch);
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&self, ctx: &mut Context<'_>, key: &K) -> Result<()> {
        let id = bound(self.id, "map_state")?;
        let k = serde_json::to_vec(key)?;
        ctx.backend.map_remove(id, &k);
        Ok(())
    }

    /// All entries of the current key's map, ordered by encoded key.
    pub fn entries(&self, ctx: &mut Context<'_>) -> Result<Vec<(K, V)>> {
        let id = bound(self.id, "map_state")?;
        ctx.backend
            .map_entries(id)
            .iter()
            .map(|(k, v)| Ok((decode(k, "map state key")?, decode(v, "map state")?)))
            .collect()
    }

    /// Removes the whole map.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "map_state")?;
        ctx.backend.map_clear(id);
        Ok(())
    }
}
