//! Bad input gets a clear error naming the place, never a panic.

use std::path::Path;
use weir_tests::{assert_clean_failure, component, weir};

const SPEC: &str = "\
sources:
  - id: lines
    type: file
    path: input.txt
    format: text
operators:
  - id: panicky
    kind: map
    component: COMPONENT
    input: lines
sinks:
  - id: out
    type: file
    path: out.jsonl
    input: panicky
";

fn run_spec(dir: &Path, spec: &str, input: &str) -> std::process::Output {
    let spec = spec.replace("COMPONENT", &component("panicky-map").display().to_string());
    std::fs::write(dir.join("pipeline.yaml"), spec).unwrap();
    std::fs::write(dir.join("input.txt"), input).unwrap();
    weir(&["run", dir.join("pipeline.yaml").to_str().unwrap()], &dir.join("cache"))
}

#[test]
fn the_test_spec_itself_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_spec(dir.path(), SPEC, "a\nb\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(), "\"a\"\n\"b\"\n");
}

#[test]
fn unknown_spec_key_reports_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_spec(dir.path(), &SPEC.replace("    kind: map\n", "    kind: map\n    colour: blue\n"), "a\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("pipeline.yaml:9:5: operators[0]: unknown field `colour`"), "{stderr}");
}

#[test]
fn wrong_spec_type_reports_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run_spec(dir.path(), &SPEC.replace("    format: text\n", "    format: text\n    parallelism: [1]\n"), "a\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("pipeline.yaml:6:18: sources[0].parallelism: invalid type: sequence"), "{stderr}");
}

#[test]
fn a_component_of_the_wrong_world_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC.replace("kind: map", "kind: process\n    key-by: word");
    let out = run_spec(dir.path(), &spec, "a\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("operator `panicky`"), "{stderr}");
    assert!(stderr.contains("panicky_map.wasm does not implement world `process`"), "{stderr}");
    assert!(stderr.contains("missing export `weir:operator/keyed-process@0.2.0`"), "{stderr}");
    assert!(stderr.contains("implements world `map` instead"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm").unwrap();
    let spec = SPEC.replace("COMPONENT", &dir.path().join("junk.wasm").display().to_string());
    let out = run_spec(dir.path(), &spec, "a\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("junk.wasm is not a valid WebAssembly component"), "{stderr}");
}

#[test]
fn a_guest_trap_shows_the_guests_message_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_spec(dir.path(), SPEC, "ok\nboom\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("operator `panicky` (subtask 0)"), "{stderr}");
    assert!(stderr.contains("operator trapped"), "{stderr}");
    assert!(stderr.contains("the guest blew up on purpose"), "{stderr}");
    assert!(stderr.contains("panicky_map"), "the guest's stack is shown: {stderr}");
}

#[test]
fn a_guest_trap_names_the_record_it_was_processing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_spec(
        dir.path(),
        SPEC,
        "ok
fine
boom
",
    );
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("record at") && stderr.contains("input.txt byte offset 8"), "{stderr}");
}

#[test]
fn key_by_event_key_on_events_without_a_key_fails_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC
        .replace(
            "sinks:",
            "  - id: keyed\n    kind: map\n    component: COMPONENT\n    input: panicky\n    key-by: \"@key\"\nsinks:",
        )
        .replace("    input: panicky\n\n", "    input: keyed\n")
        .replace(
            "  - id: out\n    type: file\n    path: out.jsonl\n    input: panicky",
            "  - id: out\n    type: file\n    path: out.jsonl\n    input: keyed",
        );
    let out = run_spec(dir.path(), &spec, "a\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("has no key, but `keyed` is keyed by `@key`"), "{stderr}");
}

#[test]
fn an_operator_error_names_the_record_offset() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_spec(dir.path(), SPEC, "ok\nfine\nbad\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("input.txt byte offset 8"), "{stderr}");
    assert!(stderr.contains("refusing the value `bad`"), "{stderr}");
}

#[test]
fn a_type_error_in_the_data_names_the_operator_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC.replace("format: text", "format: jsonl");
    let out = run_spec(dir.path(), &spec, "\"ok\"\n{\"n\": 1}\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("operator `panicky`") && stderr.contains("byte offset 5"), "{stderr}");
    assert!(stderr.contains("value is not the expected JSON"), "{stderr}");
}

#[test]
fn a_line_that_is_not_json_names_the_source_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC.replace("format: text", "format: jsonl");
    let out = run_spec(dir.path(), &spec, "\"ok\"\n{oops\n");
    let stderr = assert_clean_failure(&out);
    assert!(
        stderr.contains("source `lines`") && stderr.contains("byte offset 5") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn a_missing_key_field_names_the_operator_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC.replace("    input: lines\n", "    input: lines\n    key-by: user\n");
    let spec = spec.replace("format: text", "format: jsonl");
    let out = run_spec(dir.path(), &spec, "\"a\"\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("no field `/user`") && stderr.contains("offset 0"), "{stderr}");
}

/// Runs the test spec in this process with tight limits.
fn run_limited(
    dir: &Path,
    input: &str,
    limits: weir_wasm::Limits,
) -> Result<weir_runtime::JobSummary, weir_runtime::JobError> {
    let spec = SPEC.replace("COMPONENT", &component("panicky-map").display().to_string());
    std::fs::write(dir.join("pipeline.yaml"), spec).unwrap();
    std::fs::write(dir.join("input.txt"), input).unwrap();
    let spec = weir_core::spec::Spec::load(&dir.join("pipeline.yaml")).unwrap();
    let rt = weir_wasm::WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, weir_runtime::RunOptions { limits, ..Default::default() })
}

#[test]
fn a_call_over_its_time_budget_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = weir_wasm::Limits { call_budget: std::time::Duration::from_millis(200), ..Default::default() };
    let started = std::time::Instant::now();
    let err = run_limited(dir.path(), "ok\nspin\n", limits).unwrap_err().to_string();
    assert!(err.contains("operator `panicky`") && err.contains("exceeded its time budget of 200 ms"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "interrupted promptly");
}

#[test]
fn a_guest_over_its_memory_limit_traps_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let limits = weir_wasm::Limits { memory_bytes: 64 << 20, ..Default::default() };
    let err = run_limited(dir.path(), "hog\n", limits).unwrap_err().to_string();
    assert!(err.contains("operator `panicky`") && err.contains("operator trapped"), "{err}");
    assert!(err.contains("memory allocation") || err.contains("alloc"), "names the allocation failure: {err}");
}

#[test]
fn a_guest_cannot_sleep_past_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = run_limited(dir.path(), "nap\n", weir_wasm::Limits::default()).unwrap_err().to_string();
    assert!(err.contains("operator `panicky`") && err.contains("operators cannot sleep"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "refused at once");
}

/// More instances than the machine can hold (here: address space capped
/// with `ulimit -v`) is a resources error that says to lower the
/// parallelism, not a "trap".
#[test]
fn a_parallelism_the_machine_cannot_hold_says_to_lower_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "parallelism: 64\n\
         sources: [{{id: s, type: generator, count: 10}}]\n\
         operators: [{{id: m, kind: map, component: {}, input: s}}]\n\
         sinks: [{{id: out, type: discard, input: m}}]\n",
        component("passthrough").display()
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 24000000 && exec '{}' run p.yaml", weir_tests::weir_bin().display()))
        .current_dir(dir.path())
        .env("WEIR_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("lower the parallelism") && !stderr.contains("trapped"), "{stderr}");
}

#[test]
fn a_map_with_a_dead_letter_output_routes_the_records_it_rejects_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SPEC.replace("    input: lines\n", "    input: lines\n    dead-letter: rejected\n")
        + "  - {id: dead, type: file, path: dead.jsonl, input: 'panicky#rejected'}\n";
    let out = run_spec(dir.path(), &spec, "a\nbad\nb\nbad\nc\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(), "\"a\"\n\"b\"\n\"c\"\n");
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dead.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (d, offset) in dead.iter().zip([2, 8]) {
        assert_eq!((d["record"].as_str(), d["operator"].as_str()), (Some("bad"), Some("panicky")), "{d}");
        assert_eq!(d["offset"].as_u64(), Some(offset), "{d}");
        assert!(d["error"].as_str().unwrap().contains("refusing the value `bad`"), "{d}");
    }
    // A trap is not a rejected record: the job still fails, naming it.
    let out = run_spec(dir.path(), &spec, "a\nboom\n");
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("blew up on purpose"), "{stderr}");
}
