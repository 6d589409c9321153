//! Every example runs with the real binary and its output equals the
//! expected file.

use weir_tests::{assert_clean_failure, example_copy, sorted_json_lines, weir};

fn run_example(name: &str, out_file: &str, extra: &[&str]) {
    let dir = example_copy(name);
    let cache = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipeline.yaml");
    let mut args = vec!["run", spec.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = weir(&args, cache.path());
    assert!(out.status.success(), "weir run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let got = sorted_json_lines(&dir.path().join("out").join(out_file));
    let want = sorted_json_lines(&dir.path().join("expected").join(out_file));
    assert_eq!(got, want);
}

#[test]
fn wordcount_output_equals_expected() {
    run_example("wordcount", "counts.jsonl", &[]);
}

#[test]
fn wordcount_at_parallelism_two_equals_expected() {
    run_example("wordcount", "counts.jsonl", &["--parallelism", "2"]);
}

#[test]
fn fraud_detection_output_equals_expected() {
    run_example("fraud-detection", "alerts.jsonl", &[]);
}

#[test]
fn fraud_detection_at_parallelism_two_equals_expected() {
    run_example("fraud-detection", "alerts.jsonl", &["--parallelism", "2"]);
}

#[test]
fn wordcount_on_other_input_counts_every_word() {
    let dir = example_copy("wordcount");
    let mut text = String::new();
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for i in 0..5000u32 {
        let w = format!("W{}", i % 37);
        text.push_str(&format!("{w}, x-{}\n", i % 3));
        *want.entry(w.to_lowercase()).or_default() += 1;
        *want.entry("x".into()).or_default() += 1;
        *want.entry((i % 3).to_string()).or_default() += 1;
    }
    std::fs::write(dir.path().join("data/input.txt"), text).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", dir.path().join("pipeline.yaml").to_str().unwrap()], cache.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = sorted_json_lines(&dir.path().join("out/counts.jsonl"));
    let mut expected: Vec<serde_json::Value> =
        want.iter().map(|(w, n)| serde_json::json!({"word": w, "count": n})).collect();
    expected.sort_by_key(|x| x.to_string());
    assert_eq!(got, expected);
}

#[test]
fn a_missing_input_file_names_the_source_and_path() {
    let dir = example_copy("wordcount");
    std::fs::remove_file(dir.path().join("data/input.txt")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", dir.path().join("pipeline.yaml").to_str().unwrap()], cache.path());
    let stderr = assert_clean_failure(&out);
    assert!(
        stderr.contains("source `lines`") && stderr.contains("data/input.txt") && stderr.contains("cannot open"),
        "{stderr}"
    );
}
