//! The cluster with real processes on loopback: a `weir coordinator`
//! without slots of its own, and `weir worker` processes that join it
//! with its join token over QUIC and mutual TLS. A keyed job run on the
//! workers writes what local mode writes; a worker killed with SIGKILL in
//! the middle of a job is noticed by its missed heartbeats, and the job
//! restarts from its latest checkpoint on another worker and writes
//! every line exactly once. A job without checkpoints is spread over the
//! workers, its keyed channels between them one QUIC stream each; a
//! consumer slow on one worker back-pressures only its producers. Where
//! network namespaces can be made (root, `ip`), a worker in one of them
//! whose veth link is cut is noticed and its job moves.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{Coordinator, component, weir, weir_bin};

/// A `weir worker` process, killed when dropped.
struct Worker {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator with no slots of its own and `workers` workers of 2
/// slots each, all registered.
fn cluster(workers: usize, root: &Path) -> (Coordinator, Vec<Worker>) {
    let c =
        Coordinator::start_with_slots(0, &["--cluster-listen", "127.0.0.1:0", "--allow-path", root.to_str().unwrap()]);
    let line = c.line_with("--join-token", 30);
    let port =
        line.split("HOST:").nth(1).and_then(|r| r.split_whitespace().next()).expect("the join command names the port");
    let token = std::fs::read_to_string(c.data.path().join("join-token")).unwrap();
    assert!(line.contains(token.trim()), "the printed token is the one in <data-dir>/join-token: {line}");
    let coordinator = format!("127.0.0.1:{port}");
    let workers: Vec<Worker> =
        (1..=workers).map(|n| start_worker(&format!("w{n}"), token.trim(), &coordinator)).collect();
    let registered = |c: &Coordinator| c.get("/v1/workers").1["workers"].as_array().map_or(0, Vec::len);
    wait_for(&c, 60, "registered workers", |c| registered(c) == workers.len());
    (c, workers)
}

fn start_worker(name: &str, token: &str, coordinator: &str) -> Worker {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(weir_bin())
        .args(["worker", "--coordinator", coordinator, "--slots", "2", "--name", name, "--data-dir"])
        .arg(data.path())
        .env("WEIR_JOIN_TOKEN", token)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start weir worker");
    let stderr = child.stderr.take().unwrap();
    let name = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{name}] {line}");
        }
    });
    Worker { child, _data: data }
}

fn wait_for(c: &Coordinator, secs: u64, what: &str, done: impl Fn(&Coordinator) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(c) {
        assert!(Instant::now() < deadline, "no {what} within {secs} s: {:#}", c.get("/v1/workers").1);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A keyed job: a generator of `events` events at 20,000 events/s over
/// 97 keys, counted per key by a Wasm component at parallelism 2, one
/// `key,count` line per event into `dir/out/counts.csv` (exactly once),
/// checkpoints every 200 ms.
fn write_spec(dir: &Path, events: u32) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "name: counts\nparallelism: 2\nsources:\n  - {{id: events, type: generator, parallelism: 1, count: {events}, keys: 97, pattern: sequence, rate: 20000}}\n\
         operators:\n  - id: count\n    kind: process\n    input: events\n    key-by: \"@key\"\n    component: {}\n\
         sinks:\n  - {{id: out, type: file, path: {}, format: text, input: count}}\n\
         checkpoints: {{interval-ms: 200, dir: {}}}\n\
         restart: {{type: fixed-delay, attempts: 3, delay-ms: 200}}\n",
        component("flaky-count").display(),
        dir.join("out/counts.csv").display(),
        dir.join("checkpoints").display(),
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// [`write_spec`] without checkpoints, at parallelism `parallelism`: a
/// job the coordinator spreads over workers, a slot on each.
fn write_spread_spec(dir: &Path, events: u32, parallelism: u32) -> String {
    let path = write_spec(dir, events);
    let text = std::fs::read_to_string(&path).unwrap();
    let checkpoints = text.lines().find(|l| l.starts_with("checkpoints:")).unwrap().to_owned();
    let text = text.replace(&checkpoints, "").replace("parallelism: 2\n", &format!("parallelism: {parallelism}\n"));
    std::fs::write(&path, text).unwrap();
    path
}

/// What `weir run` (local mode) writes for the spec.
fn local_output(dir: &Path, events: u32) -> Vec<String> {
    let spec = write_spec(dir, events);
    local_output_of(dir, &spec, events)
}

fn local_output_of(dir: &Path, spec: &str, events: u32) -> Vec<String> {
    let cache = tempfile::tempdir().unwrap();
    let out = weir(&["run", spec, "--no-server"], cache.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = sorted_lines(&dir.join("out/counts.csv"));
    assert_eq!(lines.len(), events as usize);
    lines
}

/// Waits until job `id` has completed `n` checkpoints (2 minutes at most).
fn completed_checkpoints(c: &Coordinator, id: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.get(&format!("/v1/jobs/{id}/checkpoints")).1["counts"]["completed"].as_u64().unwrap_or(0) < n {
        let (job, checkpoints) = (c.get(&format!("/v1/jobs/{id}")).1, c.get(&format!("/v1/jobs/{id}/checkpoints")).1);
        assert!(Instant::now() < deadline, "not {n} checkpoints: {checkpoints:#}\n{job:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The worker whose slots job `id` holds.
fn worker_of(c: &Coordinator, id: &str) -> Option<String> {
    let workers = c.get("/v1/workers").1;
    workers["workers"].as_array()?.iter().find_map(|w| {
        let holds = w["jobs"].as_array()?.iter().any(|j| j == id);
        holds.then(|| w["id"].as_str().unwrap_or_default().to_owned())
    })
}

#[test]
fn a_keyed_job_on_worker_processes_writes_what_local_mode_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let expected = local_output(&root.join("local"), 40_000);
    let (c, _workers) = cluster(3, &root);
    let overview = c.get("/v1/overview").1;
    assert_eq!((overview["workers"].as_u64(), overview["slots-total"].as_u64()), (Some(3), Some(6)), "{overview:#}");

    let spec = write_spec(&root.join("remote"), 40_000);
    let id = c.ok(&["submit", &spec]);
    let job = c.wait_job(&id, 120, |j| j["state"].as_str().is_some_and(|s| s != "CREATED" && s != "RUNNING"));
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    assert_eq!(sorted_lines(&root.join("remote/out/counts.csv")), expected, "the same lines as local mode");
    let counted = job["vertices"][1]["metrics"]["numRecordsIn"].as_u64();
    assert_eq!(counted, Some(40_000), "the worker's metrics reach the coordinator: {job:#}");
}

#[test]
fn a_worker_killed_with_sigkill_is_noticed_and_its_job_fails_over_with_exactly_once_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let expected = local_output(&root.join("local"), 200_000);
    let (c, mut workers) = cluster(3, &root);
    let spec = write_spec(&root.join("remote"), 200_000);
    let id = c.ok(&["submit", &spec]);

    // Running, with a checkpoint to come back to.
    completed_checkpoints(&c, &id, 2);
    let job = c.get(&format!("/v1/jobs/{id}")).1;
    assert_eq!(job["state"], "RUNNING", "the job must still run when its worker is killed: {job:#}");
    let victim = worker_of(&c, &id).expect("a worker holds the job's slots");
    let n: usize = victim.trim_start_matches('w').parse().unwrap();
    workers[n - 1].child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();

    wait_for(&c, 30, "failover", |c| c.get(&format!("/v1/jobs/{id}")).1["restarts"].as_u64().unwrap_or(0) >= 1);
    let noticed = killed.elapsed();
    eprintln!("worker {victim} killed; its job was restarting after {} ms", noticed.as_millis());
    let workers_now = c.get("/v1/workers").1;
    let ids: Vec<&str> = workers_now["workers"].as_array().unwrap().iter().filter_map(|w| w["id"].as_str()).collect();
    assert!(!ids.contains(&victim.as_str()) && ids.len() == 2, "the lost worker is gone from the list: {ids:?}");

    let job = c.wait_job(&id, 120, |j| j["state"] == "FINISHED" || j["state"] == "FAILED");
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    let exceptions = c.ok(&["exceptions", &id]);
    assert!(exceptions.contains(&format!("worker `{victim}`")) && exceptions.contains("was lost"), "{exceptions}");
    let now_on = worker_of(&c, &id);
    assert_ne!(now_on.as_deref(), Some(victim.as_str()));
    assert_eq!(sorted_lines(&root.join("remote/out/counts.csv")), expected, "every line exactly once");
}

#[test]
fn a_job_spread_over_workers_takes_checkpoints_and_a_savepoint_each_worker_writing_its_own_tasks_parts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let expected = local_output(&root.join("local"), 200_000);
    let (c, _workers) = cluster(3, &root);
    // Keyed state on fjall: its checkpoints are chains of shared files,
    // which each worker writes (and collects) for its own tasks.
    let spec = write_spec(&root.join("remote"), 200_000);
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("name: counts\n", "name: counts\nstate: {backend: lsm, memory-mb: 4}\n"))
        .unwrap();
    let id = c.ok(&["submit", &spec]);
    completed_checkpoints(&c, &id, 3);
    let workers = c.get("/v1/workers").1;
    let holding = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["jobs"].as_array().is_some_and(|jobs| jobs.iter().any(|j| j == id.as_str())));
    assert!(holding.count() >= 2, "the job is spread: {workers:#}");

    // A completed checkpoint lists every task's file, from both workers.
    let folder = root.join("remote/checkpoints");
    let jobs = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path());
    let metadata = jobs
        .flat_map(|job| std::fs::read_dir(job).unwrap().map(|e| e.unwrap().path()))
        .filter_map(|chk| std::fs::read_to_string(chk.join("_metadata")).ok())
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap())
        .next()
        .expect("a completed checkpoint");
    let mut tasks: Vec<&str> =
        metadata["tasks"].as_array().unwrap().iter().map(|t| t["file"].as_str().unwrap()).collect();
    tasks.sort_unstable();
    // The source, `count` at parallelism 2, and the sink.
    assert_eq!(tasks, ["task-0", "task-1", "task-2", "task-3"], "{metadata:#}");
    let shared: Vec<u64> =
        metadata["shared"].as_array().unwrap().iter().map(|s| s["subtask"].as_u64().unwrap()).collect();
    assert!(shared.contains(&0) && shared.contains(&1), "both subtasks' keyed state: {metadata:#}");

    // Stopped with a savepoint, and taken up again from it: every line
    // exactly once.
    let location = c.ok(&["stop", &id, "--savepoint"]);
    let info: serde_json::Value = serde_json::from_str(&c.ok(&["info", &id, "--json"])).unwrap();
    assert_eq!(info["state"], "FINISHED", "{info:#}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&location).join("_metadata")).unwrap()).unwrap();
    assert_eq!(saved["tasks"].as_array().map(Vec::len), Some(4), "{saved:#}");
    let written = sorted_lines(&root.join("remote/out/counts.csv")).len();
    assert!(written < 200_000, "stopped before its input ended ({written} lines)");
    let again = c.ok(&["submit", &spec, "--from-savepoint", &location]);
    let job = c.wait_job(&again, 120, |j| j["state"] == "FINISHED" || j["state"] == "FAILED");
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    assert_eq!(sorted_lines(&root.join("remote/out/counts.csv")), expected, "every line exactly once");
}

#[test]
fn a_keyed_job_spread_over_three_workers_sends_its_keys_between_them_and_writes_what_local_mode_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let local = root.join("local");
    let spec = write_spread_spec(&local, 60_000, 3);
    let expected = local_output_of(&local, &spec, 60_000);
    let (c, _workers) = cluster(3, &root);

    let spec = write_spread_spec(&root.join("remote"), 60_000, 3);
    let id = c.ok(&["submit", &spec]);
    c.wait_job(&id, 60, |j| j["state"] == "RUNNING");
    let holding: Vec<String> = (1..=3)
        .map(|n| format!("w{n}"))
        .filter(|w| {
            let workers = c.get("/v1/workers").1;
            workers["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == w.as_str() && x["jobs"].as_array().unwrap().iter().any(|j| j == id.as_str()))
        })
        .collect();
    assert_eq!(holding.len(), 3, "a slot of the job on every worker: {holding:?}");
    let job = c.wait_job(&id, 120, |j| j["state"].as_str().is_some_and(|s| s != "CREATED" && s != "RUNNING"));
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    assert_eq!(sorted_lines(&root.join("remote/out/counts.csv")), expected, "the same lines as local mode");
    let count = &job["vertices"][1];
    let per_subtask: Vec<u64> =
        count["subtasks"].as_array().unwrap().iter().map(|s| s["metrics"]["numRecordsIn"].as_u64().unwrap()).collect();
    assert_eq!(per_subtask.iter().sum::<u64>(), 60_000, "each subtask's metrics from its own worker: {per_subtask:?}");
    assert!(per_subtask.iter().all(|&n| n > 10_000), "every worker counted its keys: {per_subtask:?}");
}

#[test]
fn a_consumer_slow_on_one_worker_back_pressures_its_producers_and_no_other_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (c, _workers) = cluster(3, &root);
    let job = root.join("slow");
    std::fs::create_dir_all(&job).unwrap();
    // Key "7" costs its subtask 1,000,000 rounds per event; the others
    // nothing: one consumer subtask, on one worker, is slow.
    let spec = job.join("pipeline.yaml");
    let text = format!(
        "name: slow\nparallelism: 3\nsources:\n  - {{id: events, type: generator, count: 100000000, keys: 97, pattern: sequence}}\n\
         operators:\n  - id: work\n    kind: process\n    input: events\n    key-by: \"@key\"\n    component: {}\n    config: {{mode: slow-key, key: \"7\", n: 1000000}}\n\
         sinks:\n  - {{id: out, type: discard, input: work}}\n",
        component("hostile-process").display()
    );
    std::fs::write(&spec, text).unwrap();
    let id = c.ok(&["submit", spec.to_str().unwrap()]);
    c.wait_job(&id, 60, |j| j["state"] == "RUNNING");
    // Rates are per second over the last sample: let a few pass.
    std::thread::sleep(Duration::from_secs(4));
    let job = c.get(&format!("/v1/jobs/{id}")).1;
    let rate =
        |v: usize, s: usize, name: &str| job["vertices"][v]["subtasks"][s]["metrics"][name].as_f64().unwrap_or(-1.0);
    let busy: Vec<f64> = (0..3).map(|s| rate(1, s, "busyTimeMsPerSecond")).collect();
    let slow = (0..3).max_by(|&a, &b| busy[a].total_cmp(&busy[b])).unwrap();
    assert!(busy[slow] > 600.0, "the subtask with key 7 is busy nearly all the time: {busy:?}\n{job:#}");
    for s in (0..3).filter(|&s| s != slow) {
        let back = rate(1, s, "backPressuredTimeMsPerSecond");
        assert!(back < 50.0, "consumer subtask {s} is not back-pressured ({back} ms/s): {job:#}");
        assert!(busy[s] < busy[slow] / 2.0, "consumer subtask {s} has little to do while {slow} is slow: {busy:?}");
    }
    for s in 0..3 {
        let back = rate(0, s, "backPressuredTimeMsPerSecond");
        assert!(back > 300.0, "source subtask {s} waits for the slow consumer's channel ({back} ms/s): {job:#}");
        // The API names the channel: into the slow subtask, and no other.
        let channels = job["vertices"][0]["subtasks"][s]["channels"].as_array().unwrap();
        assert_eq!(channels.len(), 3, "a channel to each consumer subtask: {channels:?}");
        for ch in channels {
            let (to, waited) =
                (ch["subtask"].as_u64().unwrap() as usize, ch["backPressuredTimeMsPerSecond"].as_f64().unwrap());
            assert_eq!(ch["to"], "work");
            if to == slow {
                assert!(waited > 300.0, "source {s}'s channel to the slow subtask {slow} is back-pressured: {ch}");
            } else {
                assert!(waited < 50.0, "source {s}'s channel to subtask {to} is not: {ch}");
            }
        }
        let remote = channels.iter().filter(|ch| ch["remote"] == true).count();
        assert_eq!(remote, 2, "two of the three consumers run on other workers: {channels:?}");
    }
    c.ok(&["cancel", &id]);
    let ended = c.wait_job(&id, 30, |j| j["state"] == "CANCELED" || j["state"] == "FAILED");
    assert_eq!(ended["state"], "CANCELED", "cancelling a spread job cancels it, whatever its channels say: {ended:#}");
}

/// A network namespace joined to this one by a veth pair (`10.213.n.1`
/// here, `10.213.n.2` there), removed when dropped.
struct Netns {
    name: String,
    host_if: String,
    here: String,
}

impl Netns {
    /// `None` (and why) where namespaces cannot be made: not root, no `ip`.
    fn new() -> Result<Netns, String> {
        let n = std::process::id() % 250 + 1;
        let (name, host_if, peer_if) = (format!("weir-test-{n}"), format!("wt{n}a"), format!("wt{n}b"));
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        // Left over by a run that was killed.
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_if]);
        ip(&["netns", "add", &name])?;
        let ns = Netns { name: name.clone(), host_if: host_if.clone(), here: format!("10.213.{n}.1") };
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &peer_if])?;
        ip(&["link", "set", &peer_if, "netns", &name])?;
        ip(&["addr", "add", &format!("10.213.{n}.1/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "addr", "add", &format!("10.213.{n}.2/30"), "dev", &peer_if])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cuts the link: nothing passes any more, and no one is told.
    fn cut(&self) {
        let out = Command::new("ip").args(["link", "set", &self.host_if, "down"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

#[test]
fn a_worker_whose_network_link_is_cut_is_noticed_and_its_job_restarts_on_another_worker() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: network namespaces are not available here ({e})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let expected = local_output(&root.join("local"), 200_000);
    let listen = format!("{}:0", ns.here);
    let c = Coordinator::start_with_slots(0, &["--cluster-listen", &listen, "--allow-path", root.to_str().unwrap()]);
    let line = c.line_with("--join-token", 30);
    let port = line.split("HOST:").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
    let token = std::fs::read_to_string(c.data.path().join("join-token")).unwrap().trim().to_owned();
    let coordinator = format!("{}:{port}", ns.here);

    // The worker across the link runs the job; the one here takes over.
    let data = tempfile::tempdir().unwrap();
    let mut far = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(weir_bin())
        .args(["worker", "--coordinator", &coordinator, "--slots", "2", "--name", "far", "--data-dir"])
        .arg(data.path())
        .env("WEIR_JOIN_TOKEN", &token)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let registered = |c: &Coordinator| c.get("/v1/workers").1["workers"].as_array().map_or(0, Vec::len);
    wait_for(&c, 60, "the worker across the link", |c| registered(c) == 1);
    let spec = write_spec(&root.join("remote"), 200_000);
    let id = c.ok(&["submit", &spec]);
    completed_checkpoints(&c, &id, 2);
    assert_eq!(worker_of(&c, &id).as_deref(), Some("far"));
    let near = start_worker("near", &token, &coordinator);
    wait_for(&c, 60, "the worker here", |c| registered(c) == 2);

    ns.cut();
    let cut = Instant::now();
    wait_for(&c, 30, "failover", |c| c.get(&format!("/v1/jobs/{id}")).1["restarts"].as_u64().unwrap_or(0) >= 1);
    let noticed = cut.elapsed();
    eprintln!("link cut; the job was restarting after {} ms", noticed.as_millis());
    assert!(noticed < Duration::from_secs(15), "the cut link was noticed ({} ms)", noticed.as_millis());
    let job = c.wait_job(&id, 120, |j| j["state"] == "FINISHED" || j["state"] == "FAILED");
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    assert_eq!(worker_of(&c, &id), None, "the job's slots are free again");
    assert_eq!(sorted_lines(&root.join("remote/out/counts.csv")), expected, "every line exactly once");
    drop(near);
    let _ = far.kill();
    let _ = far.wait();
}

#[test]
fn a_worker_offering_no_slots_or_too_many_is_refused_saying_why_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let c =
        Coordinator::start_with_slots(0, &["--cluster-listen", "127.0.0.1:0", "--allow-path", root.to_str().unwrap()]);
    let line = c.line_with("--join-token", 30);
    let port = line.split("HOST:").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let token = std::fs::read_to_string(c.data.path().join("join-token")).unwrap().trim().to_owned();
    for (slots, says) in
        [("0", "needs at least one slot"), ("2000", "2000 slots is more than one worker may offer (1024)")]
    {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(weir_bin())
            .args(["worker", "--coordinator", &format!("127.0.0.1:{port}"), "--slots", slots, "--name", "greedy"])
            .arg("--data-dir")
            .arg(data.path())
            .env("WEIR_JOIN_TOKEN", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "a refused worker stops by itself (--slots {slots})");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success() && stderr.contains("refused") && stderr.contains(says), "--slots {slots}: {stderr}");
        let workers = c.get("/v1/workers").1;
        assert_eq!(workers["workers"].as_array().map(Vec::len), Some(0), "not registered: {workers:#}");
    }
}

/// PEM files of a certificate for `name` from `ca`: (cert, key).
fn own_certificate(ca: &weir_net::pki::ClusterCa, dir: &Path, name: &str) -> (String, String) {
    let id = ca.identity(name).unwrap();
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, id.cert_pem).unwrap();
    std::fs::write(&key, id.key_pem).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn with_certificates_its_operators_brought_workers_connect_without_a_token_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let expected = local_output(&root.join("local"), 40_000);
    // The operators' CA (made outside the coordinator), and another.
    let pki = root.join("pki");
    let ca = weir_net::pki::ClusterCa::open_or_create(&pki).unwrap();
    let ca_pem = pki.join("ca.pem").display().to_string();
    let other = weir_net::pki::ClusterCa::open_or_create(&root.join("other")).unwrap();
    let (cert, key) = own_certificate(&ca, &pki, "weir-coordinator");
    let listen = ["--cluster-listen", "127.0.0.1:0", "--allow-path", root.to_str().unwrap()];
    let own = ["--cluster-cert", &cert, "--cluster-key", &key, "--cluster-ca", &ca_pem];
    let c = Coordinator::start_with_slots(0, &[&listen[..], &own[..]].concat());
    let line = c.line_with("--cert FILE", 30);
    let port = line.split("HOST:").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(!c.data.path().join("join-token").exists(), "no join token is made");
    let worker = |name: &str, ca_of: &weir_net::pki::ClusterCa, ca_file: &str| {
        let (cert, key) = own_certificate(ca_of, &pki, name);
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(weir_bin())
            .args(["worker", "--coordinator", &format!("127.0.0.1:{port}"), "--slots", "2", "--data-dir"])
            .arg(data.path())
            .args(["--cert", &cert, "--key", &key, "--ca", ca_file])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker { child, _data: data }
    };
    let registered = |c: &Coordinator| {
        let w = c.get("/v1/workers").1;
        w["workers"].as_array().unwrap().iter().filter_map(|w| w["id"].as_str().map(str::to_owned)).collect::<Vec<_>>()
    };
    let _ours = [worker("own-1", &ca, &ca_pem), worker("own-2", &ca, &ca_pem)];
    wait_for(&c, 60, "the workers with the operators' certificates", |c| registered(c).len() == 2);
    let other_pem = root.join("other/ca.pem").display().to_string();
    let _stranger = worker("stranger", &other, &other_pem);
    // A name a joining worker could not have: refused the same.
    let _impostor = worker("embedded", &ca, &ca_pem);
    let spec = write_spec(&root.join("remote"), 40_000);
    let id = c.ok(&["submit", &spec]);
    let job = c.wait_job(&id, 120, |j| j["state"].as_str().is_some_and(|s| s != "CREATED" && s != "RUNNING"));
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    assert_eq!(sorted_lines(&root.join("remote/out/counts.csv")), expected, "the same lines as local mode");
    let mut names = registered(&c);
    names.sort();
    assert_eq!(
        names,
        ["own-1", "own-2"],
        "known by their certificates' names; another CA's worker and a reserved name are refused"
    );
}
