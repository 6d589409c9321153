//! The worker's side of the cluster (`weir worker`): join the coordinator
//! with the join token, connect with the certificate it signed, register
//! the slots, then run what it deploys and report every
//! [`HEARTBEAT`](super::protocol::HEARTBEAT). Components are fetched from
//! the coordinator's blob store by SHA-256 and kept in the worker's own
//! folder. If the coordinator is lost, the worker cancels its jobs (the
//! coordinator restarts them from their checkpoints) and joins again.

use super::protocol::{Deploy, FENCE, Fetch, HEARTBEAT, JobReport, MAX_BLOB, SavepointReport, ToCoordinator, ToWorker};
use crate::lock;
use crate::worker::{Deployment, EmbeddedWorker, Execution};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use weir_net::control;
use weir_net::join::{self, PROTOCOL};
use weir_net::pki::{COORDINATOR_NAME, JoinToken};
use weir_runtime::{CheckpointStatus, JobSummary, Savepoint, SavepointRequest, TaskError};
use weir_wasm::WasmRuntime;

/// How a worker runs.
pub struct MemberConfig {
    /// The coordinator's cluster address, `HOST:PORT`.
    pub coordinator: String,
    /// How it gets its certificate: the join token, or the operators' own
    /// certificates.
    pub credentials: Credentials,
    /// Its name (its certificate's, and its id in the REST API).
    pub name: String,
    /// Its slots.
    pub slots: u32,
    /// Where it keeps fetched components.
    pub data_dir: PathBuf,
}

/// How a worker proves itself to the coordinator.
pub enum Credentials {
    /// Joins with the coordinator's token and gets a certificate of the
    /// cluster CA.
    Token(JoinToken),
    /// Certificates its operators issued (the coordinator's CA too).
    Own(weir_net::pki::OwnCertificates),
}

/// Why a worker stopped for good.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MemberError(pub String);

/// Runs the worker until the process ends. Returns only when the
/// coordinator refuses it (a wrong token, another protocol version, a
/// name taken): an unreachable or lost coordinator is tried again every
/// second.
pub fn run(config: MemberConfig, rt: Arc<WasmRuntime>) -> Result<(), MemberError> {
    std::fs::create_dir_all(config.data_dir.join("blobs"))
        .map_err(|e| MemberError(format!("cannot make {}: {e}", config.data_dir.join("blobs").display())))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-worker-net")
        .enable_all()
        .build()
        .map_err(|e| MemberError(format!("cannot start the network threads: {e}")))?;
    let worker = Arc::new(EmbeddedWorker::new(rt, config.slots));
    runtime.block_on(async {
        let mut registered_once = false;
        loop {
            match session(&config, &worker, &mut registered_once).await {
                Ended::Refused(m) => return Err(MemberError(m)),
                Ended::Lost(m) => {
                    eprintln!("weir worker `{}`: {m}; trying again in 1 s", config.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

enum Ended {
    /// The coordinator said no: trying again would not help.
    Refused(String),
    /// The coordinator could not be reached, or the connection was lost.
    Lost(String),
}

/// A job this worker runs.
struct Running {
    exec: Arc<dyn Execution>,
    savepoints: Vec<(u64, Arc<Savepoint>)>,
    /// Set once it ended and its threads were joined (by its watcher).
    summary: Arc<OnceLock<Option<JobSummary>>>,
    /// Its checkpoints at the last report.
    reported: Vec<weir_runtime::CheckpointStats>,
}

/// The jobs of one connection to the coordinator.
#[derive(Default)]
struct SessionJobs {
    running: HashMap<(String, u64), Running>,
    /// Cancelled before their deployment finished: they must not start.
    cancelled: std::collections::HashSet<(String, u64)>,
    /// The connection is gone: nothing starts any more.
    closed: bool,
    /// Spread jobs' checkpointers, by deployment: the coordinator's
    /// commands go to them until it says the job is over (after its part
    /// here may have finished). Dropped with the session, they stop.
    checkpointers: HashMap<(String, u64), std::sync::mpsc::Sender<weir_runtime::CheckpointCommand>>,
    /// A job ended here: its report goes now, not at the next heartbeat.
    ended: Arc<tokio::sync::Notify>,
}

type Jobs = Arc<Mutex<SessionJobs>>;

async fn session(config: &MemberConfig, worker: &Arc<EmbeddedWorker>, registered_once: &mut bool) -> Ended {
    match connected(config, worker, registered_once).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn connected(
    config: &MemberConfig,
    worker: &Arc<EmbeddedWorker>,
    registered_once: &mut bool,
) -> Result<std::convert::Infallible, Ended> {
    let lost = |m: String| Ended::Lost(m);
    let addr = tokio::net::lookup_host(&config.coordinator)
        .await
        .map_err(|e| lost(format!("cannot resolve {}: {e}", config.coordinator)))?
        .next()
        .ok_or_else(|| lost(format!("{} resolves to no address", config.coordinator)))?;
    let bind: std::net::SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("invariant");
    let endpoint = join::client_endpoint(bind).map_err(|e| lost(e.0))?;
    let (identity, ca) = match &config.credentials {
        Credentials::Own(own) => (own.identity.clone(), own.ca_der.clone()),
        Credentials::Token(token) => join::join(&endpoint, addr, token, &config.name).await.map_err(|e| {
            // Refused is final; unreachable is not.
            if e.0.contains("refused:") { Ended::Refused(e.0) } else { lost(e.0) }
        })?,
    };
    let tls = weir_net::tls::client(&identity, &ca).map_err(|e| Ended::Refused(e.to_string()))?;
    let mut client = join::quic_client(tls).map_err(|e| Ended::Refused(e.0))?;
    client.transport_config(super::control_transport());
    let connection = endpoint
        .connect_with(client, addr, COORDINATOR_NAME)
        .map_err(|e| lost(format!("cannot connect to {addr}: {e}")))?
        .await
        .map_err(|e| lost(format!("cannot connect to {addr} with the worker's certificate: {e}")))?;
    // Other workers reach this one's slots here, with certificates of
    // the same CA.
    let plane = super::data::DataPlane::open(&config.name, &identity, &ca, bind, &tokio::runtime::Handle::current())
        .map_err(Ended::Refused)?;
    // Closed however the session ends.
    let _closing = super::data::Closing(plane.clone());
    let mut to = connection.open_uni().await.map_err(|e| lost(format!("cannot open the control stream: {e}")))?;
    let hello = ToCoordinator::Hello {
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        slots: config.slots,
        data_port: plane.port(),
    };
    control::write(&mut to, &hello).await.map_err(|e| lost(e.0))?;
    let mut from = connection.accept_uni().await.map_err(|e| lost(format!("no answer to the hello: {e}")))?;
    match control::read::<ToWorker>(&mut from).await.map_err(|e| lost(e.0))? {
        Some(ToWorker::Welcome) => {}
        Some(ToWorker::Refused { message }) if !*registered_once => {
            return Err(Ended::Refused(format!("the coordinator at {addr} refused: {message}")));
        }
        Some(ToWorker::Refused { message }) => {
            return Err(lost(format!("the coordinator at {addr} refused: {message}")));
        }
        _ => return Err(lost("the coordinator did not answer the hello".into())),
    }
    *registered_once = true;
    eprintln!("weir worker `{}` registered {} slots with the coordinator at {addr}", config.name, config.slots);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<ToCoordinator>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if let Err(e) = control::write(&mut to, &m).await {
                return e.0;
            }
        }
        "the worker stopped".to_owned()
    });
    let jobs: Jobs = Arc::default();
    let heartbeat = {
        let (jobs, tx) = (jobs.clone(), tx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            let ended = lock(&jobs).ended.clone();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = ended.notified() => {}
                }
                let report = ToCoordinator::Report { jobs: reports(&jobs) };
                if tx.send(report).await.is_err() {
                    return;
                }
            }
        })
    };
    let reason = loop {
        // The coordinator pings: silence means it is gone or cut off, and
        // is about to restart these jobs elsewhere.
        match tokio::time::timeout(FENCE, control::read::<ToWorker>(&mut from)).await {
            Ok(Ok(Some(m))) => command(m, worker, &jobs, &tx, &connection, &config.data_dir, &plane),
            Ok(Ok(None)) => break "the coordinator closed the control stream".to_owned(),
            Ok(Err(e)) => break format!("lost the coordinator: {e}"),
            Err(_) => break format!("no word from the coordinator for {} s", FENCE.as_secs()),
        }
    };
    heartbeat.abort();
    writer.abort();
    // Its jobs restart elsewhere, from their checkpoints: stopped before
    // the coordinator's deadline for this worker runs out.
    let stopping: Vec<Arc<dyn Execution>> = {
        let mut jobs = lock(&jobs);
        jobs.closed = true;
        jobs.running.drain().map(|(_, r)| r.exec).collect()
    };
    for exec in &stopping {
        exec.cancel();
    }
    for exec in &stopping {
        exec.wait_timeout(Duration::from_secs(1));
    }
    connection.close(0u32.into(), b"lost");
    Err(lost(reason))
}

fn command(
    message: ToWorker,
    worker: &Arc<EmbeddedWorker>,
    jobs: &Jobs,
    tx: &Sender<ToCoordinator>,
    connection: &quinn::Connection,
    data_dir: &Path,
    plane: &Arc<super::data::DataPlane>,
) {
    match message {
        ToWorker::Welcome | ToWorker::Refused { .. } | ToWorker::Ping => {}
        ToWorker::Deploy(d) => {
            let (worker, jobs, tx, connection) = (worker.clone(), jobs.clone(), tx.clone(), connection.clone());
            let plane = plane.clone();
            let blobs = data_dir.join("blobs");
            let handle = tokio::runtime::Handle::current();
            // Fetching and compiling take long: off the network threads.
            tokio::task::spawn_blocking(move || {
                let (job, attempt) = (d.job.clone(), d.attempt);
                let key = (job.clone(), attempt);
                let link = d.coordinated.then(|| {
                    let (commands, received) = std::sync::mpsc::channel();
                    lock(&jobs).checkpointers.insert(key.clone(), commands);
                    let (tx, job) = (tx.clone(), job.clone());
                    let reports = Box::new(move |report| {
                        // The session gone, so is the coordinator's ledger.
                        let _ = tx.blocking_send(ToCoordinator::Checkpoint { job: job.clone(), attempt, report });
                    });
                    weir_runtime::CheckpointLink { commands: received, reports }
                });
                let errors = match deploy(*d, &worker, &handle, &connection, &blobs, &plane, link) {
                    Ok(exec) => {
                        let mut jobs = lock(&jobs);
                        if jobs.closed || jobs.cancelled.remove(&key) {
                            drop(jobs);
                            exec.cancel();
                            vec![TaskError::job(&job, "cancelled while it was being deployed")]
                        } else {
                            let summary = Arc::new(OnceLock::new());
                            watch(exec.clone(), summary.clone(), jobs.ended.clone());
                            let running = Running { exec, savepoints: Vec::new(), summary, reported: Vec::new() };
                            jobs.running.insert(key.clone(), running);
                            Vec::new()
                        }
                    }
                    Err(errors) => errors,
                };
                if !errors.is_empty() {
                    lock(&jobs).checkpointers.remove(&key);
                }
                let _ = tx.blocking_send(ToCoordinator::Deployed { job, attempt, errors });
            });
        }
        ToWorker::Cancel { job, attempt } => {
            let mut jobs = lock(jobs);
            // Its checkpointer stops too (a part that finished keeps one).
            jobs.checkpointers.remove(&(job.clone(), attempt));
            match jobs.running.get(&(job.clone(), attempt)) {
                Some(r) => r.exec.cancel(),
                // Still being deployed (or never here): it must not start.
                None => {
                    jobs.cancelled.insert((job, attempt));
                }
            }
        }
        ToWorker::Savepoint { job, attempt, request, dir, stop } => {
            let mut jobs = lock(jobs);
            let Some(r) = jobs.running.get_mut(&(job.clone(), attempt)) else {
                let message = format!("job {job} (deployment {attempt}) does not run on this worker any more");
                let _ = tx.try_send(ToCoordinator::SavepointFailed { job, attempt, request, message });
                return;
            };
            let sp = r
                .exec
                .savepoint(SavepointRequest { dir, stop })
                .unwrap_or_else(|e| Savepoint::reported(0, Some(Err(e))));
            r.savepoints.push((request, sp));
        }
        ToWorker::Checkpoint { job, attempt, command } => {
            let key = (job, attempt);
            let mut jobs = lock(jobs);
            let over = command == weir_runtime::CheckpointCommand::Over;
            // A checkpointer that has stopped (its part failed) is gone.
            if jobs.checkpointers.get(&key).is_some_and(|c| c.send(command).is_err()) || over {
                jobs.checkpointers.remove(&key);
            }
        }
    }
}

/// Places a deployment here (components from the cache, fetched if
/// missing; the checkpoint it restores read) and starts it.
fn deploy(
    d: Deploy,
    worker: &EmbeddedWorker,
    handle: &tokio::runtime::Handle,
    connection: &quinn::Connection,
    blobs: &Path,
    plane: &Arc<super::data::DataPlane>,
    checkpoints: Option<weir_runtime::CheckpointLink>,
) -> Result<Arc<dyn Execution>, Vec<TaskError>> {
    let name = d.spec.name.clone().unwrap_or_else(|| d.job.clone());
    let fail = |m: String| vec![TaskError::job(&name, m)];
    let mut spec = d.spec;
    for p in spec.component_paths_mut() {
        let sha = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !crate::blobs::is_sha256(&sha) {
            return Err(fail(format!("component {} is not named by its SHA-256: cannot fetch it", p.display())));
        }
        *p = handle.block_on(fetch(connection, &sha, blobs)).map_err(fail)?;
    }
    let restore = match &d.restore {
        None => None,
        Some(path) => Some(Arc::new(weir_runtime::load_from(path).map_err(fail)?)),
    };
    let placement = d.spread.map(|spread| weir_runtime::Placement {
        local: spread.slots.iter().map(|p| p.name == plane.name()).collect(),
        exchange: Arc::new(super::data::JobExchange {
            plane: plane.clone(),
            exchange: spread.exchange,
            slots: Arc::new(spread.slots),
            key_groups: spec.max_parallelism,
        }),
        checkpoints,
    });
    let deployment = Deployment {
        job: d.job,
        spec,
        working_dir: PathBuf::new(),
        checkpoint_name: d.checkpoint_name,
        restore,
        allow_non_restored_state: d.allow_non_restored_state,
        spread: None,
        checkpoints: None,
    };
    worker.deploy_part(deployment, placement)
}

/// Component `sha` in the worker's cache, fetched from the coordinator if
/// missing (checked against its SHA-256, written whole or not at all).
async fn fetch(connection: &quinn::Connection, sha: &str, dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join(sha);
    if path.is_file() {
        return Ok(path);
    }
    let fail = |e: &dyn std::fmt::Display| format!("cannot fetch component {sha} from the coordinator: {e}");
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| fail(&e))?;
    join::write_message(&mut send, &Fetch { sha256: sha.to_owned() }, "fetch").await.map_err(|e| fail(&e))?;
    let bytes = recv.read_to_end(MAX_BLOB).await.map_err(|e| match e {
        quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))
            if code.into_inner() == u64::from(super::NO_BLOB) =>
        {
            fail(&"the coordinator does not hold it (was its bundle deleted while the job ran?)")
        }
        e => fail(&e),
    })?;
    let got = weir_bundle::sha256_hex(&bytes);
    if got != sha {
        return Err(fail(&format!("it arrived with SHA-256 {got}")));
    }
    let (sha, target) = (sha.to_owned(), path.clone());
    tokio::task::spawn_blocking(move || crate::blobs::write_atomic(&target, &bytes))
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| format!("cannot keep component {sha}: {e}"))?;
    Ok(path)
}

/// Waits on its own thread for `exec` to end, then for its threads, and
/// sets its `summary`: the heartbeat reports the end at once (a job's
/// duration is not a heartbeat longer than its run).
fn watch(exec: Arc<dyn Execution>, summary: Arc<OnceLock<Option<JobSummary>>>, ended: Arc<tokio::sync::Notify>) {
    let (e, s, n) = (exec.clone(), summary.clone(), ended.clone());
    let watching = std::thread::Builder::new().name("weir-job-watch".into()).spawn(move || {
        while !e.wait_timeout(Duration::from_secs(1)).is_terminal() {}
        let _ = s.set(e.summary());
        n.notify_one();
    });
    if let Err(e) = watching {
        // Unwatched, it would never be reported ended: it stops instead.
        tracing::warn!("cannot start a thread to watch a job: {e}: the job is cancelled");
        exec.cancel();
        exec.wait_timeout(Duration::from_secs(10));
        let _ = summary.set(None);
        ended.notify_one();
    }
}

/// The heartbeat: every job's report. A job that ended is reported once,
/// with its summary, and forgotten.
fn reports(jobs: &Jobs) -> Vec<JobReport> {
    let mut jobs = lock(jobs);
    let mut out = Vec::new();
    let mut ended = Vec::new();
    for ((job, attempt), r) in jobs.running.iter_mut() {
        let mut status = r.exec.status();
        if status.is_terminal() && r.summary.get().is_none() {
            // Terminal once its threads are joined and its summary known.
            use weir_runtime::JobStatus::*;
            status = match status {
                Failed => Failing,
                Canceled => Cancelling,
                _ => Running,
            };
        }
        let checkpoints = r.exec.checkpoints();
        let changed = checkpoints != r.reported || status.is_terminal();
        if changed {
            r.reported = checkpoints.clone();
        }
        let committed = checkpoints
            .iter()
            .rev()
            .filter(|c| c.status == CheckpointStatus::Completed)
            .map(|c| c.id)
            .find(|&id| r.exec.committed(id))
            .unwrap_or(0);
        let savepoints = r
            .savepoints
            .iter()
            .map(|(request, sp)| SavepointReport { request: *request, id: sp.id(), outcome: sp.outcome() })
            .collect();
        if status.is_terminal() {
            ended.push((job.clone(), *attempt));
        }
        out.push(JobReport {
            job: job.clone(),
            attempt: *attempt,
            status,
            metrics: r.exec.metrics(),
            errors: r.exec.errors(),
            checkpoints: changed.then_some(checkpoints),
            committed,
            summary: if status.is_terminal() { r.summary.get().cloned().flatten() } else { None },
            savepoints,
        });
    }
    for key in ended {
        jobs.running.remove(&key);
    }
    out
}
