//! Resolving the paths a job would touch, to confine them: every path a
//! spec reads or writes must lie under the job's working directory or a
//! folder the coordinator was started with (`--allow-path`), once links
//! are resolved (the coordinator refuses `..` parts outright).

use std::path::{Component, Path, PathBuf};

/// `p` made absolute with `.` and `..` removed, and links resolved as far
/// as the path exists (the rest, not yet made, is taken as written).
pub(crate) fn real(p: &Path) -> PathBuf {
    let mut lexical = PathBuf::new();
    for c in std::path::absolute(p).unwrap_or_else(|_| p.to_owned()).components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            c => lexical.push(c),
        }
    }
    // The longest existing ancestor, with its links resolved, then the rest.
    let mut rest = Vec::new();
    let mut head = lexical.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(head) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                head = parent;
            }
            _ => return lexical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(p: &Path, roots: &[PathBuf]) -> bool {
        let p = real(p);
        roots.iter().any(|r| p.starts_with(r))
    }

    #[test]
    fn paths_leaving_the_root_by_dots_or_links_are_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = real(&dir.path().join("job"));
        std::fs::create_dir_all(&root).unwrap();
        let roots = vec![root.clone()];
        assert!(inside(&root.join("data/input.txt"), &roots));
        assert!(inside(&root.join("out/../out.txt"), &roots));
        assert!(!inside(&root.join("../other.txt"), &roots));
        assert!(!inside(Path::new("/etc/passwd"), &roots));
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        assert!(!inside(&root.join("etc/passwd"), &roots));
        assert!(!inside(&root.join("etc/new-file"), &roots));
    }
}
