//! Keyed state through real components, driven one call at a time
//! ([`ProcessDriver`]) on both backends: namespaces, state TTL under a
//! controlled clock in both update modes, key-group ranges read back and
//! dropped, and timers spilled to fjall firing in timestamp order.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use weir_core::keys::key_group;
use weir_runtime::ProcessDriver;
use weir_state::{Clock, KeyedStateBackend, LsmStore, MemoryBackend, Piece};
use weir_tests::component;
use weir_wasm::{WasmRuntime, World};

const MAX_PARALLELISM: u32 = 128;

fn runtime() -> WasmRuntime {
    WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap()
}

/// A memory backend, or an lsm backend whose budget (in bytes) is far
/// below the state, with its store (kept alive by the backend).
fn backends(dir: &std::path::Path, budget: usize) -> Vec<(&'static str, Box<dyn KeyedStateBackend>, Option<LsmStore>)> {
    let store = LsmStore::open(dir, false, 1 << 20).unwrap();
    vec![("memory", Box::new(MemoryBackend::new()), None), ("lsm", Box::new(store.backend(budget)), Some(store))]
}

fn driver(
    rt: &WasmRuntime,
    name: &str,
    config: Value,
    backend: Box<dyn KeyedStateBackend>,
    clock: &Clock,
) -> ProcessDriver {
    let c = rt.load(&component(name), World::Process).unwrap();
    ProcessDriver::new(rt, &c, &config.to_string(), backend, clock.clone(), MAX_PARALLELISM).unwrap()
}

/// Sends one state-kinds command for `key`; the snapshot it emits.
fn command(d: &mut ProcessDriver, key: &str, cmd: Value) -> Value {
    let v = json!({"key": key, "cmd": cmd}).to_string();
    let out = d.process(&[(key.as_bytes(), v.as_bytes(), 0)]).unwrap();
    assert_eq!(out.len(), 1, "one snapshot per command");
    serde_json::from_slice(&out[0].1).unwrap()
}

/// What the expiring states (value, list, map) of a snapshot hold.
fn expiring(s: &Value) -> Value {
    json!([s["value"], s["list"], s["map"]])
}

/// Sends one state-kinds command for `key` in `namespace`.
fn command_in(d: &mut ProcessDriver, namespace: &str, key: &str, cmd: Value) -> Value {
    let v = json!({"key": key, "cmd": cmd}).to_string();
    let out = d.process_in(namespace.as_bytes(), &[(key.as_bytes(), v.as_bytes(), 0)]).unwrap();
    assert_eq!(out.len(), 1, "one snapshot per command");
    serde_json::from_slice(&out[0].1).unwrap()
}

#[test]
fn every_state_kind_is_separate_per_namespace_on_both_backends() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    for (backend_name, backend, _store) in backends(dir.path(), 0) {
        let clock = Clock::manual(0);
        let mut d = driver(&rt, "state-kinds", Value::Null, backend, &clock);
        // Namespaces as a window operator would make them, one long.
        let long = "w".repeat(300);
        let spaces = ["", "w1", "w2", long.as_str()];
        for (i, ns) in spaces.iter().enumerate() {
            command_in(&mut d, ns, "k", json!({"value": i}));
            command_in(&mut d, ns, "k", json!({"list_add": i}));
            command_in(&mut d, ns, "k", json!({"map_put": ["a", i]}));
            command_in(&mut d, ns, "k", json!({"reduce": i}));
        }
        command_in(&mut d, "w1", "k", json!("map_clear"));
        for (i, ns) in spaces.iter().enumerate() {
            let s = command_in(&mut d, ns, "k", json!("peek"));
            assert_eq!(s["ns"], *ns, "{backend_name}: the component sees its namespace");
            let map = if *ns == "w1" { json!([]) } else { json!([["a", i]]) };
            assert_eq!(expiring(&s), json!([i, [i], map]), "{backend_name}: namespace {ns:?}");
            assert_eq!(s["sum"], i, "{backend_name}: namespace {ns:?}");
        }
        let mut namespaces = BTreeSet::new();
        d.backend().scan_groups(0..=u16::MAX, &mut |p| {
            if let Piece::Value { state: 0, at, .. } = p {
                namespaces.insert(String::from_utf8(at.namespace.to_vec()).unwrap());
            }
        });
        assert_eq!(namespaces, spaces.iter().map(|s| s.to_string()).collect(), "{backend_name}");
    }
}

#[test]
fn state_expires_after_its_ttl_in_both_update_modes_on_both_backends() {
    let rt = runtime();
    let live = json!([7, [1], [["a", 1]]]);
    let gone = json!([null, [], []]);
    for read_extends in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        for (backend_name, backend, store) in backends(dir.path(), 0) {
            let ctx = format!("{backend_name}, update on read: {read_extends}");
            let clock = Clock::manual(1_000);
            let config = json!({"ttl_ms": 100, "ttl_read": read_extends});
            let mut d = driver(&rt, "state-kinds", config, backend, &clock);
            command(&mut d, "k", json!({"value": 7}));
            command(&mut d, "k", json!({"list_add": 1}));
            command(&mut d, "k", json!({"reduce": 5}));
            let s = command(&mut d, "k", json!({"map_put": ["a", 1]}));
            assert_eq!(expiring(&s), live, "{ctx}");
            // A key written once and never read again.
            command(&mut d, "idle", json!({"value": 1}));

            clock.set(1_060);
            assert_eq!(expiring(&command(&mut d, "k", json!("peek"))), live, "{ctx}: alive before its TTL");
            clock.set(1_120);
            let s = command(&mut d, "k", json!("peek"));
            if read_extends {
                assert_eq!(expiring(&s), live, "{ctx}: the read at 1060 started the TTL again");
            } else {
                assert_eq!(expiring(&s), gone, "{ctx}: reads do not extend it: gone 100 ms after the write");
            }
            assert_eq!(s["sum"], 5, "{ctx}: a state without TTL stays");
            clock.set(1_300);
            let s = command(&mut d, "k", json!("peek"));
            assert_eq!(expiring(&s), gone, "{ctx}: gone 100 ms after the last update");

            // The sweep removes expired state nobody reads again from
            // memory, fjall's compaction filter what was spilled.
            d.tick().unwrap();
            if let Some(store) = &store {
                store.compact().unwrap();
            }
            let mut left = Vec::new();
            d.backend().scan_groups(0..=u16::MAX, &mut |p| left.push(format!("{p:?}")));
            assert_eq!(left.len(), 1, "{ctx}: only the reducing state (no TTL) is left: {left:?}");
            assert!(d.backend().check().is_ok());
        }
    }
}

#[test]
fn the_state_of_a_key_group_range_is_read_back_and_dropped() {
    let rt = runtime();
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let group = |k: &str| key_group(k.as_bytes(), MAX_PARALLELISM) as u16;
    let dir = tempfile::tempdir().unwrap();
    // A 4 KiB budget: most of the lsm backend's state is in fjall.
    for (backend_name, backend, _store) in backends(dir.path(), 4096) {
        let clock = Clock::manual(0);
        let mut d = driver(&rt, "state-kinds", Value::Null, backend, &clock);
        for (i, k) in keys.iter().enumerate() {
            command(&mut d, k, json!({"value": i}));
            command(&mut d, k, json!({"list_add_all": [i, i + 1]}));
        }
        let range = 0..=63u16;
        let mut values = BTreeSet::new();
        let mut elements = 0;
        d.backend().scan_groups(range.clone(), &mut |p| {
            assert!(range.contains(&p.group()), "{backend_name}: a piece outside the range: {p:?}");
            match p {
                Piece::Value { state: 0, at, .. } => {
                    values.insert(String::from_utf8(at.key.to_vec()).unwrap());
                }
                Piece::List { .. } => elements += 1,
                _ => {}
            }
        });
        let expected: BTreeSet<String> = keys.iter().filter(|k| range.contains(&group(k))).cloned().collect();
        assert!(!expected.is_empty() && expected.len() < keys.len());
        assert_eq!(values, expected, "{backend_name}: the range holds exactly its keys' values");
        assert_eq!(elements, 2 * expected.len(), "{backend_name}: and their lists");

        d.backend().drop_groups(range.clone());
        for (i, k) in keys.iter().enumerate() {
            let s = command(&mut d, k, json!("peek"));
            if range.contains(&group(k)) {
                assert_eq!(expiring(&s), json!([null, [], []]), "{backend_name}: {k} was dropped");
            } else {
                assert_eq!(expiring(&s), json!([i, [i, i + 1], []]), "{backend_name}: {k} was kept");
            }
        }
        let mut left = 0;
        d.backend().scan_groups(range, &mut |_| left += 1);
        assert_eq!(left, 0, "{backend_name}");
        assert!(d.backend().check().is_ok());
    }
}

#[test]
fn timers_spilled_to_fjall_fire_in_timestamp_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    // 20,000 timers at 80 bytes each in memory, against a 64 KiB budget.
    for (backend_name, backend, store) in backends(dir.path(), 64 << 10) {
        let clock = Clock::manual(0);
        let mut d = driver(&rt, "timer-log", Value::Null, backend, &clock);
        let n = 20_000i64;
        let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 5_000)).collect();
        let mut events = Vec::new();
        for i in 0..n {
            // Timestamps out of order, some shared.
            let ts = (i * 7_919) % 10_007;
            events.push((keys[i as usize].as_bytes(), b"{}".as_slice(), ts));
        }
        for chunk in events.chunks(1_000) {
            d.process(chunk).unwrap();
        }
        if let Some(store) = &store {
            assert!(store.entries_on_disk() > 10_000, "{backend_name}: most timers went to fjall");
        }
        let mut fired = Vec::new();
        for wm in [2_000, 2_000, 6_000, i64::MAX] {
            for (_, v) in d.advance_watermark(wm).unwrap() {
                let v: Value = serde_json::from_slice(&v).unwrap();
                fired.push((v["t"].as_i64().unwrap(), v["k"].as_str().unwrap().to_owned()));
                assert!(v["t"].as_i64().unwrap() <= wm);
            }
        }
        let mut expected: Vec<(i64, String)> = events
            .iter()
            .map(|(k, _, ts)| (*ts, String::from_utf8(k.to_vec()).unwrap()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
        assert_eq!(fired.len(), expected.len(), "{backend_name}: every distinct timer fired once");
        assert_eq!(fired, expected, "{backend_name}: in (timestamp, key) order");
        assert_eq!(d.backend().timers_pending(), 0);
        assert!(d.backend().check().is_ok());
    }
}
