//! Data exchange between tasks: bounded channels carrying batches (with
//! in-band watermarks), idleness and end-of-input, and the routers that
//! partition a task's output over the next vertex's subtasks.

use crate::TaskError;
use std::sync::mpsc::SyncSender;
use weir_core::keys::subtask_of_key;
use weir_core::spec::KeySelector;
use weir_core::{Batch, Mark};

/// What travels on a channel, tagged with the sender's input index at the
/// receiver (for watermark combination).
pub(crate) struct Message {
    pub input: u32,
    pub kind: MessageKind,
}

pub(crate) enum MessageKind {
    Data(Batch),
    Idle(bool),
    End,
}

/// Why routing stopped.
pub(crate) enum RouteError {
    /// A receiver is gone: the job is being torn down after another error.
    Cancelled,
    /// A record could not be keyed: the message names it.
    Key(String),
}

pub(crate) enum Route {
    Forward,
    Hash { selector: KeySelector, max_parallelism: u32 },
    Rebalance { next: usize },
}

/// Sends one stream of a subtask to the subtasks of one consumer vertex.
pub(crate) struct Router {
    pub consumer: String,
    pub route: Route,
    /// One sender per target subtask (one for forward).
    pub targets: Vec<SyncSender<Message>>,
    /// This subtask's input index at the receivers.
    pub input: u32,
    buffers: Vec<Batch>,
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
    pub fn new(consumer: String, route: Route, targets: Vec<SyncSender<Message>>, input: u32) -> Self {
        let buffers = (0..targets.len()).map(|_| Batch::new()).collect();
        Router { consumer, route, targets, input, buffers }
    }

    fn send(&self, target: usize, batch: Batch) -> Result<(), TaskError> {
        self.targets[target]
            .send(Message { input: self.input, kind: MessageKind::Data(batch) })
            .map_err(|_| TaskError::cancelled())
    }

    fn broadcast(&self, kind: impl Fn() -> MessageKind) -> Result<(), TaskError> {
        for t in &self.targets {
            t.send(Message { input: self.input, kind: kind() }).map_err(|_| TaskError::cancelled())?;
        }
        Ok(())
    }

    /// Routes a batch; watermarks go to every target.
    pub fn route(&mut self, batch: Batch, key_buf: &mut Vec<u8>) -> Result<(), RouteError> {
        if batch.is_void() {
            return Ok(());
        }
        let cancelled = |_| RouteError::Cancelled;
        match &mut self.route {
            Route::Forward => self.send(0, batch).map_err(cancelled),
            Route::Rebalance { next } => {
                let target = *next % self.targets.len();
                *next += 1;
                if let Some(wm) = batch.last_watermark() {
                    for t in (0..self.targets.len()).filter(|&t| t != target) {
                        let mut marks = Batch::new();
                        marks.mark(wm);
                        self.send(t, marks).map_err(cancelled)?;
                    }
                }
                self.send(target, batch).map_err(cancelled)
            }
            Route::Hash { selector, max_parallelism } => {
                let parallelism = self.targets.len() as u32;
                let mut marks = batch.marks.iter().peekable();
                for i in 0..batch.len() {
                    while let Some(m) = marks.next_if(|m| m.after as usize == i) {
                        push_mark(&mut self.buffers, m);
                    }
                    let e = batch.event(i);
                    let key = match selector {
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
                    let t = subtask_of_key(key, *max_parallelism, parallelism) as usize;
                    self.buffers[t].push(key, e.value, e.timestamp, e.origin);
                }
                for m in marks {
                    push_mark(&mut self.buffers, m);
                }
                for t in 0..self.buffers.len() {
                    if !self.buffers[t].is_void() {
                        let cap = self.buffers[t].len();
                        let full = std::mem::replace(&mut self.buffers[t], Batch::with_capacity(cap, cap * 16));
                        self.send(t, full).map_err(cancelled)?;
                    }
                }
                Ok(())
            }
        }
    }

    pub fn idle(&self, idle: bool) -> Result<(), TaskError> {
        self.broadcast(|| MessageKind::Idle(idle))
    }

    pub fn end(&self) -> Result<(), TaskError> {
        self.broadcast(|| MessageKind::End)
    }
}

fn push_mark(buffers: &mut [Batch], m: &Mark) {
    for b in buffers {
        b.mark(m.watermark);
    }
}
