//! # weir-state — keyed state and timers of one operator subtask
//!
//! Owns the [`KeyedStateBackend`] trait (value, list and map state scoped to
//! a state id and a key; event- and processing-time timers, one per key and
//! timestamp) and its backends: [`MemoryBackend`] now, the LSM backend
//! later. Knows nothing about Wasm, operators or the network; state ids
//! are assigned by the runtime from the operator's declared state names.
#![warn(missing_docs)]

mod memory;

pub use memory::MemoryBackend;

/// The time domain of a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerDomain {
    /// Fires on watermarks.
    EventTime,
    /// Fires on the wall clock.
    ProcessingTime,
}

/// Keyed state and timers of one operator subtask. Reads append to
/// caller-owned buffers so the hot path allocates nothing.
pub trait KeyedStateBackend: Send {
    /// Appends the value of `(state, key)` to `out`; false when absent.
    fn value_get(&self, state: u32, key: &[u8], out: &mut Vec<u8>) -> bool;
    /// Sets the value of `(state, key)`.
    fn value_put(&mut self, state: u32, key: &[u8], value: &[u8]);
    /// Removes the value of `(state, key)`.
    fn value_clear(&mut self, state: u32, key: &[u8]);

    /// Appends the list's elements to `data`, pushing each element's end
    /// (relative to `data`'s length at the call) to `ends`.
    fn list_get(&self, state: u32, key: &[u8], data: &mut Vec<u8>, ends: &mut Vec<u32>);
    /// Appends an element to the list.
    fn list_add(&mut self, state: u32, key: &[u8], element: &[u8]);
    /// Replaces the list with the elements `data` split at `ends`.
    fn list_replace(&mut self, state: u32, key: &[u8], data: &[u8], ends: &[u32]);
    /// Removes the list.
    fn list_clear(&mut self, state: u32, key: &[u8]);

    /// Appends the map's value under `map_key` to `out`; false when absent.
    fn map_get(&self, state: u32, key: &[u8], map_key: &[u8], out: &mut Vec<u8>) -> bool;
    /// Puts a map entry.
    fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]);
    /// Removes a map entry.
    fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]);
    /// Appends all entries, key then value, in map-key order (see `list_get`).
    fn map_entries(&self, state: u32, key: &[u8], data: &mut Vec<u8>, ends: &mut Vec<u32>);
    /// Removes the whole map.
    fn map_clear(&mut self, state: u32, key: &[u8]);

    /// Registers a timer; registering one that exists does nothing.
    fn timer_register(&mut self, domain: TimerDomain, key: &[u8], timestamp: i64);
    /// Deletes a timer if it exists.
    fn timer_delete(&mut self, domain: TimerDomain, key: &[u8], timestamp: i64);
    /// Number of timers held, both domains.
    fn timers_pending(&self) -> usize;
    /// The earliest timer of `domain`.
    fn next_timer(&self, domain: TimerDomain) -> Option<i64>;
    /// Removes up to `limit` timers of `domain` at or before `upto`,
    /// earliest first, appending `(timestamp, key)` to `out`.
    fn pop_timers(&mut self, domain: TimerDomain, upto: i64, limit: usize, out: &mut Vec<(i64, Vec<u8>)>);
}
