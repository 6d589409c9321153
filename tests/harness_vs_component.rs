//! The same operators, on the same random input, give the same output in
//! order through the native `ProcessHarness` (which fires one timer at a
//! time, as Flink does) and as components run by `weir` (which fire timers
//! in batches, registered and deleted by callbacks of the same call). A
//! timer that fires twice, or out of order, shows up as a difference.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use weir_core::spec::Spec;
use weir_runtime::RunOptions;
use weir_sdk::KeyedProcessFunction;
use weir_sdk::testing::ProcessHarness;
use weir_tests::component;
use weir_wasm::WasmRuntime;

#[derive(Debug, Clone)]
struct Input {
    /// (key, timestamp, amount)
    events: Vec<(u8, i64, f64)>,
    out_of_orderness: i64,
    batch_size: usize,
}

fn input() -> impl Strategy<Value = Input> {
    let event = (0u8..6, -30i64..60, prop_oneof![Just(0.5), Just(100.0), Just(600.0)]);
    (
        proptest::collection::vec(event, 1..250),
        prop_oneof![Just(0i64), Just(25)],
        prop_oneof![Just(1usize), Just(7), Just(1024)],
    )
        .prop_map(|(raw, out_of_orderness, batch_size)| {
            // Mostly increasing time with jitter, so watermarks advance.
            let events = raw
                .into_iter()
                .enumerate()
                .map(|(i, (k, jitter, amount))| (k, 1_000 + 10 * i as i64 + jitter, amount))
                .collect();
            Input { events, out_of_orderness, batch_size }
        })
}

fn record(key: u8, ts: i64, amount: f64) -> Value {
    json!({"key": format!("k{key}"), "account": format!("k{key}"), "amount": amount, "ts": ts})
}

/// Runs the events through the harness with the file source's watermark
/// rule (bounded out-of-orderness, after every event) and the final
/// watermark at the end.
fn through_harness<P: KeyedProcessFunction>(op: P, config: Value, input: &Input) -> Vec<Value> {
    let mut h = ProcessHarness::with_config(op, config).unwrap();
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    for &(key, ts, amount) in &input.events {
        let value = serde_json::to_vec(&record(key, ts, amount)).unwrap();
        out.extend(h.process(format!("k{key}").as_bytes(), &value, Some(ts)).unwrap());
        if ts > max_ts {
            max_ts = ts;
            out.extend(h.advance_watermark(ts - input.out_of_orderness - 1).unwrap());
        }
    }
    out.extend(h.advance_watermark(i64::MAX).unwrap());
    out.into_iter().filter(|e| e.side_output.is_none()).map(|e| e.json::<Value>().unwrap()).collect()
}

fn through_component(rt: &WasmRuntime, dir: &Path, name: &str, config: Value, input: &Input) -> Vec<Value> {
    let data: String = input.events.iter().map(|&(k, ts, a)| format!("{}\n", record(k, ts, a))).collect();
    std::fs::write(dir.join("events.jsonl"), data).unwrap();
    let spec = format!(
        "batch-size: {}\n\
         sources: [{{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts, watermark: {{out-of-orderness-ms: {}}}}}]\n\
         operators: [{{id: op, kind: process, component: {}, input: events, key-by: key, config: {config}}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: op}}]\n",
        input.batch_size,
        input.out_of_orderness,
        component(name).display()
    );
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.join("p.yaml")).unwrap();
    weir_runtime::run(&spec, rt, RunOptions::default()).unwrap();
    std::fs::read_to_string(dir.join("out.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn compare<P: KeyedProcessFunction + Default>(name: &str, config: Value, input: &Input) -> Result<(), TestCaseError> {
    let rt = WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected = through_harness(P::default(), config.clone(), input);
    let got = through_component(&rt, dir.path(), name, config, input);
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
        return Err(TestCaseError::fail(format!(
            "{name}: {} events from the component, {} from the harness; first difference at {first}: {:?} vs {:?}",
            got.len(),
            expected.len(),
            got.get(first),
            expected.get(first)
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn timer_churn_fires_each_timer_once_in_order_as_the_harness_does(input in input()) {
        compare::<timer_churn::TimerChurn>("timer-churn", json!({"delay": 10, "size": 50}), &input)?;
    }

    #[test]
    fn timer_log_matches_the_harness(input in input()) {
        compare::<timer_log::TimerLog>("timer-log", json!({"delay": 15}), &input)?;
    }

    #[test]
    fn fraud_detector_matches_the_harness(input in input()) {
        compare::<fraud_detector::FraudDetector>("fraud-detector", Value::Null, &input)?;
    }

    #[test]
    fn word_count_matches_the_harness(input in input()) {
        compare::<wordcount_count::Count>("wordcount-count", Value::Null, &input)?;
    }
}
