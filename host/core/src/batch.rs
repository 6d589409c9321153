//! The host-side batch: the same flat layout as the WIT `batch` record, so a
//! batch crosses into a component as three memory copies, plus what the host
//! keeps beside it (record origins, key groups and in-band watermarks).
//!
//! Its invariants (offsets start at 0, never decrease and stay inside the
//! data; one timestamp, origin and key group per event; marks in order and
//! inside the batch) are kept by the methods: fields are private, and bytes
//! from outside (a guest's output) come in through [`Batch::from_parts`],
//! which checks them.

/// The wire value of "no timestamp".
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// The key group of an event that has not been keyed.
pub const NO_KEY_GROUP: u16 = u16::MAX;

/// A watermark that travels in-band: after the first `after` events of the
/// batch, the stream's watermark is `watermark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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

/// Why bytes from outside are not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed batch: {0}")]
pub struct BatchError(String);

/// A batch of events in flat form: event `i` has key
/// `data[offsets[2i]..offsets[2i+1]]` and value
/// `data[offsets[2i+1]..offsets[2i+2]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    data: Vec<u8>,
    offsets: Vec<u32>,
    timestamps: Vec<i64>,
    origins: Vec<u64>,
    key_groups: Vec<u16>,
    marks: Vec<Mark>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

/// Batches for fuzzers, built through the public pushes so every one
/// keeps the invariants `from_parts` checks: events with or without key
/// groups, and watermarks between them.
#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Batch {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut b = Batch::new();
        let n = u.arbitrary_len::<u64>()?.min(4096);
        for _ in 0..n {
            match u.choose_index(3)? {
                0 => b.mark(u.arbitrary()?),
                1 => b.push(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
                _ => b.push_keyed(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
            }
        }
        Ok(b)
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::with_capacity(0, 0)
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
            key_groups: Vec::with_capacity(events),
            marks: Vec::new(),
        }
    }

    /// A batch that carries only a watermark.
    pub fn watermark(watermark: i64) -> Self {
        let mut b = Batch::new();
        b.marks.push(Mark { after: 0, watermark });
        b
    }

    /// A batch from flat parts that came from outside (a guest's output),
    /// checked: `offsets` has `2n + 1` entries for `n` timestamps, starts at
    /// 0, never decreases and ends inside `data`; `origins` has `n` entries.
    /// Events are not keyed and the batch has no marks.
    pub fn from_parts(
        data: Vec<u8>,
        offsets: Vec<u32>,
        timestamps: Vec<i64>,
        origins: Vec<u64>,
    ) -> Result<Batch, BatchError> {
        let n = timestamps.len();
        if offsets.len() != 2 * n + 1 || offsets[0] != 0 {
            return Err(BatchError(format!(
                "{n} events need {} offsets starting at 0, got {}",
                2 * n + 1,
                offsets.len()
            )));
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) || offsets[2 * n] as usize > data.len() {
            return Err(BatchError("offsets decrease or run past the data".into()));
        }
        if origins.len() != n {
            return Err(BatchError(format!("{n} events need {n} origins, got {}", origins.len())));
        }
        let mut data = data;
        data.truncate(offsets[2 * n] as usize);
        Ok(Batch { data, offsets, timestamps, origins, key_groups: vec![NO_KEY_GROUP; n], marks: Vec::new() })
    }

    /// Its columns, moved out: data, offsets, timestamps, origins, key
    /// groups and marks (a data frame is made of them without a copy).
    #[allow(clippy::type_complexity)]
    pub fn into_columns(self) -> (Vec<u8>, Vec<u32>, Vec<i64>, Vec<u64>, Vec<u16>, Vec<Mark>) {
        (self.data, self.offsets, self.timestamps, self.origins, self.key_groups, self.marks)
    }

    /// A batch from all its columns as another process sent them (a data
    /// frame), checked as [`Batch::from_parts`] checks, and besides: one
    /// key group per event, each below `key_groups` or [`NO_KEY_GROUP`];
    /// marks at most at the end of the events, their positions and
    /// watermarks rising, as [`Batch::mark_at`] makes them.
    pub fn from_columns(
        data: Vec<u8>,
        offsets: Vec<u32>,
        timestamps: Vec<i64>,
        origins: Vec<u64>,
        groups: Vec<u16>,
        marks: Vec<Mark>,
        key_groups: u32,
    ) -> Result<Batch, BatchError> {
        let n = timestamps.len();
        if offsets.is_empty() {
            return Err(BatchError("no offsets (even an empty batch has one)".into()));
        }
        if groups.len() != n {
            return Err(BatchError(format!("{n} events need {n} key groups, got {}", groups.len())));
        }
        if let Some(g) = groups.iter().find(|&&g| g != NO_KEY_GROUP && u32::from(g) >= key_groups) {
            return Err(BatchError(format!("key group {g} is not below the job's {key_groups}")));
        }
        if marks.iter().any(|m| m.after as usize > n) {
            return Err(BatchError(format!("a mark past the batch's {n} events")));
        }
        if marks.windows(2).any(|w| w[0].after >= w[1].after || w[0].watermark >= w[1].watermark) {
            return Err(BatchError("marks out of order: positions and watermarks must rise".into()));
        }
        let mut b = Batch::from_parts(data, offsets, timestamps, origins)?;
        b.key_groups = groups;
        b.marks = marks;
        Ok(b)
    }

    /// Number of events.
    #[inline]
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

    /// What the batch costs in memory, roughly: its bytes plus the columns.
    pub fn footprint(&self) -> usize {
        self.data.len() + self.len() * 26 + self.marks.len() * 16 + 64
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.timestamps.clear();
        self.origins.clear();
        self.key_groups.clear();
        self.marks.clear();
    }

    /// Appends an event that has not been keyed.
    ///
    /// # Panics
    /// When the batch grows past 4 GiB of data; producers cut batches by
    /// bytes long before.
    #[inline]
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64, origin: u64) {
        self.push_keyed(key, NO_KEY_GROUP, value, timestamp, origin);
    }

    /// Appends an event with its key group.
    #[inline]
    pub fn push_keyed(&mut self, key: &[u8], key_group: u16, value: &[u8], timestamp: i64, origin: u64) {
        self.data.extend_from_slice(key);
        self.offsets.push(self.end());
        self.data.extend_from_slice(value);
        self.offsets.push(self.end());
        self.timestamps.push(timestamp);
        self.origins.push(origin);
        self.key_groups.push(key_group);
    }

    /// Appends an event whose value is written by `write` straight into the
    /// buffer (no intermediate allocation).
    #[inline]
    pub fn push_with(&mut self, key: &[u8], timestamp: i64, origin: u64, write: impl FnOnce(&mut Vec<u8>)) {
        self.data.extend_from_slice(key);
        self.offsets.push(self.end());
        write(&mut self.data);
        self.offsets.push(self.end());
        self.timestamps.push(timestamp);
        self.origins.push(origin);
        self.key_groups.push(NO_KEY_GROUP);
    }

    /// Appends event `i` of `other`, with its key group.
    pub fn push_from(&mut self, other: &Batch, i: usize) {
        let e = other.event(i);
        self.push_keyed(e.key, other.key_groups[i], e.value, e.timestamp, e.origin);
    }

    /// Appends every event of `other` (not its marks).
    pub fn extend_events(&mut self, other: &Batch) {
        if self.is_empty() && self.data.is_empty() {
            self.data.extend_from_slice(&other.data);
            self.offsets.clear();
            self.offsets.extend_from_slice(&other.offsets);
        } else {
            let base = self.end();
            self.data.extend_from_slice(&other.data);
            self.end();
            self.offsets.extend(other.offsets[1..].iter().map(|&o| base + o));
        }
        self.timestamps.extend_from_slice(&other.timestamps);
        self.origins.extend_from_slice(&other.origins);
        self.key_groups.extend_from_slice(&other.key_groups);
    }

    #[inline]
    fn end(&self) -> u32 {
        u32::try_from(self.data.len()).expect("invariant: batches are cut by bytes long before 4 GiB")
    }

    /// Adds a watermark after the events pushed so far. A mark that does not
    /// advance the last one is dropped; one at the same position replaces it.
    pub fn mark(&mut self, watermark: i64) {
        self.mark_at(self.len() as u32, watermark);
    }

    /// Adds a watermark after the first `after` events (at or after the
    /// last mark's position, at most the batch's length); the same rules as
    /// [`Batch::mark`].
    pub fn mark_at(&mut self, after: u32, watermark: i64) {
        let after = after.min(self.len() as u32);
        match self.marks.last_mut() {
            Some(last) if last.watermark >= watermark => {}
            Some(last) if last.after >= after => last.watermark = watermark,
            _ => self.marks.push(Mark { after, watermark }),
        }
    }

    /// The watermarks the batch carries, in order.
    pub fn marks(&self) -> &[Mark] {
        &self.marks
    }

    /// Takes the batch's marks out, leaving it with none.
    pub fn take_marks(&mut self) -> Vec<Mark> {
        std::mem::take(&mut self.marks)
    }

    /// The last watermark the batch carries.
    pub fn last_watermark(&self) -> Option<i64> {
        self.marks.last().map(|m| m.watermark)
    }

    /// Event `i`.
    #[inline]
    pub fn event(&self, i: usize) -> EventRef<'_> {
        EventRef { key: self.key(i), value: self.value(i), timestamp: self.timestamps[i], origin: self.origins[i] }
    }

    /// Key of event `i`.
    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[2 * i] as usize..self.offsets[2 * i + 1] as usize]
    }

    /// Value of event `i`.
    #[inline]
    pub fn value(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[2 * i + 1] as usize..self.offsets[2 * i + 2] as usize]
    }

    /// Keys and values, back to back (the WIT `data`).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The `2n + 1` offsets into [`Batch::data`].
    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }

    /// One timestamp per event.
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// One origin per event (see [`EventRef::origin`]).
    pub fn origins(&self) -> &[u64] {
        &self.origins
    }

    /// One key group per event ([`NO_KEY_GROUP`] where not keyed).
    #[inline]
    pub fn key_groups(&self) -> &[u16] {
        &self.key_groups
    }

    /// Whether the batch is within `max_events` events and `max_bytes`
    /// bytes (a batch of one event may exceed the bytes).
    pub fn fits(&self, max_events: usize, max_bytes: usize) -> bool {
        self.len() <= max_events.max(1) && (self.bytes() <= max_bytes || self.len() <= 1)
    }

    /// Cuts the batch into batches of at most `max_events` events and
    /// `max_bytes` bytes (an event larger than that travels alone), in
    /// order, each mark in the piece its position falls in (a mark after
    /// the last event of a piece ends that piece).
    pub fn split(self, max_events: usize, max_bytes: usize) -> Vec<Batch> {
        if self.fits(max_events, max_bytes) {
            return vec![self];
        }
        let mut pieces = Vec::new();
        let mut piece = Batch::new();
        let mut marks = self.marks.iter().peekable();
        for i in 0..self.len() {
            while let Some(m) = marks.next_if(|m| m.after as usize == i) {
                piece.mark(m.watermark);
            }
            let size = self.offsets[2 * i + 2] as usize - self.offsets[2 * i] as usize;
            if !piece.is_empty() && (piece.len() >= max_events.max(1) || piece.bytes() + size > max_bytes) {
                pieces.push(std::mem::take(&mut piece));
            }
            piece.push_from(&self, i);
        }
        for m in marks {
            piece.mark(m.watermark);
        }
        if !piece.is_void() {
            pieces.push(piece);
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_flat_layout() {
        let mut b = Batch::new();
        b.push(b"k", b"v1", 5, 0);
        b.push_keyed(b"", 7, b"value-2", NO_TIMESTAMP, 10);
        b.push_with(b"kk", 7, 20, |buf| buf.extend_from_slice(b"x"));
        assert_eq!(b.len(), 3);
        assert_eq!(b.event(0), EventRef { key: b"k", value: b"v1", timestamp: 5, origin: 0 });
        assert_eq!(b.key(1), b"");
        assert_eq!(b.value(1), b"value-2");
        assert_eq!(b.key_groups(), &[NO_KEY_GROUP, 7, NO_KEY_GROUP]);
        assert_eq!(b.event(2).key, b"kk");
        assert_eq!(b.offsets().len(), 7);
    }

    #[test]
    fn marks_only_advance() {
        let mut b = Batch::new();
        b.mark(5);
        b.mark(3);
        b.push(b"", b"", 1, 0);
        b.mark(9);
        b.mark(10);
        assert_eq!(b.marks(), &[Mark { after: 0, watermark: 5 }, Mark { after: 1, watermark: 10 }]);
    }

    #[test]
    fn parts_from_outside_are_checked() {
        assert!(Batch::from_parts(b"kv".to_vec(), vec![0, 1, 2], vec![1], vec![0]).is_ok());
        assert!(Batch::from_parts(b"kv".to_vec(), vec![0, 1], vec![1], vec![0]).is_err(), "too few offsets");
        assert!(Batch::from_parts(b"kv".to_vec(), vec![1, 1, 2], vec![1], vec![0]).is_err(), "not from 0");
        assert!(Batch::from_parts(b"kv".to_vec(), vec![0, 2, 1], vec![1], vec![0]).is_err(), "decreasing");
        assert!(Batch::from_parts(b"kv".to_vec(), vec![0, 1, 3], vec![1], vec![0]).is_err(), "past the data");
        assert!(Batch::from_parts(b"kv".to_vec(), vec![0, 1, 2], vec![1], vec![]).is_err(), "no origin");
    }

    #[test]
    fn split_keeps_events_marks_and_order_within_bounds() {
        let mut b = Batch::new();
        b.mark(1);
        for i in 0..10u8 {
            b.push_keyed(&[i], u16::from(i), &[i; 3], i64::from(i), u64::from(i));
            if i % 3 == 0 {
                b.mark(i64::from(i) + 10);
            }
        }
        b.mark(100);
        let original = b.clone();
        let pieces = b.split(4, 1000);
        assert_eq!(pieces.iter().map(Batch::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut joined = Batch::new();
        for p in &pieces {
            assert!(p.fits(4, 1000));
            let base = joined.len() as u32;
            joined.extend_events(p);
            for m in p.marks() {
                joined.mark_at(base + m.after, m.watermark);
            }
        }
        assert_eq!(joined, original);
        let by_bytes = original.clone().split(100, 8);
        assert!(by_bytes.iter().all(|p| p.len() == 2 && p.bytes() == 8));
    }
}
