//! The blob store: files addressed by their SHA-256, under
//! `<data-dir>/blobs/<hex>`. A blob is written to a temporary file in the
//! same folder, synced and renamed into place, so a blob under its name
//! is always whole; writing one that exists is a no-op (uploads are
//! deduplicated).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Files by SHA-256.
pub(crate) struct BlobStore {
    dir: PathBuf,
}

/// Whether `s` is a SHA-256 in lower-case hex (a blob's name).
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobStore {
    /// The store in `dir`, made if missing; temporary files a crash left
    /// behind are removed.
    pub fn open(dir: PathBuf) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(BlobStore { dir })
    }

    /// Where blob `sha` lives (whether or not it exists).
    pub fn path(&self, sha: &str) -> PathBuf {
        debug_assert!(is_sha256(sha));
        self.dir.join(sha)
    }

    /// Whether blob `sha` is stored.
    pub fn contains(&self, sha: &str) -> bool {
        is_sha256(sha) && self.path(sha).is_file()
    }

    /// Stores `bytes`, whose SHA-256 the caller computed as `sha`.
    pub fn put(&self, sha: &str, bytes: &[u8]) -> std::io::Result<()> {
        if self.contains(sha) {
            return Ok(());
        }
        write_atomic(&self.path(sha), bytes)
    }

    /// Removes blob `sha` (absent is fine).
    pub fn remove(&self, sha: &str) {
        if is_sha256(sha) {
            let _ = std::fs::remove_file(self.path(sha));
        }
    }

    /// Copies blob `sha` to `to`, making its folder.
    pub fn copy_to(&self, sha: &str, to: &Path) -> std::io::Result<()> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(self.path(sha), to).map(|_| ())
    }
}

/// Writes `bytes` to `path` atomically (temporary file, sync, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_once_under_its_hash_and_left_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let sha = weir_bundle::sha256_hex(b"hello");
        store.put(&sha, b"hello").unwrap();
        store.put(&sha, b"hello").unwrap();
        assert!(store.contains(&sha));
        assert_eq!(std::fs::read(store.path(&sha)).unwrap(), b"hello");
        assert!(!store.contains("../etc/passwd"));
        store.remove(&sha);
        assert!(!store.contains(&sha));
    }
}
