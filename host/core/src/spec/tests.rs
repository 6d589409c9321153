use super::*;

const GOOD: &str = "\
sources:
  - id: lines
    type: file
    path: data/input.txt
    format: text
operators:
  - id: split
    kind: map
    component: split.wasm
    input: lines
  - id: count
    kind: process
    component: count.wasm
    input: split
    key-by: \"@key\"
    parallelism: 2
sinks:
  - id: out
    type: file
    path: out/counts.jsonl
    input: count
";

fn parse(text: &str) -> Result<Spec, SpecError> {
    Spec::parse(Path::new("p.yaml"), text)
}

#[test]
fn a_good_spec_parses_with_defaults() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.parallelism, 1);
    assert_eq!(s.max_parallelism, 128);
    assert_eq!(s.operators[1].key_by.as_deref(), Some("@key"));
    assert_eq!(s.operator_parallelism(&s.operators[1]), 2);
    assert_eq!(s.sinks[0].input, Inputs(vec!["count".into()]));
}

#[test]
fn unknown_key_reports_file_line_and_column() {
    let bad = GOOD.replace("    kind: map\n", "    kind: map\n    colour: blue\n");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.location, Some((9, 5)), "{e}");
    assert!(e.to_string().starts_with("p.yaml:9:5: "), "{e}");
    assert!(e.message.contains("unknown field `colour`"), "{e}");
}

#[test]
fn wrong_type_reports_file_line_and_column() {
    let bad = GOOD.replace("parallelism: 2", "parallelism: two");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(16), "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
}

#[test]
fn unknown_input_names_the_known_ids_and_the_place() {
    let bad = GOOD.replace("input: split", "input: splt");
    let e = parse(&bad).unwrap_err();
    assert!(
        e.message.contains("input `splt` is not a source or operator (known: count, lines, split)")
            || e.message.contains("(known: lines, split)"),
        "{e}"
    );
    assert_eq!(e.location, Some((11, 5)), "{e}");
}

#[test]
fn process_without_key_by_is_refused() {
    let bad = GOOD.replace("    key-by: \"@key\"\n", "");
    let e = parse(&bad).unwrap_err();
    assert!(e.message.contains("needs `key-by`"), "{e}");
}

#[test]
fn cycles_are_refused() {
    let bad = GOOD.replace("input: lines", "input: [lines, count]");
    let e = parse(&bad).unwrap_err();
    assert!(e.message.contains("cycle"), "{e}");
}

#[test]
fn key_selectors_and_stream_refs_parse() {
    assert_eq!(KeySelector::parse("@key"), KeySelector::EventKey);
    assert_eq!(KeySelector::parse("account"), KeySelector::Pointer("/account".into()));
    assert_eq!(KeySelector::parse("/a/b"), KeySelector::Pointer("/a/b".into()));
    assert_eq!(StreamRef::parse("op#late"), StreamRef { id: "op".into(), tag: Some("late".into()) });
}

#[test]
fn errors_about_flow_style_entries_are_located_too() {
    let text = "sources: [{id: s, type: generator}]\nsinks:\n  - {id: out, type: discard, input: nope}\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.location, Some((3, 6)), "{e}");
}

#[test]
fn a_self_loop_is_reported_as_reading_its_own_output() {
    let e = parse(&GOOD.replace("input: split", "input: count")).unwrap_err();
    assert!(e.message.contains("`count` reads its own output (`count`)"), "{e}");
}

#[test]
fn a_cycle_of_100000_operators_is_refused_without_deep_recursion() {
    let n = 100_000;
    let mut text = String::from(
        "sources: [{id: s, type: generator}]\nsinks: [{id: out, type: discard, input: op0}]\noperators:\n",
    );
    for i in 0..n {
        let input = if i == 0 { format!("[s, op{}]", n - 1) } else { format!("op{}", i - 1) };
        text.push_str(&format!("  - {{id: op{i}, kind: map, component: m.wasm, input: {input}}}\n"));
    }
    // Run on a small stack: a recursive check would overflow it.
    let e = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || parse(&text).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(e.message.contains("part of a cycle"), "{e}");
}

#[test]
fn side_outputs_that_read_nothing_are_refused() {
    let read =
        |input: &str| parse(&GOOD.replace("    input: count\n", &format!("    input: {input}\n"))).unwrap_err().message;
    assert!(read("\"lines#x\"").contains("`lines` is a source, and sources have no side outputs"));
    assert!(read("\"count#\"").contains("one non-empty tag"));
    assert!(read("\"count#a#b\"").contains("without `#`"));
}

#[test]
fn key_by_event_key_right_after_a_keyless_file_source_is_refused() {
    let e = parse(&GOOD.replace("    input: split\n    key-by: \"@key\"", "    input: lines\n    key-by: \"@key\""))
        .unwrap_err();
    assert!(e.message.contains("file source `lines` sets none; key by a field instead"), "{e}");
}

#[test]
fn checkpoints_and_restart_sections_parse_with_flinks_defaults() {
    let s = parse(GOOD).unwrap();
    assert!(s.checkpoints.is_none());
    assert_eq!(s.restart_strategy(), crate::restart::RestartStrategy::None, "no checkpoints: no restarts");
    let text = format!("{GOOD}checkpoints:\n  interval-ms: 200\n  mode: at-least-once\n");
    let s = parse(&text).unwrap();
    let c = s.checkpoints.as_ref().unwrap();
    assert_eq!((c.interval_ms, c.mode, c.retain, c.timeout_ms), (200, CheckpointMode::AtLeastOnce, 1, 600_000));
    assert_eq!(c.dir, PathBuf::from("checkpoints"));
    assert_eq!(s.restart_strategy(), crate::restart::RestartStrategy::default(), "exponential delay");
    let text = format!("{GOOD}restart: {{type: fixed-delay, attempts: 3, delay-ms: 10}}\n");
    let s = parse(&text).unwrap();
    let want = crate::restart::RestartStrategy::FixedDelay { attempts: 3, delay: std::time::Duration::from_millis(10) };
    assert_eq!(s.restart_strategy(), want);
}

#[test]
fn bad_checkpoint_and_restart_settings_are_refused_with_what_to_do() {
    let e = parse(&format!("{GOOD}checkpoints: {{interval-ms: 0}}\n")).unwrap_err();
    assert!(e.message.contains("interval-ms must be at least 10"), "{e}");
    let e = parse(&format!("{GOOD}checkpoints: {{interval-ms: 100, retain: 0}}\n")).unwrap_err();
    assert!(e.message.contains("retain must be at least 1"), "{e}");
    let e = parse(&format!("{GOOD}checkpoints: {{interval-ms: 100, mode: twice}}\n")).unwrap_err();
    assert!(e.message.contains("unknown variant `twice`"), "{e}");
    let e = parse(&format!("{GOOD}restart: {{type: sometimes}}\n")).unwrap_err();
    assert!(e.message.contains("unknown variant `sometimes`"), "{e}");
    let e = parse(&format!("{GOOD}restart: {{type: exponential-delay, multiplier-percent: 50}}\n")).unwrap_err();
    assert!(e.message.contains("multiplier-percent must be at least 100"), "{e}");
}

#[test]
fn every_example_spec_survives_json_as_workers_receive_it() {
    // A coordinator sends a placed spec to a remote worker as JSON: what
    // arrives must be the spec that left, whatever its sections.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let spec = Spec::parse(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let json = serde_json::to_string(&spec).unwrap();
            let back: Spec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}\n{json}", path.display()));
            assert_eq!(format!("{back:?}"), format!("{spec:?}"), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 10, "the examples' specs were found ({seen})");
}
