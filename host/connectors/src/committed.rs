//! The file sink's output under checkpoints: a file that grows by
//! commits.
//!
//! **Exactly-once** (two-phase commit, after Flink's `FileSink`): lines go
//! to a hidden in-progress file; a checkpoint's barrier closes it as the
//! pending part `.<name>.pending-<N>` (synced: the pre-commit), and only
//! when checkpoint N completes are its pending parts appended to the
//! visible file (synced, then removed: the commit). The checkpoint keeps
//! the visible file's committed length and its pending parts, so recovery
//! re-commits exactly those (a part still present is appended again from
//! the committed length; one already gone was appended) and cuts the file
//! back to what that checkpoint had committed: uncommitted data is
//! discarded, and committing twice is harmless.
//!
//! **At-least-once**: lines go straight to the visible file, synced at
//! each checkpoint; recovery keeps what is there (cutting a torn last
//! line) and appends, so lines after the checkpoint may repeat.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A part waiting for its checkpoint to complete.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    checkpoint: u64,
    bytes: u64,
}

enum Delivery {
    ExactlyOnce { in_progress: PathBuf, in_progress_bytes: u64, committed: u64, pending: Vec<Part> },
    AtLeastOnce,
}

/// The visible file and what is on its way into it.
pub(crate) struct Committed {
    path: PathBuf,
    delivery: Delivery,
    /// Where lines go now (the in-progress file, or the visible one).
    out: Option<BufWriter<File>>,
}

fn hidden(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

impl Committed {
    /// The output of `path`, exactly-once or not. Nothing is touched until
    /// [`Committed::start`].
    pub fn new(path: &Path, exactly_once: bool) -> Committed {
        let delivery = if exactly_once {
            Delivery::ExactlyOnce {
                in_progress: hidden(path, "inprogress"),
                in_progress_bytes: 0,
                committed: 0,
                pending: Vec::new(),
            }
        } else {
            Delivery::AtLeastOnce
        };
        Committed { path: path.to_owned(), delivery, out: None }
    }

    /// The hidden files of this output (in-progress and pending parts).
    fn leftovers(&self) -> Vec<PathBuf> {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let prefixes = [format!(".{name}.inprogress"), format!(".{name}.pending-")];
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p.as_str()))))
            .map(|e| e.path())
            .collect()
    }

    /// Starts writing: from nothing (`state` `None`: a fresh start empties
    /// the file), or from what a checkpoint kept.
    pub fn start(&mut self, state: Option<&[u8]>) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let path = self.path.clone();
        match (&mut self.delivery, state) {
            (Delivery::ExactlyOnce { committed, pending, .. }, Some(state)) => {
                *committed = recover(&path, state)?;
                pending.clear();
            }
            (Delivery::ExactlyOnce { committed, pending, .. }, None) => {
                File::create(&path)?.sync_all()?;
                *committed = 0;
                pending.clear();
            }
            (Delivery::AtLeastOnce, Some(state)) if state.len() != 8 => {
                // The checkpoint was taken exactly-once: commit what it
                // pre-committed, then go on straight through.
                recover(&path, state)?;
            }
            (Delivery::AtLeastOnce, Some(_)) => {
                // Keep everything but a torn last line.
                let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
                let keep = last_line_end(&mut file)?;
                file.set_len(keep)?;
                file.sync_all()?;
            }
            (Delivery::AtLeastOnce, None) => File::create(&path)?.sync_all()?,
        }
        for stale in self.leftovers() {
            std::fs::remove_file(stale)?;
        }
        sync_parent(&path)?;
        self.open()
    }

    fn open(&mut self) -> std::io::Result<()> {
        let file = match &mut self.delivery {
            Delivery::ExactlyOnce { in_progress, in_progress_bytes, .. } => {
                *in_progress_bytes = 0;
                File::create(in_progress)?
            }
            Delivery::AtLeastOnce => OpenOptions::new().append(true).open(&self.path)?,
        };
        self.out = Some(BufWriter::with_capacity(1 << 16, file));
        Ok(())
    }

    /// Writes one line (the newline included).
    pub fn write_line(&mut self, value: &[u8]) -> std::io::Result<()> {
        let out = self.out.as_mut().ok_or_else(|| std::io::Error::other("the output was not started"))?;
        out.write_all(value)?;
        out.write_all(b"\n")?;
        if let Delivery::ExactlyOnce { in_progress_bytes, .. } = &mut self.delivery {
            *in_progress_bytes += value.len() as u64 + 1;
        }
        Ok(())
    }

    fn flush_sync(&mut self) -> std::io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.flush()?;
            out.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Pre-commit for checkpoint `checkpoint`: what it must keep.
    pub fn snapshot(&mut self, checkpoint: u64) -> std::io::Result<Vec<u8>> {
        self.flush_sync()?;
        let path = self.path.clone();
        match &mut self.delivery {
            Delivery::ExactlyOnce { in_progress, in_progress_bytes, committed, pending } => {
                if *in_progress_bytes > 0 {
                    let part = hidden(&path, &format!("pending-{checkpoint}"));
                    self.out = None;
                    std::fs::rename(&*in_progress, &part)?;
                    sync_parent(&path)?;
                    pending.push(Part { checkpoint, bytes: *in_progress_bytes });
                    let state = encode(*committed, pending);
                    self.open()?;
                    return Ok(state);
                }
                Ok(encode(*committed, pending))
            }
            Delivery::AtLeastOnce => {
                let len = std::fs::metadata(&path)?.len();
                Ok(len.to_le_bytes().to_vec())
            }
        }
    }

    /// Checkpoint `checkpoint` completed: make its parts (and older ones)
    /// visible.
    pub fn commit(&mut self, checkpoint: u64) -> std::io::Result<()> {
        let path = self.path.clone();
        if let Delivery::ExactlyOnce { committed, pending, .. } = &mut self.delivery {
            let due = pending.iter().take_while(|p| p.checkpoint <= checkpoint).count();
            for p in pending.drain(..due) {
                let part = hidden(&path, &format!("pending-{}", p.checkpoint));
                append_part(&path, *committed, &part, p.bytes)?;
                *committed += p.bytes;
            }
        }
        Ok(())
    }

    /// The end of input: everything becomes visible.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.flush_sync()?;
        let path = self.path.clone();
        if let Delivery::ExactlyOnce { in_progress, in_progress_bytes, committed, pending } = &mut self.delivery {
            self.out = None;
            for p in pending.drain(..) {
                let part = hidden(&path, &format!("pending-{}", p.checkpoint));
                append_part(&path, *committed, &part, p.bytes)?;
                *committed += p.bytes;
            }
            append_part(&path, *committed, in_progress, *in_progress_bytes)?;
            *committed += *in_progress_bytes;
            *in_progress_bytes = 0;
        }
        sync_parent(&path)
    }

    /// A job that failed: the in-progress file goes (pending parts stay
    /// for recovery to commit).
    pub fn abandon(&mut self) {
        self.out = None;
        if let Delivery::ExactlyOnce { in_progress, .. } = &self.delivery {
            let _ = std::fs::remove_file(in_progress);
        }
    }
}

/// Recovery from an exactly-once checkpoint's `state`: re-commits its
/// pending parts (a part still present is appended again; one gone was
/// appended) and cuts `path` back to what the checkpoint committed; that
/// length.
fn recover(path: &Path, state: &[u8]) -> std::io::Result<u64> {
    let (base, parts) = decode(state)?;
    let mut at = base;
    for p in &parts {
        let part = hidden(path, &format!("pending-{}", p.checkpoint));
        if part.exists() {
            append_part(path, at, &part, p.bytes)?;
        }
        at += p.bytes;
    }
    let file = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    let len = file.metadata()?.len();
    if len < at {
        return Err(std::io::Error::other(format!(
            "{} holds {len} bytes, fewer than the {at} its checkpoint committed: it was changed outside the job; \
             restore it, or remove the checkpoints to start over",
            path.display()
        )));
    }
    file.set_len(at)?;
    file.sync_all()?;
    Ok(at)
}

/// Appends `part` (of `bytes` bytes) to `path` at offset `at` (cutting
/// anything after it first), syncs, and removes the part.
fn append_part(path: &Path, at: u64, part: &Path, bytes: u64) -> std::io::Result<()> {
    let mut out = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    let len = out.metadata()?.len();
    if len < at {
        return Err(std::io::Error::other(format!(
            "{} holds {len} bytes, fewer than the {at} already committed: it was changed outside the job",
            path.display()
        )));
    }
    out.set_len(at)?;
    out.seek(SeekFrom::Start(at))?;
    let mut input = File::open(part)?;
    let copied = std::io::copy(&mut (&mut input).take(bytes), &mut out)?;
    if copied != bytes {
        return Err(std::io::Error::other(format!(
            "{} holds {copied} bytes where its checkpoint recorded {bytes}: it is damaged",
            part.display()
        )));
    }
    out.sync_all()?;
    std::fs::remove_file(part)
}

/// The length of `file` up to and including its last newline.
fn last_line_end(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let n = buf.len().min(end as usize);
        file.seek(SeekFrom::Start(end - n as u64))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(end - n as u64 + i as u64 + 1);
        }
        end -= n as u64;
    }
    Ok(0)
}

fn encode(committed: u64, pending: &[Part]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pending.len() * 16);
    out.extend_from_slice(&committed.to_le_bytes());
    out.extend_from_slice(&(pending.len() as u64).to_le_bytes());
    for p in pending {
        out.extend_from_slice(&p.checkpoint.to_le_bytes());
        out.extend_from_slice(&p.bytes.to_le_bytes());
    }
    out
}

fn decode(state: &[u8]) -> std::io::Result<(u64, Vec<Part>)> {
    let bad = || std::io::Error::other("the sink's checkpointed state is damaged");
    let word = |i: usize| -> std::io::Result<u64> {
        let b = state.get(i * 8..i * 8 + 8).ok_or_else(bad)?;
        Ok(u64::from_le_bytes(b.try_into().expect("invariant: took 8 bytes")))
    };
    let committed = word(0)?;
    let n = word(1)?;
    if state.len() as u64 != 16 + n.saturating_mul(16) {
        return Err(bad());
    }
    let parts = (0..n as usize).map(|k| Ok(Part { checkpoint: word(2 + 2 * k)?, bytes: word(3 + 2 * k)? }));
    Ok((committed, parts.collect::<std::io::Result<_>>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn lines_become_visible_only_when_their_checkpoint_completes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut c = Committed::new(&path, true);
        c.start(None).unwrap();
        c.write_line(b"a").unwrap();
        let s1 = c.snapshot(1).unwrap();
        c.write_line(b"b").unwrap();
        assert_eq!(read(&path), "", "nothing is visible before a checkpoint completes");
        c.commit(1).unwrap();
        assert_eq!(read(&path), "a\n");
        let s2 = c.snapshot(2).unwrap();
        c.write_line(b"c").unwrap();
        c.finish().unwrap();
        assert_eq!(read(&path), "a\nb\nc\n");
        assert!(c.leftovers().is_empty());

        // Recovery from checkpoint 2 after the crash of a run that had
        // committed everything: cut back to checkpoint 2's commit point
        // (its own part was committed already), the rest is replayed.
        let mut again = Committed::new(&path, true);
        again.start(Some(&s2)).unwrap();
        assert_eq!(read(&path), "a\nb\n");
        // From checkpoint 1: `b` was never part of it.
        let mut again = Committed::new(&path, true);
        again.start(Some(&s1)).unwrap();
        assert_eq!(read(&path), "a\n");
    }

    #[test]
    fn recovery_commits_a_completed_checkpoint_whose_commit_was_lost_and_drops_uncommitted_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut c = Committed::new(&path, true);
        c.start(None).unwrap();
        c.write_line(b"a").unwrap();
        let s1 = c.snapshot(1).unwrap();
        c.write_line(b"b").unwrap();
        let _s2 = c.snapshot(2).unwrap(); // checkpoint 2 never completes
        c.write_line(b"c").unwrap();
        drop(c); // a crash: checkpoint 1 completed, its commit never ran
        assert_eq!(read(&path), "");
        let mut again = Committed::new(&path, true);
        again.start(Some(&s1)).unwrap();
        assert_eq!(read(&path), "a\n", "checkpoint 1's part is committed, 2's is dropped");
        assert!(again.leftovers().iter().all(|p| p.to_string_lossy().contains("inprogress")));
        again.write_line(b"b2").unwrap();
        again.finish().unwrap();
        assert_eq!(read(&path), "a\nb2\n");
    }

    #[test]
    fn at_least_once_keeps_what_was_written_but_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut c = Committed::new(&path, false);
        c.start(None).unwrap();
        c.write_line(b"a").unwrap();
        let s = c.snapshot(1).unwrap();
        c.write_line(b"b").unwrap();
        c.flush_sync().unwrap();
        drop(c);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"tor").unwrap();
        let mut again = Committed::new(&path, false);
        again.start(Some(&s)).unwrap();
        again.write_line(b"b").unwrap();
        again.finish().unwrap();
        assert_eq!(read(&path), "a\nb\nb\n", "the torn line goes; a line may repeat");
    }
}
