//! Atomic file writes: a temporary sibling, flushed, then renamed.
//!
//! Why a sibling and a rename: a reader sees the old file or the new one,
//! never half of it (rename(2) within one directory is atomic). Why the
//! flush before the rename: without it a crash right after the rename could
//! leave the new name on an empty file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an atomic write failed; the destination is untouched (and the
/// temporary file removed).
#[derive(Debug)]
pub struct AtomicWriteError {
    /// What was being done: `creating`, `writing`, `flushing`, `renaming
    /// temporary file to`.
    pub doing: &'static str,
    /// The file it was done to (the temporary sibling, or the destination
    /// for the rename).
    pub path: PathBuf,
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

/// Makes temporary names unique within the process; the pid makes them
/// unique across processes.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written under a hidden temporary name beside its destination
/// (`.NAME.tmp-PID-N`), flushed to disk, and renamed into place by
/// [`Staged::commit`]; dropped uncommitted, it is removed. Several staged
/// files can be committed together, in an order the caller chooses (a
/// dataset and its truth sidecar).
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary sibling of `dest`, lets `write` fill it and
    /// flushes it to disk.
    ///
    /// # Errors
    ///
    /// `write`'s error, or an [`AtomicWriteError`] converted into `E`; the
    /// temporary file is removed.
    pub fn new<E: From<AtomicWriteError>>(
        dest: &Path,
        write: impl FnOnce(&mut File) -> Result<(), E>,
    ) -> Result<Staged, E> {
        let fail = |doing, path: &Path, source| AtomicWriteError {
            doing,
            path: path.to_path_buf(),
            source,
        };
        let Some(name) = dest.file_name() else {
            return Err(fail(
                "writing",
                dest,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
            )
            .into());
        };
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dest.with_file_name(format!(
            ".{}.tmp-{}-{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut file = File::create(&tmp).map_err(|e| fail("creating", &tmp, e))?;
        // From here on, dropping `staged` removes the temporary file.
        let staged = Staged {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        };
        write(&mut file)?;
        file.sync_all()
            .map_err(|e| fail("flushing", &staged.tmp, e))?;
        Ok(staged)
    }

    /// Renames the file into place.
    ///
    /// # Errors
    ///
    /// The rename failed; the temporary file is removed.
    pub fn commit(mut self) -> Result<(), AtomicWriteError> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|source| AtomicWriteError {
            doing: "renaming temporary file to",
            path: self.dest.clone(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the temporary file is hidden and uniquely named,
            // a leftover is harmless.
            let _ = std::fs::remove_file(&self.tmp);
        }
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

/// Writes `path` atomically: `write` fills a [`Staged`] sibling, which is
/// then committed. On failure `path` is left as it was.
///
/// # Errors
///
/// The step that failed (`creating`, `writing`, `flushing`, `renaming
/// temporary file to`), with its path; an error `write` returns is
/// reported as `writing`.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), AtomicWriteError> {
    Staged::new(path, |file: &mut File| {
        write(file).map_err(|source| AtomicWriteError {
            doing: "writing",
            path: path.to_path_buf(),
            source,
        })
    })?
    .commit()
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
        assert_eq!(
            e.to_string(),
            format!("writing {}: disk full", path.display())
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "the temporary file is removed");
        let e = write_atomically(&dir.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert_eq!(e.doing, "creating");
    }

    #[test]
    fn staged_files_commit_in_the_callers_order_or_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let stage = |path: &Path, bytes: &'static [u8]| {
            Staged::new(path, |f| {
                f.write_all(bytes).map_err(|source| AtomicWriteError {
                    doing: "writing",
                    path: path.to_path_buf(),
                    source,
                })
            })
            .unwrap()
        };
        let sa = stage(&a, b"A");
        let sb = stage(&b, b"B");
        assert!(
            !a.exists() && !b.exists(),
            "nothing is in place before the commits"
        );
        sb.commit().unwrap();
        drop(sa);
        assert!(!a.exists() && b.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
