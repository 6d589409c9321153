//! The REST API end to end, against a real `weir coordinator` process on
//! loopback: upload a bundle, submit it, watch it reach RUNNING and
//! FINISHED, read its metrics and output; cancel a long-running job;
//! read the exception of a trapping operator (through the CLI too);
//! every malformed bundle refused with its own message and nothing
//! stored; the token; files confined to the job's working directory; and
//! `weir run`'s local mode serving the API while its job runs.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{
    Coordinator, Entries, component, components, entries_of, example_copy, rezip, sorted_json_lines, weir_bin,
};

fn state(job: &Value) -> &str {
    job["state"].as_str().unwrap()
}

fn vertex<'a>(job: &'a Value, id: &str) -> &'a Value {
    job["vertices"].as_array().unwrap().iter().find(|v| v["id"] == id).unwrap()
}

fn messages(v: &Value) -> String {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not an error answer: {v}"))
        .iter()
        .map(|e| format!("{}: {}\n", e["place"], e["message"]))
        .collect()
}

/// The word count's bundle, built by the library.
fn wordcount_bundle() -> Vec<u8> {
    let example = example_copy("wordcount");
    let out = example.path().join("wc.weir");
    let rt = weir_wasm::WasmRuntime::new(None).unwrap();
    weir_bundle::build(example.path(), None, "1.0.0", Some(&out), &rt).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn a_bundle_uploaded_and_submitted_runs_to_finished_with_its_metrics_and_output() {
    let c = Coordinator::start(&[]);
    let bundle = wordcount_bundle();
    let (status, stored) = c.post("/v1/bundles", &bundle, &[]);
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["name"], "wordcount");
    assert_eq!(stored["components"].as_array().unwrap().len(), 2);
    let id = stored["id"].as_str().unwrap().to_owned();
    // The same file again: deduplicated.
    let (status, again) = c.post("/v1/bundles", &bundle, &[]);
    assert_eq!((status, &again["id"]), (200, &stored["id"]));
    assert_eq!(c.get("/v1/bundles").1["bundles"].as_array().unwrap().len(), 1);

    let (status, submitted) = c.post_json("/v1/jobs", &json!({"bundle": id}));
    assert_eq!(status, 202, "{submitted}");
    let job_id = submitted["id"].as_str().unwrap().to_owned();
    let job = c.wait_job(&job_id, 120, |j| state(j) == "FINISHED" || state(j) == "FAILED");
    assert_eq!(state(&job), "FINISHED", "{job:#}");
    let ts = &job["timestamps"];
    assert!(ts["CREATED"].as_u64().unwrap() <= ts["RUNNING"].as_u64().unwrap(), "{ts}");
    assert!(ts["RUNNING"].as_u64().unwrap() <= ts["FINISHED"].as_u64().unwrap(), "{ts}");
    assert_eq!(vertex(&job, "split")["metrics"]["numRecordsOut"], 59);
    assert_eq!(vertex(&job, "count")["metrics"]["numRecordsIn"], 59);
    assert_eq!(vertex(&job, "counts")["metrics"]["numRecordsIn"], 40);
    // Nothing flows in an ended job: its rates are zero, its totals stay.
    let rated = |m: &serde_json::Value| m["numRecordsInPerSecond"].as_f64() == Some(0.0);
    assert!(job["vertices"].as_array().unwrap().iter().all(|v| rated(&v["metrics"])), "{job:#}");
    // The split operator's own counter, as it reported it.
    let words = &vertex(&job, "split")["subtasks"][0]["user-metrics"][0];
    assert_eq!((&words["name"], &words["kind"], &words["value"]), (&json!("words"), &json!("counter"), &json!(59.0)));
    let (status, v) = c.get(&format!("/v1/jobs/{job_id}/vertices/count"));
    assert_eq!((status, &v["metrics"]["numRecordsOut"]), (200, &json!(40)));

    // The output is in the job's working directory, as the spec names it.
    let wd = Path::new(job["working-dir"].as_str().unwrap());
    assert!(wd.starts_with(c.data.path()), "{}", wd.display());
    let expected = weir_tests::root().join("examples/wordcount/expected/counts.jsonl");
    assert_eq!(sorted_json_lines(&wd.join("out/counts.jsonl")), sorted_json_lines(&expected));

    let (_, list) = c.get("/v1/jobs");
    assert_eq!(list["jobs"][0]["id"], job_id.as_str());
    let (_, overview) = c.get("/v1/overview");
    assert_eq!((&overview["jobs"]["FINISHED"], &overview["slots-total"]), (&json!(1), &json!(2)));
    let metrics = c.text("/metrics");
    assert!(
        metrics.contains(&format!("weir_job_state{{job_id=\"{job_id}\",job_name=\"wordcount\",state=\"FINISHED\"}} 1")),
        "{metrics}"
    );
    // A bundle a job ran from can go once the job has ended; then it is gone.
    let del = Coordinator::answer(Coordinator::agent().delete(format!("{}/v1/bundles/{id}", c.url)).call());
    assert_eq!(del.0, 204, "{}", del.1);
    assert_eq!(c.get(&format!("/v1/bundles/{id}")).0, 404);
    assert_eq!(std::fs::read_dir(c.data.path().join("blobs")).unwrap().count(), 0);
}

/// A generator job that runs until cancelled, its component uploaded alone.
fn submit_endless(c: &Coordinator) -> String {
    let wasm = std::fs::read(component("passthrough")).unwrap();
    let (status, up) = c.post("/v1/components", &wasm, &[]);
    assert_eq!(status, 201, "{up}");
    let spec = "name: endless\nsources:\n  - id: events\n    type: generator\n    keys: 100\n    rate: 20000\n\
                operators:\n  - id: pass\n    kind: map\n    component: passthrough.wasm\n    input: events\n\
                sinks:\n  - id: out\n    type: discard\n    input: pass\n";
    let (status, submitted) =
        c.post_json("/v1/jobs", &json!({"spec": spec, "components": {"passthrough.wasm": up["sha256"]}}));
    assert_eq!(status, 202, "{submitted}");
    submitted["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_long_running_job_shows_rates_and_is_cancelled_through_its_trigger_id() {
    let c = Coordinator::start(&[]);
    let id = submit_endless(&c);
    let job = c.wait_job(&id, 120, |j| {
        state(j) == "RUNNING" && vertex(j, "pass")["metrics"]["numRecordsInPerSecond"].as_f64().unwrap() > 0.0
    });
    assert!(vertex(&job, "events")["metrics"]["numRecordsOut"].as_u64().unwrap() > 0, "{job:#}");
    let metrics = c.text("/metrics");
    let series =
        format!("weir_task_numRecordsIn{{job_id=\"{id}\",job_name=\"endless\",vertex=\"pass\",subtask=\"0\"}}");
    assert!(metrics.contains(&series), "{metrics}");
    assert!(metrics.contains("weir_task_backPressuredTimeMsPerSecond{"), "{metrics}");
    // Per subtask: where its time goes (the three add up to a second), its
    // bytes and its watermark.
    let pass = vertex(&job, "pass");
    assert_eq!(pass["backpressure"], "OK", "{pass:#}");
    let m = &pass["subtasks"][0]["metrics"];
    let total: f64 = ["busyTimeMsPerSecond", "idleTimeMsPerSecond", "backPressuredTimeMsPerSecond"]
        .iter()
        .map(|k| m[*k].as_f64().unwrap())
        .sum();
    assert!((total - 1000.0).abs() < 1.0, "{m:#}");
    assert!(m["idleTimeMsPerSecond"].as_f64().unwrap() > 100.0, "a job at 20 k events/s mostly waits: {m:#}");
    assert!(m["numBytesIn"].as_u64().unwrap() > 0 && m["currentInputWatermark"].as_i64().unwrap() > i64::MIN, "{m:#}");
    let (_, workers) = c.get("/v1/workers");
    assert_eq!(workers["workers"][0]["jobs"][0], id.as_str(), "{workers}");
    // The rates kept for charts: a sample a second or so, per vertex.
    let (status, rates) = c.get(&format!("/v1/jobs/{id}/rates"));
    assert_eq!(status, 200, "{rates}");
    let times = rates["timestamps"].as_array().unwrap();
    let pass_in = rates["vertices"]["pass"]["records-in-per-second"].as_array().unwrap();
    assert!(!times.is_empty() && pass_in.len() == times.len(), "{rates}");
    assert!(pass_in.iter().any(|r| r.as_f64().unwrap() > 0.0), "{rates}");
    let last = times.last().unwrap().as_u64().unwrap();
    let (_, newer) = c.get(&format!("/v1/jobs/{id}/rates?since={last}"));
    assert!(newer["timestamps"].as_array().unwrap().iter().all(|t| t.as_u64().unwrap() > last), "{newer}");
    let (status, bad) = c.get(&format!("/v1/jobs/{id}/rates?since=yesterday"));
    assert!(status == 400 && bad.to_string().contains("since=MS"), "{bad}");

    let (status, t) = c.post(&format!("/v1/jobs/{id}/cancel"), b"", &[]);
    assert_eq!(status, 202, "{t}");
    let trigger = t["request-id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, op) = c.get(&format!("/v1/jobs/{id}/cancel/{trigger}"));
        assert_eq!(status, 200, "{op}");
        if op["status"] == "COMPLETED" {
            assert_eq!(op["job-state"], "CANCELED", "{op}");
            assert!(op["failure-cause"].is_null(), "{op}");
            break;
        }
        assert!(Instant::now() < deadline, "the cancellation did not complete: {op}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, workers) = c.get("/v1/workers");
    assert_eq!(workers["workers"][0]["slots-free"], 2, "the slots are free again: {workers}");
    let (status, again) = c.post(&format!("/v1/jobs/{id}/cancel"), b"", &[]);
    assert_eq!(status, 409, "{again}");
}

#[test]
fn a_trapping_operators_exception_names_operator_subtask_record_and_the_guests_message() {
    let c = Coordinator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "name: trap\nsources:\n  - id: lines\n    type: file\n    path: data/input.txt\n    format: text\n\
         operators:\n  - id: panicky\n    kind: map\n    component: {}\n    input: lines\n\
         sinks:\n  - id: out\n    type: file\n    path: out.jsonl\n    input: panicky\n",
        component("panicky-map").display()
    );
    std::fs::write(dir.path().join("pipeline.yaml"), spec).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/input.txt"), "ok\nfine\nboom\n").unwrap();
    // Through the CLI: it bundles the folder, uploads, submits and waits.
    let out = Command::new(weir_bin())
        .args(["submit", "--wait", "--server", &c.url])
        .arg(dir.path().join("pipeline.yaml"))
        .env("WEIR_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a FAILED job exits 3: {stderr}");
    assert!(stderr.contains("the guest blew up on purpose"), "{stderr}");

    let (_, list) = c.get("/v1/jobs");
    let id = list["jobs"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["jobs"][0]["state"], "FAILED");
    let (status, e) = c.get(&format!("/v1/jobs/{id}/exceptions"));
    assert_eq!(status, 200);
    let root = &e["root-exception"];
    assert_eq!(
        (&root["operator"], &root["subtask"], &root["kind"]),
        (&json!("panicky"), &json!(0), &json!("operator"))
    );
    assert!(root["record"].as_str().unwrap().contains("input.txt"), "{root}");
    let message = root["exception"].as_str().unwrap();
    assert!(message.contains("the guest blew up on purpose") && message.contains("panicky_map"), "{message}");
    let out = Command::new(weir_bin()).args(["exceptions", &id[..8], "--server", &c.url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("(root cause)") && stdout.contains("the guest blew up on purpose"),
        "{stdout}"
    );
    let out = Command::new(weir_bin()).args(["info", &id, "--json", "--server", &c.url]).output().unwrap();
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["state"], "FAILED");
}

#[test]
fn each_malformed_bundle_is_refused_with_its_own_message_and_nothing_is_stored() {
    let c = Coordinator::start(&["--max-upload-mb", "8"]);
    let good = wordcount_bundle();
    let entries = entries_of(&good);
    let with = |f: &dyn Fn(&mut Entries)| {
        let mut e = entries.clone();
        f(&mut e);
        rezip(&e)
    };
    let count = |e: &mut Entries| e.iter().position(|(n, _)| n.contains("count")).unwrap();
    let panicky = std::fs::read(component("panicky-map")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("corrupt archive", good[..good.len() / 2].to_vec(), "not a readable zip archive"),
        (
            "missing component",
            with(&|e| {
                let i = count(e);
                e.remove(i);
            }),
            "not in the archive",
        ),
        (
            "wrong world",
            with(&|e| {
                let i = count(e);
                let sha = weir_bundle::sha256_hex(&panicky);
                let old = weir_bundle::sha256_hex(&e[i].1);
                e[i].1 = panicky.clone();
                let m = e.iter_mut().find(|(n, _)| n == "manifest.json").unwrap();
                let text = String::from_utf8(m.1.clone()).unwrap().replace(&old, &sha);
                let mut manifest: Value = serde_json::from_str(&text).unwrap();
                for c in manifest["components"].as_array_mut().unwrap() {
                    if c["sha256"] == sha.as_str() {
                        c["size"] = json!(panicky.len());
                    }
                }
                m.1 = serde_json::to_vec(&manifest).unwrap();
            }),
            "does not implement world `process`",
        ),
        ("path traversal", with(&|e| e.push(("../escape.txt".into(), b"x".to_vec()))), "../escape.txt"),
        (
            "bad spec",
            with(&|e| {
                let s = e.iter_mut().find(|(n, _)| n == "spec.yaml").unwrap();
                s.1 = String::from_utf8(s.1.clone()).unwrap().replace("kind: map", "kind: mapp").into_bytes();
            }),
            "spec.yaml:",
        ),
    ];
    for (what, bytes, expect) in &cases {
        let (status, answer) = c.post("/v1/bundles", bytes, &[]);
        let text = messages(&answer);
        assert!(status == 400 || status == 413, "{what}: status {status}: {text}");
        assert!(text.contains(expect), "{what}: expected `{expect}` in:\n{text}");
    }
    // Oversize: refused from its declared length, before it is read.
    let addr = c.url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /v1/bundles HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        9 << 20
    )
    .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut tcp, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("length limit exceeded"), "{answer}");
    assert_eq!(c.get("/v1/bundles").1["bundles"], json!([]));
    let stored = std::fs::read_dir(c.data.path().join("blobs")).unwrap().count();
    assert_eq!(stored, 0, "nothing of a refused bundle is stored");
    // A refused job submission lists every problem, and names the place.
    let (status, answer) =
        c.post_json("/v1/jobs", &json!({
            "spec": "sources:\n  - {id: e, type: generator, count: 1}\nsinks:\n  - {id: out, type: discard, input: e}\n",
            "parallelism": 0,
            "config": {"nope": 1}
        }));
    assert_eq!(status, 400);
    let text = messages(&answer);
    assert!(text.contains("\"parallelism\"") && text.contains("config/nope"), "{text}");
}

#[test]
fn changes_need_the_token_when_the_coordinator_has_one() {
    let c = Coordinator::start(&["--token", "s3cret"]);
    let (status, answer) = c.post("/v1/components", b"\0asm", &[]);
    assert_eq!(status, 401, "{answer}");
    assert!(messages(&answer).contains("Authorization: Bearer"));
    let (status, answer) = c.post("/v1/components", b"\0asm", &[("authorization", "Bearer wrong")]);
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = c.post("/v1/components", b"\0asm", &[("authorization", "Bearer s3cret")]);
    assert_eq!(status, 400, "past the token, the body is checked: {answer}");
    assert_eq!(c.get("/v1/overview").0, 200, "reading needs no token");
}

#[test]
fn other_sites_other_host_names_and_other_content_types_are_refused() {
    let c = Coordinator::start(&[]);
    let agent = Coordinator::agent();
    // A page of another site posting to the API (a browser adds Origin).
    let r = agent
        .post(format!("{}/v1/jobs", c.url))
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .send("{}");
    let (status, answer) = Coordinator::answer(r);
    assert_eq!(status, 403, "{answer}");
    assert!(messages(&answer).contains("another site"), "{answer}");
    // DNS rebinding: the loopback API under another name.
    let r = agent.get(format!("{}/v1/jobs", c.url)).header("host", "evil.example").call();
    let (status, answer) = Coordinator::answer(r);
    assert_eq!(status, 403, "{answer}");
    // A form post: not JSON, so refused before anything is read.
    let r = agent.post(format!("{}/v1/jobs", c.url)).header("content-type", "text/plain").send("{}");
    let (status, answer) = Coordinator::answer(r);
    assert_eq!(status, 415, "{answer}");
    assert!(messages(&answer).contains("application/json"), "{answer}");
    // A submission past the JSON bound stops being read at it: the answer
    // is 413, or — when the server answered and closed before the client
    // had sent it all — a broken connection; either way nothing is stored.
    let big = format!("{{\"spec\": \"{}\"}}", "x".repeat(5 << 20));
    let r = agent.post(format!("{}/v1/jobs", c.url)).header("content-type", "application/json").send(big.as_str());
    match r {
        Ok(mut r) => assert_eq!(r.status().as_u16(), 413, "{}", r.body_mut().read_to_string().unwrap_or_default()),
        Err(ureq::Error::Io(e)) => {
            let closed = [std::io::ErrorKind::BrokenPipe, std::io::ErrorKind::ConnectionReset];
            assert!(closed.contains(&e.kind()), "{e}");
        }
        Err(e) => panic!("the coordinator answers: {e}"),
    }
    let (status, jobs) = c.get("/v1/jobs");
    assert!(status == 200 && jobs["jobs"].as_array().unwrap().is_empty(), "{jobs}");
    // The same origin is fine.
    let r = agent.get(format!("{}/v1/jobs", c.url)).header("origin", c.url.as_str()).call();
    assert_eq!(Coordinator::answer(r).0, 200);
}

#[test]
fn a_spec_naming_a_file_outside_the_working_directory_is_refused_with_that_path() {
    let allowed = tempfile::tempdir().unwrap();
    let allowed_path = allowed.path().to_str().unwrap();
    let c = Coordinator::start(&["--allow-path", allowed_path]);
    let wasm = std::fs::read(component("passthrough")).unwrap();
    let sha = c.post("/v1/components", &wasm, &[]).1["sha256"].clone();
    let spec = |sink: &str| {
        format!(
            "sources:\n  - id: events\n    type: generator\n    count: 10\noperators:\n  - id: pass\n    kind: map\n    \
             component: p.wasm\n    input: events\nsinks:\n  - id: out\n    type: file\n    path: {sink}\n    input: pass\n"
        )
    };
    let data_dir = c.data.path().join("token").display().to_string();
    for (outside, why) in [
        ("/etc/weir-test-out.jsonl", "outside the job's working directory"),
        ("../../escape.jsonl", "has a `..` part"),
        (&format!("{allowed_path}/sub/../out.jsonl"), "has a `..` part"),
        (&data_dir, "outside the job's working directory"),
    ] {
        let (status, answer) = c.post_json("/v1/jobs", &json!({"spec": spec(outside), "components": {"p.wasm": sha}}));
        let text = messages(&answer);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("sink `out`") && text.contains(why) && text.contains(outside), "{outside}: {text}");
    }
    let inside = format!("{allowed_path}/out.jsonl");
    let (status, answer) = c.post_json("/v1/jobs", &json!({"spec": spec(&inside), "components": {"p.wasm": sha}}));
    assert_eq!(status, 202, "{answer}");
    let job = c.wait_job(answer["id"].as_str().unwrap(), 120, |j| state(j) == "FINISHED" || state(j) == "FAILED");
    assert_eq!(state(&job), "FINISHED", "{job:#}");
    assert_eq!(std::fs::read_to_string(&inside).unwrap().lines().count(), 10);
}

#[test]
fn weir_run_serves_the_api_while_its_job_runs_and_finishes_as_before() {
    components();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "name: local\nsources:\n  - id: events\n    type: generator\n    count: 60000\n    rate: 20000\n\
         operators:\n  - id: pass\n    kind: map\n    component: {}\n    input: events\n\
         sinks:\n  - id: out\n    type: discard\n    input: pass\n",
        component("passthrough").display()
    );
    std::fs::write(dir.path().join("pipeline.yaml"), spec).unwrap();
    let mut child = Command::new(weir_bin())
        .arg("run")
        .arg(dir.path().join("pipeline.yaml"))
        .env("WEIR_CACHE_DIR", dir.path().join("cache"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let first = lines.next().expect("weir run prints the API's address first");
    let url = first.split("http://").nth(1).unwrap_or_else(|| panic!("no URL in {first:?}"));
    let base = format!("http://{}", url.trim_end_matches("/v1/overview"));
    let agent = Coordinator::agent();
    let mut seen_running = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen_running && Instant::now() < deadline {
        let mut r = agent.get(format!("{base}/v1/jobs")).call().unwrap();
        let list: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        seen_running = list["jobs"][0]["state"] == "RUNNING";
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen_running, "the job was seen RUNNING through the API");
    // It only reads: managing jobs is a coordinator's.
    let r = agent.post(format!("{base}/v1/jobs")).header("content-type", "application/json").send("{}");
    let (status, answer) = Coordinator::answer(r);
    assert_eq!(status, 403, "{answer}");
    assert!(messages(&answer).contains("only reads"), "{answer}");
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    let rest = rest.join("\n");
    assert!(status.success(), "{rest}");
    assert!(rest.contains("job `local` finished in"), "{rest}");
    assert!(rest.contains("pass") && rest.contains("60000"), "{rest}");
}

/// The Python with schemathesis and openapi-spec-validator that
/// `scripts/py-tools.sh` installs (the test command runs it first).
fn python() -> std::path::PathBuf {
    let py = weir_tests::target().join("py").join("bin").join("python");
    assert!(py.exists(), "{} is missing: run `bash scripts/py-tools.sh` (scripts/test.sh does)", py.display());
    py
}

#[test]
fn the_openapi_document_is_valid_and_a_schema_driven_fuzz_finds_no_server_error() {
    let c = Coordinator::start(&[]);
    let doc = c.text("/v1/openapi.json");
    let file = c.data.path().join("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let check =
        "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\n";
    let out = Command::new(python()).args(["-c", check]).arg(&file).output().unwrap();
    assert!(out.status.success(), "the OpenAPI document is not valid: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&doc).unwrap();
    for path in ["/v1/overview", "/v1/bundles", "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/exceptions", "/v1/workers"]
    {
        assert!(v["paths"][path].is_object(), "{path} is not documented");
    }
    // A job to look at, so the fuzz meets stored state too.
    let bundle = wordcount_bundle();
    let id = c.post("/v1/bundles", &bundle, &[]).1["id"].as_str().unwrap().to_owned();
    c.post_json("/v1/jobs", &json!({"bundle": id}));
    // Short here; the long form is in docs/rest-api.md.
    let examples = std::env::var("WEIR_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let out = Command::new(python())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/v1/openapi.json", c.url))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &examples, "--workers", "1", "--seed", "1"])
        .current_dir(c.data.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    // Its summary, for the record (`--nocapture` shows it).
    let summary: Vec<&str> = report.lines().skip_while(|l| !l.contains("SUMMARY")).collect();
    eprintln!("{}", summary.join("\n"));
    let mut child = c;
    assert!(child.child.try_wait().unwrap().is_none(), "the coordinator is still running");
    assert_eq!(child.get("/v1/overview").0, 200);
}

#[test]
fn the_reference_in_docs_rest_api_md_is_the_one_written_from_the_openapi_document() {
    let out = Command::new(weir_bin()).args(["openapi", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    let reference = String::from_utf8(out.stdout).unwrap();
    let page_path = weir_tests::root().join("docs/rest-api.md");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let (begin, end) = ("<!-- reference:begin -->\n", "<!-- reference:end -->");
    let (a, b) = (page.find(begin).expect("the begin marker") + begin.len(), page.find(end).expect("the end marker"));
    if std::env::var_os("WEIR_UPDATE_DOCS").is_some() {
        std::fs::write(&page_path, format!("{}{reference}{}", &page[..a], &page[b..])).unwrap();
        return;
    }
    assert!(
        page[a..b] == reference,
        "docs/rest-api.md's reference is stale: run `WEIR_UPDATE_DOCS=1 cargo test --release --test rest_api the_reference`"
    );
}

#[test]
fn from_operator_crates_to_a_finished_job_with_bundle_build_submit_and_info() {
    let c = Coordinator::start(&[]);
    // The word count, its components named by their Cargo package folders.
    let dir = example_copy("wordcount");
    let spec = std::fs::read_to_string(dir.path().join("pipeline.yaml")).unwrap();
    let ops = weir_tests::root().join("examples/wordcount/operators");
    let spec = spec
        .replace(&component("wordcount-split").display().to_string(), &ops.join("split").display().to_string())
        .replace(&component("wordcount-count").display().to_string(), &ops.join("count").display().to_string());
    std::fs::write(dir.path().join("pipeline.yaml"), spec).unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(weir_bin()).args(args).env("WEIR_CACHE_DIR", dir.path().join("cache")).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bundle = dir.path().join("wc.weir");
    let (code, _, err) = cli(&["bundle", "build", dir.path().to_str().unwrap(), "-o", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, id, err) = cli(&["bundle", "upload", bundle.to_str().unwrap(), "--server", &c.url]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(&["bundle", "list", "--server", &c.url]);
    assert!(code == Some(0) && out.contains(id.trim()) && out.contains("wordcount"), "{out}{err}");
    let (code, _, err) = cli(&["submit", bundle.to_str().unwrap(), "--wait", "--server", &c.url]);
    assert_eq!(code, Some(0), "a FINISHED job exits 0: {err}");
    let (code, out, _) = cli(&["list", "--json", "--server", &c.url]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let job = list["jobs"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!((code, &list["jobs"][0]["state"]), (Some(0), &json!("FINISHED")));
    let (code, out, _) = cli(&["info", &job[..6], "--server", &c.url]);
    assert_eq!(code, Some(0));
    assert!(out.contains("FINISHED") && out.contains("split") && out.contains("59"), "{out}");
    assert!(out.contains("split metrics: counter words = 59"), "the operator's own metrics: {out}");
    let (code, _, err) = cli(&["bundle", "delete", id.trim(), "--server", &c.url]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&["info", "nothex", "--server", &c.url]);
    assert!(code == Some(1) && err.contains("not a job id"), "{err}");
}
