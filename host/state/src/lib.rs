//! # weir-state — keyed state and timers of one operator subtask
//!
//! Owns the [`KeyedStateBackend`] trait (value, list and map state scoped to
//! a state id, key group, key and namespace; event- and processing-time
//! timers, one per key, namespace and timestamp) and its backends:
//! [`MemoryBackend`] (hash maps) and [`LsmBackend`] (memory first, spilled
//! to fjall past a byte budget). Knows nothing about Wasm, operators or the network; state ids
//! are assigned by the runtime from the operator's declared state names.
#![warn(missing_docs)]

mod lsm;
mod memory;
mod ttl;

pub use lsm::{LsmBackend, LsmStore};
pub use memory::MemoryBackend;
use std::ops::RangeInclusive;

pub use ttl::{Clock, TTL_PREFIX, Ttl, TtlBackend, TtlUpdate, expired, stored_at};

/// A state backend that failed: what failed and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError(pub String);

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StateError {}

/// The kinds of keyed state a backend stores (reducing and aggregating
/// states are value states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// One value per scope.
    Value = 0,
    /// A list per scope.
    List = 1,
    /// A map per scope.
    Map = 2,
}

/// The time domain of a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerDomain {
    /// Fires on watermarks.
    EventTime,
    /// Fires on the wall clock.
    ProcessingTime,
}

/// Where a piece of keyed state lives: the key's key group (computed by
/// the router with `weir_core::keys::key_group`, and never again), the
/// key, and a namespace within the key (empty for process functions; the
/// window for window operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The key group of `key`.
    pub group: u16,
    /// The key's bytes.
    pub key: &'a [u8],
    /// The namespace's bytes (empty: none).
    pub namespace: &'a [u8],
}

impl<'a> Scope<'a> {
    /// The scope of `key` in key group `group`, without a namespace.
    pub fn key(group: u16, key: &'a [u8]) -> Self {
        Scope { group, key, namespace: &[] }
    }
}

/// One piece of keyed state or one timer, as
/// [`KeyedStateBackend::scan_groups`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// The value of value state `state` at `at`.
    Value {
        /// The state id.
        state: u32,
        /// Key group, key and namespace.
        at: Scope<'a>,
        /// The stored bytes.
        value: &'a [u8],
    },
    /// One element of list state `state` at `at`; a list's elements come
    /// one after another, in list order.
    List {
        /// The state id.
        state: u32,
        /// Key group, key and namespace.
        at: Scope<'a>,
        /// The element's stored bytes.
        element: &'a [u8],
    },
    /// One entry of map state `state` at `at`; a map's entries come one
    /// after another, in map-key order.
    Map {
        /// The state id.
        state: u32,
        /// Key group, key and namespace.
        at: Scope<'a>,
        /// The entry's key.
        map_key: &'a [u8],
        /// The entry's stored value.
        value: &'a [u8],
    },
    /// A pending timer.
    Timer {
        /// Its domain.
        domain: TimerDomain,
        /// Key group, key and namespace.
        at: Scope<'a>,
        /// When it fires.
        timestamp: i64,
    },
}

impl Piece<'_> {
    /// The key group the piece belongs to.
    pub fn group(&self) -> u16 {
        match self {
            Piece::Value { at, .. } | Piece::List { at, .. } | Piece::Map { at, .. } | Piece::Timer { at, .. } => {
                at.group
            }
        }
    }
}

/// What [`KeyedStateBackend::scan_changed`] hands out: a unit of state
/// (one value, one whole list or one whole map at a scope) that changed,
/// to be reset before its pieces, if any, are put back; or a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The unit of `kind` state `state` at `at` changed: what a restore
    /// holds of it goes, and the pieces that follow (none: it was
    /// removed) take its place.
    Reset {
        /// Value, list or map.
        kind: StateKind,
        /// The state id.
        state: u32,
        /// Key group, key and namespace.
        at: Scope<'a>,
    },
    /// A piece of the unit last reset, or a timer.
    Piece(Piece<'a>),
}

/// A timer taken out of a backend to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// When it fires.
    pub timestamp: i64,
    /// Its key group.
    pub group: u16,
    /// Its key.
    pub key: Vec<u8>,
    /// Its namespace.
    pub namespace: Vec<u8>,
}

/// Keyed state and timers of one operator subtask, scoped to (state id,
/// key group, key, namespace); timers to (domain, key group, key,
/// namespace, timestamp), one each. Reads append to caller-owned buffers
/// so the hot path allocates nothing. Backends know the key group of
/// everything they hold, so a key group can be snapshotted and moved
/// without hashing keys again.
pub trait KeyedStateBackend: Send {
    /// Appends the value of `state` at `at` to `out`; false when absent.
    fn value_get(&mut self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool;
    /// Sets the value.
    fn value_put(&mut self, state: u32, at: Scope<'_>, value: &[u8]);
    /// Removes the value.
    fn value_clear(&mut self, state: u32, at: Scope<'_>);
    /// Appends the value to `out` and removes it; whether there was one
    /// (one look-up where the backend can).
    fn value_take(&mut self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool {
        let found = self.value_get(state, at, out);
        if found {
            self.value_clear(state, at);
        }
        found
    }

    /// Appends the list's elements to `data`, pushing each element's end
    /// (relative to `data`'s length at the call) to `ends`.
    fn list_get(&mut self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>);
    /// Appends an element to the list.
    fn list_add(&mut self, state: u32, at: Scope<'_>, element: &[u8]);
    /// Replaces the list with the elements `data` split at `ends`.
    fn list_replace(&mut self, state: u32, at: Scope<'_>, data: &[u8], ends: &[u32]);
    /// Removes the list.
    fn list_clear(&mut self, state: u32, at: Scope<'_>);

    /// Appends the map's value under `map_key` to `out`; false when absent.
    fn map_get(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], out: &mut Vec<u8>) -> bool;
    /// Puts a map entry.
    fn map_put(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], value: &[u8]);
    /// Removes a map entry.
    fn map_remove(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]);
    /// Whether the map has `map_key`.
    fn map_contains(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) -> bool;
    /// Appends up to `limit` entries whose keys sort after `after` (from the
    /// first when `None`), key then value, in map-key order (see
    /// `list_get`).
    fn map_scan(
        &mut self,
        state: u32,
        at: Scope<'_>,
        after: Option<&[u8]>,
        limit: usize,
        data: &mut Vec<u8>,
        ends: &mut Vec<u32>,
    );
    /// Removes the whole map.
    fn map_clear(&mut self, state: u32, at: Scope<'_>);

    /// The first error the backend met since the last check (a disk that
    /// failed under the `lsm` backend), which fails the job: reads made
    /// after it may have missed state. Backends that cannot fail have none.
    fn check(&mut self) -> Result<(), StateError> {
        Ok(())
    }

    /// A hint that value state `state` of each of `at` is read next (the
    /// keys of a chunk of fired timers, in firing order): a backend that
    /// keeps state on disk may read them together, by one range scan per
    /// key group instead of a point read each. What later reads return is
    /// unchanged.
    fn prefetch_values(&mut self, state: u32, at: &[Scope<'_>]) {
        let _ = (state, at);
    }

    /// Hands every piece of state and every timer of the key groups in
    /// `groups` to `visit`, each once: state first, then timers. The order
    /// between entries is the backend's own (sort them where it matters);
    /// a list's elements come in list order and a map's entries in
    /// map-key order. This is how a snapshot reads key groups and how a
    /// rescale moves them.
    fn scan_groups(&mut self, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Piece<'_>));

    /// Puts back one piece [`KeyedStateBackend::scan_groups`] handed out
    /// (restoring a checkpoint): the stored bytes as they were, list
    /// elements appended in the order they come. Wrapping backends (TTL)
    /// pass it to the backend they wrap, untouched.
    fn restore(&mut self, piece: Piece<'_>) {
        match piece {
            Piece::Value { state, at, value } => self.value_put(state, at, value),
            Piece::List { state, at, element } => self.list_add(state, at, element),
            Piece::Map { state, at, map_key, value } => self.map_put(state, at, map_key, value),
            Piece::Timer { domain, at, timestamp } => self.timer_register(domain, at, timestamp),
        }
    }

    /// Ends the restore of one snapshot's pieces (each file of a chain):
    /// a backend that held restored pieces back, to put them in at once in
    /// an order of its own, puts them in now. Until then reads may miss
    /// them, and a reset (`value_clear`, ...) does not reach them, so a
    /// restore calls this after each file, before the next one's resets.
    fn restore_end(&mut self) {}

    /// Marks this moment for incremental snapshots: what changes after it
    /// is what a later [`KeyedStateBackend::scan_changed`] from the mark
    /// returns. `None` when the backend cannot tell what changed (then
    /// every snapshot is a full one); the memory backend cannot.
    fn cut(&mut self) -> Option<u64> {
        None
    }

    /// Hands every unit of state of `groups` changed since mark `since`
    /// (a [`KeyedStateBackend::cut`]) to `visit` as a reset followed by
    /// its current pieces (a value that is there may come without reset:
    /// putting it replaces the old one), each unit once, then every timer
    /// of `groups`
    /// (timers are not tracked: all of them, each time). False, having
    /// visited nothing, when the backend cannot say (no such mark, or
    /// state was dropped since): take a full snapshot instead.
    fn scan_changed(&mut self, since: u64, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Change<'_>)) -> bool {
        let _ = (since, groups, visit);
        false
    }

    /// Changes up to mark `mark` will never be asked for again (the
    /// checkpoint taken at it completed and later ones diff against it):
    /// the backend may forget what it kept to find them.
    fn confirm(&mut self, mark: u64) {
        let _ = mark;
    }

    /// A hint that about `pieces` pieces are restored next (one
    /// snapshot's count): a backend may make room for them at once rather
    /// than grow as they come.
    fn restore_hint(&mut self, pieces: usize) {
        let _ = pieces;
    }

    /// Removes every piece of state and every timer of the key groups in
    /// `groups` (after they moved to another subtask).
    fn drop_groups(&mut self, groups: RangeInclusive<u16>);

    /// Keeps, of the values, list elements or map values of state `state`
    /// of `kind` that the backend holds in memory, those `keep` accepts;
    /// lists and maps left empty go. (The TTL sweep: what a backend holds
    /// on disk it cleans up itself, see `expire_on_disk`.)
    fn retain(&mut self, kind: StateKind, state: u32, keep: &mut dyn FnMut(&[u8]) -> bool);

    /// Removes expired state held in memory (the TTL's background
    /// cleanup) and returns the shortest TTL, or `None` (doing nothing)
    /// when no state expires.
    fn expire(&mut self) -> Option<u64> {
        None
    }

    /// Tells the backend that the states in `ttls` expire by `clock`
    /// (values stored behind their last-access time, see [`TtlBackend`]),
    /// so it can drop expired state it keeps on disk in the background.
    /// Backends without a disk ignore it.
    fn expire_on_disk(&mut self, ttls: &[(StateKind, u32, Ttl)], clock: &Clock) {
        let _ = (ttls, clock);
    }

    /// Registers a timer; registering one that exists does nothing.
    fn timer_register(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64);
    /// Deletes a timer if it exists.
    fn timer_delete(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64);
    /// Number of timers held, both domains.
    fn timers_pending(&self) -> usize;
    /// Number of timers held in memory, both domains (what the
    /// `pending_timers` quota bounds): all of them, unless the backend
    /// spills timers to disk.
    fn timers_in_memory(&self) -> usize {
        self.timers_pending()
    }
    /// The earliest timer of `domain`.
    fn next_timer(&self, domain: TimerDomain) -> Option<i64>;
    /// Removes up to `limit` timers of `domain` at or before `upto`, in
    /// order of timestamp, then key and namespace (key order when the
    /// namespace is empty, see `docs/state.md`), whatever their key groups, and
    /// appends them to `out`.
    fn pop_timers(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<Timer>);
}
