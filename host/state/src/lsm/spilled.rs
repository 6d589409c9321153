//! Which entries may be in fjall: a Bloom filter of every key the backend
//! has written there, so a miss on a key never spilled (a new word of the
//! word count, a new window) costs one filter check instead of an fjall
//! point read (memtable, then a filter and an index partition per table:
//! 5.5 µs each, measured on the word count at a 16 MiB budget, where 1.3 M
//! of 2.8 M reads were of keys fjall never held).
//!
//! fastbloom's filters have a fixed size, so this is a scalable Bloom
//! filter (Almeida et al.): when the newest layer holds its capacity, a
//! layer of twice the capacity is added, and a key may be in fjall when
//! any layer says so. A key already held is not added again (an entry
//! spilled, read back and spilled again is one key). Each layer is sized
//! for a 1 % false-positive rate, so with `n` layers up to `n` % of the
//! keys never spilled still read fjall (eight layers hold 16 M keys).
//! Removed keys are not taken out (a Bloom filter cannot), so they read
//! fjall once more and find nothing: slower, never wrong.
//!
//! The filter has a byte cap (a share of the state budget, which it is
//! counted against). Past it (keys that keep coming and going, as new
//! windows do) the filter is dropped and every miss reads fjall, as
//! without it.
//!
//! **Every write of a state entry to fjall must go through
//! [`Spilled::insert`]**, or a later miss would take the entry for absent.

use fastbloom::BloomFilter;
use std::hash::BuildHasher;

/// foldhash with a fixed seed.
type Hasher = foldhash::fast::FixedState;

/// Keys the first layer is sized for.
const FIRST: usize = 1 << 16;

const FALSE_POSITIVES: f64 = 0.01;

struct Layer {
    filter: BloomFilter<Hasher>,
    capacity: usize,
    count: usize,
}

/// The keys written to fjall (see the module docs).
pub(super) struct Spilled {
    layers: Vec<Layer>,
    /// Most bytes the layers may take.
    cap: usize,
    /// Past the cap: every key may be in fjall.
    saturated: bool,
}

impl Spilled {
    /// An empty filter of at most `cap` bytes.
    pub(super) fn new(cap: usize) -> Self {
        Spilled { layers: Vec::new(), cap, saturated: false }
    }

    fn hash(key: &[u8]) -> u64 {
        Hasher::default().hash_one(key)
    }

    /// Notes that `key` was written to fjall.
    pub(super) fn insert(&mut self, key: &[u8]) {
        if self.saturated {
            return;
        }
        let h = Self::hash(key);
        if self.layers.iter().any(|l| l.filter.contains_hash(h)) {
            return;
        }
        if self.layers.last().is_none_or(|l| l.count >= l.capacity) {
            let capacity = self.layers.last().map_or(FIRST, |l| l.capacity * 2);
            let filter =
                BloomFilter::with_false_pos(FALSE_POSITIVES).hasher(Hasher::default()).expected_items(capacity);
            if self.bytes() + filter.num_bits() / 8 > self.cap {
                self.saturated = true;
                self.layers = Vec::new();
                return;
            }
            self.layers.push(Layer { filter, capacity, count: 0 });
        }
        let layer = self.layers.last_mut().expect("invariant: a layer was just ensured");
        layer.filter.insert_hash(h);
        layer.count += 1;
    }

    /// Whether fjall may hold `key`: false only when it never was written
    /// there.
    pub(super) fn may_hold(&self, key: &[u8]) -> bool {
        if self.saturated {
            return true;
        }
        if self.layers.is_empty() {
            return false;
        }
        let h = Self::hash(key);
        // Newest first: the largest layer holds half the keys.
        self.layers.iter().rev().any(|l| l.filter.contains_hash(h))
    }

    /// Whether no key was ever written to fjall.
    pub(super) fn is_empty(&self) -> bool {
        !self.saturated && self.layers.is_empty()
    }

    /// Bytes the filter takes (counted against the state budget).
    pub(super) fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.filter.num_bits() / 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_key_may_be_held_and_most_others_are_not() {
        let mut s = Spilled::new(usize::MAX);
        assert!(!s.may_hold(b"a"), "an empty filter holds nothing");
        let n = 300_000u32;
        for i in 0..n {
            s.insert(&i.to_be_bytes());
        }
        assert!(s.layers.len() >= 3, "the filter grew in layers");
        assert!((0..n).all(|i| s.may_hold(&i.to_be_bytes())), "no false negatives");
        let false_positives = (n..2 * n).filter(|i| s.may_hold(&i.to_be_bytes())).count();
        assert!(false_positives < n as usize * 4 / 100, "{false_positives} false positives of {n}");
        assert!(s.bytes() > 0 && s.bytes() < n as usize * 4, "{} bytes", s.bytes());
    }

    #[test]
    fn a_key_spilled_again_is_not_counted_again() {
        let mut s = Spilled::new(usize::MAX);
        for _ in 0..50 {
            for i in 0..10_000u32 {
                s.insert(&i.to_be_bytes());
            }
        }
        assert_eq!(s.layers.len(), 1, "10,000 keys fit the first layer however often they spill");
    }

    #[test]
    fn past_its_cap_the_filter_holds_every_key() {
        let mut s = Spilled::new(200_000);
        for i in 0..1_000_000u32 {
            s.insert(&i.to_be_bytes());
            assert!(s.may_hold(&i.to_be_bytes()));
        }
        assert!(s.saturated && s.bytes() == 0, "dropped at the cap");
        assert!(s.may_hold(b"never inserted"), "a saturated filter answers maybe");
    }
}
