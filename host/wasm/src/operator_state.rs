//! Operator state (the `restore-state` and `snapshot-state` functions of
//! the `stateful-map` and `stateful-process` worlds): named lists a `map`
//! or `process` component keeps itself, taken at every checkpoint and
//! handed back when the job is restored. What a guest returns is checked
//! here; how lists are redistributed among subtasks is the runtime's.
//!
//! The two functions are the same in both worlds, so they are looked up
//! by name and typed here once rather than bound per world.

use crate::instance::{CallError, budget_ticks, call_error};
use crate::sandbox::{HostState, Limits};
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, ComponentType, Instance, InstancePre, Lift, Lower, TypedFunc};

/// `redistribution` of the WIT's `operator-state` interface.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum Wire {
    #[component(name = "even-split")]
    EvenSplit,
    #[component(name = "union")]
    Union,
}

/// `operator-list` of the WIT's `operator-state` interface.
#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct WireList {
    name: String,
    mode: Wire,
    data: Vec<u8>,
    ends: Vec<u32>,
}

type RestoreFn = TypedFunc<(Vec<WireList>, bool), (Result<(), String>,)>;
type SnapshotFn = TypedFunc<(u64,), (Result<Vec<WireList>, String>,)>;

/// Lists an operator may keep at most.
pub const MAX_LISTS: usize = 256;

/// How a list is shared out among the subtasks of a restored job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redistribution {
    /// Every old subtask's elements, concatenated in subtask order and cut
    /// into runs of nearly equal length, one per new subtask (each its own
    /// list back when the parallelism is unchanged).
    EvenSplit,
    /// Every new subtask gets every old subtask's elements.
    Union,
}

/// One named list of operator state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorList {
    /// Its name, unique within the operator.
    pub name: String,
    /// How it is redistributed.
    pub mode: Redistribution,
    /// The elements' bytes, concatenated.
    pub data: Vec<u8>,
    /// Where each element ends in `data`.
    pub ends: Vec<u32>,
}

impl OperatorList {
    /// An empty list.
    pub fn new(name: &str, mode: Redistribution) -> Self {
        OperatorList { name: name.to_owned(), mode, data: Vec::new(), ends: Vec::new() }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Element `i`.
    pub fn element(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    /// Appends an element; `Err` when the list would pass 4 GiB.
    pub fn push(&mut self, element: &[u8]) -> Result<(), String> {
        let end = u32::try_from(self.data.len() + element.len())
            .map_err(|_| format!("operator list `{}` would pass 4 GiB", self.name))?;
        self.data.extend_from_slice(element);
        self.ends.push(end);
        Ok(())
    }

    /// Checks a list as a guest returned it: a name of 1 to 256 bytes and
    /// ends that never decrease and stop at the data's length.
    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 256 {
            return Err(format!("operator list name {:?} must be 1 to 256 bytes", self.name));
        }
        let mut at = 0u32;
        for &e in &self.ends {
            if e < at {
                return Err(format!("operator list `{}` has ends that decrease", self.name));
            }
            at = e;
        }
        if at as usize != self.data.len() {
            return Err(format!(
                "operator list `{}` has {} bytes of data but its last element ends at {at}",
                self.name,
                self.data.len()
            ));
        }
        Ok(())
    }
}

/// Checks every list a guest returned: each valid, each name once, at most
/// [`MAX_LISTS`].
pub(crate) fn check_lists(lists: &[OperatorList]) -> Result<(), String> {
    if lists.len() > MAX_LISTS {
        return Err(format!("{} operator lists; keep at most {MAX_LISTS}", lists.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for l in lists {
        l.check()?;
        if !seen.insert(l.name.as_str()) {
            return Err(format!("operator list `{}` is returned twice", l.name));
        }
    }
    Ok(())
}

/// Where a component's two functions are, looked up once per component.
pub(crate) struct StateIndices {
    restore: ComponentExportIndex,
    snapshot: ComponentExportIndex,
}

impl StateIndices {
    /// The functions in `pre`'s component, if it exports both (a component
    /// of world `map` or `process` exports neither).
    pub fn find(pre: &InstancePre<HostState>) -> Option<Self> {
        let c = pre.component();
        Some(StateIndices {
            restore: c.get_export_index(None, "restore-state")?,
            snapshot: c.get_export_index(None, "snapshot-state")?,
        })
    }
}

/// The operator-state functions of one instance.
pub(crate) struct StateExport {
    restore: RestoreFn,
    snapshot: SnapshotFn,
}

impl StateExport {
    /// The functions in `instance`, checked against the WIT's types.
    pub fn load(indices: &StateIndices, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Self> {
        Ok(StateExport {
            restore: instance.get_typed_func(&mut *store, indices.restore)?,
            snapshot: instance.get_typed_func(&mut *store, indices.snapshot)?,
        })
    }

    /// [`StateExport::restore`] for an instance that may have none (then
    /// nothing happens).
    pub fn restore_in(
        state: &Option<StateExport>,
        store: &mut Store<HostState>,
        limits: Limits,
        lists: &[OperatorList],
        restored: bool,
    ) -> Result<(), CallError> {
        state.as_ref().map_or(Ok(()), |s| s.restore(store, limits, lists, restored))
    }

    /// [`StateExport::snapshot`] for an instance that may have none (no
    /// lists).
    pub fn snapshot_in(
        state: &Option<StateExport>,
        store: &mut Store<HostState>,
        limits: Limits,
        checkpoint: u64,
    ) -> Result<Vec<OperatorList>, CallError> {
        state.as_ref().map_or(Ok(Vec::new()), |s| s.snapshot(store, limits, checkpoint))
    }

    /// Hands the instance its lists (`restored`: the job was restored).
    pub fn restore(
        &self,
        store: &mut Store<HostState>,
        limits: Limits,
        lists: &[OperatorList],
        restored: bool,
    ) -> Result<(), CallError> {
        store.set_epoch_deadline(budget_ticks(limits));
        // (Owned copies: once per instance.)
        let wire: Vec<WireList> = lists
            .iter()
            .map(|l| WireList {
                name: l.name.clone(),
                mode: match l.mode {
                    Redistribution::EvenSplit => Wire::EvenSplit,
                    Redistribution::Union => Wire::Union,
                },
                data: l.data.clone(),
                ends: l.ends.clone(),
            })
            .collect();
        let r = self.restore.call(&mut *store, (wire, restored)).map(|(r,)| r);
        r.map_err(|e| call_error(store, e, limits))?
            .map_err(|m| CallError::Init(format!("it refused its restored operator state: {m}")))
    }

    /// The instance's lists at checkpoint `checkpoint`, checked.
    pub fn snapshot(
        &self,
        store: &mut Store<HostState>,
        limits: Limits,
        checkpoint: u64,
    ) -> Result<Vec<OperatorList>, CallError> {
        store.set_epoch_deadline(budget_ticks(limits));
        let r = self.snapshot.call(&mut *store, (checkpoint,)).map(|(r,)| r);
        let lists = r.map_err(|e| call_error(store, e, limits))?.map_err(CallError::Snapshot)?;
        let lists: Vec<OperatorList> = lists
            .into_iter()
            .map(|l| OperatorList {
                name: l.name,
                mode: match l.mode {
                    Wire::EvenSplit => Redistribution::EvenSplit,
                    Wire::Union => Redistribution::Union,
                },
                data: l.data,
                ends: l.ends,
            })
            .collect();
        check_lists(&lists).map_err(|e| CallError::Protocol(format!("snapshot-state: {e}")))?;
        Ok(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_guest_returns_are_checked() {
        let mut good = OperatorList::new("offsets", Redistribution::EvenSplit);
        good.push(b"ab").unwrap();
        good.push(b"").unwrap();
        assert_eq!((good.len(), good.element(0), good.element(1)), (2, &b"ab"[..], &b""[..]));
        assert!(check_lists(std::slice::from_ref(&good)).is_ok());
        let twice = check_lists(&[good.clone(), good.clone()]).unwrap_err();
        assert!(twice.contains("`offsets` is returned twice"), "{twice}");
        let mut short = good.clone();
        short.data.pop();
        assert!(check_lists(&[short]).unwrap_err().contains("last element ends at 2"));
        let mut decreasing = good.clone();
        decreasing.ends = vec![2, 1];
        decreasing.data.truncate(1);
        assert!(check_lists(&[decreasing]).unwrap_err().contains("decrease"));
        let nameless = OperatorList::new("", Redistribution::Union);
        assert!(check_lists(&[nameless]).unwrap_err().contains("1 to 256 bytes"));
    }
}
