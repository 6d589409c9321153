//! Data-plane frames: what one producer subtask sends one consumer subtask
//! on its channel's stream — record batches with their watermarks, idle
//! marks, checkpoint barriers and end of input — serialized with rkyv and
//! validated on receipt: first the archive's structure (bytecheck), then
//! the batch's meaning ([`Batch::from_columns`]: offsets inside the data,
//! key groups of the job, marks in order). A malformed frame is an error
//! that names what is wrong, never a panic, so it fails its channel and
//! nothing else.
//!
//! On the stream each frame is a little-endian `u32` length and then that
//! many bytes, at most [`MAX_FRAME`]: the archive, then the CRC-32 of it.
//! The checksum is not for the network (QUIC's encryption authenticates
//! every byte) but for the framing: an archive is read from its end, so a
//! frame cut short by a bug could otherwise read as another, smaller frame.

use rkyv::rancor;
use weir_core::{Batch, Mark};

/// The largest frame a receiver takes: batches are cut well below it.
pub const MAX_FRAME: usize = 16 << 20;

/// One frame, as sent.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Frame {
    /// Events and the watermarks between them.
    Data(WireBatch),
    /// The producer went idle (`true`) or active again.
    Idle(bool),
    /// An aligned checkpoint's barrier.
    Barrier(u64),
    /// An unaligned checkpoint's barrier (it overtook what was queued).
    Priority(u64),
    /// The producer ended: nothing follows.
    End,
}

/// A batch's columns on the wire (see [`Batch`]).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WireBatch {
    data: Vec<u8>,
    offsets: Vec<u32>,
    timestamps: Vec<i64>,
    origins: Vec<u64>,
    key_groups: Vec<u16>,
    /// (events before it, watermark) per mark.
    marks: Vec<(u32, i64)>,
}

impl WireBatch {
    /// The columns of `b`, moved (a sent batch is not needed again).
    pub fn from_batch(b: Batch) -> WireBatch {
        let (data, offsets, timestamps, origins, key_groups, marks) = b.into_columns();
        let marks = marks.iter().map(|m| (m.after, m.watermark)).collect();
        WireBatch { data, offsets, timestamps, origins, key_groups, marks }
    }

    /// Bytes its archive takes, about (to size the buffer once).
    fn size_hint(&self) -> usize {
        self.data.len()
            + 4 * self.offsets.len()
            + 8 * (self.timestamps.len() + self.origins.len())
            + 2 * self.key_groups.len()
            + 16 * self.marks.len()
            + 256
    }

    /// The columns of `b`, copied.
    pub fn of(b: &Batch) -> WireBatch {
        WireBatch {
            data: b.data().to_vec(),
            offsets: b.offsets().to_vec(),
            timestamps: b.timestamps().to_vec(),
            origins: b.origins().to_vec(),
            key_groups: b.key_groups().to_vec(),
            marks: b.marks().iter().map(|m| (m.after, m.watermark)).collect(),
        }
    }
}

/// What a received frame holds, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A batch.
    Data(Batch),
    /// Idle or active again.
    Idle(bool),
    /// An aligned barrier.
    Barrier(u64),
    /// An unaligned barrier.
    Priority(u64),
    /// End of input.
    End,
}

/// A frame that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed data frame: {0}")]
pub struct FrameError(pub String);

/// The frame's bytes (without the length prefix): the archive and its
/// CRC-32, written once into a buffer of the right size and handed over
/// as it is (a QUIC stream takes it without a copy).
pub fn encode(frame: &Frame) -> bytes::Bytes {
    let hint = match frame {
        Frame::Data(b) => b.size_hint(),
        _ => 64,
    };
    let buffer = rkyv::util::AlignedVec::<16>::with_capacity(hint);
    let mut bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(frame, buffer)
        .expect("invariant: a frame of owned vectors serializes");
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes::Bytes::from_owner(bytes)
}

/// `bytes` as a frame of a job of `key_groups` key groups, or what is wrong
/// with them.
pub fn decode(bytes: &[u8], key_groups: u32) -> Result<Received, FrameError> {
    if bytes.len() > MAX_FRAME {
        return Err(FrameError(format!("{} bytes, more than the {MAX_FRAME} a frame may have", bytes.len())));
    }
    let Some((archive, crc)) = bytes.split_last_chunk::<4>() else {
        return Err(FrameError(format!("{} bytes, too short for a frame", bytes.len())));
    };
    if crc32fast::hash(archive) != u32::from_le_bytes(*crc) {
        return Err(FrameError(format!(
            "its checksum does not match its {} bytes (cut short or damaged)",
            bytes.len()
        )));
    }
    // The archive is read in place, at an aligned address: bytes that
    // come at another (a caller's slice) are copied to one first;
    // `channel::recv` reads frames into aligned buffers.
    let copy;
    let archive = if (archive.as_ptr() as usize).is_multiple_of(16) {
        archive
    } else {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(archive.len());
        aligned.extend_from_slice(archive);
        copy = aligned;
        &copy[..]
    };
    let archived = rkyv::access::<ArchivedFrame, rancor::Error>(archive).map_err(|e| FrameError(e.to_string()))?;
    Ok(match archived {
        ArchivedFrame::Data(b) => {
            let marks = b.marks.iter().map(|m| Mark { after: m.0.to_native(), watermark: m.1.to_native() }).collect();
            let batch = Batch::from_columns(
                b.data.to_vec(),
                b.offsets.iter().map(|x| x.to_native()).collect(),
                b.timestamps.iter().map(|x| x.to_native()).collect(),
                b.origins.iter().map(|x| x.to_native()).collect(),
                b.key_groups.iter().map(|x| x.to_native()).collect(),
                marks,
                key_groups,
            )
            .map_err(|e| FrameError(e.to_string()))?;
            Received::Data(batch)
        }
        ArchivedFrame::Idle(idle) => Received::Idle(*idle),
        ArchivedFrame::Barrier(id) => Received::Barrier(id.to_native()),
        ArchivedFrame::Priority(id) => Received::Priority(id.to_native()),
        ArchivedFrame::End => Received::End,
    })
}

/// The length prefix of a frame of `len` bytes.
pub fn prefix(len: usize) -> [u8; 4] {
    (len as u32).to_le_bytes()
}

/// The length a prefix announces, refused past [`MAX_FRAME`] before a
/// byte of the frame is read.
pub fn announced(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let n = u32::from_le_bytes(prefix) as usize;
    match n <= MAX_FRAME {
        true => Ok(n),
        false => Err(FrameError(format!("announces {n} bytes, more than the {MAX_FRAME} a frame may have"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        let mut b = Batch::new();
        b.push_keyed(b"k1", 3, b"{\"v\":1}", 10, 0);
        b.mark(9);
        b.push(b"", b"plain", 11, 1);
        b.push_keyed(b"k2", 127, b"x", 12, 2);
        b
    }

    #[test]
    fn every_frame_comes_back_as_it_went() {
        let b = batch();
        for (frame, want) in [
            (Frame::Data(WireBatch::of(&b)), Received::Data(b.clone())),
            (Frame::Data(WireBatch::of(&Batch::watermark(5))), Received::Data(Batch::watermark(5))),
            (Frame::Idle(true), Received::Idle(true)),
            (Frame::Barrier(7), Received::Barrier(7)),
            (Frame::Priority(8), Received::Priority(8)),
            (Frame::End, Received::End),
        ] {
            let bytes = encode(&frame);
            // At any alignment of the receiving buffer.
            let mut shifted = vec![0u8];
            shifted.extend_from_slice(&bytes);
            assert_eq!(decode(&shifted[1..], 128).unwrap(), want);
        }
    }

    #[test]
    fn a_damaged_frame_is_an_error_never_a_panic() {
        let bytes = encode(&Frame::Data(WireBatch::of(&batch())));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 128).is_err(), "cut at {cut}");
        }
        // Every byte flipped in turn: the checksum tells.
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.to_vec();
                bad[i] ^= bit;
                assert!(decode(&bad, 128).is_err(), "byte {i} flipped");
            }
        }
        // A damaged archive with a checksum that fits (a sender's bug):
        // the structure and the batch are still checked, never trusted.
        let archive = &bytes[..bytes.len() - 4];
        for i in 0..archive.len() {
            let mut bad = archive.to_vec();
            bad[i] ^= 0xff;
            bad.extend_from_slice(&crc32fast::hash(&bad).to_le_bytes());
            if let Ok(Received::Data(b)) = decode(&bad, 128) {
                assert!(b.offsets().last().is_some_and(|&e| e as usize <= b.data().len()));
                assert!(b.key_groups().iter().all(|&g| g < 128 || g == weir_core::NO_KEY_GROUP));
            }
        }
    }

    #[test]
    fn batches_that_break_the_rules_are_refused_by_what_is_wrong() {
        let wire = |f: &dyn Fn(&mut WireBatch)| {
            let mut w = WireBatch::of(&batch());
            f(&mut w);
            decode(&encode(&Frame::Data(w)), 128).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(wire(&|w| w.offsets[6] = 9999).contains("run past the data"));
        assert!(wire(&|w| w.offsets.pop().map(|_| ()).unwrap_or(())).contains("offsets"));
        assert!(wire(&|w| w.key_groups[2] = 128).contains("key group 128 is not below the job's 128"));
        assert!(wire(&|w| w.key_groups.truncate(1)).contains("key groups"));
        assert!(wire(&|w| w.marks.push((9, 1))).contains("a mark past the batch's 3 events"));
        assert!(wire(&|w| w.marks.push((0, 100))).contains("marks out of order"));
        assert!(wire(&|w| w.marks.push((2, 5))).contains("marks out of order"), "a falling watermark");
        assert!(wire(&|w| w.origins.clear()).contains("origins"));
        assert!(announced(prefix(MAX_FRAME + 1)).is_err() && announced(prefix(10)) == Ok(10));
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(decode(&big, 128).unwrap_err().to_string().contains("more than"));
    }
}
