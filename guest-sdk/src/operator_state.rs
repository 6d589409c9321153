//! Operator state: named lists an operator keeps itself (Flink's
//! `CheckpointedFunction` with `getListState` and `getUnionListState`),
//! handed to the host at every checkpoint and back when the job is
//! restored, redistributed among the subtasks when the parallelism
//! changed. Unlike keyed state, it is not scoped to a key: a source's
//! offsets, a sink's buffer, a map's counters.

use crate::state::{Binary, Codec};
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a list is shared out among the subtasks of a restored job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redistribution {
    /// Every old subtask's elements, concatenated in subtask order and cut
    /// into runs of nearly equal length, one per new subtask; at an
    /// unchanged parallelism each subtask gets its own list back (Flink's
    /// `getListState`).
    EvenSplit,
    /// Every new subtask gets the elements of every old subtask (Flink's
    /// `getUnionListState`).
    Union,
}

/// One named list, its elements encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateList {
    pub name: String,
    pub mode: Redistribution,
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
}

impl StateList {
    fn elements(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0usize;
        self.ends.iter().map(move |&e| {
            let part = &self.data[start..e as usize];
            start = e as usize;
            part
        })
    }
}

/// An operator's lists: those it restores, or those it keeps for a
/// checkpoint.
///
/// ```
/// use weir_sdk::OperatorState;
///
/// let mut state = OperatorState::default();
/// state.set_list("seen", &[3u64, 4]).unwrap();
/// state.set_union_list("config", &["fast".to_owned()]).unwrap();
/// let seen: Vec<u64> = state.list("seen").unwrap();
/// assert_eq!(seen, [3, 4]);
/// assert!(state.list::<u64>("other").unwrap().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorState {
    pub(crate) lists: Vec<StateList>,
    pub(crate) restored: bool,
}

impl OperatorState {
    /// Whether the operator was restored from a checkpoint or savepoint
    /// that held it (Flink's `isRestored`); `false` on a fresh start and
    /// for an operator new to a restored job.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// The names of the lists it holds.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lists.iter().map(|l| l.name.as_str())
    }

    /// The elements of list `name` in the default codec ([`Binary`]);
    /// empty when there is no such list.
    pub fn list<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>> {
        self.list_with::<T, Binary>(name)
    }

    /// The elements of list `name` in codec `C`.
    pub fn list_with<T: DeserializeOwned, C: Codec>(&self, name: &str) -> Result<Vec<T>> {
        let Some(list) = self.lists.iter().find(|l| l.name == name) else { return Ok(Vec::new()) };
        list.elements()
            .enumerate()
            .map(|(i, e)| {
                C::decode(e).map_err(|err| Error::new(format!("element {i} of operator list `{name}`: {err}")))
            })
            .collect()
    }

    /// Sets list `name` to `elements`, redistributed by even split
    /// (Flink's `getListState`), in the default codec.
    pub fn set_list<T: Serialize>(&mut self, name: &str, elements: &[T]) -> Result<()> {
        self.set_list_with::<T, Binary>(name, Redistribution::EvenSplit, elements)
    }

    /// Sets list `name` to `elements`, handed to every subtask on restore
    /// (Flink's `getUnionListState`), in the default codec.
    pub fn set_union_list<T: Serialize>(&mut self, name: &str, elements: &[T]) -> Result<()> {
        self.set_list_with::<T, Binary>(name, Redistribution::Union, elements)
    }

    /// Sets list `name` to `elements` in codec `C`, redistributed by
    /// `mode`. A name is 1 to 256 bytes; setting it again replaces it.
    pub fn set_list_with<T: Serialize, C: Codec>(
        &mut self,
        name: &str,
        mode: Redistribution,
        elements: &[T],
    ) -> Result<()> {
        if name.is_empty() || name.len() > 256 {
            return Err(Error::new(format!("operator list name {name:?} must be 1 to 256 bytes")));
        }
        let mut list =
            StateList { name: name.to_owned(), mode, data: Vec::new(), ends: Vec::with_capacity(elements.len()) };
        for e in elements {
            C::encode(e, &mut list.data)?;
            let end = u32::try_from(list.data.len())
                .map_err(|_| Error::new(format!("operator list `{name}` passes 4 GiB")))?;
            list.ends.push(end);
        }
        match self.lists.iter_mut().find(|l| l.name == name) {
            Some(old) => *old = list,
            None => self.lists.push(list),
        }
        Ok(())
    }
}

/// An operator with operator state (Flink's `CheckpointedFunction`):
/// implement it beside [`crate::Map`] or [`crate::KeyedProcessFunction`]
/// and export with `export_map!(checkpointed T)` or
/// `export_process!(checkpointed T)`.
///
/// ```
/// use weir_sdk::{CheckpointedFunction, Event, Map, OperatorState, Output, Result};
///
/// /// Numbers its events, and goes on counting after a restore.
/// #[derive(Default)]
/// struct Numbered {
///     seen: u64,
/// }
///
/// impl Map for Numbered {
///     fn map(&mut self, event: &Event<'_>, out: &mut Output) -> Result<()> {
///         self.seen += 1;
///         out.emit_json(event.key, &self.seen, event.timestamp)
///     }
/// }
///
/// impl CheckpointedFunction for Numbered {
///     fn initialize_state(&mut self, state: &OperatorState) -> Result<()> {
///         // After a rescale, a subtask may get several counts, or none.
///         self.seen = state.list::<u64>("seen")?.iter().sum();
///         Ok(())
///     }
///     fn snapshot_state(&mut self, _checkpoint: u64, state: &mut OperatorState) -> Result<()> {
///         state.set_list("seen", &[self.seen])
///     }
/// }
/// // In the operator crate: weir_sdk::export_map!(checkpointed Numbered);
/// ```
pub trait CheckpointedFunction: 'static {
    /// Called once per instance, after `open` and before any event: the
    /// lists this subtask restores (none on a fresh start). With a
    /// `dead-letter:` output a map's batch may be mapped twice up to a
    /// rejected record (see [`crate::Map`]): keep that out of the lists.
    fn initialize_state(&mut self, state: &OperatorState) -> Result<()>;

    /// The barrier of checkpoint (or savepoint) `checkpoint` reached the
    /// operator: put every list it keeps into `state` (which starts
    /// empty; a list left out is restored empty).
    fn snapshot_state(&mut self, checkpoint: u64, state: &mut OperatorState) -> Result<()>;
}
