//! # weir-coordinator — the control plane
//!
//! Owns what outlives a job: the blob store of uploaded bundles and
//! components (by SHA-256), the dispatcher that accepts jobs and gives
//! each a job master, the slots of the workers that run them, and the
//! REST API (`/v1`, with its OpenAPI document) through which the CLI,
//! the dashboard and scripts manage all of it. It checks everything that
//! comes in (bundles, specs, requests) before anything runs, and confines
//! a job's files to its working directory and the allowed folders.
//!
//! It does not run tasks: a job master hands a [`worker::Worker`] a
//! deployment and watches the execution it gets back. The embedded
//! worker runs jobs in this process through `weir-runtime`; remote
//! workers implement the same interface.
//!
//! `<data-dir>` holds `blobs/` (files by SHA-256), `bundles/` (one JSON
//! record per stored bundle), `jobs/<job-id>/` (working directories),
//! `jobs/<job-id>.json` (job records), `components/` (marks of components
//! uploaded alone), `cache/` (compiled components) and `token` (the API
//! token, when one is needed).
#![warn(missing_docs)]

pub mod api;
mod blobs;
mod bundles;
pub mod cluster;
pub mod dashboard;
mod jobs;
mod paths;
mod reference;
pub mod rest;
pub mod worker;

use api::ErrorItem;
use blobs::BlobStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use weir_wasm::WasmRuntime;
use worker::{EmbeddedWorker, Worker};

pub use jobs::JobWatch;

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it keeps blobs, bundle records, job working directories.
    pub data_dir: PathBuf,
    /// Slots of the embedded worker (0: none).
    pub slots: u32,
    /// Folders jobs may read and write besides their working directory.
    pub allow_paths: Vec<PathBuf>,
    /// Whether a submitted spec's files are confined to its working
    /// directory and `allow_paths` (off in local mode: whoever runs
    /// `weir run` owns the machine).
    pub confine: bool,
    /// Bounds of an uploaded bundle's contents.
    pub limits: weir_bundle::Limits,
    /// Most bytes of a request body (an uploaded bundle or component).
    pub max_upload_bytes: usize,
    /// The token calls that change something must carry (`Authorization:
    /// Bearer TOKEN`); `None`: no token needed.
    pub token: Option<String>,
    /// Refuse every call that changes something (`weir run`'s local API:
    /// it watches its one job; managing jobs is a coordinator's).
    pub read_only: bool,
}

impl Config {
    /// A coordinator keeping its data in `data_dir`, with an embedded
    /// worker of `slots` slots, confining jobs, no token.
    pub fn new(data_dir: PathBuf, slots: u32) -> Config {
        Config {
            data_dir,
            slots,
            allow_paths: Vec::new(),
            confine: true,
            limits: weir_bundle::Limits::default(),
            max_upload_bytes: 256 << 20,
            token: None,
            read_only: false,
        }
    }
}

/// An error answer of the API: an HTTP status and every problem found.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong, where.
    pub errors: Vec<ErrorItem>,
}

impl ApiError {
    fn new(status: u16, place: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { status, errors: vec![ErrorItem { place: place.into(), message: message.into() }] }
    }

    /// 400: the request is wrong.
    pub fn bad_request(place: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(400, place, message)
    }

    /// 404: no such thing.
    pub fn not_found(place: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(404, place, message)
    }

    /// 409: not now (a bundle in use, a job that already ended).
    pub fn conflict(place: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(409, place, message)
    }

    /// 500: the coordinator could not do it (a disk error, say).
    pub fn internal(place: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(500, place, message)
    }

    /// 400 with several problems.
    pub fn problems(errors: Vec<ErrorItem>) -> ApiError {
        ApiError { status: 400, errors }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.place.is_empty() { write!(f, "{}", e.message)? } else { write!(f, "{}: {}", e.place, e.message)? }
        }
        Ok(())
    }
}

/// The workers, their slots and who holds them. Workers are only ever
/// added (a lost one stays, not [`Worker::alive`], offering nothing), so
/// a job master's index of its worker stays valid.
struct Slots {
    /// Every worker that registered, in order.
    workers: Vec<Arc<dyn Worker>>,
    /// Per worker: the jobs holding its slots, and how many each.
    held: Vec<BTreeMap<String, u32>>,
}

impl Slots {
    /// Slots worker `w` has free now (none once lost).
    fn free(&self, w: usize) -> u32 {
        match self.workers[w].alive() {
            true => self.workers[w].slots().saturating_sub(self.held[w].values().sum()),
            false => 0,
        }
    }

    /// The workers still alive, with their indices.
    fn alive(&self) -> impl Iterator<Item = (usize, &Arc<dyn Worker>)> {
        self.workers.iter().enumerate().filter(|(_, w)| w.alive())
    }
}

/// The coordinator: blob store, bundles, dispatcher, workers.
pub struct Coordinator {
    config: Config,
    blobs: BlobStore,
    /// Loads untrusted uploads to check them: no compiled-code cache.
    check_rt: WasmRuntime,
    /// Whether workers can join (a cluster address is open): a job
    /// lacking slots then waits for them instead of failing.
    accepts_workers: std::sync::atomic::AtomicBool,
    bundles: Mutex<BTreeMap<String, bundles::BundleRecord>>,
    jobs: Mutex<jobs::Jobs>,
    /// Components uploaded alone (`POST /v1/components`), kept whatever
    /// bundles are deleted.
    standalone: Mutex<std::collections::HashSet<String>>,
    slots: Mutex<Slots>,
    slots_freed: Condvar,
    /// The last state report read (job, checkpoint): a checkpoint never
    /// changes, and the dashboard asks again and again.
    state_read: Mutex<Option<(String, u64, api::JobStateInfo)>>,
}
// Lock order, where several are held: `jobs` → `bundles` → `standalone`;
// `slots` → a job's `run`. No lock is held across a call into a worker.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// 16 random bytes in hex: job ids, trigger ids.
pub(crate) fn random_id() -> String {
    random_hex::<16>()
}

/// 32 random bytes in hex: an API token.
pub fn random_token() -> String {
    random_hex::<32>()
}

fn random_hex<const N: usize>() -> String {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("invariant: the operating system provides random bytes");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);

impl Coordinator {
    /// Opens (or makes) the coordinator's data directory and starts its
    /// embedded worker; `rt` loads and caches the components jobs run.
    pub fn open(mut config: Config, rt: Arc<WasmRuntime>) -> Result<Arc<Coordinator>, OpenError> {
        let given = config.data_dir.clone();
        let fail = |what: &str, e: &dyn std::fmt::Display| OpenError(format!("{}: {what}: {e}", given.display()));
        std::fs::create_dir_all(config.data_dir.join("jobs"))
            .map_err(|e| fail("cannot make the data directory", &e))?;
        std::fs::create_dir_all(config.data_dir.join("components"))
            .map_err(|e| fail("cannot make the data directory", &e))?;
        // Absolute and without links: job paths are compared with it.
        config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(|e| fail("cannot resolve it", &e))?;
        let dir = &config.data_dir;
        let standalone = std::fs::read_dir(dir.join("components"))
            .map_err(|e| fail("cannot read components", &e))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| blobs::is_sha256(n))
            .collect();
        let blobs = BlobStore::open(dir.join("blobs")).map_err(|e| fail("cannot open the blob store", &e))?;
        let check_rt = WasmRuntime::new(None).map_err(|e| fail("cannot start wasmtime", &e))?;
        let workers: Vec<Arc<dyn Worker>> =
            if config.slots > 0 { vec![Arc::new(EmbeddedWorker::new(rt, config.slots))] } else { Vec::new() };
        let bundles = bundles::load_records(&dir.join("bundles")).map_err(|e| fail("cannot read bundles", &e))?;
        let jobs = jobs::Jobs::load(&dir.join("jobs"));
        let slots = Slots { held: workers.iter().map(|_| BTreeMap::new()).collect(), workers };
        Ok(Arc::new(Coordinator {
            config,
            blobs,
            check_rt,
            accepts_workers: std::sync::atomic::AtomicBool::new(false),
            bundles: Mutex::new(bundles),
            jobs: Mutex::new(jobs),
            standalone: Mutex::new(standalone),
            slots: Mutex::new(slots),
            slots_freed: Condvar::new(),
            state_read: Mutex::new(None),
        }))
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The cluster at a glance.
    pub fn overview(&self) -> api::Overview {
        let (total, free) = self.slot_counts();
        let mut jobs: BTreeMap<String, u32> = BTreeMap::new();
        for j in lock(&self.jobs).all() {
            *jobs.entry(j.state().name().to_owned()).or_default() += 1;
        }
        api::Overview {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wit: weir_bundle::wit_version(),
            workers: lock(&self.slots).alive().count() as u32,
            slots_total: total,
            slots_available: free,
            jobs,
            bundles: lock(&self.bundles).len() as u32,
            read_only: self.config.read_only,
        }
    }

    /// The workers and their slots.
    pub fn workers(&self) -> api::WorkerList {
        let slots = lock(&self.slots);
        let workers = slots
            .alive()
            .map(|(i, w)| api::WorkerInfo {
                id: w.id().to_owned(),
                address: w.address().to_owned(),
                slots_total: w.slots(),
                slots_free: slots.free(i),
                jobs: slots.held[i].keys().cloned().collect(),
            })
            .collect();
        api::WorkerList { workers }
    }

    fn slot_counts(&self) -> (u32, u32) {
        let slots = lock(&self.slots);
        let total: u32 = slots.alive().map(|(_, w)| w.slots()).sum();
        let free: u32 = (0..slots.workers.len()).map(|w| slots.free(w)).sum();
        (total, free)
    }

    /// Adds a worker that registered: its slots are free for jobs at once.
    pub(crate) fn add_worker(&self, worker: Arc<dyn Worker>) {
        let mut slots = lock(&self.slots);
        slots.workers.push(worker);
        slots.held.push(BTreeMap::new());
        self.slots_freed.notify_all();
    }

    /// Wakes job masters waiting for slots (a worker was lost or joined).
    pub(crate) fn workers_changed(&self) {
        let _slots = lock(&self.slots);
        self.slots_freed.notify_all();
    }
}
