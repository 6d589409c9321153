//! Live metrics of a job's subtasks, with Flink's meanings: records and
//! bytes in and out, the input and output watermarks, and the time a task
//! spends idle (waiting for input) and back-pressured (waiting for room
//! downstream). Each subtask's counters sit on a cache line of their own
//! and are written by its one task with relaxed atomics, once per batch;
//! times are measured only around the waits themselves.

use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use weir_wasm::{UserMetric, UserMetrics};

/// The counters of one vertex's subtask.
#[repr(align(128))]
pub(crate) struct SubtaskCounters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub input_watermark: AtomicI64,
    pub output_watermark: AtomicI64,
    /// The task (chain subtask) this subtask runs in.
    pub times: Arc<TaskTimes>,
    /// The metrics its Wasm instances report (set once they exist).
    pub user: OnceLock<Vec<Arc<UserMetrics>>>,
    /// Its channels downstream (set once they exist).
    pub channels: OnceLock<Vec<Arc<ChannelTimes>>>,
}

impl SubtaskCounters {
    pub fn new(times: Arc<TaskTimes>) -> SubtaskCounters {
        SubtaskCounters {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            input_watermark: AtomicI64::new(i64::MIN),
            output_watermark: AtomicI64::new(i64::MIN),
            times,
            user: OnceLock::new(),
            channels: OnceLock::new(),
        }
    }

    /// A batch of `events` events of `bytes` bytes came in.
    #[inline]
    pub fn received(&self, events: usize, bytes: usize, watermark: Option<i64>) {
        self.records_in.fetch_add(events as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(w) = watermark {
            self.input_watermark.store(w, Ordering::Relaxed);
        }
    }

    /// A batch went out.
    #[inline]
    pub fn sent(&self, events: usize, bytes: usize, watermark: Option<i64>) {
        self.records_out.fetch_add(events as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(w) = watermark {
            self.output_watermark.store(w, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, subtask: u32) -> SubtaskMetrics {
        let (idle_ns, backpressured_ns) = self.times.totals();
        SubtaskMetrics {
            subtask,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            input_watermark: self.input_watermark.load(Ordering::Relaxed),
            output_watermark: self.output_watermark.load(Ordering::Relaxed),
            idle_ns,
            backpressured_ns,
            finished: self.times.finished.load(Ordering::Relaxed),
            user: self.user_metrics(),
            channels: self.channels.get().map_or_else(Vec::new, |c| c.iter().map(|c| c.snapshot()).collect()),
        }
    }

    /// Its instances' metrics, merged by name (a window's trigger and
    /// function may both report).
    fn user_metrics(&self) -> Vec<(String, UserMetric)> {
        let Some(all) = self.user.get() else { return Vec::new() };
        let mut out: std::collections::BTreeMap<String, UserMetric> = std::collections::BTreeMap::new();
        for (name, m) in all.iter().flat_map(|u| u.snapshot()) {
            match (out.get_mut(&name), m) {
                (Some(UserMetric::Counter(a)), UserMetric::Counter(b)) => *a = a.saturating_add(b),
                (Some(slot), m) => *slot = m,
                (None, m) => {
                    out.insert(name, m);
                }
            }
        }
        out.into_iter().collect()
    }
}

/// Where a task's time goes, in nanoseconds since it started (busy is the
/// rest), and the wait it is in now, if any (so a wait that has not ended
/// counts too).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct TaskTimes {
    pub idle_ns: AtomicU64,
    pub backpressured_ns: AtomicU64,
    /// When the current wait for input began ([`clock_ns`] + 1; 0: none).
    idle_since: AtomicU64,
    /// When the current wait for room began.
    backpressured_since: AtomicU64,
    /// The task has ended (its times no longer move).
    pub finished: std::sync::atomic::AtomicBool,
}

impl TaskTimes {
    /// Idle and back-pressured nanoseconds so far, waits in progress
    /// included.
    fn totals(&self) -> (u64, u64) {
        let now = clock_ns() + 1;
        let with = |total: &AtomicU64, since: &AtomicU64| {
            let s = since.load(Ordering::Relaxed);
            total.load(Ordering::Relaxed) + if s == 0 { 0 } else { now.saturating_sub(s) }
        };
        (with(&self.idle_ns, &self.idle_since), with(&self.backpressured_ns, &self.backpressured_since))
    }
}

/// Nanoseconds since the first call in this process: the clock of waits.
fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One subtask's metrics at one moment. Counters are totals since the
/// job started; rates are the control plane's to take.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SubtaskMetrics {
    /// The subtask index.
    pub subtask: u32,
    /// `numRecordsIn`.
    pub records_in: u64,
    /// `numRecordsOut`.
    pub records_out: u64,
    /// `numBytesIn`: bytes of keys and values received.
    pub bytes_in: u64,
    /// `numBytesOut`: bytes of keys and values sent.
    pub bytes_out: u64,
    /// `currentInputWatermark` (`i64::MIN`: none yet).
    pub input_watermark: i64,
    /// `currentOutputWatermark` (`i64::MIN`: none yet).
    pub output_watermark: i64,
    /// Nanoseconds its task spent waiting for input (or, for a source,
    /// for its next events).
    pub idle_ns: u64,
    /// Nanoseconds its task spent waiting for room in a full downstream
    /// queue.
    pub backpressured_ns: u64,
    /// The operator's own metrics, by name.
    pub user: Vec<(String, UserMetric)>,
    /// Its task has ended.
    pub finished: bool,
    /// Its channels to the subtasks it sends to, and how long each kept
    /// it waiting.
    #[serde(default)]
    pub channels: Vec<ChannelMetrics>,
}

/// One channel from a subtask to a subtask of a vertex it sends to.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ChannelMetrics {
    /// The vertex it sends to.
    pub to: String,
    /// Which of its subtasks.
    pub subtask: u32,
    /// Whether the channel crosses to another worker.
    pub remote: bool,
    /// Nanoseconds the sender spent waiting for room on this channel (a
    /// full queue, or no credit from the other worker).
    pub backpressured_ns: u64,
}

/// A channel's waits: its producer's time waiting for room at its
/// consumer, with the wait in progress.
pub(crate) struct ChannelTimes {
    to: String,
    subtask: u32,
    remote: bool,
    backpressured_ns: AtomicU64,
    since: AtomicU64,
}

impl ChannelTimes {
    pub fn new(to: &str, subtask: u32, remote: bool) -> Arc<ChannelTimes> {
        Arc::new(ChannelTimes {
            to: to.to_owned(),
            subtask,
            remote,
            backpressured_ns: AtomicU64::new(0),
            since: AtomicU64::new(0),
        })
    }

    pub fn snapshot(&self) -> ChannelMetrics {
        let since = self.since.load(Ordering::Relaxed);
        let now = if since == 0 { 0 } else { (clock_ns() + 1).saturating_sub(since) };
        ChannelMetrics {
            to: self.to.clone(),
            subtask: self.subtask,
            remote: self.remote,
            backpressured_ns: self.backpressured_ns.load(Ordering::Relaxed) + now,
        }
    }
}

thread_local! {
    /// The times of the task running on this thread.
    static CURRENT: RefCell<Option<Arc<TaskTimes>>> = const { RefCell::new(None) };
}

/// Makes `times` the current thread's task times (a task's thread, at
/// its start).
pub(crate) fn enter(times: Arc<TaskTimes>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(times));
}

/// What a task waits for.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Input.
    Idle,
    /// Room in a full downstream queue.
    Backpressured,
}

/// A wait begun: end it with [`Waiting::end`].
pub(crate) struct Waiting<'a> {
    kind: Wait,
    since: u64,
    /// The channel waited on, which counts it too.
    channel: Option<&'a ChannelTimes>,
}

fn fields(t: &TaskTimes, kind: Wait) -> (&AtomicU64, &AtomicU64) {
    match kind {
        Wait::Idle => (&t.idle_ns, &t.idle_since),
        Wait::Backpressured => (&t.backpressured_ns, &t.backpressured_since),
    }
}

/// This thread's task begins to wait.
pub(crate) fn begin(kind: Wait) -> Waiting<'static> {
    begin_on(kind, None)
}

/// This thread's task begins to wait, on `channel` (for room in it).
pub(crate) fn begin_on(kind: Wait, channel: Option<&ChannelTimes>) -> Waiting<'_> {
    let since = clock_ns() + 1;
    CURRENT.with(|c| {
        if let Some(t) = c.borrow().as_ref() {
            fields(t, kind).1.store(since, Ordering::Relaxed);
        }
    });
    if let Some(ch) = channel {
        ch.since.store(since, Ordering::Relaxed);
    }
    Waiting { kind, since, channel }
}

impl Waiting<'_> {
    /// The wait is over: its time is counted.
    pub(crate) fn end(self) {
        let waited = (clock_ns() + 1).saturating_sub(self.since);
        if let Some(ch) = self.channel {
            ch.since.store(0, Ordering::Relaxed);
            ch.backpressured_ns.fetch_add(waited, Ordering::Relaxed);
        }
        CURRENT.with(|c| {
            if let Some(t) = c.borrow().as_ref() {
                let (total, since) = fields(t, self.kind);
                // Cleared first: a reader in between misses this wait for
                // one sample (and sees it in the next), never counts it twice.
                since.store(0, Ordering::Relaxed);
                total.fetch_add(waited, Ordering::Relaxed);
            }
        });
    }
}
