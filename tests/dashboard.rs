//! The dashboard in a real browser: a real `weir coordinator`, two bundles
//! built here, and `web/tests/dashboard.mjs` driving Debian's Chromium
//! through playwright-core — submit a bundle through the page, watch the
//! job reach RUNNING and FINISHED, see the graph with non-zero rates and a
//! watermark, take a savepoint, read checkpoints and state, and read the
//! exception of a trapping operator. Screenshots of every page go to
//! `target/dashboard`, or to `docs/dashboard` with `WEIR_UPDATE_DOCS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use weir_tests::{Coordinator, component, root, target};

/// A bundle of a keyed count over a paced generator, with checkpoints;
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
         sources:\n  - {{id: events, type: generator, pattern: sequence, keys: 97, count: 80000, rate: 2000}}\n\
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

#[test]
fn the_dashboard_in_chromium_submits_watches_savepoints_and_shows_a_trap() {
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
    let dir = tempfile::tempdir().unwrap();
    let good = bundle(dir.path(), "counts", false);
    let trap = bundle(dir.path(), "traps", true);
    let shots = match std::env::var_os("WEIR_UPDATE_DOCS") {
        Some(_) => root().join("docs/dashboard"),
        None => target().join("dashboard"),
    };
    let c = Coordinator::start(&[]);
    let out = Command::new("node")
        .arg("tests/dashboard.mjs")
        .current_dir(&web)
        .env("WEIR_URL", &c.url)
        .env("WEIR_BUNDLE", &good)
        .env("WEIR_TRAP_BUNDLE", &trap)
        .env("WEIR_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("cannot run node (Node.js 20.19+ is needed for the dashboard)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(
        out.status.success() && text.contains("every step passed"),
        "the browser test failed (its screenshot: {}): {text}",
        shots.join("failure.png").display()
    );
    for page in ["overview", "submit", "job", "checkpoints", "state", "exceptions", "job-wide"] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{} is not a screenshot", png.display());
    }
}
