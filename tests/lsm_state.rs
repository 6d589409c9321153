//! The `lsm` state backend through real components and the real `weir`
//! binary: keyed state several times larger than its memory budget keeps
//! every key's value, the word count gives the memory backend's counts,
//! and the run's store folder is removed unless the spec keeps it.

use serde_json::Value;
use std::path::Path;
use weir_core::spec::Spec;
use weir_runtime::RunOptions;
use weir_tests::{component, weir};
use weir_wasm::WasmRuntime;

const KEYS: usize = 100_000;
const ROUNDS: u64 = 3;

/// Runs `keyed_counter` over every key `ROUNDS` times with `state`.
fn count_keys(dir: &Path, state: &str) -> Vec<Value> {
    let mut data = String::with_capacity(KEYS * 30 * ROUNDS as usize);
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            // Keys of several lengths, some past the inline limit.
            let key = if k % 10 == 0 { format!("a-longer-key-past-twenty-bytes-{k}") } else { format!("k{k}") };
            data += &format!("{{\"key\": \"{key}\", \"round\": {round}}}\n");
        }
    }
    std::fs::write(dir.join("events.jsonl"), data).unwrap();
    let spec = format!(
        "sources: [{{id: events, type: file, path: events.jsonl, format: jsonl}}]\n\
         operators: [{{id: count, kind: process, component: {}, input: events, key-by: key}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: count}}]\n\
         state: {state}\n",
        component("keyed-counter").display()
    );
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    let out = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn lsm_state_several_times_its_budget_keeps_every_keys_count() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    // 100,000 keys of about 60 bytes each in memory against 1 MiB.
    let out = count_keys(dir.path(), "{backend: lsm, memory-mb: 1, path: state}");
    assert_eq!(out.len(), KEYS * ROUNDS as usize);
    // One output per input, in input order (one subtask): the count of
    // the line's key after it, which is its round + 1 for every key.
    for (i, e) in out.iter().enumerate() {
        let round = (i / KEYS) as u64;
        assert_eq!(e.as_u64(), Some(round + 1), "line {i} (key #{}, round {round}) counted {e}", i % KEYS);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path().join("state")).unwrap().collect();
    assert!(left.is_empty(), "the run's store folder is removed at the end: {left:?}");
}

#[test]
fn a_kept_lsm_store_stays_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let mut data = String::new();
    for k in 0..1000 {
        data += &format!("{{\"key\": \"k{k}\"}}\n");
    }
    std::fs::write(dir.path().join("events.jsonl"), data).unwrap();
    let spec = format!(
        "sources: [{{id: events, type: file, path: events.jsonl, format: jsonl}}]\n\
         operators: [{{id: count, kind: process, component: {}, input: events, key-by: key}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: count}}]\n\
         state: {{backend: lsm, memory-mb: 1, path: state, keep: true}}\n",
        component("keyed-counter").display()
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let out = weir(&["run", dir.path().join("p.yaml").to_str().unwrap()], &dir.path().join("cache"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("state")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept.len(), 1, "one store folder per run: {kept:?}");
    assert!(kept[0].to_string_lossy().starts_with("weir-state-"), "{kept:?}");
}

#[test]
fn state_settings_that_cannot_work_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = "sources: [{id: g, type: generator, count: 1}]\nsinks: [{id: out, type: discard, input: g}]\n";
    for (state, wanted) in [
        ("{backend: memory, path: x}", "`path` and `keep` are for `backend: lsm`"),
        ("{backend: lsm, keep: true}", "`keep` needs a `path`"),
        ("{backend: lsm, memory-mb: 0}", "memory-mb must be between 1"),
        ("{backend: rocksdb}", "unknown variant `rocksdb`"),
    ] {
        std::fs::write(dir.path().join("p.yaml"), format!("{base}state: {state}\n")).unwrap();
        let out = weir(&["run", dir.path().join("p.yaml").to_str().unwrap()], &dir.path().join("cache"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(wanted), "{state}: {err}");
    }
}

/// The README's word count, on the example's own input, counts the same
/// on the lsm backend with a 1 MiB budget as on the memory backend.
#[test]
fn word_count_on_lsm_gives_the_memory_backends_counts() {
    let run = |flags: &[&str]| {
        let dir = weir_tests::example_copy("wordcount");
        let spec = dir.path().join("pipeline.yaml");
        let mut args = vec!["run", spec.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = weir(&args, &dir.path().join("cache"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<String> =
            std::fs::read_to_string(dir.path().join("out/counts.jsonl")).unwrap().lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let memory = run(&[]);
    assert!(!memory.is_empty());
    assert_eq!(run(&["--state-backend", "lsm", "--state-memory-mb", "1"]), memory);
}

/// Long form, run by hand (`docs/benchmarks.md`): `WEIR_KEYS` keys
/// (default 50 M), each about twice, through the word count's counting
/// operator (value state per key, one end-of-input timer per key) on the
/// lsm backend with a 256 MiB budget, in the real `weir` binary. The peak
/// resident memory stays under 2 GiB and every key's count is right.
///
/// `cargo test --release -p weir-tests --test lsm_state -- --ignored --nocapture`
#[test]
#[ignore = "long: minutes and gigabytes of disk; run by hand"]
fn millions_of_keys_run_in_bounded_memory_with_every_count_right() {
    let keys: u64 = std::env::var("WEIR_KEYS").ok().and_then(|k| k.parse().ok()).unwrap_or(50_000_000);
    let events = 2 * keys;
    let dir = tempfile::tempdir_in(weir_tests::target()).unwrap();
    let source = format!("{{id: gen, type: generator, seed: 3, count: {events}, keys: {keys}, value-size: 8}}");
    let spec = format!(
        "sources: [{source}]\n\
         operators: [{{id: count, kind: process, component: {}, input: gen, key-by: '@key'}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: count}}]\n\
         state: {{backend: lsm, memory-mb: 256, path: state}}\n",
        component("wordcount_count").display()
    );
    std::fs::write(dir.path().join("p.yaml"), &spec).unwrap();
    let started = std::time::Instant::now();
    let out = weir(&["run", dir.path().join("p.yaml").to_str().unwrap()], &dir.path().join("cache"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("{stderr}");
    let peak: f64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("peak resident memory: ")?.strip_suffix(" MiB")?.parse().ok())
        .expect("weir run prints its peak resident memory");
    eprintln!("{keys} keys, {events} events: {:.0} s, peak {peak:.0} MiB", started.elapsed().as_secs_f64());
    assert!(peak < 2048.0, "peak resident memory {peak} MiB");

    let source = Spec::parse(std::path::Path::new("p.yaml"), &spec).unwrap().sources.remove(0);
    let mut expected = vec![0u8; keys as usize];
    for i in 0..events {
        let k = weir_connectors::key_number(&source, 0, i) as usize;
        expected[k] = expected[k].saturating_add(1);
    }
    use std::io::BufRead;
    let file = std::io::BufReader::new(std::fs::File::open(dir.path().join("out.jsonl")).unwrap());
    let mut seen = 0u64;
    for line in file.lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let k: usize = v["word"].as_str().unwrap().parse().unwrap();
        assert_eq!(v["count"].as_u64().unwrap(), u64::from(expected[k]), "key {k}");
        expected[k] = 0;
        seen += 1;
    }
    assert!(expected.iter().all(|&c| c == 0), "every key that had events was counted once");
    eprintln!("{seen} keys counted right");
}
