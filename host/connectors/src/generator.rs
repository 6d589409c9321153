//! The seeded generator: keyed events with values of a fixed size, bounded
//! or not, flat out or at a rate.

use crate::{Poll, Source, SourceError};
use std::time::{Duration, Instant};
use weir_core::Batch;
use weir_core::spec::{GeneratorPattern, SourceSpec};

/// Most bytes a source puts in one batch.
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// splitmix64: a small, good, stable mixer (the sequence must never change
/// for a given seed, so tests and benchmarks can rely on it).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Generator subtask: event `i` has key `mix(seed, i) % keys` in decimal,
/// a value of `value-size` bytes (the sequence number, then filler), and
/// timestamp `i`. The watermark follows the timestamps (minus the
/// out-of-orderness), once per batch.
pub struct Generator {
    seed: u64,
    next: u64,
    end: Option<u64>,
    keys: u64,
    filler: Vec<u8>,
    delay: i64,
    rate: Option<f64>,
    started: Instant,
    /// Events made before `started` (a restored position).
    base: u64,
    key_buf: itoa::Buffer,
    /// `pattern: sequence`: (subtask, parallelism).
    sequence: Option<(u64, u64)>,
    value_buf: itoa::Buffer,
}

mod itoa {
    /// Formats integers without allocating.
    #[derive(Default)]
    pub struct Buffer([u8; 20]);

    impl Buffer {
        pub fn format(&mut self, mut n: u64) -> &[u8] {
            let mut i = self.0.len();
            loop {
                i -= 1;
                self.0[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    return &self.0[i..];
                }
            }
        }
    }
}

impl Generator {
    /// Subtask `subtask` of a generator spec; each subtask produces
    /// `count` events of its own.
    pub fn new(spec: &SourceSpec, subtask: u32, parallelism: u32) -> Self {
        let seed = subtask_seed(spec, subtask);
        let filler = (0..spec.value_size as u64).map(|i| b'a' + (mix(seed ^ i) % 26) as u8).collect();
        Generator {
            seed,
            next: 0,
            end: spec.count,
            keys: spec.keys,
            filler,
            delay: spec.watermark.out_of_orderness_ms,
            rate: spec.rate,
            started: Instant::now(),
            base: 0,
            key_buf: itoa::Buffer::default(),
            sequence: (spec.pattern == GeneratorPattern::Sequence)
                .then_some((u64::from(subtask), u64::from(parallelism.max(1)))),
            value_buf: itoa::Buffer::default(),
        }
    }
}

/// The seed of subtask `subtask`.
fn subtask_seed(spec: &SourceSpec, subtask: u32) -> u64 {
    mix(spec.seed ^ (u64::from(subtask) << 48))
}

/// The key, as a number, of event `i` of subtask `subtask` of generator
/// `spec` (its bytes are the number in decimal): what tests need to know
/// every key's count without storing the events.
pub fn key_number(spec: &SourceSpec, subtask: u32, i: u64) -> u64 {
    mix(subtask_seed(spec, subtask) ^ i) % spec.keys
}

impl Source for Generator {
    fn position(&self) -> Vec<u8> {
        crate::encode_position(self.next, None)
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let decoded = crate::decode_position(position).filter(|(n, _)| self.end.is_none_or(|e| *n <= e));
        let Some((next, _)) = decoded else {
            return Err(SourceError {
                source_id: String::new(),
                place: "its checkpointed position".into(),
                message: "the checkpointed position of this generator is damaged".into(),
            });
        };
        self.next = next;
        // Go on at the same rate from here.
        self.base = next;
        self.started = Instant::now();
        Ok(())
    }

    fn next_batch(&mut self, batch: &mut Batch, max: usize) -> Result<Poll, SourceError> {
        let mut n = max as u64;
        if let Some(end) = self.end {
            n = n.min(end - self.next);
            if n == 0 {
                return Ok(Poll::End);
            }
        }
        if let Some(rate) = self.rate {
            let due = self.base + (self.started.elapsed().as_secs_f64() * rate) as u64;
            if due <= self.next {
                let wait = (self.next + 1 - self.base) as f64 / rate - self.started.elapsed().as_secs_f64();
                // Clamp before converting: a tiny rate would overflow a Duration.
                return Ok(Poll::Wait(Duration::from_secs_f64(wait.clamp(0.0, 0.1))));
            }
            n = n.min(due - self.next);
        }
        let size = self.filler.len();
        // Keep a batch's data far below the 4 GiB the flat offsets allow.
        n = n.min((MAX_BATCH_BYTES / (size as u64 + 24)).max(1));
        if let Some((subtask, parallelism)) = self.sequence {
            let mut last = 0;
            for i in self.next..self.next + n {
                let g = i * parallelism + subtask;
                last = g as i64;
                let key = self.key_buf.format(g % self.keys);
                let digits = self.value_buf.format(g);
                batch.push_with(key, last, i, |buf| {
                    buf.extend_from_slice(b"{\"value\":");
                    buf.extend_from_slice(digits);
                    buf.push(b'}');
                });
            }
            self.next += n;
            batch.mark(last.saturating_sub(self.delay).saturating_sub(1));
            return Ok(Poll::Ready);
        }
        for i in self.next..self.next + n {
            let key = self.key_buf.format(mix(self.seed ^ i) % self.keys);
            batch.push_with(key, i as i64, i, |buf| {
                let seq = i.to_le_bytes();
                let head = size.min(8);
                buf.extend_from_slice(&seq[..head]);
                buf.extend_from_slice(&self.filler[head..]);
            });
        }
        self.next += n;
        batch.mark((self.next as i64 - 1).saturating_sub(self.delay).saturating_sub(1));
        Ok(Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SourceSpec {
        let text = format!("sources:\n  - {}\nsinks:\n  - {{id: out, type: discard, input: g}}\n", yaml);
        weir_core::spec::Spec::parse(std::path::Path::new("t.yaml"), &text).unwrap().sources.remove(0)
    }

    #[test]
    fn generator_is_seeded_bounded_and_sized() {
        let s = spec("{id: g, type: generator, seed: 7, count: 2500, keys: 10, value-size: 100}");
        let mut a = Generator::new(&s, 0, 1);
        let mut b = Generator::new(&s, 0, 1);
        let (mut ba, mut bb) = (Batch::new(), Batch::new());
        assert_eq!(a.next_batch(&mut ba, 1024).unwrap(), Poll::Ready);
        b.next_batch(&mut bb, 1024).unwrap();
        assert_eq!(ba, bb, "same seed, same events");
        assert_eq!(ba.len(), 1024);
        assert!(ba.value(0).len() == 100 && ba.value(1023).len() == 100);
        assert!((0..1024).all(|i| std::str::from_utf8(ba.key(i)).unwrap().parse::<u64>().unwrap() < 10));
        assert_eq!(ba.last_watermark(), Some(1022));
        let mut total = ba.len();
        loop {
            ba.clear();
            match a.next_batch(&mut ba, 1024).unwrap() {
                Poll::Ready => total += ba.len(),
                Poll::End => break,
                Poll::Wait(_) => unreachable!(),
            }
        }
        assert_eq!(total, 2500);
    }

    #[test]
    fn the_sequence_pattern_interleaves_subtasks_like_flinks_generator() {
        let s = spec("{id: g, type: generator, count: 3, keys: 4, pattern: sequence}");
        let mut b = Batch::new();
        Generator::new(&s, 1, 2).next_batch(&mut b, 1024).unwrap();
        let events: Vec<(&[u8], &[u8], i64)> = (0..3).map(|i| (b.key(i), b.value(i), b.timestamps()[i])).collect();
        assert_eq!(
            events,
            vec![(&b"1"[..], &br#"{"value":1}"#[..], 1), (b"3", br#"{"value":3}"#, 3), (b"1", br#"{"value":5}"#, 5)]
        );
        assert_eq!(b.last_watermark(), Some(4));
    }
}
