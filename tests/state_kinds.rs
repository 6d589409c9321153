//! Every kind of keyed state (value in both codecs, list, map, reducing,
//! aggregating) through a real component and the host's memory backend:
//! concrete results for a known sequence, the same results as the native
//! harness on random sequences, and a clear error for a state name
//! declared twice.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use weir_core::spec::Spec;
use weir_runtime::RunOptions;
use weir_sdk::testing::ProcessHarness;
use weir_tests::component;
use weir_wasm::WasmRuntime;

fn record(key: &str, cmd: &Value) -> Value {
    json!({"key": key, "cmd": cmd})
}

fn runtime() -> WasmRuntime {
    WasmRuntime::new(Some(weir_tests::target().join("weir-test-cache"))).unwrap()
}

/// Runs `(key, command)` records through the `state-kinds` component.
fn through_component(
    rt: &WasmRuntime,
    dir: &Path,
    records: &[(String, Value)],
    batch_size: usize,
    config: Value,
) -> Result<Vec<Value>, String> {
    let data: String = records.iter().map(|(k, c)| format!("{}\n", record(k, c))).collect();
    std::fs::write(dir.join("events.jsonl"), data).unwrap();
    let spec = format!(
        "batch-size: {batch_size}\n\
         sources: [{{id: events, type: file, path: events.jsonl, format: jsonl}}]\n\
         operators: [{{id: op, kind: process, component: {}, input: events, key-by: key, config: {config}}}]\n\
         sinks: [{{id: out, type: file, path: out.jsonl, input: op}}]\n",
        component("state-kinds").display()
    );
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.join("p.yaml")).unwrap();
    weir_runtime::run(&spec, rt, RunOptions::default()).map_err(|e| e.to_string())?;
    let out = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    Ok(out.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

fn through_harness(records: &[(String, Value)]) -> Vec<Value> {
    let mut h = ProcessHarness::new(state_kinds::StateKinds::default()).unwrap();
    let mut out = Vec::new();
    for (key, cmd) in records {
        let value = serde_json::to_vec(&record(key, cmd)).unwrap();
        out.extend(h.process(key.as_bytes(), &value, None).unwrap());
    }
    out.into_iter().map(|e| e.json::<Value>().unwrap()).collect()
}

#[test]
fn every_state_kind_keeps_what_flink_would_through_a_component() {
    let k = |c: Value| ("k".to_owned(), c);
    let records = vec![
        k(json!({"value": 7})),
        k(json!({"text": "héllo"})),
        k(json!({"list_add": 1})),
        k(json!({"list_add_all": [2, 3]})),
        k(json!({"map_put": ["b", 2]})),
        k(json!({"map_put_all": [["a", 1], ["c", 3]]})),
        k(json!({"reduce": 5})),
        k(json!({"reduce": -2})),
        k(json!({"average": 1.0})),
        k(json!({"average": 4.0})),
        ("other".to_owned(), json!({"list_add": 9})),
        k(json!({"map_remove": "a"})),
        k(json!({"list_update": []})),
        k(json!("value_clear")),
        k(json!({"map_fill": 1500})),
        k(json!("map_clear")),
    ];
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let out = through_component(&rt, dir.path(), &records, 4, Value::Null).unwrap();
    assert_eq!(out.len(), records.len());
    let after_average = &out[9];
    assert_eq!(after_average["value"], 7);
    assert_eq!(after_average["text"], "héllo");
    assert_eq!(after_average["list"], json!([1, 2, 3]));
    assert_eq!(after_average["map"], json!([["a", 1], ["b", 2], ["c", 3]]));
    assert_eq!(after_average["keys"], json!(["a", "b", "c"]));
    assert_eq!(after_average["values"], json!([1, 2, 3]));
    assert_eq!((after_average["a"].clone(), after_average["has_a"].clone()), (json!(1), json!(true)));
    assert_eq!(after_average["sum"], 3, "reduce applied on add: 5 + -2");
    assert_eq!(after_average["average"], 2.5, "aggregate: (1 + 4) / 2");
    assert_eq!(out[10]["list"], json!([9]), "state is per key");
    assert_eq!(out[10]["value"], Value::Null);
    assert_eq!(out[11]["has_a"], false);
    assert_eq!(out[11]["a"], Value::Null);
    assert_eq!(out[12]["list"], json!([]), "an empty update clears the list");
    assert_eq!(out[13]["value"], Value::Null);
    assert_eq!(out[13]["sum"], 3, "clearing one state leaves the others");
    // 1,500 entries cross the boundary in chunks of 1,024, in key order.
    assert_eq!(out[14]["map"], json!({"len": 1502, "sorted": true}));
    assert_eq!(out[14]["keys"], 1502);
    assert_eq!(out[14]["values"], 1499 * 1500 / 2 + 2 + 3);
    assert_eq!(out[15]["empty"], true);
    assert_eq!(out, through_harness(&records), "the harness agrees");
}

#[test]
fn a_state_name_declared_twice_with_another_kind_fails_at_start_naming_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let err = through_component(&rt, dir.path(), &[("k".into(), json!({"value": 1}))], 4, json!({"conflict": true}))
        .unwrap_err();
    assert!(err.contains("state `value` is declared twice"), "{err}");
    assert!(err.contains("value_state") && err.contains("list_state"), "{err}");
    let mut declared = ProcessHarness::with_config(state_kinds::StateKinds::default(), json!({"conflict": true}));
    assert!(declared.as_mut().is_err_and(|e| e.message().contains("declared twice")));
}

#[test]
fn a_time_to_live_on_an_undeclared_state_or_of_zero_fails_at_start_naming_it() {
    let rt = runtime();
    for (config, says) in [
        (json!({"ttl_on": "nope"}), "`enable_time_to_live(\"nope\")` names no state declared before it"),
        (json!({"ttl_ms": 0}), "state `value` has a time-to-live of 0 ms"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err =
            through_component(&rt, dir.path(), &[("k".into(), json!({"value": 1}))], 4, config.clone()).unwrap_err();
        assert!(err.contains(says), "{config}: {err}");
        assert!(err.contains("op"), "the error names the operator: {err}");
        let declared = ProcessHarness::with_config(state_kinds::StateKinds::default(), config.clone());
        assert!(declared.as_ref().is_err_and(|e| e.message().contains(says)), "{config}: harness");
    }
}

fn command() -> impl Strategy<Value = Value> {
    let small = -5i64..5;
    let name = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")].prop_map(str::to_owned);
    prop_oneof![
        (0u64..1000).prop_map(|v| json!({"value": v})),
        Just(json!("value_clear")),
        "[a-zé]{0,4}".prop_map(|t| json!({"text": t})),
        small.clone().prop_map(|v| json!({"list_add": v})),
        proptest::collection::vec(small.clone(), 0..4).prop_map(|v| json!({"list_add_all": v})),
        proptest::collection::vec(small.clone(), 0..4).prop_map(|v| json!({"list_update": v})),
        Just(json!("list_clear")),
        (name.clone(), small.clone()).prop_map(|(k, v)| json!({"map_put": [k, v]})),
        proptest::collection::vec((name.clone(), small.clone()), 0..3).prop_map(|e| json!({"map_put_all": e})),
        name.prop_map(|k| json!({"map_remove": k})),
        Just(json!("map_clear")),
        small.clone().prop_map(|v| json!({"reduce": v})),
        Just(json!("reduce_clear")),
        small.prop_map(|v| json!({"average": v as f64})),
        Just(json!("average_clear")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn state_kinds_match_the_harness(
        commands in proptest::collection::vec((0u8..3, command()), 1..120),
        batch_size in prop_oneof![Just(1usize), Just(7), Just(1024)],
    ) {
        let records: Vec<(String, Value)> = commands.into_iter().map(|(k, c)| (format!("k{k}"), c)).collect();
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let got = through_component(&rt, dir.path(), &records, batch_size, Value::Null).unwrap();
        // The component's output is per key in input order; across keys a
        // batch may interleave differently, so compare per key.
        let expected = through_harness(&records);
        for key in ["k0", "k1", "k2"] {
            let of = |v: &Vec<Value>| v.iter().filter(|e| e["key"] == key).cloned().collect::<Vec<_>>();
            prop_assert_eq!(of(&got), of(&expected), "key {}", key);
        }
    }
}
