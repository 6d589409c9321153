//! The state backends of a job's keyed operator subtasks, as the spec's
//! `state:` section chooses them.

use std::sync::atomic::{AtomicUsize, Ordering};
use weir_core::spec::{StateBackendKind, StateSpec};
use weir_state::{KeyedStateBackend, LsmStore, MemoryBackend};

/// Makes one backend per keyed subtask.
pub(crate) enum Backends {
    Memory,
    Lsm { store: LsmStore, budget: usize },
}

/// Tells apart the temporary state folders of jobs in one process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Backends {
    /// Opens the store the spec asks for, with `memory-mb` shared by
    /// `keyed_subtasks`.
    pub(crate) fn new(spec: &StateSpec, keyed_subtasks: usize) -> Result<Self, String> {
        match spec.backend {
            StateBackendKind::Memory => Ok(Backends::Memory),
            // A job without keyed operators has no state to keep.
            StateBackendKind::Lsm if keyed_subtasks == 0 => Ok(Backends::Memory),
            StateBackendKind::Lsm => {
                // Always a new folder of its own, inside `path`: a removed
                // (temporary) store takes nothing else with it.
                // A folder is claimed by creating it: one left by a
                // process that was killed (whose pid may be ours now) is
                // never opened again, and the next number is tried.
                let parent = spec.path.clone().unwrap_or_else(std::env::temp_dir);
                let path = claim(&parent)?;
                // fjall's cache and memtable take a quarter of the budget,
                // the entries in memory the rest.
                let total = spec.memory_mb.saturating_mul(1 << 20);
                let store = LsmStore::open(&path, !spec.keep, total).map_err(|e| format!("state: {e}"))?;
                let entries = usize::try_from(total / 4 * 3).unwrap_or(usize::MAX);
                Ok(Backends::Lsm { store, budget: entries / keyed_subtasks })
            }
        }
    }

    pub(crate) fn make(&self) -> Box<dyn KeyedStateBackend> {
        match self {
            Backends::Memory => Box::new(MemoryBackend::new()),
            Backends::Lsm { store, budget } => Box::new(store.backend(*budget)),
        }
    }
}

/// Creates a new `weir-state-<pid>-<n>` folder in `parent`.
fn claim(parent: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let pid = std::process::id();
    for _ in 0..10_000 {
        let path = parent.join(format!("weir-state-{pid}-{}", RUNS.fetch_add(1, Ordering::Relaxed)));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "state: cannot create {}: {e}; check that `path` ({}) is a writable folder",
                    path.display(),
                    parent.display()
                ));
            }
        }
    }
    Err(format!(
        "state: {} holds 10,000 `weir-state-{pid}-*` folders already; remove those of jobs that ended",
        parent.display()
    ))
}
