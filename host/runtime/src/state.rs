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
                let run = RUNS.fetch_add(1, Ordering::Relaxed);
                let parent = spec.path.clone().unwrap_or_else(std::env::temp_dir);
                let path = parent.join(format!("weir-state-{}-{run}", std::process::id()));
                if path.exists() {
                    return Err(format!(
                        "state: {} exists already; remove it or choose another `path`",
                        path.display()
                    ));
                }
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
