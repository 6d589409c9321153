//! Helpers for the integration tests: the workspace's paths, guest
//! components built once per test run, and running the real `weir` binary
//! on example folders copied into temporary directories.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

/// Guest crates the tests need as components.
pub const GUESTS: &[&str] = &[
    "wordcount-split",
    "wordcount-count",
    "fraud-detector",
    "panicky-map",
    "timer-log",
    "timer-churn",
    "hostile-process",
    "state-kinds",
    "passthrough",
    "keyed-counter",
    "csv-line",
    "evictors",
    "window-semantics-timers",
    "flaky-count",
    "count-v2",
    "tally-map",
    "tally-process",
];

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_owned()
}

/// The target directory.
pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

static BUILD: Once = Once::new();

/// Builds every guest component (once per test binary) and returns the
/// folder that holds the `.wasm` files.
pub fn components() -> PathBuf {
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root()).args(["build", "--release", "--target", "wasm32-wasip2"]);
        for g in GUESTS {
            cmd.args(["-p", g]);
        }
        let status = cmd.status().expect("cannot run cargo to build the guest components");
        assert!(status.success(), "building the guest components failed");
    });
    target().join("wasm32-wasip2").join("release")
}

/// A component by crate name.
pub fn component(name: &str) -> PathBuf {
    components().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The `weir` binary (built by `cargo build --release`, which the test
/// command runs first).
pub fn weir_bin() -> PathBuf {
    let bin = target().join("release").join("weir");
    assert!(bin.exists(), "{} is missing: run `cargo build --release -p weir` first", bin.display());
    bin
}

/// Runs `weir` with `args`; compiled components are cached in `cache`.
pub fn weir(args: &[&str], cache: &Path) -> Output {
    components();
    Command::new(weir_bin()).args(args).env("WEIR_CACHE_DIR", cache).output().expect("cannot run weir")
}

/// Copies example `name` (spec, data, expected) into a temp dir, pointing
/// its component paths at the built components. Returns the dir.
pub fn example_copy(name: &str) -> tempfile::TempDir {
    let src = root().join("examples").join(name);
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = std::fs::read_to_string(src.join("pipeline.yaml")).expect("example spec");
    let spec = spec.replace("../../target/wasm32-wasip2/release", &components().display().to_string());
    std::fs::write(dir.path().join("pipeline.yaml"), spec).expect("write spec");
    for sub in ["data", "expected"] {
        let to = dir.path().join(sub);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(src.join(sub)).expect("example folder") {
            let entry = entry.expect("dir entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
    dir
}

/// JSON lines of a file, sorted by their text form (order-free compare).
pub fn sorted_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad JSON line {l:?}: {e}", path.display())))
        .collect();
    v.sort_by_key(|x| x.to_string());
    v
}

/// Asserts a command failed cleanly: non-zero exit, no Rust panic text.
pub fn assert_clean_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure, got success; stderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "expected exit code 1; stderr:\n{stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE") && !stderr.contains("thread '") && !stderr.contains("stack backtrace:"),
        "a Rust panic leaked:\n{stderr}"
    );
    stderr
}

/// A bundle's entries: (name, bytes).
pub type Entries = Vec<(String, Vec<u8>)>;

/// A zip of `entries`, in order.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            z.start_file(*name, o).expect("zip entry");
            z.write_all(bytes).expect("zip write");
        }
        z.finish().expect("zip finish");
    }
    buf.into_inner()
}

/// The entries of a bundle, to be changed and zipped again.
pub fn entries_of(bytes: &[u8]) -> Entries {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).expect("zip entry");
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).expect("zip read");
            (f.name().expect("entry name").into_owned(), b)
        })
        .collect()
}

/// `entries` zipped again.
pub fn rezip(entries: &Entries) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    zip_of(&refs)
}

/// A `weir coordinator` process, killed when dropped.
pub struct Coordinator {
    /// The process.
    pub child: Child,
    /// Its REST address, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data: tempfile::TempDir,
    /// Its stderr lines after the address.
    pub log: mpsc::Receiver<String>,
}

impl Coordinator {
    /// Starts one with 2 slots on a free loopback port, with `extra`
    /// options.
    pub fn start(extra: &[&str]) -> Coordinator {
        Coordinator::start_with_slots(2, extra)
    }

    /// Starts one with `slots` slots.
    pub fn start_with_slots(slots: u32, extra: &[&str]) -> Coordinator {
        components();
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(weir_bin())
            .args(["coordinator", "--listen", "127.0.0.1:0", "--slots", &slots.to_string(), "--data-dir"])
            .arg(data.path())
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start weir coordinator");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[coordinator] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("no address printed");
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].trim().to_owned();
            }
        };
        Coordinator { child, url, data, log: rx }
    }

    /// The next line of its stderr containing `needle` (within `secs`).
    pub fn line_with(&self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.log.recv_timeout(left).unwrap_or_else(|_| panic!("no line with `{needle}` in {secs} s"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).build().into()
    }

    pub fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut r = r.expect("the coordinator answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, v)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(Self::agent().get(format!("{}{path}", self.url)).call())
    }

    pub fn text(&self, path: &str) -> String {
        let mut r = Self::agent().get(format!("{}{path}", self.url)).call().unwrap();
        r.body_mut().read_to_string().unwrap()
    }

    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req =
            Self::agent().post(format!("{}{path}", self.url)).header("content-type", "application/octet-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.send(body))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let req = Self::agent().post(format!("{}{path}", self.url)).header("content-type", "application/json");
        Self::answer(req.send(serde_json::to_vec(body).unwrap().as_slice()))
    }

    /// Polls job `id` until `done` holds of it (at most `secs` seconds).
    pub fn wait_job(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(status, 200, "{job}");
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not get there in {secs} s: {job:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Coordinator {
    /// `weir ARGS` against it.
    pub fn weir(&self, args: &[&str]) -> std::process::Output {
        Command::new(weir_bin()).args(args).env("WEIR_SERVER", &self.url).output().expect("cannot run weir")
    }

    /// `weir ARGS` against it, which must succeed: its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.weir(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "weir {args:?} failed:\n{stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
