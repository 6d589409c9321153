//! Typed keyed state handles, timers and the per-call context.
//!
//! Handles are plain ids; the data lives behind a `KeyedBackend`: in a
//! component, the key table the host sent with the batch (value state) and
//! host imports (list and map state); in [`crate::testing`], hash maps.

use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::rc::Rc;

const UNBOUND: u32 = u32::MAX;

/// The types a handle is for; a handle owns no values of them.
type Marker<T> = PhantomData<fn() -> T>;

/// How a state handle turns its values into the bytes the host stores.
/// The encoding of stored state is a contract (savepoints keep it): see
/// `docs/state.md`.
pub trait Codec: 'static {
    /// Which codec this is, for tools that read state by name.
    const KIND: CodecKind;
    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()>;
    /// Decodes a whole value: bytes left over are an error.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T>;
}

/// The codecs a state can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    /// [`Binary`].
    Binary,
    /// [`Json`].
    Json,
}

/// The default state codec: postcard's stable wire format (varint
/// integers, length-prefixed strings and sequences; a `u64` counter below
/// 128 is one byte). Compact and several times faster than JSON. Not
/// self-describing: types whose serde form depends on the data
/// (`skip_serializing_if`, `flatten`, `untagged`, `serde_json::Value`)
/// need [`Json`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

/// JSON state values (serde_json): readable, larger and slower.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Binary {
    const KIND: CodecKind = CodecKind::Binary;

    #[inline]
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        let buf = std::mem::take(out);
        *out = postcard::to_extend(value, buf).map_err(|e| Error::new(format!("cannot encode state: {e}")))?;
        Ok(())
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        match postcard::take_from_bytes(bytes) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(Error::new(format!(
                "state holds {} bytes more than a value of this type (declared with another type or codec?)",
                rest.len()
            ))),
            Err(e) => Err(Error::new(format!("state holds bytes of another type or codec: {e}"))),
        }
    }
}

impl Codec for Json {
    const KIND: CodecKind = CodecKind::Json;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        Ok(serde_json::to_writer(out, value)?)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::new(format!("state holds bytes of another type or codec: {e}")))
    }
}

/// Time domains of timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Fires when the watermark passes the timer's timestamp.
    EventTime,
    /// Fires when the wall clock passes the timer's timestamp.
    ProcessingTime,
}

/// Where the state of the current key lives. Lists and maps cross in flat
/// form: items back to back in `data`, `ends[i]` the end of item `i`.
pub(crate) trait KeyedBackend {
    fn key(&self) -> &[u8];
    fn namespace(&self) -> &[u8];
    fn value_get(&self, state: u32) -> Option<&[u8]>;
    fn value_set(&mut self, state: u32, value: Option<&[u8]>);
    fn list_get(&mut self, state: u32, data: &mut Vec<u8>, ends: &mut Vec<u32>);
    fn list_add(&mut self, state: u32, element: &[u8]);
    fn list_add_all(&mut self, state: u32, data: &[u8], ends: &[u32]);
    fn list_update(&mut self, state: u32, data: &[u8], ends: &[u32]);
    fn list_clear(&mut self, state: u32);
    fn map_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>>;
    fn map_contains(&mut self, state: u32, key: &[u8]) -> bool;
    fn map_put(&mut self, state: u32, key: &[u8], value: &[u8]);
    /// Keys and values alternating.
    fn map_put_all(&mut self, state: u32, data: &[u8], ends: &[u32]);
    fn map_remove(&mut self, state: u32, key: &[u8]);
    /// Up to `limit` entries with keys after `after` (from the first when
    /// `None`) in key order, keys and values alternating.
    fn map_scan(&mut self, state: u32, after: Option<&[u8]>, limit: u32, data: &mut Vec<u8>, ends: &mut Vec<u32>);
    fn map_clear(&mut self, state: u32);
    fn timer(&mut self, domain: TimeDomain, timestamp: i64, delete: bool);
}

/// Map entries cross the boundary this many at a time.
pub(crate) const MAP_CHUNK: u32 = 1024;

/// The kinds of state, as the host stores them: reducing and aggregating
/// states are value states holding the reduced value or the accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    List,
    Map,
}

/// When a state's time-to-live starts again, as Flink's
/// `StateTtlConfig.UpdateType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// When the state is created or written (the default).
    OnCreateAndWrite,
    /// Also when it is read. A value, reducing or aggregating state counts
    /// as read whenever its key is processed (value state crosses with each
    /// batch); list and map states when they are read.
    OnReadAndWrite,
}

/// A state's time-to-live, as Flink's `StateTtlConfig`: after `ttl` of
/// processing time without an update the state is never returned again
/// (each list element and map entry on its own), and the host removes it
/// when it is accessed and in the background.
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::StateTtl;
/// let ttl = StateTtl::new(Duration::from_secs(3600)).update_on_read_and_write();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtl {
    pub(crate) millis: u64,
    pub(crate) update: TtlUpdate,
}

impl StateTtl {
    /// A time-to-live of `ttl` (whole milliseconds), started again on
    /// create and write.
    pub fn new(ttl: std::time::Duration) -> Self {
        StateTtl { millis: ttl.as_millis().min(u128::from(u64::MAX)) as u64, update: TtlUpdate::OnCreateAndWrite }
    }

    /// Starts the time-to-live again on reads too.
    pub fn update_on_read_and_write(mut self) -> Self {
        self.update = TtlUpdate::OnReadAndWrite;
        self
    }

    /// The time-to-live in milliseconds.
    pub fn millis(&self) -> u64 {
        self.millis
    }

    /// What starts it again.
    pub fn update(&self) -> TtlUpdate {
        self.update
    }
}

/// A declared state.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub name: String,
    pub kind: Kind,
    /// What the user declared (for messages): `value_state`, `reducing_state`, …
    pub declared_as: &'static str,
    pub codec: CodecKind,
}

/// Given to [`crate::KeyedProcessFunction::open`]: the operator's config and
/// the place to declare keyed state.
///
/// Each state has a name, unique in the operator whatever its kind; the
/// name identifies the state in savepoints, so keep it stable across
/// versions. Declaring the same name again with the same kind and codec
/// returns the same state; with another kind or codec, `open` fails.
#[derive(Debug)]
pub struct OpenContext {
    config: serde_json::Value,
    pub(crate) value_states: Vec<String>,
    pub(crate) list_states: Vec<String>,
    pub(crate) map_states: Vec<String>,
    pub(crate) declared: Vec<Declared>,
    /// States with a time-to-live: kind, id within the kind, TTL.
    pub(crate) ttls: Vec<(Kind, u32, StateTtl)>,
    conflict: Option<String>,
}

impl OpenContext {
    pub(crate) fn new(config: serde_json::Value) -> Self {
        OpenContext {
            config,
            value_states: Vec::new(),
            list_states: Vec::new(),
            map_states: Vec::new(),
            declared: Vec::new(),
            ttls: Vec::new(),
            conflict: None,
        }
    }

    /// The operator's `config` from the spec (`null` when absent).
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    fn declare(&mut self, name: &str, kind: Kind, declared_as: &'static str, codec: CodecKind) -> u32 {
        match self.declared.iter().find(|d| d.name == name) {
            Some(d) if (d.kind, d.declared_as, d.codec) != (kind, declared_as, codec) => {
                if self.conflict.is_none() {
                    self.conflict = Some(format!(
                        "state `{name}` is declared twice: as {} ({:?}) and as {declared_as} ({codec:?}); \
                         give each state its own name",
                        d.declared_as, d.codec
                    ));
                }
            }
            Some(_) => {}
            None => self.declared.push(Declared { name: name.to_owned(), kind, declared_as, codec }),
        }
        let names = match kind {
            Kind::Value => &mut self.value_states,
            Kind::List => &mut self.list_states,
            Kind::Map => &mut self.map_states,
        };
        match names.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                names.push(name.to_owned());
                (names.len() - 1) as u32
            }
        }
    }

    /// Gives the state named `name`, declared before, a time-to-live (as
    /// Flink's `StateDescriptor.enableTimeToLive`). Enabling it again
    /// replaces it. A state that was stored without a TTL cannot be read
    /// with one: give it a new name.
    pub fn enable_time_to_live(&mut self, name: &str, ttl: StateTtl) {
        let problem = match self.declared.iter().find(|d| d.name == name) {
            None => Some(format!(
                "`enable_time_to_live(\"{name}\")` names no state declared before it; declare the state first"
            )),
            Some(_) if ttl.millis == 0 => {
                Some(format!("state `{name}` has a time-to-live of 0 ms; give at least 1 ms"))
            }
            Some(d) => {
                let kind = d.kind;
                let names = match kind {
                    Kind::Value => &self.value_states,
                    Kind::List => &self.list_states,
                    Kind::Map => &self.map_states,
                };
                let id = names.iter().position(|n| n == name).expect("invariant: declared names are listed") as u32;
                self.ttls.retain(|(k, i, _)| (*k, *i) != (kind, id));
                self.ttls.push((kind, id, ttl));
                None
            }
        };
        if let Some(p) = problem {
            self.conflict.get_or_insert(p);
        }
    }

    /// The error `open` ends with when a name was declared twice with
    /// different kinds or codecs.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.conflict {
            Some(m) => Err(Error::new(m.clone())),
            None => Ok(()),
        }
    }

    /// The declaration of state `name`.
    pub(crate) fn find(&self, name: &str) -> Option<&Declared> {
        self.declared.iter().find(|d| d.name == name)
    }

    /// Declares a value state named `name`, encoded with codec `C`
    /// ([`Binary`] unless the handle's type names another).
    pub fn value_state<T, C: Codec>(&mut self, name: &str) -> ValueState<T, C> {
        ValueState { id: self.declare(name, Kind::Value, "value_state", C::KIND), _t: PhantomData }
    }

    /// Declares a list state named `name`.
    pub fn list_state<T, C: Codec>(&mut self, name: &str) -> ListState<T, C> {
        ListState { id: self.declare(name, Kind::List, "list_state", C::KIND), _t: PhantomData }
    }

    /// Declares a map state named `name`.
    pub fn map_state<K, V, C: Codec>(&mut self, name: &str) -> MapState<K, V, C> {
        MapState { id: self.declare(name, Kind::Map, "map_state", C::KIND), _t: PhantomData }
    }

    /// Declares a reducing state named `name`: [`ReducingState::add`]
    /// combines each value with the current one by `reduce`, as Flink's
    /// `ReducingState`.
    pub fn reducing_state<T, C: Codec>(&mut self, name: &str, reduce: fn(T, T) -> T) -> ReducingState<T, C> {
        let id = self.declare(name, Kind::Value, "reducing_state", C::KIND);
        ReducingState { id, reduce: Some(reduce), _t: PhantomData }
    }

    /// Declares an aggregating state named `name`: [`AggregatingState::add`]
    /// folds inputs into an accumulator by `f`, and
    /// [`AggregatingState::get`] returns its result, as Flink's
    /// `AggregatingState`.
    pub fn aggregating_state<IN, ACC, OUT, C: Codec>(
        &mut self,
        name: &str,
        f: impl AggregateFunction<IN, ACC, OUT> + 'static,
    ) -> AggregatingState<IN, ACC, OUT, C> {
        let id = self.declare(name, Kind::Value, "aggregating_state", C::KIND);
        AggregatingState { id, f: Some(Rc::new(f)), _t: PhantomData }
    }
}

/// Folds inputs into an accumulator, after Flink's `AggregateFunction`.
pub trait AggregateFunction<IN, ACC, OUT> {
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> ACC;
    /// Adds one input to the accumulator.
    fn add(&self, value: IN, accumulator: ACC) -> ACC;
    /// The result of an accumulator.
    fn get_result(&self, accumulator: &ACC) -> OUT;
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

/// Encodes `values` flat into the context's scratch buffers.
fn encode_all<'a, T: Serialize + 'a, C: Codec>(
    values: impl IntoIterator<Item = &'a T>,
    data: &mut Vec<u8>,
    ends: &mut Vec<u32>,
) -> Result<()> {
    data.clear();
    ends.clear();
    for v in values {
        C::encode(v, data)?;
        ends.push(data.len() as u32);
    }
    Ok(())
}

/// The items of flat `data`.
pub(crate) fn items<'a>(data: &'a [u8], ends: &'a [u32]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut start = 0usize;
    ends.iter().map(move |&e| {
        let e = (e as usize).clamp(start, data.len());
        let item = &data[start..e];
        start = e;
        item
    })
}

/// A single value per key, after Flink's `ValueState`. Values are encoded
/// with codec `C` ([`Binary`] by default; [`Json`] on request).
pub struct ValueState<T, C: Codec = Binary> {
    id: u32,
    _t: Marker<(T, C)>,
}

impl<T, C: Codec> Default for ValueState<T, C> {
    fn default() -> Self {
        ValueState { id: UNBOUND, _t: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> ValueState<T, C> {
    /// The current key's value, `None` when it has none.
    #[inline]
    pub fn value(&self, ctx: &Context<'_>) -> Result<Option<T>> {
        let id = bound(self.id, "value_state")?;
        ctx.backend.value_get(id).map(C::decode).transpose()
    }

    /// Sets the current key's value.
    #[inline]
    pub fn update(&self, ctx: &mut Context<'_>, value: &T) -> Result<()> {
        let id = bound(self.id, "value_state")?;
        ctx.scratch.clear();
        C::encode(value, ctx.scratch)?;
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
pub struct ListState<T, C: Codec = Binary> {
    id: u32,
    _t: Marker<(T, C)>,
}

impl<T, C: Codec> Default for ListState<T, C> {
    fn default() -> Self {
        ListState { id: UNBOUND, _t: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> ListState<T, C> {
    /// All elements of the current key's list, in order (empty when none).
    pub fn get(&self, ctx: &mut Context<'_>) -> Result<Vec<T>> {
        let id = bound(self.id, "list_state")?;
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        ctx.backend.list_get(id, &mut data, &mut ends);
        items(&data, &ends).map(C::decode).collect()
    }

    /// Appends an element.
    pub fn add(&self, ctx: &mut Context<'_>, value: &T) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        ctx.scratch.clear();
        C::encode(value, ctx.scratch)?;
        ctx.backend.list_add(id, ctx.scratch);
        Ok(())
    }

    /// Appends every element of `values`, in one call to the host.
    pub fn add_all(&self, ctx: &mut Context<'_>, values: &[T]) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        let mut ends = Vec::with_capacity(values.len());
        encode_all::<T, C>(values, ctx.scratch, &mut ends)?;
        ctx.backend.list_add_all(id, ctx.scratch, &ends);
        Ok(())
    }

    /// Replaces the whole list (an empty `values` clears it).
    pub fn update(&self, ctx: &mut Context<'_>, values: &[T]) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        let mut ends = Vec::with_capacity(values.len());
        encode_all::<T, C>(values, ctx.scratch, &mut ends)?;
        ctx.backend.list_update(id, ctx.scratch, &ends);
        Ok(())
    }

    /// Removes the whole list.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "list_state")?;
        ctx.backend.list_clear(id);
        Ok(())
    }
}

/// A map per key, after Flink's `MapState`. Keys and values are encoded
/// with codec `C`; iteration is in the order of the encoded keys and
/// crosses the boundary [`MAP_CHUNK`] entries at a time.
pub struct MapState<K, V, C: Codec = Binary> {
    id: u32,
    _t: Marker<(K, V, C)>,
}

impl<K, V, C: Codec> Default for MapState<K, V, C> {
    fn default() -> Self {
        MapState { id: UNBOUND, _t: PhantomData }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned, C: Codec> MapState<K, V, C> {
    fn key(&self, ctx: &mut Context<'_>, key: &K) -> Result<u32> {
        let id = bound(self.id, "map_state")?;
        ctx.scratch.clear();
        C::encode(key, ctx.scratch)?;
        Ok(id)
    }

    /// The value under `key` in the current key's map.
    pub fn get(&self, ctx: &mut Context<'_>, key: &K) -> Result<Option<V>> {
        let id = self.key(ctx, key)?;
        ctx.backend.map_get(id, ctx.scratch).map(|b| C::decode(&b)).transpose()
    }

    /// Whether the current key's map has `key`.
    pub fn contains(&self, ctx: &mut Context<'_>, key: &K) -> Result<bool> {
        let id = self.key(ctx, key)?;
        Ok(ctx.backend.map_contains(id, ctx.scratch))
    }

    /// Puts `value` under `key`.
    pub fn put(&self, ctx: &mut Context<'_>, key: &K, value: &V) -> Result<()> {
        let id = self.key(ctx, key)?;
        let k = ctx.scratch.len();
        C::encode(value, ctx.scratch)?;
        let (key, value) = ctx.scratch.split_at(k);
        ctx.backend.map_put(id, key, value);
        Ok(())
    }

    /// Puts every entry of `entries`, in one call to the host.
    pub fn put_all(&self, ctx: &mut Context<'_>, entries: &[(K, V)]) -> Result<()> {
        let id = bound(self.id, "map_state")?;
        let data = &mut *ctx.scratch;
        data.clear();
        let mut ends = Vec::with_capacity(2 * entries.len());
        for (k, v) in entries {
            C::encode(k, data)?;
            ends.push(data.len() as u32);
            C::encode(v, data)?;
            ends.push(data.len() as u32);
        }
        ctx.backend.map_put_all(id, data, &ends);
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&self, ctx: &mut Context<'_>, key: &K) -> Result<()> {
        let id = self.key(ctx, key)?;
        ctx.backend.map_remove(id, ctx.scratch);
        Ok(())
    }

    /// Calls `f` with each encoded (key, value), chunk by chunk.
    fn scan(&self, ctx: &mut Context<'_>, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let id = bound(self.id, "map_state")?;
        let (mut data, mut ends, mut after) = (Vec::new(), Vec::new(), None::<Vec<u8>>);
        loop {
            data.clear();
            ends.clear();
            ctx.backend.map_scan(id, after.as_deref(), MAP_CHUNK, &mut data, &mut ends);
            let mut it = items(&data, &ends);
            let mut last = None;
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                f(k, v)?;
                last = Some(k);
            }
            match last {
                Some(k) if ends.len() == 2 * MAP_CHUNK as usize => after = Some(k.to_vec()),
                _ => return Ok(()),
            }
        }
    }

    /// All entries of the current key's map, in encoded-key order.
    pub fn entries(&self, ctx: &mut Context<'_>) -> Result<Vec<(K, V)>> {
        self.collect(ctx, |k, v| Ok((C::decode(k)?, C::decode(v)?)))
    }

    /// All keys of the current key's map, in encoded-key order.
    pub fn keys(&self, ctx: &mut Context<'_>) -> Result<Vec<K>> {
        self.collect(ctx, |k, _| C::decode(k))
    }

    /// All values of the current key's map, in encoded-key order.
    pub fn values(&self, ctx: &mut Context<'_>) -> Result<Vec<V>> {
        self.collect(ctx, |_, v| C::decode(v))
    }

    /// `each` of every entry of the current key's map, in encoded-key order.
    fn collect<T>(&self, ctx: &mut Context<'_>, mut each: impl FnMut(&[u8], &[u8]) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.scan(ctx, |k, v| {
            out.push(each(k, v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Whether the current key's map has no entry.
    pub fn is_empty(&self, ctx: &mut Context<'_>) -> Result<bool> {
        let id = bound(self.id, "map_state")?;
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        ctx.backend.map_scan(id, None, 1, &mut data, &mut ends);
        Ok(ends.is_empty())
    }

    /// Removes the whole map.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "map_state")?;
        ctx.backend.map_clear(id);
        Ok(())
    }
}

/// One value per key that [`add`](ReducingState::add) combines with each
/// new value by the reduce function given at declaration, after Flink's
/// `ReducingState`. Stored as a value state holding the reduced value.
pub struct ReducingState<T, C: Codec = Binary> {
    id: u32,
    reduce: Option<fn(T, T) -> T>,
    _t: Marker<(T, C)>,
}

impl<T, C: Codec> Default for ReducingState<T, C> {
    fn default() -> Self {
        ReducingState { id: UNBOUND, reduce: None, _t: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> ReducingState<T, C> {
    /// The reduced value of the current key, `None` before the first add.
    pub fn get(&self, ctx: &Context<'_>) -> Result<Option<T>> {
        let id = bound(self.id, "reducing_state")?;
        ctx.backend.value_get(id).map(C::decode).transpose()
    }

    /// Combines `value` with the current one (or stores it, when none).
    pub fn add(&self, ctx: &mut Context<'_>, value: T) -> Result<()> {
        let id = bound(self.id, "reducing_state")?;
        let reduce = self.reduce.ok_or_else(|| Error::new("reducing_state has no reduce function"))?;
        let next = match ctx.backend.value_get(id).map(C::decode).transpose()? {
            Some(current) => reduce(current, value),
            None => value,
        };
        ctx.scratch.clear();
        C::encode(&next, ctx.scratch)?;
        ctx.backend.value_set(id, Some(ctx.scratch));
        Ok(())
    }

    /// Removes the current key's value.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "reducing_state")?;
        ctx.backend.value_set(id, None);
        Ok(())
    }
}

/// An accumulator per key that [`add`](AggregatingState::add) folds inputs
/// into and [`get`](AggregatingState::get) turns into a result, by the
/// [`AggregateFunction`] given at declaration, after Flink's
/// `AggregatingState`. Stored as a value state holding the accumulator.
pub struct AggregatingState<IN, ACC, OUT, C: Codec = Binary> {
    id: u32,
    f: Option<Rc<dyn AggregateFunction<IN, ACC, OUT>>>,
    _t: Marker<(IN, ACC, OUT, C)>,
}

impl<IN, ACC, OUT, C: Codec> Default for AggregatingState<IN, ACC, OUT, C> {
    fn default() -> Self {
        AggregatingState { id: UNBOUND, f: None, _t: PhantomData }
    }
}

impl<IN, ACC: Serialize + DeserializeOwned, OUT, C: Codec> AggregatingState<IN, ACC, OUT, C> {
    fn function(&self) -> Result<(u32, &dyn AggregateFunction<IN, ACC, OUT>)> {
        let id = bound(self.id, "aggregating_state")?;
        let f = self.f.as_deref().ok_or_else(|| Error::new("aggregating_state has no aggregate function"))?;
        Ok((id, f))
    }

    /// The result of the current key's accumulator, `None` before the
    /// first add.
    pub fn get(&self, ctx: &Context<'_>) -> Result<Option<OUT>> {
        let (id, f) = self.function()?;
        let acc: Option<ACC> = ctx.backend.value_get(id).map(C::decode).transpose()?;
        Ok(acc.map(|a| f.get_result(&a)))
    }

    /// Folds `value` into the current key's accumulator (a new one when
    /// none).
    pub fn add(&self, ctx: &mut Context<'_>, value: IN) -> Result<()> {
        let (id, f) = self.function()?;
        let acc = match ctx.backend.value_get(id).map(C::decode).transpose()? {
            Some(acc) => acc,
            None => f.create_accumulator(),
        };
        let acc = f.add(value, acc);
        ctx.scratch.clear();
        C::encode(&acc, ctx.scratch)?;
        ctx.backend.value_set(id, Some(ctx.scratch));
        Ok(())
    }

    /// Removes the current key's accumulator.
    pub fn clear(&self, ctx: &mut Context<'_>) -> Result<()> {
        let id = bound(self.id, "aggregating_state")?;
        ctx.backend.value_set(id, None);
        Ok(())
    }
}
