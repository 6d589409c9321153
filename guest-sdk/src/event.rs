//! Events in and out of an operator, over the flat batch encoding of the
//! WIT contract (`data` + `offsets` + `timestamps`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The timestamp value that means "no timestamp" on the wire.
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

#[inline]
pub(crate) fn ts_to_wire(ts: Option<i64>) -> i64 {
    ts.unwrap_or(NO_TIMESTAMP)
}

#[inline]
pub(crate) fn ts_from_wire(ts: i64) -> Option<i64> {
    (ts != NO_TIMESTAMP).then_some(ts)
}

/// One input event. Key and value borrow from the batch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The key bytes; empty when the event has no key.
    pub key: &'a [u8],
    /// The value bytes (JSON unless the pipeline says otherwise).
    pub value: &'a [u8],
    /// Event time in epoch milliseconds, when the event has one.
    pub timestamp: Option<i64>,
}

impl<'a> Event<'a> {
    /// Deserializes the value as JSON.
    ///
    /// ```
    /// let e = weir_sdk::Event { key: b"", value: br#"{"n": 3}"#, timestamp: None };
    /// let v: serde_json::Value = e.json().unwrap();
    /// assert_eq!(v["n"], 3);
    /// ```
    pub fn json<T: Deserialize<'a>>(&self) -> Result<T> {
        serde_json::from_slice(self.value).map_err(|e| Error::new(format!("value is not the expected JSON: {e}")))
    }

    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Result<&'a str> {
        std::str::from_utf8(self.key).map_err(|_| Error::new("key is not UTF-8"))
    }
}

/// An event sent to a side output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SideEvent {
    pub tag: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub timestamp: i64,
}

/// Collects what an operator emits, already in the flat wire encoding, so
/// emitting costs no allocation per event.
#[derive(Debug, Default)]
pub struct Output {
    pub(crate) data: Vec<u8>,
    pub(crate) offsets: Vec<u32>,
    pub(crate) timestamps: Vec<i64>,
    pub(crate) side: Vec<SideEvent>,
}

impl Output {
    pub(crate) fn new() -> Self {
        Output { offsets: vec![0], ..Default::default() }
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(2 * events + 1);
        offsets.push(0);
        Output { data: Vec::with_capacity(bytes), offsets, timestamps: Vec::with_capacity(events), side: Vec::new() }
    }

    /// Number of main-output events emitted so far.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether nothing went to the main output yet.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    #[inline]
    fn mark(&mut self) -> Result<()> {
        let end = u32::try_from(self.data.len())
            .map_err(|_| Error::new("output batch is larger than 4 GiB; emit less per input event"))?;
        self.offsets.push(end);
        Ok(())
    }

    /// Emits an event with raw key and value bytes to the main output.
    #[inline]
    pub fn emit(&mut self, key: &[u8], value: &[u8], timestamp: Option<i64>) -> Result<()> {
        let start = self.data.len();
        if start + key.len() + value.len() > u32::MAX as usize {
            return Err(Error::new("output batch is larger than 4 GiB; emit less per input event"));
        }
        self.data.extend_from_slice(key);
        self.offsets.push((start + key.len()) as u32);
        self.data.extend_from_slice(value);
        self.offsets.push(self.data.len() as u32);
        self.timestamps.push(ts_to_wire(timestamp));
        Ok(())
    }

    /// Emits an event whose value is `value` serialized as JSON.
    #[inline]
    pub fn emit_json<T: Serialize + ?Sized>(&mut self, key: &[u8], value: &T, timestamp: Option<i64>) -> Result<()> {
        let start = self.data.len();
        self.data.extend_from_slice(key);
        self.mark()?;
        if let Err(e) = serde_json::to_writer(&mut self.data, value) {
            self.data.truncate(start);
            self.offsets.pop();
            return Err(e.into());
        }
        self.mark()?;
        self.timestamps.push(ts_to_wire(timestamp));
        Ok(())
    }

    /// Emits an event to the side output named `tag` in the spec.
    pub fn emit_side(&mut self, tag: &str, key: &[u8], value: &[u8], timestamp: Option<i64>) {
        self.side.push(SideEvent {
            tag: tag.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
            timestamp: ts_to_wire(timestamp),
        });
    }

    /// Emits an event with a JSON value to the side output named `tag`.
    pub fn emit_side_json<T: Serialize + ?Sized>(
        &mut self,
        tag: &str,
        key: &[u8],
        value: &T,
        timestamp: Option<i64>,
    ) -> Result<()> {
        let value = serde_json::to_vec(value)?;
        self.emit_side(tag, key, &value, timestamp);
        Ok(())
    }

    /// The main-output events emitted so far.
    pub(crate) fn events(&self) -> impl Iterator<Item = Event<'_>> {
        (0..self.len()).map(move |i| event_at(&self.data, &self.offsets, &self.timestamps, i))
    }
}

/// Event `i` of a flat batch that [`validate_batch`] accepted.
///
/// # Panics
/// When `i` is out of range; the callers loop over `0..timestamps.len()`.
#[inline]
pub(crate) fn event_at<'a>(data: &'a [u8], offsets: &[u32], timestamps: &[i64], i: usize) -> Event<'a> {
    let o = &offsets[2 * i..2 * i + 3];
    let (k0, v0, v1) = (o[0] as usize, o[1] as usize, o[2] as usize);
    // SAFETY: `validate_batch` checked that offsets never decrease and the
    // last one is within `data`, so k0 <= v0 <= v1 <= data.len(). This is
    // the per-event hot path of every guest, hence no second bounds check.
    let (key, value) = unsafe { (data.get_unchecked(k0..v0), data.get_unchecked(v0..v1)) };
    Event { key, value, timestamp: ts_from_wire(timestamps[i]) }
}

/// Checks that a flat batch from the host is well formed, so that
/// [`event_at`] cannot go out of bounds.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn validate_batch(data: &[u8], offsets: &[u32], timestamps: &[i64]) -> Result<()> {
    let n = timestamps.len();
    if offsets.len() != 2 * n + 1 || offsets.first() != Some(&0) {
        return Err(Error::new(format!(
            "malformed batch: {n} timestamps need {} offsets starting at 0, got {}",
            2 * n + 1,
            offsets.len()
        )));
    }
    if offsets.windows(2).any(|w| w[0] > w[1]) || *offsets.last().unwrap_or(&0) as usize > data.len() {
        return Err(Error::new("malformed batch: offsets decrease or run past the data"));
    }
    Ok(())
}
