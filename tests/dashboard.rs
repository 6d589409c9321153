//! The dashboard in a real browser: a real `weir coordinator`, two bundles
//! built here, and `web/tests/dashboard.mjs` driving Debian's Chromium
//! through playwright-core — submit a bundle through the page, watch the
//! job reach RUNNING and (stopped with a savepoint) FINISHED, see the graph with non-zero rates and a
//! watermark, take a savepoint, read checkpoints and state, and read the
//! exception of a trapping operator. Screenshots of every page go to
//! `target/dashboard`, or to `docs/dashboard` with `WEIR_UPDATE_DOCS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use weir_tests::{Coordinator, component, root, target};

/// A bundle of a keyed count over a paced generator (minutes of events:
/// the page stops it with a savepoint), with checkpoints;
/// `trap`: its operator traps on the first event, and the job has no
/// restarts.
fn bundle(dir: &Path, name: &str, trap: bool) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(component("flaky-count"), folder.join("count.wasm")).unwrap();
    let config = if trap { "\n    config: {trap-on: 0, until-ms: 9000000000000}" } else { "" };
    let restart = if trap { "restart: {type: none}\n" } else { "" };
    let spec = format!(
        "name: {name}\n\
         sources:\n  - {{id: events, type: generator, pattern: sequence, keys: 97, count: 1000000, rate: 2000}}\n\
         operators:\n  - id: count\n    kind: process\n    input: events\n    key-by: \"@key\"\n    component: count.wasm{config}\n\
         sinks:\n  - {{id: out, type: file, path: out/counts.csv, format: text, input: count}}\n\
         checkpoints: {{interval-ms: 500, dir: checkpoints}}\n{restart}"
    );
    std::fs::write(folder.join("pipeline.yaml"), spec).unwrap();
    let out = dir.join(format!("{name}.weir"));
    let rt = weir_wasm::WasmRuntime::new(None).unwrap();
    weir_bundle::build(&folder, None, "1.0.0", Some(&out), &rt).unwrap();
    out
}

/// Chromium, checked, and `web/tests/dashboard.mjs` run in it against
/// `url` with `env`; its output once every step passed.
fn browser(url: &str, shots: &Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        chromium.exists(),
        "{} is missing: `bash scripts/browser.sh` installs Debian's Chromium (the test command runs it)",
        chromium.display()
    );
    let web = root().join("web");
    assert!(
        web.join("node_modules/playwright-core").exists() && web.join("dist/index.html").exists(),
        "the dashboard is not built: run `bash scripts/build.sh`"
    );
    let out = Command::new("node")
        .arg("tests/dashboard.mjs")
        .current_dir(&web)
        .env("WEIR_URL", url)
        .env("WEIR_SCREENSHOTS", shots)
        .env("CHROMIUM", &chromium)
        .envs(env.iter().copied())
        .output()
        .expect("cannot run node (Node.js 20.19+ is needed for the dashboard)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(
        out.status.success() && text.contains("every step passed"),
        "the browser test failed (its screenshot: {}): {text}",
        shots.join("failure.png").display()
    );
    text
}

/// Where screenshots go: `docs/dashboard` with `WEIR_UPDATE_DOCS`.
fn shots() -> PathBuf {
    match std::env::var_os("WEIR_UPDATE_DOCS") {
        Some(_) => root().join("docs/dashboard"),
        None => target().join("dashboard"),
    }
}

#[test]
fn the_dashboard_in_chromium_submits_watches_savepoints_and_shows_a_trap() {
    let dir = tempfile::tempdir().unwrap();
    let good = bundle(dir.path(), "counts", false);
    let trap = bundle(dir.path(), "traps", true);
    let shots = shots();
    let c = Coordinator::start(&[]);
    browser(&c.url, &shots, &[("WEIR_BUNDLE", good.as_os_str()), ("WEIR_TRAP_BUNDLE", trap.as_os_str())]);
    for page in ["overview", "submit", "job", "checkpoints", "state", "exceptions", "job-wide"] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{} is not a screenshot", png.display());
    }
}

#[test]
fn weir_run_of_an_example_prints_a_dashboard_address_showing_the_running_job() {
    use std::io::{BufRead, BufReader};
    // examples/live, shortened to about ten seconds.
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(root().join("examples/live/pipeline.yaml")).unwrap();
    assert!(spec.contains("count: 150000"), "examples/live/pipeline.yaml changed: update this test");
    let spec_path = dir.path().join("pipeline.yaml");
    std::fs::write(&spec_path, spec.replace("count: 150000", "count: 25000")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut run = Command::new(weir_tests::weir_bin())
        .arg("run")
        .arg(&spec_path)
        .env("WEIR_CACHE_DIR", cache.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("`weir run` ended before printing its dashboard's address").unwrap();
        if let Some(url) = line.strip_prefix("dashboard of this run: ") {
            break url.trim().trim_end_matches('/').to_owned();
        }
    };
    // The rest of its output, read so it never blocks on a full pipe.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    browser(&url, &shots(), &[("WEIR_MODE", "local".as_ref())]);
    let status = run.wait().unwrap();
    let rest = rest.join().unwrap();
    assert!(status.success(), "{rest}");
    assert!(std::fs::read_to_string(dir.path().join("out/sums.jsonl")).unwrap().lines().count() > 100);
}
