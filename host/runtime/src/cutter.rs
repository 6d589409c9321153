//! The timer cutter, as a pure state machine: how a keyed operator splits
//! one batch into guest calls so that timers fire exactly where Flink
//! fires them.
//!
//! A watermark (mark) at which a timer the host holds is due must be
//! handled by the host: the call ends there, the host fires the due
//! timers, and the next call starts after the mark. Marks at which no held
//! timer is due stay inside the call (the guest fires, at those, the
//! timers the call itself registers). Which marks are due is decided again
//! before every call, with the earliest timer held at that moment, since
//! every call may register timers. A call may also stop early (its key
//! table is full); the rest is planned again.

use weir_core::Mark;

/// What to do next with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Call the guest with events `from..to` and these marks (relative to
    /// `from`); then report how far it got with [`Cutter::reached`].
    Call { from: usize, to: usize, inner: Vec<Mark> },
    /// Fire every held timer up to this watermark, then emit it.
    Fire(i64),
    /// The batch is done.
    Done,
}

pub(crate) struct Cutter {
    marks: Vec<Mark>,
    events: usize,
    pos: usize,
    next_mark: usize,
    /// The planned call: its end, its inner marks and the due mark after it.
    end: usize,
    inner: Vec<Mark>,
    due: Option<usize>,
    fire: Option<usize>,
}

impl Cutter {
    /// Plans a batch of `events` events with `marks`.
    pub fn new(events: usize, marks: Vec<Mark>) -> Self {
        Cutter { marks, events, pos: 0, next_mark: 0, end: 0, inner: Vec::new(), due: None, fire: None }
    }

    /// The next step, given the earliest event-time timer held now.
    pub fn next(&mut self, next_timer: Option<i64>) -> Cut {
        if let Some(k) = self.fire.take() {
            self.next_mark = k + 1;
            return Cut::Fire(self.marks[k].watermark);
        }
        self.inner.clear();
        self.end = self.events;
        self.due = None;
        for (k, m) in self.marks.iter().enumerate().skip(self.next_mark) {
            if next_timer.is_some_and(|t| t <= m.watermark) {
                (self.end, self.due) = (m.after as usize, Some(k));
                break;
            }
            self.inner.push(Mark { after: m.after - self.pos as u32, watermark: m.watermark });
        }
        if self.pos == self.events && self.inner.is_empty() && self.due.is_none() {
            return Cut::Done;
        }
        Cut::Call { from: self.pos, to: self.end, inner: self.inner.clone() }
    }

    /// The planned call processed events up to `reached` (at most its
    /// `to`, and past its `from` unless it had no events), with the marks
    /// up to there.
    pub fn reached(&mut self, reached: usize) {
        let taken = reached - self.pos;
        self.next_mark += self.inner.iter().filter(|m| m.after as usize <= taken).count();
        if reached == self.end {
            self.fire = self.due;
        }
        self.pos = reached;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn marks(v: &[(u32, i64)]) -> Vec<Mark> {
        v.iter().map(|&(after, watermark)| Mark { after, watermark }).collect()
    }

    #[test]
    fn a_batch_without_due_timers_is_one_call() {
        let mut c = Cutter::new(3, marks(&[(1, 10), (3, 20)]));
        assert_eq!(c.next(Some(100)), Cut::Call { from: 0, to: 3, inner: marks(&[(1, 10), (3, 20)]) });
        c.reached(3);
        assert_eq!(c.next(Some(100)), Cut::Done);
    }

    #[test]
    fn a_due_mark_ends_the_call_and_fires_and_the_rest_is_planned_again() {
        let mut c = Cutter::new(4, marks(&[(1, 10), (2, 20), (4, 30)]));
        assert_eq!(c.next(Some(15)), Cut::Call { from: 0, to: 2, inner: marks(&[(1, 10)]) });
        c.reached(2);
        assert_eq!(c.next(Some(15)), Cut::Fire(20));
        // The call registered a timer at 25: the last mark is due now.
        assert_eq!(c.next(Some(25)), Cut::Call { from: 2, to: 4, inner: vec![] });
        c.reached(4);
        assert_eq!(c.next(Some(25)), Cut::Fire(30));
        assert_eq!(c.next(None), Cut::Done);
    }

    #[test]
    fn a_call_that_stops_early_goes_on_from_where_it_stopped() {
        let mut c = Cutter::new(4, marks(&[(1, 10), (3, 20)]));
        assert_eq!(c.next(None), Cut::Call { from: 0, to: 4, inner: marks(&[(1, 10), (3, 20)]) });
        c.reached(2);
        assert_eq!(c.next(None), Cut::Call { from: 2, to: 4, inner: marks(&[(1, 20)]) });
        c.reached(4);
        assert_eq!(c.next(None), Cut::Done);
    }

    proptest! {
        /// Against a model backend (a set of timer timestamps, each call
        /// registering some, each firing taking all due): every event is
        /// called once and in order, every mark is either inside exactly
        /// one call at its place or fired once, no held timer is due at a
        /// mark inside a call, and a firing happens only with a timer due.
        #[test]
        fn every_event_and_mark_is_handled_once_and_no_held_timer_is_skipped(
            events in 0usize..30,
            raw_marks in proptest::collection::vec((0u32..31, 1i64..5), 0..12),
            registers in proptest::collection::vec(proptest::collection::vec(0i64..60, 0..3), 40),
            stops in proptest::collection::vec(0usize..4, 40),
            held in proptest::collection::btree_set(0i64..60, 0..4),
        ) {
            let mut afters: Vec<u32> = raw_marks.iter().map(|m| m.0.min(events as u32)).collect();
            afters.sort();
            let mut wm = 0;
            let ms: Vec<Mark> = afters.iter().zip(&raw_marks).map(|(&after, m)| { wm += m.1; Mark { after, watermark: wm } }).collect();
            let mut c = Cutter::new(events, ms.clone());
            let mut timers: BTreeSet<i64> = held;
            let (mut covered, mut seen_marks) = (0usize, Vec::new());
            for step in 0..200 {
                match c.next(timers.first().copied()) {
                    Cut::Done => break,
                    Cut::Fire(w) => {
                        prop_assert!(timers.first().is_some_and(|&t| t <= w), "a firing with nothing due");
                        timers.retain(|&t| t > w);
                        seen_marks.push((covered as u32, w));
                    }
                    Cut::Call { from, to, inner } => {
                        prop_assert_eq!(from, covered);
                        for m in &inner {
                            prop_assert!(timers.first().is_none_or(|&t| t > m.watermark), "a held timer due inside a call");
                        }
                        let reached = if to > from { (from + 1 + stops[step % stops.len()]).min(to) } else { to };
                        for m in inner.iter().filter(|m| m.after as usize <= reached - from) {
                            seen_marks.push((from as u32 + m.after, m.watermark));
                        }
                        covered = reached;
                        c.reached(reached);
                        // What the call registered: the ones its marks passed
                        // the guest fired itself; the rest the host holds,
                        // and they may be due at the next marks.
                        let passed = seen_marks.last().map_or(0, |m| m.1);
                        timers.extend(registers[step % registers.len()].iter().filter(|&&t| t > passed));
                    }
                }
            }
            prop_assert_eq!(covered, events);
            let want: Vec<(u32, i64)> = ms.iter().map(|m| (m.after, m.watermark)).collect();
            prop_assert_eq!(seen_marks, want);
        }
    }
}
