//! Channels to and from subtasks in other processes: the runtime's side
//! of a job spread over several workers. The runtime knows nothing of
//! the network; whoever runs a part of a job gives [`start`](crate::start)
//! a [`Placement`]: which slots run here, and a [`RemoteExchange`] that
//! makes a [`RemoteSender`] for every channel into a subtask elsewhere,
//! and is handed a [`RemoteInbox`] for every subtask here that producers
//! elsewhere write into. The cluster (`weir-coordinator`) implements it
//! over QUIC, a stream per channel, its flow control the credit.

use crate::exchange::{Inbox, MessageKind};
use crate::job::JobShared;
use crate::task::TaskError;
use std::sync::{Arc, Weak};
use weir_core::Batch;

/// What travels on a channel between processes, in order.
#[derive(Debug)]
pub enum ChannelMessage {
    /// Events and the watermarks between them.
    Data(Batch),
    /// The producer went idle (`true`) or active again.
    Idle(bool),
    /// An aligned checkpoint's barrier.
    Barrier(u64),
    /// An unaligned checkpoint's barrier.
    Priority(u64),
    /// The producer ended: nothing follows.
    End,
}

/// One channel into a subtask in another process. Sends block while the
/// channel has no credit (backpressure).
pub trait RemoteSender: Send {
    /// Whether a message can go now, without waiting for credit.
    fn has_room(&self) -> bool;
    /// Sends a message; `Err` says why the channel failed.
    fn send(&mut self, message: ChannelMessage) -> Result<(), String>;
}

/// The part of a job that runs in this process.
pub struct Placement {
    /// Per slot (slot `i` holds subtask `i` of every vertex): whether it
    /// runs here.
    pub local: Vec<bool>,
    /// The channels to and from the other slots.
    pub exchange: Arc<dyn RemoteExchange>,
    /// The coordinator's link, when the job takes checkpoints.
    pub checkpoints: Option<crate::checkpoint::CheckpointLink>,
}

impl Placement {
    /// Whether subtask `s` of every vertex runs here.
    pub fn is_local(&self, s: u32) -> bool {
        self.local.get(s as usize).copied().unwrap_or(false)
    }
}

/// Makes and takes a job's channels to and from other processes.
pub trait RemoteExchange: Send + Sync {
    /// The channel from subtask `from` (of a vertex upstream) into input
    /// `input` of subtask `subtask` of vertex `vertex`, which runs
    /// elsewhere, and what closes it (waking a sender waiting for
    /// credit) when the job stops. A channel that breaks later tells
    /// `failure`.
    fn connect(
        &self,
        vertex: &str,
        subtask: u32,
        input: usize,
        from: u32,
        failure: ChannelFailure,
    ) -> (Box<dyn RemoteSender>, Arc<dyn Fn() + Send + Sync>);
    /// Subtask `subtask` of vertex `vertex` runs here: producers elsewhere
    /// write into `inbox`.
    fn serve(&self, vertex: &str, subtask: u32, inbox: RemoteInbox);
}

/// Where a channel to another process reports that it broke: its job
/// fails, naming both ends (unless the job is stopping anyway).
#[derive(Clone)]
pub struct ChannelFailure {
    pub(crate) job: Weak<JobShared>,
    /// (what, vertex, subtask) of the producer.
    pub(crate) producer: (&'static str, String, u32),
    /// (vertex, subtask) of the consumer.
    pub(crate) consumer: (String, u32),
}

impl ChannelFailure {
    /// The channel broke: `why`.
    pub fn fail(&self, why: &str) {
        if let Some(job) = self.job.upgrade() {
            let (what, vertex, subtask) = &self.producer;
            job.fail(TaskError {
                what,
                vertex: vertex.clone(),
                subtask: *subtask,
                record: None,
                message: format!("its channel to `{}` subtask {} failed: {why}", self.consumer.0, self.consumer.1),
                cancelled: false,
            });
        }
    }
}

/// The inbox of a subtask here, as channels from elsewhere write into it.
#[derive(Clone)]
pub struct RemoteInbox {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) inputs: usize,
    /// Per input edge: its first input, how many (one per upstream
    /// subtask, or one for forward), and whether it is forward.
    pub(crate) edges: Vec<(usize, usize, bool)>,
    /// The key groups this subtask owns, when an input is keyed.
    pub(crate) groups: Option<std::ops::RangeInclusive<u16>>,
    pub(crate) vertex: String,
    pub(crate) subtask: u32,
    pub(crate) what: &'static str,
    pub(crate) job: Weak<JobShared>,
}

impl RemoteInbox {
    /// Its number of inputs (one per upstream subtask and edge).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Whether its job still runs here (a channel for a job that ended
    /// may be dropped).
    pub fn alive(&self) -> bool {
        self.job.upgrade().is_some_and(|j| !j.cancelled() && j.running())
    }

    /// Whether upstream subtask `from` may send into input `input`: the
    /// input of that subtask on one of the edges (forward: only the
    /// subtask of the same number).
    pub fn check_channel(&self, input: usize, from: u32) -> Result<(), String> {
        let from = from as usize;
        let fits = self.edges.iter().any(|&(base, n, forward)| {
            (base..base + n).contains(&input)
                && if forward { from == self.subtask as usize } else { input - base == from }
        });
        match fits {
            true => Ok(()),
            false => Err(format!(
                "input {input} of `{}` subtask {} is not upstream subtask {from}'s",
                self.vertex, self.subtask
            )),
        }
    }

    /// Puts `message` into input `input`, waiting while the input is full.
    /// `Err`: the input does not exist, or the job is being torn down.
    pub fn deliver(&self, input: usize, message: ChannelMessage) -> Result<(), String> {
        if !self.alive() {
            return Err("its job is not running here any more".into());
        }
        if input >= self.inputs {
            return Err(format!(
                "input {input} of `{}` subtask {} does not exist (it has {})",
                self.vertex, self.subtask, self.inputs
            ));
        }
        if let (ChannelMessage::Data(b), Some(own)) = (&message, &self.groups)
            && let Some(&g) = b.key_groups().iter().find(|&&g| g != weir_core::NO_KEY_GROUP && !own.contains(&g))
        {
            return Err(format!(
                "a record of key group {g} came to `{}` subtask {}, which owns key groups {} to {}: the producer \
                 routed it wrong",
                self.vertex,
                self.subtask,
                own.start(),
                own.end()
            ));
        }
        let sent = match message {
            ChannelMessage::Data(b) => self.inbox.send(input, MessageKind::Data(b)),
            ChannelMessage::Idle(idle) => self.inbox.send(input, MessageKind::Idle(idle)),
            ChannelMessage::Barrier(id) => self.inbox.send(input, MessageKind::Barrier(id)),
            ChannelMessage::Priority(id) => self.inbox.send_first(input, id),
            ChannelMessage::End => self.inbox.send(input, MessageKind::End),
        };
        sent.map_err(|_| "the job is being torn down".to_owned())
    }

    /// A channel into it broke: its job fails with `message`.
    pub fn fail(&self, message: String) {
        if let Some(job) = self.job.upgrade() {
            job.fail(TaskError {
                what: self.what,
                vertex: self.vertex.clone(),
                subtask: self.subtask,
                record: None,
                message,
                cancelled: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Batch;

    /// Subtask 1 of 2 of `count` (key groups 64 to 127 of 128), reading
    /// a keyed edge from two upstream subtasks (inputs 0 and 1) and a
    /// forward edge (input 2).
    fn inbox(job: &Arc<JobShared>) -> RemoteInbox {
        RemoteInbox {
            inbox: Inbox::new(3, 1 << 20),
            inputs: 3,
            edges: vec![(0, 2, false), (2, 1, true)],
            groups: weir_core::keys::key_group_range(1, 128, 2),
            vertex: "count".into(),
            subtask: 1,
            what: "operator",
            job: Arc::downgrade(job),
        }
    }

    #[test]
    fn a_channel_is_refused_on_an_input_not_its_producers_and_a_record_outside_the_subtasks_key_groups() {
        let job = Arc::new(JobShared::new(vec![2]));
        let inbox = inbox(&job);
        assert!(inbox.check_channel(0, 0).is_ok() && inbox.check_channel(1, 1).is_ok());
        assert!(inbox.check_channel(2, 1).is_ok(), "forward: the subtask of the same number");
        let e = inbox.check_channel(0, 1).unwrap_err();
        assert!(e.contains("input 0 of `count` subtask 1 is not upstream subtask 1's"), "{e}");
        assert!(inbox.check_channel(2, 0).is_err(), "forward from another subtask");
        assert!(inbox.check_channel(3, 0).is_err(), "no such input");

        let mut own = Batch::new();
        own.push_keyed(b"a", 100, b"v", 1, 0);
        inbox.deliver(0, ChannelMessage::Data(own)).unwrap();
        let mut stray = Batch::new();
        stray.push_keyed(b"b", 3, b"v", 1, 0);
        let e = inbox.deliver(0, ChannelMessage::Data(stray)).unwrap_err();
        assert!(e.contains("key group 3") && e.contains("owns key groups 64 to 127"), "{e}");
    }
}
