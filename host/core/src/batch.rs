//! The host-side batch: the same flat layout as the WIT `batch` record, so a
//! batch crosses into a component as three memory copies, plus what the host
//! keeps beside it (record origins and in-band watermarks).

/// The wire value of "no timestamp".
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// A watermark that travels in-band: after the first `after` events of the
/// batch, the stream's watermark is `watermark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Number of events of the batch that come before the watermark.
    pub after: u32,
    /// The watermark's timestamp.
    pub watermark: i64,
}

/// One event of a batch, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Key bytes; empty means no key.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
    /// Timestamp, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
    /// Where the record came from: byte offset in its source file, or the
    /// generator's sequence number. Used in error messages.
    pub origin: u64,
}

/// A batch of events in flat form: event `i` has key
/// `data[offsets[2i]..offsets[2i+1]]` and value
/// `data[offsets[2i+1]..offsets[2i+2]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Keys and values, back to back.
    pub data: Vec<u8>,
    /// `2n + 1` offsets into `data`.
    pub offsets: Vec<u32>,
    /// One timestamp per event.
    pub timestamps: Vec<i64>,
    /// One origin per event (see [`EventRef::origin`]).
    pub origins: Vec<u64>,
    /// Watermarks between (or after) the events, in order.
    pub marks: Vec<Mark>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch { data: Vec::new(), offsets: vec![0], timestamps: Vec::new(), origins: Vec::new(), marks: Vec::new() }
    }

    /// An empty batch with room for `events` events of `bytes` bytes.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(2 * events + 1);
        offsets.push(0);
        Batch {
            data: Vec::with_capacity(bytes),
            offsets,
            timestamps: Vec::with_capacity(events),
            origins: Vec::with_capacity(events),
            marks: Vec::new(),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch holds no events (it may still hold marks).
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Whether the batch holds neither events nor marks.
    pub fn is_void(&self) -> bool {
        self.timestamps.is_empty() && self.marks.is_empty()
    }

    /// Bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.timestamps.clear();
        self.origins.clear();
        self.marks.clear();
    }

    /// Appends an event.
    ///
    /// # Panics
    /// When the batch grows past 4 GiB of data; producers flush long before.
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64, origin: u64) {
        self.data.extend_from_slice(key);
        self.offsets.push(self.end());
        self.data.extend_from_slice(value);
        self.offsets.push(self.end());
        self.timestamps.push(timestamp);
        self.origins.push(origin);
    }

    /// Appends an event whose value is written by `write` straight into the
    /// buffer (no intermediate allocation).
    pub fn push_with(&mut self, key: &[u8], timestamp: i64, origin: u64, write: impl FnOnce(&mut Vec<u8>)) {
        self.data.extend_from_slice(key);
        self.offsets.push(self.end());
        write(&mut self.data);
        self.offsets.push(self.end());
        self.timestamps.push(timestamp);
        self.origins.push(origin);
    }

    /// Appends event `i` of `other`.
    pub fn push_from(&mut self, other: &Batch, i: usize) {
        let e = other.event(i);
        self.push(e.key, e.value, e.timestamp, e.origin);
    }

    fn end(&self) -> u32 {
        u32::try_from(self.data.len()).expect("invariant: batches are flushed long before 4 GiB")
    }

    /// Adds a watermark after the events pushed so far. A mark that does not
    /// advance the last one is dropped; one at the same position replaces it.
    pub fn mark(&mut self, watermark: i64) {
        let after = self.len() as u32;
        match self.marks.last_mut() {
            Some(last) if last.watermark >= watermark => {}
            Some(last) if last.after == after => last.watermark = watermark,
            _ => self.marks.push(Mark { after, watermark }),
        }
    }

    /// The last watermark the batch carries.
    pub fn last_watermark(&self) -> Option<i64> {
        self.marks.last().map(|m| m.watermark)
    }

    /// Event `i`.
    pub fn event(&self, i: usize) -> EventRef<'_> {
        EventRef { key: self.key(i), value: self.value(i), timestamp: self.timestamps[i], origin: self.origins[i] }
    }

    /// Key of event `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[2 * i] as usize..self.offsets[2 * i + 1] as usize]
    }

    /// Value of event `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[2 * i + 1] as usize..self.offsets[2 * i + 2] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_flat_layout() {
        let mut b = Batch::new();
        b.push(b"k", b"v1", 5, 0);
        b.push(b"", b"value-2", NO_TIMESTAMP, 10);
        b.push_with(b"kk", 7, 20, |buf| buf.extend_from_slice(b"x"));
        assert_eq!(b.len(), 3);
        assert_eq!(b.event(0), EventRef { key: b"k", value: b"v1", timestamp: 5, origin: 0 });
        assert_eq!(b.key(1), b"");
        assert_eq!(b.value(1), b"value-2");
        assert_eq!(b.event(2).key, b"kk");
        assert_eq!(b.offsets.len(), 7);
    }

    #[test]
    fn marks_only_advance() {
        let mut b = Batch::new();
        b.mark(5);
        b.mark(3);
        b.push(b"", b"", 1, 0);
        b.mark(9);
        b.mark(10);
        assert_eq!(b.marks, vec![Mark { after: 0, watermark: 5 }, Mark { after: 1, watermark: 10 }]);
    }
}
