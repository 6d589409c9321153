//! State in hash maps on the heap.

use crate::{KeyedStateBackend, TimerDomain};
use smallvec::SmallVec;
use std::collections::HashMap;

/// foldhash with a fixed seed: fast on short keys, well spread, and the
/// same in every run.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
use std::collections::{BTreeMap, BTreeSet};

/// Keys up to 24 bytes and values up to 16 live inline in the table entry:
/// comparing a key or reading a small value then costs no pointer chase
/// (that miss was the largest cost of keyed state in `weir bench`).
type Key = SmallVec<[u8; 24]>;
type Small = SmallVec<[u8; 16]>;
type Keyed<V> = Vec<FastMap<Key, V>>;

/// The `memory` backend: per state id, a hash map from key to value.
/// Overwriting a value reuses its buffer.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    values: Keyed<Small>,
    lists: Keyed<Vec<Vec<u8>>>,
    maps: Keyed<BTreeMap<Vec<u8>, Vec<u8>>>,
    timers: [BTreeSet<(i64, Box<[u8]>)>; 2],
}

fn slot<V>(maps: &mut Keyed<V>, state: u32) -> &mut FastMap<Key, V> {
    let i = state as usize;
    if maps.len() <= i {
        maps.resize_with(i + 1, FastMap::default);
    }
    &mut maps[i]
}

fn get<'a, V>(maps: &'a Keyed<V>, state: u32, key: &[u8]) -> Option<&'a V> {
    maps.get(state as usize)?.get(key)
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

    /// Number of keys with a value in value state `state`.
    pub fn value_keys(&self, state: u32) -> usize {
        self.values.get(state as usize).map_or(0, |m| m.len())
    }
}

impl KeyedStateBackend for MemoryBackend {
    fn value_get(&self, state: u32, key: &[u8], out: &mut Vec<u8>) -> bool {
        get(&self.values, state, key).map(|v| out.extend_from_slice(v)).is_some()
    }

    fn value_put(&mut self, state: u32, key: &[u8], value: &[u8]) {
        let m = slot(&mut self.values, state);
        match m.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                m.insert(Key::from_slice(key), Small::from_slice(value));
            }
        }
    }

    fn value_clear(&mut self, state: u32, key: &[u8]) {
        slot(&mut self.values, state).remove(key);
    }

    fn list_get(&self, state: u32, key: &[u8], data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(l) = get(&self.lists, state, key) {
            push_items(l.iter().map(Vec::as_slice), data, ends);
        }
    }

    fn list_add(&mut self, state: u32, key: &[u8], element: &[u8]) {
        let m = slot(&mut self.lists, state);
        match m.get_mut(key) {
            Some(l) => l.push(element.to_vec()),
            None => {
                m.insert(Key::from_slice(key), vec![element.to_vec()]);
            }
        }
    }

    fn list_replace(&mut self, state: u32, key: &[u8], data: &[u8], ends: &[u32]) {
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
        let m = slot(&mut self.lists, state);
        if items.is_empty() {
            m.remove(key);
        } else {
            m.insert(Key::from_slice(key), items);
        }
    }

    fn list_clear(&mut self, state: u32, key: &[u8]) {
        slot(&mut self.lists, state).remove(key);
    }

    fn map_get(&self, state: u32, key: &[u8], map_key: &[u8], out: &mut Vec<u8>) -> bool {
        get(&self.maps, state, key).and_then(|m| m.get(map_key)).map(|v| out.extend_from_slice(v)).is_some()
    }

    fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]) {
        let m = slot(&mut self.maps, state);
        match m.get_mut(key) {
            Some(inner) => {
                inner.insert(map_key.to_vec(), value.to_vec());
            }
            None => {
                m.insert(Key::from_slice(key), BTreeMap::from([(map_key.to_vec(), value.to_vec())]));
            }
        }
    }

    fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]) {
        let m = slot(&mut self.maps, state);
        if let Some(inner) = m.get_mut(key) {
            inner.remove(map_key);
            if inner.is_empty() {
                m.remove(key);
            }
        }
    }

    fn map_entries(&self, state: u32, key: &[u8], data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        if let Some(m) = get(&self.maps, state, key) {
            push_items(m.iter().flat_map(|(k, v)| [k.as_slice(), v.as_slice()]), data, ends);
        }
    }

    fn map_clear(&mut self, state: u32, key: &[u8]) {
        slot(&mut self.maps, state).remove(key);
    }

    fn timer_register(&mut self, domain: TimerDomain, key: &[u8], timestamp: i64) {
        self.timers[domain as usize].insert((timestamp, key.into()));
    }

    fn timer_delete(&mut self, domain: TimerDomain, key: &[u8], timestamp: i64) {
        self.timers[domain as usize].remove(&(timestamp, Box::<[u8]>::from(key)));
    }

    fn timers_pending(&self) -> usize {
        self.timers[0].len() + self.timers[1].len()
    }

    fn next_timer(&self, domain: TimerDomain) -> Option<i64> {
        self.timers[domain as usize].first().map(|t| t.0)
    }

    fn pop_timers(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<(i64, Vec<u8>)>) {
        let set = &mut self.timers[domain as usize];
        for _ in 0..limit {
            match set.first() {
                Some((ts, _)) if *ts <= upto => {
                    let (ts, key) = set.pop_first().expect("invariant: first() just returned an element");
                    out.push((ts, key.into_vec()));
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_state_is_scoped_by_state_and_key() {
        let mut b = MemoryBackend::new();
        b.value_put(0, b"a", b"1");
        b.value_put(1, b"a", b"2");
        b.value_put(0, b"a", b"3");
        let mut out = Vec::new();
        assert!(b.value_get(0, b"a", &mut out));
        assert!(b.value_get(1, b"a", &mut out));
        assert!(!b.value_get(0, b"b", &mut out));
        assert_eq!(out, b"32");
        b.value_clear(0, b"a");
        assert!(!b.value_get(0, b"a", &mut out));
    }

    #[test]
    fn list_and_map_state_round_trip_flat() {
        let mut b = MemoryBackend::new();
        b.list_add(0, b"k", b"x");
        b.list_add(0, b"k", b"yz");
        let (mut data, mut ends) = (b"pre".to_vec(), Vec::new());
        b.list_get(0, b"k", &mut data, &mut ends);
        assert_eq!((data.as_slice(), ends.as_slice()), (&b"prexyz"[..], &[1u32, 3][..]));
        b.list_replace(0, b"k", b"abc", &[2, 3]);
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.list_get(0, b"k", &mut data, &mut ends);
        assert_eq!((data.as_slice(), ends.as_slice()), (&b"abc"[..], &[2u32, 3][..]));

        b.map_put(0, b"k", b"b", b"2");
        b.map_put(0, b"k", b"a", b"1");
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.map_entries(0, b"k", &mut data, &mut ends);
        assert_eq!(data, b"a1b2");
        b.map_remove(0, b"k", b"a");
        let mut v = Vec::new();
        assert!(!b.map_get(0, b"k", b"a", &mut v));
        assert!(b.map_get(0, b"k", b"b", &mut v));
    }

    #[test]
    fn timers_pop_in_timestamp_order_once_per_key_and_timestamp() {
        let mut b = MemoryBackend::new();
        b.timer_register(TimerDomain::EventTime, b"b", 20);
        b.timer_register(TimerDomain::EventTime, b"a", 10);
        b.timer_register(TimerDomain::EventTime, b"a", 10);
        b.timer_register(TimerDomain::EventTime, b"c", 30);
        b.timer_register(TimerDomain::ProcessingTime, b"a", 5);
        b.timer_delete(TimerDomain::EventTime, b"c", 30);
        assert_eq!(b.next_timer(TimerDomain::EventTime), Some(10));
        let mut out = Vec::new();
        b.pop_timers(TimerDomain::EventTime, 25, 100, &mut out);
        assert_eq!(out, vec![(10, b"a".to_vec()), (20, b"b".to_vec())]);
        assert_eq!(b.next_timer(TimerDomain::EventTime), None);
        assert_eq!(b.next_timer(TimerDomain::ProcessingTime), Some(5));
    }
}
