//! The control plane's framing: JSON messages, each behind a 4-byte
//! big-endian length, on one long-lived QUIC stream per direction. The
//! messages themselves (register, deploy, reports) are the
//! coordinator's; this is how they travel, bounded in size, with a
//! peer's bad message reported by what it is.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest control message either side takes (a deployment carries a
/// spec; a report the metrics and checkpoints of a worker's jobs).
pub const MAX_CONTROL: usize = 64 << 20;

/// Why a control stream failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

/// Writes `message` as one length-prefixed JSON message.
pub async fn write<T: Serialize>(stream: &mut quinn::SendStream, message: &T) -> Result<(), ControlError> {
    let mut bytes = vec![0u8; 4];
    serde_json::to_writer(&mut bytes, message).map_err(|e| ControlError(format!("cannot write a message: {e}")))?;
    let len = bytes.len() - 4;
    if len > MAX_CONTROL {
        return Err(ControlError(format!("a message of {len} bytes is over the control plane's {MAX_CONTROL}")));
    }
    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
    stream.write_all(&bytes).await.map_err(|e| ControlError(format!("cannot send: {e}")))
}

/// Reads the next message; `None` once the peer finished the stream
/// between messages.
pub async fn read<T: DeserializeOwned>(stream: &mut quinn::RecvStream) -> Result<Option<T>, ControlError> {
    read_at_most(stream, MAX_CONTROL).await
}

/// [`read`], of a message of at most `max` bytes.
pub async fn read_at_most<T: DeserializeOwned>(
    stream: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, ControlError> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(ControlError(format!("cannot read: {e}"))),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(ControlError(format!("the peer announced a message of {len} bytes, over the {max} allowed")));
    }
    // Grown as it arrives: an announced length costs nothing until sent.
    let mut bytes = Vec::with_capacity(len.min(64 << 10));
    let mut chunk = [0u8; 16 << 10];
    while bytes.len() < len {
        let want = (len - bytes.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(Some(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(None) => {
                return Err(ControlError(format!("the stream ended {} bytes into a message of {len}", bytes.len())));
            }
            Err(e) => return Err(ControlError(format!("cannot read a message: {e}"))),
        }
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| ControlError(format!("not a control message: {e}")))
}
