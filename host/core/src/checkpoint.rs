//! The checkpoint coordinator's bookkeeping, as a pure state machine after
//! Flink's `CheckpointCoordinator`: when to trigger the next checkpoint
//! (interval, min pause, max concurrent), which tasks have acknowledged
//! which checkpoint, when one is complete, and when one has taken too long
//! and is aborted. Time comes in as milliseconds of any clock that only
//! moves forward; nothing here reads a clock, writes a file or sends a
//! barrier. The runtime's checkpointer drives it.

use std::collections::BTreeMap;

/// The timing of periodic checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointTiming {
    /// From one checkpoint's trigger to the next one's.
    pub interval_ms: u64,
    /// A checkpoint not complete after this long is aborted.
    pub timeout_ms: u64,
    /// The least time from one checkpoint's end to the next trigger.
    pub min_pause_ms: u64,
    /// Checkpoints in progress at once (at least 1).
    pub max_concurrent: u32,
}

impl CheckpointTiming {
    /// The timing a `checkpoints:` section asks for.
    pub fn of(spec: &crate::spec::CheckpointSpec) -> CheckpointTiming {
        CheckpointTiming {
            interval_ms: spec.interval_ms,
            timeout_ms: spec.timeout_ms,
            min_pause_ms: spec.min_pause_ms,
            max_concurrent: spec.max_concurrent.max(1),
        }
    }
}

/// Something the caller must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointEvent {
    /// Inject barriers of this checkpoint at the sources.
    Trigger(u64),
    /// This checkpoint took longer than the timeout: drop what it wrote.
    Expired(u64),
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    /// Others are still missing.
    Pending,
    /// It was the last one: the checkpoint is complete. Checkpoints
    /// triggered before it and still pending are subsumed (dropped).
    Complete {
        /// Older pending checkpoints it subsumed.
        subsumed: usize,
    },
    /// The checkpoint is not pending (aborted, expired, subsumed, or never
    /// triggered), or this task acknowledged it already: ignore it.
    Ignored,
}

#[derive(Debug)]
struct Pending {
    triggered_ms: u64,
    acked: Vec<bool>,
    missing: usize,
}

/// Checkpoints of one job execution: triggers, acknowledgements from its
/// `tasks` tasks (numbered `0..tasks`), completions and timeouts.
#[derive(Debug)]
pub struct CheckpointTracker {
    timing: CheckpointTiming,
    tasks: usize,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    last_trigger_ms: u64,
    last_end_ms: Option<u64>,
    latest_completed: Option<u64>,
    stopped: bool,
}

impl CheckpointTracker {
    /// A tracker whose first checkpoint is `first_id` (one past the
    /// checkpoint the job was restored from), triggered one interval after
    /// `now_ms`.
    pub fn new(timing: CheckpointTiming, tasks: usize, first_id: u64, now_ms: u64) -> CheckpointTracker {
        CheckpointTracker {
            timing,
            tasks,
            next_id: first_id.max(1),
            pending: BTreeMap::new(),
            last_trigger_ms: now_ms,
            last_end_ms: None,
            latest_completed: None,
            stopped: false,
        }
    }

    /// What is due at `now_ms`: expired checkpoints first, then at most
    /// one trigger.
    pub fn poll(&mut self, now_ms: u64) -> Vec<CheckpointEvent> {
        let mut out = Vec::new();
        let timeout = self.timing.timeout_ms;
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms >= p.triggered_ms.saturating_add(timeout))
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.last_end_ms = Some(now_ms);
            out.push(CheckpointEvent::Expired(id));
        }
        if self.stopped || self.pending.len() >= self.timing.max_concurrent as usize {
            return out;
        }
        let interval_due = now_ms >= self.last_trigger_ms.saturating_add(self.timing.interval_ms);
        let pause_over = self.last_end_ms.is_none_or(|end| now_ms >= end.saturating_add(self.timing.min_pause_ms));
        if interval_due && pause_over {
            let id = self.next_id;
            self.next_id += 1;
            self.last_trigger_ms = now_ms;
            let missing = self.tasks;
            self.pending.insert(id, Pending { triggered_ms: now_ms, acked: vec![false; self.tasks], missing });
            out.push(CheckpointEvent::Trigger(id));
        }
        out
    }

    /// Triggers a checkpoint now, whatever the interval, pause and limit
    /// say (a savepoint): its id.
    pub fn trigger_now(&mut self, now_ms: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let missing = self.tasks;
        self.pending.insert(id, Pending { triggered_ms: now_ms, acked: vec![false; self.tasks], missing });
        id
    }

    /// Triggers no more periodic checkpoints; those pending go on.
    pub fn pause(&mut self) {
        self.stopped = true;
    }

    /// Task `task` has written its part of checkpoint `id`, at `now_ms`.
    pub fn ack(&mut self, id: u64, task: usize, now_ms: u64) -> AckResult {
        let Some(p) = self.pending.get_mut(&id) else { return AckResult::Ignored };
        match p.acked.get_mut(task) {
            Some(a) if !*a => *a = true,
            _ => return AckResult::Ignored,
        }
        p.missing -= 1;
        if p.missing > 0 {
            return AckResult::Pending;
        }
        self.pending.remove(&id);
        let older: Vec<u64> = self.pending.range(..id).map(|(&k, _)| k).collect();
        for k in &older {
            self.pending.remove(k);
        }
        self.latest_completed = Some(id);
        self.last_end_ms = Some(now_ms);
        AckResult::Complete { subsumed: older.len() }
    }

    /// Drops checkpoint `id` (a task declined it); whether it was pending.
    pub fn abort(&mut self, id: u64, now_ms: u64) -> bool {
        let was = self.pending.remove(&id).is_some();
        if was {
            self.last_end_ms = Some(now_ms);
        }
        was
    }

    /// Stops triggering (a task finished, or the job is ending) and drops
    /// every pending checkpoint; their ids.
    pub fn stop(&mut self) -> Vec<u64> {
        self.stopped = true;
        std::mem::take(&mut self.pending).into_keys().collect()
    }

    /// The checkpoints in progress.
    pub fn pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// The latest checkpoint this tracker completed.
    pub fn latest_completed(&self) -> Option<u64> {
        self.latest_completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(interval_ms: u64, min_pause_ms: u64, max_concurrent: u32) -> CheckpointTiming {
        CheckpointTiming { interval_ms, timeout_ms: 1000, min_pause_ms, max_concurrent }
    }

    #[test]
    fn checkpoints_trigger_every_interval_and_complete_when_every_task_acked() {
        let mut t = CheckpointTracker::new(timing(100, 0, 1), 2, 1, 0);
        assert_eq!(t.poll(99), vec![]);
        assert_eq!(t.poll(100), vec![CheckpointEvent::Trigger(1)]);
        assert_eq!(t.poll(250), vec![], "one at a time");
        assert_eq!(t.ack(1, 0, 260), AckResult::Pending);
        assert_eq!(t.ack(1, 0, 261), AckResult::Ignored, "a task acknowledges once");
        assert_eq!(t.ack(1, 1, 270), AckResult::Complete { subsumed: 0 });
        assert_eq!(t.latest_completed(), Some(1));
        assert_eq!(t.poll(270), vec![CheckpointEvent::Trigger(2)], "the interval had passed");
    }

    #[test]
    fn min_pause_delays_the_next_trigger_after_a_slow_checkpoint() {
        let mut t = CheckpointTracker::new(timing(100, 80, 1), 1, 1, 0);
        assert_eq!(t.poll(100), vec![CheckpointEvent::Trigger(1)]);
        assert_eq!(t.ack(1, 0, 190), AckResult::Complete { subsumed: 0 });
        assert_eq!(t.poll(200), vec![], "interval due, pause not over");
        assert_eq!(t.poll(270), vec![CheckpointEvent::Trigger(2)]);
    }

    #[test]
    fn a_late_checkpoint_expires_and_the_next_one_starts() {
        let mut t = CheckpointTracker::new(timing(100, 0, 1), 1, 7, 0);
        assert_eq!(t.poll(100), vec![CheckpointEvent::Trigger(7)], "numbering goes on from a restored checkpoint");
        assert_eq!(t.poll(1100), vec![CheckpointEvent::Expired(7), CheckpointEvent::Trigger(8)]);
        assert_eq!(t.ack(7, 0, 1101), AckResult::Ignored, "an expired checkpoint's ack is ignored");
    }

    #[test]
    fn a_completed_checkpoint_subsumes_older_pending_ones() {
        let mut t = CheckpointTracker::new(timing(100, 0, 2), 1, 1, 0);
        assert_eq!(t.poll(100), vec![CheckpointEvent::Trigger(1)]);
        assert_eq!(t.poll(200), vec![CheckpointEvent::Trigger(2)]);
        assert_eq!(t.poll(300), vec![], "two at most");
        assert_eq!(t.ack(2, 0, 310), AckResult::Complete { subsumed: 1 });
        assert_eq!(t.ack(1, 0, 320), AckResult::Ignored);
        assert_eq!(t.pending().count(), 0);
    }

    #[test]
    fn a_savepoint_triggers_at_once_and_pausing_keeps_it_going() {
        let mut t = CheckpointTracker::new(timing(100, 0, 1), 1, 1, 0);
        assert_eq!(t.trigger_now(5), 1, "before the interval, past the limit");
        t.pause();
        assert_eq!(t.poll(500), vec![], "no periodic checkpoint after a pause");
        assert_eq!(t.ack(1, 0, 501), AckResult::Complete { subsumed: 0 });
    }

    #[test]
    fn stopping_drops_pending_checkpoints_and_triggers_no_more() {
        let mut t = CheckpointTracker::new(timing(100, 0, 1), 1, 1, 0);
        t.poll(100);
        assert_eq!(t.stop(), vec![1]);
        assert_eq!(t.poll(10_000), vec![]);
        assert!(!t.abort(1, 10_000));
    }
}
