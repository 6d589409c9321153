//! The timers of one call into a component, as a pure state machine.
//!
//! The host pops the timers it fires before the call (`on-timers`), and
//! fires a watermark's timers by itself only where none registered in the
//! same call is due (`process-batch` marks). So inside one call the guest
//! must keep Flink's rules: every timer fires once, in (timestamp, key)
//! order; a timer registered while it is still waiting in the call's list
//! is the same timer (registering it again does nothing, deleting it skips
//! it, deleting and registering it again fires it once at its place); a
//! timer registered after its own firing is a new one; event-time timers
//! registered during the call fire in the same call when the watermark has
//! passed them and they come before the next timer of the list.
//!
//! What is left for the host is a list of changes ([`TimerChange`]), in
//! order: timers of the call's list are never in it (the host already
//! popped them), and a timer fired inside the call appears as registered,
//! then deleted.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use crate::TimeDomain;
use std::collections::{BTreeSet, HashMap};

/// A change of the host's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerChange {
    pub slot: u32,
    pub timestamp: i64,
    pub domain: TimeDomain,
    pub delete: bool,
}

/// A timer to fire now: its key slot and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub slot: u32,
    pub timestamp: i64,
    pub domain: TimeDomain,
    /// Index in the call's list, `None` for a timer registered in the call.
    pub listed: Option<usize>,
}

/// The timers of one call.
#[derive(Debug, Default)]
pub(crate) struct CallTimers {
    /// The call's list: (timestamp, slot, domain), in firing order.
    listed: Vec<(i64, u32, TimeDomain)>,
    /// Timers of the list from this index on have not fired yet.
    next: usize,
    /// Per listed timer: deleted while it waited.
    deleted: Vec<bool>,
    /// Listed timers by (slot, timestamp, domain).
    index: HashMap<(u32, i64, TimeDomain), usize>,
    /// Event-time timers registered in this call and not fired:
    /// (timestamp, key, namespace, slot), so they pop in (timestamp, key,
    /// namespace) order, as the host's queue does.
    local: BTreeSet<(i64, Vec<u8>, Vec<u8>, u32)>,
    /// What the host must apply after the call.
    pub changes: Vec<TimerChange>,
}

impl CallTimers {
    /// The timers of a call that fires `listed` (empty for a batch call).
    pub fn new(listed: Vec<(i64, u32, TimeDomain)>) -> Self {
        let index = listed.iter().enumerate().map(|(i, &(ts, slot, d))| ((slot, ts, d), i)).collect();
        let deleted = vec![false; listed.len()];
        CallTimers { listed, next: 0, deleted, index, local: BTreeSet::new(), changes: Vec::new() }
    }

    fn waiting(&self, slot: u32, timestamp: i64, domain: TimeDomain) -> Option<usize> {
        self.index.get(&(slot, timestamp, domain)).copied().filter(|&i| i >= self.next)
    }

    /// Registers a timer of key `key` and namespace `namespace` (in slot
    /// `slot`).
    pub fn register(&mut self, slot: u32, key: &[u8], namespace: &[u8], timestamp: i64, domain: TimeDomain) {
        if let Some(i) = self.waiting(slot, timestamp, domain) {
            self.deleted[i] = false;
            return;
        }
        if domain == TimeDomain::EventTime {
            self.local.insert((timestamp, key.to_vec(), namespace.to_vec(), slot));
        }
        self.changes.push(TimerChange { slot, timestamp, domain, delete: false });
    }

    /// Deletes a timer of key `key` and namespace `namespace` (in slot
    /// `slot`).
    pub fn delete(&mut self, slot: u32, key: &[u8], namespace: &[u8], timestamp: i64, domain: TimeDomain) {
        if let Some(i) = self.waiting(slot, timestamp, domain) {
            self.deleted[i] = true;
            return;
        }
        if domain == TimeDomain::EventTime {
            self.local.remove(&(timestamp, key.to_vec(), namespace.to_vec(), slot));
        }
        self.changes.push(TimerChange { slot, timestamp, domain, delete: true });
    }

    /// The next event-time timer registered in this call that the
    /// watermark `upto` has passed and that comes before `before`
    /// (timestamp, key and namespace of the next listed timer), taken out.
    pub fn pop_local(&mut self, upto: i64, before: Option<(i64, &[u8], &[u8])>) -> Option<Due> {
        let (ts, key, namespace, _) = self.local.first()?;
        if *ts > upto || before.is_some_and(|b| (*ts, key.as_slice(), namespace.as_slice()) >= b) {
            return None;
        }
        let (timestamp, _, _, slot) = self.local.pop_first().expect("invariant: first() just returned an element");
        self.changes.push(TimerChange { slot, timestamp, domain: TimeDomain::EventTime, delete: true });
        Some(Due { slot, timestamp, domain: TimeDomain::EventTime, listed: None })
    }

    /// The next timer of the call's list, if any: `(index, timer)`.
    pub fn peek_listed(&self) -> Option<(usize, Due)> {
        let &(timestamp, slot, domain) = self.listed.get(self.next)?;
        Some((self.next, Due { slot, timestamp, domain, listed: Some(self.next) }))
    }

    /// Takes the next listed timer; `Some` when it is still to fire (not
    /// deleted while it waited).
    pub fn take_listed(&mut self) -> Option<Due> {
        let (i, due) = self.peek_listed()?;
        self.next = i + 1;
        (!self.deleted[i]).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimeDomain::EventTime as E;

    #[test]
    fn re_registering_a_waiting_timer_does_not_fire_it_twice() {
        let mut t = CallTimers::new(vec![(10, 0, E), (20, 1, E)]);
        assert_eq!(t.take_listed().map(|d| d.timestamp), Some(10));
        // The callback of (10, a) registers (20, b) again: it is waiting.
        t.register(1, b"b", b"", 20, E);
        assert_eq!(t.pop_local(100, Some((20, b"b", b""))), None);
        assert_eq!(t.take_listed().map(|d| d.timestamp), Some(20));
        assert!(t.changes.is_empty(), "nothing for the host: it popped both");
    }

    #[test]
    fn a_deleted_waiting_timer_is_skipped_and_re_registering_restores_it() {
        let mut t = CallTimers::new(vec![(10, 0, E), (20, 1, E), (30, 2, E)]);
        t.take_listed();
        t.delete(1, b"b", b"", 20, E);
        t.delete(2, b"c", b"", 30, E);
        t.register(2, b"c", b"", 30, E);
        assert_eq!(t.take_listed(), None, "(20, b) was deleted");
        assert_eq!(t.take_listed().map(|d| d.timestamp), Some(30), "(30, c) fires once, at its place");
        assert_eq!(t.take_listed(), None);
        assert!(t.changes.is_empty());
    }

    #[test]
    fn a_timer_registered_after_its_own_firing_is_new() {
        let mut t = CallTimers::new(vec![(10, 0, E), (20, 1, E)]);
        t.take_listed();
        t.register(0, b"a", b"", 10, E);
        let due = t.pop_local(100, Some((20, b"b", b""))).unwrap();
        assert_eq!((due.slot, due.timestamp, due.listed), (0, 10, None));
        assert_eq!(
            t.changes,
            vec![
                TimerChange { slot: 0, timestamp: 10, domain: E, delete: false },
                TimerChange { slot: 0, timestamp: 10, domain: E, delete: true }
            ]
        );
    }

    #[test]
    fn local_timers_fire_in_timestamp_then_key_order_before_the_next_listed() {
        let mut t = CallTimers::new(vec![(5, 0, E), (20, 1, E)]);
        t.take_listed();
        t.register(2, b"z", b"", 15, E);
        t.register(3, b"a", b"", 15, E);
        t.register(4, b"c", b"", 20, E);
        t.register(5, b"a", b"", 20, E);
        let order: Vec<u32> = std::iter::from_fn(|| t.pop_local(100, Some((20, b"b", b"")))).map(|d| d.slot).collect();
        assert_eq!(order, vec![3, 2, 5], "(15,a), (15,z), (20,a) come before (20,b); (20,c) after it");
        assert_eq!(t.take_listed().map(|d| d.slot), Some(1));
        assert_eq!(t.pop_local(19, None), None, "the watermark has not passed (20, c)");
        assert_eq!(t.pop_local(20, None).map(|d| d.slot), Some(4));
    }

    #[test]
    fn local_timers_of_one_key_fire_in_namespace_order() {
        let mut t = CallTimers::new(vec![]);
        t.register(0, b"k", b"w2", 10, E);
        t.register(1, b"k", b"w1", 10, E);
        t.register(2, b"j", b"w9", 10, E);
        let order: Vec<u32> = std::iter::from_fn(|| t.pop_local(10, None)).map(|d| d.slot).collect();
        assert_eq!(order, vec![2, 1, 0], "(timestamp, key, namespace), not the order of registration");
        t.register(3, b"k", b"w3", 20, E);
        assert_eq!(t.pop_local(30, Some((20, b"k", b"w3"))), None, "a listed timer of the same place comes first");
    }
}
