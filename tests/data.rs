//! No silent data loss or corruption: outputs that would destroy inputs
//! or interleave are refused, outputs are whole or absent, CSV cells keep
//! their exact text, and a closed stdout is an error.

use std::path::Path;
use weir_tests::{assert_clean_failure, component, weir};

fn write_spec(dir: &Path, spec: &str) -> String {
    let spec = spec.replace("PASSTHROUGH", &component("passthrough").display().to_string());
    std::fs::write(dir.join("p.yaml"), spec).unwrap();
    dir.join("p.yaml").display().to_string()
}

fn run(dir: &Path, spec: &str) -> std::process::Output {
    let spec = write_spec(dir, spec);
    weir(&["run", &spec], &dir.join("cache"))
}

const CSV_SPEC: &str = "sources: [{id: rows, type: file, path: in.csv, format: csv}]\n\
                        operators: [{id: m, kind: map, component: PASSTHROUGH, input: rows}]\n\
                        sinks: [{id: out, type: file, path: out.jsonl, input: m}]\n";

#[test]
fn a_sink_writing_its_own_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\":1}\n").unwrap();
    let out = run(
        dir.path(),
        "sources: [{id: src, type: file, path: in.jsonl, format: jsonl}]\n\
         sinks: [{id: out, type: file, path: ./sub/../in.jsonl, input: src}]\n",
    );
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("file sink `out` writes") && stderr.contains("source `src` reads too"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("in.jsonl")).unwrap(), "{\"a\":1}\n");
}

#[test]
fn two_sinks_of_one_job_writing_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\":1}\n").unwrap();
    let out = run(
        dir.path(),
        "sources: [{id: src, type: file, path: in.jsonl, format: jsonl}]\n\
         sinks:\n\
         - {id: a, type: file, path: out.jsonl, input: src}\n\
         - {id: b, type: file, path: out.jsonl, input: src}\n",
    );
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("p.yaml:4:") && stderr.contains("sink `a` writes too"), "{stderr}");
}

#[test]
fn two_jobs_writing_one_file_leave_one_whole_output() {
    let dir = tempfile::tempdir().unwrap();
    let lines = |tag: &str| (0..200_000).map(|i| format!("{{\"{tag}\":{i}}}\n")).collect::<String>();
    std::fs::write(dir.path().join("a.jsonl"), lines("a")).unwrap();
    std::fs::write(dir.path().join("b.jsonl"), lines("b")).unwrap();
    let spec = |src: &str| {
        format!(
            "sources: [{{id: src, type: file, path: {src}, format: jsonl}}]\n\
             sinks: [{{id: out, type: file, path: out.jsonl, input: src}}]\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), spec("a.jsonl")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), spec("b.jsonl")).unwrap();
    let start = |name: &str| {
        std::process::Command::new(weir_tests::weir_bin())
            .args(["run", dir.path().join(name).to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (start("a.yaml"), start("b.yaml"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(out == lines("a") || out == lines("b"), "the output is one job's, whole, not a mix");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("inprogress")), "{left:?}");
}

#[test]
fn a_failed_job_leaves_no_partial_output_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\":1}\nnot json\n").unwrap();
    let out = run(
        dir.path(),
        "sources: [{id: src, type: file, path: in.jsonl, format: jsonl}]\n\
         sinks: [{id: out, type: file, path: out.jsonl, input: src}]\n",
    );
    assert_clean_failure(&out);
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!left.iter().any(|n| n.contains("out.jsonl")), "{left:?}");
}

#[test]
fn a_csv_header_with_a_duplicate_column_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "id,name,id\n1,a,2\n").unwrap();
    let stderr = assert_clean_failure(&run(dir.path(), CSV_SPEC));
    assert!(stderr.contains("names column `id` twice"), "{stderr}");
}

#[test]
fn csv_numbers_keep_every_digit_and_columns_their_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "zid,amount\n12345678901234567890123,0.30000000000000004441\n").unwrap();
    let out = run(dir.path(), CSV_SPEC);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
        "{\"zid\":12345678901234567890123,\"amount\":0.30000000000000004441}\n"
    );
}

#[test]
fn an_empty_value_in_a_one_column_csv_is_a_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "name\na\n\nb\n").unwrap();
    let out = run(dir.path(), CSV_SPEC);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
        "{\"name\":\"a\"}\n{\"name\":\"\"}\n{\"name\":\"b\"}\n"
    );
}

#[test]
fn a_closed_stdout_is_an_error_not_a_success() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\":1}\n").unwrap();
    let spec = write_spec(
        dir.path(),
        "sources: [{id: src, type: file, path: in.jsonl, format: jsonl}]\n\
         sinks: [{id: out, type: stdout, input: src}]\n",
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec '{}' run '{spec}' >&-", weir_tests::weir_bin().display()))
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("standard output is closed, so stdout sink `out` would write nowhere"), "{stderr}");
}

#[test]
fn log_lines_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"key\":\"a\",\"ts\":1}\n").unwrap();
    let spec = format!(
        "sources: [{{id: src, type: file, path: in.jsonl, format: jsonl, timestamp: ts}}]\n\
         operators: [{{id: t, kind: process, component: {}, input: src, key-by: key}}]\n\
         sinks: [{{id: out, type: discard, input: t}}]\n",
        component("timer-log").display()
    );
    let out = run(dir.path(), &spec);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("timer-log opened"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in a redirected log: {stderr:?}");
}
