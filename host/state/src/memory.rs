//! State in hash maps on the heap, partitioned by key group.
//!
//! Every key group has its own maps and timer queues, so a key group can
//! be snapshotted or handed to another subtask as it is (as Flink's heap
//! backend and `KeyGroupPartitionedPriorityQueue` do). Across key groups,
//! the head of each group's timer queue sits in one ordered set, so the
//! earliest timer of the subtask is found without scanning groups.

use crate::{KeyedStateBackend, Scope, Timer, TimerDomain};
use hashbrown::{Equivalent, HashMap};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// foldhash with a fixed seed: fast on short keys, well spread, and the
/// same in every run.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Key and namespace in one buffer: `key ++ namespace ++ len(namespace)`,
/// where the length is one byte below 255, else 255 after four bytes of
/// it (little endian). With an empty namespace this is `key ++ [0]`, which
/// sorts as the key does. Keys up to 23 bytes stay inline in the table
/// entry: comparing one then costs no pointer chase (that miss was the
/// largest cost of keyed state in `weir bench`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Composite(SmallVec<[u8; 24]>);
type Small = SmallVec<[u8; 16]>;

fn composite(at: Scope<'_>) -> Composite {
    let mut c = SmallVec::with_capacity(at.key.len() + at.namespace.len() + 1);
    c.extend_from_slice(at.key);
    c.extend_from_slice(at.namespace);
    match u8::try_from(at.namespace.len()) {
        Ok(n) if n < 255 => c.push(n),
        _ => {
            c.extend_from_slice(&(at.namespace.len() as u32).to_le_bytes());
            c.push(255);
        }
    }
    Composite(c)
}

/// Hashes a key and namespace the same way whether stored ([`Composite`])
/// or looked up ([`Probe`]).
fn hash_parts<H: Hasher>(key: &[u8], namespace: &[u8], h: &mut H) {
    h.write(key);
    h.write_usize(namespace.len());
    h.write(namespace);
}

impl Hash for Composite {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (key, namespace) = split(&self.0);
        hash_parts(key, namespace, h);
    }
}

/// A lookup by key and namespace, without building a [`Composite`].
struct Probe<'a>(Scope<'a>);

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_parts(self.0.key, self.0.namespace, h);
    }
}

impl Equivalent<Composite> for Probe<'_> {
    fn equivalent(&self, c: &Composite) -> bool {
        split(&c.0) == (self.0.key, self.0.namespace)
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

type Keyed<V> = Vec<FastMap<Composite, V>>;

/// One key group's state and timers.
#[derive(Debug, Default)]
struct Group {
    values: Keyed<Small>,
    lists: Keyed<Vec<Vec<u8>>>,
    maps: Keyed<BTreeMap<Vec<u8>, Vec<u8>>>,
    timers: [BTreeSet<(i64, Composite)>; 2],
}

/// The `memory` backend.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    groups: Vec<Option<Box<Group>>>,
    /// Per domain: the earliest timer of every key group that has one.
    heads: [BTreeSet<(i64, Composite, u16)>; 2],
    pending: usize,
}

fn slot<V>(maps: &mut Keyed<V>, state: u32) -> &mut FastMap<Composite, V> {
    let i = state as usize;
    if maps.len() <= i {
        maps.resize_with(i + 1, FastMap::default);
    }
    &mut maps[i]
}

fn push_items<'a>(items: impl Iterator<Item = &'a [u8]>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
    let base = data.len();
    for item in items {
        data.extend_from_slice(item);
        ends.push((data.len() - base) as u32);
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn group(&self, g: u16) -> Option<&Group> {
        self.groups.get(g as usize)?.as_deref()
    }

    fn group_mut(&mut self, g: u16) -> &mut Group {
        let i = g as usize;
        if self.groups.len() <= i {
            self.groups.resize_with(i + 1, || None);
        }
        self.groups[i].get_or_insert_with(Default::default)
    }

    fn get<V>(&self, pick: impl Fn(&Group) -> &Keyed<V>, state: u32, at: Scope<'_>) -> Option<&V> {
        pick(self.group(at.group)?).get(state as usize)?.get(&Probe(at))
    }

    /// Number of keys (with their namespaces) holding a value in value
    /// state `state`, over all key groups.
    pub fn value_keys(&self, state: u32) -> usize {
        self.groups.iter().flatten().map(|g| g.values.get(state as usize).map_or(0, |m| m.len())).sum()
    }

    /// The key groups that hold any state or timer.
    pub fn key_groups(&self) -> impl Iterator<Item = u16> + '_ {
        self.groups.iter().enumerate().filter(|(_, g)| g.is_some()).map(|(i, _)| i as u16)
    }

    /// Changes the timers of one group's queue, keeping its head in `heads`.
    fn with_timers<R>(
        &mut self,
        domain: TimerDomain,
        g: u16,
        f: impl FnOnce(&mut BTreeSet<(i64, Composite)>) -> R,
    ) -> R {
        let d = domain as usize;
        let queue = &mut self.group_mut(g).timers[d];
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
        self.get(|g| &g.values, state, at).map(|v| out.extend_from_slice(v)).is_some()
    }

    fn value_put(&mut self, state: u32, at: Scope<'_>, value: &[u8]) {
        let m = slot(&mut self.group_mut(at.group).values, state);
        match m.get_mut(&Probe(at)) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                m.insert(composite(at), Small::from_slice(value));
            }
        }
    }

    fn value_clear(&mut self, state: u32, at: Scope<'_>) {
        slot(&mut self.group_mut(at.group).values, state).remove(&Probe(at));
    }

    fn list_get(&self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(l) = self.get(|g| &g.lists, state, at) {
            push_items(l.iter().map(Vec::as_slice), data, ends);
        }
    }

    fn list_add(&mut self, state: u32, at: Scope<'_>, element: &[u8]) {
        let m = slot(&mut self.group_mut(at.group).lists, state);
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
        let m = slot(&mut self.group_mut(at.group).lists, state);
        if items.is_empty() {
            m.remove(&Probe(at));
        } else {
            m.insert(composite(at), items);
        }
    }

    fn list_clear(&mut self, state: u32, at: Scope<'_>) {
        slot(&mut self.group_mut(at.group).lists, state).remove(&Probe(at));
    }

    fn map_get(&self, state: u32, at: Scope<'_>, map_key: &[u8], out: &mut Vec<u8>) -> bool {
        self.get(|g| &g.maps, state, at).and_then(|m| m.get(map_key)).map(|v| out.extend_from_slice(v)).is_some()
    }

    fn map_put(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], value: &[u8]) {
        let m = slot(&mut self.group_mut(at.group).maps, state);
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
        let m = slot(&mut self.group_mut(at.group).maps, state);
        if let Some(inner) = m.get_mut(&Probe(at)) {
            inner.remove(map_key);
            if inner.is_empty() {
                m.remove(&Probe(at));
            }
        }
    }

    fn map_entries(&self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(m) = self.get(|g| &g.maps, state, at) {
            push_items(m.iter().flat_map(|(k, v)| [k.as_slice(), v.as_slice()]), data, ends);
        }
    }

    fn map_clear(&mut self, state: u32, at: Scope<'_>) {
        slot(&mut self.group_mut(at.group).maps, state).remove(&Probe(at));
    }

    fn timer_register(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        let c = composite(at);
        self.with_timers(domain, at.group, |q| q.insert((timestamp, c)));
    }

    fn timer_delete(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        let c = composite(at);
        if self.group(at.group).is_some() {
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
            let (key, namespace) = split(&c.0);
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
        assert_eq!(b.key_groups().collect::<Vec<_>>(), vec![3]);
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
            prop_assert_eq!(split(&c.0), (&k1[..], &ns[..]));
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
