//! Reading a checkpoint or savepoint without running its job (`weir
//! state`): its operators, their state names, keys per key group, and one
//! key's state.

use super::format::{Reader, Writer, read_keyed, write_keyed};
use super::store::{StageState, load_from};
use std::collections::BTreeMap;
use weir_state::{Change, Piece, TimerDomain};

/// What a checkpoint or savepoint holds.
#[derive(Debug, Clone)]
pub struct StateReport {
    /// Its folder.
    pub path: std::path::PathBuf,
    /// The job it is of.
    pub job: String,
    /// Its checkpoint number.
    pub checkpoint: u64,
    /// When it completed, epoch milliseconds.
    pub completed_at_ms: u64,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// Per vertex, in job order.
    pub operators: Vec<OperatorState>,
}

/// One vertex's state.
#[derive(Debug, Clone)]
pub struct OperatorState {
    /// Its id.
    pub id: String,
    /// `source`, `sink`, `map`, `process`, `window` or `window-all`.
    pub kind: String,
    /// Its parallelism then.
    pub parallelism: u32,
    /// Bytes of state over its subtasks.
    pub bytes: u64,
    /// Keyed operators: per state (`value count`, `list elements`, …,
    /// `timers`), keys per key group.
    pub keys: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Operator-state lists, by name.
    pub lists: BTreeMap<String, ListReport>,
    /// Records in flight into its subtasks at an unaligned checkpoint.
    pub in_flight: u64,
}

/// One operator-state list of an operator, over its subtasks.
#[derive(Debug, Clone, Default)]
pub struct ListReport {
    /// Whether it is redistributed as a union (else: even split).
    pub union: bool,
    /// Per subtask that kept it, its elements as text.
    pub elements: BTreeMap<u32, Vec<String>>,
}

/// One key's state in one operator: per state, its entries as text
/// (`namespace` first when there is one).
#[derive(Debug, Clone, Default)]
pub struct KeyState {
    /// The key's key group.
    pub group: u16,
    /// State name → its entries, decoded.
    pub states: BTreeMap<String, Vec<String>>,
}

/// Names of the three kinds of declared state in a keyed part, then a
/// reader at its pieces.
fn names<'a>(part: &'a [u8]) -> Result<([Vec<String>; 3], Reader<'a>), String> {
    let mut r = Reader::new(part);
    let mut out: [Vec<String>; 3] = Default::default();
    for list in &mut out {
        for _ in 0..r.u32()? {
            list.push(r.str()?.to_owned());
        }
    }
    Ok((out, r))
}

/// A keyed stage's state as one full snapshot: its own, or its chain of
/// incremental snapshots replayed (the names of the last one first).
fn whole(stage: &StageState) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let chain = stage.chain();
    let [.., last] = chain.as_slice() else { return Ok(Default::default()) };
    if chain.len() == 1 {
        return Ok(std::borrow::Cow::Borrowed(last));
    }
    let mut b = weir_state::MemoryBackend::new();
    let all = Some(0..=u16::MAX);
    crate::operators::restore_keyed(&mut b, &all, std::slice::from_ref(&chain), None)?;
    let (names, _) = names(last)?;
    let mut w = Writer::default();
    for list in &names {
        w.u32(list.len() as u32);
        for n in list {
            w.str(n);
        }
    }
    write_keyed(&mut b, all, &mut w);
    Ok(std::borrow::Cow::Owned(w.buf))
}

fn is_keyed(kind: &str) -> bool {
    matches!(kind, "process" | "window" | "window-all")
}

/// The name of state `state` of kind `k` (0 value, 1 list, 2 map).
fn state_name(names: &[Vec<String>; 3], k: usize, state: u32, kind: &str) -> String {
    const KINDS: [&str; 3] = ["value", "list", "map"];
    match names[k].get(state as usize) {
        Some(n) => format!("{} `{n}`", KINDS[k]),
        // Built-in operators' fixed ids (see the window operator's table).
        None => format!("{} #{state} ({kind})", KINDS[k]),
    }
}

/// Bytes as text: JSON as it is (the SDK's `Json` codec); a lone varint
/// as its number (the SDK's default `Binary` codec, postcard, stores
/// integers so: a counter); anything else as escaped bytes.
fn text(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes)
        && serde_json::from_str::<serde_json::Value>(s).is_ok()
    {
        return s.to_owned();
    }
    let escaped = bytes.escape_ascii().to_string();
    match varint(bytes) {
        Some(n) => format!("{n} (binary {escaped})"),
        None => format!("binary {escaped}"),
    }
}

/// The number a postcard varint of exactly `bytes` encodes.
fn varint(bytes: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (i + 1 == bytes.len()).then_some(n);
        }
    }
    None
}

/// Reads the checkpoint or savepoint in `dir`: every operator's state
/// names and keys per key group.
pub fn inspect(dir: &std::path::Path) -> Result<StateReport, String> {
    let r = load_from(dir)?;
    let mut operators = Vec::new();
    for v in &r.metadata.vertices {
        let mut op = OperatorState {
            id: v.id.clone(),
            kind: v.kind.clone(),
            parallelism: v.parallelism,
            bytes: 0,
            keys: BTreeMap::new(),
            lists: BTreeMap::new(),
            in_flight: 0,
        };
        for s in 0..v.parallelism {
            let Some(stage) = r.stages.get(&(v.id.clone(), s)) else { continue };
            op.bytes += stage.chain().iter().map(|p| p.len() as u64).sum::<u64>() + stage.operator.len() as u64;
            let in_flight = super::read_in_flight(&stage.channels, usize::MAX).map_err(|e| format!("{}: {e}", v.id))?;
            op.in_flight += in_flight.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
            for l in super::read_lists(&stage.operator).map_err(|e| format!("{}: {e}", v.id))? {
                let report = op.lists.entry(l.name.clone()).or_default();
                report.union = l.mode == weir_wasm::Redistribution::Union;
                report.elements.insert(s, (0..l.len()).map(|i| text(l.element(i))).collect());
            }
            if !is_keyed(&v.kind) || !stage.holds_state() {
                continue;
            }
            let state = whole(stage).map_err(|e| format!("{}: {e}", v.id))?;
            let (names, mut reader) = names(&state).map_err(|e| format!("{}: {e}", v.id))?;
            // Each (state, key) counted once per key group.
            let mut seen = std::collections::HashSet::new();
            read_keyed(&mut reader, &|_| true, true, &mut |change| {
                let Change::Piece(piece) = change else { return };
                let (label, group, key) = match piece {
                    Piece::Value { state, at, .. } => (state_name(&names, 0, state, &v.kind), at.group, at.key),
                    Piece::List { state, at, .. } => (state_name(&names, 1, state, &v.kind), at.group, at.key),
                    Piece::Map { state, at, .. } => (state_name(&names, 2, state, &v.kind), at.group, at.key),
                    Piece::Timer { at, .. } => ("timers".to_owned(), at.group, at.key),
                };
                if seen.insert((label.clone(), group, key.to_vec())) {
                    *op.keys.entry(label).or_default().entry(group).or_default() += 1;
                }
            })
            .map_err(|e| format!("{}: {e}", v.id))?;
        }
        operators.push(op);
    }
    Ok(StateReport {
        path: r.path.clone(),
        job: r.metadata.job.clone(),
        checkpoint: r.checkpoint,
        completed_at_ms: r.metadata.completed_at_ms,
        max_parallelism: r.metadata.max_parallelism,
        operators,
    })
}

/// One key's state in operator `operator` of the checkpoint or savepoint
/// in `dir`.
pub fn key_state(dir: &std::path::Path, operator: &str, key: &[u8]) -> Result<KeyState, String> {
    let r = load_from(dir)?;
    let Some(v) = r.metadata.vertices.iter().find(|v| v.id == operator) else {
        let ids: Vec<&str> = r.metadata.vertices.iter().map(|v| v.id.as_str()).collect();
        return Err(format!("{} has no operator `{operator}`; it has: {}", dir.display(), ids.join(", ")));
    };
    if !is_keyed(&v.kind) {
        return Err(format!("operator `{operator}` is a {} and keeps no keyed state", v.kind));
    }
    let group = weir_core::keys::key_group(key, r.metadata.max_parallelism) as u16;
    let mut out = KeyState { group, states: BTreeMap::new() };
    for s in 0..v.parallelism {
        let Some(stage) = r.stages.get(&(v.id.clone(), s)) else { continue };
        if !stage.holds_state() {
            continue;
        }
        let state = whole(stage).map_err(|e| format!("{operator}: {e}"))?;
        let (names, mut reader) = names(&state).map_err(|e| format!("{operator}: {e}"))?;
        read_keyed(&mut reader, &|g| g == group, true, &mut |change| {
            let Change::Piece(piece) = change else { return };
            let ns = |n: &[u8]| match n.len() {
                0 => String::new(),
                // A window: start and end, big-endian with the sign flipped.
                16 if v.kind.starts_with("window") => {
                    let at = |i: usize| i64::from_be_bytes(n[i..i + 8].try_into().expect("16 bytes")) ^ i64::MIN;
                    format!("window [{}, {}) ", at(0), at(8))
                }
                _ => format!("[{}] ", n.escape_ascii()),
            };
            let (label, entry) = match piece {
                Piece::Value { state, at, value } if at.key == key => {
                    (state_name(&names, 0, state, &v.kind), format!("{}{}", ns(at.namespace), text(value)))
                }
                Piece::List { state, at, element } if at.key == key => {
                    (state_name(&names, 1, state, &v.kind), format!("{}{}", ns(at.namespace), text(element)))
                }
                Piece::Map { state, at, map_key, value } if at.key == key => (
                    state_name(&names, 2, state, &v.kind),
                    format!("{}{} → {}", ns(at.namespace), text(map_key), text(value)),
                ),
                Piece::Timer { domain, at, timestamp } if at.key == key => {
                    let d = if domain == TimerDomain::EventTime { "event time" } else { "processing time" };
                    ("timers".to_owned(), format!("{}{d} {timestamp}", ns(at.namespace)))
                }
                _ => return,
            };
            out.states.entry(label).or_default().push(entry);
        })
        .map_err(|e| format!("{operator}: {e}"))?;
    }
    Ok(out)
}
