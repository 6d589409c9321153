//! `weir coordinator` (a long-running coordinator with an embedded
//! worker, serving the REST API) and `weir run`'s local mode (the same
//! coordinator and worker in this process, for one job).

use crate::cache_dir;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_coordinator::rest::Server;
use weir_coordinator::{Config, Coordinator};
use weir_core::spec::Spec;
use weir_runtime::JobSummary;
use weir_wasm::WasmRuntime;

/// `weir coordinator`'s arguments.
#[derive(clap::Args)]
pub(crate) struct CoordinatorArgs {
    /// Address of the REST API. Beyond localhost, calls that change
    /// something need the token.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Where bundles, job working directories and records are kept
    /// (default: `$XDG_DATA_HOME/weir`, else `~/.local/share/weir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Slots of the embedded worker: one holds one parallel slice of a
    /// job (default: the number of CPUs).
    #[arg(long)]
    slots: Option<u32>,
    /// A folder jobs may read and write besides their working directory
    /// (repeatable).
    #[arg(long = "allow-path")]
    allow_paths: Vec<PathBuf>,
    /// The API token (default: generated at first start into
    /// `<data-dir>/token`, needed only when listening beyond localhost).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Most MiB of one upload (a bundle or component).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_upload_mb: u64,
    /// Accept workers (`weir worker`) on this UDP address, `HOST` or
    /// `HOST:PORT` (port 6123 when left out). Without it the coordinator
    /// runs jobs in its embedded worker only.
    #[arg(long, value_name = "ADDR", value_parser = cluster_addr)]
    cluster_listen: Option<SocketAddr>,
    /// The coordinator's own certificate (PEM, for the DNS name
    /// `weir-coordinator`) instead of the cluster CA it makes; with
    /// --cluster-key and --cluster-ca. Workers then bring certificates of
    /// that CA (`weir worker --cert`), and no join token is made.
    #[arg(long, value_name = "FILE", requires_all = ["cluster_key", "cluster_ca", "cluster_listen"])]
    cluster_cert: Option<PathBuf>,
    /// The key of --cluster-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cluster_cert")]
    cluster_key: Option<PathBuf>,
    /// The CA certificate (PEM) every worker's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "cluster_cert")]
    cluster_ca: Option<PathBuf>,
}

/// Flink's port for its cluster, ours too.
pub(crate) const CLUSTER_PORT: u16 = 6123;

/// `HOST[:PORT]`, with port [`CLUSTER_PORT`] if it has none.
fn with_cluster_port(s: &str) -> String {
    match s.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        true => s.to_owned(),
        false => format!("{s}:{CLUSTER_PORT}"),
    }
}

/// `HOST[:PORT]` as a socket address, port [`CLUSTER_PORT`] if none.
pub(crate) fn cluster_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        // (An IPv6 address would read as HOST:PORT.)
        return Ok(SocketAddr::new(ip, CLUSTER_PORT));
    }
    with_cluster_port(s)
        .to_socket_addrs()
        .map_err(|e| format!("`{s}` is not an address to listen on: {e}"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// `weir worker`'s arguments.
#[derive(clap::Args)]
pub(crate) struct WorkerArgs {
    /// The coordinator's cluster address, `HOST[:PORT]` (port 6123 when
    /// left out).
    #[arg(long, value_name = "HOST:PORT")]
    coordinator: String,
    /// The join token the coordinator printed (also in its
    /// `<data-dir>/join-token`).
    #[arg(long, env = "WEIR_JOIN_TOKEN", hide_env_values = true, required_unless_present = "cert")]
    join_token: Option<String>,
    /// The worker's own certificate (PEM) instead of joining with a
    /// token; its DNS name is the worker's name. With --key and --ca.
    #[arg(long, value_name = "FILE", requires_all = ["key", "ca"], conflicts_with = "join_token")]
    cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The CA certificate (PEM) the coordinator's and the other workers'
    /// certificates chain to.
    #[arg(long, value_name = "FILE", requires = "cert")]
    ca: Option<PathBuf>,
    /// Slots: one holds one parallel slice of a job (default: the number
    /// of CPUs).
    #[arg(long)]
    slots: Option<u32>,
    /// Its name in the cluster: lowercase letters, digits and dashes
    /// (default: the host name and a random suffix).
    #[arg(long, env = "WEIR_WORKER_NAME")]
    name: Option<String>,
    /// Where it keeps fetched components (default: a `weir-worker` folder
    /// beside the coordinator's default data directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// A worker name from the host name: what a certificate and the REST API
/// show, unique enough to rejoin while the old registration times out.
fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut name: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    name = name.trim_matches('-').to_owned();
    if name.is_empty() || name.starts_with("weir-") {
        name = format!("worker{}", if name.is_empty() { String::new() } else { format!("-{name}") });
    }
    let mut b = [0u8; 3];
    let _ = getrandom::fill(&mut b);
    format!("{name}-{:02x}{:02x}{:02x}", b[0], b[1], b[2])
}

pub(crate) fn worker(a: WorkerArgs) -> Result<(), String> {
    use weir_coordinator::cluster::member::Credentials;
    let (credentials, name) = match (&a.cert, &a.key, &a.ca, &a.join_token) {
        (Some(cert), Some(key), Some(ca), _) => {
            let own = weir_net::pki::OwnCertificates::load(cert, key, ca).map_err(|e| format!("--cert: {e}"))?;
            // Its data plane serves with it, and it connects with it.
            own.check_usages(true).map_err(|e| format!("--cert: {e}"))?;
            // The certificate names the worker: the coordinator knows it so.
            if let Some(n) = a.name.as_ref().filter(|n| **n != own.name) {
                return Err(format!(
                    "--name {n}: the certificate {} names the worker `{}`; leave --name out or give that",
                    cert.display(),
                    own.name
                ));
            }
            let name = own.name.clone();
            (Credentials::Own(own), name)
        }
        (_, _, _, Some(token)) => {
            let token = token.parse().map_err(|e| format!("--join-token: {e}"))?;
            (Credentials::Token(token), a.name.unwrap_or_else(default_worker_name))
        }
        _ => return Err("give --join-token, or --cert with --key and --ca".into()),
    };
    weir_net::join::valid_name(&name).map_err(|e| format!("--name: {e}"))?;
    let coordinator = with_cluster_port(&a.coordinator);
    let data_dir = match a.data_dir {
        Some(d) => d,
        None => default_data_dir()
            .map(|d| d.with_file_name("weir-worker"))
            .ok_or("no data directory: give --data-dir (neither XDG_DATA_HOME nor HOME is set)")?,
    };
    let slots = a.slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let rt = WasmRuntime::new(Some(data_dir.join("cache"))).map_err(|e| e.to_string())?;
    eprintln!("weir worker `{name}` {} joining the coordinator at {coordinator}", env!("CARGO_PKG_VERSION"));
    let config = weir_coordinator::cluster::member::MemberConfig { coordinator, credentials, name, slots, data_dir };
    weir_coordinator::cluster::member::run(config, Arc::new(rt)).map_err(|e| e.to_string())
}

fn default_data_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))
        .map(|d| d.join("weir"))
}

/// The token in `<data-dir>/token`, made (owner-only) if missing.
fn stored_token(dir: &std::path::Path) -> Result<String, String> {
    let path = dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let token = weir_coordinator::random_token();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(token.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

pub(crate) fn coordinator(a: CoordinatorArgs) -> Result<(), String> {
    let data_dir = a
        .data_dir
        .or_else(default_data_dir)
        .ok_or("no data directory: give --data-dir (neither XDG_DATA_HOME nor HOME is set)")?;
    let slots = a.slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let mut allow_paths = Vec::new();
    for p in &a.allow_paths {
        if p.to_str().is_some_and(|s| s.starts_with("s3://")) {
            // Object storage for checkpoints, allowed by its prefix.
            allow_paths.push(p.clone());
            continue;
        }
        let real = std::fs::canonicalize(p)
            .map_err(|e| format!("--allow-path {}: {e} (give an existing folder)", p.display()))?;
        allow_paths.push(real);
    }
    let token = match a.token {
        Some(t) if t.trim().is_empty() => return Err("--token is empty".into()),
        Some(t) => Some(t),
        None if a.listen.ip().is_loopback() => None,
        None => Some(stored_token(&data_dir)?),
    };
    let mut config = Config::new(data_dir.clone(), slots);
    config.allow_paths = allow_paths;
    config.token = token.clone();
    config.max_upload_bytes = (a.max_upload_mb << 20) as usize;
    let rt = WasmRuntime::new(Some(data_dir.join("cache"))).map_err(|e| e.to_string())?;
    let c = Coordinator::open(config, Arc::new(rt)).map_err(|e| e.to_string())?;
    let server =
        Server::start(c.clone(), a.listen, false).map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    eprintln!("weir coordinator {} listening on http://{}", env!("CARGO_PKG_VERSION"), server.addr());
    if weir_coordinator::dashboard::embedded() {
        eprintln!("  dashboard: http://{}/", server.addr());
    }
    eprintln!("  data directory: {}", data_dir.display());
    if slots > 0 {
        eprintln!("  embedded worker: {slots} slot{}", if slots == 1 { "" } else { "s" });
    }
    let cluster = match a.cluster_listen {
        None => None,
        Some(addr) => {
            let own = match (&a.cluster_cert, &a.cluster_key, &a.cluster_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    let own = weir_net::pki::OwnCertificates::load(cert, key, ca)
                        .map_err(|e| format!("--cluster-cert: {e}"))?;
                    own.check_usages(false).map_err(|e| format!("--cluster-cert: {e}"))?;
                    Some(own)
                }
                _ => None,
            };
            let cluster = c.listen_for_workers_with(addr, own).map_err(|e| e.to_string())?;
            match cluster.join_token() {
                Some(token) => {
                    eprintln!("  workers join on {} (UDP) with:", cluster.addr());
                    eprintln!("    weir worker --coordinator HOST:{} --join-token {token}", cluster.addr().port());
                    eprintln!("  (the token is also in {})", data_dir.join("join-token").display());
                }
                None => {
                    eprintln!("  workers connect on {} (UDP) with certificates of the operators' CA:", cluster.addr());
                    eprintln!(
                        "    weir worker --coordinator HOST:{} --cert FILE --key FILE --ca FILE",
                        cluster.addr().port()
                    );
                }
            }
            Some(cluster)
        }
    };
    if token.is_some() {
        eprintln!("  calls that change something need the token in {}", data_dir.join("token").display());
    }
    weir_coordinator::rest::wait_for_signal().map_err(|e| format!("cannot wait for signals: {e}"))?;
    eprintln!("stopping: cancelling running jobs");
    // No new submissions while the running jobs stop.
    server.stop();
    c.shutdown(Duration::from_secs(10));
    drop(cluster);
    Ok(())
}

/// Where a local run starts from.
pub(crate) struct Start {
    /// The latest checkpoint of the job, if any.
    pub resume: bool,
    /// A savepoint or retained checkpoint folder.
    pub from_savepoint: Option<std::path::PathBuf>,
    /// Drop state of operators the job no longer has.
    pub allow_non_restored_state: bool,
}

/// Runs `spec` as the one job of a coordinator in this process, serving
/// its REST API on localhost (8081, else a free port) unless `no_server`.
pub(crate) fn local(spec: Spec, no_server: bool, start: Start) -> Result<JobSummary, String> {
    let data = tempfile::Builder::new()
        .prefix("weir-run-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let slots = weir_runtime::plan(&spec).iter().map(|v| v.parallelism).max().unwrap_or(1);
    let mut config = Config::new(data.path().to_owned(), slots);
    config.confine = false;
    config.read_only = true;
    let rt = WasmRuntime::new(cache_dir()).map_err(|e| e.to_string())?;
    let c = Coordinator::open(config, Arc::new(rt)).map_err(|e| e.to_string())?;
    let server = if no_server {
        None
    } else {
        match Server::start(c.clone(), SocketAddr::from(([127, 0, 0, 1], 8081)), true) {
            Ok(s) => {
                eprintln!("REST API of this run: http://{}/v1/overview", s.addr());
                if weir_coordinator::dashboard::embedded() {
                    eprintln!("dashboard of this run: http://{}/", s.addr());
                }
                Some(s)
            }
            Err(e) => {
                eprintln!("warning: cannot serve the REST API ({e}); running without it");
                None
            }
        }
    };
    let watch = c
        .run_spec_from(spec, start.resume, start.from_savepoint, start.allow_non_restored_state)
        .map_err(|e| e.to_string())?;
    let result = watch.wait();
    if let Some(s) = server {
        s.stop();
    }
    match result {
        Ok(summary) => Ok(summary),
        Err(Some(e)) if e.what == "job" => Err(e.message),
        Err(Some(e)) => Err(e.to_string()),
        Err(None) => Err("the job was cancelled".to_owned()),
    }
}
