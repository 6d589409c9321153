//! Timers of the `lsm` backend: in memory first, the latest spilled to
//! fjall past their share of the budget.
//!
//! Each key group's timers of a domain are split at a point of their
//! (timestamp, key, namespace) order: the earlier ones in a memory queue
//! (the memory backend's), the later ones in fjall under
//!
//! ```text
//! key group (u16 BE) | owner (u32 BE) | 3 + domain (u8) | timestamp (i64, sign flipped, BE) | key ++ namespace ++ len(namespace)
//! ```
//!
//! so fjall's byte order is the timers' firing order (timestamp, then the
//! composite's bytes, as the memory queues sort). A timer that sorts at or
//! after the group's split point goes to fjall, any other to memory; a
//! group with spilled timers always keeps at least one in memory, and when
//! firing empties its queue the next chunk is read back. So the earliest
//! timer of every group is always in memory and firing order is exact,
//! while millions of far-off timers cost no heap.

use crate::memory::{composite, split};
use crate::{KeyedStateBackend, LsmStore, MemoryBackend, Piece, Scope, StateError, Timer, TimerDomain};
use std::collections::HashMap;
use std::ops::RangeInclusive;

/// Bytes counted per timer in memory (a B-tree entry with its composite).
pub(super) const TIMER_BYTES: usize = 80;

/// Most timers read back from fjall at once when a group's queue runs
/// dry (fewer when many groups have spilled timers: see `refill`).
const REFILL: usize = 4096;

/// Spilled registrations written to fjall in one batch.
const PENDING: usize = 4096;

/// The first fjall tag of timers (event time; processing time is one more).
pub(super) const TIMER_TAG: u8 = 3;

/// A key group's spilled timers of one domain.
struct Spilled {
    /// The order key (timestamp, esc(key), esc(namespace)) of the earliest
    /// spilled timer, or of a point before it: every timer sorting at or
    /// after it is in fjall.
    floor: Vec<u8>,
    /// How many fjall holds: exact after spills and refills; a timer
    /// registered again while spilled is counted twice until read back.
    count: usize,
}

pub(super) struct Timers {
    store: LsmStore,
    owner: u32,
    mem: MemoryBackend,
    spilled: [HashMap<u16, Spilled>; 2],
    spilled_count: usize,
    scratch: Vec<u8>,
    /// Spilled registrations not yet written: fjall keys, written in one
    /// batch when `PENDING` gather or before fjall's timers are read.
    pending: Vec<Vec<u8>>,
    /// Bytes the memory queues may hold.
    cap: usize,
    pub(super) error: Option<StateError>,
}

/// The order key of a timer: its place among a group's timers.
fn order_key(timestamp: i64, composite: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&((timestamp as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(composite);
}

/// Timestamp, key and namespace of an order key.
fn decode_order_key(b: &[u8]) -> Option<(i64, &[u8], &[u8])> {
    let ts = (u64::from_be_bytes(b.get(..8)?.try_into().ok()?) ^ (1 << 63)) as i64;
    let rest = &b[8..];
    // The composite ends with the namespace's length (see `split`).
    let n = match rest.split_last()? {
        (&255, r) => u32::from_le_bytes(r.get(r.len().checked_sub(4)?..)?.try_into().ok()?) as usize + 5,
        (&n, _) => n as usize + 1,
    };
    if n > rest.len() {
        return None;
    }
    let (key, namespace) = split(rest);
    Some((ts, key, namespace))
}

/// The fjall prefix of a group's timers of `domain`.
fn prefix(group: u16, owner: u32, domain: TimerDomain) -> [u8; 7] {
    let mut p = [0u8; 7];
    p[..2].copy_from_slice(&group.to_be_bytes());
    p[2..6].copy_from_slice(&owner.to_be_bytes());
    p[6] = TIMER_TAG + domain as u8;
    p
}

/// The order key of a timer at `at` appended to `out`.
fn composite_into(at: Scope<'_>, out: &mut Vec<u8>, timestamp: i64) {
    let c = composite(at);
    order_key(timestamp, c.as_slice(), out);
}

const DOMAINS: [TimerDomain; 2] = [TimerDomain::EventTime, TimerDomain::ProcessingTime];

impl Timers {
    /// Timers of `owner` in `store`, keeping up to `cap` bytes of them in
    /// memory.
    pub(super) fn new(store: LsmStore, owner: u32, cap: usize) -> Self {
        Timers {
            store,
            owner,
            mem: MemoryBackend::new(),
            spilled: [HashMap::new(), HashMap::new()],
            spilled_count: 0,
            scratch: Vec::new(),
            pending: Vec::new(),
            cap,
            error: None,
        }
    }

    fn fail(&mut self, what: &str, e: fjall::Error) {
        if self.error.is_none() {
            self.error = Some(StateError(format!(
                "the lsm state store failed to {what} timers: {e}; check the disk holding the state folder"
            )));
        }
    }

    /// Bytes of timers held in memory, as counted against the budget.
    pub(super) fn bytes(&self) -> usize {
        self.mem.timers_pending() * TIMER_BYTES
    }

    /// Number of timers spilled to fjall (see [`Spilled::count`]).
    pub(super) fn spilled(&self) -> usize {
        self.spilled_count
    }

    /// Whether a timer sorts at or after its group's split point (so
    /// belongs in fjall); if so, its fjall key is in `scratch`.
    fn locate(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) -> bool {
        if !self.spilled[domain as usize].contains_key(&at.group) {
            return false;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&prefix(at.group, self.owner, domain));
        composite_into(at, &mut self.scratch, timestamp);
        self.spilled[domain as usize].get(&at.group).is_some_and(|s| self.scratch[7..] >= s.floor[..])
    }

    pub(super) fn register(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        if !self.locate(domain, at, timestamp) {
            return self.mem.timer_register(domain, at, timestamp);
        }
        self.pending.push(self.scratch.clone());
        if self.pending.len() >= PENDING {
            self.flush();
        }
        self.spilled[domain as usize].get_mut(&at.group).expect("invariant: located in a spilled group").count += 1;
        self.spilled_count += 1;
    }

    /// Writes the pending registrations.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut batch = self.store.inner.db.batch();
        for k in self.pending.drain(..) {
            batch.insert(&self.store.inner.state, k, []);
        }
        if let Err(e) = batch.commit() {
            self.fail("write", e);
        }
        if let Err(e) = self.store.stall() {
            self.fail("write", e);
        }
    }

    pub(super) fn delete(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        if !self.locate(domain, at, timestamp) {
            self.mem.timer_delete(domain, at, timestamp);
            if self.mem.timers_in(domain, at.group) == 0 {
                self.refill(domain, at.group);
            }
            return;
        }
        self.flush();
        let keyspace = &self.store.inner.state;
        match keyspace.contains_key(&self.scratch).and_then(|found| {
            if found {
                keyspace.remove(self.scratch.as_slice())?;
            }
            Ok(found)
        }) {
            Ok(true) => {
                let s =
                    self.spilled[domain as usize].get_mut(&at.group).expect("invariant: located in a spilled group");
                s.count = s.count.saturating_sub(1);
                self.spilled_count = self.spilled_count.saturating_sub(1);
            }
            Ok(false) => {}
            Err(e) => self.fail("delete", e),
        }
    }

    /// Timers held in memory.
    pub(super) fn in_memory(&self) -> usize {
        self.mem.timers_pending()
    }

    pub(super) fn pending(&self) -> usize {
        self.mem.timers_pending() + self.spilled_count
    }

    pub(super) fn next(&self, domain: TimerDomain) -> Option<i64> {
        // The earliest timer of every group is in memory.
        self.mem.next_timer(domain)
    }

    pub(super) fn pop(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<Timer>) {
        for _ in 0..limit {
            let before = out.len();
            self.mem.pop_timers(domain, upto, 1, out);
            let Some(t) = out.get(before) else { break };
            let g = t.group;
            if self.mem.timers_in(domain, g) == 0 {
                self.refill(domain, g);
            }
        }
    }

    /// Reads the next chunk of group `g`'s spilled timers back into its
    /// (empty) memory queue.
    fn refill(&mut self, domain: TimerDomain, g: u16) {
        let d = domain as usize;
        if !self.spilled[d].contains_key(&g) {
            return;
        }
        self.flush();
        let Some(s) = self.spilled[d].get(&g) else { return };
        // Every group with spilled timers may need a chunk in memory at
        // once: their chunks share half the timers' bytes.
        let chunk = (self.cap / 2 / TIMER_BYTES / self.spilled[d].len().max(1)).clamp(16, REFILL);
        let mut loaded = Vec::with_capacity(chunk);
        let mut next_floor = None;
        let p = prefix(g, self.owner, domain);
        // From the floor, not the group's first key: the timers read back
        // before lie below it as tombstones until fjall compacts them,
        // and a scan from the start stepped over all of them again at
        // every refill (quadratic in a group's spilled timers).
        let mut start = p.to_vec();
        start.extend_from_slice(&s.floor);
        let mut scanned = Ok(());
        for guard in self.store.inner.state.range(start..) {
            match guard.key() {
                Ok(k) if !k.starts_with(&p) => break,
                Ok(k) if loaded.len() < chunk => loaded.push(k),
                Ok(k) => {
                    next_floor = Some(k[7..].to_vec());
                    break;
                }
                Err(e) => {
                    scanned = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = scanned {
            return self.fail("read", e);
        }
        let mut batch = self.store.inner.db.batch();
        let mut malformed = 0usize;
        for k in &loaded {
            match decode_order_key(&k[7..]) {
                Some((ts, key, namespace)) => {
                    let at = Scope { group: g, key, namespace };
                    self.mem.timer_register(domain, at, ts);
                }
                None => malformed += 1,
            }
            batch.remove(&self.store.inner.state, k.clone());
        }
        if malformed > 0 && self.error.is_none() {
            self.error = Some(StateError(format!(
                "the lsm state store holds {malformed} malformed timers of key group {g}; the state folder was changed or damaged"
            )));
        }
        if let Err(e) = batch.commit() {
            return self.fail("write", e);
        }
        let count = s.count;
        match next_floor {
            Some(floor) => {
                let left = count.saturating_sub(loaded.len()).max(1);
                self.spilled_count = self.spilled_count + left - count;
                self.spilled[d].insert(g, Spilled { floor, count: left });
            }
            None => {
                self.spilled_count -= count;
                self.spilled[d].remove(&g);
            }
        }
    }

    /// Moves the latest timers of every group to fjall until the memory
    /// queues hold at most `target` bytes, keeping at least the first
    /// timer of each group.
    pub(super) fn spill(&mut self) {
        let target = self.cap / 2;
        let held = self.mem.timers_pending();
        if held * TIMER_BYTES <= target {
            return;
        }
        let keep_share = (target / TIMER_BYTES) as f64 / held as f64;
        let mut batch = self.store.inner.db.batch();
        for domain in DOMAINS {
            let groups: Vec<(u16, usize)> = self.mem.timer_groups(domain).collect();
            for (g, len) in groups {
                let keep = ((len as f64 * keep_share) as usize).max(1);
                let tail = self.mem.split_timers(domain, g, keep);
                let Some((ts, c)) = tail.first() else { continue };
                let mut floor = Vec::new();
                order_key(*ts, c.as_slice(), &mut floor);
                let n = tail.len();
                for (ts, c) in &tail {
                    let mut k = prefix(g, self.owner, domain).to_vec();
                    order_key(*ts, c.as_slice(), &mut k);
                    batch.insert(&self.store.inner.state, k, []);
                }
                // Everything spilled before sorts after what memory held,
                // so the new split point is this spill's first timer.
                let s = self.spilled[domain as usize].entry(g).or_insert(Spilled { floor: Vec::new(), count: 0 });
                s.floor = floor;
                s.count += n;
                self.spilled_count += n;
            }
        }
        if let Err(e) = batch.commit() {
            self.fail("write spilled", e);
        }
        if let Err(e) = self.store.stall() {
            self.fail("write spilled", e);
        }
    }

    pub(super) fn scan(&mut self, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Piece<'_>)) {
        self.flush();
        self.mem.scan_groups(groups.clone(), visit);
        let mut failed = None;
        for domain in DOMAINS {
            let spilled: Vec<u16> =
                self.spilled[domain as usize].keys().copied().filter(|g| groups.contains(g)).collect();
            for g in spilled {
                for guard in self.store.inner.state.prefix(prefix(g, self.owner, domain)) {
                    match guard.key() {
                        Ok(k) => match decode_order_key(&k[7..]) {
                            Some((timestamp, key, namespace)) => {
                                let at = Scope { group: g, key, namespace };
                                visit(Piece::Timer { domain, at, timestamp });
                            }
                            None => {
                                failed.get_or_insert_with(|| format!("a malformed timer of key group {g}"));
                            }
                        },
                        Err(e) => {
                            failed.get_or_insert_with(|| e.to_string());
                            break;
                        }
                    }
                }
            }
        }
        if let Some(what) = failed {
            self.error.get_or_insert(StateError(format!(
                "the lsm state store failed to read timers: {what}; check the disk holding the state folder"
            )));
        }
    }

    pub(super) fn drop_groups(&mut self, groups: RangeInclusive<u16>) {
        self.flush();
        self.mem.drop_groups(groups.clone());
        for domain in DOMAINS {
            let spilled: Vec<u16> =
                self.spilled[domain as usize].keys().copied().filter(|g| groups.contains(g)).collect();
            for g in spilled {
                let mut batch = self.store.inner.db.batch();
                for guard in self.store.inner.state.prefix(prefix(g, self.owner, domain)) {
                    match guard.key() {
                        Ok(k) => batch.remove(&self.store.inner.state, k),
                        Err(e) => return self.fail("read", e),
                    }
                }
                if let Err(e) = batch.commit() {
                    return self.fail("drop", e);
                }
                let s = self.spilled[domain as usize].remove(&g).expect("invariant: listed above");
                self.spilled_count -= s.count;
            }
        }
    }
}
