//! The bytes of a checkpoint's task files: a magic, a body of
//! length-prefixed fields and a CRC-32 of the body, so a truncated or
//! damaged file is refused when it is read, never half-restored. Keyed
//! state is written piece by piece (value, list element, map entry,
//! timer) with its key group, so a restore at another parallelism picks
//! the groups it owns.

use std::ops::RangeInclusive;
use weir_core::Batch;
use weir_state::{Change, KeyedStateBackend, Piece, Scope, StateKind, TimerDomain};
use weir_wasm::{OperatorList, Redistribution};

/// The first bytes of every task file (the layout of the body is the
/// metadata's `format`).
pub(crate) const MAGIC: &[u8; 8] = b"WEIRCHK1";

/// Appends fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("invariant: state pieces are far below 4 GiB"));
        self.buf.extend_from_slice(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads fields back, refusing to read past the end.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

/// A field could not be read: the data ends early or is damaged.
pub(crate) type ReadError = String;

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end =
            self.at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
                format!("the data ends at byte {} where {n} more bytes were expected", self.data.len())
            })?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("invariant: took 4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("invariant: took 8 bytes")))
    }

    pub fn i64(&mut self) -> Result<i64, ReadError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("invariant: took 8 bytes")))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], ReadError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str, ReadError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| format!("a name is not UTF-8: {e}"))
    }
}

/// A task file's whole content: magic, body, CRC-32 of the body.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out
}

/// The body of a sealed file, after checking its magic and checksum.
pub(crate) fn unseal(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < MAGIC.len() + 4 || &file[..MAGIC.len()] != MAGIC {
        return Err(format!("not a Weir checkpoint file ({} bytes, no `WEIRCHK1` header)", file.len()));
    }
    let (body, crc) = file[MAGIC.len()..].split_at(file.len() - MAGIC.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().expect("invariant: split 4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err("its checksum does not match: the file is damaged or truncated".into());
    }
    Ok(body)
}

const VALUE: u8 = 0;
const LIST: u8 = 1;
const MAP: u8 = 2;
const TIMER: u8 = 3;

fn scope(w: &mut Writer, at: Scope<'_>) {
    w.u32(u32::from(at.group));
    w.bytes(at.key);
    w.bytes(at.namespace);
}

/// A unit reset: the kind (0 value, 1 list, 2 map) follows the tag.
const RESET: u8 = 4;

/// Appends one entry to `body`.
fn entry(body: &mut Writer, change: Change<'_>) {
    match change {
        Change::Piece(Piece::Value { state, at, value }) => {
            body.u8(VALUE);
            body.u32(state);
            scope(body, at);
            body.bytes(value);
        }
        Change::Piece(Piece::List { state, at, element }) => {
            body.u8(LIST);
            body.u32(state);
            scope(body, at);
            body.bytes(element);
        }
        Change::Piece(Piece::Map { state, at, map_key, value }) => {
            body.u8(MAP);
            body.u32(state);
            scope(body, at);
            body.bytes(map_key);
            body.bytes(value);
        }
        Change::Piece(Piece::Timer { domain, at, timestamp }) => {
            body.u8(TIMER);
            body.u32(u32::from(domain == TimerDomain::ProcessingTime));
            scope(body, at);
            body.i64(timestamp);
        }
        Change::Reset { kind, state, at } => {
            body.u8(RESET);
            body.u32(state);
            scope(body, at);
            body.u8(kind as u8);
        }
    }
}

/// Writes every piece of keyed state and every timer of `groups` held by
/// `backend`, after the count of entries.
pub(crate) fn write_keyed(backend: &mut dyn KeyedStateBackend, groups: Option<RangeInclusive<u16>>, w: &mut Writer) {
    let mut count: u64 = 0;
    let mut body = Writer::default();
    if let Some(groups) = groups {
        backend.scan_groups(groups, &mut |piece| {
            count += 1;
            entry(&mut body, Change::Piece(piece));
        });
    }
    w.u64(count);
    w.buf.extend_from_slice(&body.buf);
}

/// Writes, as [`write_keyed`] does, what changed in `groups` since mark
/// `since` (resets and pieces, then every timer); false, having written
/// nothing, when the backend cannot tell (see
/// [`KeyedStateBackend::scan_changed`]).
pub(crate) fn write_changes(
    backend: &mut dyn KeyedStateBackend,
    groups: Option<RangeInclusive<u16>>,
    since: u64,
    w: &mut Writer,
) -> bool {
    let mut count: u64 = 0;
    let mut body = Writer::default();
    if let Some(groups) = groups {
        let known = backend.scan_changed(since, groups, &mut |change| {
            count += 1;
            entry(&mut body, change);
        });
        if !known {
            return false;
        }
    }
    w.u64(count);
    w.buf.extend_from_slice(&body.buf);
    true
}

/// Reads what [`write_keyed`] or [`write_changes`] wrote, handing each
/// entry whose key group `keep` accepts to `visit`; timers only when
/// `timers` (the last snapshot of a chain holds them all).
pub(crate) fn read_keyed(
    r: &mut Reader<'_>,
    keep: &dyn Fn(u16) -> bool,
    timers: bool,
    visit: &mut dyn FnMut(Change<'_>),
) -> Result<(), ReadError> {
    let count = r.u64()?;
    for _ in 0..count {
        let tag = r.u8()?;
        let state = r.u32()?;
        let group = u16::try_from(r.u32()?).map_err(|_| "a key group is out of range".to_owned())?;
        let at = Scope { group, key: r.bytes()?, namespace: r.bytes()? };
        let change = match tag {
            VALUE => Change::Piece(Piece::Value { state, at, value: r.bytes()? }),
            LIST => Change::Piece(Piece::List { state, at, element: r.bytes()? }),
            MAP => Change::Piece(Piece::Map { state, at, map_key: r.bytes()?, value: r.bytes()? }),
            TIMER => {
                let domain = if state == 1 { TimerDomain::ProcessingTime } else { TimerDomain::EventTime };
                let timestamp = r.i64()?;
                if !timers {
                    continue;
                }
                Change::Piece(Piece::Timer { domain, at, timestamp })
            }
            RESET => {
                let kind = match r.u8()? {
                    0 => StateKind::Value,
                    1 => StateKind::List,
                    2 => StateKind::Map,
                    other => return Err(format!("a reset of an unknown kind of state ({other})")),
                };
                Change::Reset { kind, state, at }
            }
            other => return Err(format!("unknown piece of state (tag {other})")),
        };
        if keep(group) {
            visit(change);
        }
    }
    Ok(())
}

/// An operator's operator-state lists: their count, then each list's
/// name, mode (0 even-split, 1 union), element count and elements. No
/// lists: no bytes.
pub(crate) fn write_lists(lists: &[OperatorList]) -> Vec<u8> {
    if lists.is_empty() {
        return Vec::new();
    }
    let mut w = Writer::default();
    w.u32(lists.len() as u32);
    for l in lists {
        w.str(&l.name);
        w.u8(match l.mode {
            Redistribution::EvenSplit => 0,
            Redistribution::Union => 1,
        });
        w.u32(l.len() as u32);
        for i in 0..l.len() {
            w.bytes(l.element(i));
        }
    }
    w.buf
}

/// Reads what [`write_lists`] wrote.
pub(crate) fn read_lists(bytes: &[u8]) -> Result<Vec<OperatorList>, ReadError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(bytes);
    let n = r.u32()?;
    let mut lists = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let name = r.str()?;
        let mode = match r.u8()? {
            0 => Redistribution::EvenSplit,
            1 => Redistribution::Union,
            m => return Err(format!("operator list `{name}` has an unknown mode {m}")),
        };
        let mut list = OperatorList::new(name, mode);
        for _ in 0..r.u32()? {
            list.push(r.bytes()?)?;
        }
        lists.push(list);
    }
    if !r.is_empty() {
        return Err("operator state has bytes after its last list".into());
    }
    Ok(lists)
}

/// A task's in-flight data of an unaligned checkpoint: per batch its
/// input, its events (key, key group, value, timestamp, origin) and its
/// watermarks. None: no bytes.
pub(crate) fn write_in_flight(data: &[(usize, Batch)]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut w = Writer::default();
    w.u32(data.len() as u32);
    for (input, b) in data {
        w.u32(*input as u32);
        w.u32(b.len() as u32);
        for i in 0..b.len() {
            let e = b.event(i);
            w.bytes(e.key);
            w.u32(u32::from(b.key_groups()[i]));
            w.bytes(e.value);
            w.i64(e.timestamp);
            w.u64(e.origin);
        }
        w.u32(b.marks().len() as u32);
        for m in b.marks() {
            w.u32(m.after);
            w.i64(m.watermark);
        }
    }
    w.buf
}

/// Reads what [`write_in_flight`] wrote; inputs at or past `inputs` are
/// refused (the job's inputs changed).
pub(crate) fn read_in_flight(bytes: &[u8], inputs: usize) -> Result<Vec<(usize, Batch)>, ReadError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(bytes);
    let n = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let input = r.u32()? as usize;
        if input >= inputs {
            return Err(format!("in-flight data of input {input}, and the task has {inputs} inputs"));
        }
        let mut b = Batch::new();
        for _ in 0..r.u32()? {
            let key = r.bytes()?;
            let group = u16::try_from(r.u32()?).map_err(|_| "a key group past 65535".to_owned())?;
            let value = r.bytes()?;
            b.push_keyed(key, group, value, r.i64()?, r.u64()?);
        }
        let mut last = 0;
        for _ in 0..r.u32()? {
            let after = r.u32()?;
            if after as usize > b.len() || after < last {
                return Err(format!("a watermark after event {after} of a batch of {}", b.len()));
            }
            last = after;
            b.mark_at(after, r.i64()?);
        }
        out.push((input, b));
    }
    if !r.is_empty() {
        return Err("in-flight data has bytes after its last batch".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_state::MemoryBackend;

    fn piece(c: Change<'_>) -> Piece<'_> {
        match c {
            Change::Piece(p) => p,
            Change::Reset { .. } => panic!("a full snapshot has no resets"),
        }
    }

    #[test]
    fn keyed_state_and_timers_round_trip_and_only_kept_groups_come_back() {
        let mut b = MemoryBackend::new();
        b.value_put(0, Scope::key(3, b"k"), b"v");
        b.list_add(1, Scope { group: 3, key: b"k", namespace: b"w" }, b"e1");
        b.list_add(1, Scope { group: 3, key: b"k", namespace: b"w" }, b"e2");
        b.map_put(2, Scope::key(9, b"j"), b"mk", b"mv");
        b.timer_register(TimerDomain::EventTime, Scope::key(9, b"j"), 42);
        b.timer_register(TimerDomain::ProcessingTime, Scope::key(3, b"k"), 7);
        let mut w = Writer::default();
        write_keyed(&mut b, Some(0..=127), &mut w);
        let file = seal(&w.buf);

        let body = unseal(&file).unwrap();
        let mut restored = MemoryBackend::new();
        read_keyed(&mut Reader::new(body), &|_| true, true, &mut |c| restored.restore(piece(c))).unwrap();
        let mut out = Vec::new();
        assert!(restored.value_get(0, Scope::key(3, b"k"), &mut out));
        assert_eq!(out, b"v");
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        restored.list_get(1, Scope { group: 3, key: b"k", namespace: b"w" }, &mut data, &mut ends);
        assert_eq!((data.as_slice(), ends.as_slice()), (&b"e1e2"[..], &[2u32, 4][..]), "list order is kept");
        assert_eq!(restored.next_timer(TimerDomain::EventTime), Some(42));
        assert_eq!(restored.next_timer(TimerDomain::ProcessingTime), Some(7));

        let mut only_9 = MemoryBackend::new();
        read_keyed(&mut Reader::new(body), &|g| g == 9, true, &mut |c| only_9.restore(piece(c))).unwrap();
        assert!(!only_9.value_get(0, Scope::key(3, b"k"), &mut out));
        assert!(only_9.map_contains(2, Scope::key(9, b"j"), b"mk"));
        assert_eq!(only_9.timers_pending(), 1);
    }

    #[test]
    fn a_truncated_or_damaged_file_is_refused() {
        let file = seal(b"some state");
        assert!(unseal(&file[..file.len() - 1]).unwrap_err().contains("checksum"));
        let mut damaged = file.clone();
        damaged[9] ^= 1;
        assert!(unseal(&damaged).unwrap_err().contains("checksum"));
        assert!(unseal(b"WEIR").unwrap_err().contains("not a Weir checkpoint file"));
        let mut r = Reader::new(&[5, 0, 0, 0, b'a']);
        assert!(r.bytes().unwrap_err().contains("ends at byte 5"));
    }

    #[test]
    fn operator_lists_read_back_as_written_and_damage_is_refused() {
        assert!(write_lists(&[]).is_empty(), "no lists: no bytes");
        assert!(read_lists(&[]).unwrap().is_empty());
        let mut a = OperatorList::new("offsets", Redistribution::EvenSplit);
        a.push(b"one").unwrap();
        a.push(b"").unwrap();
        let b = OperatorList::new("seen", Redistribution::Union);
        let bytes = write_lists(&[a.clone(), b.clone()]);
        assert_eq!(read_lists(&bytes).unwrap(), vec![a, b]);
        assert!(read_lists(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(read_lists(&extra).unwrap_err().contains("after its last list"));
        let mut mode = bytes.clone();
        // count (4), name length (4), "offsets" (7): then the mode.
        mode[15] = 9;
        assert!(read_lists(&mode).unwrap_err().contains("unknown mode 9"));
    }

    #[test]
    fn in_flight_data_reads_back_as_written_and_damage_is_refused() {
        assert!(write_in_flight(&[]).is_empty());
        let mut b = Batch::new();
        b.push_keyed(b"k", 7, b"v", 5, 11);
        b.mark(9);
        b.push(b"", b"w", 6, 12);
        let data = vec![(1, b.clone()), (0, Batch::watermark(3))];
        let bytes = write_in_flight(&data);
        let back = read_in_flight(&bytes, 2).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].0, &back[0].1), (1, &b));
        assert_eq!(back[1].1.marks(), Batch::watermark(3).marks());
        assert!(read_in_flight(&bytes, 1).unwrap_err().contains("input 1, and the task has 1 inputs"));
        assert!(read_in_flight(&bytes[..bytes.len() - 2], 2).is_err(), "truncated");
    }
}
