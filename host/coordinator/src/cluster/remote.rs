//! A worker in another process, as the coordinator's job masters see it:
//! a [`Worker`] whose deployments and commands go out on its control
//! stream, and whose [`Execution`]s show what its heartbeats last
//! reported.

use super::protocol::{Deploy, JobReport, ToCoordinator, ToWorker};
use crate::lock;
use crate::worker::{Deployment, Execution, Worker};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use weir_runtime::{CheckpointStats, JobStatus, JobSummary, Savepoint, SavepointRequest, TaskError, VertexMetrics};

/// How long a worker may take to start a deployment (it may fetch and
/// compile components first).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);

type Key = (String, u64);

/// A registered remote worker.
pub(crate) struct RemoteWorker {
    id: String,
    address: String,
    slots: u32,
    data: std::net::SocketAddr,
    to: Sender<ToWorker>,
    alive: AtomicBool,
    attempts: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    lost: Option<String>,
    executions: HashMap<Key, Arc<RemoteExecution>>,
    deploys: HashMap<Key, std::sync::mpsc::SyncSender<Vec<TaskError>>>,
    /// Spread jobs' checkpoint ledgers, by deployment: kept after a part
    /// has finished, whose final snapshots stand in until the job ends.
    ledgers: HashMap<Key, std::sync::mpsc::Sender<weir_runtime::PartReport>>,
}

impl RemoteWorker {
    pub fn new(
        id: String,
        address: String,
        slots: u32,
        data: std::net::SocketAddr,
        to: Sender<ToWorker>,
    ) -> RemoteWorker {
        RemoteWorker {
            id,
            address,
            slots,
            data,
            to,
            alive: AtomicBool::new(true),
            attempts: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A message from the worker. A job it reports that no execution here
    /// waits for (its deployment timed out, or it was superseded) is
    /// cancelled: no job runs twice. `Err`: the worker takes no commands.
    pub fn received(&self, message: ToCoordinator) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        let mut strays = Vec::new();
        match message {
            ToCoordinator::Hello { .. } => {}
            ToCoordinator::Deployed { job, attempt, errors } => {
                let key = (job, attempt);
                if !errors.is_empty() {
                    inner.executions.remove(&key);
                }
                match inner.deploys.remove(&key) {
                    Some(reply) => {
                        let _ = reply.try_send(errors);
                    }
                    None if errors.is_empty() => strays.push(key),
                    None => {}
                }
            }
            ToCoordinator::Report { jobs } => {
                for report in jobs {
                    let key = (report.job.clone(), report.attempt);
                    let terminal = report.status.is_terminal();
                    match inner.executions.get(&key) {
                        Some(e) => e.update(report),
                        None if !terminal && !inner.deploys.contains_key(&key) => strays.push(key.clone()),
                        None => {}
                    }
                    if terminal {
                        inner.executions.remove(&key);
                    }
                }
            }
            ToCoordinator::SavepointFailed { job, attempt, request, message } => {
                if let Some(e) = inner.executions.get(&(job, attempt)) {
                    e.savepoint_failed(request, message);
                }
            }
            ToCoordinator::Checkpoint { job, attempt, report } => {
                let key = (job, attempt);
                // Its ledger gone (the job ended), the report is moot.
                if inner.ledgers.get(&key).is_some_and(|l| l.send(report).is_err()) {
                    inner.ledgers.remove(&key);
                }
            }
        }
        drop(inner);
        for (job, attempt) in strays {
            tracing::warn!(
                "worker `{}` runs job {job} (deployment {attempt}), which is not its any more: cancelled",
                self.id
            );
            self.send(ToWorker::Cancel { job, attempt })?;
        }
        Ok(())
    }

    /// The worker is gone: every execution on it fails with `reason`.
    pub fn lose(&self, reason: &str) {
        self.alive.store(false, Ordering::Release);
        let mut inner = lock(&self.inner);
        inner.lost = Some(reason.to_owned());
        // Dropping the reply senders wakes deployments still waiting.
        inner.deploys.clear();
        let message = format!("worker `{}` ({}) was lost: {reason}", self.id, self.address);
        for e in inner.executions.drain().map(|(_, e)| e) {
            e.lost(&message);
        }
        tracing::warn!("{message}");
    }

    fn send(&self, message: ToWorker) -> Result<(), String> {
        self.to.try_send(message).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                format!("worker `{}` is not taking commands (its control queue is full)", self.id)
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => format!("worker `{}` is gone", self.id),
        })
    }
}

impl Worker for RemoteWorker {
    fn id(&self) -> &str {
        &self.id
    }

    fn address(&self) -> &str {
        &self.address
    }

    fn slots(&self) -> u32 {
        self.slots
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn data_address(&self) -> Option<std::net::SocketAddr> {
        Some(self.data)
    }

    fn deploy(&self, d: Deployment) -> Result<Arc<dyn Execution>, Vec<TaskError>> {
        let name = d.spec.name.clone().unwrap_or_else(|| d.job.clone());
        let fail = |m: String| vec![TaskError::job(&name, m)];
        let attempt = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let key = (d.job.clone(), attempt);
        let exec = Arc::new(RemoteExecution::new(&self.id, &d.job, attempt, self.to.clone()));
        let (reply, replied) = std::sync::mpsc::sync_channel(1);
        {
            let mut inner = lock(&self.inner);
            if let Some(reason) = &inner.lost {
                return Err(fail(format!("worker `{}` was lost: {reason}", self.id)));
            }
            inner.executions.insert(key.clone(), exec.clone());
            inner.deploys.insert(key.clone(), reply);
            if let Some(l) = &d.checkpoints {
                inner.ledgers.insert(key.clone(), l.clone());
            }
        }
        let message = Deploy {
            job: d.job.clone(),
            attempt,
            spec: d.spec,
            checkpoint_name: d.checkpoint_name,
            restore: d.restore.map(|r| r.path.clone()),
            allow_non_restored_state: d.allow_non_restored_state,
            spread: d.spread,
            coordinated: d.checkpoints.is_some(),
        };
        let forget = |m: String| {
            let mut inner = lock(&self.inner);
            inner.executions.remove(&key);
            inner.deploys.remove(&key);
            inner.ledgers.remove(&key);
            fail(m)
        };
        self.send(ToWorker::Deploy(Box::new(message))).map_err(forget)?;
        match replied.recv_timeout(DEPLOY_TIMEOUT) {
            Ok(errors) if errors.is_empty() => Ok(exec),
            Ok(errors) => Err(errors),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.send(ToWorker::Cancel { job: d.job.clone(), attempt });
                Err(forget(format!("worker `{}` did not start the job within {} s", self.id, DEPLOY_TIMEOUT.as_secs())))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let reason = lock(&self.inner).lost.clone().unwrap_or_default();
                Err(forget(format!("worker `{}` was lost while starting the job: {reason}", self.id)))
            }
        }
    }
}

/// A job on a remote worker: what its last report said.
pub(crate) struct RemoteExecution {
    worker: String,
    job: String,
    attempt: u64,
    to: Sender<ToWorker>,
    requests: AtomicU64,
    state: Mutex<ExecState>,
    changed: Condvar,
}

#[derive(Default)]
struct ExecState {
    report: Option<JobReport>,
    checkpoints: Vec<CheckpointStats>,
    lost: Option<TaskError>,
    savepoints: HashMap<u64, Arc<Savepoint>>,
}

impl ExecState {
    fn status(&self) -> JobStatus {
        match (&self.lost, &self.report) {
            (Some(_), _) => JobStatus::Failed,
            (None, Some(r)) => r.status,
            (None, None) => JobStatus::Running,
        }
    }
}

impl RemoteExecution {
    fn new(worker: &str, job: &str, attempt: u64, to: Sender<ToWorker>) -> RemoteExecution {
        RemoteExecution {
            worker: worker.to_owned(),
            job: job.to_owned(),
            attempt,
            to,
            requests: AtomicU64::new(0),
            state: Mutex::new(ExecState::default()),
            changed: Condvar::new(),
        }
    }

    fn update(&self, mut report: JobReport) {
        let mut s = lock(&self.state);
        if s.lost.is_some() {
            return;
        }
        if let Some(c) = report.checkpoints.take() {
            s.checkpoints = c;
        }
        for r in &report.savepoints {
            if let Some(sp) = s.savepoints.get(&r.request) {
                sp.update(r.id, r.outcome.clone());
            }
        }
        s.report = Some(report);
        drop(s);
        self.changed.notify_all();
    }

    /// The worker could not take savepoint request `request`.
    fn savepoint_failed(&self, request: u64, message: String) {
        if let Some(sp) = lock(&self.state).savepoints.get(&request) {
            sp.update(0, Some(Err(message)));
        }
    }

    fn lost(&self, message: &str) {
        let mut s = lock(&self.state);
        s.lost = Some(TaskError::job(&self.job, message));
        for sp in s.savepoints.values() {
            sp.update(0, Some(Err(message.to_owned())));
        }
        drop(s);
        self.changed.notify_all();
    }

    fn command(&self, message: ToWorker) -> Result<(), String> {
        self.to.try_send(message).map_err(|_| format!("worker `{}` is not taking commands", self.worker))
    }
}

impl Execution for RemoteExecution {
    fn status(&self) -> JobStatus {
        lock(&self.state).status()
    }

    fn metrics(&self) -> Vec<VertexMetrics> {
        lock(&self.state).report.as_ref().map_or_else(Vec::new, |r| r.metrics.clone())
    }

    fn errors(&self) -> Vec<TaskError> {
        let s = lock(&self.state);
        let mut errors = s.report.as_ref().map_or_else(Vec::new, |r| r.errors.clone());
        errors.extend(s.lost.clone());
        errors
    }

    fn cancel(&self) {
        if let Err(e) = self.command(ToWorker::Cancel { job: self.job.clone(), attempt: self.attempt }) {
            tracing::warn!("cannot cancel job {}: {e}", self.job);
        }
    }

    fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        let s = lock(&self.state);
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| !s.status().is_terminal())
            .unwrap_or_else(|p| p.into_inner());
        s.status()
    }

    fn summary(&self) -> Option<JobSummary> {
        let s = lock(&self.state);
        let s = self.changed.wait_while(s, |s| !s.status().is_terminal()).unwrap_or_else(|p| p.into_inner());
        if s.lost.is_some() { None } else { s.report.as_ref().and_then(|r| r.summary.clone()) }
    }

    fn checkpoints(&self) -> Vec<CheckpointStats> {
        lock(&self.state).checkpoints.clone()
    }

    fn savepoint(&self, request: SavepointRequest) -> Result<Arc<Savepoint>, String> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let sp = Savepoint::reported(0, None);
        lock(&self.state).savepoints.insert(n, sp.clone());
        self.command(ToWorker::Savepoint {
            job: self.job.clone(),
            attempt: self.attempt,
            request: n,
            dir: request.dir,
            stop: request.stop,
        })?;
        Ok(sp)
    }

    fn committed(&self, id: u64) -> bool {
        lock(&self.state).report.as_ref().is_some_and(|r| r.committed >= id)
    }

    /// Waits for room in the control queue: a checkpoint command is not
    /// dropped (a lost `Complete` would leave a sink uncommitted). A lost
    /// worker's queue is closed, which ends the wait.
    fn coordinate(&self, command: weir_runtime::CheckpointCommand) -> Result<(), String> {
        let message = ToWorker::Checkpoint { job: self.job.clone(), attempt: self.attempt, command };
        self.to.blocking_send(message).map_err(|_| format!("worker `{}` is gone", self.worker))
    }
}
