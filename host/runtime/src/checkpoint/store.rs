//! Where checkpoints live: `<dir>/<job>/chk-N/`, one file per task and a
//! `_metadata` file written last and atomically (a temporary file, synced,
//! renamed, the folder synced), so a checkpoint without one was never
//! completed and is never used. Reading validates every file (its checksum
//! and its size against the metadata); a damaged checkpoint is refused
//! with its path, and recovery falls back to the one before it.

use super::format::{Reader, seal, unseal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of a completed checkpoint's metadata file.
pub const METADATA: &str = "_metadata";

/// What `_metadata` says: the checkpoint, and every task file with its
/// size and checksum.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Metadata {
    /// The format's version (1).
    pub format: u32,
    /// The job's name.
    pub job: String,
    /// The checkpoint's number.
    pub checkpoint: u64,
    /// When it completed, epoch milliseconds.
    pub completed_at_ms: u64,
    /// Vertices and their parallelism when it was taken.
    pub vertices: Vec<VertexParallelism>,
    /// The task files.
    pub tasks: Vec<TaskFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct VertexParallelism {
    pub id: String,
    pub parallelism: u32,
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
    /// What the operator wrote.
    pub state: Vec<u8>,
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
    dir: PathBuf,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl CheckpointStore {
    /// The checkpoints under `dir` (the job's own folder, `<dir>/<job>`).
    pub fn new(dir: PathBuf) -> CheckpointStore {
        CheckpointStore { dir }
    }

    /// The job's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id}"))
    }

    /// The numbers of every `chk-N` folder, complete or not, lowest first.
    pub fn ids(&self) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        ids
    }

    fn is_complete(&self, id: u64) -> bool {
        self.checkpoint_dir(id).join(METADATA).is_file()
    }

    /// Makes checkpoint `id`'s folder.
    pub(crate) fn begin(&self, id: u64) -> std::io::Result<()> {
        std::fs::create_dir_all(self.checkpoint_dir(id))
    }

    /// Writes one task's file (synced): its size and checksum for the
    /// metadata.
    pub(crate) fn write_task(&self, id: u64, name: &str, body: &[u8]) -> std::io::Result<TaskFile> {
        let data = seal(body);
        let path = self.checkpoint_dir(id).join(name);
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&data)?;
        f.sync_all()?;
        Ok(TaskFile { file: name.to_owned(), bytes: data.len() as u64, crc32: crc32fast::hash(&data) })
    }

    /// Completes checkpoint `id`: its metadata, written last and
    /// atomically.
    pub(crate) fn complete(&self, metadata: &Metadata) -> std::io::Result<()> {
        let dir = self.checkpoint_dir(metadata.checkpoint);
        sync_dir(&dir)?;
        let tmp = dir.join(format!("{METADATA}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(metadata).expect("invariant: metadata serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(METADATA))?;
        sync_dir(&dir)
    }

    /// Removes checkpoint `id` (aborted, or past retention).
    pub(crate) fn discard(&self, id: u64) {
        let dir = self.checkpoint_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove checkpoint {}: {e}", dir.display());
        }
    }

    /// Keeps the `keep` latest completed checkpoints and removes every
    /// folder older than the oldest of them.
    pub(crate) fn retain(&self, keep: usize) {
        let ids = self.ids();
        let complete: Vec<u64> = ids.iter().copied().filter(|&id| self.is_complete(id)).collect();
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
        for id in self.ids() {
            if !self.is_complete(id) {
                self.discard(id);
            }
        }
    }

    /// Reads and validates checkpoint `id`.
    pub fn load(&self, id: u64) -> Result<Restored, String> {
        let dir = self.checkpoint_dir(id);
        let meta_path = dir.join(METADATA);
        let text = std::fs::read(&meta_path).map_err(|e| format!("{}: cannot read it: {e}", meta_path.display()))?;
        let metadata: Metadata = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not valid checkpoint metadata: {e}", meta_path.display()))?;
        if metadata.format != 1 || metadata.checkpoint != id {
            return Err(format!(
                "{}: it is checkpoint {} of format {}, where checkpoint {id} of format 1 was expected",
                meta_path.display(),
                metadata.checkpoint,
                metadata.format
            ));
        }
        let mut stages = HashMap::new();
        for t in &metadata.tasks {
            if t.file.contains('/') || t.file.contains('\\') || t.file.starts_with('.') {
                return Err(format!("{}: names a task file outside its folder: {:?}", meta_path.display(), t.file));
            }
            let path = dir.join(&t.file);
            let data = std::fs::read(&path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
            if data.len() as u64 != t.bytes || crc32fast::hash(&data) != t.crc32 {
                return Err(format!(
                    "{}: it has {} bytes and another checksum than the {} bytes its metadata lists: it is damaged \
                     or truncated",
                    path.display(),
                    data.len(),
                    t.bytes
                ));
            }
            let body = unseal(&data).map_err(|e| format!("{}: {e}", path.display()))?;
            read_stages(body, &mut stages).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Restored { checkpoint: id, path: dir, metadata, stages })
    }

    /// The latest completed checkpoint that reads back whole. A damaged
    /// one is skipped with a warning naming it (recovery falls back to the
    /// one before); `Err` when checkpoints were completed and none of them
    /// is usable (starting over would repeat output), naming each.
    pub fn latest(&self) -> Result<Option<Restored>, String> {
        let mut problems = Vec::new();
        for id in self.ids().into_iter().rev().filter(|&id| self.is_complete(id)) {
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

/// A task file's body: its stages, each (vertex id, subtask, watermark,
/// state).
pub(crate) fn write_stages(stages: &[(String, u32, i64, Vec<u8>)]) -> Vec<u8> {
    let mut w = super::format::Writer::default();
    w.u32(stages.len() as u32);
    for (vertex, subtask, watermark, state) in stages {
        w.str(vertex);
        w.u32(*subtask);
        w.i64(*watermark);
        w.bytes(state);
    }
    w.buf
}

fn read_stages(body: &[u8], out: &mut HashMap<(String, u32), StageState>) -> Result<(), String> {
    let mut r = Reader::new(body);
    let n = r.u32()?;
    for _ in 0..n {
        let vertex = r.str()?.to_owned();
        let subtask = r.u32()?;
        let watermark = r.i64()?;
        let state = r.bytes()?.to_vec();
        out.insert((vertex, subtask), StageState { watermark, state });
    }
    if !r.is_empty() {
        return Err("it has bytes after its last stage".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(store: &CheckpointStore, id: u64, state: &[u8]) {
        store.begin(id).unwrap();
        let body = write_stages(&[("op".into(), 0, 5, state.to_vec())]);
        let file = store.write_task(id, "op-0", &body).unwrap();
        let vertices = vec![VertexParallelism { id: "op".into(), parallelism: 1 }];
        let m =
            Metadata { format: 1, job: "j".into(), checkpoint: id, completed_at_ms: 0, vertices, tasks: vec![file] };
        store.complete(&m).unwrap();
    }

    #[test]
    fn the_latest_complete_checkpoint_is_used_and_a_damaged_one_falls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path().join("job"));
        assert!(store.latest().unwrap().is_none(), "no checkpoint: a fresh start");
        complete(&store, 1, b"one");
        complete(&store, 2, b"two");
        store.begin(3).unwrap(); // never completed
        let r = store.latest().unwrap().unwrap();
        assert_eq!((r.checkpoint, r.stages[&("op".into(), 0)].state.as_slice()), (2, &b"two"[..]));

        std::fs::write(store.checkpoint_dir(2).join("op-0"), b"WEIRCHK1 cut").unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(r.checkpoint, 1, "the damaged checkpoint 2 is skipped");
        let e = store.load(2).unwrap_err();
        assert!(e.contains("chk-2/op-0") && e.contains("damaged or truncated"), "{e}");

        std::fs::write(store.checkpoint_dir(1).join(METADATA), b"{").unwrap();
        let e = store.latest().unwrap_err();
        assert!(e.contains("chk-1/_metadata") && e.contains("chk-2/op-0"), "{e}");
    }

    #[test]
    fn retention_keeps_the_latest_completed_and_drops_what_is_older() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path().to_owned());
        for id in 1..=4 {
            complete(&store, id, b"s");
        }
        store.begin(5).unwrap();
        store.retain(2);
        assert_eq!(store.ids(), vec![3, 4, 5]);
        store.discard_incomplete();
        assert_eq!(store.ids(), vec![3, 4]);
    }
}
