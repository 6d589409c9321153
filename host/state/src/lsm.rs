//! The `lsm` backend: state in memory first, in fjall behind it.
//!
//! A read-modify-write through fjall costs microseconds of CPU (block
//! decoding, cache, bloom filters, memtable), a hundred times a hash map's,
//! so the backend is **memory first**: every entry a task touches lives in
//! hash maps like the memory backend's, and fjall is reached only when the
//! state outgrows a byte budget. Then the coldest entries (a CLOCK sweep:
//! an entry read or written since the last sweep is spared once) are
//! written to fjall in one batch and dropped from memory; a later miss
//! reads the entry back. A miss on a key never written to fjall costs no
//! fjall call at all (a Bloom filter of the keys written, [`spilled`]),
//! and the values of a chunk of fired timers are read by one range scan
//! per key group (`prefetch_values`).
//!
//! The unit of spilling is the state of one (state, key group, key,
//! namespace): a value, a whole list or a whole map. Keys in fjall start
//! with the key group, big endian, so all state of a key group, or of a
//! range of them, is one contiguous range:
//!
//! ```text
//! key group (u16 BE) | owner (u32 BE) | kind (u8) | state (u32 BE) | key ++ namespace ++ len(namespace)
//! ```
//!
//! `owner` tells apart the backends (operator subtasks) sharing one
//! [`LsmStore`], one fjall database per process. Timers are kept the same
//! way, memory first, the latest spilled to fjall (see [`timers`]).

mod spilled;
mod timers;

use crate::memory::{
    Bytes, Composite, FastMap, LargeProbe, STAGE_FROM, SmallProbe, Staging, composite, each_in, probe, push_items,
    scope_of, small_words, split,
};
use crate::{
    Change, Clock, KeyedStateBackend, Piece, Scope, StateError, StateKind, Timer, TimerDomain, Ttl, expired, stored_at,
};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// One fjall database shared by every [`LsmBackend`] of a process.
#[derive(Clone)]
pub struct LsmStore {
    inner: Arc<Store>,
}

struct Store {
    db: fjall::Database,
    state: fjall::Keyspace,
    owners: AtomicU32,
    ttls: Registry,
    /// The memtable size fjall was given.
    memtable: u64,
}

/// The states with a time-to-live, by (owner, kind tag, state id): what
/// the compaction filter drops.
type Registry = Arc<RwLock<HashMap<(u32, u8, u32), (u64, Clock)>>>;

/// Makes the compaction filter of each fjall compaction.
struct ExpiryFactory(Registry);

impl fjall::compaction::filter::Factory for ExpiryFactory {
    fn name(&self) -> &str {
        "weir-state-ttl"
    }

    fn make_filter(
        &self,
        _: &fjall::compaction::filter::Context,
    ) -> Box<dyn fjall::compaction::filter::CompactionFilter> {
        let ttls = self.0.read().map(|m| m.clone()).unwrap_or_default();
        Box::new(ExpiryFilter(ttls))
    }
}

/// Drops expired values, list elements and map entries of states with a
/// TTL while fjall compacts: the background cleanup of spilled state.
struct ExpiryFilter(HashMap<(u32, u8, u32), (u64, Clock)>);

impl fjall::compaction::filter::CompactionFilter for ExpiryFilter {
    fn filter_item(
        &mut self,
        item: fjall::compaction::filter::ItemAccessor<'_>,
        _: &fjall::compaction::filter::Context,
    ) -> fjall::compaction::filter::CompactionFilterResult {
        use fjall::compaction::filter::Verdict;
        let Some((_, owner, tag, state, _)) = parse_db_key(item.key()) else { return Ok(Verdict::Keep) };
        let Some((millis, clock)) = self.0.get(&(owner, tag, state)) else { return Ok(Verdict::Keep) };
        let now = clock.now();
        let live = |v: &[u8]| stored_at(v).is_none_or(|t| !expired(t, *millis, now));
        let value = item.value()?;
        Ok(match tag {
            0 if live(&value) => Verdict::Keep,
            0 => Verdict::Remove,
            _ => {
                let Some(items) = decode_items(&value) else { return Ok(Verdict::Keep) };
                let step = if tag == 1 { 1 } else { 2 };
                if items.len() % step != 0 {
                    return Ok(Verdict::Keep);
                }
                let kept: Vec<&[u8]> =
                    items.chunks_exact(step).filter(|c| live(c[step - 1])).flatten().copied().collect();
                if kept.is_empty() {
                    Verdict::Remove
                } else if kept.len() == items.len() {
                    Verdict::Keep
                } else {
                    Verdict::ReplaceValue(encode_items(kept.into_iter()).into())
                }
            }
        })
    }
}

impl std::fmt::Debug for LsmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsmStore").finish_non_exhaustive()
    }
}

impl LsmStore {
    /// Opens (creating) the database in folder `path`, giving fjall's
    /// block cache an eighth of `memory` bytes but at least fjall's default
    /// 32 MiB, and its memtable an eighth but 8 to 64 MiB (fjall's
    /// recommended range). Spilling 1 M keys at a 16 MiB budget took 8 s
    /// with those floors and 49–65 s with a 2–4 MiB cache: nearly every
    /// access then missed the cache. A `temporary` store is deleted when
    /// the last handle to it is dropped.
    pub fn open(path: &Path, temporary: bool, memory: u64) -> Result<Self, StateError> {
        let fail = |e: fjall::Error| {
            StateError(format!(
                "cannot open the lsm state store in {}: {e}; check that the folder is writable and not used by another job",
                path.display()
            ))
        };
        const MIB: u64 = 1 << 20;
        let eighth = memory / 8;
        let ttls = Registry::default();
        let factory: Arc<dyn fjall::compaction::filter::Factory> = Arc::new(ExpiryFactory(ttls.clone()));
        let db = fjall::Database::builder(path)
            .temporary(temporary)
            .with_compaction_filter_factories(Arc::new(move |_| Some(factory.clone())))
            .cache_size(eighth.max(32 * MIB))
            // Sealed memtables wait for their flush until the journal
            // reaches this size: fjall's 512 MiB default let a 256 MiB
            // budget's run hold several hundred MiB of them.
            .max_journaling_size(64 * MIB)
            // One worker for flushes and compactions. With more, fjall
            // 3.1's first worker hands every compaction it receives back
            // to the queue and takes it again while the others are busy:
            // a spin that took a core from the tasks (half the word
            // count's CPU at a 16 MiB budget, 25 s → see the benchmarks).
            .worker_threads(1)
            .open()
            .map_err(fail)?;
        // Filters and indexes are partitioned at every level, so a point
        // read loads one small partition: whole filter blocks of the
        // larger tables (megabytes at 10 M keys) did not stay in the
        // cache and were read and checksummed again on every miss, which
        // took the 10 M-key benchmark below 22 k events/s.
        use fjall::config::PartitioningPolicy;
        let memtable = eighth.clamp(8 * MIB, 64 * MIB);
        let options = || {
            fjall::KeyspaceCreateOptions::default()
                .max_memtable_size(memtable)
                .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                .index_block_partitioning_policy(PartitioningPolicy::all(true))
        };
        let state = db.keyspace("state", options).map_err(fail)?;
        Ok(LsmStore { inner: Arc::new(Store { db, state, owners: AtomicU32::new(0), ttls, memtable }) })
    }

    /// Called after each batch written: keeps fjall's memtables bounded.
    /// fjall slows writers down by itself only once four memtables are
    /// sealed, and its one worker (see `open`) rotates a full memtable
    /// only when done with the compaction at hand, so a task spilling
    /// during a long compaction grew the active memtable past 150 MiB (a
    /// 436 MiB peak at a 16 MiB budget). So a memtable past its size is
    /// sealed here while at most two are, and the task then waits
    /// (RocksDB's write stall) while more than two wait for their flush,
    /// for ten seconds at most: never sealing a fourth keeps fjall's own
    /// stall, which has no time limit, out of this path, so a stuck
    /// worker slows a job rather than stops it.
    fn stall(&self) -> Result<(), fjall::Error> {
        let (db, keyspace) = (&self.inner.db, &self.inner.state);
        let sealed = keyspace.sealed_memtable_count();
        if sealed <= 2 && db.write_buffer_size() > (sealed as u64 + 1) * self.inner.memtable {
            // `Ok(false)` when another writer rotated it first.
            keyspace.rotate_memtable()?;
        }
        for _ in 0..10_000 {
            if keyspace.sealed_memtable_count() <= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Number of entries (state and timers) in fjall, by a scan: for
    /// tests and tools, not for hot paths.
    pub fn entries_on_disk(&self) -> usize {
        self.inner.state.iter().count()
    }

    /// Flushes the memtable and compacts the whole store now, which drops
    /// expired state (fjall compacts by itself as data grows; this is for
    /// tests and tools). Returns the number of entries left.
    pub fn compact(&self) -> Result<usize, StateError> {
        let keyspace = &self.inner.state;
        let fail = |e: fjall::Error| StateError(format!("the lsm state store failed to compact: {e}"));
        keyspace.rotate_memtable_and_wait().map_err(fail)?;
        keyspace.major_compact().map_err(fail)?;
        Ok(self.entries_on_disk())
    }

    /// A backend for one operator subtask, keeping up to `budget` bytes
    /// of state in memory.
    pub fn backend(&self, budget: usize) -> LsmBackend {
        let owner = self.inner.owners.fetch_add(1, Ordering::Relaxed);
        LsmBackend {
            store: self.clone(),
            owner,
            mem: Mem::default(),
            timers: timers::Timers::new(self.clone(), owner, budget / 4),
            budget,
            used: 0,
            spilled: false,
            // A quarter of the budget at most (see `spilled`).
            on_disk: spilled::Spilled::new(budget / 4),
            error: None,
            changes: Changes::new(budget),
            hint: 0,
            sized: false,
            staging: None,
        }
    }
}

/// An entry in memory: its state (`None`: known to be absent, or removed
/// and not yet written), whether fjall holds an older version, and
/// whether it was used since the last sweep.
struct Slot<V> {
    v: Option<V>,
    /// Bytes of `v` as counted in `used` (kept here, so a change to a long
    /// list or map costs no walk over it).
    size: usize,
    dirty: bool,
    hot: bool,
    /// The change epoch of its last change (0: unchanged since read), for
    /// incremental snapshots (see [`Changes`]).
    epoch: u32,
    /// Whether it held state at the last mark, set at its first change
    /// after the mark (unchanged since, it holds what it held then; read
    /// back from fjall, what fjall held): a unit made and removed since
    /// needs no reset.
    existed: bool,
}

/// What a stored kind needs: its tag in fjall keys, its size in memory and
/// its encoding in fjall.
trait Kind: Sized {
    const TAG: u8;
    const KIND: StateKind;
    fn size(&self) -> usize;
    /// Hands its pieces at `at` of state `state` to `visit`.
    fn pieces(&self, state: u32, at: Scope<'_>, visit: &mut dyn FnMut(Change<'_>));
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl Kind for Bytes {
    const TAG: u8 = 0;
    const KIND: StateKind = StateKind::Value;
    fn pieces(&self, state: u32, at: Scope<'_>, visit: &mut dyn FnMut(Change<'_>)) {
        visit(Change::Piece(Piece::Value { state, at, value: self.as_slice() }));
    }
    fn size(&self) -> usize {
        self.as_slice().len()
    }
    fn encode(&self) -> Vec<u8> {
        self.as_slice().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Bytes::new(bytes))
    }
}

/// Items as `count (u32 LE) | ends (u32 LE each) | data`.
fn encode_items<'a>(items: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let n = items.clone().count();
    let mut out = Vec::with_capacity(4 + 4 * n);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    let mut end = 0u32;
    for item in items.clone() {
        end += item.len() as u32;
        out.extend_from_slice(&end.to_le_bytes());
    }
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

fn decode_items(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let ends = bytes.get(4..4 + 4 * n)?;
    let data = &bytes[4 + 4 * n..];
    let mut start = 0usize;
    let mut items = Vec::with_capacity(n);
    for e in ends.chunks_exact(4) {
        let end = u32::from_le_bytes(e.try_into().ok()?) as usize;
        items.push(data.get(start..end)?);
        start = end;
    }
    (start == data.len()).then_some(items)
}

/// Bytes of bookkeeping counted per element or entry.
const OVERHEAD: usize = 48;

/// Bytes of bookkeeping counted per list element.
const ELEMENT: usize = 24;

impl Kind for Vec<Vec<u8>> {
    const TAG: u8 = 1;
    const KIND: StateKind = StateKind::List;
    fn pieces(&self, state: u32, at: Scope<'_>, visit: &mut dyn FnMut(Change<'_>)) {
        for element in self {
            visit(Change::Piece(Piece::List { state, at, element }));
        }
    }
    fn size(&self) -> usize {
        self.iter().map(|e| e.len() + ELEMENT).sum()
    }
    fn encode(&self) -> Vec<u8> {
        encode_items(self.iter().map(Vec::as_slice))
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(decode_items(bytes)?.into_iter().map(<[u8]>::to_vec).collect())
    }
}

impl Kind for BTreeMap<Vec<u8>, Vec<u8>> {
    const TAG: u8 = 2;
    const KIND: StateKind = StateKind::Map;
    fn pieces(&self, state: u32, at: Scope<'_>, visit: &mut dyn FnMut(Change<'_>)) {
        for (map_key, value) in self {
            visit(Change::Piece(Piece::Map { state, at, map_key, value }));
        }
    }
    fn size(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len() + OVERHEAD).sum()
    }
    fn encode(&self) -> Vec<u8> {
        encode_items(self.iter().flat_map(|(k, v)| [k.as_slice(), v.as_slice()]))
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let items = decode_items(bytes)?;
        if items.len() % 2 != 0 {
            return None;
        }
        Some(items.chunks_exact(2).map(|kv| (kv[0].to_vec(), kv[1].to_vec())).collect())
    }
}

type Tables<V> = Vec<FastMap<Composite, Slot<V>>>;

/// The entries in memory, per kind and state.
#[derive(Default)]
struct Mem {
    values: Tables<Bytes>,
    lists: Tables<Vec<Vec<u8>>>,
    maps: Tables<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// The `lsm` backend of one operator subtask (see the module docs).
pub struct LsmBackend {
    store: LsmStore,
    owner: u32,
    mem: Mem,
    /// Timers, memory first.
    timers: timers::Timers,
    budget: usize,
    used: usize,
    /// Whether anything was ever written to fjall: until then a miss is
    /// known to be absent.
    spilled: bool,
    /// The keys ever written to fjall: a miss on any other is absent.
    on_disk: spilled::Spilled,
    error: Option<StateError>,
    changes: Changes,
    /// Pieces a restore announced (see `restore_hint`).
    hint: usize,
    /// Whether a table was sized from a hint: only the first counts (the
    /// pieces of later files replace or add to the same keys).
    sized: bool,
    /// Restored values not yet in memory (until `restore_end`).
    staging: Option<Staging>,
}

/// What incremental snapshots need to find the state changed since a
/// mark: every change stamps its entry with the current epoch, a mark
/// ([`KeyedStateBackend::cut`]) is an epoch and begins the next, and
/// entries changed since the last confirmed mark that the sweep writes to
/// fjall and drops are remembered (`moved`), as memory no longer holds
/// their stamp. Nothing is remembered until the first mark, so a job
/// without incremental checkpoints pays one integer per entry.
struct Changes {
    /// The epoch changes are stamped with now (marks are the epochs
    /// before it).
    epoch: u32,
    /// The last confirmed mark: older changes are never asked for again.
    confirmed: u32,
    /// Whether a mark was taken (only then is `moved` kept).
    tracking: bool,
    /// The last mark taken.
    last: u32,
    /// Entries changed after `confirmed` and dropped from memory, by
    /// (kind tag, state, entry): the epoch of the change, and whether it
    /// held state at the last mark (true when unsure).
    moved: HashMap<(u8, u32, Composite), (u32, bool)>,
    /// The epoch of the last `drop_groups` (or of giving up `moved`):
    /// marks before it cannot be diffed against.
    dropped: u32,
    /// Entries `moved` may hold: past it (checkpoints that do not
    /// complete while state spills) it is dropped, and the next snapshot
    /// is a full one.
    limit: usize,
}

/// Bytes of memory an entry of `Changes::moved` is counted for.
const MOVED_ENTRY: usize = 96;

impl Changes {
    /// Changes of a backend whose budget is `budget` bytes: `moved` takes
    /// up to a quarter of it (at least 65,536 entries).
    fn new(budget: usize) -> Self {
        let limit = (budget / 4 / MOVED_ENTRY).max(1 << 16);
        Changes { epoch: 1, confirmed: 0, tracking: false, last: 0, moved: HashMap::new(), dropped: 0, limit }
    }
}

impl Changes {
    /// Notes that the sweep dropped an entry changed at `epoch`.
    fn moved(&mut self, tag: u8, state: u32, c: &Composite, epoch: u32, existed: bool) {
        if self.tracking && epoch > self.confirmed {
            self.moved.insert((tag, state, c.clone()), (epoch, existed));
            if self.moved.len() > self.limit {
                self.moved = HashMap::new();
                self.dropped = self.epoch;
            }
        }
    }

    /// The change epoch and `existed` of an entry read back from fjall,
    /// holding state or not now: those it had when the sweep dropped it,
    /// when it changed since the last confirmed mark; else unchanged
    /// since (epoch 0), holding what it held at the last mark.
    fn read_back(&self, tag: u8, state: u32, c: Composite, now: bool) -> (Composite, u32, bool) {
        if self.moved.is_empty() {
            return (c, 0, now);
        }
        let key = (tag, state, c);
        let (epoch, existed) = self.moved.get(&key).copied().unwrap_or((0, now));
        (key.2, epoch, existed)
    }
}

impl std::fmt::Debug for LsmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsmBackend").field("owner", &self.owner).field("used", &self.used).finish_non_exhaustive()
    }
}

/// The fjall key of an entry.
fn db_key(owner: u32, tag: u8, state: u32, c: &Composite) -> Vec<u8> {
    let bytes = c.as_slice();
    let mut k = Vec::with_capacity(11 + bytes.len());
    k.extend_from_slice(&c.group().to_be_bytes());
    k.extend_from_slice(&owner.to_be_bytes());
    k.push(tag);
    k.extend_from_slice(&state.to_be_bytes());
    k.extend_from_slice(bytes);
    k
}

/// Group, owner, tag, state id and composite bytes of a state key.
fn parse_db_key(k: &[u8]) -> Option<(u16, u32, u8, u32, &[u8])> {
    let group = u16::from_be_bytes(k.get(..2)?.try_into().ok()?);
    let owner = u32::from_be_bytes(k.get(2..6)?.try_into().ok()?);
    let tag = *k.get(6)?;
    let state = u32::from_be_bytes(k.get(7..11)?.try_into().ok()?);
    Some((group, owner, tag, state, &k[11..]))
}

/// The fjall key range of the key groups in `groups`.
fn group_range(groups: &RangeInclusive<u16>) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
    use std::ops::Bound;
    let end = match groups.end().checked_add(1) {
        Some(e) => Bound::Excluded(e.to_be_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    (Bound::Included(groups.start().to_be_bytes().to_vec()), end)
}

/// Bytes an entry counts for: its key, its state's `size` and bookkeeping.
fn entry_size(c: &Composite, size: usize) -> usize {
    c.as_slice().len() + size + TABLE_ENTRY
}

/// Bytes counted per entry for its place in a hash table: the bucket
/// (composite and slot) and its control byte, times 1.5 for the free
/// buckets of a table that doubles when 7/8 full. Counting 48 instead
/// let a 256 MiB budget take over 500 MiB (10 M keys).
const TABLE_ENTRY: usize = (std::mem::size_of::<(Composite, Slot<Bytes>)>() + 1) * 3 / 2;

/// The longest key fjall takes; entries with longer keys stay in memory.
const MAX_DB_KEY: usize = u16::MAX as usize;

impl LsmBackend {
    /// Puts restored value `v` at `c` of value state `state` into memory
    /// (its table exists), replacing what the key had.
    fn restore_value(&mut self, state: u32, c: Composite, v: Bytes) {
        let len = v.as_slice().len();
        let size = entry_size(&c, len);
        let slot = Slot { v: Some(v), size: len, dirty: true, hot: false, epoch: self.changes.epoch, existed: true };
        match self.mem.values[state as usize].entry(c) {
            hashbrown::hash_map::Entry::Occupied(mut o) => {
                let old = entry_size(o.key(), o.get().size);
                self.used = (self.used + size).saturating_sub(old);
                o.insert(slot);
            }
            hashbrown::hash_map::Entry::Vacant(v) => {
                self.used += size;
                v.insert(slot);
            }
        }
        self.shrink();
    }

    /// Bytes of state held in memory, as counted against the budget.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Number of timers spilled to fjall.
    pub fn timers_spilled(&self) -> usize {
        self.timers.spilled()
    }

    /// Number of (state, key, namespace) entries held in memory.
    pub fn entries_in_memory(&self) -> usize {
        let m = &self.mem;
        m.values.iter().map(|t| t.len()).sum::<usize>()
            + m.lists.iter().map(|t| t.len()).sum::<usize>()
            + m.maps.iter().map(|t| t.len()).sum::<usize>()
    }

    /// `used` counted again from the entries, each state's size walked.
    #[cfg(test)]
    fn recount(&self) -> usize {
        fn count<V: Kind>(t: &Tables<V>) -> usize {
            t.iter().flat_map(|m| m.iter()).map(|(c, s)| entry_size(c, s.v.as_ref().map_or(0, Kind::size))).sum()
        }
        count(&self.mem.values) + count(&self.mem.lists) + count(&self.mem.maps)
    }

    fn fail(&mut self, what: &str, e: fjall::Error) {
        if self.error.is_none() {
            self.error = Some(StateError(format!(
                "the lsm state store failed to {what}: {e}; check the disk holding the state folder"
            )));
        }
    }

    /// The slot of `at` in `tables[state]`, read from fjall on a miss.
    fn slot<'a, V: Kind>(
        tables: &'a mut Tables<V>,
        ctx: (&LsmStore, u32, &spilled::Spilled, &mut usize, &mut Option<StateError>, &mut Changes),
        state: u32,
        at: Scope<'_>,
    ) -> &'a mut Slot<V> {
        let (store, owner, on_disk, used, error, changes) = ctx;
        let i = state as usize;
        if tables.len() <= i {
            tables.resize_with(i + 1, FastMap::default);
        }
        let m = &mut tables[i];
        // Two lookups on a miss rather than the entry API: a hit, the
        // common case, then builds no composite.
        if probe!(m, get, at).is_none() {
            let c = composite(at);
            // Keys too long for fjall are never spilled (see `sweep`);
            // nothing to build a fjall key for while nothing was.
            let k = if on_disk.is_empty() { Vec::new() } else { db_key(owner, V::TAG, state, &c) };
            let v = if !k.is_empty() && k.len() <= MAX_DB_KEY && on_disk.may_hold(&k) {
                match store.inner.state.get(&k) {
                    Ok(None) => None,
                    Ok(Some(b)) => decoded(&b, c.group(), error),
                    Err(e) => {
                        read_failed(e, error);
                        None
                    }
                }
            } else {
                None
            };
            let size = v.as_ref().map_or(0, Kind::size);
            *used += entry_size(&c, size);
            let (c, epoch, existed) = changes.read_back(V::TAG, state, c, v.is_some());
            m.insert(c, Slot { existed, v, size, dirty: false, hot: true, epoch });
        }
        let s = probe!(m, get_mut, at).expect("invariant: the slot was just made");
        s.hot = true;
        s
    }

    /// Writes the coldest entries to fjall and drops them until the state
    /// in memory is down to three quarters of the budget.
    fn shrink(&mut self) {
        let budget = self.budget.saturating_sub(self.timers.bytes() + self.on_disk.bytes());
        if self.used <= budget {
            return;
        }
        let target = budget / 4 * 3;
        let mut batch = self.store.inner.db.batch();
        let mut writes = 0usize;
        // Two passes at most: the first spares entries used since the last
        // sweep (and marks them cold), the second takes any.
        for _ in 0..2 {
            if self.used <= target {
                break;
            }
            let mut used = self.used;
            let mut out = Out {
                keyspace: &self.store.inner.state,
                batch: &mut batch,
                writes: &mut writes,
                on_disk: &mut self.on_disk,
                changes: &mut self.changes,
            };
            let owner = self.owner;
            sweep(&mut self.mem.values, &mut used, target, owner, &mut out);
            sweep(&mut self.mem.lists, &mut used, target, owner, &mut out);
            sweep(&mut self.mem.maps, &mut used, target, owner, &mut out);
            self.used = used;
        }
        if writes > 0 {
            self.spilled = true;
            if let Err(e) = batch.commit() {
                self.fail("write spilled state", e);
            }
            if let Err(e) = self.store.stall() {
                self.fail("write spilled state", e);
            }
        }
    }

    /// Marks `at` changed after `f` changed it, keeping the byte count.
    /// `f` changes the state and keeps its size (`Kind::size`) up to date
    /// by the change it made, so long lists and maps are not walked.
    fn write<V: Kind, R>(
        &mut self,
        pick: fn(&mut Mem) -> &mut Tables<V>,
        state: u32,
        at: Scope<'_>,
        f: impl FnOnce(&mut Option<V>, &mut usize) -> R,
    ) -> R {
        let ctx = (&self.store, self.owner, &self.on_disk, &mut self.used, &mut self.error, &mut self.changes);
        let s = Self::slot(pick(&mut self.mem), ctx, state, at);
        let before = s.size;
        if s.epoch <= self.changes.last {
            // Its first change since the last mark: what it held then.
            s.existed = s.v.is_some();
        }
        let r = f(&mut s.v, &mut s.size);
        if s.v.is_none() {
            s.size = 0;
        }
        s.dirty = true;
        s.epoch = self.changes.epoch;
        self.used = (self.used + s.size).saturating_sub(before);
        self.shrink();
        r
    }

    /// Reads `at` (from fjall on a miss).
    fn read<V: Kind, R>(
        &mut self,
        pick: fn(&mut Mem) -> &mut Tables<V>,
        state: u32,
        at: Scope<'_>,
        f: impl FnOnce(Option<&V>) -> R,
    ) -> R {
        if !self.spilled {
            // Nothing is in fjall: a miss is absent, and caching that
            // would only take room from real state.
            let m = pick(&mut self.mem).get_mut(state as usize);
            return match m.and_then(|m| probe!(m, get_mut, at)) {
                Some(s) => {
                    s.hot = true;
                    f(s.v.as_ref())
                }
                None => f(None),
            };
        }
        let ctx = (&self.store, self.owner, &self.on_disk, &mut self.used, &mut self.error, &mut self.changes);
        let s = Self::slot(pick(&mut self.mem), ctx, state, at);
        let r = f(s.v.as_ref());
        self.shrink();
        r
    }
}

/// `b` decoded, or `None` with the error set when it is malformed.
fn decoded<V: Kind>(b: &[u8], group: u16, error: &mut Option<StateError>) -> Option<V> {
    let v = V::decode(b);
    if v.is_none() && error.is_none() {
        *error = Some(StateError(format!(
            "the lsm state store holds a malformed entry ({} bytes) for a key of key group {group}; the state folder was changed or damaged",
            b.len(),
        )));
    }
    v
}

fn read_failed(e: fjall::Error, error: &mut Option<StateError>) {
    if error.is_none() {
        *error = Some(StateError(format!(
            "the lsm state store failed to read: {e}; check the disk holding the state folder"
        )));
    }
}

/// Entries read past the last wanted one of a key group by
/// [`LsmBackend::prefetch_values`]'s range scan: timers of one timestamp
/// fire in key order, so the next chunk of fired timers wants them.
const READ_AHEAD: usize = 64;

/// Reads the wanted value entries of state `state` (`want`: fjall keys of
/// one key group, sorted, none in memory, with their scopes) by one range
/// scan into `m`, and up to [`READ_AHEAD`] entries past the last one that
/// memory does not hold. Wanted keys the scan passes without finding are
/// absent and cached as such. The scan gives up when it skips more
/// unwanted entries than it wants; the keys it did not reach stay misses,
/// read one by one when used.
fn scan_into(
    keyspace: &fjall::Keyspace,
    m: &mut FastMap<Composite, Slot<Bytes>>,
    want: &[(Vec<u8>, Scope<'_>)],
    (used, error, changes, state): (&mut usize, &mut Option<StateError>, &Changes, u32),
) {
    // Hot, so the sweep that the next write makes spares them once (cold,
    // the read-ahead went before the next chunk of timers came to it).
    let mut put = |m: &mut FastMap<Composite, Slot<Bytes>>, c: Composite, v: Option<Bytes>| {
        let size = v.as_ref().map_or(0, Kind::size);
        *used += entry_size(&c, size);
        let (c, epoch, existed) = changes.read_back(Bytes::TAG, state, c, v.is_some());
        m.insert(c, Slot { existed, v, size, dirty: false, hot: true, epoch });
    };
    let (first, last) = (&want[0].0, &want[want.len() - 1].0);
    // Every fjall key of this (key group, owner, kind, state) starts so.
    let prefix = &first[..11];
    let (mut w, mut skipped, mut ahead, mut passed) = (0usize, 0usize, 0usize, 0usize);
    for guard in keyspace.range(first.as_slice()..) {
        let (k, v) = match guard.into_inner() {
            Ok(kv) => kv,
            Err(e) => return read_failed(e, error),
        };
        if !k.starts_with(prefix) {
            break;
        }
        while w < want.len() && want[w].0.as_slice() < &*k {
            put(m, composite(want[w].1), None);
            w += 1;
        }
        if w < want.len() {
            if want[w].0.as_slice() == &*k {
                let Some(value) = decoded::<Bytes>(&v, want[w].1.group, error) else { return };
                put(m, composite(want[w].1), Some(value));
                w += 1;
            } else {
                skipped += 1;
                if skipped > want.len() {
                    return;
                }
            }
            continue;
        }
        // Past the last wanted key: read ahead what memory lacks (and
        // step over at most as many entries it holds).
        if &*k > last.as_slice() {
            passed += 1;
            if ahead >= READ_AHEAD || passed > 2 * READ_AHEAD {
                break;
            }
            let Some((group, _, _, _, bytes)) = parse_db_key(&k) else { break };
            let (key, namespace) = split(bytes);
            let c = composite(Scope { group, key, namespace });
            if m.contains_key(&c) {
                continue;
            }
            let Some(value) = decoded::<Bytes>(&v, group, error) else { return };
            put(m, c, Some(value));
            ahead += 1;
        }
    }
    for &(_, at) in &want[w..] {
        put(m, composite(at), None);
    }
}

/// Where a sweep writes: the batch for `keyspace`, counting its writes
/// and noting the keys in the filter of what fjall holds.
struct Out<'a> {
    keyspace: &'a fjall::Keyspace,
    batch: &'a mut fjall::OwnedWriteBatch,
    writes: &'a mut usize,
    on_disk: &'a mut spilled::Spilled,
    changes: &'a mut Changes,
}

/// One CLOCK pass over `tables`: hot entries turn cold, cold ones are
/// written (when changed) and dropped, until `used` reaches `target`.
fn sweep<V: Kind>(tables: &mut Tables<V>, used: &mut usize, target: usize, owner: u32, out: &mut Out<'_>) {
    for (state, m) in tables.iter_mut().enumerate() {
        m.retain(|c, s| {
            if *used <= target {
                return true;
            }
            if s.hot {
                s.hot = false;
                return true;
            }
            let k = db_key(owner, V::TAG, state as u32, c);
            if k.len() > MAX_DB_KEY {
                return true;
            }
            out.changes.moved(V::TAG, state as u32, c, s.epoch, s.existed);
            if s.dirty {
                match &s.v {
                    Some(v) => {
                        out.on_disk.insert(&k);
                        out.batch.insert(out.keyspace, k, v.encode());
                    }
                    None => out.batch.remove(out.keyspace, k),
                }
                *out.writes += 1;
            }
            *used = used.saturating_sub(entry_size(c, s.size));
            false
        });
    }
}

/// Whether `changed_in` hands slot `s` out: it changed after `since`,
/// and holds state or held some at `since` (when that is the last mark,
/// `existed` says; else it may have).
fn handed_out<V>(s: &Slot<V>, since: u32, last: bool) -> bool {
    s.epoch > since && (s.v.is_some() || s.existed || !last)
}

/// Hands every entry of `tables` in `groups` changed after epoch `since`
/// to `visit`, as a reset and its pieces (`last`: `since` is the last
/// mark).
fn changed_in<V: Kind>(
    tables: &Tables<V>,
    groups: &RangeInclusive<u16>,
    (since, last): (u32, bool),
    visit: &mut dyn FnMut(Change<'_>),
) {
    for (state, m) in tables.iter().enumerate() {
        let state = state as u32;
        for (c, s) in m.iter().filter(|(c, s)| handed_out(s, since, last) && groups.contains(&c.group())) {
            let at = scope_of(c);
            reset_and_pieces(s.v.as_ref(), state, at, visit);
        }
    }
}

/// Hands entry `c` of state `state`, which changed after `since` and was
/// dropped from memory since, to `visit` as a reset and its pieces: from
/// memory when it was read back (unless `changed_in` handed it out
/// already), else from fjall; nothing when it holds no state and held
/// none at `since` (`existed`, known when `since` is the last mark).
fn moved_entry<V: Kind>(
    tables: &Tables<V>,
    (keyspace, owner): (&fjall::Keyspace, u32),
    (state, c, since, last, existed): (u32, &Composite, u32, bool, bool),
    error: &mut Option<StateError>,
    visit: &mut dyn FnMut(Change<'_>),
) {
    let at = scope_of(c);
    let held = tables.get(state as usize).and_then(|m| m.get(c));
    let read;
    let v = match held {
        Some(s) if handed_out(s, since, last) => return,
        Some(s) => s.v.as_ref(),
        None => {
            read = match keyspace.get(db_key(owner, V::TAG, state, c)) {
                Ok(None) => None,
                Ok(Some(b)) => decoded::<V>(&b, c.group(), error),
                Err(e) => {
                    read_failed(e, error);
                    None
                }
            };
            read.as_ref()
        }
    };
    if v.is_none() && last && !existed {
        return;
    }
    reset_and_pieces(v, state, at, visit);
}

/// A changed unit as a reset and its pieces; a value that is there needs
/// no reset (putting it replaces the old one).
fn reset_and_pieces<V: Kind>(v: Option<&V>, state: u32, at: Scope<'_>, visit: &mut dyn FnMut(Change<'_>)) {
    if v.is_none() || V::KIND != StateKind::Value {
        visit(Change::Reset { kind: V::KIND, state, at });
    }
    if let Some(v) = v {
        v.pieces(state, at, visit);
    }
}

fn values(m: &mut Mem) -> &mut Tables<Bytes> {
    &mut m.values
}

fn lists(m: &mut Mem) -> &mut Tables<Vec<Vec<u8>>> {
    &mut m.lists
}

fn maps(m: &mut Mem) -> &mut Tables<BTreeMap<Vec<u8>, Vec<u8>>> {
    &mut m.maps
}

impl KeyedStateBackend for LsmBackend {
    fn value_get(&mut self, state: u32, at: Scope<'_>, out: &mut Vec<u8>) -> bool {
        self.read(values, state, at, |v| v.map(|v| out.extend_from_slice(v.as_slice())).is_some())
    }

    fn value_put(&mut self, state: u32, at: Scope<'_>, value: &[u8]) {
        self.write(values, state, at, |v, size| {
            match v {
                Some(b) => b.set(value),
                None => *v = Some(Bytes::new(value)),
            }
            *size = value.len();
        });
    }

    fn value_clear(&mut self, state: u32, at: Scope<'_>) {
        self.write(values, state, at, |v, _| *v = None);
    }

    fn list_get(&mut self, state: u32, at: Scope<'_>, data: &mut Vec<u8>, ends: &mut Vec<u32>) {
        self.read(lists, state, at, |l| {
            if let Some(l) = l {
                push_items(l.iter().map(Vec::as_slice), data, ends);
            }
        });
    }

    fn list_add(&mut self, state: u32, at: Scope<'_>, element: &[u8]) {
        self.write(lists, state, at, |l, size| {
            l.get_or_insert_with(Vec::new).push(element.to_vec());
            *size += element.len() + ELEMENT;
        });
    }

    fn list_replace(&mut self, state: u32, at: Scope<'_>, data: &[u8], ends: &[u32]) {
        let items: Vec<Vec<u8>> = crate::memory::items(data, ends).map(<[u8]>::to_vec).collect();
        self.write(lists, state, at, |l, size| {
            *size = items.size();
            *l = (!items.is_empty()).then_some(items);
        });
    }

    fn list_clear(&mut self, state: u32, at: Scope<'_>) {
        self.write(lists, state, at, |l, _| *l = None);
    }

    fn map_get(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], out: &mut Vec<u8>) -> bool {
        self.read(maps, state, at, |m| m.and_then(|m| m.get(map_key)).map(|v| out.extend_from_slice(v)).is_some())
    }

    fn map_contains(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) -> bool {
        self.read(maps, state, at, |m| m.is_some_and(|m| m.contains_key(map_key)))
    }

    fn map_put(&mut self, state: u32, at: Scope<'_>, map_key: &[u8], value: &[u8]) {
        self.write(maps, state, at, |m, size| {
            let old = m.get_or_insert_with(BTreeMap::new).insert(map_key.to_vec(), value.to_vec());
            *size += value.len();
            match old {
                Some(old) => *size = size.saturating_sub(old.len()),
                None => *size += map_key.len() + OVERHEAD,
            }
        });
    }

    fn map_remove(&mut self, state: u32, at: Scope<'_>, map_key: &[u8]) {
        self.write(maps, state, at, |m, size| {
            if let Some(inner) = m {
                if let Some(old) = inner.remove(map_key) {
                    *size = size.saturating_sub(map_key.len() + old.len() + OVERHEAD);
                }
                if inner.is_empty() {
                    *m = None;
                }
            }
        });
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
        self.read(maps, state, at, |m| {
            if let Some(m) = m {
                let from = after.map_or(Bound::Unbounded, Bound::Excluded);
                let entries = m.range::<[u8], _>((from, Bound::Unbounded)).take(limit);
                push_items(entries.flat_map(|(k, v)| [k.as_slice(), v.as_slice()]), data, ends);
            }
        });
    }

    fn map_clear(&mut self, state: u32, at: Scope<'_>) {
        self.write(maps, state, at, |m, _| *m = None);
    }

    fn check(&mut self) -> Result<(), StateError> {
        match self.error.take().or_else(|| self.timers.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn prefetch_values(&mut self, state: u32, at: &[Scope<'_>]) {
        if !self.spilled || at.len() < 2 {
            return;
        }
        let i = state as usize;
        let tables = &mut self.mem.values;
        if tables.len() <= i {
            tables.resize_with(i + 1, FastMap::default);
        }
        let m = &mut tables[i];
        let mut want: Vec<(Vec<u8>, Scope<'_>)> = Vec::new();
        for &a in at {
            if probe!(m, get, a).is_some() {
                continue;
            }
            let k = db_key(self.owner, Bytes::TAG, state, &composite(a));
            if k.len() <= MAX_DB_KEY && self.on_disk.may_hold(&k) {
                want.push((k, a));
            }
        }
        want.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        want.dedup_by(|a, b| a.0 == b.0);
        let keyspace = &self.store.inner.state;
        // One scan per key group (the first two bytes of a fjall key).
        for group in want.chunk_by(|a, b| a.0[..2] == b.0[..2]) {
            if group.len() >= 2 {
                scan_into(keyspace, m, group, (&mut self.used, &mut self.error, &self.changes, state));
            }
        }
        // No sweep here: the entries just read are for the calls that
        // follow, whose writes sweep (one chunk's worth over the budget
        // until then); sweeping per state could drop one state's reads
        // for the next one's.
    }

    fn scan_groups(&mut self, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Piece<'_>)) {
        let mem = &self.mem;
        let in_mem = |tag: u8, state: u32, c: &Composite| -> bool {
            let i = state as usize;
            match tag {
                0 => mem.values.get(i).is_some_and(|m| m.contains_key(c)),
                1 => mem.lists.get(i).is_some_and(|m| m.contains_key(c)),
                _ => mem.maps.get(i).is_some_and(|m| m.contains_key(c)),
            }
        };
        each_in(&mem.values, &groups, |state, at, s| {
            if let Some(v) = &s.v {
                visit(Piece::Value { state, at, value: v.as_slice() });
            }
        });
        each_in(&mem.lists, &groups, |state, at, s| {
            for e in s.v.iter().flatten() {
                visit(Piece::List { state, at, element: e });
            }
        });
        each_in(&mem.maps, &groups, |state, at, s| {
            for (k, v) in s.v.iter().flatten() {
                visit(Piece::Map { state, at, map_key: k, value: v });
            }
        });
        if self.spilled {
            let mut failed = None;
            for guard in self.store.inner.state.range(group_range(&groups)) {
                let (k, v) = match guard.into_inner() {
                    Ok(kv) => kv,
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                };
                let Some((group, owner, tag, state, bytes)) = parse_db_key(&k) else { continue };
                if owner != self.owner || tag > 2 {
                    continue;
                }
                let (key, namespace) = split(bytes);
                let at = Scope { group, key, namespace };
                if in_mem(tag, state, &composite(at)) {
                    continue;
                }
                let ok = match tag {
                    0 => {
                        visit(Piece::Value { state, at, value: &v });
                        true
                    }
                    1 => decode_items(&v)
                        .map(|l| l.into_iter().for_each(|e| visit(Piece::List { state, at, element: e })))
                        .is_some(),
                    _ => match decode_items(&v) {
                        Some(items) if items.len() % 2 == 0 => {
                            for kv in items.chunks_exact(2) {
                                visit(Piece::Map { state, at, map_key: kv[0], value: kv[1] });
                            }
                            true
                        }
                        _ => false,
                    },
                };
                if !ok {
                    failed.get_or_insert_with(|| format!("a malformed entry of key group {group}"));
                }
            }
            if let Some(what) = failed {
                self.error.get_or_insert(StateError(format!(
                    "the lsm state store failed to read state: {what}; check the disk holding the state folder"
                )));
            }
        }
        self.timers.scan(groups, visit);
    }

    fn restore_hint(&mut self, pieces: usize) {
        self.hint = pieces;
    }

    /// A restored value goes into memory, one hash-table probe (a
    /// `value_put` takes three): it replaces whatever the key had, in
    /// memory or on disk. The first value state restored makes room for
    /// the announced pieces (up to half the budget) at once, and a large
    /// restore holds its values back to put them in in bucket order
    /// ([`Staging`]). A 38 M-key restore took 71 s through `value_put`.
    fn restore(&mut self, piece: Piece<'_>) {
        let Piece::Value { state, at, value } = piece else {
            return match piece {
                Piece::List { state, at, element } => self.list_add(state, at, element),
                Piece::Map { state, at, map_key, value } => self.map_put(state, at, map_key, value),
                Piece::Timer { domain, at, timestamp } => self.timer_register(domain, at, timestamp),
                Piece::Value { .. } => unreachable!("invariant: values are restored above"),
            };
        };
        let i = state as usize;
        let tables = &mut self.mem.values;
        if tables.len() <= i {
            tables.resize_with(i + 1, FastMap::default);
        }
        if self.hint > 0 && !self.sized {
            // At most half of what the budget has room for: the pieces
            // count other states, timers and other key groups too, and
            // room reserved is not counted in `used`.
            let fits = self.budget.saturating_sub(self.used) / (TABLE_ENTRY + 16) / 2;
            let room = self.hint.min(fits);
            tables[i].reserve(room);
            self.sized = true;
            if room >= STAGE_FROM {
                // Held back: at most the values room was made for, and
                // half the budget left in bytes; past that, what was held
                // goes in and the rest streams (and spills) as before.
                let bytes = self.budget.saturating_sub(self.used) / 2;
                self.staging = Some(Staging::new(state, &tables[i], room, (room, bytes)));
            }
        }
        if let Some(s) = &mut self.staging
            && s.state == state
        {
            if s.push(tables[i].hasher(), at, value) {
                return;
            }
            self.restore_end();
        }
        self.restore_value(state, composite(at), Bytes::new(value));
    }

    fn restore_end(&mut self) {
        if let Some(s) = self.staging.take() {
            let state = s.state;
            for (c, v) in s.drain() {
                self.restore_value(state, c, v);
            }
        }
    }

    fn cut(&mut self) -> Option<u64> {
        let mark = self.changes.epoch;
        self.changes.epoch = mark.checked_add(1)?;
        self.changes.tracking = true;
        self.changes.last = mark;
        // What an entry dropped since held at this mark is not known.
        self.changes.moved.values_mut().for_each(|m| m.1 = true);
        Some(u64::from(mark))
    }

    fn scan_changed(&mut self, since: u64, groups: RangeInclusive<u16>, visit: &mut dyn FnMut(Change<'_>)) -> bool {
        let ch = &mut self.changes;
        let Ok(since) = u32::try_from(since) else { return false };
        if !ch.tracking || since >= ch.epoch || since < ch.confirmed || ch.dropped > since {
            return false;
        }
        let mem = &self.mem;
        let last = since == ch.last;
        changed_in(&mem.values, &groups, (since, last), visit);
        changed_in(&mem.lists, &groups, (since, last), visit);
        changed_in(&mem.maps, &groups, (since, last), visit);
        let at = (&self.store.inner.state, self.owner);
        let moved = ch.moved.iter().filter(|(k, m)| m.0 > since && groups.contains(&k.2.group()));
        for ((tag, state, c), &(_, existed)) in moved {
            let (state, error) = ((*state, c, since, last, existed), &mut self.error);
            match tag {
                0 => moved_entry(&mem.values, at, state, error, visit),
                1 => moved_entry(&mem.lists, at, state, error, visit),
                _ => moved_entry(&mem.maps, at, state, error, visit),
            }
        }
        self.timers.scan(groups, &mut |p| visit(Change::Piece(p)));
        true
    }

    fn confirm(&mut self, mark: u64) {
        let ch = &mut self.changes;
        let Ok(mark) = u32::try_from(mark) else { return };
        if mark > ch.confirmed && mark < ch.epoch {
            ch.confirmed = mark;
            ch.moved.retain(|_, m| m.0 > mark);
        }
    }

    fn retain(&mut self, kind: StateKind, state: u32, keep: &mut dyn FnMut(&[u8]) -> bool) {
        /// Applies `f` (which returns the new size, or `None` when nothing
        /// changed) to every slot of `tables[state]`.
        fn each<V>(
            tables: &mut Tables<V>,
            state: u32,
            (used, epoch, last): (&mut usize, u32, u32),
            mut f: impl FnMut(&mut Option<V>) -> Option<usize>,
        ) {
            for s in tables.get_mut(state as usize).into_iter().flat_map(|m| m.values_mut()) {
                let held = s.v.is_some();
                if let Some(size) = f(&mut s.v) {
                    if s.epoch <= last {
                        s.existed = held;
                    }
                    *used = (*used + size).saturating_sub(s.size);
                    s.size = size;
                    s.dirty = true;
                    s.epoch = epoch;
                }
            }
        }
        let used = (&mut self.used, self.changes.epoch, self.changes.last);
        match kind {
            StateKind::Value => each(&mut self.mem.values, state, used, |v| {
                let gone = v.as_ref().is_some_and(|b| !keep(b.as_slice()));
                gone.then(|| {
                    *v = None;
                    0
                })
            }),
            StateKind::List => each(&mut self.mem.lists, state, used, |v| {
                let l = v.as_mut()?;
                let n = l.len();
                l.retain(|e| keep(e));
                if l.len() == n {
                    return None;
                }
                let size = l.size();
                if l.is_empty() {
                    *v = None;
                }
                Some(size)
            }),
            StateKind::Map => each(&mut self.mem.maps, state, used, |v| {
                let m = v.as_mut()?;
                let n = m.len();
                m.retain(|_, x| keep(x));
                if m.len() == n {
                    return None;
                }
                let size = m.size();
                if m.is_empty() {
                    *v = None;
                }
                Some(size)
            }),
        }
    }

    fn expire_on_disk(&mut self, ttls: &[(StateKind, u32, Ttl)], clock: &Clock) {
        if let Ok(mut registry) = self.store.inner.ttls.write() {
            for &(kind, state, ttl) in ttls {
                registry.insert((self.owner, kind as u8, state), (ttl.millis, clock.clone()));
            }
        }
    }

    fn drop_groups(&mut self, groups: RangeInclusive<u16>) {
        fn drop<V: Kind>(tables: &mut Tables<V>, groups: &RangeInclusive<u16>, used: &mut usize) {
            for m in tables.iter_mut() {
                m.retain(|c, s| {
                    let keep = !groups.contains(&c.group());
                    if !keep {
                        *used = used.saturating_sub(entry_size(c, s.size));
                    }
                    keep
                });
            }
        }
        self.changes.dropped = self.changes.epoch;
        drop(&mut self.mem.values, &groups, &mut self.used);
        drop(&mut self.mem.lists, &groups, &mut self.used);
        drop(&mut self.mem.maps, &groups, &mut self.used);
        if self.spilled {
            let mut batch = self.store.inner.db.batch();
            for guard in self.store.inner.state.range(group_range(&groups)) {
                match guard.key() {
                    Ok(k) => {
                        if parse_db_key(&k).is_some_and(|(_, owner, tag, ..)| owner == self.owner && tag <= 2) {
                            batch.remove(&self.store.inner.state, k);
                        }
                    }
                    Err(e) => return self.fail("read state to drop", e),
                }
            }
            if let Err(e) = batch.commit() {
                self.fail("drop state", e);
            }
        }
        self.timers.drop_groups(groups);
    }

    fn timer_register(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        self.timers.register(domain, at, timestamp);
        // Timers take at most a quarter of the budget; past it, the
        // latest of them go to fjall, down to an eighth.
        if self.timers.bytes() > self.budget / 4 {
            self.timers.spill();
        }
    }

    fn timer_delete(&mut self, domain: TimerDomain, at: Scope<'_>, timestamp: i64) {
        self.timers.delete(domain, at, timestamp);
    }

    fn timers_pending(&self) -> usize {
        self.timers.pending()
    }

    fn timers_in_memory(&self) -> usize {
        self.timers.in_memory()
    }

    fn next_timer(&self, domain: TimerDomain) -> Option<i64> {
        self.timers.next(domain)
    }

    fn pop_timers(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<Timer>) {
        self.timers.pop(domain, upto, limit, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;
    use proptest::prelude::*;

    /// One operation on both backends.
    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8, Vec<u8>),
        Clear(u8, u8),
        ListAdd(u8, Vec<u8>),
        ListClear(u8),
        MapPut(u8, u8, Vec<u8>),
        MapRemove(u8, u8),
        TimerAdd(u8, u8, i8, bool),
        TimerDelete(u8, u8, i8, bool),
        Pop(i8, u8, bool),
        Drop(u8, u8),
        /// Value state, first key, number of keys.
        Prefetch(u8, u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            4 => (0u8..2, 0u8..60, bytes.clone()).prop_map(|(s, k, v)| Op::Put(s, k, v)),
            1 => (0u8..2, 0u8..60).prop_map(|(s, k)| Op::Clear(s, k)),
            2 => (0u8..60, bytes.clone()).prop_map(|(k, v)| Op::ListAdd(k, v)),
            1 => (0u8..60).prop_map(Op::ListClear),
            2 => (0u8..60, 0u8..4, bytes).prop_map(|(k, m, v)| Op::MapPut(k, m, v)),
            1 => (0u8..60, 0u8..4).prop_map(|(k, m)| Op::MapRemove(k, m)),
            4 => (0u8..60, 0u8..3, any::<i8>(), any::<bool>()).prop_map(|(k, n, t, d)| Op::TimerAdd(k, n, t, d)),
            1 => (0u8..60, 0u8..3, any::<i8>(), any::<bool>()).prop_map(|(k, n, t, d)| Op::TimerDelete(k, n, t, d)),
            1 => (any::<i8>(), 1u8..20, any::<bool>()).prop_map(|(t, l, d)| Op::Pop(t, l, d)),
            1 => (0u8..7, 0u8..3).prop_map(|(g, n)| Op::Drop(g, n)),
            2 => (0u8..2, 0u8..60, 2u8..30).prop_map(|(s, k, n)| Op::Prefetch(s, k, n)),
        ]
    }

    /// Keys of several lengths (inline and heap composites), some with a
    /// namespace; the key group follows the key, as the router makes it.
    fn scope(k: &[u8; 2], buf: &mut Vec<u8>) -> (u16, usize) {
        buf.clear();
        buf.extend(std::iter::repeat_n(k[0], 1 + k[0] as usize % 30));
        (u16::from(k[0]) % 7, k[0] as usize % 3)
    }

    /// Per key and value state: the value (prefixed by 1 when present),
    /// the list, its ends and the map's entries with their ends.
    type Seen = (u8, Vec<u8>, Vec<u8>, Vec<u32>, Vec<u8>);

    fn read_all(b: &mut dyn KeyedStateBackend) -> Vec<Seen> {
        let mut out = Vec::new();
        let mut key = Vec::new();
        for k in 0u8..60 {
            let (group, ns) = scope(&[k, 0], &mut key);
            let namespace = &b"ns"[..ns.min(2)];
            let at = Scope { group, key: &key, namespace };
            for s in 0..2 {
                let mut v = Vec::new();
                let found = b.value_get(s, at, &mut v);
                let (mut data, mut ends) = (Vec::new(), Vec::new());
                b.list_get(0, at, &mut data, &mut ends);
                let (mut mdata, mut mends) = (Vec::new(), Vec::new());
                b.map_scan(0, at, None, usize::MAX, &mut mdata, &mut mends);
                if found {
                    v.insert(0, 1);
                }
                mdata.extend(mends.iter().flat_map(|e| e.to_le_bytes()));
                out.push((k, v, data, ends, mdata));
            }
        }
        out
    }

    /// Every piece `scan_groups` hands out for `groups`, sorted.
    fn scan_all(b: &mut dyn KeyedStateBackend, groups: RangeInclusive<u16>) -> Vec<String> {
        let mut out = Vec::new();
        b.scan_groups(groups, &mut |p| out.push(format!("{p:?}")));
        // (`read_all` checks the order of list elements.)
        out.sort();
        out
    }

    /// Applies `op` to `b`, timers it pops going to `popped`.
    fn apply(b: &mut dyn KeyedStateBackend, op: &Op, popped: &mut Vec<Timer>) {
        let mut key = Vec::new();
        let k = match op {
            Op::Put(_, k, _)
            | Op::Clear(_, k)
            | Op::ListAdd(k, _)
            | Op::ListClear(k)
            | Op::MapPut(k, _, _)
            | Op::MapRemove(k, _) => *k,
            Op::TimerAdd(k, ..) | Op::TimerDelete(k, ..) => *k,
            Op::Pop(..) | Op::Drop(..) | Op::Prefetch(..) => 0,
        };
        let (group, ns) = scope(&[k, 0], &mut key);
        let at = Scope { group, key: &key, namespace: &b"ns"[..ns.min(2)] };
        let domain = |d: bool| if d { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
        match op {
            Op::Put(s, _, v) => b.value_put(u32::from(*s), at, v),
            Op::Clear(s, _) => b.value_clear(u32::from(*s), at),
            Op::ListAdd(_, v) => b.list_add(0, at, v),
            Op::ListClear(_) => b.list_clear(0, at),
            Op::MapPut(_, m, v) => b.map_put(0, at, &[*m], v),
            Op::MapRemove(_, m) => b.map_remove(0, at, &[*m]),
            Op::TimerAdd(_, n, t, d) => {
                let at = Scope { namespace: &b"ab"[..usize::from(*n)], ..at };
                b.timer_register(domain(*d), at, i64::from(*t));
            }
            Op::TimerDelete(_, n, t, d) => {
                let at = Scope { namespace: &b"ab"[..usize::from(*n)], ..at };
                b.timer_delete(domain(*d), at, i64::from(*t));
            }
            Op::Pop(t, l, d) => b.pop_timers(domain(*d), i64::from(*t), usize::from(*l), popped),
            Op::Drop(g, n) => b.drop_groups(u16::from(*g)..=u16::from(*g + *n)),
            Op::Prefetch(s, first, n) => {
                let keys: Vec<(u16, usize, Vec<u8>)> = (*first..first.saturating_add(*n))
                    .map(|k| {
                        let mut buf = Vec::new();
                        let (group, ns) = scope(&[k, 0], &mut buf);
                        (group, ns, buf)
                    })
                    .collect();
                let at: Vec<Scope<'_>> = keys
                    .iter()
                    .map(|(group, ns, key)| Scope { group: *group, key, namespace: &b"ns"[..(*ns).min(2)] })
                    .collect();
                b.prefetch_values(u32::from(*s), &at);
            }
        }
    }

    /// A [`Change`] owned: (reset kind or `None` for a piece, state or
    /// timer domain, group, key, namespace, bytes, map key).
    type Owned = (Option<StateKind>, u32, u16, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, u8);

    fn own(c: Change<'_>) -> Owned {
        let o = |at: Scope<'_>| (at.group, at.key.to_vec(), at.namespace.to_vec());
        match c {
            Change::Reset { kind, state, at } => {
                let (g, k, n) = o(at);
                (Some(kind), state, g, k, n, Vec::new(), Vec::new(), 0)
            }
            Change::Piece(Piece::Value { state, at, value }) => {
                let (g, k, n) = o(at);
                (None, state, g, k, n, value.to_vec(), Vec::new(), 0)
            }
            Change::Piece(Piece::List { state, at, element }) => {
                let (g, k, n) = o(at);
                (None, state, g, k, n, element.to_vec(), Vec::new(), 1)
            }
            Change::Piece(Piece::Map { state, at, map_key, value }) => {
                let (g, k, n) = o(at);
                (None, state, g, k, n, value.to_vec(), map_key.to_vec(), 2)
            }
            Change::Piece(Piece::Timer { domain, at, timestamp }) => {
                let (g, k, n) = o(at);
                (None, domain as u32, g, k, n, timestamp.to_le_bytes().to_vec(), Vec::new(), 3)
            }
        }
    }

    /// Restores a chain of snapshots (a full one, then changes) into a
    /// memory backend: resets clear, timers come from the last one only.
    fn rebuild(chain: &[Vec<Owned>]) -> MemoryBackend {
        let mut b = MemoryBackend::new();
        for (i, file) in chain.iter().enumerate() {
            for (reset, state, group, key, ns, bytes, map_key, tag) in file {
                let at = Scope { group: *group, key, namespace: ns };
                match (reset, tag) {
                    (Some(StateKind::Value), _) => b.value_clear(*state, at),
                    (Some(StateKind::List), _) => b.list_clear(*state, at),
                    (Some(StateKind::Map), _) => b.map_clear(*state, at),
                    (None, 0) => b.restore(Piece::Value { state: *state, at, value: bytes }),
                    (None, 1) => b.restore(Piece::List { state: *state, at, element: bytes }),
                    (None, 2) => b.restore(Piece::Map { state: *state, at, map_key, value: bytes }),
                    (None, _) if i + 1 == chain.len() => {
                        let domain = if *state == 0 { TimerDomain::EventTime } else { TimerDomain::ProcessingTime };
                        let timestamp = i64::from_le_bytes(bytes.as_slice().try_into().unwrap());
                        b.restore(Piece::Timer { domain, at, timestamp });
                    }
                    (None, _) => {}
                }
            }
            b.restore_end();
        }
        b
    }

    /// Cases of the chain proptest: 96, or `PROPTEST_CASES` (its long
    /// form: 2,000 found a lost reset that 24 did not).
    fn chain_cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: chain_cases(), ..ProptestConfig::default() })]

        /// Snapshots taken every few operations, each the changes since
        /// the last confirmed mark (a full one first, and after state was
        /// dropped), rebuild exactly what the backend holds, spilled or
        /// not, whichever marks get confirmed (a checkpoint that completed)
        /// and whichever not (one that failed).
        #[test]
        fn changes_since_the_confirmed_mark_rebuild_the_state(
            ops in proptest::collection::vec(op(), 1..400),
            every in 5usize..40,
            confirms in proptest::collection::vec(any::<bool>(), 40),
            budget in prop_oneof![Just(0usize), Just(600), Just(4000), Just(1 << 30)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
            let mut lsm = store.backend(budget);
            // The confirmed mark and the chain of snapshots it stands for.
            let mut base: Option<(u64, Vec<Vec<Owned>>)> = None;
            let mut popped = Vec::new();
            for (round, chunk) in ops.chunks(every).enumerate() {
                for op in chunk {
                    apply(&mut lsm, op, &mut popped);
                }
                let mut file = Vec::new();
                let delta = base.as_ref().is_some_and(|(mark, _)| {
                    lsm.scan_changed(*mark, 0..=u16::MAX, &mut |c| file.push(own(c)))
                });
                if !delta {
                    prop_assert!(file.is_empty(), "a refused diff visits nothing");
                    lsm.scan_groups(0..=u16::MAX, &mut |p| file.push(own(Change::Piece(p))));
                }
                let mark = lsm.cut().unwrap();
                let mut chain = if delta { base.clone().unwrap().1 } else { Vec::new() };
                chain.push(file);
                let mut rebuilt = rebuild(&chain);
                prop_assert_eq!(scan_all(&mut rebuilt, 0..=u16::MAX), scan_all(&mut lsm, 0..=u16::MAX));
                prop_assert!(lsm.check().is_ok());
                if confirms[round % confirms.len()] {
                    lsm.confirm(mark);
                    base = Some((mark, chain));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// With a budget far below the state, entries go to fjall and come
        /// back: every read agrees with the memory backend, during the run
        /// and at the end.
        #[test]
        fn an_lsm_backend_over_budget_reads_what_a_memory_backend_holds(
            ops in proptest::collection::vec(op(), 1..400),
            budget in prop_oneof![Just(0usize), Just(600), Just(4000), Just(1 << 30)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
            let mut lsm = store.backend(budget);
            let mut mem = MemoryBackend::new();
            for (i, op) in ops.iter().enumerate() {
                let mut popped = [Vec::new(), Vec::new()];
                apply(&mut lsm, op, &mut popped[0]);
                apply(&mut mem, op, &mut popped[1]);
                prop_assert_eq!(&popped[0], &popped[1], "timers fire in the same order");
                prop_assert_eq!(lsm.next_timer(TimerDomain::EventTime), mem.next_timer(TimerDomain::EventTime));
                prop_assert_eq!(lsm.next_timer(TimerDomain::ProcessingTime), mem.next_timer(TimerDomain::ProcessingTime));
                if i % 50 == 0 {
                    prop_assert_eq!(read_all(&mut lsm), read_all(&mut mem));
                    prop_assert_eq!(scan_all(&mut lsm, 2..=4), scan_all(&mut mem, 2..=4));
                }
            }
            prop_assert_eq!(read_all(&mut lsm), read_all(&mut mem));
            prop_assert_eq!(scan_all(&mut lsm, 0..=u16::MAX), scan_all(&mut mem, 0..=u16::MAX));
            prop_assert!(lsm.timers_pending() >= mem.timers_pending(), "spilled timers are counted");
            let mut all = [Vec::new(), Vec::new()];
            for d in [TimerDomain::EventTime, TimerDomain::ProcessingTime] {
                lsm.pop_timers(d, i64::MAX, usize::MAX, &mut all[0]);
                mem.pop_timers(d, i64::MAX, usize::MAX, &mut all[1]);
            }
            prop_assert_eq!(&all[0], &all[1], "every timer, spilled or not, fires in order");
            prop_assert_eq!(lsm.timers_pending(), 0);
            prop_assert!(lsm.check().is_ok());
            prop_assert_eq!(lsm.used(), lsm.recount(), "the byte count kept per change matches a recount");
            if budget == 0 {
                prop_assert!(lsm.entries_in_memory() <= 1, "a zero budget keeps at most the entry in use");
            }
        }
    }

    /// A restore large enough to be staged (`memory::Staging`) ends with
    /// every value of every form in place, a later piece of a key
    /// replacing an earlier one, and the next file's resets and values
    /// applied after it: into the memory backend, into `lsm` in memory,
    /// and into `lsm` spilling while the staged values go in.
    #[test]
    fn a_staged_restore_keeps_every_value_and_the_order_of_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        let n = crate::memory::STAGE_FROM + 4_000;
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| match i % 10 {
                0 => format!("a long key of more than twenty bytes {i}").into_bytes(),
                _ => format!("k{i}").into_bytes(),
            })
            .collect();
        let at = |i: usize| {
            let namespace: &[u8] = if i.is_multiple_of(7) { b"window-0123456789" } else { b"" };
            Scope { group: (i % 128) as u16, key: &keys[i], namespace }
        };
        let value = |i: usize, round: u8| [&[round][..], &i.to_le_bytes(), &[7u8; 200]].concat();
        let mut backends: Vec<Box<dyn KeyedStateBackend>> =
            // (The two small budgets hold back only part of the ~18 MB
            // of values: they put what they held and stream the rest.)
            vec![
                Box::new(MemoryBackend::new()),
                Box::new(store.backend(1 << 30)),
                Box::new(store.backend(17 << 20)),
                Box::new(store.backend(10 << 20)),
            ];
        for b in &mut backends {
            // The first file: every key, a tenth of them twice (the later
            // piece wins), and another value state between them.
            b.restore_hint(n + n / 10 + 100);
            for i in 0..n {
                b.restore(Piece::Value { state: 0, at: at(i), value: &value(i, 1) });
                if i % 10 == 3 {
                    b.restore(Piece::Value { state: 0, at: at(i - 3), value: &value(i - 3, 2) });
                }
                if i % 1000 == 0 {
                    b.restore(Piece::Value { state: 1, at: at(i), value: b"other" });
                }
            }
            b.restore_end();
            // The next file: a reset, a reset then a value, a new value.
            b.restore_hint(3);
            b.value_clear(0, at(1));
            b.value_clear(0, at(2));
            b.restore(Piece::Value { state: 0, at: at(2), value: &value(2, 3) });
            b.restore(Piece::Value { state: 0, at: at(4), value: &value(4, 3) });
            b.restore_end();
            b.check().unwrap();
        }
        for (which, b) in backends.iter_mut().enumerate() {
            let mut out = Vec::new();
            for i in 0..n {
                out.clear();
                let round = match i {
                    1 => None,
                    2 | 4 => Some(3),
                    _ if i % 10 == 0 => Some(2),
                    _ => Some(1),
                };
                let found = b.value_get(0, at(i), &mut out);
                assert_eq!(
                    found.then_some(out.as_slice()),
                    round.map(|r| value(i, r)).as_deref(),
                    "backend {which}, key {i}"
                );
            }
            for i in (0..n).step_by(1000) {
                out.clear();
                assert!(b.value_get(1, at(i), &mut out) && out == b"other", "backend {which}, state 1, key {i}");
            }
        }
    }

    #[test]
    fn changes_since_a_mark_are_only_what_changed_in_memory_or_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        for budget in [0, 1 << 30] {
            let mut b = store.backend(budget);
            let keys: Vec<[u8; 4]> = (0u32..200).map(|k| k.to_be_bytes()).collect();
            for k in &keys {
                b.value_put(0, Scope::key(u16::from(k[3] % 4), k), b"v0");
            }
            assert!(!b.scan_changed(1, 0..=u16::MAX, &mut |_| {}), "no mark yet");
            let first = b.cut().unwrap();
            b.confirm(first);
            b.value_put(0, Scope::key(u16::from(keys[7][3] % 4), &keys[7]), b"v1");
            b.value_clear(0, Scope::key(u16::from(keys[9][3] % 4), &keys[9]));
            let mut out = Vec::new();
            assert!(b.value_get(0, Scope::key(u16::from(keys[11][3] % 4), &keys[11]), &mut out), "a read is no change");
            let mut seen = Vec::new();
            assert!(b.scan_changed(first, 0..=u16::MAX, &mut |c| seen.push(format!("{c:?}"))));
            seen.sort();
            assert_eq!(seen.len(), 2, "budget {budget}: {seen:?}");
            assert!(seen.iter().filter(|c| c.starts_with("Reset")).count() == 1, "a put value needs none: {seen:?}");
            let second = b.cut().unwrap();
            let mut again = 0;
            assert!(b.scan_changed(second, 0..=u16::MAX, &mut |_| again += 1));
            assert_eq!(again, 0, "nothing changed since the second mark");
            b.confirm(second);
            assert!(!b.scan_changed(first, 0..=u16::MAX, &mut |_| {}), "a mark older than the confirmed one");
        }
    }

    #[test]
    fn a_unit_cleared_spilled_read_back_and_cleared_again_is_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        let mut b = store.backend(0);
        let at = Scope::key(2, b"k");
        b.value_put(0, at, b"v");
        b.list_add(0, at, b"e");
        let mark = b.cut().unwrap();
        b.confirm(mark);
        // A zero budget spills each entry as soon as another is touched.
        for _ in 0..2 {
            b.value_clear(0, at);
            b.list_clear(0, at);
            b.value_put(0, Scope::key(3, b"other"), b"x");
        }
        let mut resets = Vec::new();
        assert!(b.scan_changed(mark, 2..=2, &mut |c| resets.push(format!("{c:?}"))));
        assert_eq!(resets.len(), 2, "the value and the list that were there at the mark go: {resets:?}");
    }

    #[test]
    fn changes_kept_past_their_limit_are_given_up_for_a_full_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        let mut b = store.backend(0);
        let mark = b.cut().unwrap();
        for k in 0u32..70_000 {
            b.value_put(0, Scope::key((k % 8) as u16, &k.to_be_bytes()), b"v");
        }
        assert!(!b.scan_changed(mark, 0..=u16::MAX, &mut |_| {}), "more spilled changes than kept: take a full one");
        let next = b.cut().unwrap();
        b.value_put(0, Scope::key(1, b"x"), b"v");
        let mut n = 0;
        assert!(b.scan_changed(next, 0..=u16::MAX, &mut |_| n += 1), "later marks work again");
        assert_eq!(n, 1);
    }

    #[test]
    fn a_spilled_entry_is_read_back_and_a_cleared_one_stays_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        let mut b = store.backend(0);
        let at = |k: &'static [u8]| Scope::key(3, k);
        b.value_put(0, at(b"a"), b"1");
        b.value_put(0, at(b"b"), b"2");
        b.list_add(0, at(b"a"), b"x");
        b.map_put(0, at(b"a"), b"k", b"v");
        assert!(b.entries_in_memory() <= 1, "a zero budget spills at once");
        let mut out = Vec::new();
        assert!(b.value_get(0, at(b"a"), &mut out));
        assert_eq!(out, b"1");
        b.value_clear(0, at(b"a"));
        b.value_put(0, at(b"c"), b"3");
        b.value_put(0, at(b"d"), b"4");
        out.clear();
        assert!(!b.value_get(0, at(b"a"), &mut out), "the clear reached fjall");
        let mut v = Vec::new();
        assert!(b.map_get(0, at(b"a"), b"k", &mut v));
        assert_eq!(v, b"v");
        // Another backend of the same store sees none of it.
        let mut other = store.backend(0);
        assert!(!other.value_get(0, at(b"b"), &mut out));
    }

    #[test]
    fn a_key_too_long_for_fjall_stays_in_memory_instead_of_crashing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LsmStore::open(dir.path(), false, 1 << 20).unwrap();
        let mut b = store.backend(0);
        let long = vec![7u8; 70_000];
        b.value_put(0, Scope::key(1, &long), b"big");
        b.list_add(0, Scope::key(1, &long), b"x");
        for k in 0u8..10 {
            b.value_put(0, Scope::key(2, &[k]), b"small");
        }
        let mut out = Vec::new();
        assert!(b.value_get(0, Scope::key(1, &long), &mut out));
        assert_eq!(out, b"big");
        assert!(b.check().is_ok());
    }

    #[test]
    fn items_round_trip_and_garbage_is_refused() {
        let l: Vec<Vec<u8>> = vec![b"ab".to_vec(), Vec::new(), b"c".to_vec()];
        assert_eq!(<Vec<Vec<u8>> as Kind>::decode(&l.encode()), Some(l));
        assert_eq!(<Vec<Vec<u8>> as Kind>::decode(b"\x05\x00"), None);
        assert_eq!(<Vec<Vec<u8>> as Kind>::decode(b"\x01\x00\x00\x00\x09\x00\x00\x00ab"), None);
        let m: BTreeMap<Vec<u8>, Vec<u8>> = [(b"k".to_vec(), b"v".to_vec())].into();
        assert_eq!(<BTreeMap<Vec<u8>, Vec<u8>> as Kind>::decode(&m.encode()), Some(m));
    }
}
