//! Data exchange between tasks: every task has an [`Inbox`] with one
//! queue per logical input (upstream subtask), each bounded in bytes, and
//! upstream tasks write into it through [`Router`]s that partition their
//! output over the consumer's subtasks.
//!
//! A queue's byte budget is what a remote channel will grant as credit;
//! queues are separate so that a task can hold one input back while it
//! drains the others (barrier alignment). The inbox is closed when the job
//! is cancelled, which wakes every sender and the receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_core::keys::{key_group, subtask_of_group};
use weir_core::spec::KeySelector;
use weir_core::{Batch, Mark};

/// What travels on a channel, in order.
#[derive(Debug)]
pub(crate) enum MessageKind {
    /// Events and the watermarks between them.
    Data(Batch),
    /// The upstream subtask went idle (`true`) or active again.
    Idle(bool),
    /// The barrier of a checkpoint: everything before it is in the
    /// checkpoint, nothing after it.
    Barrier(u64),
    /// The barrier of an unaligned checkpoint: it went to the front of its
    /// queue, ahead of the `overtook` messages there. The receiver gets
    /// it as [`MessageKind::Overtaking`].
    Priority {
        /// The checkpoint.
        id: u64,
        /// Messages it went ahead of (set by the inbox).
        overtook: usize,
    },
    /// An unaligned checkpoint's barrier as the receiver takes it, with
    /// copies of the data it overtook (still queued behind it, and
    /// processed after it): that data is part of the checkpoint.
    Overtaking {
        /// The checkpoint.
        id: u64,
        /// The data it went ahead of, oldest first.
        overtaken: Vec<Batch>,
    },
    /// The upstream subtask ended; nothing follows.
    End,
}

impl MessageKind {
    fn footprint(&self) -> usize {
        match self {
            MessageKind::Data(b) => b.footprint(),
            _ => 64,
        }
    }
}

/// The inbox was closed: the job is being torn down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// What [`Inbox::recv`] found.
#[derive(Debug)]
pub(crate) enum Recv {
    /// A message from input `.0`.
    Message(usize, MessageKind),
    /// Nothing arrived within the timeout.
    Timeout,
}

struct Queues {
    queues: Vec<VecDeque<MessageKind>>,
    bytes: Vec<usize>,
    held: Vec<bool>,
    next: usize,
    closed: bool,
    /// The receiver is waiting for a message (so a sender must wake it).
    reader_waiting: bool,
    /// Per input: senders waiting for room in it.
    writers_waiting: Vec<usize>,
}

/// The input queues of one task (one per logical input), bounded in bytes.
pub(crate) struct Inbox {
    state: Mutex<Queues>,
    readable: Condvar,
    writable: Condvar,
    budget: usize,
}

impl Inbox {
    /// An inbox of `inputs` queues of `budget` bytes each. A queue always
    /// takes one message when it is empty, whatever its size.
    pub fn new(inputs: usize, budget: usize) -> Arc<Inbox> {
        Arc::new(Inbox {
            state: Mutex::new(Queues {
                queues: (0..inputs).map(|_| VecDeque::new()).collect(),
                bytes: vec![0; inputs],
                held: vec![false; inputs],
                next: 0,
                closed: false,
                reader_waiting: false,
                writers_waiting: vec![0; inputs],
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
            budget: budget.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panicking task is reported by its thread; the queues stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts an unaligned checkpoint's barrier at the front of queue
    /// `input`, ahead of everything queued there, without waiting for
    /// room: backpressure is what it gets past.
    pub fn send_first(&self, input: usize, id: u64) -> Result<(), Closed> {
        self.enqueue(input, true, |q| MessageKind::Priority { id, overtook: q.len() })
    }

    /// Appends to queue `input` whatever its fill (held data that an
    /// unaligned barrier is about to overtake).
    pub fn push_now(&self, input: usize, message: MessageKind) -> Result<(), Closed> {
        self.enqueue(input, false, |_| message)
    }

    /// Puts the message `make` makes of queue `input` at its front or
    /// back, without waiting for room, and wakes a waiting receiver.
    fn enqueue(
        &self,
        input: usize,
        front: bool,
        make: impl FnOnce(&VecDeque<MessageKind>) -> MessageKind,
    ) -> Result<(), Closed> {
        let mut q = self.lock();
        if q.closed {
            return Err(Closed);
        }
        let message = make(&q.queues[input]);
        q.bytes[input] += message.footprint();
        match front {
            true => q.queues[input].push_front(message),
            false => q.queues[input].push_back(message),
        }
        let wake = q.reader_waiting;
        drop(q);
        if wake {
            self.readable.notify_one();
        }
        Ok(())
    }

    /// Appends to queue `input`, waiting while it is over its budget.
    ///
    /// Wake-ups are what this costs, not the lock: the receiver is woken
    /// only when it waits, and a blocked sender only once its queue has
    /// drained to half the budget, so a full queue does not wake its
    /// sender for every message taken (a context switch each).
    pub fn send(&self, input: usize, message: MessageKind) -> Result<(), Closed> {
        self.send_on(input, message, None)
    }

    /// [`Inbox::send`], a wait counted on `channel` too.
    fn send_on(
        &self,
        input: usize,
        message: MessageKind,
        channel: Option<&crate::metrics::ChannelTimes>,
    ) -> Result<(), Closed> {
        let size = message.footprint();
        let mut q = self.lock();
        let full = |q: &Queues| !q.closed && q.bytes[input] >= self.budget && !q.queues[input].is_empty();
        if full(&q) {
            let waiting = crate::metrics::begin_on(crate::metrics::Wait::Backpressured, channel);
            while full(&q) {
                q.writers_waiting[input] += 1;
                q = self.writable.wait(q).unwrap_or_else(|p| p.into_inner());
                q.writers_waiting[input] -= 1;
            }
            waiting.end();
        }
        if q.closed {
            return Err(Closed);
        }
        q.bytes[input] += size;
        q.queues[input].push_back(message);
        let wake = q.reader_waiting;
        drop(q);
        if wake {
            self.readable.notify_one();
        }
        Ok(())
    }

    /// Takes the next message of an input that is not held back, taking
    /// inputs in turn; waits up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Recv, Closed> {
        let mut q = self.lock();
        let mut waited = false;
        loop {
            if q.closed {
                return Err(Closed);
            }
            let n = q.queues.len();
            let start = q.next;
            let found = (0..n).map(|k| (start + k) % n).find(|&i| !q.held[i] && !q.queues[i].is_empty());
            if let Some(i) = found {
                let mut message = q.queues[i].pop_front().expect("invariant: the queue was checked non-empty");
                q.bytes[i] -= message.footprint();
                if let MessageKind::Priority { id, overtook } = message {
                    // What it overtook is still right behind it: copied
                    // under the same lock, before anything can move.
                    let overtaken = q.queues[i]
                        .iter()
                        .take(overtook)
                        .filter_map(|m| match m {
                            MessageKind::Data(b) => Some(b.clone()),
                            _ => None,
                        })
                        .collect();
                    message = MessageKind::Overtaking { id, overtaken };
                }
                q.next = (i + 1) % n;
                let wake = q.writers_waiting[i] > 0 && (q.bytes[i] <= self.budget / 2 || q.queues[i].is_empty());
                drop(q);
                if wake {
                    self.writable.notify_all();
                }
                return Ok(Recv::Message(i, message));
            }
            if waited {
                return Ok(Recv::Timeout);
            }
            q.reader_waiting = true;
            let waiting = crate::metrics::begin(crate::metrics::Wait::Idle);
            q = self.readable.wait_timeout(q, timeout).unwrap_or_else(|p| p.into_inner()).0;
            waiting.end();
            q.reader_waiting = false;
            waited = true;
        }
    }

    /// Holds input `input` back (its messages stay queued, and its sender
    /// blocks once the budget is used), or releases it.
    pub fn hold(&self, input: usize, held: bool) {
        self.lock().held[input] = held;
        self.readable.notify_one();
        // A sender of the held input may be waiting for the half-budget
        // mark that holding postpones: let it re-check (it has room when
        // the queue is below the budget).
        self.writable.notify_all();
    }

    /// Closes the inbox: every waiting sender and the receiver wake up
    /// with [`Closed`], and no message is taken any more.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        for queue in &mut q.queues {
            queue.clear();
        }
        drop(q);
        self.readable.notify_all();
        self.writable.notify_all();
    }
}

/// One input of a consumer task: its inbox and the queue index, or a
/// channel to it in another process.
#[derive(Clone)]
pub(crate) enum InputSender {
    /// In this process.
    Local {
        /// The consumer's inbox.
        inbox: Arc<Inbox>,
        /// Which of its queues.
        input: usize,
        /// Its waits.
        channel: Arc<crate::metrics::ChannelTimes>,
    },
    /// In another process.
    Remote(Arc<RemoteInput>),
}

/// A channel to a consumer in another process.
pub(crate) struct RemoteInput {
    pub sender: Mutex<Box<dyn crate::remote::RemoteSender>>,
    /// A broken channel fails the job (and the sender sees [`Closed`]).
    pub failure: crate::remote::ChannelFailure,
    /// Its waits.
    pub channel: Arc<crate::metrics::ChannelTimes>,
}

impl RemoteInput {
    fn send(&self, message: crate::remote::ChannelMessage) -> Result<(), Closed> {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let sent = if sender.has_room() {
            sender.send(message)
        } else {
            let waiting = crate::metrics::begin_on(crate::metrics::Wait::Backpressured, Some(&self.channel));
            let sent = sender.send(message);
            waiting.end();
            sent
        };
        sent.map_err(|e| {
            self.failure.fail(&e);
            Closed
        })
    }
}

impl InputSender {
    /// The channel's waits.
    pub fn channel(&self) -> &Arc<crate::metrics::ChannelTimes> {
        match self {
            InputSender::Local { channel, .. } => channel,
            InputSender::Remote(r) => &r.channel,
        }
    }

    fn send(&self, message: MessageKind) -> Result<(), Closed> {
        use crate::remote::ChannelMessage;
        match self {
            InputSender::Local { inbox, input, channel } => inbox.send_on(*input, message, Some(channel)),
            InputSender::Remote(r) => r.send(match message {
                MessageKind::Data(b) => ChannelMessage::Data(b),
                MessageKind::Idle(idle) => ChannelMessage::Idle(idle),
                MessageKind::Barrier(id) => ChannelMessage::Barrier(id),
                MessageKind::End => ChannelMessage::End,
                MessageKind::Priority { id, .. } | MessageKind::Overtaking { id, .. } => ChannelMessage::Priority(id),
            }),
        }
    }

    /// [`InputSender::send`] without waiting for room in a local queue
    /// (a remote channel still waits for credit).
    fn send_now(&self, message: MessageKind) -> Result<(), Closed> {
        match self {
            InputSender::Local { inbox, input, .. } => inbox.push_now(*input, message),
            InputSender::Remote(_) => self.send(message),
        }
    }

    fn send_first(&self, id: u64) -> Result<(), Closed> {
        match self {
            InputSender::Local { inbox, input, .. } => inbox.send_first(*input, id),
            // It overtakes what is queued on the consumer's side.
            InputSender::Remote(r) => r.send(crate::remote::ChannelMessage::Priority(id)),
        }
    }
}

/// Why routing stopped.
#[derive(Debug)]
pub(crate) enum RouteError {
    /// A consumer's inbox is closed: the job is being torn down.
    Cancelled,
    /// A record could not be keyed: the message names it.
    Key(String),
}

impl From<Closed> for RouteError {
    fn from(_: Closed) -> Self {
        RouteError::Cancelled
    }
}

pub(crate) enum Route {
    Forward,
    Hash {
        selector: KeySelector,
        max_parallelism: u32,
    },
    Rebalance {
        next: usize,
    },
    /// Round-robin over targets `first..first + count` (the producer's
    /// share); watermarks go to every target.
    Rescale {
        next: usize,
        first: usize,
        count: usize,
    },
    /// Every batch to every target.
    Broadcast,
}

/// Sends one stream of a subtask to the subtasks of one consumer vertex.
pub(crate) struct Router {
    pub consumer: String,
    pub route: Route,
    /// One input per target subtask (one for forward).
    pub targets: Vec<InputSender>,
    buffers: Vec<Batch>,
    /// A keyed route's buffer timeout: parts of batches wait to go with
    /// later ones (`None`: each goes at once).
    linger: Option<Linger>,
}

/// How long, and up to what size, a keyed route's parts wait.
struct Linger {
    timeout: Duration,
    /// A part this large goes at once.
    events: usize,
    bytes: usize,
    /// Since when a part has waited.
    since: Option<Instant>,
}

fn key_from_json(value: &[u8], pointer: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(value)
        .map_err(|e| format!("value is not JSON ({e}), so it cannot be keyed by `{pointer}`"))?;
    match v.pointer(pointer) {
        Some(serde_json::Value::String(s)) => out.extend_from_slice(s.as_bytes()),
        Some(other) => serde_json::to_writer(&mut *out, other).map_err(|e| e.to_string())?,
        None => return Err(format!("value has no field `{pointer}` to key by; fix the data or `key-by` in the spec")),
    }
    Ok(())
}

impl Router {
    pub fn new(consumer: String, route: Route, targets: Vec<InputSender>) -> Self {
        let buffers = (0..targets.len()).map(|_| Batch::new()).collect();
        Router { consumer, route, targets, buffers, linger: None }
    }

    /// A keyed route whose parts of batches wait up to `timeout` (the
    /// job's buffer timeout) to go as one batch of up to `events` events
    /// or `bytes` bytes; 0 sends each at once.
    pub fn lingering(mut self, timeout: Duration, events: usize, bytes: usize) -> Self {
        if !timeout.is_zero() && matches!(self.route, Route::Hash { .. }) {
            self.linger = Some(Linger { timeout, events, bytes, since: None });
        }
        self
    }

    /// Sends what waits in the buffers.
    pub fn flush(&mut self) -> Result<(), Closed> {
        if let Some(l) = &mut self.linger {
            l.since = None;
        }
        for t in 0..self.buffers.len() {
            if !self.buffers[t].is_void() {
                self.send_buffer(t)?;
            }
        }
        Ok(())
    }

    /// Sends what has waited its buffer timeout by `now`; how long until
    /// the next part is due (`None`: none waits).
    pub fn flush_due(&mut self, now: Instant) -> Result<Option<Duration>, Closed> {
        let Some(l) = &self.linger else { return Ok(None) };
        let Some(since) = l.since else { return Ok(None) };
        let due = since + l.timeout;
        if now >= due {
            self.flush()?;
            return Ok(None);
        }
        Ok(Some(due - now))
    }

    /// Sends buffer `t` ([`send_part`]).
    fn send_buffer(&mut self, t: usize) -> Result<(), Closed> {
        send_part(&mut self.buffers, &self.targets, t)
    }

    /// Its channels' waits, one per target.
    pub fn channels(&self) -> impl Iterator<Item = &Arc<crate::metrics::ChannelTimes>> {
        self.targets.iter().map(InputSender::channel)
    }

    fn broadcast(&self, kind: impl Fn() -> MessageKind) -> Result<(), Closed> {
        for t in &self.targets {
            t.send(kind())?;
        }
        Ok(())
    }

    /// Routes a batch; watermarks go to every target. Keyed routes stamp
    /// each event with its key group.
    pub fn route(&mut self, batch: Batch, key_buf: &mut Vec<u8>) -> Result<(), RouteError> {
        if batch.is_void() {
            return Ok(());
        }
        match &mut self.route {
            Route::Forward => Ok(self.targets[0].send(MessageKind::Data(batch))?),
            Route::Rebalance { next } => {
                let target = *next % self.targets.len();
                *next += 1;
                if let Some(wm) = batch.last_watermark() {
                    for t in (0..self.targets.len()).filter(|&t| t != target) {
                        self.targets[t].send(MessageKind::Data(Batch::watermark(wm)))?;
                    }
                }
                Ok(self.targets[target].send(MessageKind::Data(batch))?)
            }
            Route::Rescale { next, first, count } => {
                let target = *first + *next % (*count).max(1);
                *next += 1;
                if let Some(wm) = batch.last_watermark() {
                    for t in (0..self.targets.len()).filter(|&t| t != target) {
                        self.targets[t].send(MessageKind::Data(Batch::watermark(wm)))?;
                    }
                }
                Ok(self.targets[target].send(MessageKind::Data(batch))?)
            }
            Route::Broadcast => {
                let last = self.targets.len() - 1;
                for t in &self.targets[..last] {
                    t.send(MessageKind::Data(batch.clone()))?;
                }
                Ok(self.targets[last].send(MessageKind::Data(batch))?)
            }
            Route::Hash { selector, max_parallelism } => {
                let parallelism = self.targets.len() as u32;
                let mut marks = batch.marks().iter().peekable();
                let hold = self.linger.is_some();
                for i in 0..batch.len() {
                    while let Some(m) = marks.next_if(|m| m.after as usize == i) {
                        push_mark(&mut self.buffers, &self.targets, hold, m)?;
                    }
                    let e = batch.event(i);
                    let key = match selector {
                        KeySelector::EventKey if e.key.is_empty() => {
                            return Err(RouteError::Key(format!(
                                "the record from offset {} has no key, but `{}` is keyed by `@key`; \
                                 set a key upstream (an operator's emit) or key by a field",
                                e.origin, self.consumer
                            )));
                        }
                        KeySelector::EventKey => e.key,
                        KeySelector::Pointer(p) => {
                            key_buf.clear();
                            key_from_json(e.value, p, key_buf).map_err(|m| {
                                RouteError::Key(format!(
                                    "cannot key the record from offset {} for `{}`: {m}",
                                    e.origin, self.consumer
                                ))
                            })?;
                            key_buf.as_slice()
                        }
                    };
                    let group = key_group(key, *max_parallelism);
                    let t = subtask_of_group(group, *max_parallelism, parallelism) as usize;
                    // A held part goes once it is a batch's size: parts
                    // never outgrow the batch limits (or a frame's).
                    if let Some(l) = &self.linger
                        && (self.buffers[t].len() >= l.events || self.buffers[t].bytes() >= l.bytes)
                    {
                        send_part(&mut self.buffers, &self.targets, t)?;
                    }
                    self.buffers[t].push_keyed(key, group as u16, e.value, e.timestamp, e.origin);
                }
                for m in marks {
                    push_mark(&mut self.buffers, &self.targets, hold, m)?;
                }
                let mut held = false;
                for t in 0..self.buffers.len() {
                    if self.buffers[t].is_void() {
                        continue;
                    }
                    let small = |l: &Linger, b: &Batch| b.len() < l.events && b.bytes() < l.bytes;
                    if self.linger.as_ref().is_some_and(|l| small(l, &self.buffers[t])) {
                        held = true;
                        continue;
                    }
                    self.send_buffer(t)?;
                }
                if let Some(l) = &mut self.linger
                    && held
                    && l.since.is_none()
                {
                    l.since = Some(Instant::now());
                }
                Ok(())
            }
        }
    }

    /// Tells every target this subtask is idle (or active again), after
    /// what waits.
    pub fn idle(&mut self, idle: bool) -> Result<(), Closed> {
        self.flush()?;
        self.broadcast(|| MessageKind::Idle(idle))
    }

    /// Sends checkpoint `id`'s barrier to every target, after what waits
    /// in the buffers: behind what was sent before it, or (`unaligned`)
    /// ahead of what is still queued (which the consumer keeps with its
    /// part of the checkpoint).
    pub fn barrier(&mut self, id: u64, unaligned: bool) -> Result<(), Closed> {
        if unaligned {
            // Held parts join the queue at once, whatever its fill: the
            // barrier overtakes them with the rest, and the consumer keeps
            // them with its part of the checkpoint.
            if let Some(l) = &mut self.linger {
                l.since = None;
            }
            for t in 0..self.buffers.len() {
                if !self.buffers[t].is_void() {
                    let part = std::mem::take(&mut self.buffers[t]);
                    self.targets[t].send_now(MessageKind::Data(part))?;
                }
            }
        } else {
            self.flush()?;
        }
        if unaligned {
            self.targets.iter().try_for_each(|t| t.send_first(id))
        } else {
            self.broadcast(|| MessageKind::Barrier(id))
        }
    }

    /// Tells every target this subtask has ended, after what waits.
    pub fn end(&mut self) -> Result<(), Closed> {
        self.flush()?;
        self.broadcast(|| MessageKind::End)
    }
}

/// Puts watermark `m` in every buffer. A part held back (`hold`) that
/// ends in a watermark goes first: the new one would take the old one's
/// place, and the consumer would never see the old one (its timers
/// would fire at a later watermark than they should).
fn push_mark(buffers: &mut [Batch], targets: &[InputSender], hold: bool, m: &Mark) -> Result<(), Closed> {
    for t in 0..buffers.len() {
        let b = &buffers[t];
        let merges = b.marks().last().is_some_and(|l| l.after as usize >= b.len() && l.watermark < m.watermark);
        if hold && merges {
            send_part(buffers, targets, t)?;
        }
        buffers[t].mark(m.watermark);
    }
    Ok(())
}

/// Sends buffer `t` to its target; the next starts as large as it ended,
/// plus an eighth: growing it event by event copies it again and again,
/// and batches differ by a few events.
fn send_part(buffers: &mut [Batch], targets: &[InputSender], t: usize) -> Result<(), Closed> {
    let (cap, bytes) = (buffers[t].len(), buffers[t].bytes());
    let next = Batch::with_capacity(cap + cap / 8, bytes + bytes / 8);
    let full = std::mem::replace(&mut buffers[t], next);
    targets[t].send(MessageKind::Data(full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn data(n: usize) -> MessageKind {
        let mut b = Batch::new();
        for i in 0..n {
            b.push(b"", &[0u8; 100], i as i64, 0);
        }
        MessageKind::Data(b)
    }

    #[test]
    fn an_unaligned_barrier_goes_ahead_of_queued_data_with_copies_of_it() {
        // A full queue: a plain send would wait; the barrier does not.
        let full = Inbox::new(1, 1);
        full.send(0, data(1)).unwrap();
        full.send_first(0, 1).unwrap();
        let inbox = Inbox::new(1, 1 << 20);
        inbox.send(0, data(1)).unwrap();
        inbox.send(0, MessageKind::Idle(true)).unwrap();
        inbox.send_first(0, 3).unwrap();
        inbox.send(0, data(2)).unwrap();
        let Recv::Message(0, MessageKind::Overtaking { id: 3, overtaken }) = inbox.recv(Duration::ZERO).unwrap() else {
            panic!("the barrier comes first");
        };
        assert_eq!(
            overtaken.iter().map(Batch::len).collect::<Vec<_>>(),
            vec![1],
            "the data it overtook, not what came after"
        );
        let Recv::Message(0, MessageKind::Data(b)) = inbox.recv(Duration::ZERO).unwrap() else { panic!() };
        assert_eq!(b.len(), 1, "the overtaken data is still processed");
    }

    /// A keyed router to one consumer subtask of `inbox`'s input 0.
    fn keyed(inbox: &Arc<Inbox>, timeout: Duration) -> Router {
        let channel = crate::metrics::ChannelTimes::new("next", 0, false);
        let target = InputSender::Local { inbox: inbox.clone(), input: 0, channel };
        let route = Route::Hash { selector: KeySelector::EventKey, max_parallelism: 128 };
        Router::new("next".into(), route, vec![target]).lingering(timeout, 100, 1 << 20)
    }

    fn keyed_batch(n: usize, watermark: i64) -> Batch {
        let mut b = Batch::new();
        for i in 0..n {
            b.push(b"k", b"v", i as i64, 0);
        }
        b.mark(watermark);
        b
    }

    fn events(inbox: &Inbox) -> Vec<usize> {
        let mut got = Vec::new();
        while let Ok(Recv::Message(_, m)) = inbox.recv(Duration::ZERO) {
            got.push(match m {
                MessageKind::Data(b) => b.len(),
                MessageKind::Barrier(_) => usize::MAX,
                _ => 0,
            });
        }
        got
    }

    #[test]
    fn a_keyed_route_holds_small_parts_until_its_buffer_timeout_or_size_and_before_a_barrier() {
        let inbox = Inbox::new(1, 1 << 20);
        let mut r = keyed(&inbox, Duration::from_millis(50));
        let mut key = Vec::new();
        r.route(keyed_batch(10, 1), &mut key).unwrap();
        r.route(keyed_batch(10, 2), &mut key).unwrap();
        assert_eq!(events(&inbox), Vec::<usize>::new(), "two small parts wait");
        let t0 = Instant::now();
        let left = r.flush_due(t0).unwrap().expect("a part waits");
        assert!(left <= Duration::from_millis(50));
        assert_eq!(r.flush_due(t0 + Duration::from_millis(51)).unwrap(), None, "due: sent");
        assert_eq!(events(&inbox), vec![20], "as one batch");

        r.route(keyed_batch(150, 3), &mut key).unwrap();
        assert_eq!(events(&inbox), vec![100], "a part goes once it is a batch's size, never larger");
        r.route(keyed_batch(5, 4), &mut key).unwrap();
        r.barrier(7, false).unwrap();
        assert_eq!(events(&inbox), vec![55, usize::MAX], "what waits goes before the barrier");

        // A watermark with nothing after the last one sends what waits,
        // so the consumer sees each.
        r.route(keyed_batch(5, 5), &mut key).unwrap();
        r.route(keyed_batch(0, 6), &mut key).unwrap();
        let inbox_marks: Vec<i64> = std::iter::from_fn(|| match inbox.recv(Duration::ZERO) {
            Ok(Recv::Message(_, MessageKind::Data(b))) => {
                Some(b.marks().iter().map(|m| m.watermark).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
        assert_eq!(inbox_marks, vec![5], "watermark 5 went before 6 could take its place");
        r.end().unwrap();
        let Ok(Recv::Message(_, MessageKind::Data(b))) = inbox.recv(Duration::ZERO) else {
            panic!("6 comes at the end")
        };
        assert_eq!(b.last_watermark(), Some(6));

        // An unaligned barrier does not wait for room: what is held joins
        // the full queue at once, for the barrier to overtake.
        let tight = Inbox::new(1, 1);
        let mut r2 = keyed(&tight, Duration::from_millis(50));
        tight.send(0, data(1)).unwrap();
        r2.route(keyed_batch(10, 1), &mut key).unwrap();
        r2.barrier(9, true).unwrap();
        let Ok(Recv::Message(0, MessageKind::Overtaking { id: 9, overtaken })) = tight.recv(Duration::ZERO) else {
            panic!("the barrier first")
        };
        assert_eq!(overtaken.iter().map(Batch::len).collect::<Vec<_>>(), vec![1, 10], "with the held part behind it");

        // Without a buffer timeout every part goes at once.
        let inbox = Inbox::new(1, 1 << 20);
        let mut r = keyed(&inbox, Duration::ZERO);
        r.route(keyed_batch(10, 1), &mut key).unwrap();
        assert_eq!(events(&inbox), vec![10]);
    }

    #[test]
    fn a_held_input_stays_queued_while_others_drain() {
        let inbox = Inbox::new(2, 1 << 20);
        inbox.send(0, data(1)).unwrap();
        inbox.send(1, MessageKind::End).unwrap();
        inbox.hold(0, true);
        assert!(matches!(inbox.recv(Duration::ZERO).unwrap(), Recv::Message(1, MessageKind::End)));
        assert!(matches!(inbox.recv(Duration::ZERO).unwrap(), Recv::Timeout));
        inbox.hold(0, false);
        assert!(matches!(inbox.recv(Duration::ZERO).unwrap(), Recv::Message(0, MessageKind::Data(_))));
    }

    #[test]
    fn a_full_queue_blocks_its_sender_until_the_receiver_takes() {
        let inbox = Inbox::new(1, 1000);
        inbox.send(0, data(10)).unwrap();
        let sender = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                inbox.send(0, data(1)).unwrap();
                t.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(inbox.recv(Duration::ZERO).unwrap(), Recv::Message(0, _)));
        assert!(sender.join().unwrap() >= Duration::from_millis(90), "the sender waited for room");
    }

    #[test]
    fn closing_wakes_blocked_senders_and_the_receiver() {
        let inbox = Inbox::new(1, 10);
        inbox.send(0, data(1)).unwrap();
        let sender = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.send(0, data(1)))
        };
        std::thread::sleep(Duration::from_millis(50));
        inbox.close();
        assert_eq!(sender.join().unwrap(), Err(Closed));
        assert!(inbox.recv(Duration::from_secs(5)).is_err());
    }

    #[test]
    fn inputs_are_taken_in_turn() {
        let inbox = Inbox::new(3, 1 << 20);
        for _ in 0..2 {
            for i in 0..3 {
                inbox.send(i, MessageKind::Idle(false)).unwrap();
            }
        }
        let order: Vec<usize> = (0..6)
            .map(|_| match inbox.recv(Duration::ZERO).unwrap() {
                Recv::Message(i, _) => i,
                Recv::Timeout => panic!("queued messages must be found"),
            })
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }
}
