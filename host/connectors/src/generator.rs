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

/// Generator subtask: it reads one or more splits. Split `s` is the
/// stream subtask `s` of a fresh start reads: event `i` has key
/// `mix(seed, i) % keys` in decimal, a value of `value-size` bytes (the
/// sequence number, then filler), and timestamp `i`; with `pattern:
/// sequence`, key and value `i * p + s` (`p` the parallelism the split
/// was made at) and that timestamp. A subtask restored at another
/// parallelism reads the splits it was given (even split, as Flink's
/// source readers get theirs), batch by batch in turn, each at `rate` and
/// to `count`. The watermark follows the slowest split (minus the
/// out-of-orderness), once per batch.
pub struct Generator {
    splits: Vec<Split>,
    /// The split the next batch comes from first.
    turn: usize,
    end: Option<u64>,
    keys: u64,
    value_size: usize,
    delay: i64,
    rate: Option<f64>,
    sequence: bool,
    spec_seed: u64,
    key_buf: itoa::Buffer,
    value_buf: itoa::Buffer,
}

/// One split and where it goes on.
struct Split {
    /// The subtask of the fresh start that made it, and its parallelism
    /// then.
    index: u32,
    of: u32,
    seed: u64,
    filler: Vec<u8>,
    next: u64,
    started: Instant,
    /// Events made before `started` (a restored position).
    base: u64,
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
    /// Subtask `subtask` of `parallelism` of a generator spec, reading its
    /// own split from the start; each split has `count` events.
    pub fn new(spec: &SourceSpec, subtask: u32, parallelism: u32) -> Self {
        let mut g = Generator {
            splits: Vec::new(),
            turn: 0,
            end: spec.count,
            keys: spec.keys,
            value_size: spec.value_size,
            delay: spec.watermark.out_of_orderness_ms,
            rate: spec.rate,
            sequence: spec.pattern == GeneratorPattern::Sequence,
            spec_seed: spec.seed,
            key_buf: itoa::Buffer::default(),
            value_buf: itoa::Buffer::default(),
        };
        g.splits.push(g.split(subtask, parallelism.max(1), 0));
        g
    }

    /// Split `index` of `of`, going on at event `next`.
    fn split(&self, index: u32, of: u32, next: u64) -> Split {
        let seed = seed_of(self.spec_seed, index);
        let filler = (0..self.value_size as u64).map(|i| b'a' + (mix(seed ^ i) % 26) as u8).collect();
        Split { index, of, seed, filler, next, started: Instant::now(), base: next }
    }

    /// How many events split `k` may make now (at most `max`), or how
    /// long until its next one is due (`Err`); 0 once it ended.
    fn due(&self, k: usize, max: u64) -> Result<u64, Duration> {
        let s = &self.splits[k];
        let mut n = max;
        if let Some(end) = self.end {
            n = n.min(end - s.next);
            if n == 0 {
                return Ok(0);
            }
        }
        if let Some(rate) = self.rate {
            let due = s.base + (s.started.elapsed().as_secs_f64() * rate) as u64;
            if due <= s.next {
                let wait = (s.next + 1 - s.base) as f64 / rate - s.started.elapsed().as_secs_f64();
                // Clamp before converting: a tiny rate would overflow a Duration.
                return Err(Duration::from_secs_f64(wait.clamp(0.0, 0.1)));
            }
            n = n.min(due - s.next);
        }
        Ok(n)
    }

    /// Appends events `next..next + n` of split `k`.
    fn make(&mut self, k: usize, n: u64, batch: &mut Batch) {
        let keys = self.keys;
        let s = &mut self.splits[k];
        if self.sequence {
            let (index, of) = (u64::from(s.index), u64::from(s.of));
            for i in s.next..s.next + n {
                let g = i * of + index;
                let key = self.key_buf.format(g % keys);
                let digits = self.value_buf.format(g);
                batch.push_with(key, g as i64, g, |buf| {
                    buf.extend_from_slice(b"{\"value\":");
                    buf.extend_from_slice(digits);
                    buf.push(b'}');
                });
            }
        } else {
            let size = s.filler.len();
            // The origin tells splits apart (a subtask may read several).
            let (index, of) = (u64::from(s.index), u64::from(s.of));
            for i in s.next..s.next + n {
                let key = self.key_buf.format(mix(s.seed ^ i) % keys);
                batch.push_with(key, i as i64, i * of + index, |buf| {
                    let seq = i.to_le_bytes();
                    let head = size.min(8);
                    buf.extend_from_slice(&seq[..head]);
                    buf.extend_from_slice(&s.filler[head..]);
                });
            }
        }
        s.next += n;
    }

    /// The watermark after what was made: the slowest split that has not
    /// ended, less the out-of-orderness (and one, as Flink's bounded
    /// out-of-orderness). `None` when nothing was made yet.
    fn watermark(&self) -> Option<i64> {
        let open = |s: &&Split| self.end.is_none_or(|e| s.next < e);
        let made = |s: &Split| match self.sequence {
            true => s.next.checked_sub(1).map(|i| (i * u64::from(s.of) + u64::from(s.index)) as i64),
            false => s.next.checked_sub(1).map(|i| i as i64),
        };
        let slowest = match self.splits.iter().filter(open).min_by_key(|s| s.next) {
            Some(s) => made(s)?,
            // Every split ended: the latest event of any.
            None => self.splits.iter().filter_map(made).max()?,
        };
        Some(slowest.saturating_sub(self.delay).saturating_sub(1))
    }
}

/// The seed of split (fresh-start subtask) `index`.
fn seed_of(seed: u64, index: u32) -> u64 {
    mix(seed ^ (u64::from(index) << 48))
}

/// The key, as a number, of event `i` of subtask `subtask` of generator
/// `spec` (its bytes are the number in decimal): what tests need to know
/// every key's count without storing the events.
pub fn key_number(spec: &SourceSpec, subtask: u32, i: u64) -> u64 {
    mix(seed_of(spec.seed, subtask) ^ i) % spec.keys
}

/// A split as a checkpoint keeps it: index, parallelism it was made at
/// (u32 LE each) and the next event (u64 LE).
fn encode_split(s: &Split) -> Vec<u8> {
    [&s.index.to_le_bytes()[..], &s.of.to_le_bytes(), &s.next.to_le_bytes()].concat()
}

impl Source for Generator {
    fn position(&self) -> Vec<Vec<u8>> {
        self.splits.iter().map(encode_split).collect()
    }

    fn seek(&mut self, splits: &[&[u8]]) -> Result<(), SourceError> {
        let damaged = |what: &str| SourceError {
            source_id: String::new(),
            place: "its checkpointed splits".into(),
            message: format!("a checkpointed split of this generator is damaged: {what}"),
        };
        let own = self.splits.first().map(|s| (s.index, s.of));
        let mut restored = Vec::with_capacity(splits.len());
        for bytes in splits {
            let word = |i: usize| {
                bytes.get(i..i + 4).map(|b| u32::from_le_bytes(b.try_into().expect("invariant: four bytes")))
            };
            let (index, of, next) = match bytes.len() {
                // Before splits: the subtask's own position (8 bytes; a
                // generator kept no watermark), restored at the same
                // parallelism only.
                8 if own.is_some() => {
                    let (next, _) = crate::decode_position(bytes).ok_or_else(|| damaged("a bad position"))?;
                    let (index, of) = own.expect("invariant: checked above");
                    (index, of, next)
                }
                16 => {
                    let next = u64::from_le_bytes(bytes[8..16].try_into().expect("invariant: eight bytes"));
                    (word(0).expect("invariant: 16 bytes"), word(4).expect("invariant: 16 bytes"), next)
                }
                n => return Err(damaged(&format!("{n} bytes, where a split takes 16"))),
            };
            if of == 0 || index >= of || self.end.is_some_and(|e| next > e) {
                return Err(damaged(&format!("split {index} of {of} at event {next}")));
            }
            restored.push(self.split(index, of, next));
        }
        self.splits = restored;
        self.turn = 0;
        Ok(())
    }

    fn next_batch(&mut self, batch: &mut Batch, max: usize) -> Result<Poll, SourceError> {
        if self.splits.is_empty() {
            // A restored subtask given no split (more subtasks than splits).
            return Ok(if self.end.is_some() { Poll::End } else { Poll::Idle(Duration::from_millis(100)) });
        }
        // Keep a batch's data far below the 4 GiB the flat offsets allow.
        let cap = (MAX_BATCH_BYTES / (self.value_size as u64 + 24)).max(1);
        let (mut wait, mut open) = (Duration::MAX, false);
        let count = self.splits.len();
        for step in 0..count {
            let k = (self.turn + step) % count;
            match self.due(k, (max as u64).min(cap)) {
                Ok(0) => {}
                Ok(n) => {
                    self.make(k, n, batch);
                    self.turn = (k + 1) % count;
                    if let Some(w) = self.watermark() {
                        batch.mark(w);
                    }
                    return Ok(Poll::Ready);
                }
                Err(d) => {
                    open = true;
                    wait = wait.min(d);
                }
            }
        }
        Ok(if open { Poll::Wait(wait) } else { Poll::End })
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
                Poll::Wait(_) | Poll::Idle(_) => unreachable!(),
            }
        }
        assert_eq!(total, 2500);
    }

    /// Every event of a generator with its (key, value), drawn until it
    /// ends or `limit` batches of 100.
    fn drain(g: &mut Generator, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..limit {
            let mut b = Batch::new();
            match g.next_batch(&mut b, 100).unwrap() {
                Poll::Ready => out.extend((0..b.len()).map(|i| (b.key(i).to_vec(), b.value(i).to_vec()))),
                Poll::End => break,
                Poll::Wait(_) | Poll::Idle(_) => unreachable!("unpaced"),
            }
        }
        out
    }

    /// Two subtasks read part of their splits; their positions, shared
    /// out over three subtasks (one gets none and ends at once), then over
    /// one, make every remaining event once: with what was read before, the
    /// events of the undisturbed run at parallelism 2.
    #[test]
    fn splits_move_between_subtasks_and_every_event_comes_once() {
        for pattern in ["random", "sequence"] {
            let s = spec(&format!("{{id: g, type: generator, count: 1000, keys: 50, pattern: {pattern}}}"));
            let mut expected: Vec<_> = (0..2).flat_map(|t| drain(&mut Generator::new(&s, t, 2), usize::MAX)).collect();
            expected.sort();

            let mut got = Vec::new();
            let mut first: Vec<Generator> = (0..2).map(|t| Generator::new(&s, t, 2)).collect();
            got.extend(drain(&mut first[0], 2));
            got.extend(drain(&mut first[1], 3));
            let splits: Vec<Vec<u8>> = first.iter().flat_map(|g| g.position()).collect();
            assert_eq!(splits.len(), 2);

            // At parallelism 3: subtasks 0 and 1 get a split each, 2 none.
            let mut second: Vec<Generator> = (0..3).map(|t| Generator::new(&s, t, 3)).collect();
            for (t, g) in second.iter_mut().enumerate() {
                let mine: Vec<&[u8]> = splits.get(t).map(|v| vec![v.as_slice()]).unwrap_or_default();
                g.seek(&mine).unwrap();
            }
            assert!(drain(&mut second[2], 1).is_empty(), "a subtask without a split ends at once");
            got.extend(drain(&mut second[0], 1));
            got.extend(drain(&mut second[1], 4));
            let splits: Vec<Vec<u8>> = second.iter().flat_map(|g| g.position()).collect();
            assert_eq!(splits.len(), 2, "subtask 2 had none");

            // At parallelism 1: both splits, in turn, to their ends.
            let mut last = Generator::new(&s, 0, 1);
            last.seek(&splits.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
            got.extend(drain(&mut last, usize::MAX));
            got.sort();
            assert_eq!(got.len(), 2000, "{pattern}");
            assert!(got == expected, "{pattern}: every event of the undisturbed run, once");
        }
    }

    #[test]
    fn a_subtask_without_splits_of_an_unbounded_generator_is_idle_and_a_bad_split_is_refused() {
        let s = spec("{id: g, type: generator, keys: 50}");
        let mut g = Generator::new(&s, 0, 1);
        g.seek(&[]).unwrap();
        assert!(matches!(g.next_batch(&mut Batch::new(), 100).unwrap(), Poll::Idle(_)));
        assert!(g.position().is_empty());
        let e = g.seek(&[&[1, 2, 3][..]]).err().unwrap();
        assert!(e.message.contains("3 bytes, where a split takes 16"), "{}", e.message);
        let bad = [&2u32.to_le_bytes()[..], &2u32.to_le_bytes(), &0u64.to_le_bytes()].concat();
        let e = g.seek(&[&bad]).err().unwrap();
        assert!(e.message.contains("split 2 of 2"), "{}", e.message);
        // A position from before splits is the subtask's own split.
        let mut old = Generator::new(&s, 1, 2);
        old.seek(&[&5u64.to_le_bytes()[..]]).unwrap();
        assert_eq!(old.position(), vec![[&1u32.to_le_bytes()[..], &2u32.to_le_bytes(), &5u64.to_le_bytes()].concat()]);
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
