//! The dispatcher and its job masters. A submission is checked and placed
//! (components pointed at the blob store, files in the job's working
//! directory and confined) before a job exists; then a job master (one
//! thread per job) waits for slots, deploys the job on a worker, watches
//! it — state, metrics sampled each second, exceptions — and, once it
//! ends, frees its slots; its record `jobs/<id>.json` is written at each
//! step (beside its working directory, not in it), so jobs
//! outlive the coordinator.

use crate::api::{
    Backpressure, ChannelInfo, CheckpointCounts, CheckpointDetail, CheckpointInfo, Checkpoints, ComponentRef,
    ErrorItem, ExceptionInfo, Exceptions, JobDetail, JobInfo, JobList, JobState, JobStateInfo, KeyStateInfo, Metrics,
    NamedStateInfo, Operation, OperationStatus, OperatorListInfo, OperatorStateInfo, RateHistory, SavepointBody,
    SavepointOperation, SpecCheck, SpecProblem, SubmitRequest, Submitted, SubtaskInfo, TaskCheckpointInfo, Triggered,
    UserMetricInfo, VertexInfo, VertexRates,
};
use crate::blobs::{is_sha256, write_atomic};
use crate::worker::{Deployment, Execution};
use crate::{ApiError, Coordinator, lock, now_ms, paths, random_id};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weir_core::restart::{RestartDecision, RestartTracker};
use weir_core::spec::{Spec, StateBackendKind};
use weir_runtime::{
    CheckpointStats, CheckpointStatus, CheckpointStore, JobStatus, JobSummary, Savepoint, SavepointRequest,
    SubtaskMetrics, TaskCheckpointStats, TaskError, VertexMetrics,
};
use weir_wasm::{UserMetric, World};

/// Every job the coordinator knows, by id.
#[derive(Default)]
pub(crate) struct Jobs {
    map: BTreeMap<String, Arc<JobMaster>>,
}

/// What is persisted of an ended job.
#[derive(serde::Serialize, serde::Deserialize)]
struct JobRecord {
    detail: JobDetail,
    exceptions: Vec<ExceptionInfo>,
}

impl Jobs {
    /// The ended jobs recorded under `dir`; a job that had not ended when
    /// the coordinator stopped is shown FAILED, saying so.
    pub fn load(dir: &Path) -> Jobs {
        let mut jobs = Jobs::default();
        let Ok(entries) = std::fs::read_dir(dir) else { return jobs };
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else { continue };
            match serde_json::from_slice::<JobRecord>(&bytes) {
                Ok(r) if r.detail.id == id => {
                    let job = JobMaster::ended(r);
                    jobs.map.insert(job.id.clone(), Arc::new(job));
                }
                Ok(_) => tracing::warn!("skipping job record {}: its id is not its file's name", path.display()),
                Err(e) => tracing::warn!("skipping job record {}: {e}", path.display()),
            }
        }
        jobs
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<JobMaster>> {
        self.map.values()
    }

    pub fn of_bundle(&self, bundle: &str) -> Vec<String> {
        self.map.values().filter(|j| j.bundle.as_deref() == Some(bundle)).map(|j| j.id.clone()).collect()
    }

    pub fn active_from_bundle(&self, bundle: &str) -> Vec<String> {
        let active = self.map.values().filter(|j| j.bundle.as_deref() == Some(bundle) && !j.state().is_terminal());
        active.map(|j| j.id.clone()).collect()
    }

    /// Blobs jobs that have not ended may still load.
    pub fn active_blobs(&self) -> Vec<String> {
        self.map.values().filter(|j| !j.state().is_terminal()).flat_map(|j| j.blobs.clone()).collect()
    }
}

/// One job: what it is, and how it is going.
pub(crate) struct JobMaster {
    id: String,
    /// Where its savepoints go unless a request says otherwise.
    savepoint_dir: Option<PathBuf>,
    bundle: Option<String>,
    /// Blobs it runs (components).
    blobs: Vec<String>,
    run: Mutex<Run>,
    changed: Condvar,
}

struct Run {
    detail: JobDetail,
    exceptions: Vec<ExceptionInfo>,
    errors: Vec<TaskError>,
    execution: Option<Arc<dyn Execution>>,
    cancel_requested: bool,
    /// The last sample of the metrics, for rates.
    sample: Option<(Instant, Vec<VertexMetrics>)>,
    summary: Option<JobSummary>,
    /// Cancellations asked for: trigger id → when.
    cancellations: HashMap<String, u64>,
    /// The job master is done: slots freed, record written.
    ended: bool,
    /// Errors taken from the current execution so far.
    exec_errors: usize,
    /// Savepoints asked for: trigger id → the savepoint.
    savepoints: HashMap<String, Arc<Savepoint>>,
    /// A stop-with-savepoint in progress.
    stopping: Option<Arc<Savepoint>>,
    /// Checkpoints of every execution so far, oldest first.
    checkpoints: Vec<CheckpointStats>,
    /// The rates of every sample of the last ten minutes.
    history: std::collections::VecDeque<RateSample>,
}

/// One sample of a job's rates: when, and per vertex (in job order)
/// records in and out per second, busy and back-pressured ms per second.
#[derive(Debug, Clone)]
struct RateSample {
    at_ms: u64,
    vertices: Vec<[f64; 4]>,
}

/// How long rates are kept for the dashboard's charts.
const HISTORY_MS: u64 = 10 * 60 * 1000;

impl Run {
    fn new(detail: JobDetail, exceptions: Vec<ExceptionInfo>, ended: bool) -> Run {
        Run {
            detail,
            exceptions,
            errors: Vec::new(),
            execution: None,
            cancel_requested: false,
            sample: None,
            summary: None,
            cancellations: HashMap::new(),
            ended,
            exec_errors: 0,
            savepoints: HashMap::new(),
            stopping: None,
            checkpoints: Vec::new(),
            history: std::collections::VecDeque::new(),
        }
    }

    fn set_state(&mut self, state: JobState) {
        if self.detail.state != state {
            self.detail.state = state;
            self.detail.timestamps.insert(state.name().to_owned(), now_ms());
            if state.is_terminal() {
                self.detail.end_time = Some(now_ms());
                self.still();
            }
        }
    }

    /// Nothing flows in an ended job: the last second's rates and times
    /// would say it still does.
    fn still(&mut self) {
        let rest = |m: &mut Metrics| {
            m.num_records_in_per_second = 0.0;
            m.num_records_out_per_second = 0.0;
            m.num_bytes_in_per_second = 0.0;
            m.num_bytes_out_per_second = 0.0;
            m.busy_time_ms_per_second = 0.0;
            m.idle_time_ms_per_second = 0.0;
            m.back_pressured_time_ms_per_second = 0.0;
        };
        for v in &mut self.detail.vertices {
            rest(&mut v.metrics);
            v.backpressure = Backpressure::Ok;
            for st in &mut v.subtasks {
                rest(&mut st.metrics);
                st.backpressure = Backpressure::Ok;
                for c in &mut st.channels {
                    c.back_pressured_time_ms_per_second = 0.0;
                    c.backpressure = Backpressure::Ok;
                }
            }
        }
    }

    /// Takes the errors of the current execution not taken yet (an
    /// execution's list only grows; a restart starts a new one).
    fn add_errors(&mut self, errors: Vec<TaskError>) {
        let ts = now_ms();
        let new = errors.len().saturating_sub(self.exec_errors);
        self.exec_errors = errors.len().max(self.exec_errors);
        for e in errors.into_iter().rev().take(new).rev() {
            self.exceptions.push(ExceptionInfo {
                // A job's own failure is its message; a task's names it.
                exception: if e.what == "job" { e.message.clone() } else { e.to_string() },
                kind: e.what.to_owned(),
                operator: e.vertex.clone(),
                subtask: e.subtask,
                record: e.record.clone(),
                timestamp: ts,
            });
            self.errors.push(e);
        }
    }

    /// Reads the execution's metrics into the vertices; with `sample`, and
    /// half a second or more since the last sample, the rates too.
    fn refresh(&mut self, sample: bool) {
        self.read_metrics(sample);
        if self.detail.state.is_terminal() {
            self.still();
        }
    }

    fn read_metrics(&mut self, sample: bool) {
        let Some(exec) = &self.execution else { return };
        // Checkpoint ids grow across executions: merge by id.
        for c in exec.checkpoints() {
            match self.checkpoints.iter_mut().rev().find(|x| x.id == c.id) {
                Some(x) => *x = c,
                None => self.checkpoints.push(c),
            }
        }
        if self.checkpoints.len() > 1000 {
            self.checkpoints.drain(..self.checkpoints.len() - 1000);
        }
        // Per-task parts of the last hundred only (the REST API's history).
        let old = self.checkpoints.len().saturating_sub(100);
        for c in self.checkpoints[..old].iter_mut().rev().take_while(|c| !c.parts.is_empty()) {
            c.parts = Default::default();
        }
        let now_metrics = exec.metrics();
        let now = Instant::now();
        let last = match &self.sample {
            Some((at, last)) if sample && now - *at >= Duration::from_millis(500) => {
                Some(((now - *at).as_secs_f64(), last))
            }
            _ => None,
        };
        let rated = last.is_some();
        for (vi, (v, m)) in self.detail.vertices.iter_mut().zip(&now_metrics).enumerate() {
            let mut subtasks = Vec::with_capacity(m.subtasks.len());
            for (si, s) in m.subtasks.iter().enumerate() {
                let mut x = v.subtasks.get(si).map(|x| x.metrics.clone()).unwrap_or_default();
                let mut channels = v.subtasks.get(si).map(|x| x.channels.clone()).unwrap_or_default();
                totals(&mut x, s);
                if let Some((secs, p)) = last.and_then(|(secs, l)| Some((secs, l.get(vi)?.subtasks.get(si)?))) {
                    rates(&mut x, s, p, secs);
                    channels = channel_rates(s, p, secs);
                }
                let backpressure = Backpressure::of(x.back_pressured_time_ms_per_second);
                let user_metrics = s.user.iter().map(|(name, m)| user_metric(name, m)).collect();
                subtasks.push(SubtaskInfo { subtask: s.subtask, backpressure, metrics: x, user_metrics, channels });
            }
            v.metrics = aggregate(&subtasks);
            v.user_metrics = aggregate_user(&subtasks);
            v.backpressure = Backpressure::of(v.metrics.back_pressured_time_ms_per_second);
            v.subtasks = subtasks;
        }
        if rated {
            let at_ms = now_ms();
            let vertices = self
                .detail
                .vertices
                .iter()
                .map(|v| {
                    let m = &v.metrics;
                    [
                        m.num_records_in_per_second,
                        m.num_records_out_per_second,
                        m.busy_time_ms_per_second,
                        m.back_pressured_time_ms_per_second,
                    ]
                })
                .collect();
            self.history.push_back(RateSample { at_ms, vertices });
            while self.history.front().is_some_and(|s| s.at_ms + HISTORY_MS < at_ms) {
                self.history.pop_front();
            }
        }
        // A new sample once the rates were taken over half a second or
        // more (the job master looks more often than that).
        if rated || self.sample.is_none() {
            self.sample = Some((now, now_metrics));
        }
    }
}

/// Copies a subtask's totals.
fn totals(x: &mut Metrics, s: &SubtaskMetrics) {
    x.num_records_in = s.records_in;
    x.num_records_out = s.records_out;
    x.num_bytes_in = s.bytes_in;
    x.num_bytes_out = s.bytes_out;
    x.current_input_watermark = s.input_watermark;
    x.current_output_watermark = s.output_watermark;
}

/// Rates from two samples of a subtask `secs` seconds apart.
fn rates(x: &mut Metrics, now: &SubtaskMetrics, then: &SubtaskMetrics, secs: f64) {
    let per_second = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    x.num_records_in_per_second = per_second(now.records_in, then.records_in);
    x.num_records_out_per_second = per_second(now.records_out, then.records_out);
    x.num_bytes_in_per_second = per_second(now.bytes_in, then.bytes_in);
    x.num_bytes_out_per_second = per_second(now.bytes_out, then.bytes_out);
    if now.finished {
        // An ended task neither works nor waits.
        x.idle_time_ms_per_second = 0.0;
        x.back_pressured_time_ms_per_second = 0.0;
        x.busy_time_ms_per_second = 0.0;
        return;
    }
    let ms = |a: u64, b: u64| per_second(a, b) / 1e6;
    let (idle, bp) = (ms(now.idle_ns, then.idle_ns), ms(now.backpressured_ns, then.backpressured_ns));
    // Samples are not taken at the instants the clocks read: keep the
    // three within one second, in proportion.
    let scale = if idle + bp > 1000.0 { 1000.0 / (idle + bp) } else { 1.0 };
    x.idle_time_ms_per_second = idle * scale;
    x.back_pressured_time_ms_per_second = bp * scale;
    x.busy_time_ms_per_second = 1000.0 - x.idle_time_ms_per_second - x.back_pressured_time_ms_per_second;
}

/// Each channel's back-pressured time per second, from two samples of
/// its subtask `secs` seconds apart (a channel new since reads from 0).
fn channel_rates(now: &SubtaskMetrics, then: &SubtaskMetrics, secs: f64) -> Vec<ChannelInfo> {
    let before = |c: &weir_runtime::ChannelMetrics| {
        let same = |p: &&weir_runtime::ChannelMetrics| p.to == c.to && p.subtask == c.subtask;
        then.channels.iter().find(same).map_or(0, |p| p.backpressured_ns)
    };
    now.channels
        .iter()
        .map(|c| {
            let ms = if now.finished {
                0.0
            } else {
                (c.backpressured_ns.saturating_sub(before(c)) as f64 / secs / 1e6).min(1000.0)
            };
            ChannelInfo {
                to: c.to.clone(),
                subtask: c.subtask,
                remote: c.remote,
                back_pressured_time_ms_per_second: ms,
                backpressure: Backpressure::of(ms),
            }
        })
        .collect()
}

fn user_metric(name: &str, m: &UserMetric) -> UserMetricInfo {
    let (kind, value) = match *m {
        UserMetric::Counter(c) => ("counter", c as f64),
        UserMetric::Gauge(g) => ("gauge", g),
    };
    UserMetricInfo { name: name.to_owned(), kind: kind.to_owned(), value }
}

/// A vertex's own metrics from its subtasks': counters summed, gauges the
/// highest.
fn aggregate_user(subtasks: &[SubtaskInfo]) -> Vec<UserMetricInfo> {
    let mut by_name: BTreeMap<&str, UserMetricInfo> = BTreeMap::new();
    for m in subtasks.iter().flat_map(|s| &s.user_metrics) {
        match by_name.get_mut(m.name.as_str()) {
            Some(a) if a.kind == "counter" => a.value += m.value,
            Some(a) => a.value = a.value.max(m.value),
            None => {
                by_name.insert(&m.name, m.clone());
            }
        }
    }
    by_name.into_values().collect()
}

/// A vertex's metrics from its subtasks'.
fn aggregate(subtasks: &[SubtaskInfo]) -> Metrics {
    let mut m = Metrics {
        current_input_watermark: i64::MAX,
        current_output_watermark: i64::MAX,
        idle_time_ms_per_second: f64::MAX,
        ..Metrics::default()
    };
    for s in subtasks.iter().map(|s| &s.metrics) {
        m.num_records_in += s.num_records_in;
        m.num_records_out += s.num_records_out;
        m.num_bytes_in += s.num_bytes_in;
        m.num_bytes_out += s.num_bytes_out;
        m.num_records_in_per_second += s.num_records_in_per_second;
        m.num_records_out_per_second += s.num_records_out_per_second;
        m.num_bytes_in_per_second += s.num_bytes_in_per_second;
        m.num_bytes_out_per_second += s.num_bytes_out_per_second;
        m.current_input_watermark = m.current_input_watermark.min(s.current_input_watermark);
        m.current_output_watermark = m.current_output_watermark.min(s.current_output_watermark);
        m.busy_time_ms_per_second = m.busy_time_ms_per_second.max(s.busy_time_ms_per_second);
        m.idle_time_ms_per_second = m.idle_time_ms_per_second.min(s.idle_time_ms_per_second);
        m.back_pressured_time_ms_per_second =
            m.back_pressured_time_ms_per_second.max(s.back_pressured_time_ms_per_second);
    }
    if subtasks.is_empty() {
        return Metrics::default();
    }
    m
}

fn to_state(s: JobStatus) -> JobState {
    match s {
        JobStatus::Running => JobState::Running,
        JobStatus::Failing => JobState::Failing,
        JobStatus::Failed => JobState::Failed,
        JobStatus::Cancelling => JobState::Cancelling,
        JobStatus::Canceled => JobState::Canceled,
        JobStatus::Finished => JobState::Finished,
    }
}

impl JobMaster {
    fn ended(r: JobRecord) -> JobMaster {
        let mut detail = r.detail;
        let mut exceptions = r.exceptions;
        if !detail.state.is_terminal() {
            let message = "the coordinator stopped while the job ran; submit it again".to_owned();
            let now = now_ms();
            exceptions.push(ExceptionInfo {
                exception: message.clone(),
                kind: "job".into(),
                operator: detail.name.clone(),
                subtask: 0,
                record: None,
                timestamp: now,
            });
            detail.status_message = Some(message);
            detail.state = JobState::Failed;
            detail.end_time = Some(now);
            detail.timestamps.insert(JobState::Failed.name().to_owned(), now);
        }
        JobMaster {
            id: detail.id.clone(),
            savepoint_dir: None,
            bundle: detail.bundle.clone(),
            blobs: Vec::new(),
            run: Mutex::new(Run::new(detail, exceptions, true)),
            changed: Condvar::new(),
        }
    }

    /// A job CREATED now for `placed`, in `wd`.
    fn new(id: &str, placed: &Placed, wd: &Path, savepoint_dir: Option<PathBuf>) -> JobMaster {
        let plan = weir_runtime::plan(&placed.spec);
        let slots = plan.iter().map(|v| v.parallelism).max().unwrap_or(1);
        let now = now_ms();
        let detail = JobDetail {
            id: id.to_owned(),
            name: placed.name.clone(),
            state: JobState::Created,
            status_message: None,
            timestamps: BTreeMap::from([(JobState::Created.name().to_owned(), now)]),
            start_time: now,
            end_time: None,
            duration: 0,
            bundle: placed.bundle.clone(),
            parallelism: placed.spec.parallelism,
            max_parallelism: placed.spec.max_parallelism,
            slots,
            working_dir: wd.display().to_string(),
            restarts: 0,
            vertices: plan
                .into_iter()
                .map(|v| VertexInfo {
                    id: v.id,
                    kind: v.kind.to_owned(),
                    parallelism: v.parallelism,
                    inputs: v.inputs,
                    backpressure: Backpressure::Ok,
                    metrics: Metrics::default(),
                    user_metrics: Vec::new(),
                    subtasks: Vec::new(),
                })
                .collect(),
        };
        JobMaster {
            id: id.to_owned(),
            savepoint_dir,
            bundle: placed.bundle.clone(),
            blobs: placed.blobs.clone(),
            run: Mutex::new(Run::new(detail, Vec::new(), false)),
            changed: Condvar::new(),
        }
    }

    pub fn state(&self) -> JobState {
        lock(&self.run).detail.state
    }

    fn detail(&self) -> JobDetail {
        let mut run = lock(&self.run);
        run.refresh(false);
        let mut d = run.detail.clone();
        d.duration = d.end_time.unwrap_or_else(now_ms).saturating_sub(d.start_time);
        d
    }

    fn info(&self) -> JobInfo {
        let d = lock(&self.run).detail.clone();
        JobInfo {
            id: d.id,
            name: d.name,
            state: d.state,
            start_time: d.start_time,
            end_time: d.end_time,
            duration: d.end_time.unwrap_or_else(now_ms).saturating_sub(d.start_time),
            bundle: d.bundle,
        }
    }

    /// Writes its record, `<data-dir>/jobs/<id>.json`.
    fn persist(&self, data_dir: &Path) {
        let run = lock(&self.run);
        let record = JobRecord { detail: run.detail.clone(), exceptions: run.exceptions.clone() };
        drop(run);
        let json = serde_json::to_vec_pretty(&record).expect("invariant: job records serialize");
        if let Err(e) = write_atomic(&data_dir.join("jobs").join(format!("{}.json", self.id)), &json) {
            tracing::warn!("cannot record job {}: {e}", self.id);
        }
    }
}

/// A job submitted in this process (local mode): wait for its end.
pub struct JobWatch {
    job: Arc<JobMaster>,
}

impl JobWatch {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.job.id
    }

    /// Waits for the job to end: what it did, or its first error
    /// (`None`: it was cancelled).
    pub fn wait(&self) -> Result<JobSummary, Option<TaskError>> {
        let run = lock(&self.job.run);
        let run = self.job.changed.wait_while(run, |r| !r.ended).unwrap_or_else(|p| p.into_inner());
        match (&run.summary, run.errors.first()) {
            // A job that recovered from failures and finished succeeded.
            (Some(s), _) if run.detail.state == JobState::Finished => Ok(s.clone()),
            (_, Some(e)) => Err(Some(e.clone())),
            (Some(s), None) => Ok(s.clone()),
            (None, None) => Err(None),
        }
    }
}

/// Where a job's checkpoints go, and whether it resumes from them.
#[derive(Clone)]
struct CheckpointPlan {
    /// The folder under the spec's `checkpoints: dir`.
    name: String,
    /// Start from the latest completed checkpoint there, if any.
    resume: bool,
    /// Start from this savepoint (or retained checkpoint).
    from_savepoint: Option<PathBuf>,
    /// Drop restored state of operators the job no longer has.
    allow_non_restored_state: bool,
}

/// A number in `[0, 1)` (the restart delay's jitter).
fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("invariant: the operating system provides random bytes");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A submission checked and placed, ready to become a job.
struct Placed {
    spec: Spec,
    name: String,
    checkpoints: CheckpointPlan,
    bundle: Option<String>,
    blobs: Vec<String>,
    /// Sample data to copy into the working directory: (blob, relative path).
    data: Vec<(String, String)>,
}

fn problem(place: impl Into<String>, message: impl Into<String>) -> ErrorItem {
    ErrorItem { place: place.into(), message: message.into() }
}

impl Coordinator {
    /// Checks a submission and starts a job for it.
    pub fn submit(self: &Arc<Self>, req: SubmitRequest) -> Result<Submitted, ApiError> {
        let mut placed = self.place(req)?;
        let id = random_id();
        // Each submission's checkpoints are its own.
        placed.checkpoints.name = id.clone();
        let job = self.start_job(&id, placed, true)?;
        Ok(Submitted { id: job.id.clone() })
    }

    /// Runs a spec already read and resolved (local mode: `weir run`),
    /// unconfined: fresh, from its latest checkpoint (`resume`), or from a
    /// savepoint (or retained checkpoint) folder. Its checkpoints go under
    /// the spec's name, so `resume` finds those of an earlier run of the
    /// same spec.
    pub fn run_spec_from(
        self: &Arc<Self>,
        spec: Spec,
        resume: bool,
        from_savepoint: Option<PathBuf>,
        allow_non_restored_state: bool,
    ) -> Result<JobWatch, ApiError> {
        let name = spec.name.clone().unwrap_or_else(|| "job".to_owned());
        let checkpoints = CheckpointPlan { name: name.clone(), resume, from_savepoint, allow_non_restored_state };
        let placed = Placed { spec, name, checkpoints, bundle: None, blobs: Vec::new(), data: Vec::new() };
        let id = random_id();
        Ok(JobWatch { job: self.start_job(&id, placed, false)? })
    }

    /// Parses and validates a spec without running it: its problems at
    /// their lines, or the components a submission must map.
    pub fn check_spec(&self, text: &str) -> SpecCheck {
        match Spec::parse(Path::new("spec.yaml"), text) {
            Ok(spec) => {
                let mut components: Vec<ComponentRef> = Vec::new();
                for op in &spec.operators {
                    for (path, world) in op.components() {
                        let path = path.display().to_string();
                        if !components.iter().any(|c| c.path == path) {
                            components.push(ComponentRef { path, world: world.to_owned() });
                        }
                    }
                }
                SpecCheck { valid: true, problems: Vec::new(), name: spec.name.clone(), components }
            }
            Err(e) => SpecCheck {
                valid: false,
                problems: vec![SpecProblem {
                    line: e.location.map(|l| l.0),
                    column: e.location.map(|l| l.1),
                    message: e.message,
                }],
                name: None,
                components: Vec::new(),
            },
        }
    }

    fn place(&self, req: SubmitRequest) -> Result<Placed, ApiError> {
        let mut problems = Vec::new();
        let (text, components, data, bundle) = match (&req.bundle, &req.spec) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("request", "give `bundle` or `spec`, not both"));
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "request",
                    "give `bundle` (a stored bundle's id) or `spec` (YAML text, with `components`)",
                ));
            }
            (Some(id), None) => {
                if !req.components.is_empty() {
                    return Err(ApiError::bad_request(
                        "components",
                        "a bundle brings its components; `components` goes with `spec`",
                    ));
                }
                let r = self.bundle_record(id)?;
                let mut components: HashMap<String, (String, String)> = HashMap::new();
                for c in &r.manifest.components {
                    for name in &c.refs {
                        components.insert(name.clone(), (c.sha256.clone(), c.world.clone()));
                    }
                }
                let data = r
                    .manifest
                    .data
                    .iter()
                    .map(|d| (d.sha256.clone(), d.path.strip_prefix("files/").unwrap_or(&d.path).to_owned()))
                    .collect();
                (r.spec_text.clone(), components, data, Some(id.clone()))
            }
            (None, Some(text)) => {
                let mut components = HashMap::new();
                for (name, sha) in &req.components {
                    if !is_sha256(sha) || self.blob_path(sha).is_none() {
                        problems.push(problem(
                            format!("components/{name}"),
                            format!("`{sha}` is not a stored component (upload it with POST /v1/components)"),
                        ));
                    } else {
                        components.insert(name.clone(), (sha.clone(), String::new()));
                    }
                }
                (text.clone(), components, Vec::new(), None)
            }
        };
        let mut spec = match Spec::parse(Path::new("spec.yaml"), &text) {
            Ok(s) => s,
            Err(e) => {
                let place = match e.location {
                    Some((line, column)) => format!("spec.yaml:{line}:{column}"),
                    None => "spec.yaml".to_owned(),
                };
                problems.push(problem(place, e.message));
                return Err(ApiError::problems(problems));
            }
        };
        if let Some(p) = req.parallelism
            && let Err(e) = spec.set_parallelism(p)
        {
            problems.push(problem("parallelism", e));
        }
        for (op, config) in &req.config {
            match spec.operators.iter_mut().find(|o| &o.id == op) {
                Some(o) => o.config = Some(config.clone()),
                None => problems.push(problem(format!("config/{op}"), format!("the spec has no operator `{op}`"))),
            }
        }
        match req.state_backend.as_deref() {
            None => {}
            Some("memory") => spec.state.backend = StateBackendKind::Memory,
            Some("lsm") => spec.state.backend = StateBackendKind::Lsm,
            Some(other) => problems.push(problem("state-backend", format!("`{other}` is not `memory` or `lsm`"))),
        }
        if let Some(mb) = req.state_memory_mb {
            if mb == 0 || mb > 1 << 30 {
                problems.push(problem("state-memory-mb", "must be between 1 and 1073741824"));
            }
            spec.state.memory_mb = mb;
        }
        if let Err(e) = spec.check() {
            problems.push(problem("spec.yaml", e));
        }
        // Components: every one the spec names, from the blob store, of
        // the world the spec uses it as.
        let mut blobs = Vec::new();
        let uses: Vec<(String, &'static str)> = spec
            .operators
            .iter()
            .flat_map(|o| o.components().into_iter().map(|(p, w)| (p.to_string_lossy().into_owned(), w)))
            .collect();
        for (name, world) in &uses {
            match components.get(name) {
                None => problems.push(problem(
                    format!("component {name}"),
                    if bundle.is_some() {
                        "the bundle's manifest does not hold it".to_owned()
                    } else {
                        format!("give its uploaded SHA-256 in `components` under `{name}`")
                    },
                )),
                Some((sha, declared)) if declared.is_empty() => {
                    let path = self.blobs.path(sha);
                    let w = World::named(world).expect("invariant: the spec names only worlds that exist");
                    if let Err(e) = self.check_rt.load(&path, w) {
                        problems.push(problem(format!("component {name}"), e.to_string()));
                    }
                    blobs.push(sha.clone());
                }
                Some((sha, declared)) => {
                    if declared != world {
                        problems.push(problem(
                            format!("component {name}"),
                            format!(
                                "the bundle holds it as a `{declared}` component, and the spec uses it as `{world}`"
                            ),
                        ));
                    }
                    blobs.push(sha.clone());
                }
            }
        }
        for p in spec.component_paths_mut() {
            if let Some((sha, _)) = components.get(&*p.to_string_lossy()) {
                *p = self.blobs.path(sha);
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::problems(problems));
        }
        let name = req.name.clone().or_else(|| spec.name.clone()).unwrap_or_else(|| "job".to_owned());
        spec.name = Some(name.clone());
        blobs.sort();
        blobs.dedup();
        let from_savepoint = match req.from_savepoint.as_deref() {
            None => None,
            Some(p) => Some(self.savepoint_path(p, "from-savepoint")?),
        };
        let checkpoints = CheckpointPlan {
            name: String::new(),
            resume: false,
            from_savepoint,
            allow_non_restored_state: req.allow_non_restored_state,
        };
        Ok(Placed { spec, name, checkpoints, bundle, blobs, data })
    }

    /// Makes the job's working directory, places the spec's relative
    /// paths and sample data in it (when `place`; confined when the
    /// coordinator confines jobs), and starts its job master.
    fn start_job(self: &Arc<Self>, id: &str, mut placed: Placed, place: bool) -> Result<Arc<JobMaster>, ApiError> {
        let wd = self.config.data_dir.join("jobs").join(id);
        if place {
            let spec = &mut placed.spec;
            if spec.state.path.is_none() {
                spec.state.path = Some(PathBuf::from("."));
            }
            spec.resolve_paths(&wd);
            if self.config.confine {
                self.confine(spec, &wd)?;
            }
        }
        // Savepoints go to the coordinator's folder for them; under `weir
        // run`, beside the spec's checkpoints.
        let savepoint_dir = if self.config.confine {
            Some(self.config.data_dir.join("savepoints"))
        } else {
            placed.spec.checkpoints.as_ref().map(|c| c.dir.join("savepoints"))
        };
        let job = Arc::new(JobMaster::new(id, &placed, &wd, savepoint_dir));
        // Registered before anything is placed, so a bundle it runs from
        // cannot be deleted under it (deletion takes the same locks).
        {
            let mut jobs = lock(&self.jobs);
            let bundles = lock(&self.bundles);
            if let Some(b) = &placed.bundle
                && !bundles.contains_key(b)
            {
                return Err(ApiError::not_found("bundle", format!("bundle `{b}` was deleted meanwhile")));
            }
            if let Some(sha) = placed.blobs.iter().find(|sha| !self.blobs.contains(sha)) {
                return Err(ApiError::conflict("components", format!("component `{sha}` was deleted meanwhile")));
            }
            drop(bundles);
            jobs.map.insert(id.to_owned(), job.clone());
        }
        let unregister = |e: ApiError| {
            lock(&self.jobs).map.remove(id);
            let _ = std::fs::remove_dir_all(&wd);
            e
        };
        std::fs::create_dir_all(&wd)
            .map_err(|e| unregister(ApiError::internal("job", format!("cannot make its working directory: {e}"))))?;
        if place {
            for (sha, rel) in &placed.data {
                self.copy_blob(sha, &wd.join(rel)).map_err(|e| {
                    unregister(ApiError::internal(rel.clone(), format!("cannot place sample data: {e}")))
                })?;
            }
            placed.spec.check_file_conflicts().map_err(|e| unregister(ApiError::bad_request("spec.yaml", e)))?;
        }
        job.persist(&self.config.data_dir);
        let coordinator = self.clone();
        let master = job.clone();
        let spec = placed.spec;
        let name = placed.name;
        let checkpoints = placed.checkpoints;
        let job_wd = wd.clone();
        std::thread::Builder::new()
            .name(format!("weir-job-{}", id.get(..8).unwrap_or(id)))
            .spawn(move || {
                let wd2 = job_wd.clone();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    coordinator.run_job(&master, spec, job_wd, checkpoints)
                }));
                if let Err(panic) = r {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    let mut run = lock(&master.run);
                    let message = format!("internal error (a bug in Weir, please report it): {message}");
                    let operator = run.detail.name.clone();
                    run.exceptions.push(ExceptionInfo {
                        exception: message.clone(),
                        kind: "job".into(),
                        operator,
                        subtask: 0,
                        record: None,
                        timestamp: now_ms(),
                    });
                    run.detail.status_message = Some(message);
                    let exec = run.execution.take();
                    drop(run);
                    // Its tasks stop before its slots go to another job.
                    if let Some(exec) = exec {
                        exec.cancel();
                        let _ = exec.summary();
                    }
                    lock(&master.run).set_state(JobState::Failed);
                    let held: Vec<usize> = {
                        let slots = lock(&coordinator.slots);
                        (0..slots.held.len()).filter(|&w| slots.held[w].contains_key(&master.id)).collect()
                    };
                    coordinator.end_job(&master, &wd2, Some(&held));
                }
            })
            .map_err(|e| {
                let _ = std::fs::remove_file(self.record_path(id));
                unregister(ApiError::internal("job", format!("cannot start its job master: {e}")))
            })?;
        tracing::info!("job {id} ({name}) submitted");
        Ok(job)
    }

    /// Refuses a spec whose files lie outside the job's working directory
    /// and the allowed folders, or inside the coordinator's data directory
    /// (but for the job's own folder), or that name `..`.
    fn confine(&self, spec: &Spec, wd: &Path) -> Result<(), ApiError> {
        let own = paths::real(wd);
        let data = paths::real(&self.config.data_dir);
        let mut roots = vec![own.clone()];
        roots.extend(self.config.allow_paths.iter().map(|p| paths::real(p)));
        let mut problems = Vec::new();
        for (what, p) in spec.data_paths() {
            let dots = p.components().any(|c| c == std::path::Component::ParentDir);
            let real = paths::real(p);
            let message = if dots {
                format!("{} has a `..` part: name the file without one", p.display())
            } else if !roots.iter().any(|r| real.starts_with(r)) {
                format!(
                    "{} is outside the job's working directory and the folders the coordinator allows; use a path \
                     relative to the working directory, or start the coordinator with `--allow-path` for its folder",
                    p.display()
                )
            } else if real.starts_with(&data) && !real.starts_with(&own) {
                format!("{} is inside the coordinator's data directory, which jobs may not touch", p.display())
            } else {
                continue;
            };
            problems.push(problem(what, message));
        }
        // Object storage is allowed by name only: `--allow-path s3://bucket/prefix`.
        if let Some(c) = spec.checkpoints.as_ref().filter(|c| c.is_object_storage()) {
            let url = c.dir.to_string_lossy();
            let allowed =
                self.config.allow_paths.iter().filter_map(|p| p.to_str()).filter(|p| p.contains("://")).any(|p| {
                    let p = p.trim_end_matches('/');
                    url == p || url.starts_with(&format!("{p}/"))
                });
            if !allowed {
                problems.push(problem(
                    "checkpoints `dir`".to_owned(),
                    format!(
                        "{url} is in object storage the coordinator does not allow; start it with `--allow-path {url}` \
                         (or a prefix of it)"
                    ),
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ApiError::problems(problems)) }
    }

    /// Where the record of job `id` is kept (beside its working directory,
    /// not in it: the job cannot write it).
    fn record_path(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("jobs").join(format!("{id}.json"))
    }

    /// The job master: slots, deployment, watching, restarts from the
    /// latest checkpoint under the restart strategy, the end.
    fn run_job(&self, job: &JobMaster, spec: Spec, wd: PathBuf, checkpoints: CheckpointPlan) {
        let need = lock(&job.run).detail.slots;
        // Spread over the workers with a data plane when it needs more
        // slots than one has free, or there are several.
        let spreadable = true;
        let Some(mut placed) = self.acquire_slots(job, need, spreadable) else {
            self.end_job(job, &wd, None);
            return;
        };
        if lock(&job.run).cancel_requested {
            lock(&job.run).set_state(JobState::Canceled);
            self.end_job(job, &wd, Some(&placed));
            return;
        }
        let fail = |message: String| {
            let mut run = lock(&job.run);
            let name = run.detail.name.clone();
            run.add_errors(vec![TaskError::job(&name, message.clone())]);
            run.detail.status_message = Some(message);
            run.set_state(JobState::Failed);
        };
        let store = match spec.checkpoints.as_ref().map(|c| CheckpointStore::new(&c.dir.join(&checkpoints.name))) {
            None => None,
            Some(Ok(store)) => Some(store),
            Some(Err(e)) => {
                fail(e);
                self.end_job(job, &wd, Some(&placed));
                return;
            }
        };
        // A fresh start restarts only from its own checkpoints, never from
        // an earlier run's in the same folder.
        let floor = match store.as_ref().filter(|_| !checkpoints.resume).map(CheckpointStore::next_id) {
            None => 0,
            Some(Ok(next)) => next,
            Some(Err(e)) => {
                fail(e);
                self.end_job(job, &wd, Some(&placed));
                return;
            }
        };
        let mut initial = None;
        if let Some(path) = &checkpoints.from_savepoint {
            match weir_runtime::load_from(path) {
                Ok(r) => {
                    tracing::info!("job {} starts from savepoint {}", job.id, path.display());
                    initial = Some(Arc::new(r));
                }
                Err(e) => {
                    fail(e);
                    self.end_job(job, &wd, Some(&placed));
                    return;
                }
            }
        }
        let mut restore = initial.clone();
        if checkpoints.resume {
            let started_reading = Instant::now();
            match store.as_ref().map(CheckpointStore::latest) {
                None | Some(Ok(None)) => {}
                Some(Ok(Some(r))) => {
                    tracing::info!(
                        "job {} resumes from checkpoint {} (read and checked in {} ms)",
                        job.id,
                        r.path.display(),
                        started_reading.elapsed().as_millis()
                    );
                    restore = Some(Arc::new(r));
                }
                Some(Err(e)) => {
                    fail(e);
                    self.end_job(job, &wd, Some(&placed));
                    return;
                }
            }
        }
        let mut restarts = RestartTracker::new(spec.restart_strategy());
        let started = Instant::now();
        // What a restart restores: the latest checkpoint of this run, else
        // the savepoint it started from, else nothing. `Err`: the job failed.
        let reload = |placed: &[usize]| match store.as_ref().map(|s| s.latest_since(floor)) {
            None | Some(Ok(None)) => Ok(initial.clone()),
            Some(Ok(Some(r))) => Ok(Some(Arc::new(r))),
            Some(Err(e)) => {
                fail(e);
                self.end_job(job, &wd, Some(placed));
                Err(())
            }
        };
        // After a failure: restart (what to restore), or `None`: the job ended.
        let again = |run: std::sync::MutexGuard<'_, Run>, restarts: &mut RestartTracker, placed: &[usize]| {
            if !self.restart_after_failure(job, run, restarts, started, &wd, placed) {
                return None;
            }
            reload(placed).ok()
        };
        loop {
            if !self.workers_alive(&placed) {
                // A worker of it was lost: the slots of others, once free.
                self.release_slots(job, &placed);
                match self.acquire_slots(job, need, spreadable) {
                    Some(p) => placed = p,
                    None => {
                        self.end_job(job, &wd, None);
                        return;
                    }
                }
            }
            let deployer = self.deployer(&job.id, &placed);
            let deployment = Deployment {
                job: job.id.clone(),
                spec: spec.clone(),
                working_dir: wd.clone(),
                checkpoint_name: checkpoints.name.clone(),
                restore: restore.take(),
                allow_non_restored_state: checkpoints.allow_non_restored_state,
                spread: None,
                checkpoints: None,
            };
            let exec = match deployer.deploy(deployment) {
                Ok(exec) => exec,
                Err(errors) if !deployer.alive() && !lock(&job.run).cancel_requested => {
                    // Its worker was lost on the way: not the job's failure,
                    // so no restart is spent; the top of the loop finds
                    // other slots, and the restore is read again.
                    let mut run = lock(&job.run);
                    run.add_errors(errors);
                    run.exec_errors = 0;
                    drop(run);
                    match reload(&placed) {
                        Ok(r) => restore = r,
                        Err(()) => return,
                    }
                    continue;
                }
                Err(errors) => {
                    let mut run = lock(&job.run);
                    run.add_errors(errors);
                    run.exec_errors = 0;
                    // A job that ran before and fails to come back (say, a
                    // file it restores cannot be read now) goes through its
                    // restart strategy; one that never ran fails at once.
                    if restarts.restarts() > 0 && !run.cancel_requested {
                        match again(run, &mut restarts, &placed) {
                            Some(r) => restore = r,
                            None => return,
                        }
                        continue;
                    }
                    run.detail.status_message = run.exceptions.last().map(|e| e.exception.clone());
                    run.set_state(JobState::Failed);
                    drop(run);
                    self.end_job(job, &wd, Some(&placed));
                    return;
                }
            };
            {
                let mut run = lock(&job.run);
                run.execution = Some(exec.clone());
                run.detail.status_message = None;
                if run.cancel_requested {
                    exec.cancel();
                    run.set_state(JobState::Cancelling);
                } else {
                    run.set_state(JobState::Running);
                }
                job.changed.notify_all();
            }
            job.persist(&self.config.data_dir);
            let mut stopped_at = None;
            loop {
                exec.wait_timeout(Duration::from_millis(250));
                let mut run = lock(&job.run);
                // Read under the lock: a cancel taken meanwhile is seen.
                let status = exec.status();
                run.refresh(true);
                run.add_errors(exec.errors().into_iter().filter(|e| !e.is_cancellation()).collect());
                if status.is_terminal() {
                    break;
                }
                // Stop with a savepoint: once it is written and every sink
                // committed it, the job ends.
                if let Some(t) = run.stopping.clone() {
                    match t.outcome() {
                        Some(Ok(path)) if exec.committed(t.id()) => {
                            run.stopping = None;
                            stopped_at = Some(Ok(path));
                            exec.cancel();
                        }
                        Some(Err(e)) => {
                            run.stopping = None;
                            stopped_at = Some(Err(e));
                            exec.cancel();
                        }
                        _ => {}
                    }
                }
                if run.detail.state != JobState::Cancelling {
                    run.set_state(to_state(status));
                }
                job.changed.notify_all();
            }
            let summary = exec.summary();
            let status = exec.status();
            let mut run = lock(&job.run);
            run.refresh(true);
            run.add_errors(exec.errors().into_iter().filter(|e| !e.is_cancellation()).collect());
            run.execution = None;
            run.exec_errors = 0;
            if status == JobStatus::Failed && !run.cancel_requested {
                run.summary = summary;
                match again(run, &mut restarts, &placed) {
                    Some(r) => restore = r,
                    None => return,
                }
                continue;
            }
            run.summary = summary;
            run.detail.status_message = match status {
                JobStatus::Finished => None,
                _ => run.exceptions.last().map(|e| e.exception.clone()),
            };
            match stopped_at {
                Some(Ok(path)) => {
                    run.detail.status_message = Some(format!("stopped with a savepoint at {}", path.display()));
                    run.set_state(JobState::Finished);
                }
                Some(Err(e)) => {
                    let message = format!("stop with a savepoint failed, and the job was stopped: {e}");
                    let name = run.detail.name.clone();
                    run.add_errors(vec![TaskError::job(&name, message.clone())]);
                    run.detail.status_message = Some(message);
                    run.set_state(JobState::Failed);
                }
                None => run.set_state(to_state(status)),
            }
            drop(run);
            self.end_job(job, &wd, Some(&placed));
            return;
        }
    }

    /// After a failure: the restart strategy's answer. Waits out its delay
    /// and returns `true` (restart), or ends the job (FAILED, or CANCELED
    /// if cancelled while waiting) and returns `false`.
    fn restart_after_failure(
        &self,
        job: &JobMaster,
        mut run: std::sync::MutexGuard<'_, Run>,
        restarts: &mut RestartTracker,
        started: Instant,
        wd: &Path,
        placed: &[usize],
    ) -> bool {
        let cause = run.exceptions.last().map(|e| e.exception.clone()).unwrap_or_default();
        match restarts.on_failure(started.elapsed().as_millis() as u64, random_fraction()) {
            RestartDecision::RestartAfter(delay) => {
                run.set_state(JobState::Restarting);
                run.detail.restarts = restarts.restarts();
                run.detail.status_message = Some(format!(
                    "restart {} in {} ms, from the latest checkpoint, after: {cause}",
                    restarts.restarts(),
                    delay.as_millis()
                ));
                job.changed.notify_all();
                drop(run);
                tracing::warn!("job {} restarts in {} ms after: {cause}", job.id, delay.as_millis());
                if !self.wait_unless_cancelled(job, delay) {
                    lock(&job.run).set_state(JobState::Canceled);
                    self.end_job(job, wd, Some(placed));
                    return false;
                }
                true
            }
            RestartDecision::Fail(why) => {
                run.detail.status_message = Some(format!("{cause} (not restarted: {why})"));
                run.set_state(JobState::Failed);
                drop(run);
                self.end_job(job, wd, Some(placed));
                false
            }
        }
    }

    /// Waits `delay` unless the job is cancelled meanwhile (`false`).
    fn wait_unless_cancelled(&self, job: &JobMaster, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        let mut run = lock(&job.run);
        loop {
            if run.cancel_requested {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            run = job
                .changed
                .wait_timeout(run, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for `need` slots: on one worker, or (`spread`) one slot
    /// each on workers with a data plane in turn, when there are at least
    /// two of those with room. Per slot, the worker that holds it; `None`
    /// if the job was cancelled while it waited (it is then CANCELED) or
    /// no worker can ever have that many slots (it is then FAILED).
    fn acquire_slots(&self, job: &JobMaster, need: u32, spread: bool) -> Option<Vec<usize>> {
        let accepts_workers = self.accepts_workers.load(std::sync::atomic::Ordering::Acquire);
        let mut slots = lock(&self.slots);
        let most = slots.alive().map(|(_, w)| w.slots()).max().unwrap_or(0);
        if most < need && !accepts_workers {
            drop(slots);
            let mut run = lock(&job.run);
            let name = run.detail.name.clone();
            let message = format!(
                "the job needs {need} slots (its largest parallelism) on one worker, and the largest worker has \
                 {most}; lower its parallelism or start the coordinator with more `--slots`"
            );
            run.add_errors(vec![TaskError::job(&name, message.clone())]);
            run.detail.status_message = Some(message);
            run.set_state(JobState::Failed);
            return None;
        }
        loop {
            if lock(&job.run).cancel_requested {
                lock(&job.run).set_state(JobState::Canceled);
                return None;
            }
            let placed = if spread { spread_over(&slots, need) } else { None };
            let placed = placed
                .or_else(|| (0..slots.workers.len()).find(|&w| slots.free(w) >= need).map(|w| vec![w; need as usize]));
            if let Some(placed) = placed {
                for &w in &placed {
                    *slots.held[w].entry(job.id.clone()).or_default() += 1;
                }
                return Some(placed);
            }
            let free_now: u32 = (0..slots.workers.len()).map(|w| slots.free(w)).sum();
            let workers = slots.alive().count();
            let wanted = if spread { "free slots" } else { "a worker with free slots" };
            lock(&job.run).detail.status_message = Some(format!(
                "waiting for {need} {wanted} ({workers} workers, {free_now} slots free now{})",
                if accepts_workers {
                    format!("; start a worker with `weir worker --slots {need}`")
                } else {
                    String::new()
                }
            ));
            slots = self.slots_freed.wait_timeout(slots, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Whether every worker of `placed` is still there.
    fn workers_alive(&self, placed: &[usize]) -> bool {
        let slots = lock(&self.slots);
        placed.iter().all(|&w| slots.workers[w].alive())
    }

    /// Gives back the slots job `job` holds on the workers of `placed`.
    fn release_slots(&self, job: &JobMaster, placed: &[usize]) {
        let mut slots = lock(&self.slots);
        for &w in placed {
            slots.held[w].remove(&job.id);
        }
        self.slots_freed.notify_all();
    }

    /// What deploys job `id` on the workers of `placed`: the one worker,
    /// or the workers of a spread job together.
    fn deployer(&self, id: &str, placed: &[usize]) -> Arc<dyn crate::worker::Worker> {
        let slots = lock(&self.slots);
        let mut workers: Vec<usize> = placed.to_vec();
        workers.sort_unstable();
        workers.dedup();
        if let [one] = workers.as_slice() {
            return slots.workers[*one].clone();
        }
        let parts = workers.iter().map(|&w| slots.workers[w].clone()).collect();
        let slot_part = placed.iter().map(|w| workers.binary_search(w).unwrap_or(0)).collect();
        Arc::new(crate::cluster::spread::SpreadDeployer { job: id.to_owned(), parts, slot_part })
    }

    fn end_job(&self, job: &JobMaster, _wd: &Path, placed: Option<&[usize]>) {
        if let Some(placed) = placed {
            self.release_slots(job, placed);
        }
        job.persist(&self.config.data_dir);
        lock(&job.run).ended = true;
        job.changed.notify_all();
        tracing::info!("job {} ended {}", job.id, job.state().name());
    }

    fn job(&self, id: &str) -> Result<Arc<JobMaster>, ApiError> {
        lock(&self.jobs)
            .map
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("job", format!("no job `{id}` (GET /v1/jobs lists them)")))
    }

    /// Cancels every job that has not ended and waits up to `timeout`
    /// for them to stop (the coordinator is shutting down).
    pub fn shutdown(&self, timeout: Duration) {
        let all: Vec<Arc<JobMaster>> = lock(&self.jobs).all().cloned().collect();
        let active: Vec<&Arc<JobMaster>> = all.iter().filter(|j| !j.state().is_terminal()).collect();
        for j in &active {
            let _ = self.cancel(&j.id);
        }
        let deadline = Instant::now() + timeout;
        for j in active {
            let run = lock(&j.run);
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = j.changed.wait_timeout_while(run, left, |r| !r.ended);
        }
    }

    /// Every job, newest first.
    pub fn jobs(&self) -> JobList {
        let all: Vec<Arc<JobMaster>> = lock(&self.jobs).all().cloned().collect();
        let mut jobs: Vec<JobInfo> = all.iter().map(|j| j.info()).collect();
        jobs.sort_by(|a, b| b.start_time.cmp(&a.start_time).then_with(|| a.id.cmp(&b.id)));
        JobList { jobs }
    }

    /// A job in full, its metrics as of now.
    pub fn job_detail(&self, id: &str) -> Result<JobDetail, ApiError> {
        Ok(self.job(id)?.detail())
    }

    /// One vertex of a job.
    pub fn vertex(&self, id: &str, vertex: &str) -> Result<VertexInfo, ApiError> {
        let d = self.job_detail(id)?;
        d.vertices.into_iter().find(|v| v.id == vertex).ok_or_else(|| {
            ApiError::not_found("vertex", format!("job `{id}` has no vertex `{vertex}` (GET /v1/jobs/{id} lists them)"))
        })
    }

    /// A job's rates over the last ten minutes, per vertex: the samples
    /// taken after `since` (epoch ms; all when 0).
    pub fn rate_history(&self, id: &str, since: u64) -> Result<RateHistory, ApiError> {
        let job = self.job(id)?;
        let mut run = lock(&job.run);
        run.refresh(false);
        let ids: Vec<String> = run.detail.vertices.iter().map(|v| v.id.clone()).collect();
        let mut out = RateHistory {
            timestamps: Vec::new(),
            vertices: ids.iter().map(|id| (id.clone(), VertexRates::default())).collect(),
        };
        for s in run.history.iter().filter(|s| s.at_ms > since) {
            out.timestamps.push(s.at_ms);
            for (id, r) in ids.iter().zip(&s.vertices) {
                let v = out.vertices.get_mut(id).expect("invariant: every vertex has an entry");
                v.records_in_per_second.push(r[0]);
                v.records_out_per_second.push(r[1]);
                v.busy_time_ms_per_second.push(r[2]);
                v.back_pressured_time_ms_per_second.push(r[3]);
            }
        }
        Ok(out)
    }

    /// A job's failures.
    pub fn exceptions(&self, id: &str) -> Result<Exceptions, ApiError> {
        let job = self.job(id)?;
        let run = lock(&job.run);
        Ok(Exceptions { root_exception: run.exceptions.first().cloned(), exception_history: run.exceptions.clone() })
    }

    /// A job's checkpoints and savepoints.
    pub fn checkpoints(&self, id: &str) -> Result<Checkpoints, ApiError> {
        let job = self.job(id)?;
        let run = lock(&job.run);
        Ok(checkpoints_of(&run.checkpoints))
    }

    /// One checkpoint in a job's history (any execution), with every task's
    /// part.
    pub fn checkpoint(&self, id: &str, checkpoint: u64) -> Result<CheckpointDetail, ApiError> {
        let job = self.job(id)?;
        let run = lock(&job.run);
        let c = run.checkpoints.iter().rev().find(|c| c.id == checkpoint).ok_or_else(|| {
            ApiError::not_found(
                "checkpoint",
                format!(
                    "job `{id}` has no checkpoint {checkpoint} in its history \
                     (GET /v1/jobs/{id}/checkpoints lists those it keeps)"
                ),
            )
        })?;
        Ok(CheckpointDetail {
            checkpoint: checkpoint_info(c),
            tasks: c.parts.iter().map(task_checkpoint_info).collect(),
        })
    }

    /// The folder of a job's checkpoint `checkpoint` (default: its latest
    /// completed one, savepoints included).
    fn checkpoint_folder(&self, id: &str, checkpoint: Option<u64>) -> Result<(u64, PathBuf), ApiError> {
        let job = self.job(id)?;
        let mut run = lock(&job.run);
        // The newest: an older one may be gone (only `retain` are kept).
        run.refresh(false);
        let done = |c: &&CheckpointStats| c.status == CheckpointStatus::Completed;
        let found = match checkpoint {
            Some(n) => run.checkpoints.iter().rev().filter(done).find(|c| c.id == n),
            None => run.checkpoints.iter().rev().find(done),
        };
        match found {
            Some(c) => Ok((c.id, c.folder.clone())),
            None if checkpoint.is_some() => Err(ApiError::not_found(
                "checkpoint",
                format!("job `{id}` has no completed checkpoint {} in its history", checkpoint.unwrap_or(0)),
            )),
            None => Err(ApiError::not_found(
                "checkpoint",
                format!(
                    "job `{id}` has no completed checkpoint yet: state is read from checkpoints, so give the spec \
                     a `checkpoints:` section, or take a savepoint"
                ),
            )),
        }
    }

    /// What a job's latest completed checkpoint holds: operators, state
    /// names, keys per key group (`weir state PATH`); read once per
    /// checkpoint.
    pub fn job_state(&self, id: &str, checkpoint: Option<u64>) -> Result<JobStateInfo, ApiError> {
        let (newest, _) = self.checkpoint_folder(id, checkpoint)?;
        if let Some((job, n, info)) = &*lock(&self.state_read)
            && job == id
            && *n == newest
        {
            return Ok(info.clone());
        }
        let info = self.read_state(id, checkpoint)?;
        *lock(&self.state_read) = Some((id.to_owned(), info.checkpoint, info.clone()));
        Ok(info)
    }

    fn read_state(&self, id: &str, checkpoint: Option<u64>) -> Result<JobStateInfo, ApiError> {
        let r = self.read_checkpoint(id, checkpoint, |folder| weir_runtime::inspect(folder).map_err(|e| (false, e)))?.1;
        let operators = r
            .operators
            .into_iter()
            .map(|o| OperatorStateInfo {
                id: o.id,
                kind: o.kind,
                parallelism: o.parallelism,
                bytes: o.bytes,
                states: o
                    .keys
                    .into_iter()
                    .map(|(name, groups)| NamedStateInfo { name, keys: groups.values().sum(), keys_per_group: groups })
                    .collect(),
                lists: o
                    .lists
                    .into_iter()
                    .map(|(name, l)| OperatorListInfo { name, union: l.union, elements: l.elements })
                    .collect(),
                in_flight: o.in_flight,
            })
            .collect();
        Ok(JobStateInfo {
            checkpoint: r.checkpoint,
            path: r.path.display().to_string(),
            completed_at: r.completed_at_ms,
            max_parallelism: r.max_parallelism,
            operators,
        })
    }

    /// One key's state in operator `operator` of a job's latest completed
    /// checkpoint (`weir state PATH --operator ID --key K`).
    pub fn key_state(
        &self,
        id: &str,
        operator: &str,
        key: &str,
        checkpoint: Option<u64>,
    ) -> Result<KeyStateInfo, ApiError> {
        // An operator the checkpoint lacks, or one without keyed state, is
        // the request's mistake; files that went or broke are not.
        let (n, k) = self.read_checkpoint(id, checkpoint, |folder| {
            weir_runtime::key_state(folder, operator, key.as_bytes()).map_err(|e| {
                let asked = e.contains(&format!("has no operator `{operator}`")) || e.contains("keeps no keyed state");
                (asked, e)
            })
        })?;
        Ok(KeyStateInfo { checkpoint: n, key_group: k.group, states: k.states })
    }

    /// `read` of a job's checkpoint `checkpoint` (default: the latest
    /// completed). The latest may be removed while it is read, as newer
    /// ones are retained: then the one after it is read.
    fn read_checkpoint<T>(
        &self,
        id: &str,
        checkpoint: Option<u64>,
        read: impl Fn(&Path) -> Result<T, (bool, String)>,
    ) -> Result<(u64, T), ApiError> {
        let mut last = None;
        for _ in 0..3 {
            let (n, folder) = self.checkpoint_folder(id, checkpoint)?;
            match read(&folder) {
                Ok(t) => return Ok((n, t)),
                Err((true, e)) => {
                    let e = e.replace(&folder.display().to_string(), &format!("job `{id}`"));
                    return Err(ApiError::bad_request("operator", format!("checkpoint {n}: {e}")));
                }
                Err((false, e)) if last == Some(n) || checkpoint.is_some() => {
                    return Err(ApiError::conflict("checkpoint", format!("cannot read checkpoint {n}: {e}")));
                }
                Err((false, _)) => last = Some(n),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(ApiError::conflict(
            "checkpoint",
            format!("job `{id}`'s checkpoints were removed while they were read (newer ones retained); ask again"),
        ))
    }

    /// Asks a job to stop; poll the trigger id for when it has.
    pub fn cancel(&self, id: &str) -> Result<Triggered, ApiError> {
        let job = self.job(id)?;
        let mut run = lock(&job.run);
        if run.detail.state.is_terminal() {
            return Err(ApiError::conflict(
                "job",
                format!("job `{id}` has ended ({}): there is nothing to cancel", run.detail.state.name()),
            ));
        }
        run.cancel_requested = true;
        if let Some(exec) = &run.execution {
            exec.cancel();
        }
        run.set_state(JobState::Cancelling);
        drop(run);
        {
            // Under the slots lock: a job master waiting for slots
            // either sees the request or is already waiting to be woken.
            let _slots = lock(&self.slots);
            self.slots_freed.notify_all();
        }
        let trigger = random_id();
        lock(&job.run).cancellations.insert(trigger.clone(), now_ms());
        Ok(Triggered { request_id: trigger })
    }

    /// A folder a request names for savepoints (to write or to start
    /// from): under the coordinator's own savepoint folder or a folder it
    /// allows, when it confines jobs.
    fn savepoint_path(&self, p: &str, place: &str) -> Result<PathBuf, ApiError> {
        let path = PathBuf::from(p);
        if !self.config.confine {
            return Ok(path);
        }
        let own = self.config.data_dir.join("savepoints");
        let real = paths::real(&path);
        let dots = path.components().any(|c| c == std::path::Component::ParentDir);
        let allowed = std::iter::once(paths::real(&own))
            .chain(self.config.allow_paths.iter().map(|a| paths::real(a)))
            .any(|root| real.starts_with(root));
        if dots || !path.is_absolute() || !allowed {
            return Err(ApiError::bad_request(
                place,
                format!(
                    "{p} is not inside {} or a folder the coordinator allows (`--allow-path`); name an absolute \
                     path without `..` there",
                    own.display()
                ),
            ));
        }
        Ok(path)
    }

    /// Takes a savepoint of a running job (and stops it, if asked); poll
    /// the trigger id for its folder.
    pub fn savepoint(&self, id: &str, body: SavepointBody) -> Result<Triggered, ApiError> {
        let job = self.job(id)?;
        let dir = match body.target_directory.as_deref() {
            Some(p) => self.savepoint_path(p, "target-directory")?,
            None => job.savepoint_dir.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "job",
                    format!("job `{id}` takes no checkpoints: savepoints need a `checkpoints:` section in its spec"),
                )
            })?,
        };
        let mut run = lock(&job.run);
        let exec = match (&run.execution, run.detail.state) {
            (Some(exec), JobState::Running) if run.stopping.is_none() => exec.clone(),
            (_, state) => {
                return Err(ApiError::conflict(
                    "job",
                    format!(
                        "job `{id}` is {}{}: savepoints are taken of running jobs",
                        state.name(),
                        if run.stopping.is_some() { " and stopping with a savepoint" } else { "" }
                    ),
                ));
            }
        };
        let ticket =
            exec.savepoint(SavepointRequest { dir, stop: body.stop }).map_err(|e| ApiError::bad_request("job", e))?;
        if body.stop {
            run.stopping = Some(ticket.clone());
        }
        let trigger = random_id();
        run.savepoints.insert(trigger.clone(), ticket);
        Ok(Triggered { request_id: trigger })
    }

    /// Where a savepoint is.
    pub fn savepoint_status(&self, id: &str, trigger: &str) -> Result<SavepointOperation, ApiError> {
        let job = self.job(id)?;
        let run = lock(&job.run);
        let Some(t) = run.savepoints.get(trigger) else {
            return Err(ApiError::not_found("trigger", format!("job `{id}` has no savepoint `{trigger}`")));
        };
        let (status, location, failure_cause) = match t.outcome() {
            None if run.detail.state.is_terminal() || run.detail.state == JobState::Restarting => (
                OperationStatus::Completed,
                None,
                Some(format!("the job became {} before the savepoint was taken", run.detail.state.name())),
            ),
            None => (OperationStatus::InProgress, None, None),
            Some(Ok(p)) => (OperationStatus::Completed, Some(p.display().to_string()), None),
            Some(Err(e)) => (OperationStatus::Completed, None, Some(e)),
        };
        Ok(SavepointOperation { status, location, failure_cause, job_state: run.detail.state })
    }

    /// Where a cancellation is.
    pub fn cancellation(&self, id: &str, trigger: &str) -> Result<Operation, ApiError> {
        let job = self.job(id)?;
        let run = lock(&job.run);
        if !run.cancellations.contains_key(trigger) {
            return Err(ApiError::not_found("trigger", format!("job `{id}` has no cancellation `{trigger}`")));
        }
        let state = run.detail.state;
        Ok(Operation {
            status: if state.is_terminal() { OperationStatus::Completed } else { OperationStatus::InProgress },
            job_state: state,
            failure_cause: match state {
                JobState::Failed => Some(format!(
                    "the job failed before it could be cancelled: {}",
                    run.detail.status_message.as_deref().unwrap_or("see its exceptions")
                )),
                JobState::Finished => Some("the job finished before it could be cancelled".to_owned()),
                _ => None,
            },
        })
    }

    /// Records in and out per job and vertex, in Prometheus text format.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let all: Vec<Arc<JobMaster>> = lock(&self.jobs).all().cloned().collect();
        let mut out = String::new();
        let (total, free) = self.slot_counts();
        let _ = writeln!(out, "# TYPE weir_coordinator_slots_total gauge\nweir_coordinator_slots_total {total}");
        let _ = writeln!(out, "# TYPE weir_coordinator_slots_available gauge\nweir_coordinator_slots_available {free}");
        let details: Vec<JobDetail> = all.iter().map(|j| j.detail()).collect();
        type Family = (&'static str, &'static str, fn(&Metrics) -> f64);
        let families: [Family; 13] = [
            ("numRecordsIn", "counter", |m| m.num_records_in as f64),
            ("numRecordsOut", "counter", |m| m.num_records_out as f64),
            ("numRecordsInPerSecond", "gauge", |m| m.num_records_in_per_second),
            ("numRecordsOutPerSecond", "gauge", |m| m.num_records_out_per_second),
            ("numBytesIn", "counter", |m| m.num_bytes_in as f64),
            ("numBytesOut", "counter", |m| m.num_bytes_out as f64),
            ("numBytesInPerSecond", "gauge", |m| m.num_bytes_in_per_second),
            ("numBytesOutPerSecond", "gauge", |m| m.num_bytes_out_per_second),
            ("currentInputWatermark", "gauge", |m| m.current_input_watermark as f64),
            ("currentOutputWatermark", "gauge", |m| m.current_output_watermark as f64),
            ("busyTimeMsPerSecond", "gauge", |m| m.busy_time_ms_per_second),
            ("idleTimeMsPerSecond", "gauge", |m| m.idle_time_ms_per_second),
            ("backPressuredTimeMsPerSecond", "gauge", |m| m.back_pressured_time_ms_per_second),
        ];
        // Every running subtask: (its labels, the subtask).
        let mut subtasks = Vec::new();
        for d in details.iter().filter(|d| !d.state.is_terminal()) {
            for v in &d.vertices {
                for s in &v.subtasks {
                    let labels = format!(
                        "job_id=\"{}\",job_name=\"{}\",vertex=\"{}\",subtask=\"{}\"",
                        d.id,
                        escape(&d.name),
                        escape(&v.id),
                        s.subtask
                    );
                    subtasks.push((labels, s));
                }
            }
        }
        for (name, kind, get) in families {
            let _ = writeln!(out, "# TYPE weir_task_{name} {kind}");
            for (labels, s) in &subtasks {
                let _ = writeln!(out, "weir_task_{name}{{{labels}}} {}", get(&s.metrics));
            }
        }
        for kind in ["counter", "gauge"] {
            let _ = writeln!(out, "# TYPE weir_task_user_{kind} {kind}");
            for (labels, s) in &subtasks {
                for m in s.user_metrics.iter().filter(|m| m.kind == kind) {
                    let _ =
                        writeln!(out, "weir_task_user_{kind}{{{labels},metric=\"{}\"}} {}", escape(&m.name), m.value);
                }
            }
        }
        let checkpoint_series: Vec<(String, Checkpoints)> =
            all.iter().map(|j| (j.id.clone(), checkpoints_of(&lock(&j.run).checkpoints))).collect();
        for (name, kind, get) in [
            (
                "numberOfCompletedCheckpoints",
                "counter",
                (|c: &Checkpoints| Some(c.counts.completed)) as fn(&Checkpoints) -> Option<u64>,
            ),
            ("numberOfFailedCheckpoints", "counter", |c| Some(c.counts.failed)),
            ("lastCheckpointDuration", "gauge", |c| c.latest_completed.as_ref().map(|l| l.end_to_end_duration)),
            ("lastCheckpointSize", "gauge", |c| c.latest_completed.as_ref().map(|l| l.state_size)),
        ] {
            let _ = writeln!(out, "# TYPE weir_job_{name} {kind}");
            for (d, (_, c)) in details.iter().zip(&checkpoint_series) {
                if let Some(v) = get(c) {
                    let _ =
                        writeln!(out, "weir_job_{name}{{job_id=\"{}\",job_name=\"{}\"}} {v}", d.id, escape(&d.name));
                }
            }
        }
        let _ = writeln!(out, "# TYPE weir_job_state gauge");
        for d in &details {
            let _ = writeln!(
                out,
                "weir_job_state{{job_id=\"{}\",job_name=\"{}\",state=\"{}\"}} 1",
                d.id,
                escape(&d.name),
                d.state.name()
            );
        }
        out
    }
}

fn checkpoint_info(c: &CheckpointStats) -> CheckpointInfo {
    CheckpointInfo {
        id: c.id,
        status: match c.status {
            CheckpointStatus::InProgress => "IN_PROGRESS",
            CheckpointStatus::Completed => "COMPLETED",
            CheckpointStatus::Failed => "FAILED",
        }
        .to_owned(),
        is_savepoint: c.savepoint.is_some(),
        trigger_timestamp: c.triggered_at_ms,
        end_to_end_duration: c.duration_ms,
        state_size: c.bytes,
        num_acknowledged_subtasks: c.acknowledged,
        num_subtasks: c.tasks,
        external_path: c.savepoint.as_ref().map(|p| p.display().to_string()),
        alignment_duration: c.parts.iter().map(|t| t.alignment_ms).max().unwrap_or(0),
        sync_duration_us: c.parts.iter().map(|t| t.sync_us).max().unwrap_or(0),
        persisted_data: c.parts.iter().map(|t| t.in_flight_bytes).sum(),
        failure_message: c.failure.clone(),
    }
}

fn task_checkpoint_info(t: &TaskCheckpointStats) -> TaskCheckpointInfo {
    TaskCheckpointInfo {
        vertices: t.vertices.clone(),
        subtask: t.subtask,
        end_to_end_duration: t.ack_ms,
        start_delay: t.start_delay_ms,
        alignment_duration: t.alignment_ms,
        sync_duration_us: t.sync_us,
        state_size: t.bytes,
        persisted_data: t.in_flight_bytes,
        unaligned: t.unaligned,
        finished: t.finished,
    }
}

fn checkpoints_of(all: &[CheckpointStats]) -> Checkpoints {
    let mut counts = CheckpointCounts::default();
    for c in all {
        match c.status {
            CheckpointStatus::InProgress => counts.in_progress += 1,
            CheckpointStatus::Completed => counts.completed += 1,
            CheckpointStatus::Failed => counts.failed += 1,
        }
    }
    let latest = all.iter().rev().find(|c| c.status == CheckpointStatus::Completed);
    let start = all.len().saturating_sub(100);
    Checkpoints {
        counts,
        latest_completed: latest.map(checkpoint_info),
        history: all[start..].iter().map(checkpoint_info).collect(),
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `need` slots, one each on the workers with a data plane in turn (most
/// free slots first), when at least two of them have room; `None`
/// otherwise.
fn spread_over(slots: &crate::Slots, need: u32) -> Option<Vec<usize>> {
    let mut free: Vec<(usize, u32)> = (0..slots.workers.len())
        .filter(|&w| slots.workers[w].data_address().is_some())
        .map(|w| (w, slots.free(w)))
        .filter(|&(_, f)| f > 0)
        .collect();
    if free.len() < 2 || free.iter().map(|&(_, f)| u64::from(f)).sum::<u64>() < u64::from(need) {
        return None;
    }
    free.sort_by_key(|&(w, f)| (std::cmp::Reverse(f), w));
    let mut placed = Vec::with_capacity(need as usize);
    while placed.len() < need as usize {
        for (w, f) in free.iter_mut() {
            if *f > 0 && placed.len() < need as usize {
                placed.push(*w);
                *f -= 1;
            }
        }
    }
    Some(placed)
}
