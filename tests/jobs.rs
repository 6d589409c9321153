//! Jobs end promptly and report their first real error, whatever the
//! graph's shape and order; output flows in bounded batches; a running job
//! can be watched and cancelled through its handle.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weir_core::spec::Spec;
use weir_runtime::{JobError, JobStatus, Native, RunOptions};
use weir_tests::component;
use weir_wasm::WasmRuntime;

fn events_file(dir: &Path, name: &str, n: usize, key: impl Fn(usize) -> String) {
    let data: String = (0..n).map(|i| format!("{{\"key\":\"{}\",\"ts\":{}}}\n", key(i), i)).collect();
    std::fs::write(dir.join(name), data).unwrap();
}

fn load(dir: &Path, spec: &str) -> Spec {
    std::fs::write(dir.join("p.yaml"), spec.replace("TIMER_LOG", &component("timer-log").display().to_string()))
        .unwrap();
    Spec::load(&dir.join("p.yaml")).unwrap()
}

/// `d` reads `u1` and `u2` and is listed first; `u2` (small input)
/// finishes, then `u1` (big input) fails near its end. The job must end
/// with `u1`'s error, not hang.
#[test]
fn a_failure_after_a_sibling_finished_ends_the_job_with_its_first_error() {
    let dir = tempfile::tempdir().unwrap();
    events_file(dir.path(), "big.jsonl", 200_000, |i| format!("k{}", i % 50));
    events_file(dir.path(), "small.jsonl", 10, |i| format!("k{i}"));
    let spec = load(
        dir.path(),
        "sources:\n\
         - {id: big, type: file, path: big.jsonl, format: jsonl, timestamp: ts}\n\
         - {id: small, type: file, path: small.jsonl, format: jsonl, timestamp: ts}\n\
         operators:\n\
         - {id: d, kind: process, component: TIMER_LOG, input: [u1, u2], key-by: k}\n\
         - {id: u1, kind: process, component: TIMER_LOG, input: big, key-by: key, config: {fail-at: 199000}}\n\
         - {id: u2, kind: process, component: TIMER_LOG, input: small, key-by: key}\n\
         sinks:\n\
         - {id: out, type: discard, input: d}\n",
    );
    let rt = WasmRuntime::new(None).unwrap();
    let job = weir_runtime::start(&spec, &rt, RunOptions::default()).unwrap();
    let status = job.wait_timeout(Duration::from_secs(60));
    assert_eq!(status, JobStatus::Failed, "the job must end, not hang");
    let errors = job.errors();
    assert!(errors[0].to_string().contains("operator `u1`"), "{errors:?}");
    assert!(errors[0].to_string().contains("failing at timestamp 199000"), "{errors:?}");
    match job.wait() {
        Err(JobError::Task(e)) => assert_eq!(e.vertex, "u1"),
        other => panic!("expected u1's error, got {other:?}"),
    }
}

#[test]
fn a_cancelled_unbounded_job_ends_promptly_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spec = load(
        dir.path(),
        "parallelism: 2\n\
         sources: [{id: gen, type: generator, keys: 100}]\n\
         operators: [{id: t, kind: process, component: TIMER_LOG, input: gen, key-by: '@key'}]\n\
         sinks: [{id: out, type: discard, input: t}]\n",
    );
    let rt = WasmRuntime::new(None).unwrap();
    let job = weir_runtime::start(&spec, &rt, RunOptions::default()).unwrap();
    let started = Instant::now();
    while job.metrics().iter().find(|v| v.id == "out").unwrap().records_in == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no records arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(job.status(), JobStatus::Running);
    job.cancel();
    assert_eq!(job.wait_timeout(Duration::from_secs(30)), JobStatus::Canceled);
    assert!(matches!(job.wait(), Err(JobError::Cancelled)));
}

/// Every key registers a timer that only the final watermark passes, so
/// all 50,000 fire at once; what reaches the next stage must still come in
/// batches of at most `batch-size` events.
#[test]
fn timers_due_at_one_watermark_flow_out_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let n = 50_000;
    events_file(dir.path(), "events.jsonl", n, |i| format!("k{i}"));
    let spec = load(
        dir.path(),
        "batch-size: 512\n\
         sources: [{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts}]\n\
         operators:\n\
         - {id: t, kind: process, component: TIMER_LOG, input: events, key-by: key, config: {delay: 1000000000000}}\n\
         - {id: probe, kind: map, component: unused.wasm, input: t}\n\
         sinks: [{id: out, type: discard, input: probe}]\n",
    );
    let largest = Arc::new(AtomicUsize::new(0));
    let seen = largest.clone();
    let mut options = RunOptions::default();
    options.native.insert(
        "probe".into(),
        Native::Map(Box::new(move || {
            let seen = seen.clone();
            Box::new(move |e, out| {
                seen.fetch_max(out.len() + 1, Ordering::Relaxed);
                out.push(e.key, e.value, e.timestamp, e.origin);
            })
        })),
    );
    let rt = WasmRuntime::new(None).unwrap();
    let summary = weir_runtime::run(&spec, &rt, options).unwrap();
    let out = summary.vertices.iter().find(|v| v.id == "out").unwrap();
    assert_eq!(out.records_in, 2 * n as u64, "every event and every timer's output arrives");
    let largest = largest.load(Ordering::Relaxed);
    assert!(largest <= 512, "a batch of {largest} events reached the next stage");
}

/// Records in per subtask of vertex `id`.
fn per_subtask(summary: &weir_runtime::JobSummary, id: &str) -> Vec<u64> {
    let v = summary.vertices.iter().find(|v| v.id == id).unwrap();
    v.subtasks.iter().map(|s| s.records_in).collect()
}

#[test]
fn broadcast_sends_every_event_to_every_subtask_and_rescale_keeps_each_producer_to_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    let spec = load(
        dir.path(),
        "parallelism: 3\n\
         sources: [{id: gen, type: generator, parallelism: 1, count: 1000, keys: 10}]\n\
         sinks: [{id: all, type: discard, input: gen, partition: broadcast}]\n",
    );
    let summary = weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    assert_eq!(per_subtask(&summary, "all"), vec![1000, 1000, 1000], "each subtask gets every event");

    // Two producers, four consumers: producer 0 feeds subtasks 0 and 1,
    // producer 1 subtasks 2 and 3 (rebalance would feed all four from each).
    let spec = load(
        dir.path(),
        "parallelism: 4\nbatch-size: 100\n\
         sources: [{id: gen, type: generator, parallelism: 2, count: 20000, keys: 10}]\n\
         sinks: [{id: out, type: discard, input: gen, partition: rescale}]\n",
    );
    let summary = weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    let got = per_subtask(&summary, "out");
    let sources = summary.vertices.iter().find(|v| v.id == "gen").unwrap();
    let produced: Vec<u64> = sources.subtasks.iter().map(|s| s.records_out).collect();
    assert_eq!(got[0] + got[1], produced[0], "producer 0's events went to subtasks 0 and 1: {got:?}");
    assert_eq!(got[2] + got[3], produced[1], "producer 1's to 2 and 3: {got:?}");
    assert!(got.iter().all(|&n| n > 0), "round robin within each share: {got:?}");

    // Keyed and spread at once is a contradiction, said so.
    let text = "sources: [{id: gen, type: generator, count: 10}]\n\
                operators: [{id: m, kind: map, component: x.wasm, input: gen, key-by: \"@key\", partition: broadcast}]\n\
                sinks: [{id: out, type: discard, input: m}]\n";
    std::fs::write(dir.path().join("bad.yaml"), text).unwrap();
    let err = Spec::load(&dir.path().join("bad.yaml")).unwrap_err().to_string();
    assert!(err.contains("`partition: broadcast`") && err.contains("key-by"), "{err}");
}
