//! A logical channel (producer subtask → consumer subtask) as one QUIC
//! stream of length-prefixed [`frame`](crate::frame)s. QUIC's per-stream
//! flow control is the credit: a consumer that stops reading stops its
//! own stream's sender once the stream's window is full, and nothing else,
//! provided the connection's window leaves room for every other stream
//! ([`transport`]). Measured with quinn 0.11 for the cluster issue: with
//! the connection's window no larger than one stream's, one unread stream
//! starved the others; 256 KiB a stream with 1 MiB or more a connection
//! kept them apart.

use crate::frame::{self, Frame, FrameError, Received};
use std::sync::Arc;
use std::time::Duration;

/// Bytes a stream's receiver grants before it has read them: a channel's
/// credit.
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// A failed channel: the stream's error, or a frame that is not one.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The stream broke (the peer went, or reset it).
    #[error("the channel's stream broke: {0}")]
    Stream(String),
    /// The peer sent what is not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("the channel's stream ended inside a frame ({0} of its bytes missing)")]
    Cut(usize),
}

/// The transport settings of a connection that carries up to `channels`
/// channels: each stream gets [`STREAM_WINDOW`], the connection enough for
/// all of them, so a stalled channel never takes another's room. Idle
/// connections are kept alive every second and one silent for 4 s is
/// dead: a lost peer is found within 5 s.
pub fn transport(channels: u32) -> Arc<quinn::TransportConfig> {
    Arc::new(transport_config(channels))
}

/// [`transport`], to be changed further.
pub fn transport_config(channels: u32) -> quinn::TransportConfig {
    let connection = u64::from(STREAM_WINDOW) * u64::from(channels.max(4));
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(quinn::VarInt::from_u64(connection).unwrap_or(quinn::VarInt::MAX));
    t.send_window(connection);
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(channels.max(4)));
    t.keep_alive_interval(Some(Duration::from_secs(1)));
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(4_000))));
    // Path MTU discovery climbs as far as MTU_UPPER_BOUND, if both
    // endpoints take datagrams that large (see `endpoint`).
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// The largest UDP payload path MTU discovery tries: Ethernet's 1,472
/// where that is the path's limit, more on loopback and jumbo frames.
/// Not more than 6,500: quinn 0.11 hands the kernel up to 10 datagrams
/// in one segmentation-offloaded send, and Linux refuses a send of more
/// than 64 KiB, so with larger datagrams every batched send failed and
/// discovery fell back to 1,200 bytes (measured with the quic_vs_tcp
/// example: 16,384 ended at 1,200). On loopback 6,500-byte datagrams
/// halve QUIC's CPU per byte against 1,472 (0.9 against 1.7 CPU s per
/// GB, same example).
pub const MTU_UPPER_BOUND: u16 = 6_500;

/// Sends `frame` on `stream`: its length, then its bytes. Waits while the
/// consumer's credit is used up.
pub async fn send(stream: &mut quinn::SendStream, frame: &Frame) -> Result<(), ChannelError> {
    send_encoded(stream, frame::encode(frame)).await
}

/// [`send`] of a frame [`frame::encode`]d already (by the producer, off
/// the network threads).
pub async fn send_encoded(stream: &mut quinn::SendStream, bytes: bytes::Bytes) -> Result<(), ChannelError> {
    if bytes.len() > frame::MAX_FRAME {
        return Err(ChannelError::Frame(FrameError(format!(
            "{} bytes, more than the {} a frame may have: cut the batch smaller",
            bytes.len(),
            frame::MAX_FRAME
        ))));
    }
    // Two writes, not one of a joined copy: the stream keeps the frame's
    // buffer as it is.
    stream.write_all(&frame::prefix(bytes.len())).await.map_err(|e| ChannelError::Stream(e.to_string()))?;
    stream.write_chunk(bytes).await.map_err(|e| ChannelError::Stream(e.to_string()))
}

/// The next frame on `stream`, checked for a job of `key_groups` key
/// groups; `None` once the producer finished the stream between frames.
pub async fn recv(stream: &mut quinn::RecvStream, key_groups: u32) -> Result<Option<Received>, ChannelError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match stream.read(&mut prefix[got..]).await.map_err(|e| ChannelError::Stream(e.to_string()))? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(ChannelError::Cut(4 - got)),
        }
    }
    let n = frame::announced(prefix)?;
    // Aligned, so the archive is read where it lands.
    let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(n);
    bytes.resize(n, 0);
    stream.read_exact(&mut bytes[..]).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(read) => ChannelError::Cut(n - read),
        quinn::ReadExactError::ReadError(e) => ChannelError::Stream(e.to_string()),
    })?;
    Ok(Some(frame::decode(&bytes, key_groups)?))
}

/// A QUIC endpoint on `bind` (a server too when given `server`) that
/// takes datagrams up to [`MTU_UPPER_BOUND`]: quinn's default (1,472)
/// would cap path MTU discovery at Ethernet's. Call it inside a tokio
/// runtime.
pub fn endpoint(bind: std::net::SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    let mut config = quinn::EndpointConfig::default();
    config.max_udp_payload_size(MTU_UPPER_BOUND).map_err(|e| std::io::Error::other(e.to_string()))?;
    let socket = std::net::UdpSocket::bind(bind)?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
    quinn::Endpoint::new(config, server, socket, runtime)
}
