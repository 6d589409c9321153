//! Where checkpoints live: `<dir>/<job>/chk-N/`, one file per task and a
//! `_metadata` file written last and atomically (a temporary file, synced,
//! renamed, the folder synced), so a checkpoint without one was never
//! completed and is never used. Reading validates every file (its checksum
//! and its size against the metadata); a damaged checkpoint is refused
//! with its path, and recovery falls back to the one before it. The
//! folder is local or in S3-compatible object storage ([`Folder`]).

use super::format::{MAGIC, Reader, seal, unseal};
pub(crate) use super::storage::Folder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC_LEN: usize = MAGIC.len();

/// The format written: 2 adds each stage's operator state to the task
/// files, 3 the in-flight data of unaligned checkpoints; formats 1 and 2
/// are still read.
pub(crate) const FORMAT: u32 = 3;

/// The name of a completed checkpoint's metadata file.
pub const METADATA: &str = "_metadata";

/// What `_metadata` says: the checkpoint, and every task file with its
/// size and checksum.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Metadata {
    /// The format's version ([`FORMAT`]; 1 before stages kept operator
    /// state).
    pub format: u32,
    /// The job's name.
    pub job: String,
    /// The checkpoint's number.
    pub checkpoint: u64,
    /// When it completed, epoch milliseconds.
    pub completed_at_ms: u64,
    /// The job's max parallelism (its number of key groups) then.
    pub max_parallelism: u32,
    /// Vertices and their parallelism when it was taken.
    pub vertices: Vec<VertexParallelism>,
    /// The task files.
    pub tasks: Vec<TaskFile>,
    /// The shared files of incremental snapshots, per operator subtask:
    /// its chain, oldest first (names relative to the job's folder).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<SharedChain>,
}

/// An operator subtask's chain of shared snapshot files: a full one, then
/// what changed since.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct SharedChain {
    pub vertex: String,
    pub subtask: u32,
    pub files: Vec<TaskFile>,
}

/// The folder of shared files in a job's folder.
pub(crate) const SHARED: &str = "shared";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct VertexParallelism {
    pub id: String,
    pub parallelism: u32,
    /// `source`, `sink`, or the operator's kind (`map`, `process`,
    /// `window`, `window-all`): how its state reads.
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct TaskFile {
    pub file: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// The state of one operator subtask (one stage of a task) in a
/// checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    /// The task's input watermark when it was taken.
    pub watermark: i64,
    /// What the operator wrote into the task's file.
    pub state: Vec<u8>,
    /// Or its chain of shared snapshots, oldest first.
    pub chain: Vec<Vec<u8>>,
    /// Its operator state (lists, as `format::write_lists` writes them;
    /// empty when it keeps none).
    pub operator: Vec<u8>,
    /// For a task's first stage: the in-flight data of an unaligned
    /// checkpoint (`format::write_in_flight`; empty: none).
    pub channels: Vec<u8>,
}

impl StageState {
    /// The operator's snapshots, oldest first: its chain, or the one in
    /// the task's file.
    pub fn chain(&self) -> Vec<&[u8]> {
        if self.chain.is_empty() { vec![self.state.as_slice()] } else { self.chain.iter().map(Vec::as_slice).collect() }
    }

    /// Whether the operator wrote any state.
    pub fn holds_state(&self) -> bool {
        !self.state.is_empty() || !self.chain.is_empty() || !self.operator.is_empty()
    }
}

/// A completed checkpoint read back and validated.
#[derive(Debug)]
pub struct Restored {
    /// Its number.
    pub checkpoint: u64,
    /// Its folder.
    pub path: PathBuf,
    pub(crate) metadata: Metadata,
    /// By (vertex id, subtask).
    pub(crate) stages: HashMap<(String, u32), StageState>,
}

impl Restored {
    /// The parallelism vertex `id` had, if the checkpoint knows it.
    pub(crate) fn parallelism(&self, id: &str) -> Option<u32> {
        self.metadata.vertices.iter().find(|v| v.id == id).map(|v| v.parallelism)
    }
}

/// The checkpoints of one job.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: Folder,
}

impl CheckpointStore {
    /// The checkpoints under `dir` (the job's own folder, `<dir>/<job>`): a
    /// local path, or `s3://bucket/prefix`.
    pub fn new(dir: &Path) -> Result<CheckpointStore, String> {
        Ok(CheckpointStore { dir: Folder::at(dir)? })
    }

    /// The job's folder: its path (or URL).
    pub fn dir(&self) -> PathBuf {
        self.dir.path()
    }

    /// The folder of checkpoint `id`.
    pub(crate) fn checkpoint_dir(&self, id: u64) -> Folder {
        self.dir.join(&format!("chk-{id}"))
    }

    /// The number the next checkpoint of a fresh run gets: one past every
    /// folder's.
    pub fn next_id(&self) -> Result<u64, String> {
        Ok(self.ids()?.last().copied().unwrap_or(0) + 1)
    }

    /// The numbers of every `chk-N` folder, complete or not, lowest first.
    /// `Err` when the folder cannot be listed (never taken for empty: a
    /// restart would start over).
    pub fn ids(&self) -> Result<Vec<u64>, String> {
        let names = self.dir.list().map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?;
        let mut ids: Vec<u64> =
            names.iter().filter_map(|n| n.strip_prefix("chk-").and_then(|n| n.parse().ok())).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn is_complete(&self, id: u64) -> Result<bool, String> {
        let dir = self.checkpoint_dir(id);
        dir.exists(METADATA).map_err(|e| format!("cannot look for {}: {e}", dir.display_file(METADATA)))
    }

    /// Every folder's number, and those of the completed ones.
    fn listing(&self) -> Result<(Vec<u64>, Vec<u64>), String> {
        let ids = self.ids()?;
        let mut complete = Vec::new();
        for &id in &ids {
            if self.is_complete(id)? {
                complete.push(id);
            }
        }
        Ok((ids, complete))
    }

    /// Removes checkpoint `id` (aborted, or past retention).
    pub(crate) fn discard(&self, id: u64) {
        let dir = self.checkpoint_dir(id);
        if let Err(e) = dir.remove_all() {
            tracing::warn!("cannot remove checkpoint {}: {e}", dir.display());
        }
    }

    /// Keeps the `keep` latest completed checkpoints and removes every
    /// folder older than the oldest of them.
    pub(crate) fn retain(&self, keep: usize) {
        let (ids, complete) = match self.listing() {
            Ok(l) => l,
            Err(e) => return tracing::warn!("{e}: old checkpoints stay until the next one"),
        };
        if complete.len() < keep || keep == 0 {
            return;
        }
        let oldest_kept = complete[complete.len() - keep];
        for id in ids.into_iter().filter(|&id| id < oldest_kept) {
            self.discard(id);
        }
    }

    /// Removes folders of checkpoints that never completed (a crash
    /// during one): they hold nothing recovery may use.
    pub(crate) fn discard_incomplete(&self) {
        let (ids, complete) = match self.listing() {
            Ok(l) => l,
            Err(e) => return tracing::warn!("{e}: incomplete checkpoints stay for now"),
        };
        for id in ids.into_iter().filter(|id| !complete.contains(id)) {
            self.discard(id);
        }
    }

    /// Writes a shared snapshot file (synced): its entry for the metadata,
    /// named relative to the job's folder.
    pub(crate) fn write_shared(&self, name: &str, body: &[u8]) -> std::io::Result<TaskFile> {
        let dir = self.dir.join(SHARED);
        dir.create()?;
        let mut file = write_task(&dir, name, body)?;
        file.file = format!("{SHARED}/{name}");
        Ok(file)
    }

    /// Whether shared file `name` (as the metadata names it,
    /// `shared/…`) is there.
    pub(crate) fn shared_exists(&self, name: &str) -> std::io::Result<bool> {
        let base = name.strip_prefix(&format!("{SHARED}/")).unwrap_or(name);
        self.dir.join(SHARED).exists(base)
    }

    /// Syncs the folder of shared files (their names).
    pub(crate) fn sync_shared(&self) -> std::io::Result<()> {
        self.dir.join(SHARED).sync()
    }

    /// Removes every shared file that no completed checkpoint in the
    /// folder lists and `live` (files of checkpoints in progress, and of
    /// those later snapshots may still diff against) does not name: what
    /// retention and failed checkpoints left. A completed checkpoint whose
    /// metadata cannot be read keeps every file (nothing is removed).
    /// Only files `owns` names are removed (a spread job's worker owns
    /// those of its own tasks).
    pub(crate) fn collect_shared(&self, live: &std::collections::HashSet<String>, owns: &dyn Fn(&str) -> bool) {
        let mut keep = live.clone();
        let complete = match self.listing() {
            Ok((_, complete)) => complete,
            Err(e) => return tracing::warn!("{e}: keeping every shared checkpoint file"),
        };
        for id in complete {
            let dir = self.checkpoint_dir(id);
            let Some(m) = dir.get(METADATA).ok().and_then(|t| serde_json::from_slice::<Metadata>(&t).ok()) else {
                tracing::warn!("cannot read {}: keeping every shared checkpoint file", dir.display_file(METADATA));
                return;
            };
            keep.extend(m.shared.into_iter().flat_map(|c| c.files).map(|f| f.file));
        }
        let shared = self.dir.join(SHARED);
        let names = match shared.list() {
            Ok(names) => names,
            Err(e) => return tracing::warn!("cannot list {}: {e}", shared.display()),
        };
        for n in names {
            if !keep.contains(&format!("{SHARED}/{n}"))
                && owns(&n)
                && let Err(err) = shared.remove(&n)
            {
                tracing::warn!("cannot remove {}: {err}", shared.display_file(&n));
            }
        }
    }

    /// Reads and validates checkpoint `id`.
    pub fn load(&self, id: u64) -> Result<Restored, String> {
        let r = load_folder(&self.checkpoint_dir(id))?;
        if r.checkpoint != id {
            return Err(format!(
                "{}: it is checkpoint {}, where checkpoint {id} was expected",
                self.checkpoint_dir(id).display_file(METADATA),
                r.checkpoint
            ));
        }
        Ok(r)
    }

    /// The latest completed checkpoint that reads back whole. A damaged
    /// one is skipped with a warning naming it (recovery falls back to the
    /// one before); `Err` when checkpoints were completed and none of them
    /// is usable (starting over would repeat output), naming each.
    pub fn latest(&self) -> Result<Option<Restored>, String> {
        self.latest_since(0)
    }

    /// [`CheckpointStore::latest`] among checkpoints numbered `first` or
    /// higher (those of this run of a job that started fresh).
    pub fn latest_since(&self, first: u64) -> Result<Option<Restored>, String> {
        let mut problems = Vec::new();
        let (_, complete) = self.listing()?;
        for id in complete.into_iter().rev().filter(|&id| id >= first) {
            match self.load(id) {
                Ok(r) => {
                    for p in &problems {
                        tracing::warn!("skipped a damaged checkpoint: {p}");
                    }
                    return Ok(Some(r));
                }
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(None)
        } else {
            Err(format!(
                "no completed checkpoint of {} can be used: {}. Restore a good copy, or remove the folder to start \
                 over",
                self.dir.display(),
                problems.join("; ")
            ))
        }
    }
}

/// Reads and validates the checkpoint or savepoint in `dir` (a `chk-N`
/// folder, or a savepoint's): its metadata, then every task file against
/// the size and checksum the metadata lists.
pub fn load_from(dir: &Path) -> Result<Restored, String> {
    load_folder(&Folder::at(dir)?)
}

fn load_folder(dir: &Folder) -> Result<Restored, String> {
    let meta_path = dir.display_file(METADATA);
    let text = match dir.get(METADATA) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{} has no `{METADATA}`: it is not a completed checkpoint or savepoint (a folder `chk-N` or \
                 `savepoint-…`) ({e})",
                dir.display()
            ));
        }
        Err(e) => return Err(format!("{meta_path}: cannot read it: {e}")),
    };
    let metadata: Metadata =
        serde_json::from_slice(&text).map_err(|e| format!("{meta_path}: not valid checkpoint metadata: {e}"))?;
    if !(1..=FORMAT).contains(&metadata.format) {
        return Err(format!(
            "{meta_path}: it is of format {}, and this Weir reads formats 1 to {FORMAT}; use the Weir that wrote it",
            metadata.format
        ));
    }
    // The metadata has no checksum: what the restore sizes by is checked.
    if let Some(v) = metadata.vertices.iter().find(|v| v.parallelism == 0 || v.parallelism > metadata.max_parallelism) {
        return Err(format!(
            "{meta_path}: gives `{}` a parallelism of {}, outside 1 to its max-parallelism {}: it is damaged",
            v.id, v.parallelism, metadata.max_parallelism
        ));
    }
    let mut stages = HashMap::new();
    for t in &metadata.tasks {
        if t.file.contains('/') || t.file.contains('\\') || t.file.starts_with('.') {
            return Err(format!("{meta_path}: names a task file outside its folder: {:?}", t.file));
        }
        let body = read_sealed(dir, &t.file, t)?;
        read_stages(&body, metadata.format, &mut stages).map_err(|e| format!("{}: {e}", dir.display_file(&t.file)))?;
    }
    let job_dir = dir.parent();
    for chain in &metadata.shared {
        let mut bodies = Vec::with_capacity(chain.files.len());
        for f in &chain.files {
            let name = f.file.strip_prefix(&format!("{SHARED}/")).unwrap_or("");
            if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
                return Err(format!("{meta_path}: names a shared file outside `{SHARED}/`: {:?}", f.file));
            }
            bodies.push(read_sealed(&job_dir.join(SHARED), name, f)?);
        }
        let Some(stage) = stages.get_mut(&(chain.vertex.clone(), chain.subtask)) else {
            return Err(format!(
                "{meta_path}: lists shared files of `{}` subtask {}, which no task file holds",
                chain.vertex, chain.subtask
            ));
        };
        stage.chain = bodies;
    }
    Ok(Restored { checkpoint: metadata.checkpoint, path: dir.path(), metadata, stages })
}

/// The body of file `name` in `dir`, checked against its size and
/// checksum in the metadata, then its own.
fn read_sealed(dir: &Folder, name: &str, listed: &TaskFile) -> Result<Vec<u8>, String> {
    let path = dir.display_file(name);
    let mut data = dir.get(name).map_err(|e| format!("{path}: cannot read it: {e}"))?;
    if data.len() as u64 != listed.bytes || crc32fast::hash(&data) != listed.crc32 {
        return Err(format!(
            "{}: it has {} bytes and another checksum than the {} bytes its metadata lists: it is damaged \
                 or truncated",
            path,
            data.len(),
            listed.bytes
        ));
    }
    let len = unseal(&data).map_err(|e| format!("{path}: {e}"))?.len();
    // The body in place: no copy of what may be a gigabyte.
    data.truncate(MAGIC_LEN + len);
    data.drain(..MAGIC_LEN);
    Ok(data)
}

/// Makes the folder of a checkpoint or savepoint.
pub(crate) fn begin(dir: &Folder) -> std::io::Result<()> {
    dir.create()
}

/// Writes one task's file into `dir` (synced): its size and checksum for
/// the metadata.
pub(crate) fn write_task(dir: &Folder, name: &str, body: &[u8]) -> std::io::Result<TaskFile> {
    let data = seal(body);
    let file = TaskFile { file: name.to_owned(), bytes: data.len() as u64, crc32: crc32fast::hash(&data) };
    dir.put(name, data, false)?;
    Ok(file)
}

/// Completes the checkpoint or savepoint in `dir`: its metadata, written
/// last and atomically.
pub(crate) fn complete(dir: &Folder, metadata: &Metadata) -> std::io::Result<()> {
    dir.sync()?;
    dir.put(METADATA, serde_json::to_vec_pretty(metadata).expect("invariant: metadata serializes"), true)?;
    // The savepoint's own folder entry, too.
    let _ = dir.parent().sync();
    dir.sync()
}

/// One stage's record in a task file.
pub(crate) struct StageRecord<'a> {
    pub vertex: &'a str,
    pub subtask: u32,
    pub watermark: i64,
    /// Its snapshot, when kept in the task file (empty when shared).
    pub state: &'a [u8],
    /// Its operator state.
    pub operator: &'a [u8],
    /// The task's in-flight data (first stage only).
    pub channels: &'a [u8],
}

/// A task file's body, in format [`FORMAT`].
pub(crate) fn write_stages(stages: &[StageRecord<'_>]) -> Vec<u8> {
    let mut w = super::format::Writer::default();
    w.u32(stages.len() as u32);
    for s in stages {
        w.str(s.vertex);
        w.u32(s.subtask);
        w.i64(s.watermark);
        // An operator's state may pass 4 GiB: a 64-bit length.
        w.u64(s.state.len() as u64);
        w.buf.extend_from_slice(s.state);
        w.u64(s.operator.len() as u64);
        w.buf.extend_from_slice(s.operator);
        w.u64(s.channels.len() as u64);
        w.buf.extend_from_slice(s.channels);
    }
    w.buf
}

fn read_stages(body: &[u8], format: u32, out: &mut HashMap<(String, u32), StageState>) -> Result<(), String> {
    let mut r = Reader::new(body);
    let n = r.u32()?;
    let long = |r: &mut Reader<'_>| -> Result<Vec<u8>, String> {
        let len = usize::try_from(r.u64()?).map_err(|_| "a stage's state is larger than memory".to_owned())?;
        Ok(r.take(len)?.to_vec())
    };
    for _ in 0..n {
        let vertex = r.str()?.to_owned();
        let subtask = r.u32()?;
        let watermark = r.i64()?;
        let state = long(&mut r)?;
        let operator = if format >= 2 { long(&mut r)? } else { Vec::new() };
        let channels = if format >= 3 { long(&mut r)? } else { Vec::new() };
        out.insert((vertex, subtask), StageState { watermark, state, chain: Vec::new(), operator, channels });
    }
    if !r.is_empty() {
        return Err("it has bytes after its last stage".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete_one(store: &CheckpointStore, id: u64, state: &[u8]) {
        let dir = store.checkpoint_dir(id);
        begin(&dir).unwrap();
        let body = write_stages(&[StageRecord {
            vertex: "op",
            subtask: 0,
            watermark: 5,
            state,
            operator: &[],
            channels: &[],
        }]);
        let file = write_task(&dir, "op-0", &body).unwrap();
        let vertices = vec![VertexParallelism { id: "op".into(), parallelism: 1, kind: "process".into() }];
        let m = Metadata {
            format: FORMAT,
            job: "j".into(),
            checkpoint: id,
            completed_at_ms: 0,
            max_parallelism: 128,
            vertices,
            tasks: vec![file],
            shared: Vec::new(),
        };
        complete(&dir, &m).unwrap();
    }

    #[test]
    fn the_latest_complete_checkpoint_is_used_and_a_damaged_one_falls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(&tmp.path().join("job")).unwrap();
        assert!(store.latest().unwrap().is_none(), "no checkpoint: a fresh start");
        complete_one(&store, 1, b"one");
        complete_one(&store, 2, b"two");
        begin(&store.checkpoint_dir(3)).unwrap(); // never completed
        let r = store.latest().unwrap().unwrap();
        assert_eq!((r.checkpoint, r.stages[&("op".into(), 0)].state.as_slice()), (2, &b"two"[..]));

        std::fs::write(store.checkpoint_dir(2).path().join("op-0"), b"WEIRCHK1 cut").unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(r.checkpoint, 1, "the damaged checkpoint 2 is skipped");
        let e = store.load(2).unwrap_err();
        assert!(e.contains("chk-2/op-0") && e.contains("damaged or truncated"), "{e}");

        std::fs::write(store.checkpoint_dir(1).path().join(METADATA), b"{").unwrap();
        let e = store.latest().unwrap_err();
        assert!(e.contains("chk-1/_metadata") && e.contains("chk-2/op-0"), "{e}");
    }

    #[test]
    fn a_damaged_shared_file_is_refused_with_its_path_and_unlisted_ones_are_collected() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(&tmp.path().join("job")).unwrap();
        let dir = store.checkpoint_dir(1);
        begin(&dir).unwrap();
        let full = store.write_shared("chk-1-task-0-0", b"full").unwrap();
        let stray = store.write_shared("chk-0-task-0-0", b"stray").unwrap();
        let file = write_task(
            &dir,
            "task-0",
            &write_stages(&[StageRecord {
                vertex: "op",
                subtask: 0,
                watermark: 5,
                state: &[],
                operator: &[],
                channels: &[],
            }]),
        )
        .unwrap();
        let vertices = vec![VertexParallelism { id: "op".into(), parallelism: 1, kind: "process".into() }];
        let shared = vec![SharedChain { vertex: "op".into(), subtask: 0, files: vec![full.clone()] }];
        let m = Metadata {
            format: FORMAT,
            job: "j".into(),
            checkpoint: 1,
            completed_at_ms: 0,
            max_parallelism: 128,
            vertices,
            tasks: vec![file],
            shared,
        };
        complete(&dir, &m).unwrap();
        let r = store.load(1).unwrap();
        assert_eq!(r.stages[&("op".into(), 0)].chain(), vec![&b"full"[..]]);

        store.collect_shared(&std::collections::HashSet::new(), &|_| true);
        assert!(store.dir().join(&full.file).is_file(), "listed by a completed checkpoint: kept");
        assert!(!store.dir().join(&stray.file).exists(), "listed by nothing: removed");

        std::fs::write(store.dir().join(&full.file), b"WEIRCHK1 cut").unwrap();
        let e = store.load(1).unwrap_err();
        assert!(e.contains("shared/chk-1-task-0-0") && e.contains("damaged or truncated"), "{e}");
    }

    #[test]
    fn retention_keeps_the_latest_completed_and_drops_what_is_older() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path()).unwrap();
        for id in 1..=4 {
            complete_one(&store, id, b"s");
        }
        begin(&store.checkpoint_dir(5)).unwrap();
        store.retain(2);
        assert_eq!(store.ids().unwrap(), vec![3, 4, 5]);
        store.discard_incomplete();
        assert_eq!(store.ids().unwrap(), vec![3, 4]);
    }

    #[test]
    fn task_files_of_format_1_without_operator_state_still_read() {
        // Format 1: a stage is vertex, subtask, watermark and state.
        let mut w = super::super::format::Writer::default();
        w.u32(1);
        w.str("op");
        w.u32(0);
        w.i64(5);
        w.u64(3);
        w.buf.extend_from_slice(b"old");
        let mut stages = HashMap::new();
        read_stages(&w.buf, 1, &mut stages).unwrap();
        let st = &stages[&("op".to_owned(), 0)];
        assert_eq!((st.state.as_slice(), st.operator.is_empty(), st.watermark), (&b"old"[..], true, 5));
        assert!(read_stages(&w.buf, 3, &mut HashMap::new()).is_err(), "format 3 expects more");
        let body = write_stages(&[StageRecord {
            vertex: "op",
            subtask: 0,
            watermark: 5,
            state: b"new",
            operator: b"ls",
            channels: &[],
        }]);
        let mut stages = HashMap::new();
        read_stages(&body, FORMAT, &mut stages).unwrap();
        assert_eq!(stages[&("op".to_owned(), 0)].operator, b"ls");
    }
}
