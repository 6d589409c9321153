//! The input gate of a task with inputs, as a pure state machine: messages
//! from the inputs come in, the steps the task must take come out. It
//! combines watermarks (the [`WatermarkValve`]), tracks idleness and end of
//! input, aligns checkpoint barriers, and says when processing time is due
//! to be checked. No queues, threads or clocks: time comes in as an
//! argument.
//!
//! Barrier alignment, after Flink's: for exactly-once, an input whose
//! barrier has come is held back (its data stays queued) until the
//! barrier has come on every input that has not ended; then the task
//! snapshots and every input is released. For at-least-once nothing is
//! held: the snapshot waits for the last barrier, and data of inputs that
//! were faster is in it (and replayed after a failure: at least once).
//! A barrier of a newer checkpoint abandons an older one still aligning.
//!
//! Unaligned checkpoints (exactly-once without alignment): a barrier that
//! overtook the queued data of its input starts the checkpoint at once —
//! the task snapshots and passes the barrier on, also ahead of queued
//! data — and nothing is held. The data the barrier overtook, and what
//! every other input delivers before its own barrier, is in-flight data:
//! processed as usual and also kept with the checkpoint, which the task
//! acknowledges once every input's barrier has come.

use crate::exchange::MessageKind;
use std::time::{Duration, Instant};
use weir_core::Batch;
use weir_core::time::{ValveChange, WatermarkValve};

/// What the task does next, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Run this batch through the chain (its marks are combined watermarks).
    Run(Batch),
    /// Tell consumers this task went idle (`true`) or active again.
    Idle(bool),
    /// Every input ended: finish the chain and end the outputs.
    Finish,
    /// Hold this input back (its barrier came; exactly-once).
    Hold(usize),
    /// Every input delivered the barrier of this checkpoint: snapshot,
    /// pass the barrier on, release every input.
    Checkpoint(u64),
    /// The checkpoint being aligned was abandoned: release every input.
    Release,
    /// The first barrier of unaligned checkpoint `.0` came: snapshot, pass
    /// the barrier on ahead of queued data, start keeping in-flight data.
    Snapshot(u64),
    /// In-flight data of input `.0` that its barrier overtook.
    Overtaken(usize, Vec<Batch>),
    /// Every input delivered unaligned checkpoint `.0`'s barrier: its
    /// in-flight data is complete.
    Complete(u64),
}

pub(crate) struct InputGate {
    valve: WatermarkValve,
    tick_every: Duration,
    last_tick: Instant,
    exactly_once: bool,
    /// The checkpoint being aligned, and which inputs delivered its barrier.
    aligning: Option<u64>,
    seen: Vec<bool>,
    ended: Vec<bool>,
    /// The last checkpoint this gate completed or abandoned.
    last: u64,
    /// Whether the checkpoint in `aligning` is unaligned.
    unaligned: bool,
    /// When the first barrier of the latest checkpoint aligned came.
    first_barrier: Option<Instant>,
}

impl InputGate {
    /// A gate over `inputs` inputs that asks for a processing-time check
    /// every `tick_every`, starting at `now`.
    pub fn new(inputs: usize, tick_every: Duration, now: Instant) -> Self {
        InputGate {
            valve: WatermarkValve::new(inputs),
            tick_every,
            last_tick: now,
            exactly_once: true,
            aligning: None,
            seen: vec![false; inputs],
            ended: vec![false; inputs],
            last: 0,
            unaligned: false,
            first_barrier: None,
        }
    }

    /// Aligns barriers (exactly-once) or not (at-least-once).
    pub fn aligned(mut self, exactly_once: bool) -> Self {
        self.exactly_once = exactly_once;
        self
    }

    /// Goes on from a checkpoint: `last` was restored, whose combined
    /// watermark was `watermark`.
    pub fn resume(mut self, last: u64, watermark: i64) -> Self {
        self.valve = WatermarkValve::resume(self.seen.len(), watermark);
        self.last = last;
        self
    }

    /// The latest checkpoint whose barrier came (completed here, or
    /// abandoned), once none is aligning.
    pub fn last_seen(&self) -> u64 {
        self.aligning.unwrap_or(self.last).max(self.last)
    }

    /// When the first barrier of the checkpoint aligning (or aligned last)
    /// came.
    pub fn first_barrier(&self) -> Option<Instant> {
        self.first_barrier
    }

    /// The combined watermark.
    pub fn watermark(&self) -> i64 {
        self.valve.current()
    }

    /// How many inputs the gate has.
    pub fn inputs(&self) -> usize {
        self.seen.len()
    }

    fn check_aligned(&mut self, steps: &mut Vec<Step>) {
        if let Some(id) = self.aligning
            && self.seen.iter().zip(&self.ended).all(|(s, e)| *s || *e)
        {
            self.aligning = None;
            self.last = id;
            steps.push(if self.unaligned { Step::Complete(id) } else { Step::Checkpoint(id) });
        }
    }

    /// Whether a message of `input` now is in-flight data of an unaligned
    /// checkpoint (its barrier has not come yet).
    pub fn in_flight(&self, input: usize) -> bool {
        self.unaligned && self.aligning.is_some() && !self.seen[input] && !self.ended[input]
    }

    /// A barrier `id` of `input`; `overtaken`: an unaligned one, with the
    /// data it overtook. Whether it starts or goes on with `id`.
    fn barrier_of(&mut self, input: usize, id: u64, overtaken: Option<Vec<Batch>>, steps: &mut Vec<Step>) {
        if id <= self.last {
            return;
        }
        match self.aligning {
            Some(a) if id < a => return,
            Some(a) if id > a => {
                // A newer checkpoint: the older one cannot complete here.
                self.last = a;
                steps.push(Step::Release);
                self.aligning = None;
            }
            _ => {}
        }
        if self.aligning.is_none() {
            self.aligning = Some(id);
            self.first_barrier = Some(Instant::now());
            self.unaligned = overtaken.is_some();
            self.seen.iter_mut().for_each(|s| *s = false);
            if self.unaligned {
                steps.push(Step::Snapshot(id));
            }
        }
        if self.seen[input] {
            return;
        }
        self.seen[input] = true;
        match overtaken {
            Some(data) if self.unaligned && !data.is_empty() => steps.push(Step::Overtaken(input, data)),
            _ if self.exactly_once && !self.unaligned => steps.push(Step::Hold(input)),
            _ => {}
        }
        self.check_aligned(steps);
    }

    fn barrier(&mut self, input: usize, id: u64, steps: &mut Vec<Step>) {
        self.barrier_of(input, id, None, steps);
    }

    fn status(change: ValveChange, steps: &mut Vec<Step>) {
        if let Some(idle) = change.idle {
            steps.push(Step::Idle(idle));
        }
    }

    /// Takes a message from `input` and appends the steps it causes.
    pub fn on_message(&mut self, input: usize, message: MessageKind, steps: &mut Vec<Step>) {
        match message {
            MessageKind::Data(mut batch) => {
                // Data does not change an input's status (Flink's rule:
                // only status messages do); an idle input's marks are ignored.
                let marks = batch.take_marks();
                for m in marks {
                    if let Some(w) = self.valve.watermark(input, m.watermark).watermark {
                        batch.mark_at(m.after, w);
                    }
                }
                if !batch.is_void() {
                    steps.push(Step::Run(batch));
                }
            }
            MessageKind::Idle(idle) => {
                let change = self.valve.set_idle(input, idle);
                if !idle {
                    Self::status(change, steps);
                }
                if let Some(w) = change.watermark {
                    steps.push(Step::Run(Batch::watermark(w)));
                }
                if idle {
                    Self::status(change, steps);
                }
            }
            MessageKind::Barrier(id) => self.barrier(input, id, steps),
            MessageKind::Overtaking { id, overtaken } => self.barrier_of(input, id, Some(overtaken), steps),
            // (The inbox hands these over as `Overtaking`.)
            MessageKind::Priority { id, .. } => self.barrier_of(input, id, Some(Vec::new()), steps),
            MessageKind::End => {
                self.ended[input] = true;
                self.check_aligned(steps);
                let change = self.valve.end(input);
                Self::status(change, steps);
                if let Some(w) = change.watermark {
                    steps.push(Step::Run(Batch::watermark(w)));
                }
                if self.valve.all_ended() {
                    steps.push(Step::Finish);
                }
            }
        }
    }

    /// Whether processing time is due to be checked at `now` (then the
    /// next check is `tick_every` later).
    pub fn tick_due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_tick) >= self.tick_every {
            self.last_tick = now;
            true
        } else {
            false
        }
    }

    /// How long until the next processing-time check, from `now`.
    pub fn until_tick(&self, now: Instant) -> Duration {
        self.tick_every.saturating_sub(now.duration_since(self.last_tick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir_core::time::MAX_WATERMARK;

    fn batch(marks: &[(u32, i64)], events: usize) -> Batch {
        let mut b = Batch::new();
        for i in 0..events {
            for &(after, w) in marks.iter().filter(|m| m.0 as usize == i) {
                b.mark_at(after, w);
            }
            b.push(b"", b"", i as i64, 0);
        }
        for &(after, w) in marks.iter().filter(|m| m.0 as usize >= events) {
            b.mark_at(after, w);
        }
        b
    }

    fn steps(g: &mut InputGate, input: usize, m: MessageKind) -> Vec<Step> {
        let mut s = Vec::new();
        g.on_message(input, m, &mut s);
        s
    }

    #[test]
    fn marks_become_combined_watermarks_at_their_place() {
        let mut g = InputGate::new(2, Duration::from_millis(50), Instant::now());
        assert_eq!(steps(&mut g, 0, MessageKind::Data(batch(&[(1, 100)], 2))), vec![Step::Run(batch(&[], 2))]);
        let s = steps(&mut g, 1, MessageKind::Data(batch(&[(1, 50), (2, 200)], 2)));
        assert_eq!(s, vec![Step::Run(batch(&[(1, 50), (2, 100)], 2))]);
    }

    #[test]
    fn idleness_end_and_finish_come_out_in_order() {
        let mut g = InputGate::new(2, Duration::from_millis(50), Instant::now());
        steps(&mut g, 0, MessageKind::Data(batch(&[(0, 10)], 0)));
        steps(&mut g, 1, MessageKind::Data(batch(&[(0, 20)], 0)));
        assert_eq!(steps(&mut g, 1, MessageKind::Idle(true)), vec![]);
        assert_eq!(steps(&mut g, 0, MessageKind::Idle(true)), vec![Step::Run(Batch::watermark(20)), Step::Idle(true)]);
        let records = steps(&mut g, 0, MessageKind::Data(batch(&[(1, 50)], 1)));
        assert_eq!(records, vec![Step::Run(batch(&[], 1))], "records of an idle input change nothing");
        assert_eq!(steps(&mut g, 0, MessageKind::Idle(false)), vec![Step::Idle(false)]);
        assert_eq!(steps(&mut g, 0, MessageKind::End), vec![Step::Run(Batch::watermark(MAX_WATERMARK))]);
        assert_eq!(steps(&mut g, 1, MessageKind::End), vec![Step::Finish]);
    }

    #[test]
    fn exactly_once_holds_each_input_at_its_barrier_until_all_have_come() {
        let mut g = InputGate::new(3, Duration::from_secs(1), Instant::now());
        assert_eq!(steps(&mut g, 1, MessageKind::Barrier(1)), vec![Step::Hold(1)]);
        assert_eq!(steps(&mut g, 0, MessageKind::Data(batch(&[], 1))), vec![Step::Run(batch(&[], 1))]);
        assert_eq!(steps(&mut g, 0, MessageKind::Barrier(1)), vec![Step::Hold(0)]);
        assert_eq!(steps(&mut g, 2, MessageKind::End), vec![Step::Checkpoint(1)], "an ended input counts as aligned");
        assert_eq!(steps(&mut g, 0, MessageKind::Barrier(1)), vec![], "a checkpoint completes once");
    }

    #[test]
    fn an_unaligned_barrier_snapshots_at_once_and_completes_when_every_input_delivered_its_own() {
        let mut g = InputGate::new(3, Duration::from_secs(1), Instant::now());
        let overtaking = |id, n| MessageKind::Overtaking { id, overtaken: vec![batch(&[], n); 1] };
        assert!(!g.in_flight(0));
        let s = steps(&mut g, 1, overtaking(2, 3));
        assert_eq!(s, vec![Step::Snapshot(2), Step::Overtaken(1, vec![batch(&[], 3)])], "nothing is held");
        assert!(g.in_flight(0) && !g.in_flight(1), "input 0's data before its barrier is in flight");
        assert_eq!(steps(&mut g, 0, MessageKind::Data(batch(&[], 1))), vec![Step::Run(batch(&[], 1))]);
        let empty = MessageKind::Overtaking { id: 2, overtaken: Vec::new() };
        assert_eq!(steps(&mut g, 0, empty), vec![]);
        assert_eq!(steps(&mut g, 2, MessageKind::End), vec![Step::Complete(2)], "an ended input counts as delivered");
        assert!(!g.in_flight(0));
        // A newer one abandons one that is still going on.
        steps(&mut g, 0, overtaking(3, 1));
        let s = steps(&mut g, 1, MessageKind::Overtaking { id: 4, overtaken: Vec::new() });
        assert_eq!(s, vec![Step::Release, Step::Snapshot(4)]);
    }

    #[test]
    fn at_least_once_holds_nothing_and_snapshots_at_the_last_barrier() {
        let mut g = InputGate::new(2, Duration::from_secs(1), Instant::now()).aligned(false);
        assert_eq!(steps(&mut g, 0, MessageKind::Barrier(4)), vec![]);
        assert_eq!(steps(&mut g, 1, MessageKind::Barrier(4)), vec![Step::Checkpoint(4)]);
    }

    #[test]
    fn a_newer_barrier_abandons_the_checkpoint_being_aligned() {
        let mut g = InputGate::new(2, Duration::from_secs(1), Instant::now());
        assert_eq!(steps(&mut g, 0, MessageKind::Barrier(1)), vec![Step::Hold(0)]);
        assert_eq!(steps(&mut g, 1, MessageKind::Barrier(2)), vec![Step::Release, Step::Hold(1)]);
        assert_eq!(steps(&mut g, 1, MessageKind::Barrier(1)), vec![], "the abandoned checkpoint's barrier is stale");
        assert_eq!(steps(&mut g, 0, MessageKind::Barrier(2)), vec![Step::Hold(0), Step::Checkpoint(2)]);
    }

    #[test]
    fn a_resumed_gate_emits_no_watermark_at_or_below_the_restored_one() {
        let mut g = InputGate::new(1, Duration::from_secs(1), Instant::now()).resume(3, 100);
        assert_eq!(steps(&mut g, 0, MessageKind::Data(batch(&[(0, 90)], 0))), vec![]);
        assert_eq!(steps(&mut g, 0, MessageKind::Data(batch(&[(0, 120)], 0))), vec![Step::Run(batch(&[(0, 120)], 0))]);
        assert_eq!(steps(&mut g, 0, MessageKind::Barrier(3)), vec![], "the restored checkpoint is done");
    }

    #[test]
    fn ticks_are_due_every_interval() {
        let t0 = Instant::now();
        let mut g = InputGate::new(1, Duration::from_millis(50), t0);
        assert!(!g.tick_due(t0 + Duration::from_millis(49)));
        assert_eq!(g.until_tick(t0 + Duration::from_millis(20)), Duration::from_millis(30));
        assert!(g.tick_due(t0 + Duration::from_millis(50)));
        assert!(!g.tick_due(t0 + Duration::from_millis(60)));
    }

    /// A direct model of Flink's valve: per input (watermark, idle,
    /// aligned); the output is the minimum over aligned inputs, or the
    /// maximum of all when the last active input goes idle holding it.
    #[derive(Clone, Debug)]
    enum Op {
        Wm(usize, i64),
        Idle(usize, bool),
        End(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..60i64).prop_map(|(i, w)| Op::Wm(i, w)),
            2 => (0..3usize, any::<bool>()).prop_map(|(i, b)| Op::Idle(i, b)),
            1 => (0..3usize).prop_map(Op::End),
        ]
    }

    proptest! {
        #[test]
        fn the_gate_emits_what_flinks_valve_would(ops in proptest::collection::vec(op(), 1..60)) {
            let mut g = InputGate::new(3, Duration::from_secs(1), Instant::now());
            let mut wm = [i64::MIN; 3];
            let mut idle = [false; 3];
            let mut aligned = [true; 3];
            let mut ended = [false; 3];
            let mut out = i64::MIN;
            let mut out_idle = false;
            let mut finished = false;
            for op in ops {
                if finished { break; }
                let mut expect_wm = None;
                let mut expect_idle = None;
                let activate = |i: usize, idle: &mut [bool; 3], aligned: &mut [bool; 3], wm: &[i64; 3], out: i64, out_idle: &mut bool, ei: &mut Option<bool>| {
                    if idle[i] {
                        idle[i] = false;
                        aligned[i] = wm[i] >= out;
                        if *out_idle { *out_idle = false; *ei = Some(false); }
                    }
                };
                let min_aligned = |wm: &[i64; 3], aligned: &[bool; 3]| (0..3).filter(|&i| aligned[i]).map(|i| wm[i]).min();
                let message = match op {
                    Op::Wm(i, w) if !ended[i] => {
                        if !idle[i] && w > wm[i] {
                            wm[i] = w;
                            if w >= out { aligned[i] = true; }
                            if let Some(m) = min_aligned(&wm, &aligned) && m > out { out = m; expect_wm = Some(m); }
                        }
                        let mut b = Batch::new();
                        b.mark(w);
                        MessageKind::Data(b)
                    }
                    Op::Idle(i, false) if !ended[i] => {
                        activate(i, &mut idle, &mut aligned, &wm, out, &mut out_idle, &mut expect_idle);
                        MessageKind::Idle(false)
                    }
                    Op::Idle(i, true) if !ended[i] => {
                        if !idle[i] {
                            idle[i] = true;
                            aligned[i] = false;
                            let held = wm[i] == out;
                            if idle.iter().all(|&x| x) {
                                let max = *wm.iter().max().unwrap();
                                if held && max > out { out = max; expect_wm = Some(max); }
                                out_idle = true;
                                expect_idle = Some(true);
                            } else if held && let Some(m) = min_aligned(&wm, &aligned) && m > out {
                                out = m;
                                expect_wm = Some(m);
                            }
                        }
                        MessageKind::Idle(true)
                    }
                    Op::End(i) if !ended[i] => {
                        activate(i, &mut idle, &mut aligned, &wm, out, &mut out_idle, &mut expect_idle);
                        wm[i] = MAX_WATERMARK;
                        aligned[i] = true;
                        ended[i] = true;
                        if let Some(m) = min_aligned(&wm, &aligned) && m > out { out = m; expect_wm = Some(m); }
                        MessageKind::End
                    }
                    _ => continue,
                };
                let input = match op { Op::Wm(i, _) | Op::Idle(i, _) | Op::End(i) => i };
                let s = steps(&mut g, input, message);
                let got_wm = s.iter().find_map(|s| match s { Step::Run(b) => b.last_watermark(), _ => None });
                let got_idle = s.iter().find_map(|s| match s { Step::Idle(b) => Some(*b), _ => None });
                prop_assert_eq!(got_wm, expect_wm);
                prop_assert_eq!(got_idle, expect_idle);
                finished = s.contains(&Step::Finish);
                prop_assert_eq!(finished, ended.iter().all(|&e| e));
            }
        }
    }
}
