//! State in hash maps on the heap, partitioned by key group.
//!
//! Every key group has its own maps and timer queues, so a key group can
//! be snapshotted or handed to another subtask as it is (as Flink's heap
//! backend and `KeyGroupPartitionedPriorityQueue` do). Across key groups,
//! the head of each group's timer queue sits in one ordered set, so the
//! earliest timer of the subtask is found without scanning groups.

use crate::{KeyedStateBackend, Scope, Timer, TimerDomain};
use hashbrown::{Equivalent, HashMap};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// foldhash with a fixed seed: fast on short keys, well spread, and the
/// same in every run.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Bytes held inline when they fit in 23 (one table entry's worth, no
/// pointer to chase), on the heap otherwise. Smaller and quicker to read
/// than `SmallVec` for the short keys and values keyed state is made of:
/// one tag check, no capacity arithmetic.
#[derive(Clone)]
enum Bytes {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

const INLINE: usize = 23;

impl Bytes {
    #[inline]
    fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            Bytes::Inline(b.len() as u8, data)
        } else {
            Bytes::Heap(b.into())
        }
    }

    /// Builds from parts without an intermediate buffer when inline.
    fn concat(parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= INLINE {
            let mut data = [0u8; INLINE];
            let mut at = 0;
            for p in parts {
                data[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            Bytes::Inline(len as u8, data)
        } else {
            Bytes::Heap(parts.concat().into())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline(len, data) => &data[..*len as usize],
            Bytes::Heap(b) => b,
        }
    }

    /// Overwrites the bytes, reusing the inline space.
    #[inline]
    fn set(&mut self, b: &[u8]) {
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

/// Equality of short byte strings without a call to `memcmp` (whose
/// setup costs more than the comparison for keys of a few bytes): two
/// overlapping word loads cover 4..=16 bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("invariant: eight bytes"));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("invariant: four bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Key and namespace in one buffer: `key ++ namespace ++ len(namespace)`,
/// where the length is one byte below 255, else 255 after four bytes of
/// it (little endian). With an empty namespace this is `key ++ [0]`.
/// Keys up to 22 bytes stay inline in the table entry: comparing one then
/// costs no pointer chase (that miss was the largest cost of keyed state
/// in `weir bench`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Composite(Bytes);

/// Timers sort by (key, namespace), as the trait promises, not by the
/// composite's bytes (where a longer key could sort after a namespace).
impl Ord for Composite {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        split(self.0.as_slice()).cmp(&split(other.0.as_slice()))
    }
}

impl PartialOrd for Composite {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn composite(at: Scope<'_>) -> Composite {
    let n = at.namespace.len();
    match u8::try_from(n) {
        Ok(n) if n < 255 => Composite(Bytes::concat(&[at.key, at.namespace, &[n]])),
        _ => Composite(Bytes::concat(&[at.key, at.namespace, &(n as u32).to_le_bytes(), &[255]])),
    }
}

/// Hashes a key and namespace the same way whether stored ([`Composite`])
/// or looked up ([`Probe`]). One hasher call for the common case of no
/// namespace; (key, namespace) pairs that hash alike are told apart by
/// [`Probe::equivalent`].
#[inline(always)]
fn hash_parts<H: Hasher>(key: &[u8], namespace: &[u8], h: &mut H) {
    h.write(key);
    if !namespace.is_empty() {
        h.write(namespace);
    }
}

impl Hash for Composite {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (key, namespace) = split(self.0.as_slice());
        hash_parts(key, namespace, h);
    }
}

/// A lookup by key and namespace, without building a [`Composite`].
struct Probe<'a>(Scope<'a>);

impl Hash for Probe<'_> {
    #[inline(always)]
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_parts(self.0.key, self.0.namespace, h);
    }
}

impl Equivalent<Composite> for Probe<'_> {
    #[inline(always)]
    fn equivalent(&self, c: &Composite) -> bool {
        let (c, key) = (c.0.as_slice(), self.0.key);
        if self.0.namespace.is_empty() {
            // `key ++ [0]`: one length check and one comparison, no parsing.
            c.len() == key.len() + 1 && c[key.len()] == 0 && same_bytes(&c[..key.len()], key)
        } else {
            split(c) == (key, self.0.namespace)
        }
    }
}

/// The key and namespace of a composite.
fn split(c: &[u8]) -> (&[u8], &[u8]) {
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

/// Per state id, per key group: one hash map. The maps of one state sit
/// side by side, so finding a key group's map is one indexed load from a
/// small, hot array.
type PerGroup<V> = Vec<Vec<FastMap<Composite, V>>>;

/// A timer queue per key group.
type Queues = Vec<BTreeSet<(i64, Composite)>>;

/// The `memory` backend: every state's maps and every timer queue are
/// partitioned by key group.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    values: PerGroup<Bytes>,
    lists: PerGroup<Vec<Vec<u8>>>,
    maps: PerGroup<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Per domain, per key group.
    timers: [Queues; 2],
    /// Per domain: the earliest timer of every key group that has one.
    heads: [BTreeSet<(i64, Composite, u16)>; 2],
    pending: usize,
}

fn get<'a, V>(maps: &'a PerGroup<V>, state: u32, at: Scope<'_>) -> Option<&'a V> {
    maps.get(state as usize)?.get(at.group as usize)?.get(&Probe(at))
}

fn slot<V>(maps: &mut PerGroup<V>, state: u32, group: u16) -> &mut FastMap<Composite, V> {
    let (i, g) = (state as usize, group as usize);
    if maps.len() <= i {
        maps.resize_with(i + 1, Vec::new);
    }
    let groups = &mut maps[i];
    if groups.len() <= g {
        groups.resize_with(g + 1, FastMap::default);
    }
    &mut groups[g]
}

fn push_items<'a>(items: impl Iterator<Item = &'a [u8]>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
    let base = data.len();
    for item in items {
        data.extend_from_slice(item);
        ends.push((data.len() - base) as u32);
    }
}

/// Key groups whose map is not empty, of every state in `maps`.
fn used<V>(maps: &PerGroup<V>) -> impl Iterator<Item = usize> + '_ {
    maps.iter().flat_map(|groups| groups.iter().enumerate().filter(|(_, m)| !m.is_empty()).map(|(g, _)| g))
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys (with their namespaces) holding a value in value
    /// state `state`, over all key groups.
    pub fn value_keys(&self, state: u32) -> usize {
        self.values.get(state as usize).map_or(0, |groups| groups.iter().map(|m| m.len()).sum())
    }

    /// The key groups that hold any state or timer, in order.
    pub fn key_groups(&self) -> Vec<u16> {
        let timers = self.timers.iter().flat_map(|qs| qs.iter().enumerate().filter(|(_, q)| !q.is_empty()));
        let mut groups: Vec<usize> =
            used(&self.values).chain(used(&self.lists)).chain(used(&self.maps)).chain(timers.map(|(g, _)| g)).collect();
        groups.sort_unstable();
        groups.dedup();
        groups.into_iter().map(|g| g as u16).collect()
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
    fn value_get(&self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool {
        get(&self.values, state, at).map(|v| out.extend_from_slice(v.as_slice())).is_some()
    }

    fn value_put(&mut self, state: u32, at: Scope<'_>, value: &[u8]) {
        let m = slot(&mut self.values, state, at.group);
        match m.get_mut(&Probe(at)) {
            Some(v) => v.set(value),
            None => {
                m.insert(composite(at), Bytes::new(value));
            }
        }
    }

    fn value_clear(&mut self, state: u32, at: Scope<'_>) {
        slot(&mut self.values, state, at.group).remove(&Probe(at));
    }

    fn list_get(&self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(l) = get(&self.lists, state, at) {
            push_items(l.iter().map(Vec::as_slice), data, ends);
        }
    }

    fn list_add(&mut self, state: u32, at: Scope<'_>, element: &[u8]) {
        let m = slot(&mut self.lists, state, at.group);
        match m.get_mut(&Probe(at)) {
            Some(l) => l.push(element.to_vec()),
            None => {
                m.insert(composite(at), vec![element.to_vec()]);
            }
        }
    }

    fn list_replace(&mut self, state: u32, at: Scope<'_>, data: &[u8], ends: &[u32]) {
        let mut start = 0usize;
        let items: Vec<Vec<u8>> = ends
            .iter()
            .map(|&e| {
                let e = (e as usize).clamp(start, data.len());
                let item = data[start..e].to_vec();
                start = e;
                item
            })
            .collect();
        let m = slot(&mut self.lists, state, at.group);
        if items.is_empty() {
            m.remove(&Probe(at));
        } else {
            m.insert(composite(at), items);
        }
    }

    fn list_clear(&mut self, state: u32, at: Scope<'_>) {
        slot(&mut self.lists, state, at.group).remove(&Probe(at));
    }

    fn map_get(&self, state: u32, at: Scope<'_>, map_key: &[u8], out: &mut Vec<u8>) -> bool {
        get(&self.maps, state, at).and_then(|m| m.get(map_key)).map(|v| out.extend_from_slice(v)).is_some()
    }

    fn map_put(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], value: &[u8]) {
        let m = slot(&mut self.maps, state, at.group);
        match m.get_mut(&Probe(at)) {
            Some(inner) => {
                inner.insert(map_key.to_vec(), value.to_vec());
            }
            None => {
                m.insert(composite(at), BTreeMap::from([(map_key.to_vec(), value.to_vec())]));
            }
        }
    }

    fn map_remove(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) {
        let m = slot(&mut self.maps, state, at.group);
        if let Some(inner) = m.get_mut(&Probe(at)) {
            inner.remove(map_key);
            if inner.is_empty() {
                m.remove(&Probe(at));
            }
        }
    }

    fn map_entries(&self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(m) = get(&self.maps, state, at) {
            push_items(m.iter().flat_map(|(k, v)| [k.as_slice(), v.as_slice()]), data, ends);
        }
    }

    fn map_clear(&mut self, state: u32, at: Scope<'_>) {
        slot(&mut self.maps, state, at.group).remove(&Probe(at));
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
            let (key, namespace) = split(c.0.as_slice());
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
        b.map_entries(0, at(0, b"k"), &mut data, &mut ends);
        assert_eq!(data, b"a1b2");
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
            prop_assert_eq!(split(c.0.as_slice()), (&k1[..], &ns[..]));
            let (a, b) = (composite(Scope::key(0, &k1)), composite(Scope::key(0, &k2)));
            prop_assert_eq!(a.cmp(&b), k1.cmp(&k2));
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
