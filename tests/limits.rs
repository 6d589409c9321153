//! What a guest can make the host pay is bounded: state names, state bytes
//! and timers per call, timers held, timers fired at one watermark, and
//! the size of a call's key table. Each limit hit fails the job with a
//! message naming the quota.

use std::path::Path;
use weir_core::spec::Spec;
use weir_runtime::{JobError, RunOptions};
use weir_tests::component;
use weir_wasm::{Limits, WasmRuntime};

fn run(dir: &Path, config: &str, events: usize, limits: Limits) -> Result<String, String> {
    let data: String = (0..events).map(|i| format!("{{\"key\":\"k{}\",\"ts\":{i}}}\n", i % 3)).collect();
    std::fs::write(dir.join("events.jsonl"), data).unwrap();
    let spec = format!(
        "sources: [{{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts}}]\n\
         operators: [{{id: h, kind: process, component: {}, input: events, key-by: key, config: {config}}}]\n\
         sinks: [{{id: out, type: discard, input: h}}]\n",
        component("hostile-process").display()
    );
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap();
    match weir_runtime::run(&spec, &rt, RunOptions { limits, ..RunOptions::default() }) {
        Ok(_) => Ok(String::new()),
        Err(JobError::Task(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn declaring_thousands_of_states_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let e = run(dir.path(), "{mode: declare-many}", 1, Limits::default()).unwrap_err();
    assert!(e.contains("declares 2001 states; at most 1024"), "{e}");
}

#[test]
fn state_written_through_host_calls_is_charged_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let e = run(dir.path(), "{mode: hoard}", 1, Limits::default()).unwrap_err();
    assert!(e.contains("wrote more than 64 MiB of keyed state in one call (quota `state_bytes_per_call`)"), "{e}");
}

#[test]
fn timers_changed_in_one_call_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { timers_per_call: 10_000, ..Limits::default() };
    let e = run(dir.path(), "{mode: timers, n: 20000}", 1, limits).unwrap_err();
    assert!(e.contains("changed 20000 timers in one call, over the quota of 10000"), "{e}");
}

#[test]
fn timers_held_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { pending_timers: 25_000, ..Limits::default() };
    let e = run(dir.path(), "{mode: timers, n: 10000}", 3, limits).unwrap_err();
    assert!(e.contains("timers in memory, over the quota of 25000 (`pending_timers`)"), "{e}");
}

#[test]
fn a_firing_that_never_ends_is_stopped_by_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { timers_per_firing: 2_000, ..Limits::default() };
    let e = run(dir.path(), "{mode: chase}", 3, limits).unwrap_err();
    assert!(e.contains("keeps registering timers that time has already passed (`timers_per_firing`)"), "{e}");
}

#[test]
fn instantiation_and_init_run_within_the_call_budget() {
    // The budget covers instantiation and `init` as well as batches: a
    // budget too small for anything stops the job at start, promptly.
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { call_budget: std::time::Duration::from_millis(1), ..Limits::default() };
    let started = std::time::Instant::now();
    let r = run(dir.path(), "{mode: timers, n: 100000000}", 1, limits);
    let e = r.unwrap_err();
    assert!(e.contains("time budget of 1 ms"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// A call is cut where its key table would pass `key_table_bytes`; the
/// output is the same as with whole calls.
#[test]
fn calls_cut_by_key_table_bytes_give_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let data: String =
        (0..3000).map(|i| format!("{{\"key\":\"key-{}\",\"ts\":{}}}\n", i % 700, i * 3 + i % 7)).collect();
    std::fs::write(dir.path().join("events.jsonl"), data).unwrap();
    let spec = format!(
        "sources: [{{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts, watermark: {{out-of-orderness-ms: 10}}}}]\n\
         operators: [{{id: t, kind: process, component: {}, input: events, key-by: key, config: {{delay: 5}}}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: t}}]\n",
        component("timer-log").display()
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    let mut outputs = Vec::new();
    for key_table_bytes in [32 << 20, 40] {
        let limits = Limits { key_table_bytes, ..Limits::default() };
        weir_runtime::run(&spec, &rt, RunOptions { limits, ..RunOptions::default() }).unwrap();
        outputs.push(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    }
    assert_eq!(outputs[0].lines().count(), 6000);
    let (a, b): (Vec<&str>, Vec<&str>) = (outputs[0].lines().collect(), outputs[1].lines().collect());
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!(
            "line {i} differs: {:?} with whole calls, {:?} with cut ones (context {:?})",
            a[i],
            b[i],
            &b[i.saturating_sub(3)..(i + 3).min(b.len())]
        );
    }
    assert_eq!(a.len(), b.len());
}

/// `n` passthrough maps chained after a two-record generator.
fn chain_spec(n: usize) -> Spec {
    let passthrough = component("passthrough");
    let mut text = String::from("sources: [{id: g, type: generator, count: 2}]\noperators:\n");
    let mut prev = "g".to_owned();
    for i in 0..n {
        text += &format!("  - {{id: m{i}, kind: map, component: '{}', input: {prev}}}\n", passthrough.display());
        prev = format!("m{i}");
    }
    text += &format!("sinks: [{{id: out, type: discard, input: {prev}}}]\n");
    Spec::parse(Path::new("chain.yaml"), &text).unwrap()
}

/// 5,000 chained operators of one component took 21 s and 2.4 GB for two
/// records: the component was read, verified and linked once per operator.
#[test]
fn a_chain_of_thousands_of_operators_loads_its_component_once() {
    let rt = WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap();
    let summary = weir_runtime::run(&chain_spec(2000), &rt, RunOptions::default()).unwrap();
    let last = summary.vertices.iter().find(|v| v.id == "m1999").unwrap();
    assert_eq!(last.records_out, 2);
    assert_eq!(rt.loads(), 1, "one load for 2,000 operators of one component");
}

/// Past the instance limit a job is refused before anything starts, with
/// what to change, instead of failing midway when address space runs out.
#[test]
fn a_job_of_more_instances_than_a_process_holds_is_refused_at_start() {
    let rt = WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap();
    let options = RunOptions { max_instances: 100, ..RunOptions::default() };
    let e = weir_runtime::run(&chain_spec(101), &rt, options).unwrap_err().to_string();
    assert!(
        e.contains("needs 101 Wasm instances") && e.contains("at most 100") && e.contains("lower the parallelism"),
        "{e}"
    );
}
