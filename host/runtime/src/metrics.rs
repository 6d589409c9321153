//! Live metrics of a job's subtasks, with Flink's meanings: records and
//! bytes in and out, the input and output watermarks, and the time a task
//! spends idle (waiting for input) and back-pressured (waiting for room
//! downstream). Each subtask's counters sit on a cache line of their own
//! and are written by its one task with relaxed atomics, once per batch;
//! times are measured only around the waits themselves.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

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
        SubtaskMetrics {
            subtask,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            input_watermark: self.input_watermark.load(Ordering::Relaxed),
            output_watermark: self.output_watermark.load(Ordering::Relaxed),
            idle_ns: self.times.idle_ns.load(Ordering::Relaxed),
            backpressured_ns: self.times.backpressured_ns.load(Ordering::Relaxed),
        }
    }
}

/// Where a task's time goes, in nanoseconds since it started (busy is the
/// rest).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct TaskTimes {
    pub idle_ns: AtomicU64,
    pub backpressured_ns: AtomicU64,
}

/// One subtask's metrics at one moment. Counters are totals since the
/// job started; rates are the control plane's to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

fn add(d: Duration, f: fn(&TaskTimes) -> &AtomicU64) {
    CURRENT.with(|c| {
        if let Some(t) = c.borrow().as_ref() {
            f(t).fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        }
    });
}

/// This thread's task waited `d` for input.
pub(crate) fn add_idle(d: Duration) {
    add(d, |t| &t.idle_ns);
}

/// This thread's task waited `d` for room downstream.
pub(crate) fn add_backpressured(d: Duration) {
    add(d, |t| &t.backpressured_ns);
}
