//! Savepoints with a real coordinator process: a job stopped with a
//! savepoint and started again from it — at another parallelism, on
//! another state backend, with an upgraded operator — writes what a job
//! that was never stopped writes. And what cannot be restored is refused
//! by name.

use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::{Coordinator, component, weir};

/// A keyed job: a generator at 20,000 events/s (parallelism 1; 60,000
/// events, keys `g % 97`), `component` counting per key, one `key,count`
/// line per event into `out`, checkpoints every 100 ms.
fn spec(dir: &Path, component_crate: &str, backend: &str) -> String {
    format!(
        "name: counts\nsources:\n  - {{id: events, type: generator, parallelism: 1, count: 60000, keys: 97, pattern: sequence, rate: 20000}}\n\
         operators:\n  - id: count\n    kind: process\n    input: events\n    key-by: \"@key\"\n    component: {}\n\
         sinks:\n  - {{id: out, type: file, path: {}, format: text, input: count}}\n\
         checkpoints: {{interval-ms: 100, dir: {}}}\n\
         state: {{backend: {backend}}}\n",
        component(component_crate).display(),
        dir.join("out/counts.csv").display(),
        dir.join("checkpoints").display(),
    )
}

/// `weir exceptions ID` once it mentions `needle` (30 s at most).
fn exceptions_once_they_say(c: &Coordinator, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&c.weir(&["exceptions", id]).stdout).into_owned();
        if text.contains(needle) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Writes `text` as `<dir>/<name>/pipeline.yaml`; its path.
fn write_spec(dir: &Path, name: &str, text: &str) -> String {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("pipeline.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Submits `spec` and stops it with a savepoint once it has counted some
/// events: the savepoint's folder.
fn run_then_stop(c: &Coordinator, spec: &str, extra: &[&str]) -> String {
    run_then_stop_id(c, spec, extra).1
}

/// [`run_then_stop`], with the job's id.
fn run_then_stop_id(c: &Coordinator, spec: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["submit", spec];
    args.extend_from_slice(extra);
    let id = c.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info: serde_json::Value = serde_json::from_str(&c.ok(&["info", &id, "--json"])).unwrap();
        let counted = info["vertices"][1]["metrics"]["numRecordsIn"].as_u64().unwrap_or(0);
        assert_ne!(info["state"], "FINISHED", "the job finished before it was stopped");
        if info["state"] == "RUNNING" && counted > 10_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not get going: {info:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let location = c.ok(&["stop", &id, "--savepoint"]);
    let info: serde_json::Value = serde_json::from_str(&c.ok(&["info", &id, "--json"])).unwrap();
    assert_eq!(info["state"], "FINISHED", "{info:#}");
    assert!(Path::new(&location).join("_metadata").is_file(), "{location} holds a completed savepoint");
    (id, location)
}

/// [`spec`] with a source that follows the job's parallelism: each
/// subtask of a fresh start makes a split of 30,000 events, and a
/// restored job shares out the splits there are (at parallelism 3, two
/// subtasks read one each and the third none).
fn splits(spec: &str) -> String {
    spec.replace("parallelism: 1, count: 60000", "count: 30000")
}

#[test]
fn a_savepoint_round_trip_rescales_changes_backend_and_upgrades_and_writes_what_an_undisturbed_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();

    // The undisturbed run, in this process's own way: `weir run`.
    let undisturbed = root.join("undisturbed");
    std::fs::create_dir_all(&undisturbed).unwrap();
    let spec_path = write_spec(&undisturbed, "spec", &splits(&spec(&undisturbed, "flaky-count", "memory")));
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", &spec_path, "--parallelism", "2", "--no-server"], cache.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = sorted_lines(&undisturbed.join("out/counts.csv"));
    assert_eq!(expected.len(), 60_000);

    // 2 subtasks on memory → stop → 3 subtasks on lsm with the upgraded
    // component (its states in another order) → stop → 1 subtask on
    // memory. (Going back to the first component is refused: the
    // savepoint holds the upgrade's new state `seen`, which it lacks.)
    let c = Coordinator::start_with_slots(3, &["--allow-path", root.to_str().unwrap()]);
    let v1 = write_spec(&root, "v1", &splits(&spec(&root, "flaky-count", "memory")));
    let v2 = write_spec(&root, "v2", &splits(&spec(&root, "count-v2", "lsm")));
    let v2_memory = write_spec(&root, "v2-memory", &splits(&spec(&root, "count-v2", "memory")));
    let first = run_then_stop(&c, &v1, &["--parallelism", "2"]);
    let second = run_then_stop(&c, &v2, &["--parallelism", "3", "--from-savepoint", &first]);
    let listing = c.ok(&["state", &second]);
    assert!(
        listing.contains("events (source, parallelism 3)")
            && listing.contains("operator list `splits` (even-split): 2 elements"),
        "the source's two splits on three subtasks: {listing}"
    );
    let back = c.weir(&["submit", &v1, "--parallelism", "1", "--from-savepoint", &second, "--wait"]);
    let stderr = String::from_utf8_lossy(&back.stderr);
    assert!(!back.status.success() && stderr.contains("value state `seen`"), "{stderr}");
    let id = c.ok(&["submit", &v2_memory, "--parallelism", "1", "--from-savepoint", &second, "--wait"]);
    assert!(!id.is_empty());
    let got = sorted_lines(&root.join("out/counts.csv"));
    assert_eq!(got.len(), expected.len(), "one line per event: none lost, none twice");
    assert!(got == expected, "every key's counts are those of the undisturbed run");
}

#[test]
fn state_that_cannot_be_restored_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let c = Coordinator::start_with_slots(3, &["--allow-path", root.to_str().unwrap()]);
    let v1 = write_spec(&root, "v1", &spec(&root, "flaky-count", "memory"));
    let (job, savepoint) = run_then_stop_id(&c, &v1, &[]);
    let (status, cps) = c.get(&format!("/v1/jobs/{job}/checkpoints"));
    assert_eq!(status, 200, "{cps}");
    assert!(cps["counts"]["completed"].as_u64().unwrap() >= 2, "periodic checkpoints and the savepoint: {cps:#}");
    let last = &cps["latest-completed"];
    assert!(last["is-savepoint"] == true && last["external-path"] == savepoint.as_str(), "{cps:#}");
    // One checkpoint's parts: every task of the job (source, count, sink
    // at parallelism 1) with its bytes and when its barrier came.
    let first = cps["history"].as_array().unwrap().iter().find(|c| c["status"] == "COMPLETED").unwrap();
    let (status, detail) = c.get(&format!("/v1/jobs/{job}/checkpoints/{}", first["id"]));
    assert_eq!(status, 200, "{detail}");
    let tasks = detail["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), first["num-subtasks"].as_u64().unwrap() as usize, "{detail:#}");
    let bytes: u64 = tasks.iter().map(|t| t["state-size"].as_u64().unwrap()).sum();
    assert_eq!(bytes, detail["checkpoint"]["state-size"].as_u64().unwrap(), "parts add up: {detail:#}");
    let count = tasks.iter().find(|t| t["vertices"].as_array().unwrap().contains(&"count".into())).unwrap();
    assert!(count["state-size"].as_u64().unwrap() > 0 && !count["finished"].as_bool().unwrap(), "{detail:#}");
    assert!(
        tasks.iter().all(|t| t["start-delay"].as_u64().unwrap() <= t["end-to-end-duration"].as_u64().unwrap()),
        "{detail:#}"
    );
    let (status, none) = c.get(&format!("/v1/jobs/{job}/checkpoints/999999"));
    assert!(status == 404 && none.to_string().contains("no checkpoint 999999"), "{none}");
    let (status, bad) = c.get(&format!("/v1/jobs/{job}/checkpoints/latest"));
    assert!(status == 400 && bad.to_string().contains("not a checkpoint number"), "{bad}");
    assert!(c.text("/metrics").contains(&format!("weir_job_numberOfCompletedCheckpoints{{job_id=\"{job}\"")));

    // Read offline: operators, state names, keys per key group; one key.
    let listing = c.ok(&["state", &savepoint]);
    assert!(
        listing.contains("count (process, parallelism 1)") && listing.contains("value `count`: 97 keys"),
        "{listing}"
    );
    let one = c.ok(&["state", &savepoint, "--operator", "count", "--key", "5"]);
    let last = one.lines().last().unwrap().trim();
    let n: u64 = last.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("a count: {one}"));
    assert!(one.contains("value `count`") && n > 50, "{one}");
    let wrong = c.weir(&["state", &savepoint, "--operator", "nope", "--key", "5"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no operator `nope`; it has: events, count, out"));

    // A component that no longer declares `count`.
    let renamed =
        spec(&root, "keyed-counter", "memory").replace("    component:", "    config: {state: map}\n    component:");
    let renamed = write_spec(&root, "renamed", &renamed);
    let id = c.ok(&["submit", &renamed, "--from-savepoint", &savepoint]);
    let text = exceptions_once_they_say(&c, &id, "value state `count`");
    assert!(text.contains("value state `count`") && text.contains("no longer declares"), "{text}");

    // An operator the new job lacks.
    let gone = spec(&root, "flaky-count", "memory")
        .replace("id: count", "id: counter")
        .replace("input: count", "input: counter");
    let gone = write_spec(&root, "gone", &gone);
    let id = c.ok(&["submit", &gone, "--from-savepoint", &savepoint]);
    let text = exceptions_once_they_say(&c, &id, "no longer has");
    assert!(text.contains("no longer has: `count`") && text.contains("--allow-non-restored-state"), "{text}");

    // A sink renamed, its old state dropped on purpose: it would start
    // afresh and empty the file it shares.
    let renamed_sink = spec(&root, "flaky-count", "memory").replace("id: out", "id: out2");
    let renamed_sink = write_spec(&root, "renamed-sink", &renamed_sink);
    let before = std::fs::read(root.join("out/counts.csv")).unwrap();
    let id = c.ok(&["submit", &renamed_sink, "--from-savepoint", &savepoint, "--allow-non-restored-state"]);
    let text = exceptions_once_they_say(&c, &id, "holds no state of this sink");
    assert!(text.contains("holds no state of this sink") && text.contains("Give the sink the id it had"), "{text}");
    assert_eq!(std::fs::read(root.join("out/counts.csv")).unwrap(), before, "the file is untouched");
}

/// Operator state across savepoints: `tally-map` (a map with an even-split
/// count and a union run number) at parallelism 2, then 3, then 1. Every
/// event is mapped once over the three runs, and the one subtask of the
/// last run starts from the sum of every old subtask's count, so its
/// counts end at exactly the number of events.
#[test]
fn operator_state_is_split_evenly_or_handed_to_all_when_the_parallelism_changes() {
    tally_across_rescales("kind: map", "tally-map");
}

/// The same with a keyed process function (`stateful-process`), whose
/// operator state sits beside its keyed state.
#[test]
fn a_process_function_keeps_operator_state_beside_keyed_state_across_rescales() {
    tally_across_rescales("kind: process\n    key-by: \"@key\"", "tally-process");
}

fn tally_across_rescales(kind: &str, component_crate: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let spec = format!(
        "name: tally\nsources:\n  - {{id: events, type: generator, parallelism: 1, count: 60000, keys: 97, pattern: sequence, rate: 20000}}\n\
         operators:\n  - id: tally\n    {kind}\n    input: events\n    component: {}\n\
         sinks:\n  - {{id: out, type: file, path: {}, format: text, input: tally}}\n\
         checkpoints: {{interval-ms: 100, dir: {}}}\n",
        component(component_crate).display(),
        root.join("out/tally.csv").display(),
        root.join("checkpoints").display(),
    );
    let spec = write_spec(&root, "tally", &spec);
    let c = Coordinator::start_with_slots(3, &["--allow-path", root.to_str().unwrap()]);
    let first = run_then_stop(&c, &spec, &["--parallelism", "2"]);
    let second = run_then_stop(&c, &spec, &["--parallelism", "3", "--from-savepoint", &first]);
    let state = String::from_utf8_lossy(&c.weir(&["state", &second]).stdout).into_owned();
    c.ok(&["submit", &spec, "--parallelism", "1", "--from-savepoint", &second, "--wait"]);

    let lines = std::fs::read_to_string(root.join("out/tally.csv")).unwrap();
    let parsed: Vec<(u64, u64)> = lines
        .lines()
        .map(|l| {
            let (count, runs) = l.split_once(',').unwrap_or_else(|| panic!("a line `count,runs`: {l:?}"));
            (count.parse().unwrap(), runs.parse().unwrap())
        })
        .collect();
    assert_eq!(parsed.len(), 60_000, "one line per event over the three runs");
    let before_last = parsed.iter().filter(|(_, runs)| *runs < 3).count() as u64;
    let mut last: Vec<u64> = parsed.iter().filter(|(_, runs)| *runs == 3).map(|(count, _)| *count).collect();
    last.sort_unstable();
    let expected: Vec<u64> = (before_last + 1..=60_000).collect();
    assert!(last == expected, "the last run counts on from every earlier event: {:?}…", &last[..last.len().min(5)]);
    for run in [1, 2] {
        assert!(parsed.iter().any(|(_, r)| *r == run), "run {run} mapped events");
    }

    // The second savepoint holds three counts that add up to the events
    // mapped before it, and every subtask's run number, 2.
    assert!(state.contains("operator list `count` (even-split): 3 elements"), "{state}");
    assert!(state.contains("operator list `runs` (union): 3 elements"), "{state}");
    let counts: u64 = state
        .lines()
        .skip_while(|l| !l.contains("list `count`"))
        .skip(1)
        .take(3)
        .map(|l| l.split_once('[').unwrap().1.trim_end_matches(']').parse::<u64>().unwrap())
        .sum();
    assert_eq!(counts, before_last, "{state}");
}
