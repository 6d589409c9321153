//! State in hash maps on the heap.
//!
//! Each state has one hash map over all key groups; every entry's key
//! carries its key group, so a key group can be picked out for a snapshot
//! or handed to another subtask by one scan. (Flink's heap backend keeps a
//! map per key group; here that cost an extra cache miss per lookup, see
//! `docs/decisions.md`.) Timers have a queue per key group, as Flink's
//! `KeyGroupPartitionedPriorityQueue`; the head of each group's queue sits
//! in one ordered set, so the earliest timer of the subtask is found
//! without scanning groups.

use crate::{KeyedStateBackend, Piece, Scope, StateKind, Timer, TimerDomain};
use hashbrown::{Equivalent, HashMap};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::ops::RangeInclusive;

/// foldhash: fast on short keys and well spread.
pub(crate) type FastMap<K, V> = HashMap<K, V, MapSeed>;

/// foldhash with a seed of each map's own (from a counter shared by every
/// thread, so the order of a map's entries may differ between runs; no
/// output depends on it). One seed for every
/// map made a restore pathological: filling a map in another's iteration
/// order (a snapshot's) puts the keys of neighbouring buckets of the
/// large map into the same buckets of the small growing one, and a 38 M-key
/// restore took over 90 s in probes.
#[derive(Clone, Debug)]
pub(crate) struct MapSeed(foldhash::fast::FixedState);

impl Default for MapSeed {
    fn default() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        const STEP: u64 = 0x9E37_79B9_7F4A_7C15;
        static NEXT: AtomicU64 = AtomicU64::new(STEP);
        MapSeed(foldhash::fast::FixedState::with_seed(NEXT.fetch_add(STEP, Ordering::Relaxed)))
    }
}

impl std::hash::BuildHasher for MapSeed {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline(always)]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// Bytes held inline when they fit in 23 (one table entry's worth, no
/// pointer to chase), on the heap otherwise. Smaller and quicker to read
/// than `SmallVec` for the short keys and values keyed state is made of:
/// one tag check, no capacity arithmetic.
#[derive(Clone)]
pub(crate) enum Bytes {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

const INLINE: usize = 23;

impl Bytes {
    #[inline]
    pub(crate) fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            Bytes::Inline(b.len() as u8, data)
        } else {
            Bytes::Heap(b.into())
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline(len, data) => &data[..*len as usize],
            Bytes::Heap(b) => b,
        }
    }

    /// Appends the bytes to `out`: inline ones as one copy of known size
    /// (inlined, no `memcpy` call), cut back to their length.
    #[inline]
    pub(crate) fn append_to(&self, out: &mut Vec<u8>) {
        match self {
            Bytes::Inline(len, data) => {
                let end = out.len() + *len as usize;
                out.extend_from_slice(data);
                out.truncate(end);
            }
            Bytes::Heap(b) => out.extend_from_slice(b),
        }
    }

    /// Overwrites the bytes, reusing the inline space.
    #[inline]
    pub(crate) fn set(&mut self, b: &[u8]) {
        match self {
            Bytes::Inline(len, data) if b.len() <= INLINE => {
                data[..b.len()].copy_from_slice(b);
                *len = b.len() as u8;
            }
            _ => *self = Bytes::new(b),
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

/// Key group, key and namespace in one value. Its bytes are
/// `key ++ namespace ++ len(namespace)`, where the length is one byte
/// below 255, else 255 after four bytes of it (little endian); with an
/// empty namespace this is `key ++ [0]`. The key group rides along, so one
/// hash map per state holds every key group and a key group's entries can
/// still be picked out (for snapshots and rescaling) by a scan.
///
/// Up to [`SMALL`] bytes (keys up to 20 bytes without a namespace) are
/// held inline as `[len, group (2 bytes), bytes, zero padding]` in 24
/// bytes: such a composite is hashed and compared as three words, with no
/// pointer to chase and no `memcmp`. Longer ones live on the heap as
/// `group (2 bytes) ++ bytes`. Which form a composite takes depends only on
/// its length, so two equal composites always have the same form.
///
/// The table lookup is the largest cost of keyed state in `weir bench`:
/// one table per state rather than one per key group, and inline keys,
/// keep it to the loads of the control bytes and of the entry.
#[derive(Debug, Clone)]
pub(crate) enum Composite {
    Small([u8; 24]),
    Large(Box<[u8]>),
}

const SMALL: usize = 21;

impl Composite {
    /// The bytes (without the key group).
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Composite::Small(a) => &a[3..3 + a[0] as usize],
            Composite::Large(b) => &b[2..],
        }
    }

    /// The small composite of three words (as [`words`] reads them).
    #[inline(always)]
    fn from_words(w: [u64; 3]) -> Self {
        let mut a = [0u8; 24];
        for (i, w) in w.iter().enumerate() {
            a[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        Composite::Small(a)
    }

    pub(crate) fn group(&self) -> u16 {
        match self {
            Composite::Small(a) => u16::from_le_bytes([a[1], a[2]]),
            Composite::Large(b) => u16::from_le_bytes([b[0], b[1]]),
        }
    }
}

/// The three words of a small composite.
#[inline(always)]
fn words(a: &[u8; 24]) -> [u64; 3] {
    let w = |i: usize| u64::from_le_bytes(a[i..i + 8].try_into().expect("invariant: eight bytes"));
    [w(0), w(8), w(16)]
}

impl PartialEq for Composite {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Composite::Small(a), Composite::Small(b)) => words(a) == words(b),
            (Composite::Large(a), Composite::Large(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Composite {}

/// Composites (and so timers of one timestamp) sort by their bytes, which
/// is key order when the namespace is empty (the key ends with one zero
/// byte, below any byte that could continue a longer key); the key group,
/// fixed by the key, only keeps the order total. One `memcmp`, where
/// splitting key and namespace first cost the word count's timers a
/// tenth of its time.
impl Ord for Composite {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            // The same order without a `memcmp` call (a timer queue
            // compares composites at every step of a B-tree search): the
            // zero-padded bytes as three big-endian words, then the
            // length, which is the bytes' order (a shorter composite that
            // equals a longer one up to zero padding is a prefix of it).
            (Composite::Small(a), Composite::Small(b)) => {
                order_words(a).cmp(&order_words(b)).then(a[0].cmp(&b[0])).then_with(|| self.group().cmp(&other.group()))
            }
            _ => self.as_slice().cmp(other.as_slice()).then_with(|| self.group().cmp(&other.group())),
        }
    }
}

/// The bytes of a small composite (`a[3..24]`, zero padded) as three
/// big-endian words, so that comparing the words compares the bytes.
#[inline(always)]
fn order_words(a: &[u8; 24]) -> [u64; 3] {
    let be = |i: usize| u64::from_be_bytes(a[i..i + 8].try_into().expect("invariant: eight bytes"));
    // Bytes 16..19 are the low bytes of the second word: shifted out.
    [be(3), be(11), be(16) << 24]
}

impl PartialOrd for Composite {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The namespace length as the composite ends with it.
fn ns_suffix(n: usize, out: &mut [u8; 5]) -> &[u8] {
    match u8::try_from(n) {
        Ok(n) if n < 255 => {
            out[0] = n;
            &out[..1]
        }
        _ => {
            out[..4].copy_from_slice(&(n as u32).to_le_bytes());
            out[4] = 255;
            &out[..]
        }
    }
}

/// `dst.copy_from_slice(src)` for the short slices of composite keys, by
/// overlapping loads and stores of known size instead of a `memcpy` call.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        17..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

fn composite_len(at: Scope<'_>) -> usize {
    let n = at.namespace.len();
    at.key.len() + n + if n < 255 { 1 } else { 5 }
}

pub(crate) fn composite(at: Scope<'_>) -> Composite {
    let mut suffix = [0u8; 5];
    let parts = [at.key, at.namespace, ns_suffix(at.namespace.len(), &mut suffix)];
    let len = composite_len(at);
    let group = at.group.to_le_bytes();
    if len <= SMALL {
        let mut a = [0u8; 24];
        a[0] = len as u8;
        a[1..3].copy_from_slice(&group);
        let (k, n) = (at.key.len(), at.namespace.len());
        copy_short(&mut a[3..3 + k], at.key);
        // A window's namespace is 16 bytes: a copy of known size, inlined
        // (the window operator builds one of these per state access).
        match <&[u8; 16]>::try_from(at.namespace) {
            Ok(ns) => a[3 + k..3 + k + 16].copy_from_slice(ns),
            Err(_) => a[3 + k..3 + k + n].copy_from_slice(at.namespace),
        }
        // Small composites have namespaces under 255 bytes: a one-byte suffix.
        a[3 + k + n] = n as u8;
        Composite::Small(a)
    } else {
        Composite::Large([&group[..], at.key, at.namespace, parts[2]].concat().into())
    }
}

/// The words of the small composite of a key of at most 20 bytes without
/// a namespace, from overlapping loads of the key rather than byte
/// copies: the key as a zero-padded little-endian number, shifted past
/// the length and key-group bytes.
#[inline(always)]
fn small_key(group: u16, key: &[u8]) -> [u64; 3] {
    let n = key.len();
    debug_assert!(n < SMALL);
    let load = |i: usize| u64::from_le_bytes(key[i..i + 8].try_into().expect("invariant: eight bytes"));
    let load4 = |i: usize| u64::from(u32::from_le_bytes(key[i..i + 4].try_into().expect("invariant: four bytes")));
    let byte = |i: usize| u64::from(key[i]) << (8 * i);
    let [k0, k1, k2] = match n {
        0 => [0, 0, 0],
        1..=3 => [byte(0) | byte(n / 2) | byte(n - 1), 0, 0],
        4..=7 => [load4(0) | load4(n - 4) << (8 * (n - 4)), 0, 0],
        8 => [load(0), 0, 0],
        9..=16 => [load(0), load(n - 8) >> (8 * (16 - n)), 0],
        _ => [load(0), load(8), load(n - 8) >> (8 * (24 - n))],
    };
    let head = (n as u64 + 1) | (u64::from(group) << 8);
    [k0 << 24 | head, k1 << 24 | k0 >> 40, k2 << 24 | k1 >> 40]
}

impl Hash for Composite {
    #[inline(always)]
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Composite::Small(a) => hash_words(words(a), h),
            Composite::Large(b) => {
                let (key, namespace) = split(&b[2..]);
                hash_parts(key, namespace, h);
            }
        }
    }
}

/// A large composite's hash: key and namespace apart, so a probe hashes
/// them without building the composite. (The key group is a function of
/// the key: hashing it would add nothing.)
#[inline(always)]
fn hash_parts<H: Hasher>(key: &[u8], namespace: &[u8], h: &mut H) {
    h.write(key);
    if !namespace.is_empty() {
        h.write(namespace);
    }
}

/// A small composite's hash: two multiplies in foldhash, one for the
/// first two words, one for the third as the hasher finishes.
#[inline(always)]
fn hash_words<H: Hasher>([w0, w1, w2]: [u64; 3], h: &mut H) {
    h.write_u128(u128::from(w0) | u128::from(w1) << 64);
    h.write_u64(w2);
}

/// A lookup of a small composite, by its words.
pub(crate) struct SmallProbe(pub(crate) [u64; 3]);

/// A lookup of a large composite, by its scope (no allocation).
pub(crate) struct LargeProbe<'a>(pub(crate) Scope<'a>);

/// The words of the composite of `at` if it is small.
#[inline(always)]
pub(crate) fn small_words(at: Scope<'_>) -> Option<[u64; 3]> {
    if at.namespace.is_empty() {
        return (at.key.len() < SMALL).then(|| small_key(at.group, at.key));
    }
    if composite_len(at) > SMALL {
        return None;
    }
    match composite(at) {
        Composite::Small(a) => Some(words(&a)),
        Composite::Large(_) => None,
    }
}

impl Hash for SmallProbe {
    #[inline(always)]
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_words(self.0, h);
    }
}

impl Equivalent<Composite> for SmallProbe {
    #[inline(always)]
    fn equivalent(&self, c: &Composite) -> bool {
        matches!(c, Composite::Small(a) if words(a) == self.0)
    }
}

impl Hash for LargeProbe<'_> {
    #[inline(always)]
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_parts(self.0.key, self.0.namespace, h);
    }
}

impl Equivalent<Composite> for LargeProbe<'_> {
    #[inline(always)]
    fn equivalent(&self, c: &Composite) -> bool {
        matches!(c, Composite::Large(b) if b[..2] == self.0.group.to_le_bytes() && split(&b[2..]) == (self.0.key, self.0.namespace))
    }
}

/// Runs `$m.$method(&probe)` with the probe that fits `$at`.
macro_rules! probe {
    ($m:expr, $method:ident, $at:expr) => {{
        let at = $at;
        match small_words(at) {
            Some(w) => $m.$method(&SmallProbe(w)),
            None => $m.$method(&LargeProbe(at)),
        }
    }};
}
pub(crate) use probe;

/// The key and namespace of a composite's bytes.
pub(crate) fn split(c: &[u8]) -> (&[u8], &[u8]) {
    let (n, rest) = match c.split_last() {
        Some((&255, rest)) => {
            let (rest, len) = rest.split_at(rest.len() - 4);
            (u32::from_le_bytes(len.try_into().expect("invariant: four length bytes")) as usize, rest)
        }
        Some((&n, rest)) => (n as usize, rest),
        None => (0, c),
    };
    rest.split_at(rest.len() - n)
}

/// The scope a composite stands for.
pub(crate) fn scope_of(c: &Composite) -> Scope<'_> {
    let (key, namespace) = split(c.as_slice());
    Scope { group: c.group(), key, namespace }
}

/// Hands every entry of `maps` in `groups` to `f` with its state id.
pub(crate) fn each_in<'a, V>(
    maps: &'a [FastMap<Composite, V>],
    groups: &RangeInclusive<u16>,
    mut f: impl FnMut(u32, Scope<'a>, &'a V),
) {
    for (state, m) in maps.iter().enumerate() {
        for (c, v) in m.iter().filter(|(c, _)| groups.contains(&c.group())) {
            f(state as u32, scope_of(c), v);
        }
    }
}

/// Per state id: one hash map over every key group.
type PerState<V> = Vec<FastMap<Composite, V>>;

/// A timer queue per key group.
type Queues = Vec<BTreeSet<(i64, Composite)>>;

/// The `memory` backend: a hash map per state, and a timer queue per key
/// group.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    values: PerState<Bytes>,
    lists: PerState<Vec<Vec<u8>>>,
    maps: PerState<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Per domain, per key group.
    timers: [Queues; 2],
    /// Per domain: the earliest timer of every key group that has one.
    heads: [BTreeSet<(i64, Composite, u16)>; 2],
    pending: usize,
    /// Pieces a restore announced (see `restore_hint`): the first value
    /// state restored makes room for them, once (`sized`; later files of
    /// a chain replace or add to the same keys).
    hint: usize,
    sized: bool,
    /// Restored values not yet in their table (until `restore_end`).
    staging: Option<Staging>,
}

/// Restored values held back, to go into their table in the order of its
/// buckets. Put in a snapshot's order (another table's), 38 M values
/// touch a 4 GB table at random: a cache miss and, past the TLB's reach, a
/// page walk per value (37 s into `lsm`, `docs/benchmarks.md`). In bucket
/// order each run of values fills one region of the table, a megabyte or
/// so, while it is in the cache. The values are cut into runs by the top
/// bits of the bucket their hash picks (hashbrown's first probe is the
/// hash's low bits under the bucket mask); within a run they keep the
/// order they came in, so a later piece of a key still replaces an
/// earlier one.
#[derive(Debug)]
pub(crate) struct Staging {
    /// The value state staged (one per restore: the first one restored).
    pub(crate) state: u32,
    mask: u64,
    shift: u32,
    runs: Vec<Vec<(Composite, Bytes)>>,
    /// Values and bytes held back, and at most how many of each: a
    /// backend with a memory budget stops staging there (and puts what it
    /// held), so a restore larger than its budget still spills as it goes.
    held: usize,
    bytes: usize,
    limit: (usize, usize),
}

/// The fewest announced pieces worth staging: below, values go straight
/// into the table.
pub(crate) const STAGE_FROM: usize = 1 << 16;

/// At most `1 << RUN_BITS` runs: of a 4 GB table, a megabyte each.
const RUN_BITS: u32 = 12;

impl Staging {
    /// Staging for about `pieces` values of `state`, going into `table`
    /// once it has room for them all (so its bucket count is final).
    /// At most `limit` values of at most `limit.1` bytes in all are held.
    pub(crate) fn new<V>(state: u32, table: &FastMap<Composite, V>, pieces: usize, limit: (usize, usize)) -> Self {
        // hashbrown keeps 7 of each 8 buckets usable from 16 buckets up.
        let buckets = (table.capacity() / 7 * 8).next_power_of_two().max(16);
        let bits = buckets.trailing_zeros();
        let run_bits = RUN_BITS.min(bits - 4);
        let per = (pieces >> run_bits) + (pieces >> run_bits) / 8 + 4;
        Staging {
            state,
            mask: buckets as u64 - 1,
            shift: bits - run_bits,
            runs: (0..1usize << run_bits).map(|_| Vec::with_capacity(per)).collect(),
            held: 0,
            bytes: 0,
            limit,
        }
    }

    /// Holds back value `value` at `at`, with the table's `hasher`; false
    /// (holding nothing) once the limit is reached: the caller puts what
    /// was held and the rest straight in.
    #[inline]
    #[must_use]
    pub(crate) fn push(&mut self, hasher: &MapSeed, at: Scope<'_>, value: &[u8]) -> bool {
        let size = at.key.len() + at.namespace.len() + value.len() + 64;
        if self.held >= self.limit.0 || self.bytes.saturating_add(size) > self.limit.1 {
            return false;
        }
        self.held += 1;
        self.bytes += size;
        // Short keys without a namespace (most keyed state) from the
        // words of the key, without byte copies.
        let c = match at.namespace.is_empty() && at.key.len() < SMALL {
            true => Composite::from_words(small_key(at.group, at.key)),
            false => composite(at),
        };
        let bucket = std::hash::BuildHasher::hash_one(hasher, &c) & self.mask;
        self.runs[(bucket >> self.shift) as usize].push((c, Bytes::new(value)));
        true
    }

    /// The values held back, run by run (each run's memory goes as soon
    /// as it has been handed out).
    pub(crate) fn drain(self) -> impl Iterator<Item = (Composite, Bytes)> {
        self.runs.into_iter().flatten()
    }
}

fn get<'a, V>(maps: &'a PerState<V>, state: u32, at: Scope<'_>) -> Option<&'a V> {
    let m = maps.get(state as usize)?;
    probe!(m, get, at)
}

fn slot<V>(maps: &mut PerState<V>, state: u32) -> &mut FastMap<Composite, V> {
    let i = state as usize;
    if maps.len() <= i {
        maps.resize_with(i + 1, FastMap::default);
    }
    &mut maps[i]
}

pub(crate) fn push_items<'a>(items: impl Iterator<Item = &'a [u8]>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
    let base = data.len();
    for item in items {
        data.extend_from_slice(item);
        ends.push((data.len() - base) as u32);
    }
}

/// The items of a flat list: `data` split at `ends`, each end clamped
/// between the previous one and the end of `data`, so malformed ends
/// from a guest give empty items, never a panic.
pub(crate) fn items<'a>(data: &'a [u8], ends: &'a [u32]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut start = 0usize;
    ends.iter().map(move |&e| {
        let e = (e as usize).clamp(start, data.len());
        let item = &data[start..e];
        start = e;
        item
    })
}

/// The items of `data` split at `ends`, owned (for tests).
#[cfg(test)]
pub(crate) fn split_items(data: &[u8], ends: &[u32]) -> Vec<Vec<u8>> {
    items(data, ends).map(<[u8]>::to_vec).collect()
}

/// The key group of every entry of every state in `maps`.
fn used<V>(maps: &PerState<V>) -> impl Iterator<Item = usize> + '_ {
    maps.iter().flat_map(|m| m.keys().map(|c| usize::from(c.group())))
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys (with their namespaces) holding a value in value
    /// state `state`, over all key groups.
    pub fn value_keys(&self, state: u32) -> usize {
        self.values.get(state as usize).map_or(0, |m| m.len())
    }

    /// The key groups that hold any state or timer, in order (a scan of
    /// every entry).
    pub fn key_groups(&self) -> Vec<u16> {
        let timers = self.timers.iter().flat_map(|qs| qs.iter().enumerate().filter(|(_, q)| !q.is_empty()));
        let mut groups: Vec<usize> =
            used(&self.values).chain(used(&self.lists)).chain(used(&self.maps)).chain(timers.map(|(g, _)| g)).collect();
        groups.sort_unstable();
        groups.dedup();
        groups.into_iter().map(|g| g as u16).collect()
    }

    /// Number of timers of `domain` in key group `g`.
    pub(crate) fn timers_in(&self, domain: TimerDomain, g: u16) -> usize {
        self.timers[domain as usize].get(g as usize).map_or(0, BTreeSet::len)
    }

    /// Key groups with timers of `domain`, and how many each has.
    pub(crate) fn timer_groups(&self, domain: TimerDomain) -> impl Iterator<Item = (u16, usize)> + '_ {
        let queues = &self.timers[domain as usize];
        queues.iter().enumerate().filter(|(_, q)| !q.is_empty()).map(|(g, q)| (g as u16, q.len()))
    }

    /// Takes the timers of `domain` in key group `g` after the first
    /// `keep`, in order.
    pub(crate) fn split_timers(&mut self, domain: TimerDomain, g: u16, keep: usize) -> BTreeSet<(i64, Composite)> {
        self.with_timers(domain, g, |q| match q.iter().nth(keep).cloned() {
            Some(first) => q.split_off(&first),
            None => BTreeSet::new(),
        })
    }

    /// Changes the timers of one group's queue, keeping its head in `heads`.
    fn with_timers<R>(
        &mut self,
        domain: TimerDomain,
        g: u16,
        f: impl FnOnce(&mut BTreeSet<(i64, Composite)>) -> R,
    ) -> R {
        let d = domain as usize;
        let queues = &mut self.timers[d];
        if queues.len() <= g as usize {
            queues.resize_with(g as usize + 1, BTreeSet::new);
        }
        let queue = &mut queues[g as usize];
        let before = queue.first().cloned();
        let len = queue.len();
        let r = f(queue);
        let after = queue.first().cloned();
        let grown = queue.len() as isize - len as isize;
        if before != after {
            if let Some((ts, c)) = before {
                self.heads[d].remove(&(ts, c, g));
            }
            if let Some((ts, c)) = after {
                self.heads[d].insert((ts, c, g));
            }
        }
        self.pending = (self.pending as isize + grown) as usize;
        r
    }
}

impl KeyedStateBackend for MemoryBackend {
    fn value_get(&mut self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool {
        get(&self.values, state, at).map(|v| v.append_to(out)).is_some()
    }

    fn restore_hint(&mut self, pieces: usize) {
        self.hint = pieces;
    }

    fn restore(&mut self, piece: Piece<'_>) {
        if let Piece::Value { state, at, value } = piece {
            if self.hint > 0 && !self.sized {
                let m = slot(&mut self.values, state);
                m.reserve(self.hint);
                self.sized = true;
                if self.hint >= STAGE_FROM {
                    self.staging = Some(Staging::new(state, m, self.hint, (usize::MAX, usize::MAX)));
                }
            }
            if let Some(s) = &mut self.staging
                && s.state == state
                && s.push(self.values[state as usize].hasher(), at, value)
            {
                return;
            }
        }
        match piece {
            Piece::Value { state, at, value } => self.value_put(state, at, value),
            Piece::List { state, at, element } => self.list_add(state, at, element),
            Piece::Map { state, at, map_key, value } => self.map_put(state, at, map_key, value),
            Piece::Timer { domain, at, timestamp } => self.timer_register(domain, at, timestamp),
        }
    }

    fn restore_end(&mut self) {
        if let Some(s) = self.staging.take() {
            let m = slot(&mut self.values, s.state);
            for (c, v) in s.drain() {
                m.insert(c, v);
            }
        }
    }

    fn value_put(&mut self, state: u32, at: Scope<'_>, value: &[u8]) {
        let m = slot(&mut self.values, state);
        match probe!(m, get_mut, at) {
            Some(v) => v.set(value),
            None => {
                m.insert(composite(at), Bytes::new(value));
            }
        }
    }

    fn value_clear(&mut self, state: u32, at: Scope<'_>) {
        probe!(slot(&mut self.values, state), remove, at);
    }

    fn value_take(&mut self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool {
        let Some(m) = self.values.get_mut(state as usize) else { return false };
        probe!(m, remove, at).map(|v| v.append_to(out)).is_some()
    }

    fn list_get(&mut self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(l) = get(&self.lists, state, at) {
            push_items(l.iter().map(Vec::as_slice), data, ends);
        }
    }

    fn list_add(&mut self, state: u32, at: Scope<'_>, element: &[u8]) {
        let m = slot(&mut self.lists, state);
        match probe!(m, get_mut, at) {
            Some(l) => l.push(element.to_vec()),
            None => {
                m.insert(composite(at), vec![element.to_vec()]);
            }
        }
    }

    fn list_replace(&mut self, state: u32, at: Scope<'_>, data: &[u8], ends: &[u32]) {
        let items: Vec<Vec<u8>> = items(data, ends).map(<[u8]>::to_vec).collect();
        let m = slot(&mut self.lists, state);
        if items.is_empty() {
            probe!(m, remove, at);
        } else {
            m.insert(composite(at), items);
        }
    }

    fn list_clear(&mut self, state: u32, at: Scope<'_>) {
        probe!(slot(&mut self.lists, state), remove, at);
    }

    fn map_get(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], out: &mut Vec<u8>) -> bool {
        get(&self.maps, state, at).and_then(|m| m.get(map_key)).map(|v| out.extend_from_slice(v)).is_some()
    }

    fn map_put(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], value: &[u8]) {
        let m = slot(&mut self.maps, state);
        match probe!(m, get_mut, at) {
            Some(inner) => {
                inner.insert(map_key.to_vec(), value.to_vec());
            }
            None => {
                m.insert(composite(at), BTreeMap::from([(map_key.to_vec(), value.to_vec())]));
            }
        }
    }

    fn map_remove(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) {
        let m = slot(&mut self.maps, state);
        if let Some(inner) = probe!(m, get_mut, at) {
            inner.remove(map_key);
            if inner.is_empty() {
                probe!(m, remove, at);
            }
        }
    }

    fn map_contains(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) -> bool {
        get(&self.maps, state, at).is_some_and(|m| m.contains_key(map_key))
    }

    fn map_scan(
        &mut self,
        state: u32,
        at: Scope<'_>,
        after: Option<&[u8]>,
        limit: usize,
        data: &mut Vec<u8>,
        ends: &mut Vec<u32>,
    ) {
        use std::ops::Bound;
        if let Some(m) = get(&self.maps, state, at) {
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            let entries = m.range::<[u8], _>((from, Bound::Unbounded)).take(limit);
            push_items(entries.flat_map(|(k, v)| [k.as_slice(), v.as_slice()]), data, ends);
        }
    }

    fn map_clear(&mut self, state: u32, at: Scope<'_>) {
        probe!(slot(&mut self.maps, state), remove, at);
    }

    fn scan_groups(&mut self, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Piece<'_>)) {
        each_in(&self.values, &groups, |state, at, v| visit(Piece::Value { state, at, value: v.as_slice() }));
        each_in(&self.lists, &groups, |state, at, l| {
            l.iter().for_each(|e| visit(Piece::List { state, at, element: e }));
        });
        each_in(&self.maps, &groups, |state, at, m| {
            m.iter().for_each(|(k, v)| visit(Piece::Map { state, at, map_key: k, value: v }));
        });
        for domain in [TimerDomain::EventTime, TimerDomain::ProcessingTime] {
            let queues = &self.timers[domain as usize];
            for g in groups.clone() {
                for (timestamp, c) in queues.get(g as usize).into_iter().flatten() {
                    visit(Piece::Timer { domain, at: scope_of(c), timestamp: *timestamp });
                }
            }
        }
    }

    fn retain(&mut self, kind: StateKind, state: u32, keep: &mut dyn FnMut(&[u8]) -> bool) {
        let i = state as usize;
        match kind {
            StateKind::Value => {
                if let Some(m) = self.values.get_mut(i) {
                    m.retain(|_, v| keep(v.as_slice()));
                }
            }
            StateKind::List => {
                if let Some(m) = self.lists.get_mut(i) {
                    m.retain(|_, l| {
                        l.retain(|e| keep(e));
                        !l.is_empty()
                    });
                }
            }
            StateKind::Map => {
                if let Some(m) = self.maps.get_mut(i) {
                    m.retain(|_, inner| {
                        inner.retain(|_, v| keep(v));
                        !inner.is_empty()
                    });
                }
            }
        }
    }

    fn drop_groups(&mut self, groups: RangeInclusive<u16>) {
        let keep = |c: &Composite| !groups.contains(&c.group());
        self.values.iter_mut().for_each(|m| m.retain(|c, _| keep(c)));
        self.lists.iter_mut().for_each(|m| m.retain(|c, _| keep(c)));
        self.maps.iter_mut().for_each(|m| m.retain(|c, _| keep(c)));
        for domain in [TimerDomain::EventTime, TimerDomain::ProcessingTime] {
            for g in groups.clone() {
                if self.timers[domain as usize].get(g as usize).is_some_and(|q| !q.is_empty()) {
                    self.with_timers(domain, g, BTreeSet::clear);
                }
            }
        }
    }

    fn timer_register(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        let c = composite(at);
        self.with_timers(domain, at.group, |q| q.insert((timestamp, c)));
    }

    fn timer_delete(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        let c = composite(at);
        if self.timers[domain as usize].get(at.group as usize).is_some_and(|q| !q.is_empty()) {
            self.with_timers(domain, at.group, |q| q.remove(&(timestamp, c)));
        }
    }

    fn timers_pending(&self) -> usize {
        self.pending
    }

    fn next_timer(&self, domain: TimerDomain) -> Option<i64> {
        self.heads[domain as usize].first().map(|t| t.0)
    }

    fn pop_timers(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<Timer>) {
        for _ in 0..limit {
            let Some(&(ts, _, g)) = self.heads[domain as usize].first() else { break };
            if ts > upto {
                break;
            }
            let (timestamp, c) =
                self.with_timers(domain, g, |q| q.pop_first()).expect("invariant: a group in `heads` has a timer");
            let (key, namespace) = split(c.as_slice());
            out.push(Timer { timestamp, group: g, key: key.to_vec(), namespace: namespace.to_vec() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(group: u16, key: &[u8]) -> Scope<'_> {
        Scope::key(group, key)
    }

    #[test]
    fn value_take_reads_and_removes_in_one_look_up() {
        let mut b = MemoryBackend::new();
        let ns = Scope { group: 3, key: b"a", namespace: b"w1" };
        b.value_put(0, ns, b"1");
        let mut out = b"x".to_vec();
        assert!(b.value_take(0, ns, &mut out));
        assert_eq!(out, b"x1", "appended");
        assert!(!b.value_take(0, ns, &mut out) && !b.value_get(0, ns, &mut out));
        assert!(!b.value_take(7, ns, &mut out), "an undeclared state holds nothing");
    }

    #[test]
    fn value_state_is_scoped_by_state_key_and_namespace() {
        let mut b = MemoryBackend::new();
        b.value_put(0, at(3, b"a"), b"1");
        b.value_put(1, at(3, b"a"), b"2");
        b.value_put(0, at(3, b"a"), b"3");
        b.value_put(0, Scope { group: 3, key: b"a", namespace: b"w1" }, b"4");
        let mut out = Vec::new();
        assert!(b.value_get(0, at(3, b"a"), &mut out));
        assert!(b.value_get(1, at(3, b"a"), &mut out));
        assert!(!b.value_get(0, at(3, b"b"), &mut out));
        assert!(b.value_get(0, Scope { group: 3, key: b"a", namespace: b"w1" }, &mut out));
        assert_eq!(out, b"324");
        b.value_clear(0, at(3, b"a"));
        assert!(!b.value_get(0, at(3, b"a"), &mut out));
        assert_eq!(b.value_keys(0), 1, "the namespaced value stays");
        assert_eq!(b.key_groups(), vec![3]);
    }

    #[test]
    fn list_and_map_state_round_trip_flat() {
        let mut b = MemoryBackend::new();
        b.list_add(0, at(0, b"k"), b"x");
        b.list_add(0, at(0, b"k"), b"yz");
        let (mut data, mut ends) = (b"pre".to_vec(), Vec::new());
        b.list_get(0, at(0, b"k"), &mut data, &mut ends);
        assert_eq!((data.as_slice(), ends.as_slice()), (&b"prexyz"[..], &[1u32, 3][..]));
        b.list_replace(0, at(0, b"k"), b"abc", &[2, 3]);
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.list_get(0, at(0, b"k"), &mut data, &mut ends);
        assert_eq!((data.as_slice(), ends.as_slice()), (&b"abc"[..], &[2u32, 3][..]));

        b.map_put(0, at(0, b"k"), b"b", b"2");
        b.map_put(0, at(0, b"k"), b"a", b"1");
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.map_scan(0, at(0, b"k"), None, usize::MAX, &mut data, &mut ends);
        assert_eq!(data, b"a1b2");
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.map_scan(0, at(0, b"k"), Some(b"a"), 1, &mut data, &mut ends);
        assert_eq!((data.as_slice(), ends.as_slice()), (&b"b2"[..], &[1u32, 2][..]));
        assert!(b.map_contains(0, at(0, b"k"), b"b") && !b.map_contains(0, at(0, b"k"), b"c"));
        b.map_remove(0, at(0, b"k"), b"a");
        let mut v = Vec::new();
        assert!(!b.map_get(0, at(0, b"k"), b"a", &mut v));
        assert!(b.map_get(0, at(0, b"k"), b"b", &mut v));
    }

    #[test]
    fn timers_pop_in_timestamp_then_key_order_across_key_groups() {
        let mut b = MemoryBackend::new();
        b.timer_register(TimerDomain::EventTime, at(9, b"b"), 20);
        b.timer_register(TimerDomain::EventTime, at(1, b"c"), 10);
        b.timer_register(TimerDomain::EventTime, at(5, b"a"), 10);
        b.timer_register(TimerDomain::EventTime, at(5, b"a"), 10);
        b.timer_register(TimerDomain::EventTime, at(2, b"d"), 30);
        b.timer_register(TimerDomain::ProcessingTime, at(5, b"a"), 5);
        b.timer_delete(TimerDomain::EventTime, at(2, b"d"), 30);
        assert_eq!(b.timers_pending(), 4);
        assert_eq!(b.next_timer(TimerDomain::EventTime), Some(10));
        let mut out = Vec::new();
        b.pop_timers(TimerDomain::EventTime, 25, 100, &mut out);
        let got: Vec<(i64, u16, &[u8])> = out.iter().map(|t| (t.timestamp, t.group, t.key.as_slice())).collect();
        assert_eq!(got, vec![(10, 5, &b"a"[..]), (10, 1, &b"c"[..]), (20, 9, &b"b"[..])]);
        assert_eq!(b.next_timer(TimerDomain::EventTime), None);
        assert_eq!(b.next_timer(TimerDomain::ProcessingTime), Some(5));
        assert_eq!(b.timers_pending(), 1);
    }

    proptest! {
        #[test]
        fn composites_split_back_and_sort_as_their_keys(
            k1 in proptest::collection::vec(any::<u8>(), 0..30),
            k2 in proptest::collection::vec(any::<u8>(), 0..30),
            ns in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let c = composite(Scope { group: 0, key: &k1, namespace: &ns });
            prop_assert_eq!(split(c.as_slice()), (&k1[..], &ns[..]));
            prop_assert_eq!(c.group(), 0);
            let (a, b) = (composite(Scope::key(0, &k1)), composite(Scope::key(0, &k2)));
            prop_assert_eq!(a.cmp(&b), k1.cmp(&k2));
        }

        /// The word comparison of small composites is their bytes' order,
        /// also where one equals another up to zero padding (keys of
        /// zeros and 255s, around the inline limit).
        #[test]
        fn composites_order_as_their_bytes_then_key_group(
            k1 in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(255)], 0..23),
            k2 in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(255)], 0..23),
            n1 in 0usize..3,
            n2 in 0usize..3,
            g1 in 0u16..3,
            g2 in 0u16..3,
        ) {
            let a = composite(Scope { group: g1, key: &k1, namespace: &[0, 0][..n1] });
            let b = composite(Scope { group: g2, key: &k2, namespace: &[0, 0][..n2] });
            let want = a.as_slice().cmp(b.as_slice()).then(g1.cmp(&g2));
            prop_assert_eq!(a.cmp(&b), want);
            prop_assert_eq!(a == b, want.is_eq());
        }

        /// Keys around the inline limit, with and without namespaces
        /// (some past 255 bytes): a probe finds what was stored under the
        /// same scope and nothing else, like a map of (key, namespace).
        #[test]
        fn value_state_behaves_like_a_map_of_key_and_namespace(
            ops in proptest::collection::vec((0usize..13, 0usize..4, any::<u8>(), 0u8..3), 1..300),
        ) {
            // Lengths at each load pattern's edges, and pairs that differ
            // only in their last byte.
            let mut keys: Vec<Vec<u8>> = [0usize, 3, 7, 16, 19, 20, 21, 22, 40].iter().map(|&n| (0..n as u8).collect()).collect();
            for n in [3usize, 7, 16, 20] {
                let mut k: Vec<u8> = (0..n as u8).collect();
                k[n - 1] ^= 0x80;
                keys.push(k);
            }
            let spaces: Vec<Vec<u8>> = [0usize, 1, 17, 300].iter().map(|&n| vec![7; n]).collect();
            let mut b = MemoryBackend::new();
            let mut model = BTreeMap::new();
            for (k, n, v, op) in ops {
                let (key, ns) = (&keys[k % keys.len()], &spaces[n]);
                // A key lives in one key group, as the router guarantees.
                let at = Scope { group: k as u16 * 1000, key, namespace: ns };
                let mut out = Vec::new();
                match op {
                    0 => {
                        b.value_put(0, at, &[v]);
                        model.insert((key.clone(), ns.clone()), v);
                    }
                    1 => {
                        b.value_clear(0, at);
                        model.remove(&(key.clone(), ns.clone()));
                    }
                    _ => {
                        let found = b.value_get(0, at, &mut out);
                        let want = model.get(&(key.clone(), ns.clone()));
                        prop_assert_eq!(found.then(|| out[0]), want.copied());
                    }
                }
            }
            prop_assert_eq!(b.value_keys(0), model.len());
            let mut groups: Vec<u16> = model.keys().map(|(k, _)| keys.iter().position(|x| x == k).unwrap() as u16 * 1000).collect();
            groups.sort_unstable();
            groups.dedup();
            prop_assert_eq!(b.key_groups(), groups);
        }

        #[test]
        fn probes_hash_and_match_as_the_composites_they_look_up(
            key in proptest::collection::vec(any::<u8>(), 0..30),
            ns in proptest::collection::vec(any::<u8>(), 0..30),
            group in any::<u16>(),
        ) {
            let at = Scope { group, key: &key, namespace: &ns };
            let c = composite(at);
            prop_assert_eq!(c.group(), group);
            prop_assert_eq!(split(c.as_slice()), (&key[..], &ns[..]));
            use std::hash::BuildHasher;
            let hasher = MapSeed::default();
            let (hc, found) = match small_words(at) {
                Some(w) => (hasher.hash_one(SmallProbe(w)), SmallProbe(w).equivalent(&c)),
                None => (hasher.hash_one(LargeProbe(at)), LargeProbe(at).equivalent(&c)),
            };
            prop_assert_eq!(hc, hasher.hash_one(&c));
            prop_assert!(found);
        }

        #[test]
        fn timers_pop_like_one_ordered_set(ops in proptest::collection::vec((0u8..6, 0i64..20, any::<bool>()), 1..200), upto in 0i64..20) {
            let mut b = MemoryBackend::new();
            let mut model = BTreeSet::new();
            for (k, ts, delete) in ops {
                // A key lives in one key group, as the router guarantees.
                let key = [k];
                let g = u16::from(k) % 3;
                if delete {
                    b.timer_delete(TimerDomain::EventTime, at(g, &key), ts);
                    model.remove(&(ts, key.to_vec()));
                } else {
                    b.timer_register(TimerDomain::EventTime, at(g, &key), ts);
                    model.insert((ts, key.to_vec()));
                }
            }
            prop_assert_eq!(b.timers_pending(), model.len());
            let mut out = Vec::new();
            b.pop_timers(TimerDomain::EventTime, upto, usize::MAX, &mut out);
            let got: Vec<(i64, Vec<u8>)> = out.into_iter().map(|t| (t.timestamp, t.key)).collect();
            let want: Vec<(i64, Vec<u8>)> = model.iter().filter(|t| t.0 <= upto).cloned().collect();
            prop_assert_eq!(got, want);
        }
    }
}
