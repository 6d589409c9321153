//! Windows against Flink: every case of `../shared/peers/flink` (tumbling,
//! sliding, session, allowed lateness with a late side output, a global
//! window with a count trigger and evictor), run through Weir's window
//! operator on Flink's input, gives Flink's output line for line.

use serde_json::{Value, json};
use std::path::Path;
use weir_core::spec::Spec;
use weir_runtime::RunOptions;
use weir_tests::root;
use weir_wasm::WasmRuntime;

fn example() -> std::path::PathBuf {
    root().join("examples").join("window-semantics")
}

/// Runs one window operator over the reference events; the JSON lines of
/// `out.jsonl` and of `late.jsonl` (the late side output, when read).
fn run_case(operator: &str, late: bool) -> (Vec<Value>, Vec<Value>) {
    run_case_in_batches(operator, late, 1024)
}

fn run_case_in_batches(operator: &str, late: bool, batch_size: usize) -> (Vec<Value>, Vec<Value>) {
    run_case_with(operator, late, batch_size, "")
}

fn run_case_with(operator: &str, late: bool, batch_size: usize, state: &str) -> (Vec<Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example().join("data/events.csv"), dir.path().join("events.csv")).unwrap();
    let late_sink = if late { "  - {id: late, type: file, path: late.jsonl, input: 'w#late'}\n" } else { "" };
    let spec = format!(
        "batch-size: {batch_size}\n\
         sources:\n\
         \x20 - {{id: events, type: file, path: events.csv, format: csv, timestamp: timestamp_ms, watermark: {{out-of-orderness-ms: 2000}}}}\n\
         operators:\n\
         \x20 - {{id: w, kind: window, input: events, key-by: key, {operator}}}\n\
         sinks:\n\
         \x20 - {{id: out, type: file, path: out.jsonl, input: w}}\n{late_sink}{state}"
    );
    std::fs::write(dir.path().join("p.yaml"), &spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap_or_else(|e| panic!("{e}\n{spec}"));
    let rt = WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.path().join(name))
            .map(|t| t.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
            .unwrap_or_default()
    };
    (read("out.jsonl"), read("late.jsonl"))
}

fn expected(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(example().join("expected").join(file)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn field(v: &Value, name: &str) -> String {
    match &v[name] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn lines(out: &[Value], format: impl Fn(&Value) -> String) -> Vec<String> {
    let mut lines: Vec<String> = out.iter().map(format).collect();
    lines.sort();
    lines
}

fn window_line(case: &str, agg: &str) -> impl Fn(&Value) -> String {
    move |v| format!("{case},{},{},{},{}", field(v, "key"), field(v, "start"), field(v, "end"), field(v, agg))
}

#[test]
fn tumbling_windows_sum_as_flink() {
    let (out, _) = run_case("window: {type: tumbling, size-ms: 5000}, function: {type: sum, field: value}", false);
    assert_eq!(lines(&out, window_line("tumble", "sum")), expected("tumble.csv"));
}

#[test]
fn sliding_windows_count_as_flink() {
    let (out, _) = run_case("window: {type: sliding, size-ms: 10000, slide-ms: 5000}, function: {type: count}", false);
    assert_eq!(lines(&out, window_line("slide", "count")), expected("slide.csv"));
}

#[test]
fn session_windows_merge_as_flink() {
    let (out, _) = run_case("window: {type: session, gap-ms: 3000}, function: {type: sum, field: value}", false);
    assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"));
}

#[test]
fn allowed_lateness_refires_and_later_elements_go_to_the_late_output_as_flink() {
    let (out, late) = run_case(
        "window: {type: tumbling, size-ms: 5000}, allowed-lateness-ms: 3000, late-output: late, \
         function: {type: sum, field: value}",
        true,
    );
    let main = lines(&out, |v| {
        format!(
            "late_main,{},{},{},{},{}",
            field(v, "key"),
            field(v, "start"),
            field(v, "end"),
            field(v, "firing"),
            field(v, "sum")
        )
    });
    assert_eq!(main, expected("late_main.csv"));
    let side =
        lines(&late, |v| format!("late_side,{},{},{}", field(v, "key"), field(v, "timestamp_ms"), field(v, "value")));
    assert_eq!(side, expected("late_side.csv"));
}

#[test]
fn a_global_window_with_a_count_trigger_and_evictor_sums_as_flink() {
    let (out, _) = run_case(
        "window: {type: global}, trigger: {type: count, count: 3}, evictor: {type: count, count: 2}, \
         function: {type: sum, field: value}",
        false,
    );
    let got = lines(&out, |v| {
        format!("global,{},{},{}", field(v, "key"), v["firing"].as_u64().unwrap() + 1, field(v, "sum"))
    });
    assert_eq!(got, expected("global_count.csv"));
}

#[test]
fn the_example_data_is_the_reference_input() {
    // The example keeps its own copy of Flink's input and outputs; when
    // the harness is beside the project, they must be the same files.
    let shared = root().join("..").join("shared").join("peers").join("flink");
    if !shared.exists() {
        eprintln!("{} is missing: the copy is not compared", shared.display());
        return;
    }
    let same = |a: &Path, b: &Path| std::fs::read(a).unwrap() == std::fs::read(b).unwrap();
    assert!(same(&shared.join("input/events.csv"), &example().join("data/events.csv")));
    for f in ["tumble", "slide", "session", "late_main", "late_side", "global_count", "timers"] {
        let name = format!("{f}.csv");
        assert!(same(&shared.join("expected").join(&name), &example().join("expected").join(&name)), "{name}");
    }
}

#[test]
fn every_window_semantics_example_writes_flinks_file_through_the_weir_binary() {
    let dir = tempfile::tempdir().unwrap();
    let components = weir_tests::components().display().to_string();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(example().join("data/events.csv"), dir.path().join("data/events.csv")).unwrap();
    let cases: [(&str, &[&str]); 9] = [
        ("tumble", &["tumble"]),
        ("slide", &["slide"]),
        ("session", &["session"]),
        ("late", &["late_main", "late_side"]),
        ("global_count", &["global_count"]),
        ("timers", &["timers"]),
        ("global_count_plugin", &["global_count_plugin"]),
        ("session_plugin", &["session_plugin"]),
        ("tumble_plugin", &["tumble_plugin"]),
    ];
    for (case, files) in cases {
        let spec = std::fs::read_to_string(example().join(format!("{case}.yaml"))).unwrap();
        let spec = spec.replace("../../target/wasm32-wasip2/release", &components);
        let path = dir.path().join(format!("{case}.yaml"));
        std::fs::write(&path, spec).unwrap();
        let out = weir_tests::weir(&["run", path.to_str().unwrap()], &dir.path().join("cache"));
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        for file in files {
            let text = std::fs::read_to_string(dir.path().join("out").join(format!("{file}.csv"))).unwrap();
            let mut got: Vec<String> = text.lines().map(str::to_owned).collect();
            got.sort();
            // The plugin cases reproduce the built-ins' references.
            let reference = file.strip_suffix("_plugin").unwrap_or(file);
            assert_eq!(got, expected(&format!("{reference}.csv")), "{case}: out/{file}.csv");
        }
    }
}

#[test]
fn session_merges_that_cross_batch_boundaries_give_the_same_sessions() {
    for batch_size in [1, 2, 7] {
        let (out, _) = run_case_in_batches(
            "window: {type: session, gap-ms: 3000}, function: {type: sum, field: value}",
            false,
            batch_size,
        );
        assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"), "batch size {batch_size}");
    }
}

/// Runs one window operator `w` over JSON lines `{"k", "ts", "v"}` (the
/// watermark trails the largest timestamp by 1 ms); its main output and
/// side outputs by tag.
fn run_small(events: &[Value], operator: &str, tags: &[&str]) -> Result<(Vec<Value>, Vec<Vec<Value>>), String> {
    let dir = tempfile::tempdir().unwrap();
    let data: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.path().join("events.jsonl"), data).unwrap();
    let sinks: String =
        tags.iter().map(|t| format!("  - {{id: side-{t}, type: file, path: {t}.jsonl, input: 'w#{t}'}}\n")).collect();
    let spec = format!(
        "sources:\n\
         \x20 - {{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts}}\n\
         operators:\n\
         \x20 - {{id: w, kind: window, input: events, key-by: k, {operator}}}\n\
         sinks:\n\
         \x20 - {{id: out, type: file, path: out.jsonl, input: w}}\n{sinks}"
    );
    std::fs::write(dir.path().join("p.yaml"), &spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).map_err(|e| e.to_string())?;
    let rt = WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).map_err(|e| e.to_string())?;
    let read = |name: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let mut v: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        v.sort_by_key(|x| x.to_string());
        v
    };
    Ok((read("out.jsonl"), tags.iter().map(|t| read(&format!("{t}.jsonl"))).collect()))
}

fn ev(k: &str, ts: i64, v: i64) -> Value {
    json!({"k": k, "ts": ts, "v": v})
}

#[test]
fn a_late_element_fires_its_window_again_and_one_beyond_the_lateness_goes_to_the_late_output() {
    let events = [ev("a", 1000, 1), ev("a", 6000, 2), ev("a", 2000, 4), ev("a", 9000, 8), ev("a", 3000, 16)];
    let (out, side) = run_small(
        &events,
        "window: {type: tumbling, size-ms: 5000}, allowed-lateness-ms: 3000, late-output: late, function: {type: sum, field: v}",
        &["late"],
    )
    .unwrap();
    let mut want = vec![
        // Watermark 5999 fires [0, 5000); 2000 is late but within 3 s: it fires again.
        json!({"key": "a", "start": 0, "end": 5000, "firing": 0, "sum": 1}),
        json!({"key": "a", "start": 0, "end": 5000, "firing": 1, "sum": 5}),
        json!({"key": "a", "start": 5000, "end": 10000, "firing": 0, "sum": 10}),
    ];
    want.sort_by_key(|x| x.to_string());
    assert_eq!(out, want);
    // Watermark 8999 passed 4999 + 3000: 3000 is too late for its window.
    assert_eq!(side[0], vec![ev("a", 3000, 16)]);
}

#[test]
fn empty_windows_emit_nothing() {
    let events = [ev("a", 1000, 1), ev("a", 21_000, 2), ev("b", 22_000, 3)];
    let (out, _) = run_small(&events, "window: {type: tumbling, size-ms: 5000}, function: {type: count}", &[]).unwrap();
    let mut windows: Vec<(String, i64)> = out.iter().map(|v| (field(v, "key"), v["start"].as_i64().unwrap())).collect();
    windows.sort();
    assert_eq!(windows, vec![("a".into(), 0), ("a".into(), 20_000), ("b".into(), 20_000)]);
    let (out, _) = run_small(&events, "window: {type: global}, function: {type: count}", &[]).unwrap();
    assert!(out.is_empty(), "the global window's default trigger never fires: {out:?}");
}

#[test]
fn a_rejected_record_goes_to_the_dead_letter_output_with_its_error() {
    let events = [ev("a", 1000, 1), json!({"k": "a", "ts": 1500, "v": "two"}), ev("a", 2000, 4)];
    let window = "window: {type: tumbling, size-ms: 5000}, function: {type: sum, field: v}";
    let (out, side) = run_small(&events, &format!("{window}, dead-letter: rejected"), &["rejected"]).unwrap();
    assert_eq!(out, vec![json!({"key": "a", "start": 0, "end": 5000, "sum": 5, "firing": 0})]);
    assert_eq!(side[0].len(), 1);
    let dead = &side[0][0];
    assert_eq!(dead["record"], json!({"k": "a", "ts": 1500, "v": "two"}));
    assert_eq!((dead["operator"].as_str(), dead["offset"].as_u64()), (Some("w"), Some(26)));
    assert!(dead["error"].as_str().unwrap().contains("not a number"), "{dead}");
    // Without a dead-letter output the record fails the job, named.
    let err = run_small(&events, window, &[]).unwrap_err();
    assert!(err.contains("offset 26") && err.contains("not a number"), "{err}");
}

#[test]
fn bad_window_settings_are_refused_naming_the_operator() {
    let parse = |op: &str| {
        let text = format!(
            "sources: [{{id: s, type: generator}}]\n\
             operators: [{{id: w, kind: window, input: s, key-by: '@key', {op}}}]\n\
             sinks: [{{id: out, type: discard, input: w}}]\n"
        );
        Spec::parse(Path::new("p.yaml"), &text).map(|_| ()).map_err(|e| e.to_string())
    };
    for (op, says) in [
        ("function: {type: count}", "needs `window:`"),
        ("window: {type: tumbling, size-ms: 0}, function: {type: count}", "size-ms must be a positive"),
        ("window: {type: tumbling, size-ms: 10, offset-ms: 10}, function: {type: count}", "offset-ms"),
        (
            "window: {type: count, size: 3}, trigger: {type: never}, function: {type: count}",
            "count windows set their own trigger",
        ),
        ("window: {type: global}, function: {type: sum}", "needs the `field`"),
        ("window: {type: global}", "needs `function:`"),
        ("window: {type: global}, function: {type: count}, allowed-lateness-ms: -1", "must not be negative"),
        ("window: {type: global}, function: {type: count}, late-output: x, dead-letter: x", "different tags"),
        ("window: {type: global}, function: {type: count}, component: x.wasm", "remove `component`"),
        (
            "window: {type: global}, function: {type: count}, trigger: {type: purging, of: {type: count, count: 0}}",
            "count of at least 1",
        ),
    ] {
        let err = parse(op).unwrap_err();
        assert!(err.contains(says) && err.contains("p.yaml:2:"), "{op}: {err}");
    }
    assert!(parse("window: {type: session, gap-ms: 5}, function: {type: max, field: v}").is_ok());
}

#[test]
fn window_all_windows_the_whole_stream_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let events = [ev("a", 1000, 1), ev("b", 2000, 2), ev("c", 6000, 4), ev("a", 7000, 8)];
    let data: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.path().join("events.jsonl"), data).unwrap();
    let spec = "parallelism: 2\n\
         sources: [{id: events, type: file, path: events.jsonl, format: jsonl, timestamp: ts}]\n\
         operators: [{id: w, kind: window-all, input: events, window: {type: tumbling, size-ms: 5000}, function: {type: max, field: v}}]\n\
         sinks: [{id: out, type: file, path: out.jsonl, input: w}]\n";
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    let summary = weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    assert_eq!(summary.vertices.iter().find(|v| v.id == "w").map(|v| v.parallelism), Some(1));
    let out = weir_tests::sorted_json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(
        out,
        vec![
            json!({"start": 5000, "end": 10000, "firing": 0, "max": 8}),
            json!({"start": 0, "end": 5000, "firing": 0, "max": 2}),
        ],
        "(sorted by their text)"
    );
    let keyed = "sources: [{id: s, type: generator}]\n\
         operators: [{id: w, kind: window-all, input: s, key-by: k, window: {type: global}, function: {type: count}}]\n\
         sinks: [{id: out, type: discard, input: w}]\n";
    let err = Spec::parse(Path::new("p.yaml"), keyed).unwrap_err().to_string();
    assert!(err.contains("remove `key-by`"), "{err}");
}

#[test]
fn windows_keep_their_state_in_the_lsm_backend_with_the_same_results() {
    // Windows, trigger counts, sessions and timers through the lsm
    // backend (these cases fit its 1 MiB budget: what spills is the
    // backend's own business, tested in weir-state).
    let lsm = "state: {backend: lsm, memory-mb: 1}\n";
    let (out, _) =
        run_case_with("window: {type: session, gap-ms: 3000}, function: {type: sum, field: value}", false, 64, lsm);
    assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"));
    let (out, _) = run_case_with(
        "window: {type: sliding, size-ms: 10000, slide-ms: 5000}, function: {type: count}",
        false,
        64,
        lsm,
    );
    assert_eq!(lines(&out, window_line("slide", "count")), expected("slide.csv"));
    let (out, late) = run_case_with(
        "window: {type: tumbling, size-ms: 5000}, allowed-lateness-ms: 3000, late-output: late, function: {type: sum, field: value}",
        true,
        64,
        lsm,
    );
    assert_eq!(out.len(), expected("late_main.csv").len());
    assert_eq!(late.len(), expected("late_side.csv").len());
    let (out, _) = run_case_with(
        "window: {type: global}, trigger: {type: count, count: 3}, evictor: {type: count, count: 2}, function: {type: sum, field: value}",
        false,
        64,
        lsm,
    );
    assert_eq!(out.len(), expected("global_count.csv").len());
}

#[test]
fn wasm_evictors_give_the_built_ins_results() {
    let evictors = weir_tests::component("evictors").display().to_string();
    let events = [ev("a", 1000, 5), ev("a", 1200, 1), ev("a", 1300, 9), ev("a", 1400, 3), ev("b", 1500, 7)];
    for (builtin, config) in [
        ("{type: count, count: 2}", "{type: count, count: 2}"),
        ("{type: time, keep-ms: 150}", "{type: time, keep_ms: 150}"),
        ("{type: delta, field: v, threshold: 5}", "{type: delta, field: v, threshold: 5}"),
        ("{type: count, count: 1, after: true}", "{type: count, count: 1, after: true}"),
    ] {
        let window = "window: {type: tumbling, size-ms: 1000}, trigger: {type: count, count: 2}, function: {type: sum, field: v}";
        let (want, _) = run_small(&events, &format!("{window}, evictor: {builtin}"), &[]).unwrap();
        let (got, _) = run_small(
            &events,
            &format!("{window}, evictor: {{type: component, component: {evictors}, config: {config}}}"),
            &[],
        )
        .unwrap();
        assert_eq!(got, want, "{builtin}");
        assert!(!want.is_empty());
    }
    let bad = format!(
        "window: {{type: global}}, function: {{type: count}}, evictor: {{type: component, component: {evictors}, config: {{type: nope}}}}"
    );
    let err = run_small(&events, &bad, &[]).unwrap_err();
    assert!(err.contains("count, time or delta") && err.contains("evictor"), "{err}");
}

/// A window over a file and a slow generator: with `idle-timeout-ms`,
/// the generator idles between its events, so the file's end (+∞) moves
/// the window's watermark and the generator's later events come late;
/// without it, the generator holds the watermark back and nothing is late.
fn run_with_idle_input(idle: bool) -> (Vec<Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), "{\"ts\":5000,\"value\":7}\n{\"ts\":6000,\"value\":8}\n").unwrap();
    let idle = if idle { ", watermark: {idle-timeout-ms: 100}" } else { "" };
    let spec = format!(
        "sources:\n\
         \x20 - {{id: file, type: file, path: events.jsonl, format: jsonl, timestamp: ts}}\n\
         \x20 - {{id: gen, type: generator, pattern: sequence, count: 3, keys: 1, rate: 2{idle}}}\n\
         operators:\n\
         \x20 - {{id: w, kind: window-all, input: [file, gen], window: {{type: tumbling, size-ms: 1000}}, late-output: late, function: {{type: count}}}}\n\
         sinks:\n\
         \x20 - {{id: out, type: file, path: out.jsonl, input: w}}\n\
         \x20 - {{id: late, type: file, path: late.jsonl, input: 'w#late'}}\n"
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    (
        weir_tests::sorted_json_lines(&dir.path().join("out.jsonl")),
        weir_tests::sorted_json_lines(&dir.path().join("late.jsonl")),
    )
}

#[test]
fn an_idle_input_does_not_hold_windows_back() {
    let (out, late) = run_with_idle_input(false);
    assert!(late.is_empty(), "a slow input that is not idle holds the watermark: {late:?}");
    assert!(out.contains(&json!({"start": 0, "end": 1000, "firing": 0, "count": 3})), "{out:?}");
    let (_, late) = run_with_idle_input(true);
    // The generator's events 0.5 s and 1 s after the start come after
    // the file ended and the idle generator left the watermark.
    assert!(late.contains(&json!({"value": 1})) && late.contains(&json!({"value": 2})), "{late:?}");
}

/// The `trigger` of a window operator as the `triggers` plugin with
/// `config`.
fn plugin_trigger(config: &str) -> String {
    let triggers = weir_tests::component("triggers").display().to_string();
    format!("trigger: {{type: component, component: {triggers}, config: {config}}}")
}

#[test]
fn a_wasm_event_time_trigger_reproduces_flinks_tumbling_session_and_lateness_cases() {
    let t = plugin_trigger("{type: event-time}");
    let (out, _) = run_case(
        &format!("window: {{type: tumbling, size-ms: 5000}}, {t}, function: {{type: sum, field: value}}"),
        false,
    );
    assert_eq!(lines(&out, window_line("tumble", "sum")), expected("tumble.csv"));
    // Sessions merge: the trigger's on-merge and clear run in the call.
    for batch_size in [1, 2, 7, 1024] {
        let (out, _) = run_case_in_batches(
            &format!("window: {{type: session, gap-ms: 3000}}, {t}, function: {{type: sum, field: value}}"),
            false,
            batch_size,
        );
        assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"), "batch size {batch_size}");
    }
    let (out, late) = run_case(
        &format!(
            "window: {{type: tumbling, size-ms: 5000}}, {t}, allowed-lateness-ms: 3000, late-output: late, \
             function: {{type: sum, field: value}}"
        ),
        true,
    );
    let main = lines(&out, |v| {
        let f = |n| field(v, n);
        format!("late_main,{},{},{},{},{}", f("key"), f("start"), f("end"), f("firing"), f("sum"))
    });
    assert_eq!(main, expected("late_main.csv"));
    let side =
        lines(&late, |v| format!("late_side,{},{},{}", field(v, "key"), field(v, "timestamp_ms"), field(v, "value")));
    assert_eq!(side, expected("late_side.csv"));
}

#[test]
fn a_wasm_count_trigger_gives_the_built_ins_results() {
    let (out, _) = run_case(
        &format!(
            "window: {{type: global}}, {}, evictor: {{type: count, count: 2}}, function: {{type: sum, field: value}}",
            plugin_trigger("{type: count, count: 3}")
        ),
        false,
    );
    let got = lines(&out, |v| {
        format!("global,{},{},{}", field(v, "key"), v["firing"].as_u64().unwrap() + 1, field(v, "sum"))
    });
    assert_eq!(got, expected("global_count.csv"));
    let triggers = weir_tests::component("triggers").display().to_string();
    let events: Vec<Value> = (0..23).map(|i| ev(["a", "b", "c"][i % 3], 100 * i as i64, i as i64)).collect();
    for (builtin, custom) in [
        ("trigger: {type: count, count: 2}".to_owned(), plugin_trigger("{type: count, count: 2}")),
        (
            "trigger: {type: purging, of: {type: count, count: 3}}".to_owned(),
            plugin_trigger("{type: count, count: 3, purge: true}"),
        ),
        (
            "trigger: {type: purging, of: {type: count, count: 3}}".to_owned(),
            format!(
                "trigger: {{type: purging, of: {{type: component, component: {triggers}, config: {{type: count, count: 3}}}}}}"
            ),
        ),
    ] {
        for window in [
            "window: {type: tumbling, size-ms: 1000}",
            "window: {type: session, gap-ms: 350}",
            "window: {type: global}",
        ] {
            let (want, _) =
                run_small(&events, &format!("{window}, {builtin}, function: {{type: sum, field: v}}"), &[]).unwrap();
            let (got, _) =
                run_small(&events, &format!("{window}, {custom}, function: {{type: sum, field: v}}"), &[]).unwrap();
            assert!(!want.is_empty(), "{window}, {builtin}");
            assert_eq!(got, want, "{window}, {builtin}");
        }
    }
}

#[test]
fn a_count_trigger_with_a_timeout_fires_on_processing_time() {
    let dir = tempfile::tempdir().unwrap();
    // 6 events over about 0.6 s; the count (1000) is never reached, so
    // every firing is the timeout's (100 ms after a window's first element).
    let spec = format!(
        "sources:\n\
         \x20 - {{id: gen, type: generator, pattern: sequence, count: 6, keys: 1, rate: 10}}\n\
         operators:\n\
         \x20 - {{id: w, kind: window-all, input: gen, window: {{type: global}}, {}, function: {{type: count}}}}\n\
         sinks:\n\
         \x20 - {{id: out, type: file, path: out.jsonl, input: w}}\n",
        plugin_trigger("{type: count-timeout, count: 1000, timeout_ms: 100, purge: true}")
    );
    std::fs::write(dir.path().join("p.yaml"), spec).unwrap();
    let spec = Spec::load(&dir.path().join("p.yaml")).unwrap();
    let rt = WasmRuntime::new(None).unwrap();
    weir_runtime::run(&spec, &rt, RunOptions::default()).unwrap();
    let out = weir_tests::sorted_json_lines(&dir.path().join("out.jsonl"));
    assert!(!out.is_empty(), "the timeout fires");
    let counts: Vec<u64> = out.iter().map(|v| v["count"].as_u64().unwrap()).collect();
    assert!(counts.iter().all(|c| (1..=6).contains(c)), "{counts:?}");
    assert!(counts.iter().sum::<u64>() <= 6, "purged on firing: no element counted twice: {counts:?}");
}

#[test]
fn bad_wasm_triggers_are_refused_naming_the_operator() {
    let events = [ev("a", 1000, 5), ev("a", 1200, 1)];
    let err = run_small(
        &events,
        &format!("window: {{type: global}}, {}, function: {{type: count}}", plugin_trigger("{type: nope}")),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("event-time, count or count-timeout") && err.contains("trigger"), "{err}");
    // A trigger that cannot merge, on session windows: the job fails saying so.
    let err = run_small(
        &events,
        &format!(
            "window: {{type: session, gap-ms: 1000}}, {}, function: {{type: count}}",
            plugin_trigger("{type: count-timeout, count: 2, timeout_ms: 10}")
        ),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("does not merge windows") && err.contains("`w`"), "{err}");
    // An evictor component named as a trigger: the wrong world.
    let evictors = weir_tests::component("evictors").display().to_string();
    let err = run_small(
        &events,
        &format!(
            "window: {{type: global}}, trigger: {{type: component, component: {evictors}}}, function: {{type: count}}"
        ),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("trigger") && err.contains("evictor"), "{err}");
}

#[test]
fn dynamic_session_gaps_come_from_a_wasm_component_per_element() {
    let gap = weir_tests::component("session_gap").display().to_string();
    // A fixed fallback gap of 3 s (the reference events carry none):
    // Flink's session case.
    let (out, _) = run_case(
        &format!(
            "window: {{type: session, gap: {{component: {gap}, config: {{gap_ms: 3000}}}}}}, function: {{type: sum, field: value}}"
        ),
        false,
    );
    assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"));
    // Per element: [1000, 1500) and [1400, 1500) merge; [2000, 3000) stands apart.
    let g = |k: &str, ts: i64, v: i64, gap: i64| json!({"k": k, "ts": ts, "v": v, "gap_ms": gap});
    let events = [g("a", 1000, 1, 500), g("a", 1400, 2, 100), g("a", 2000, 4, 1000), g("b", 1000, 8, 5000)];
    let window = format!("window: {{type: session, gap: {{component: {gap}}}}}, function: {{type: sum, field: v}}");
    let (out, _) = run_small(&events, &window, &[]).unwrap();
    let mut want = vec![
        json!({"key": "a", "start": 1000, "end": 1500, "firing": 0, "sum": 3}),
        json!({"key": "a", "start": 2000, "end": 3000, "firing": 0, "sum": 4}),
        json!({"key": "b", "start": 1000, "end": 6000, "firing": 0, "sum": 8}),
    ];
    want.sort_by_key(|x| x.to_string());
    assert_eq!(out, want);
    // The same through a Wasm trigger (the batched path).
    let with_trigger = format!("{window}, {}", plugin_trigger("{type: event-time}"));
    assert_eq!(run_small(&events, &with_trigger, &[]).unwrap().0, want);
    // A gap that is not positive rejects its record: to the dead letters,
    // or the job fails naming it.
    let bad = [g("a", 1000, 1, 500), g("a", 1200, 2, 0)];
    let (out, side) = run_small(&bad, &format!("{window}, dead-letter: rejected"), &["rejected"]).unwrap();
    assert_eq!(out, vec![json!({"key": "a", "start": 1000, "end": 1500, "firing": 0, "sum": 1})]);
    assert!(side[0][0]["error"].as_str().unwrap().contains("gap of 0 ms"), "{side:?}");
    let err = run_small(&bad, &window, &[]).unwrap_err();
    assert!(err.contains("gap of 0 ms") && err.contains("offset"), "{err}");
    // A record the component gives no gap is rejected alone, with its reason.
    let none = [g("a", 1000, 1, 500), ev("a", 1100, 2), g("a", 1200, 4, 500)];
    let (out, side) = run_small(&none, &format!("{window}, dead-letter: rejected"), &["rejected"]).unwrap();
    assert_eq!(out, vec![json!({"key": "a", "start": 1000, "end": 1700, "firing": 0, "sum": 5})]);
    assert_eq!(side[0].len(), 1, "{side:?}");
    assert!(side[0][0]["error"].as_str().unwrap().contains("no `gap_ms`"), "{side:?}");
    // Neither or both of gap-ms and gap: refused at load.
    let err = run_small(&bad, "window: {type: session}, function: {type: count}", &[]).unwrap_err();
    assert!(err.contains("one of `gap-ms`"), "{err}");
}

/// The `function` of a window operator as the Wasm component `name` with
/// `config`.
fn wasm_function(name: &str, config: &str) -> String {
    let c = weir_tests::component(name).display().to_string();
    format!("function: {{type: component, component: {c}, config: {config}}}")
}

#[test]
fn wasm_aggregate_functions_reproduce_flinks_cases() {
    let sum = wasm_function("window_aggregates", "{type: sum, field: value}");
    let (out, _) = run_case(&format!("window: {{type: tumbling, size-ms: 5000}}, {sum}"), false);
    assert_eq!(lines(&out, window_line("tumble", "sum")), expected("tumble.csv"));
    let count = wasm_function("window_aggregates", "{type: count}");
    let (out, _) = run_case(&format!("window: {{type: sliding, size-ms: 10000, slide-ms: 5000}}, {count}"), false);
    assert_eq!(lines(&out, window_line("slide", "count")), expected("slide.csv"));
    for batch_size in [1, 7, 1024] {
        let (out, _) =
            run_case_in_batches(&format!("window: {{type: session, gap-ms: 3000}}, {sum}"), false, batch_size);
        assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"), "batch size {batch_size}");
    }
    // With a Wasm trigger too: both batched paths at once.
    let t = plugin_trigger("{type: event-time}");
    let (out, _) = run_case(&format!("window: {{type: session, gap-ms: 3000}}, {t}, {sum}"), false);
    assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"));
    let (out, late) = run_case(
        &format!("window: {{type: tumbling, size-ms: 5000}}, allowed-lateness-ms: 3000, late-output: late, {sum}"),
        true,
    );
    let main = lines(&out, |v| {
        let f = |n| field(v, n);
        format!("late_main,{},{},{},{},{}", f("key"), f("start"), f("end"), f("firing"), f("sum"))
    });
    assert_eq!(main, expected("late_main.csv"));
    assert_eq!(late.len(), expected("late_side.csv").len());
    // An evictor keeps the elements: the function folds the kept ones.
    let (out, _) = run_case(
        &format!(
            "window: {{type: global}}, trigger: {{type: count, count: 3}}, evictor: {{type: count, count: 2}}, {sum}"
        ),
        false,
    );
    let got = lines(&out, |v| {
        format!("global,{},{},{}", field(v, "key"), v["firing"].as_u64().unwrap() + 1, field(v, "sum"))
    });
    assert_eq!(got, expected("global_count.csv"));
}

#[test]
fn wasm_aggregates_give_the_built_ins_results_on_both_backends() {
    let events: Vec<Value> = (0..200)
        .map(|i| ev(["a", "b", "c", "d"][(i * 7) % 4], (i as i64 * 37) % 4000 + (i as i64 / 10) * 100, i as i64 - 60))
        .collect();
    for kind in ["sum", "count", "min", "max", "avg"] {
        let builtin = if kind == "count" {
            "function: {type: count}".to_owned()
        } else {
            format!("function: {{type: {kind}, field: v}}")
        };
        let wasm = wasm_function("window_aggregates", &format!("{{type: {kind}, field: v}}"));
        for window in [
            "window: {type: tumbling, size-ms: 500}, allowed-lateness-ms: 300",
            "window: {type: sliding, size-ms: 1000, slide-ms: 300}",
            "window: {type: session, gap-ms: 120}",
            "window: {type: tumbling, size-ms: 700}, trigger: {type: purging, of: {type: count, count: 3}}",
        ] {
            let (want, _) = run_small(&events, &format!("{window}, {builtin}"), &[]).unwrap();
            let (got, _) = run_small(&events, &format!("{window}, {wasm}"), &[]).unwrap();
            assert!(!want.is_empty(), "{window} {kind}");
            assert_eq!(got, want, "{window} {kind}");
        }
    }
    // A firing per element: a stretch holds more firings than one call
    // takes, so the call is made part-way, with the same results.
    let many: Vec<Value> = (0..3000).map(|i| ev(["a", "b"][i % 2], i as i64, i as i64)).collect();
    let window = "window: {type: global}, trigger: {type: count, count: 1}";
    let (want, _) = run_small(&many, &format!("{window}, function: {{type: sum, field: v}}"), &[]).unwrap();
    let wasm = wasm_function("window_aggregates", "{type: sum, field: v}");
    let (got, _) = run_small(&many, &format!("{window}, {wasm}"), &[]).unwrap();
    assert_eq!(want.len(), 3000);
    assert_eq!(got, want);
    // The lsm backend keeps the accumulators the same way.
    let sum = wasm_function("window_aggregates", "{type: sum, field: value}");
    let (out, _) = run_case_with(
        &format!("window: {{type: session, gap-ms: 3000}}, {sum}"),
        false,
        1024,
        "state: {backend: lsm, memory-mb: 1}\n",
    );
    assert_eq!(lines(&out, window_line("session", "sum")), expected("session.csv"));
}

#[test]
fn a_wasm_process_window_function_sees_every_element_and_a_reduce_folds_them() {
    let events =
        [ev("a", 1000, 5), ev("a", 1200, 1), ev("a", 1300, 9), ev("a", 1400, 3), ev("b", 1500, 7), ev("a", 2500, 2)];
    let median = wasm_function("window_process", "{type: median, field: v}");
    let (out, _) = run_small(&events, &format!("window: {{type: tumbling, size-ms: 1000}}, {median}"), &[]).unwrap();
    let mut want = vec![
        json!({"key": "a", "start": 1000, "end": 2000, "firing": 0, "count": 4, "median": 4.0}),
        json!({"key": "b", "start": 1000, "end": 2000, "firing": 0, "count": 1, "median": 7.0}),
        json!({"key": "a", "start": 2000, "end": 3000, "firing": 0, "count": 1, "median": 2.0}),
    ];
    want.sort_by_key(|x| x.to_string());
    assert_eq!(out, want);
    // Sessions merge their elements; the list keeps arrival order.
    let list = wasm_function("window_process", "{type: list}");
    let (out, _) = run_small(&events, &format!("window: {{type: session, gap-ms: 150}}, {list}"), &[]).unwrap();
    let a: Vec<&Value> = out.iter().filter(|v| v["key"] == "a").collect();
    assert_eq!(a.len(), 3, "{out:?}");
    assert!(
        a.iter().any(|v| v["start"] == 1200 && v["end"] == 1550 && v["values"].as_array().unwrap().len() == 3),
        "{out:?}"
    );
    // A reduce keeps the largest element of each window.
    let max = wasm_function("window_reduce", "{field: v}");
    let (out, _) = run_small(&events, &format!("window: {{type: tumbling, size-ms: 1000}}, {max}"), &[]).unwrap();
    let a = out.iter().find(|v| v["key"] == "a" && v["start"] == 1000).unwrap();
    assert_eq!(a["max"], ev("a", 1300, 9), "{out:?}");
    // A function that fails ends the job naming the operator and what failed.
    let bad = [json!({"k": "a", "ts": 1000, "v": "x"})];
    let err = run_small(&bad, &format!("window: {{type: tumbling, size-ms: 1000}}, {median}"), &[]).unwrap_err();
    assert!(err.contains("window function") && err.contains("median needs a number"), "{err}");
    let err = run_small(
        &bad,
        &format!("window: {{type: tumbling, size-ms: 1000}}, {}", wasm_function("window_process", "{type: nope}")),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("median or list"), "{err}");
    let err = run_small(&bad, "window: {type: tumbling, size-ms: 1000}, function: {type: component}", &[]).unwrap_err();
    assert!(err.contains("needs the `component`"), "{err}");
}

#[test]
fn a_wasm_process_window_function_keeps_window_and_global_state() {
    let events = [ev("a", 1000, 1), ev("a", 6000, 2), ev("a", 2000, 4), ev("a", 9000, 8), ev("b", 6500, 3)];
    let f = wasm_function("window_state", "null");
    let window = "window: {type: tumbling, size-ms: 5000}, allowed-lateness-ms: 3000";
    let (out, _) = run_small(&events, &format!("{window}, {f}"), &[]).unwrap();
    let mut want = vec![
        // [0, 5000) fires at watermark 5999, again for the late 2000: its
        // window state counts both; the key's global state counts on.
        json!({"key": "a", "start": 0, "count": 1, "window_firings": 1, "key_firings": 1}),
        json!({"key": "a", "start": 0, "count": 2, "window_firings": 2, "key_firings": 2}),
        json!({"key": "a", "start": 5000, "count": 2, "window_firings": 1, "key_firings": 3}),
        json!({"key": "b", "start": 5000, "count": 1, "window_firings": 1, "key_firings": 1}),
    ];
    want.sort_by_key(|x| x.to_string());
    assert_eq!(out, want);
    // Session windows allow no window state, as in Flink.
    let err = run_small(&events, &format!("window: {{type: session, gap-ms: 1000}}, {f}"), &[]).unwrap_err();
    assert!(err.contains("session windows have none"), "{err}");
}
