//! The CLI as a client of a coordinator's REST API: `weir submit`,
//! `list`, `info`, `cancel`, `exceptions`. Tables for people, `--json`
//! for scripts; progress bars for uploads and `--wait`.
//!
//! Exit codes (docs/operations.md): 0 done (the job FINISHED, with
//! `--wait`), 1 an error (refused, unreachable, no such job), 2 a usage
//! error (clap's), 3 the job FAILED, 4 the job was CANCELED.

use crate::cache_dir;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_coordinator::api::{
    BundleInfo, Errors, Exceptions, JobDetail, JobList, JobState, Operation, SubmitRequest, Submitted, Triggered,
};

/// Exit code: the job failed.
pub(crate) const EXIT_FAILED: u8 = 3;
/// Exit code: the job was cancelled.
pub(crate) const EXIT_CANCELED: u8 = 4;

/// Where the coordinator is.
#[derive(clap::Args, Clone)]
pub(crate) struct Server {
    /// The coordinator's REST address.
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:8081")]
    server: String,
    /// The coordinator's API token (needed for changes when it listens
    /// beyond localhost).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON (the API's answer) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `weir submit`'s arguments.
#[derive(clap::Args)]
pub(crate) struct SubmitArgs {
    /// A bundle (`.weir`), or a spec (`.yaml`) or folder to bundle first.
    what: PathBuf,
    /// Default parallelism of operators.
    #[arg(long, short)]
    parallelism: Option<u32>,
    /// The job's name (default: the spec's).
    #[arg(long)]
    name: Option<String>,
    /// Start from a savepoint (or retained checkpoint) folder, on the
    /// coordinator's machine.
    #[arg(long, value_name = "PATH")]
    from_savepoint: Option<String>,
    /// With --from-savepoint: drop state of operators the job no longer
    /// has, instead of refusing.
    #[arg(long, requires = "from_savepoint")]
    allow_non_restored_state: bool,
    /// Wait for the job to end, showing its progress; the exit code says
    /// how it ended.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    server: Server,
}

/// Client commands that name a job.
#[derive(clap::Args)]
pub(crate) struct JobArgs {
    /// The job id (or a unique prefix of it).
    job: String,
    #[command(flatten)]
    server: Server,
}

/// `weir cancel`'s arguments.
#[derive(clap::Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Wait until the job has stopped.
    #[arg(long)]
    wait: bool,
}

/// `weir savepoint` and `weir stop`.
#[derive(clap::Args)]
pub(crate) struct SavepointArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The folder the savepoint goes in (default: the coordinator's).
    #[arg(long, value_name = "DIR")]
    dir: Option<String>,
}

/// `weir stop`.
#[derive(clap::Args)]
pub(crate) struct StopArgs {
    #[command(flatten)]
    pub args: SavepointArgs,
    /// Take a savepoint, then stop (required: the only way `stop` works
    /// today). A job started from the savepoint goes on exactly where this
    /// one stopped.
    #[arg(long, required = true)]
    savepoint: bool,
}

/// Takes a savepoint (and stops the job, with `stop`); prints its folder.
pub(crate) fn savepoint(a: SavepointArgs, stop: bool) -> Result<u8, String> {
    let c = Client::new(&a.job.server);
    let id = c.job_id(&a.job.job)?;
    let body = weir_coordinator::api::SavepointBody { target_directory: a.dir, stop };
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let path = format!("/v1/jobs/{id}/savepoints");
    let t: Triggered =
        c.post(&path, ureq::SendBody::from_owned_reader(std::io::Cursor::new(body)), "application/json")?;
    let spinner = ProgressBar::new_spinner();
    if a.job.server.json {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    spinner.set_message(if stop { "stopping with a savepoint" } else { "taking a savepoint" });
    loop {
        spinner.tick();
        let op: weir_coordinator::api::SavepointOperation = c.get(&format!("{path}/{}", t.request_id))?;
        // A stop is done when the job has ended, not only its savepoint.
        let done = op.status == weir_coordinator::api::OperationStatus::Completed
            && (!stop || op.failure_cause.is_some() || op.job_state.is_terminal());
        if done {
            spinner.finish_and_clear();
            if a.job.server.json {
                print_json(&op)?;
            }
            return match (&op.location, &op.failure_cause) {
                (Some(location), None) => {
                    if !a.job.server.json {
                        println!("{location}");
                        eprintln!("savepoint of job {id} written{}", if stop { "; the job stopped" } else { "" });
                    }
                    Ok(0)
                }
                (_, cause) => {
                    Err(format!("the savepoint of job {id} failed: {}", cause.as_deref().unwrap_or("no reason given")))
                }
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(s: &Server) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build();
        Client { base: s.server.trim_end_matches('/').to_owned(), token: s.token.clone(), agent: config.into() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, String> {
        let mut r = r.map_err(|e| format!("{what}: cannot reach the coordinator at {}: {e}", self.base))?;
        let status = r.status().as_u16();
        let text = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{what}: cannot read the answer: {e}"))?;
        if (200..300).contains(&status) {
            let text = if text.is_empty() { "null" } else { &text };
            return serde_json::from_str(text).map_err(|e| format!("{what}: unexpected answer ({e}): {text}"));
        }
        match serde_json::from_str::<Errors>(&text) {
            Ok(errors) => {
                let mut m = format!("{what} was refused ({status}):");
                for e in errors.errors {
                    m.push_str(&if e.place.is_empty() {
                        format!("\n  {}", e.message)
                    } else {
                        format!("\n  {}: {}", e.place, e.message)
                    });
                }
                Err(m)
            }
            Err(_) => Err(format!("{what} was refused ({status}): {text}")),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.answer(&format!("GET {path}"), self.agent.get(self.url(path)).call())
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: ureq::SendBody<'_>, kind: &str) -> Result<T, String> {
        let mut req = self.agent.post(self.url(path)).header("content-type", kind);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.answer(&format!("POST {path}"), req.send(body))
    }

    /// The full id of the job `prefix` names.
    fn job_id(&self, prefix: &str) -> Result<String, String> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{prefix}` is not a job id (32 hex digits, or a unique prefix of one)"));
        }
        if prefix.len() == 32 {
            return Ok(prefix.to_ascii_lowercase());
        }
        let list: JobList = self.get("/v1/jobs")?;
        let found: Vec<&str> = list.jobs.iter().map(|j| j.id.as_str()).filter(|id| id.starts_with(prefix)).collect();
        match found.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(format!("no job's id starts with `{prefix}` (`weir list` shows them)")),
            many => Err(format!("`{prefix}` names {} jobs; give more of the id", many.len())),
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    Ok(())
}

fn time(ms: u64) -> String {
    // UTC, to the second: unambiguous wherever it is read.
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Uploads bundle `file` (shown as `what`), with a progress bar unless `quiet`.
fn upload(c: &Client, file: &Path, what: &str, quiet: bool) -> Result<BundleInfo, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = upload_bar(len, what);
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut reader = bar.wrap_read(f);
    let bundle = c.post("/v1/bundles", ureq::SendBody::from_reader(&mut reader), "application/octet-stream");
    bar.finish_and_clear();
    bundle
}

/// `weir bundle upload FILE`: stores a bundle on the coordinator.
pub(crate) fn bundle_upload(file: &Path, s: &Server) -> Result<(), String> {
    let c = Client::new(s);
    let b = upload(&c, file, &file.display().to_string(), s.json)?;
    if s.json {
        return print_json(&b);
    }
    println!("{}", b.id);
    eprintln!(
        "stored bundle {} {} ({} components, {} data files)",
        b.name,
        b.version,
        b.components.len(),
        b.data.len()
    );
    Ok(())
}

/// `weir bundle list`: the coordinator's bundles.
pub(crate) fn bundle_list(s: &Server) -> Result<(), String> {
    let c = Client::new(s);
    let list: weir_coordinator::api::BundleList = c.get("/v1/bundles")?;
    if s.json {
        return print_json(&list);
    }
    if list.bundles.is_empty() {
        println!("no bundles");
        return Ok(());
    }
    println!("{:<64}  {:<20} {:<10} {:<20} {:>5}", "bundle", "name", "version", "uploaded", "jobs");
    for b in &list.bundles {
        println!("{:<64}  {:<20} {:<10} {:<20} {:>5}", b.id, b.name, b.version, time(b.uploaded_at), b.jobs.len());
    }
    Ok(())
}

/// `weir bundle delete ID`: removes a bundle no running job uses.
pub(crate) fn bundle_delete(id: &str, s: &Server) -> Result<(), String> {
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.len() != 64 {
        return Err(format!("`{id}` is not a bundle id (64 hex digits; `weir bundle list` shows them)"));
    }
    let c = Client::new(s);
    let path = format!("/v1/bundles/{id}");
    let mut req = c.agent.delete(c.url(&path));
    if let Some(t) = &c.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let () = c.answer(&format!("DELETE {path}"), req.call())?;
    eprintln!("deleted bundle {id}");
    Ok(())
}

fn upload_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("invariant: the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {what}"));
    bar
}

/// Makes a bundle of a spec or folder into a temporary file.
fn bundle_spec(what: &Path, dir: &tempfile::TempDir) -> Result<PathBuf, String> {
    let (folder, spec) = if what.is_dir() {
        (what.to_owned(), None)
    } else {
        (what.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned(), Some(what))
    };
    let rt = weir_wasm::WasmRuntime::new(cache_dir()).map_err(|e| e.to_string())?;
    let out = dir.path().join("job.weir");
    let (_, path, outside) = weir_bundle::build(&folder, spec, "0.1.0", Some(&out), &rt).map_err(|e| e.to_string())?;
    for p in outside {
        eprintln!("note: source file `{p}` lies outside the spec's folder: the coordinator must allow its folder");
    }
    Ok(path)
}

pub(crate) fn submit(a: SubmitArgs) -> Result<u8, String> {
    let c = Client::new(&a.server);
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let is_bundle = a.what.extension().is_some_and(|x| x == "weir");
    let file = if is_bundle { a.what.clone() } else { bundle_spec(&a.what, &tmp)? };
    let bundle = upload(&c, &file, &a.what.display().to_string(), a.server.json)?;
    let req = SubmitRequest {
        bundle: Some(bundle.id.clone()),
        name: a.name,
        parallelism: a.parallelism,
        from_savepoint: a.from_savepoint,
        allow_non_restored_state: a.allow_non_restored_state,
        ..SubmitRequest::default()
    };
    let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    let submitted: Submitted =
        c.post("/v1/jobs", ureq::SendBody::from_owned_reader(std::io::Cursor::new(body)), "application/json")?;
    if !a.wait {
        if a.server.json {
            print_json(&submitted)?;
        } else {
            println!("{}", submitted.id);
            eprintln!(
                "submitted job {} from bundle {} {} ({})",
                submitted.id,
                bundle.name,
                bundle.version,
                bundle.id.get(..12).unwrap_or(&bundle.id)
            );
        }
        return Ok(0);
    }
    eprintln!("submitted job {}", submitted.id);
    let detail = watch(&c, &submitted.id, a.server.json)?;
    finish(&c, detail, a.server.json)
}

/// Polls a job until it ends, with a spinner showing its state and records.
fn watch(c: &Client, id: &str, quiet: bool) -> Result<JobDetail, String> {
    let spinner = ProgressBar::new_spinner();
    if quiet {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    spinner.enable_steady_tick(Duration::from_millis(120));
    loop {
        let d: JobDetail = c.get(&format!("/v1/jobs/{id}"))?;
        if d.state.is_terminal() {
            spinner.finish_and_clear();
            return Ok(d);
        }
        let records: u64 = d.vertices.iter().filter(|v| v.kind == "source").map(|v| v.metrics.num_records_out).sum();
        let rate: f64 =
            d.vertices.iter().filter(|v| v.kind == "source").map(|v| v.metrics.num_records_out_per_second).sum();
        let note = d.status_message.as_deref().map(|m| format!(" — {m}")).unwrap_or_default();
        spinner.set_message(format!(
            "{} {}: {records} records read ({rate:.0}/s), {:.1} s{note}",
            d.name,
            d.state.name(),
            d.duration as f64 / 1000.0
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Reports how a job ended; its exit code.
fn finish(c: &Client, d: JobDetail, json: bool) -> Result<u8, String> {
    if json {
        print_json(&d)?;
    } else {
        print_detail(&d);
    }
    match d.state {
        JobState::Failed => {
            if !json {
                let e: Exceptions = c.get(&format!("/v1/jobs/{}/exceptions", d.id))?;
                if let Some(root) = e.root_exception {
                    eprintln!("error: {}", root.exception);
                }
            }
            Ok(EXIT_FAILED)
        }
        JobState::Canceled => Ok(EXIT_CANCELED),
        _ => Ok(0),
    }
}

fn print_detail(d: &JobDetail) {
    println!("job {} `{}`: {}", d.id, d.name, d.state.name());
    if let Some(m) = &d.status_message {
        println!("  {m}");
    }
    let end = d.end_time.map(|t| format!(", ended {}", time(t))).unwrap_or_default();
    println!("  submitted {}{end} ({:.3} s)", time(d.start_time), d.duration as f64 / 1000.0);
    println!("  working directory: {}", d.working_dir);
    println!(
        "  {:<24} {:<8} {:>4} {:>14} {:>14} {:>12} {:>12}",
        "vertex", "kind", "p", "records in", "records out", "in/s", "out/s"
    );
    for v in &d.vertices {
        let m = &v.metrics;
        println!(
            "  {:<24} {:<8} {:>4} {:>14} {:>14} {:>12.0} {:>12.0}",
            v.id,
            v.kind,
            v.parallelism,
            m.num_records_in,
            m.num_records_out,
            m.num_records_in_per_second,
            m.num_records_out_per_second
        );
    }
    for v in d.vertices.iter().filter(|v| !v.user_metrics.is_empty()) {
        let shown: Vec<String> =
            v.user_metrics.iter().map(|m| format!("{} {} = {}", m.kind, m.name, m.value)).collect();
        println!("  {} metrics: {}", v.id, shown.join(", "));
    }
}

pub(crate) fn list(s: Server) -> Result<u8, String> {
    let c = Client::new(&s);
    let list: JobList = c.get("/v1/jobs")?;
    if s.json {
        print_json(&list)?;
        return Ok(0);
    }
    if list.jobs.is_empty() {
        println!("no jobs");
        return Ok(0);
    }
    println!("{:<32}  {:<20} {:<10} {:<20} {:>10}", "job", "name", "state", "submitted", "duration s");
    for j in &list.jobs {
        println!(
            "{:<32}  {:<20} {:<10} {:<20} {:>10.1}",
            j.id,
            j.name,
            j.state.name(),
            time(j.start_time),
            j.duration as f64 / 1000.0
        );
    }
    Ok(0)
}

pub(crate) fn info(a: JobArgs) -> Result<u8, String> {
    let c = Client::new(&a.server);
    let id = c.job_id(&a.job)?;
    let d: JobDetail = c.get(&format!("/v1/jobs/{id}"))?;
    if a.server.json {
        print_json(&d)?;
    } else {
        print_detail(&d);
    }
    Ok(0)
}

pub(crate) fn exceptions(a: JobArgs) -> Result<u8, String> {
    let c = Client::new(&a.server);
    let id = c.job_id(&a.job)?;
    let e: Exceptions = c.get(&format!("/v1/jobs/{id}/exceptions"))?;
    if a.server.json {
        print_json(&e)?;
        return Ok(0);
    }
    if e.exception_history.is_empty() {
        println!("job {id} has no exceptions");
    }
    for (i, x) in e.exception_history.iter().enumerate() {
        let root = if i == 0 { " (root cause)" } else { "" };
        println!("{}{root}: {} `{}` subtask {}", time(x.timestamp), x.kind, x.operator, x.subtask);
        if let Some(r) = &x.record {
            println!("  record: {r}");
        }
        println!("  {}", x.exception);
    }
    Ok(0)
}

pub(crate) fn cancel(a: CancelArgs) -> Result<u8, String> {
    let c = Client::new(&a.job.server);
    let id = c.job_id(&a.job.job)?;
    let t: Triggered = c.post(&format!("/v1/jobs/{id}/cancel"), ureq::SendBody::none(), "application/json")?;
    if !a.wait {
        if a.job.server.json {
            print_json(&t)?;
        } else {
            eprintln!("cancelling job {id} (request {})", t.request_id);
        }
        return Ok(0);
    }
    loop {
        let op: Operation = c.get(&format!("/v1/jobs/{id}/cancel/{}", t.request_id))?;
        if op.status == weir_coordinator::api::OperationStatus::Completed {
            if a.job.server.json {
                print_json(&op)?;
            } else {
                match &op.failure_cause {
                    Some(cause) => eprintln!("job {id} {}: {cause}", op.job_state.name()),
                    None => eprintln!("job {id} {}", op.job_state.name()),
                }
            }
            return Ok(if op.job_state == JobState::Canceled { 0 } else { 1 });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
