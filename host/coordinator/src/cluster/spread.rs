//! A job spread over several workers, as its job master sees it: one
//! [`Execution`] made of each worker's part. It runs while every part
//! runs; the first part to fail fails it and stops the others; it has
//! finished when every part has. Its checkpoints are kept here, by a
//! [`Ledger`]: each worker writes its own tasks' parts, and the ledger
//! completes each checkpoint once every task's is written.

use crate::worker::Execution;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weir_runtime::{
    CheckpointCommand, CheckpointStats, JobStatus, JobSummary, Ledger, Savepoint, SavepointRequest, TaskError,
    VertexMetrics,
};

/// The parts of a spread job.
pub(crate) struct SpreadExecution {
    /// One per worker.
    pub parts: Vec<Arc<dyn Execution>>,
    /// Per slot: the part that runs it.
    pub slot_part: Vec<usize>,
    stopped_others: AtomicBool,
    /// Cancel was asked for: channels that break as the parts stop are
    /// no failure of the job.
    cancelled: AtomicBool,
    /// Its checkpoints, when it takes them.
    ledger: Option<Ledger>,
}

impl SpreadExecution {
    pub fn new(parts: Vec<Arc<dyn Execution>>, slot_part: Vec<usize>, ledger: Option<Ledger>) -> SpreadExecution {
        SpreadExecution {
            parts,
            slot_part,
            stopped_others: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            ledger,
        }
    }

    /// Each vertex's metrics, each subtask's from the part that runs it.
    fn merge(&self, per_part: Vec<Vec<VertexMetrics>>) -> Vec<VertexMetrics> {
        // A part that has not reported yet has no vertices.
        let Some(mut out) = per_part.iter().find(|p| !p.is_empty()).cloned() else { return Vec::new() };
        for (v, vertex) in out.iter_mut().enumerate() {
            for (s, sub) in vertex.subtasks.iter_mut().enumerate() {
                let part = self.slot_part.get(s).copied().unwrap_or(0);
                if let Some(m) = per_part.get(part).and_then(|p| p.get(v)).and_then(|m| m.subtasks.get(s)) {
                    *sub = m.clone();
                }
            }
            vertex.records_in = vertex.subtasks.iter().map(|s| s.records_in).sum();
            vertex.records_out = vertex.subtasks.iter().map(|s| s.records_out).sum();
        }
        out
    }
}

impl Execution for SpreadExecution {
    fn status(&self) -> JobStatus {
        let statuses: Vec<JobStatus> = self.parts.iter().map(|p| p.status()).collect();
        let cancelled = self.cancelled.load(Ordering::Acquire);
        let failed = !cancelled && statuses.iter().any(|s| matches!(s, JobStatus::Failed | JobStatus::Failing));
        if failed && !self.stopped_others.swap(true, Ordering::AcqRel) {
            // A part failed: the rest of the job cannot go on.
            for p in &self.parts {
                p.cancel();
            }
        }
        let all_ended = statuses.iter().all(|s| s.is_terminal());
        if all_ended && let Some(l) = &self.ledger {
            // No more checkpoints; the workers' checkpointers are told.
            l.stop();
        }
        match (all_ended, failed) {
            (true, true) => JobStatus::Failed,
            (false, true) => JobStatus::Failing,
            (true, false) if statuses.iter().all(|s| *s == JobStatus::Finished) => JobStatus::Finished,
            (true, false) => JobStatus::Canceled,
            (false, false) if statuses.iter().any(|s| matches!(s, JobStatus::Cancelling | JobStatus::Canceled)) => {
                JobStatus::Cancelling
            }
            (false, false) => JobStatus::Running,
        }
    }

    fn metrics(&self) -> Vec<VertexMetrics> {
        self.merge(self.parts.iter().map(|p| p.metrics()).collect())
    }

    fn errors(&self) -> Vec<TaskError> {
        self.parts.iter().flat_map(|p| p.errors()).collect()
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        for p in &self.parts {
            p.cancel();
        }
    }

    fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        let until = Instant::now() + timeout;
        loop {
            let status = self.status();
            let left = until.saturating_duration_since(Instant::now());
            if status.is_terminal() || left.is_zero() {
                return status;
            }
            // Each part wakes at its own end; a short wait on the first
            // still running keeps the others' news fresh.
            if let Some(p) = self.parts.iter().find(|p| !p.status().is_terminal()) {
                p.wait_timeout(left.min(Duration::from_millis(50)));
            }
        }
    }

    fn summary(&self) -> Option<JobSummary> {
        let summaries: Vec<JobSummary> = self.parts.iter().map(|p| p.summary()).collect::<Option<_>>()?;
        let first = summaries.first()?.clone();
        let vertices = self.merge(summaries.iter().map(|s| s.vertices.clone()).collect());
        let mut unread: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for s in &summaries {
            for (v, tag, n) in &s.unread_side_outputs {
                *unread.entry((v.clone(), tag.clone())).or_default() += n;
            }
        }
        Some(JobSummary {
            vertices,
            unread_side_outputs: unread.into_iter().map(|((v, t), n)| (v, t, n)).collect(),
            elapsed: summaries.iter().map(|s| s.elapsed).max().unwrap_or(first.elapsed),
        })
    }

    fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.ledger.as_ref().map_or_else(Vec::new, |l| l.history())
    }

    fn savepoint(&self, request: SavepointRequest) -> Result<Arc<Savepoint>, String> {
        match &self.ledger {
            Some(l) => Ok(l.savepoint(request)),
            None => Err("the job takes no checkpoints: savepoints need a `checkpoints:` section in its spec".into()),
        }
    }

    fn committed(&self, id: u64) -> bool {
        // A part that has ended committed all it will.
        self.parts.iter().all(|p| p.status().is_terminal() || p.committed(id))
    }
}

/// Deploys a spread job: each worker's part, with the placement of every
/// slot, then watches them as one [`SpreadExecution`].
pub(crate) struct SpreadDeployer {
    /// The job.
    pub job: String,
    /// The workers, in order.
    pub parts: Vec<Arc<dyn crate::worker::Worker>>,
    /// Per slot: the worker that runs it (an index into `parts`).
    pub slot_part: Vec<usize>,
}

impl crate::worker::Worker for SpreadDeployer {
    fn id(&self) -> &str {
        &self.job
    }

    fn address(&self) -> &str {
        "spread"
    }

    fn slots(&self) -> u32 {
        self.slot_part.len() as u32
    }

    fn alive(&self) -> bool {
        self.parts.iter().all(|p| p.alive())
    }

    fn deploy(&self, d: crate::worker::Deployment) -> Result<Arc<dyn Execution>, Vec<TaskError>> {
        let name = d.spec.name.clone().unwrap_or_else(|| d.job.clone());
        let mut slots = Vec::with_capacity(self.slot_part.len());
        for &p in &self.slot_part {
            let Some(addr) = self.parts[p].data_address() else {
                let m = format!("worker `{}` has no data plane: a job cannot be spread over it", self.parts[p].id());
                return Err(vec![TaskError::job(&name, m)]);
            };
            slots.push(super::data::Peer { name: self.parts[p].id().to_owned(), addr });
        }
        let spread = super::protocol::Spread { exchange: crate::random_id(), slots };
        // The parts' checkpoint reports, for the ledger started once every
        // part runs (none comes before it triggers a checkpoint, but a
        // task that finished at once).
        let (reports, received) = std::sync::mpsc::channel();
        let reports = d.spec.checkpoints.is_some().then_some(reports);
        let mut started: Vec<Arc<dyn Execution>> = Vec::with_capacity(self.parts.len());
        for worker in &self.parts {
            let part = crate::worker::Deployment {
                job: d.job.clone(),
                spec: d.spec.clone(),
                working_dir: d.working_dir.clone(),
                checkpoint_name: d.checkpoint_name.clone(),
                restore: d.restore.clone(),
                allow_non_restored_state: d.allow_non_restored_state,
                spread: Some(spread.clone()),
                checkpoints: reports.clone(),
            };
            match worker.deploy(part) {
                Ok(e) => started.push(e),
                Err(errors) => {
                    for e in &started {
                        e.cancel();
                        // A part that finished already keeps its checkpointer
                        // until told the job is over.
                        if reports.is_some() {
                            let _ = e.coordinate(CheckpointCommand::Over);
                        }
                    }
                    // Ended before their slots go to a restart.
                    for e in &started {
                        e.wait_timeout(Duration::from_secs(10));
                    }
                    return Err(errors);
                }
            }
        }
        let ledger = match reports {
            None => None,
            Some(_) => {
                let parts = started.clone();
                let commands = Box::new(move |c: CheckpointCommand| {
                    for p in &parts {
                        if let Err(e) = p.coordinate(c.clone()) {
                            tracing::warn!("checkpoint command not passed on: {e}");
                        }
                    }
                });
                let link = weir_runtime::LedgerLink { reports: received, commands, workers: started.len() };
                let restore = d.restore.as_deref();
                match weir_runtime::ledger(&d.spec, Some(d.checkpoint_name.clone()), restore, link) {
                    Ok(l) => l,
                    Err(e) => {
                        for p in &started {
                            p.cancel();
                            let _ = p.coordinate(CheckpointCommand::Over);
                        }
                        return Err(vec![TaskError::job(&name, e.to_string())]);
                    }
                }
            }
        };
        Ok(Arc::new(SpreadExecution::new(started, self.slot_part.clone(), ledger)))
    }
}
