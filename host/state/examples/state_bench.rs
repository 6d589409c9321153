//! Micro-benchmark of the memory backend's value state: a get and a put
//! per operation over 10,000 keys spread on 128 key groups, as the keyed
//! pipeline of `weir bench` does per event. `N` operations per round
//! (default 10 M), `R` rounds (default 3), `G` key groups (default 128).
//! Deterministic instruction and cache-miss counts, with this machine's
//! 512 KiB L2 as the last level: `N=2000000 R=1 valgrind
//! --tool=cachegrind --cache-sim=yes --LL=524288,8,64
//! target/release/examples/state_bench`.
use std::time::Instant;
use weir_state::{KeyedStateBackend, MemoryBackend, Scope};

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x
}

fn main() {
    let groups: u64 = std::env::var("G").ok().and_then(|s| s.parse().ok()).unwrap_or(128);
    let keys: Vec<(Vec<u8>, u16)> = (0..10_000u64)
        .map(|k| {
            let key = k.to_string().into_bytes();
            let g = (mix(k.wrapping_mul(31)) % groups) as u16;
            (key, g)
        })
        .collect();
    for round in 0..std::env::var("R").ok().and_then(|s| s.parse().ok()).unwrap_or(3) {
        let mut b = MemoryBackend::new();
        let mut buf = Vec::new();
        let t = Instant::now();
        let n: u64 = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
        for i in 0..n {
            let (key, g) = &keys[(mix(i) % 10_000) as usize];
            let at = Scope::key(*g, key);
            buf.clear();
            let c = if b.value_get(0, at, &mut buf) { u64::from_le_bytes(buf[..8].try_into().unwrap()) + 1 } else { 1 };
            b.value_put(0, at, &c.to_le_bytes());
        }
        println!("round {round}: {:.1} M get+put/s", n as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
}
