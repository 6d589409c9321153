//! State time-to-live, as Flink's `StateTtlConfig`: a state declared with
//! a TTL stores each value, list element and map value behind the
//! processing time it was last written (or read, by its update mode), and
//! one that has lived past its TTL is never returned again.
//!
//! Stored form (a contract savepoints depend on, see `docs/state.md`):
//! `last access (i64 LE, epoch ms) ++ value`. Expired state is removed when
//! it is read (cleanup on access), by [`TtlBackend::sweep`] over what the
//! backend holds in memory, and by the `lsm` store's compaction filter
//! over what it spilled.

use crate::{Change, KeyedStateBackend, Piece, Scope, StateError, StateKind, Timer, TimerDomain};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The processing-time clock: the system's, or one a test sets.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// Milliseconds since the Unix epoch by the system clock.
    #[default]
    System,
    /// A clock that moves only when told (shared by its clones).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock reading `start`.
    pub fn manual(start: i64) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(start)))
    }

    /// The time now, in epoch milliseconds.
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
            }
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Sets a manual clock to `t` (the system clock cannot be set).
    pub fn set(&self, t: i64) {
        if let Clock::Manual(c) = self {
            c.store(t, Ordering::Relaxed);
        }
    }
}

/// When a state's time-to-live starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// When the state is created or written (Flink's default).
    OnCreateAndWrite,
    /// Also when it is read.
    OnReadAndWrite,
}

/// The time-to-live of one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// How long state lives after its last update, in milliseconds of
    /// processing time (at least 1).
    pub millis: u64,
    /// What counts as an update.
    pub update: TtlUpdate,
}

/// Bytes of the last-access time in front of every stored value.
pub const TTL_PREFIX: usize = 8;

/// Whether a value stored at `stored` (last access) has expired at `now`.
pub fn expired(stored: i64, millis: u64, now: i64) -> bool {
    stored.saturating_add(millis.min(i64::MAX as u64) as i64) <= now
}

/// The last-access time of a stored value, if it has one.
pub fn stored_at(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.get(..TTL_PREFIX)?.try_into().ok()?))
}

/// A backend whose declared states expire (see the module docs); states
/// without a TTL pass through untouched.
pub struct TtlBackend {
    inner: Box<dyn KeyedStateBackend>,
    clock: Clock,
    /// Per kind, per state id.
    ttls: [Vec<Option<Ttl>>; 3],
    scratch: Vec<u8>,
    data: Vec<u8>,
    ends: Vec<u32>,
    keys: Vec<Vec<u8>>,
    error: Option<StateError>,
}

impl std::fmt::Debug for TtlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlBackend").field("ttls", &self.ttls).finish_non_exhaustive()
    }
}

impl TtlBackend {
    /// Wraps `inner`, expiring each `(kind, state id, ttl)` of `ttls` by
    /// `clock`.
    pub fn new(inner: Box<dyn KeyedStateBackend>, clock: Clock, ttls: &[(StateKind, u32, Ttl)]) -> Self {
        let mut table: [Vec<Option<Ttl>>; 3] = Default::default();
        for &(kind, state, ttl) in ttls {
            let v = &mut table[kind as usize];
            if v.len() <= state as usize {
                v.resize(state as usize + 1, None);
            }
            v[state as usize] = Some(ttl);
        }
        let mut inner = inner;
        inner.expire_on_disk(ttls, &clock);
        TtlBackend {
            inner,
            clock,
            ttls: table,
            scratch: Vec::new(),
            data: Vec::new(),
            ends: Vec::new(),
            keys: Vec::new(),
            error: None,
        }
    }

    fn ttl(&self, kind: StateKind, state: u32) -> Option<Ttl> {
        self.ttls[kind as usize].get(state as usize).copied().flatten()
    }

    /// `now ++ value` in `scratch`.
    fn stamp(&mut self, now: i64, value: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(&now.to_le_bytes());
        self.scratch.extend_from_slice(value);
    }

    /// Checks the stamped entry the inner backend appended to `out` at
    /// `before`: an expired one is removed (`remove`) and taken out of
    /// `out`; a live one is restamped and written back (`rewrite`) when
    /// reads extend its life, and handed back without its stamp.
    fn unstamp(
        &mut self,
        kind: StateKind,
        ttl: Ttl,
        out: &mut Vec<u8>,
        before: usize,
        rewrite: impl FnOnce(&mut dyn KeyedStateBackend, &[u8]),
        remove: impl FnOnce(&mut dyn KeyedStateBackend),
    ) -> bool {
        let now = self.clock.now();
        let Some(t) = stored_at(&out[before..]) else {
            out.truncate(before);
            self.malformed(kind);
            return false;
        };
        if expired(t, ttl.millis, now) {
            out.truncate(before);
            remove(self.inner.as_mut());
            return false;
        }
        if ttl.update == TtlUpdate::OnReadAndWrite && t != now {
            out[before..before + TTL_PREFIX].copy_from_slice(&now.to_le_bytes());
            rewrite(self.inner.as_mut(), &out[before..]);
        }
        out.drain(before..before + TTL_PREFIX);
        true
    }

    fn malformed(&mut self, kind: StateKind) {
        self.error.get_or_insert_with(|| {
            StateError(format!(
                "a {kind:?} state declared with a time-to-live holds a value without its timestamp; \
                 was the state written before the TTL was declared? Clear it or drop the TTL"
            ))
        });
    }

    /// Removes every expired value, list element and map value the inner
    /// backend holds in memory (what it spilled, the store cleans up).
    pub fn sweep(&mut self) {
        let now = self.clock.now();
        for (k, kind) in [StateKind::Value, StateKind::List, StateKind::Map].into_iter().enumerate() {
            for state in 0..self.ttls[k].len() as u32 {
                if let Some(ttl) = self.ttl(kind, state) {
                    self.inner.retain(kind, state, &mut |v| stored_at(v).is_some_and(|t| !expired(t, ttl.millis, now)));
                }
            }
        }
    }

    /// Whether any state has a TTL.
    pub fn has_ttl(&self) -> bool {
        self.ttls.iter().flatten().any(Option::is_some)
    }

    /// The shortest TTL declared, in milliseconds.
    pub fn shortest(&self) -> Option<u64> {
        self.ttls.iter().flatten().flatten().map(|t| t.millis).min()
    }
}

impl KeyedStateBackend for TtlBackend {
    fn value_get(&mut self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool {
        let Some(ttl) = self.ttl(StateKind::Value, state) else { return self.inner.value_get(state, at, out) };
        let before = out.len();
        self.inner.value_get(state, at, out)
            && self.unstamp(
                StateKind::Value,
                ttl,
                out,
                before,
                |b, stamped| b.value_put(state, at, stamped),
                |b| b.value_clear(state, at),
            )
    }

    fn value_put(&mut self, state: u32, at: Scope<'_>, value: &[u8]) {
        if self.ttl(StateKind::Value, state).is_none() {
            return self.inner.value_put(state, at, value);
        }
        self.stamp(self.clock.now(), value);
        self.inner.value_put(state, at, &self.scratch);
    }

    fn value_clear(&mut self, state: u32, at: Scope<'_>) {
        self.inner.value_clear(state, at);
    }

    fn list_get(&mut self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        let Some(ttl) = self.ttl(StateKind::List, state) else { return self.inner.list_get(state, at, data, ends) };
        self.data.clear();
        self.ends.clear();
        self.inner.list_get(state, at, &mut self.data, &mut self.ends);
        if self.ends.is_empty() {
            return;
        }
        let now = self.clock.now();
        let base = data.len();
        let (mut start, mut changed, mut bad) = (0usize, false, false);
        self.scratch.clear();
        let mut kept_ends = Vec::with_capacity(self.ends.len());
        for &end in &self.ends {
            let e = &self.data[start..end as usize];
            start = end as usize;
            let Some(t) = stored_at(e) else {
                bad = true;
                continue;
            };
            if expired(t, ttl.millis, now) {
                changed = true;
                continue;
            }
            data.extend_from_slice(&e[TTL_PREFIX..]);
            ends.push((data.len() - base) as u32);
            let t = if ttl.update == TtlUpdate::OnReadAndWrite { now } else { t };
            changed |= t != stored_at(e).unwrap_or(t);
            self.scratch.extend_from_slice(&t.to_le_bytes());
            self.scratch.extend_from_slice(&e[TTL_PREFIX..]);
            kept_ends.push(self.scratch.len() as u32);
        }
        if bad {
            self.malformed(StateKind::List);
        }
        if changed {
            self.inner.list_replace(state, at, &self.scratch, &kept_ends);
        }
    }

    fn list_add(&mut self, state: u32, at: Scope<'_>, element: &[u8]) {
        if self.ttl(StateKind::List, state).is_none() {
            return self.inner.list_add(state, at, element);
        }
        self.stamp(self.clock.now(), element);
        self.inner.list_add(state, at, &self.scratch);
    }

    fn list_replace(&mut self, state: u32, at: Scope<'_>, data: &[u8], ends: &[u32]) {
        if self.ttl(StateKind::List, state).is_none() {
            return self.inner.list_replace(state, at, data, ends);
        }
        let now = self.clock.now().to_le_bytes();
        self.scratch.clear();
        self.ends.clear();
        for item in crate::memory::items(data, ends) {
            self.scratch.extend_from_slice(&now);
            self.scratch.extend_from_slice(item);
            self.ends.push(self.scratch.len() as u32);
        }
        self.inner.list_replace(state, at, &self.scratch, &self.ends);
    }

    fn list_clear(&mut self, state: u32, at: Scope<'_>) {
        self.inner.list_clear(state, at);
    }

    fn map_get(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(ttl) = self.ttl(StateKind::Map, state) else { return self.inner.map_get(state, at, map_key, out) };
        let before = out.len();
        self.inner.map_get(state, at, map_key, out)
            && self.unstamp(
                StateKind::Map,
                ttl,
                out,
                before,
                |b, stamped| b.map_put(state, at, map_key, stamped),
                |b| b.map_remove(state, at, map_key),
            )
    }

    fn map_put(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], value: &[u8]) {
        if self.ttl(StateKind::Map, state).is_none() {
            return self.inner.map_put(state, at, map_key, value);
        }
        self.stamp(self.clock.now(), value);
        self.inner.map_put(state, at, map_key, &self.scratch);
    }

    fn map_remove(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) {
        self.inner.map_remove(state, at, map_key);
    }

    fn map_contains(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) -> bool {
        if self.ttl(StateKind::Map, state).is_none() {
            return self.inner.map_contains(state, at, map_key);
        }
        let mut v = std::mem::take(&mut self.data);
        v.clear();
        let found = self.map_get(state, at, map_key, &mut v);
        self.data = v;
        found
    }

    /// Scans past expired entries (removing them) until `limit` live
    /// ones are found or the map ends, so a short page still means the end.
    fn map_scan(
        &mut self,
        state: u32,
        at: Scope<'_>,
        after: Option<&[u8]>,
        limit: usize,
        data: &mut Vec<u8>,
        ends: &mut Vec<u32>,
    ) {
        let Some(ttl) = self.ttl(StateKind::Map, state) else {
            return self.inner.map_scan(state, at, after, limit, data, ends);
        };
        let now = self.clock.now();
        let base = data.len();
        let mut cursor: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
        let (mut found, mut bad) = (0usize, false);
        self.keys.clear();
        let mut refresh: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while found < limit {
            self.data.clear();
            self.ends.clear();
            let page = limit - found;
            self.inner.map_scan(state, at, cursor.as_deref(), page, &mut self.data, &mut self.ends);
            let pairs = self.ends.len() / 2;
            let mut start = 0usize;
            for kv in self.ends.chunks_exact(2) {
                let k = &self.data[start..kv[0] as usize];
                let v = &self.data[kv[0] as usize..kv[1] as usize];
                start = kv[1] as usize;
                cursor = Some(k.to_vec());
                match stored_at(v) {
                    None => bad = true,
                    Some(t) if expired(t, ttl.millis, now) => self.keys.push(k.to_vec()),
                    Some(t) => {
                        data.extend_from_slice(k);
                        ends.push((data.len() - base) as u32);
                        data.extend_from_slice(&v[TTL_PREFIX..]);
                        ends.push((data.len() - base) as u32);
                        found += 1;
                        if ttl.update == TtlUpdate::OnReadAndWrite && t != now {
                            let mut stamped = now.to_le_bytes().to_vec();
                            stamped.extend_from_slice(&v[TTL_PREFIX..]);
                            refresh.push((k.to_vec(), stamped));
                        }
                    }
                }
            }
            if pairs < page {
                break;
            }
        }
        if bad {
            self.malformed(StateKind::Map);
        }
        for k in std::mem::take(&mut self.keys) {
            self.inner.map_remove(state, at, &k);
        }
        for (k, v) in refresh {
            self.inner.map_put(state, at, &k, &v);
        }
    }

    fn map_clear(&mut self, state: u32, at: Scope<'_>) {
        self.inner.map_clear(state, at);
    }

    fn check(&mut self) -> Result<(), StateError> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.inner.check(),
        }
    }

    fn prefetch_values(&mut self, state: u32, at: &[Scope<'_>]) {
        self.inner.prefetch_values(state, at);
    }

    /// Pieces as stored, timestamps included (a snapshot keeps them, so
    /// state restored later expires when it would have).
    fn scan_groups(&mut self, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Piece<'_>)) {
        self.inner.scan_groups(groups, visit);
    }

    fn cut(&mut self) -> Option<u64> {
        self.inner.cut()
    }

    fn restore_hint(&mut self, pieces: usize) {
        self.inner.restore_hint(pieces)
    }

    fn scan_changed(&mut self, since: u64, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Change<'_>)) -> bool {
        self.inner.scan_changed(since, groups, visit)
    }

    fn confirm(&mut self, mark: u64) {
        self.inner.confirm(mark)
    }

    fn drop_groups(&mut self, groups: RangeInclusive<u16>) {
        self.inner.drop_groups(groups);
    }

    fn restore(&mut self, piece: Piece<'_>) {
        self.inner.restore(piece);
    }

    fn restore_end(&mut self) {
        self.inner.restore_end();
    }

    fn retain(&mut self, kind: StateKind, state: u32, keep: &mut dyn FnMut(&[u8]) -> bool) {
        self.inner.retain(kind, state, keep);
    }

    fn expire(&mut self) -> Option<u64> {
        self.sweep();
        self.shortest()
    }

    fn timer_register(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        self.inner.timer_register(domain, at, timestamp);
    }

    fn timer_delete(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        self.inner.timer_delete(domain, at, timestamp);
    }

    fn timers_pending(&self) -> usize {
        self.inner.timers_pending()
    }

    fn timers_in_memory(&self) -> usize {
        self.inner.timers_in_memory()
    }

    fn next_timer(&self, domain: TimerDomain) -> Option<i64> {
        self.inner.next_timer(domain)
    }

    fn pop_timers(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<Timer>) {
        self.inner.pop_timers(domain, upto, limit, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LsmStore, MemoryBackend};

    const HOUR: u64 = 3_600_000;

    fn backend(inner: Box<dyn KeyedStateBackend>, update: TtlUpdate) -> (TtlBackend, Clock) {
        let clock = Clock::manual(1_000);
        let ttl = Ttl { millis: 100, update };
        let ttls = [(StateKind::Value, 0, ttl), (StateKind::List, 0, ttl), (StateKind::Map, 0, ttl)];
        (TtlBackend::new(inner, clock.clone(), &ttls), clock)
    }

    fn value(b: &mut TtlBackend, state: u32) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        b.value_get(state, Scope::key(1, b"k"), &mut out).then_some(out)
    }

    fn list(b: &mut TtlBackend) -> Vec<Vec<u8>> {
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.list_get(0, Scope::key(1, b"k"), &mut data, &mut ends);
        crate::memory::split_items(&data, &ends)
    }

    #[test]
    fn on_create_and_write_expires_a_value_read_or_not() {
        let (mut b, clock) = backend(Box::new(MemoryBackend::new()), TtlUpdate::OnCreateAndWrite);
        let at = Scope::key(1, b"k");
        b.value_put(0, at, b"v");
        b.value_put(1, at, b"no ttl");
        clock.set(1_099);
        assert_eq!(value(&mut b, 0).as_deref(), Some(&b"v"[..]), "alive one ms before its TTL");
        clock.set(1_100);
        assert_eq!(value(&mut b, 0), None, "a read does not extend it: expired at write + TTL");
        clock.set(1_000 + HOUR as i64);
        assert_eq!(value(&mut b, 1).as_deref(), Some(&b"no ttl"[..]), "a state without TTL never expires");
        b.value_put(0, at, b"w");
        clock.set(1_000 + HOUR as i64 + 99);
        assert_eq!(value(&mut b, 0).as_deref(), Some(&b"w"[..]), "a write starts the TTL again");
    }

    #[test]
    fn on_read_and_write_extends_on_each_read() {
        let (mut b, clock) = backend(Box::new(MemoryBackend::new()), TtlUpdate::OnReadAndWrite);
        let at = Scope::key(1, b"k");
        b.value_put(0, at, b"v");
        b.list_add(0, at, b"a");
        b.map_put(0, at, b"m", b"x");
        for t in [1_050, 1_140, 1_230] {
            clock.set(t);
            assert_eq!(value(&mut b, 0).as_deref(), Some(&b"v"[..]), "read at {t}");
            assert_eq!(list(&mut b), vec![b"a".to_vec()]);
            assert!(b.map_contains(0, at, b"m"));
        }
        clock.set(1_330);
        assert_eq!(value(&mut b, 0), None);
        assert!(list(&mut b).is_empty());
        assert!(!b.map_contains(0, at, b"m"));
    }

    #[test]
    fn list_elements_and_map_entries_expire_one_by_one() {
        let (mut b, clock) = backend(Box::new(MemoryBackend::new()), TtlUpdate::OnCreateAndWrite);
        let at = Scope::key(1, b"k");
        b.list_add(0, at, b"old");
        for i in 0u8..5 {
            b.map_put(0, at, &[i], b"old");
        }
        clock.set(1_060);
        b.list_add(0, at, b"new");
        b.map_put(0, at, &[9], b"new");
        clock.set(1_120);
        assert_eq!(list(&mut b), vec![b"new".to_vec()]);
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        b.map_scan(0, at, None, 1, &mut data, &mut ends);
        assert_eq!(
            crate::memory::split_items(&data, &ends),
            vec![vec![9], b"new".to_vec()],
            "a page skips expired entries"
        );
        let mut raw = Vec::new();
        b.inner.scan_groups(0..=u16::MAX, &mut |p| raw.push(format!("{p:?}")));
        assert_eq!(raw.len(), 2, "expired entries were removed on access: {raw:?}");
    }

    #[test]
    fn the_sweep_removes_expired_state_nobody_reads() {
        let (mut b, clock) = backend(Box::new(MemoryBackend::new()), TtlUpdate::OnCreateAndWrite);
        for k in 0u8..50 {
            let key = [k];
            let at = Scope::key(u16::from(k % 4), &key);
            b.value_put(0, at, b"v");
            b.value_put(1, at, b"kept");
            b.list_add(0, at, b"e");
            b.map_put(0, at, b"m", b"x");
        }
        clock.set(2_000);
        b.sweep();
        let mut left = Vec::new();
        b.scan_groups(0..=u16::MAX, &mut |p| left.push(format!("{p:?}")));
        assert_eq!(left.len(), 50, "only the state without TTL is left");
    }

    #[test]
    fn lsm_compaction_drops_expired_spilled_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        let (mut b, clock) = backend(Box::new(store.backend(0)), TtlUpdate::OnCreateAndWrite);
        for k in 0u32..200 {
            let key = k.to_be_bytes();
            let at = Scope::key(3, &key);
            b.value_put(0, at, b"v");
            b.list_add(0, at, b"e");
            b.map_put(0, at, b"m", b"x");
        }
        clock.set(1_050);
        for k in 0u32..10 {
            b.value_put(0, Scope::key(3, &k.to_be_bytes()), b"fresh");
        }
        clock.set(1_120);
        let left = store.compact().unwrap();
        assert!(left <= 12, "only the fresh values (and at most the entries in memory) are left in fjall: {left}");
        assert!(b.check().is_ok());
        for k in 0u32..200 {
            let mut out = Vec::new();
            let alive = b.value_get(0, Scope::key(3, &k.to_be_bytes()), &mut out);
            assert_eq!(alive, k < 10, "key {k}");
        }
    }
}
