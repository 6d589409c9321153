//! The data plane between workers: a job spread over several workers
//! sends each channel (producer subtask → consumer subtask) on its own
//! QUIC stream of the connection between the two workers, mutual TLS
//! under the cluster CA. A stream starts with a [`ChannelHeader`] saying
//! which inbox it feeds, then carries `weir-net` frames (rkyv, CRC-32,
//! checked on receipt). The stream's flow control is the channel's
//! credit: a consumer that does not keep up stalls only the producers of
//! its own channels.
//!
//! [`JobExchange`] is the runtime's [`RemoteExchange`] for one execution
//! of one job: channels out are [`QuicSender`]s, each with a writer task;
//! channels in are read by a thread each ([`DataPlane::receive`]) that
//! delivers into the subtask's inbox, waiting while it is full.

use crate::lock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weir_net::channel;
use weir_net::frame::{Frame, Received, WireBatch};
use weir_net::pki::Identity;
use weir_runtime::{ChannelFailure, ChannelMessage, RemoteExchange, RemoteInbox, RemoteSender};

/// Channels one connection between two workers carries (all jobs'
/// together) before a stalled one could take another's room (see
/// `weir_net::channel::transport`): 256 streams and a 64 MiB window, the
/// most a peer makes this worker buffer. A keyed edge of parallelism p
/// spread over w workers needs (p/w)² of them per pair.
const CHANNELS: u32 = 256;

/// How long a channel waits for the part of its job it feeds to start
/// (parts are deployed one after another, each fetching and compiling).
const INBOX_WAIT: Duration = Duration::from_secs(300);

/// The largest channel header a worker reads.
const MAX_HEADER: usize = 4096;

/// Frames queued per channel before its producer waits (on top of the
/// stream's window).
const QUEUED_FRAMES: usize = 2;

/// A worker as a channel's other end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Peer {
    /// Its name (its certificate's).
    pub name: String,
    /// Its data-plane address.
    pub addr: SocketAddr,
}

/// What a channel's stream starts with.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ChannelHeader {
    /// The execution of the job (a random id per deployment).
    exchange: String,
    /// The consumer vertex.
    vertex: String,
    /// Its subtask.
    subtask: u32,
    /// Which of its inputs.
    input: usize,
    /// The producer's subtask (its slot: the sender must be the worker
    /// that runs it).
    from: u32,
}

type InboxKey = (String, String, u32);

/// An inbox channels may feed: the key groups of its job, and who runs
/// which slot.
#[derive(Clone)]
struct Served {
    inbox: RemoteInbox,
    key_groups: u32,
    slots: Arc<Vec<Peer>>,
}

/// One worker's data plane: its QUIC endpoint (server and client), its
/// connections to other workers, and the inboxes that channels feed.
pub(crate) struct DataPlane {
    name: String,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    handle: tokio::runtime::Handle,
    peers: tokio::sync::Mutex<HashMap<String, quinn::Connection>>,
    inboxes: Mutex<HashMap<InboxKey, Served>>,
    registered: Condvar,
}

impl DataPlane {
    /// Opens the data plane of worker `name` on `bind` (UDP).
    pub fn open(
        name: &str,
        identity: &Identity,
        ca: &[u8],
        bind: SocketAddr,
        handle: &tokio::runtime::Handle,
    ) -> Result<Arc<DataPlane>, String> {
        let server = weir_net::tls::server(identity, ca, true).map_err(|e| e.to_string())?;
        let mut server = weir_net::join::quic_server(server).map_err(|e| e.0)?;
        server.transport_config(channel::transport(CHANNELS));
        let client = weir_net::tls::client(identity, ca).map_err(|e| e.to_string())?;
        let mut client = weir_net::join::quic_client(client).map_err(|e| e.0)?;
        client.transport_config(channel::transport(CHANNELS));
        let endpoint = {
            let _in = handle.enter();
            channel::endpoint(bind, Some(server)).map_err(|e| format!("cannot open the data plane on {bind}: {e}"))?
        };
        let plane = Arc::new(DataPlane {
            name: name.to_owned(),
            endpoint,
            client,
            handle: handle.clone(),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            inboxes: Mutex::new(HashMap::new()),
            registered: Condvar::new(),
        });
        handle.spawn(plane.clone().accept());
        Ok(plane)
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes it: every channel of this worker's jobs ends.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"the worker left the cluster");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.endpoint.local_addr().map_or(0, |a| a.port())
    }

    async fn accept(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let plane = self.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                // The server asks for a certificate of the cluster CA.
                let from = weir_net::tls::peer_name(&connection).unwrap_or_default();
                while let Ok(stream) = connection.accept_uni().await {
                    let (plane, named) = (plane.clone(), from.clone());
                    let spawned = std::thread::Builder::new()
                        .name("weir-channel-in".into())
                        .spawn(move || plane.receive(stream, &named));
                    if let Err(e) = spawned {
                        tracing::warn!("cannot start a thread for a channel from `{from}`: {e}");
                    }
                }
            });
        }
    }

    /// Reads one channel into its inbox, to its end.
    fn receive(&self, mut stream: quinn::RecvStream, from: &str) {
        let header = self.handle.block_on(async {
            let read = weir_net::control::read_at_most::<ChannelHeader>(&mut stream, MAX_HEADER);
            tokio::time::timeout(Duration::from_secs(10), read).await
        });
        let header = match header {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return tracing::warn!("a channel from `{from}` did not say where it goes: {e}"),
            Err(_) => return tracing::warn!("a channel from `{from}` did not say where it goes within 10 s"),
        };
        let key = (header.exchange.clone(), header.vertex.clone(), header.subtask);
        let Some(Served { inbox, key_groups, slots }) = self.wait_inbox(&key) else {
            tracing::warn!(
                "a channel from `{from}` into `{}` subtask {}: no such part of a job runs here",
                header.vertex,
                header.subtask
            );
            let _ = stream.stop(1u32.into());
            return;
        };
        if slots.get(header.from as usize).is_none_or(|p| p.name != from) {
            tracing::warn!(
                "worker `{from}` sent a channel from slot {} into `{}` subtask {}, and that slot is not its own: refused",
                header.from,
                header.vertex,
                header.subtask
            );
            let _ = stream.stop(1u32.into());
            return;
        }
        if let Err(e) = inbox.check_channel(header.input, header.from) {
            tracing::warn!("worker `{from}` sent a channel from slot {}: {e}: refused", header.from);
            let _ = stream.stop(1u32.into());
            return;
        }
        let place = format!(
            "the channel from worker `{from}` into `{}` subtask {} (input {})",
            header.vertex, header.subtask, header.input
        );
        loop {
            let message = match self.handle.block_on(channel::recv(&mut stream, key_groups)) {
                Ok(Some(Received::Data(b))) => ChannelMessage::Data(b),
                Ok(Some(Received::Idle(idle))) => ChannelMessage::Idle(idle),
                Ok(Some(Received::Barrier(id))) => ChannelMessage::Barrier(id),
                Ok(Some(Received::Priority(id))) => ChannelMessage::Priority(id),
                Ok(Some(Received::End)) => ChannelMessage::End,
                Ok(None) => {
                    if inbox.alive() {
                        inbox.fail(format!("{place} ended before the end of its input (its producer stopped)"));
                    }
                    return;
                }
                Err(e) => {
                    if inbox.alive() {
                        inbox.fail(format!("{place} failed: {e}"));
                    }
                    let _ = stream.stop(2u32.into());
                    return;
                }
            };
            let end = matches!(message, ChannelMessage::End);
            if let Err(e) = inbox.deliver(header.input, message) {
                if inbox.alive() {
                    inbox.fail(format!("{place}: {e}"));
                }
                let _ = stream.stop(3u32.into());
                return;
            }
            if end {
                return;
            }
        }
    }

    /// The inbox `key` names, once its part of the job has started here.
    fn wait_inbox(&self, key: &InboxKey) -> Option<Served> {
        let deadline = Instant::now() + INBOX_WAIT;
        let mut inboxes = lock(&self.inboxes);
        loop {
            if let Some(found) = inboxes.get(key) {
                // One whose job ended (or never started) takes nothing.
                return found.inbox.alive().then(|| found.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            inboxes = self.registered.wait_timeout(inboxes, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn register(&self, key: InboxKey, served: Served) {
        let mut inboxes = lock(&self.inboxes);
        // Inboxes of jobs that ended here go.
        inboxes.retain(|_, s| s.inbox.alive());
        inboxes.insert(key, served);
        drop(inboxes);
        self.registered.notify_all();
    }

    /// The connection to `peer`, made if there is none.
    async fn connection(&self, peer: &Peer) -> Result<quinn::Connection, String> {
        let mut peers = self.peers.lock().await;
        if let Some(c) = peers.get(&peer.name).filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let c = self
            .endpoint
            .connect_with(self.client.clone(), peer.addr, &peer.name)
            .map_err(|e| format!("cannot connect to worker `{}` at {}: {e}", peer.name, peer.addr))?
            .await
            .map_err(|e| format!("cannot reach worker `{}` at {}: {e}", peer.name, peer.addr))?;
        peers.insert(peer.name.clone(), c.clone());
        Ok(c)
    }
}

/// The channels of one execution of a job spread over workers.
pub(crate) struct JobExchange {
    pub plane: Arc<DataPlane>,
    /// The execution's id.
    pub exchange: String,
    /// Per slot: the worker that runs it.
    pub slots: Arc<Vec<Peer>>,
    /// The job's key groups (max parallelism).
    pub key_groups: u32,
}

impl RemoteExchange for JobExchange {
    fn connect(
        &self,
        vertex: &str,
        subtask: u32,
        input: usize,
        from: u32,
        failure: ChannelFailure,
    ) -> (Box<dyn RemoteSender>, Arc<dyn Fn() + Send + Sync>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(QUEUED_FRAMES);
        let failed = Arc::new(Mutex::new(None));
        let closing = Arc::new(tokio::sync::Notify::new());
        let header = ChannelHeader { exchange: self.exchange.clone(), vertex: vertex.to_owned(), subtask, input, from };
        match self.slots.get(subtask as usize) {
            Some(peer) => {
                let (plane, peer, f, closed) = (self.plane.clone(), peer.clone(), failed.clone(), closing.clone());
                self.plane.handle.spawn(async move {
                    let written = tokio::select! {
                        r = write_channel(&plane, &peer, header, &mut rx) => r,
                        // The job stops: the stream goes with the future.
                        _ = closed.notified() => Ok(()),
                    };
                    if let Err(e) = written {
                        *lock(&f) = Some(e.clone());
                        failure.fail(&e);
                    }
                    // A sender waiting for room wakes, refused.
                    rx.close();
                });
            }
            None => *lock(&failed) = Some(format!("slot {subtask} has no worker in the job's placement")),
        }
        let close: Arc<dyn Fn() + Send + Sync> = Arc::new(move || closing.notify_one());
        (Box::new(QuicSender { tx, failed }), close)
    }

    fn serve(&self, vertex: &str, subtask: u32, inbox: RemoteInbox) {
        debug_assert_eq!(self.slots.get(subtask as usize).map(|p| p.name.as_str()), Some(self.plane.name.as_str()));
        let served = Served { inbox, key_groups: self.key_groups, slots: self.slots.clone() };
        self.plane.register((self.exchange.clone(), vertex.to_owned(), subtask), served);
    }
}

async fn write_channel(
    plane: &DataPlane,
    peer: &Peer,
    header: ChannelHeader,
    rx: &mut tokio::sync::mpsc::Receiver<Encoded>,
) -> Result<(), String> {
    let written = async {
        let connection = plane.connection(peer).await?;
        let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
        weir_net::control::write(&mut stream, &header).await.map_err(|e| e.0)?;
        while let Some(Encoded { bytes, end }) = rx.recv().await {
            channel::send_encoded(&mut stream, bytes).await.map_err(|e| e.to_string())?;
            if end {
                stream.finish().map_err(|e| e.to_string())?;
                // Until the consumer has it all (or the connection goes).
                let _ = stream.stopped().await;
                return Ok(());
            }
        }
        // The producer went without an end (its job stopped): the
        // stream is reset, and the consumer sees it end early.
        let _ = stream.reset(4u32.into());
        Ok::<(), String>(())
    };
    written.await.map_err(|e| format!("to worker `{}` at {}: {e}", peer.name, peer.addr))
}

/// A frame as the producer encoded it, for the channel's writer.
struct Encoded {
    bytes: bytes::Bytes,
    /// It is the channel's last.
    end: bool,
}

/// A channel to a subtask on another worker.
struct QuicSender {
    tx: tokio::sync::mpsc::Sender<Encoded>,
    failed: Arc<Mutex<Option<String>>>,
}

impl RemoteSender for QuicSender {
    fn has_room(&self) -> bool {
        self.tx.capacity() > 0
    }

    fn send(&mut self, message: ChannelMessage) -> Result<(), String> {
        let frame = match message {
            ChannelMessage::Data(b) => Frame::Data(WireBatch::from_batch(b)),
            ChannelMessage::Idle(idle) => Frame::Idle(idle),
            ChannelMessage::Barrier(id) => Frame::Barrier(id),
            ChannelMessage::Priority(id) => Frame::Priority(id),
            ChannelMessage::End => Frame::End,
        };
        // Encoded here, on the producer's thread, not the network's.
        let encoded = Encoded { end: matches!(frame, Frame::End), bytes: weir_net::frame::encode(&frame) };
        if self.tx.blocking_send(encoded).is_err() {
            return Err(lock(&self.failed).clone().unwrap_or_else(|| "the channel closed".to_owned()));
        }
        Ok(())
    }
}

/// Closes a data plane when dropped.
pub(crate) struct Closing(pub Arc<DataPlane>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}
