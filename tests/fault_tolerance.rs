//! Fault injection with real processes: `weir run --resume` killed with
//! SIGKILL at random moments and started again until it exits 0, an
//! operator that traps inside a running job, a damaged latest checkpoint.
//! Each run's output is compared with a run that was never disturbed.
//!
//! The short form runs in the suite (5 kills); the long form is
//! `WEIR_KILLS=100 cargo test --release -p weir-tests --test fault_tolerance
//! -- --nocapture` (see docs/fault-tolerance.md). `WEIR_KILL_SEED` repeats a
//! run's random moments.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{component, example_copy, weir, weir_bin};

/// Writes `events` rows of `key,timestamp_ms,value` (deterministic for
/// `seed`), the crash example's input format; row `sentinel` (if any) gets
/// the value 1000, which no other row has.
fn write_events(path: &Path, events: usize, keys: u64, seed: u64, sentinel: Option<usize>) {
    let mut rng = Rng(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "key,timestamp_ms,value").unwrap();
    for i in 0..events {
        let ts = 1_700_000_000_000 + i as u64 - rng.below(1500);
        let value = if Some(i) == sentinel { 1000 } else { 1 + rng.below(100) };
        writeln!(f, "k{},{ts},{value}", rng.below(keys)).unwrap();
    }
}

/// xorshift64*: enough randomness for moments and data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("WEIR_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    })
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The crash example copied into a temp dir with `events` events of its
/// own, and the output of an uninterrupted run of it (sorted lines).
fn crash_example(events: usize, seed: u64, spec_edit: impl Fn(String) -> String) -> (tempfile::TempDir, Vec<String>) {
    let dir = example_copy("exactly-once");
    let spec_path = dir.path().join("pipeline.yaml");
    let spec = spec_edit(std::fs::read_to_string(&spec_path).unwrap());
    std::fs::write(&spec_path, spec).unwrap();
    write_events(&dir.path().join("data/events.csv"), events, 500, seed, None);
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", spec_path.to_str().unwrap(), "--no-server"], cache.path());
    assert!(out.status.success(), "the uninterrupted run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let expected = sorted_lines(&dir.path().join("out/sums.csv"));
    assert!(expected.len() > 1000, "the example should write many windows, wrote {}", expected.len());
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    // (A short run may finish before its first checkpoint.)
    let _ = std::fs::remove_dir_all(dir.path().join("checkpoints"));
    (dir, expected)
}

/// Starts `weir run SPEC --resume` and kills it with SIGKILL after a
/// random moment, again and again, `kills` times in all; a run that ends
/// by itself ends a round: its output must equal `expected`, and the next
/// round starts from nothing. The last round has at least five kills (or
/// `kills`, if fewer), and is then run to its end. Returns the rounds.
fn kill_and_resume(spec: &Path, kills: usize, rng: &mut Rng, expected: &[String], exactly_once: bool) -> usize {
    kill_and_resume_into(spec, "out/sums.csv", kills, rng, expected, exactly_once)
}

/// [`kill_and_resume`] of a job writing `output` (beside the spec).
fn kill_and_resume_into(
    spec: &Path,
    output: &str,
    kills: usize,
    rng: &mut Rng,
    expected: &[String],
    exactly_once: bool,
) -> usize {
    let dir = spec.parent().unwrap();
    let fresh = || {
        let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    };
    let runs = Runs { output, envs: Vec::new(), fresh: &fresh };
    kill_and_resume_with(spec, &runs, kills, rng, expected, exactly_once)
}

/// How [`kill_and_resume_with`] runs a job.
struct Runs<'a> {
    /// What it writes, beside the spec.
    output: &'a str,
    /// Environment variables for `weir`.
    envs: Vec<(String, String)>,
    /// Makes the next run start from nothing (after a round ended).
    fresh: &'a dyn Fn(),
}

/// [`kill_and_resume`], as `runs` says.
fn kill_and_resume_with(
    spec: &Path,
    runs: &Runs<'_>,
    kills: usize,
    rng: &mut Rng,
    expected: &[String],
    exactly_once: bool,
) -> usize {
    let output = runs.output;
    let cache = tempfile::tempdir().unwrap();
    let dir = spec.parent().unwrap();
    let args = ["run", spec.to_str().unwrap(), "--resume", "--no-server"];
    let (mut killed, mut in_round, mut rounds) = (0, 0, 1);
    let check = |rounds: usize| {
        let got = sorted_lines(&dir.join(output));
        if exactly_once {
            assert_eq!(got.len(), expected.len(), "round {rounds}: lines: no loss and no duplicate");
            assert!(got == expected, "round {rounds}: the lines differ from the undisturbed run's");
        } else {
            let mut distinct = got.clone();
            distinct.dedup();
            assert!(distinct == expected, "round {rounds}: every line is there (some twice), and no other");
        }
        assert_eq!(leftovers(&dir.join("out")), Vec::<String>::new(), "no pending or in-progress file is left");
    };
    while killed < kills || in_round < kills.min(5) {
        let mut child = Command::new(weir_bin())
            .args(args)
            .env("WEIR_CACHE_DIR", cache.path())
            .envs(runs.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start weir");
        let moment = Duration::from_millis(150 + rng.below(750));
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a run ended by itself, and failed: {status}");
                check(rounds);
                std::fs::remove_dir_all(dir.join("out")).unwrap();
                (runs.fresh)();
                rounds += 1;
                in_round = 0;
                break;
            }
            if started.elapsed() >= moment {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
                in_round += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let out = Command::new(weir_bin())
        .args(args)
        .env("WEIR_CACHE_DIR", cache.path())
        .envs(runs.envs.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("cannot run weir");
    assert!(out.status.success(), "the last run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    check(rounds);
    println!("{killed} kills in {rounds} rounds, every round's output equal to the undisturbed run's");
    rounds
}

/// Files the sink left beside its output (in-progress or pending parts).
fn leftovers(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn kills() -> usize {
    std::env::var("WEIR_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

#[test]
fn the_crash_example_killed_at_random_moments_writes_exactly_what_an_undisturbed_run_writes() {
    let seed = seed();
    println!("seed {seed} (WEIR_KILL_SEED repeats it)");
    let mut rng = Rng(seed);
    let (dir, expected) = crash_example(1_500_000, seed, |s| s);
    kill_and_resume(&dir.path().join("pipeline.yaml"), kills(), &mut rng, &expected, true);
}

#[test]
fn at_parallelism_two_the_sink_aligns_its_two_inputs_and_kills_change_nothing() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let (dir, expected) =
        crash_example(1_500_000, seed, |s| s.replace("name: exactly-once", "name: eo-p2\nparallelism: 2"));
    kill_and_resume(&dir.path().join("pipeline.yaml"), kills(), &mut rng, &expected, true);
    let got = sorted_lines(&dir.path().join("out/sums.csv"));
    assert!(
        got == expected,
        "lines differ from the undisturbed run's (seed {seed}): {} vs {}",
        got.len(),
        expected.len()
    );
}

#[test]
fn on_the_lsm_backend_with_incremental_checkpoints_kills_change_nothing() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    // A 1 MiB budget: most windows are on disk, so what changed is found
    // in memory and in fjall both.
    let edit =
        |s: String| s.replace("name: exactly-once", "name: eo-lsm\nstate: {backend: lsm, memory-mb: 1, path: .}");
    let (dir, expected) = crash_example(1_500_000, seed, edit);
    kill_and_resume(&dir.path().join("pipeline.yaml"), kills(), &mut rng, &expected, true);
}

#[test]
fn keyed_counts_restored_from_chains_of_incremental_checkpoints_are_exactly_once() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // 200,000 keys, a fifth or so touched between two checkpoints: each
    // checkpoint after a full one holds what changed since, and chains
    // grow to a few files before the next full one.
    write_events(&dir.path().join("events.csv"), 600_000, 200_000, seed, None);
    let spec = format!(
        "name: chains\nstate: {{backend: lsm, memory-mb: 4, path: .}}\n\
         sources:\n  - {{id: events, type: file, path: events.csv, format: csv, timestamp: timestamp_ms}}\n\
         operators:\n  - id: count\n    kind: process\n    input: events\n    key-by: key\n    component: {}\n\
         sinks:\n  - {{id: out, type: file, path: out/counts.csv, format: text, input: count}}\n\
         checkpoints: {{interval-ms: 100, dir: checkpoints, retain: 2}}\n",
        component("flaky-count").display()
    );
    let path = dir.path().join("chains.yaml");
    std::fs::write(&path, &spec).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let calm = weir(&["run", path.to_str().unwrap(), "--no-server"], cache.path());
    assert!(calm.status.success(), "{}", String::from_utf8_lossy(&calm.stderr));
    let expected = sorted_lines(&dir.path().join("out/counts.csv"));
    assert_eq!(expected.len(), 600_000);
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let _ = std::fs::remove_dir_all(dir.path().join("checkpoints"));
    kill_and_resume_into(&path, "out/counts.csv", kills(), &mut rng, &expected, true);
    // What the last run's checkpoints were made of.
    let (mut longest, mut at) = (0, None);
    for e in std::fs::read_dir(dir.path().join("checkpoints/chains")).unwrap() {
        let folder = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(folder.join("_metadata")) else { continue };
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        for chain in m["shared"].as_array().into_iter().flatten() {
            let files = chain["files"].as_array().unwrap().len();
            if files > longest {
                (longest, at) = (files, Some(folder.clone()));
            }
        }
    }
    assert!(longest >= 2, "a kept checkpoint is a chain of a full snapshot and what changed since");
    // `weir state` reads a chain as the state it stands for.
    let at = at.unwrap();
    let shown = weir(&["state", at.to_str().unwrap()], cache.path());
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success() && text.contains("value `count`"), "{text}");
    // The key seen most often: it has state in any late checkpoint.
    let count = |l: &String| l.rsplit(',').next().unwrap().parse::<u64>().unwrap();
    let busiest = expected.iter().max_by_key(|l| count(l)).unwrap();
    let key = busiest.rsplit_once(',').unwrap().0.to_owned();
    let one = weir(&["state", at.to_str().unwrap(), "--operator", "count", "--key", &key], cache.path());
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(one.status.success() && text.contains("value `count`"), "{text}");
}

#[test]
fn with_unaligned_checkpoints_kills_change_nothing() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    // Parallelism 2: the sink's two inputs are not aligned; barriers
    // overtake what is queued, which goes into the checkpoint.
    let edit = |s: String| {
        s.replace("name: exactly-once", "name: eo-unaligned\nparallelism: 2")
            .replace("  dir: checkpoints\n", "  dir: checkpoints\n  unaligned: true\n")
    };
    let (dir, expected) = crash_example(1_500_000, seed, edit);
    let spec = dir.path().join("pipeline.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("unaligned: true"));

    // An undisturbed run keeping every checkpoint: queues are full at
    // full speed, so barriers overtake data and checkpoints hold it.
    std::fs::write(&spec, text.replace("unaligned: true\n", "unaligned: true\n  retain: 100\n")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", spec.to_str().unwrap(), "--no-server"], cache.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sorted_lines(&dir.path().join("out/sums.csv")) == expected, "an unaligned run writes the same lines");
    let mut with_data = None;
    for e in std::fs::read_dir(dir.path().join("checkpoints/eo-unaligned")).unwrap() {
        let folder = e.unwrap().path();
        let shown = weir(&["state", folder.to_str().unwrap()], cache.path());
        if String::from_utf8_lossy(&shown.stdout).contains("in flight (unaligned checkpoint)") {
            with_data = Some(folder);
        }
    }
    let with_data = with_data.expect("some checkpoint holds in-flight data");
    // It restores only at its own parallelism.
    let rescaled = dir.path().join("rescaled.yaml");
    std::fs::write(
        &rescaled,
        text.replace("parallelism: 2", "parallelism: 1").replace("name: eo-unaligned", "name: r"),
    )
    .unwrap();
    let refused = weir(
        &["run", rescaled.to_str().unwrap(), "--from-savepoint", with_data.to_str().unwrap(), "--no-server"],
        cache.path(),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("holds in-flight data"), "{stderr}");
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();

    std::fs::write(&spec, &text).unwrap();
    kill_and_resume(&spec, kills(), &mut rng, &expected, true);
}

#[test]
fn checkpoints_go_on_after_a_source_finished_and_kills_change_nothing() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // `short` ends at once; `long` runs for about three seconds: the sink
    // reads both, and checkpoints go on once `short` has finished (its
    // final state stands for it), as in Flink since FLIP-147.
    let spec = "name: mixed\n\
         sources:\n  - {id: short, type: generator, parallelism: 1, count: 2000, keys: 10, pattern: sequence}\n  \
         - {id: long, type: generator, parallelism: 1, count: 60000, keys: 97, pattern: sequence, rate: 20000}\n\
         sinks:\n  - {id: out, type: file, path: out/lines.txt, format: text, input: [short, long]}\n\
         checkpoints: {interval-ms: 100, dir: checkpoints}\n";
    let path = dir.path().join("mixed.yaml");
    std::fs::write(&path, spec).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let calm = Command::new(weir_bin())
        .args(["run", path.to_str().unwrap(), "--no-server"])
        .env("WEIR_CACHE_DIR", cache.path())
        .env("WEIR_LOG", "warn,weir_runtime=info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&calm.stderr);
    assert!(calm.status.success(), "{log}");
    let completed = log.lines().filter(|l| l.contains("checkpoint") && l.contains(" completed: ")).count();
    assert!(completed >= 10, "checkpoints went on after `short` finished: {completed} completed\n{log}");
    let expected = sorted_lines(&dir.path().join("out/lines.txt"));
    assert_eq!(expected.len(), 62_000);
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    kill_and_resume_into(&path, "out/lines.txt", kills(), &mut rng, &expected, true);
}

#[test]
fn at_least_once_killed_at_random_moments_loses_nothing() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let edit =
        |s: String| s.replace("dir: checkpoints", "dir: checkpoints\n  mode: at-least-once") + "parallelism: 2\n";
    let (dir, expected) = crash_example(1_500_000, seed, edit);
    kill_and_resume(&dir.path().join("pipeline.yaml"), kills(), &mut rng, &expected, false);
}

#[test]
fn a_trapping_operator_restarts_from_the_latest_checkpoint_and_the_output_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events.csv"), 400_000, 300, 11, Some(250_000));
    let spec = |trap: &str| {
        format!(
            "name: flaky\nsources:\n  - {{id: events, type: file, path: events.csv, format: csv, timestamp: timestamp_ms}}\n\
             operators:\n  - id: count\n    kind: process\n    input: events\n    key-by: key\n    component: {}\n    config: {trap}\n\
             sinks:\n  - {{id: out, type: file, path: out/counts.csv, format: text, input: count}}\n\
             checkpoints: {{interval-ms: 50, dir: checkpoints}}\n\
             restart: {{type: fixed-delay, attempts: 2, delay-ms: 7000}}\n",
            component("flaky-count").display()
        )
    };
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("calm.yaml"), spec("{}").replace("out/counts.csv", "out/calm.csv")).unwrap();
    let calm = weir(&["run", dir.path().join("calm.yaml").to_str().unwrap(), "--no-server"], cache.path());
    assert!(calm.status.success(), "{}", String::from_utf8_lossy(&calm.stderr));

    // It traps until 6 s from now (the record is reached in well under a
    // second, even on a loaded machine), and restarts 7 s after the trap.
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 6000;
    let flaky = format!("{{trap-on: 1000, until-ms: {until}}}");
    std::fs::write(dir.path().join("flaky.yaml"), spec(&flaky)).unwrap();
    let out = weir(&["run", dir.path().join("flaky.yaml").to_str().unwrap(), "--no-server"], cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the job recovers and finishes:\n{stderr}");
    assert!(stderr.contains("restarts in") && stderr.contains("flaky-count traps on value 1000"), "{stderr}");
    let (got, want) =
        (sorted_lines(&dir.path().join("out/counts.csv")), sorted_lines(&dir.path().join("out/calm.csv")));
    assert_eq!(got.len(), 400_000, "one line per event, none twice");
    assert!(got == want, "every key's counts are those of the run without a failure");
}

#[test]
fn a_trap_that_exhausts_the_restart_strategy_fails_the_job_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events.csv"), 1000, 10, 3, Some(500));
    let spec = format!(
        "name: doomed\nsources:\n  - {{id: events, type: file, path: events.csv, format: csv, timestamp: timestamp_ms}}\n\
         operators:\n  - id: count\n    kind: process\n    input: events\n    key-by: key\n    component: {}\n    config: {{trap-on: 1000, until-ms: 9000000000000}}\n\
         sinks:\n  - {{id: out, type: file, path: out/counts.csv, format: text, input: count}}\n\
         checkpoints: {{interval-ms: 50, dir: checkpoints}}\n\
         restart: {{type: fixed-delay, attempts: 2, delay-ms: 10}}\n",
        component("flaky-count").display()
    );
    std::fs::write(dir.path().join("doomed.yaml"), spec).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", dir.path().join("doomed.yaml").to_str().unwrap(), "--no-server"], cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("flaky-count traps on value 1000"), "the cause is named:\n{stderr}");
    assert_eq!(stderr.matches("restarts in").count(), 2, "two restarts, then it fails:\n{stderr}");
}

#[test]
fn a_damaged_latest_checkpoint_falls_back_to_the_one_before() {
    let seed = seed();
    let (dir, expected) =
        crash_example(1_500_000, seed, |s| s.replace("dir: checkpoints", "dir: checkpoints\n  retain: 3"));
    let spec = dir.path().join("pipeline.yaml");
    let store = dir.path().join("checkpoints/exactly-once");
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", spec.to_str().unwrap(), "--resume", "--no-server"])
        .env("WEIR_CACHE_DIR", cache.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let complete = || -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(&store)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("_metadata").exists())
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete().len() < 2 {
        assert!(Instant::now() < deadline, "two checkpoints should complete within a minute");
        assert!(child.try_wait().unwrap().is_none(), "the job ended before two checkpoints: give it more input");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let ids = complete();
    let latest = store.join(format!("chk-{}", ids.last().unwrap()));
    let task = latest.join("task-0");
    let len = std::fs::metadata(&task).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&task).unwrap().set_len(len / 2).unwrap();

    let out = weir(&["run", spec.to_str().unwrap(), "--resume", "--no-server"], cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped a damaged checkpoint") && stderr.contains(&task.display().to_string()),
        "the damaged file is named:\n{stderr}"
    );
    let got = sorted_lines(&dir.path().join("out/sums.csv"));
    assert!(got == expected, "the output is that of an undisturbed run");
}

#[test]
fn resume_refuses_when_every_checkpoint_is_damaged_and_names_them() {
    let (dir, _) = crash_example(20_000, 5, |s| s);
    let store = dir.path().join("checkpoints/exactly-once/chk-1");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("_metadata"), b"{\"format\": 1").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipeline.yaml");
    let out = weir(&["run", spec.to_str().unwrap(), "--resume", "--no-server"], cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("chk-1/_metadata") && stderr.contains("no completed checkpoint"), "{stderr}");
    assert!(!dir.path().join("out/sums.csv").exists(), "nothing was written");
}

#[test]
fn resume_without_a_checkpoints_section_is_refused() {
    let dir = example_copy("wordcount");
    let cache = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipeline.yaml");
    let out = weir(&["run", spec.to_str().unwrap(), "--resume", "--no-server"], cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no `checkpoints:` section"), "{stderr}");
}

#[test]
fn the_crash_example_on_its_own_data_writes_its_expected_file() {
    let dir = example_copy("exactly-once");
    let cache = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipeline.yaml");
    let out = weir(&["run", spec.to_str().unwrap(), "--resume", "--no-server"], cache.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = sorted_lines(&dir.path().join("out/sums.csv"));
    assert_eq!(got, sorted_lines(&dir.path().join("expected/sums.csv")));
    assert!(got.iter().all(|l| l.split(',').count() == 4), "key,window_start,window_end,sum");
}

/// moto's S3 server (from PyPI, installed by `scripts/py-tools.sh`) on a
/// free loopback port, with a bucket `weir`; stopped when dropped.
struct S3 {
    child: std::process::Child,
    endpoint: String,
}

impl S3 {
    fn start() -> S3 {
        let server = weir_tests::target().join("py/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run `bash scripts/py-tools.sh` (scripts/test.sh does)",
            server.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server");
        let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Up once it answers; then the bucket.
        while ureq::get(&s3.endpoint).call().is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        ureq::put(&format!("{}/weir", s3.endpoint)).send_empty().expect("cannot make bucket `weir`");
        s3
    }

    /// What `weir` needs to use it.
    fn envs(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "weir-test"),
            ("AWS_SECRET_ACCESS_KEY", "weir-test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The keys of the objects under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let url = format!("{}/weir?list-type=2&prefix={prefix}", self.endpoint);
        let body = ureq::get(&url).call().unwrap().into_body().read_to_string().unwrap();
        body.split("<Key>").skip(1).filter_map(|k| k.split_once("</Key>")).map(|(k, _)| k.to_owned()).collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn with_checkpoints_in_s3_compatible_storage_kills_change_nothing() {
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let (dir, expected) = crash_example(1_500_000, seed, |s| s);
    let spec = dir.path().join("pipeline.yaml");
    let local = std::fs::read_to_string(&spec).unwrap();
    let s3 = S3::start();
    // Each round under a prefix of its own: a round that ended leaves its
    // checkpoints behind, and the next starts from nothing.
    let round = std::cell::Cell::new(0);
    let fresh = || {
        round.set(round.get() + 1);
        let text = local.replace("dir: checkpoints", &format!("dir: s3://weir/round-{}", round.get()));
        std::fs::write(&spec, text).unwrap();
    };
    fresh();
    let runs = Runs { output: "out/sums.csv", envs: s3.envs(), fresh: &fresh };
    let rounds = kill_and_resume_with(&spec, &runs, kills(), &mut rng, &expected, true);
    assert!(!dir.path().join("checkpoints").exists(), "nothing went to the local folder");

    // The last round's checkpoints are in the bucket, and read back.
    let prefix = format!("round-{}/exactly-once/", round.get());
    let keys = s3.keys(&prefix);
    let metadata =
        keys.iter().find(|k| k.ends_with("/_metadata")).unwrap_or_else(|| panic!("no checkpoint in {keys:?}"));
    let folder = format!("s3://weir/{}", metadata.trim_end_matches("/_metadata"));
    let cache = tempfile::tempdir().unwrap();
    let shown = Command::new(weir_bin())
        .args(["state", &folder])
        .env("WEIR_CACHE_DIR", cache.path())
        .envs(s3.envs())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success() && text.contains(&folder), "{text}{}", String::from_utf8_lossy(&shown.stderr));
    // A run resumed once more restores from the bucket (not from nothing)
    // and still writes the same lines.
    let again = Command::new(weir_bin())
        .args(["run", spec.to_str().unwrap(), "--resume", "--no-server"])
        .env("WEIR_CACHE_DIR", cache.path())
        .env("WEIR_LOG", "warn,weir_runtime=info")
        .envs(s3.envs())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{log}");
    assert!(log.contains("restored every task from checkpoint") && log.contains("s3://weir/round-"), "{log}");
    assert!(sorted_lines(&dir.path().join("out/sums.csv")) == expected, "the same lines after one more resume");
    println!("{rounds} rounds; the last checkpoint is {folder}");
}
