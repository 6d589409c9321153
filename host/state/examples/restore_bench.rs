//! Micro-benchmark of a restore: `N` values (default 38,000,000, about
//! the 1 GiB checkpoint of `scripts/bench-checkpoints.sh`) of 16-byte keys
//! on 128 key groups, in a random order (as a snapshot of another table
//! hands them out), put into a fresh backend announced by `restore_hint`
//! and ended by `restore_end`. `BACKEND=memory|lsm` (default both). On a
//! virtual machine whose memory the host took back, the first touch of
//! fresh memory costs more than the inserts: see `docs/benchmarks.md`.
use std::time::Instant;
use weir_state::{KeyedStateBackend, LsmStore, MemoryBackend, Piece, Scope};

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x
}

fn main() {
    let n: u64 = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(38_000_000);
    let which = std::env::var("BACKEND").unwrap_or_default();
    let keys: Vec<[u8; 16]> =
        (0..n).map(|i| format!("{:016}", mix(i) % 10_000_000_000_000_000).into_bytes().try_into().unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = LsmStore::open(dir.path(), true, 16 << 30).unwrap();
    for name in ["memory", "lsm"] {
        if !which.is_empty() && which != name {
            continue;
        }
        let mut b: Box<dyn KeyedStateBackend> =
            if name == "lsm" { Box::new(store.backend(16 << 30)) } else { Box::new(MemoryBackend::new()) };
        let t = Instant::now();
        b.restore_hint(n as usize);
        for (i, k) in keys.iter().enumerate() {
            let value = (i as u64).to_le_bytes();
            b.restore(Piece::Value { state: 0, at: Scope::key((mix(i as u64 ^ 1) % 128) as u16, k), value: &value });
        }
        let pieces = t.elapsed();
        b.restore_end();
        println!(
            "{name}: {n} values restored in {:.2} s ({:.2} s handing them in)",
            t.elapsed().as_secs_f64(),
            pieces.as_secs_f64()
        );
    }
}
