//! Atomic file writes: a temporary sibling, flushed, then renamed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an atomic write failed; `path` is untouched (and the temporary
/// file removed).
#[derive(Debug)]
pub struct AtomicWriteError {
    /// The file being written, or its temporary sibling.
    pub path: PathBuf,
    /// What was being done: `writing`, `renaming to`, ...
    pub doing: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.doing, self.path.display(), self.source)
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes `bytes` to `path` atomically (see [`write_atomically_with`]).
///
/// # Errors
///
/// The step that failed, with its path.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically: `write` fills a hidden temporary sibling
/// (`.NAME.tmpPID`, so two processes never share one), which is flushed to
/// disk and then renamed over `path`. A reader sees the old file or the
/// new one, never half of it; without the flush a crash right after the
/// rename could leave the new name on an empty file. On failure the
/// temporary file is removed and `path` is left as it was.
///
/// # Errors
///
/// The step that failed (`creating`, `writing`, `flushing`, `renaming to`),
/// with its path; an error `write` returns is reported as `writing`.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let fail = |doing, path: &Path, source| AtomicWriteError {
        path: path.to_path_buf(),
        doing,
        source,
    };
    let Some(name) = path.file_name() else {
        return Err(fail(
            "writing",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        ));
    };
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let staged = (|| {
        let mut file = File::create(&tmp).map_err(|e| fail("creating", &tmp, e))?;
        write(&mut file).map_err(|e| fail("writing", &tmp, e))?;
        file.sync_all().map_err(|e| fail("flushing", &tmp, e))
    })();
    let done =
        staged.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| fail("renaming to", path, e)));
    if done.is_err() {
        // Best effort: the temporary file is hidden and uniquely named.
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_a_failed_one_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let e = write_atomically_with(&path, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.doing, "writing");
        assert!(e.to_string().contains(".state.json.tmp"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "the temporary file is removed");
        let e = write_atomically(&dir.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert_eq!(e.doing, "creating");
    }
}
