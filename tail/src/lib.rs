//! Tailing log files: paths and globs, rotation, truncation, multi-line
//! events and checkpoints.
//!
//! A file is known by its identity, not its name: the device and inode, and
//! a fingerprint of its first bytes (FNV-1a of up to [`FINGERPRINT_BYTES`];
//! an inode the file system reuses for a new file has other first bytes).
//! That is how Vector's file source and Fluent Bit's tail tell a rotated file
//! from a new one, and it is what makes the two usual rotations safe:
//!
//! - **rename and create** (logrotate's default): the path now names a new
//!   inode. The old one is kept open and read to its end, and a while longer
//!   ([`ROTATED_IDLE_POLLS`] polls without growth) for a writer that has not
//!   reopened yet; the new one is read from its first byte.
//! - **copytruncate**: the same inode becomes shorter than what was read (or
//!   its first bytes change): it is read again from the start. Lines written
//!   between logrotate's copy and its truncation are lost by copytruncate
//!   itself, not here.
//!
//! A [`FileCheckpoint`] says, per file, how far every line was emitted (the
//! start of the first line, or multi-line event, not yet emitted). The caller
//! persists them after the lines were used, so a restart re-reads from there:
//! nothing is lost, and lines are emitted again only if heal died between
//! using them and persisting the checkpoint. A file checkpointed under a
//! name that no longer holds it (rotated while heal was down) is looked for
//! by identity in its directory and read to its end.
//!
//! Memory is bounded: at most [`MAX_FILES`] files, a line longer than
//! `max_line_bytes` is cut (counted), a multi-line event holds at most
//! [`MAX_EVENT_LINES`] lines, and one poll reads at most `max_read_per_poll`
//! bytes of a file (the rest at the next poll).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes of a file's start its fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;
/// Longest line kept whole, by default; longer ones are cut.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Most bytes read from one file at one poll, by default.
pub const DEFAULT_MAX_READ_PER_POLL: usize = 16 << 20;
/// Polls a file that left its watched path (rotated, deleted) is still read
/// while it does not grow, for writers that reopen late.
pub const ROTATED_IDLE_POLLS: u32 = 5;
/// Most lines in one multi-line event; more start a new event.
pub const MAX_EVENT_LINES: usize = 1000;
/// Most files one tailer follows at once.
pub const MAX_FILES: usize = 1000;

/// Where to start in a file that has no checkpoint when heal starts for the
/// first time (files that appear later, or while heal was down, are always
/// read from their first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte: the file's history counts.
    Beginning,
    /// From the end: only what is written from now on counts.
    #[default]
    End,
}

/// What to tail and how.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Paths; `*`, `?` and `[...]` as in a shell glob.
    pub include: Vec<String>,
    /// See [`ReadFrom`].
    pub read_from: ReadFrom,
    /// A line that matches starts an event; the lines after it that do not
    /// belong to it (a stack trace). `None`: every line is an event.
    pub multiline_start: Option<regex::Regex>,
    /// Longer lines are cut here (on a character boundary).
    pub max_line_bytes: usize,
    /// Most bytes read from one file per poll.
    pub max_read_per_poll: usize,
}

impl TailConfig {
    /// `include` with the defaults: from the end, no multi-line, the
    /// default bounds.
    pub fn new(include: Vec<String>) -> Self {
        TailConfig {
            include,
            read_from: ReadFrom::End,
            multiline_start: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_read_per_poll: DEFAULT_MAX_READ_PER_POLL,
        }
    }
}

/// How far a file was read, to resume there after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheckpoint {
    /// Where the file was last seen.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// FNV-1a of its first `fingerprint_len` bytes.
    pub fingerprint: u64,
    /// Bytes the fingerprint covers (0: the file was empty).
    pub fingerprint_len: u32,
    /// Every event that ends before this offset was emitted.
    pub offset: u64,
}

/// What a tailer did since it was made (counters) and follows now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TailStats {
    /// Events emitted (a multi-line event counts once).
    pub events: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines cut at `max_line_bytes`.
    pub cut_lines: u64,
    /// Files that left their path (renamed or deleted) and were read to
    /// their end.
    pub rotations: u64,
    /// Files found truncated or rewritten in place, read again from 0.
    pub truncations: u64,
    /// Files not followed because [`MAX_FILES`] were.
    pub refused_files: u64,
    /// Reads that failed (the file is tried again at the next poll).
    pub read_errors: u64,
}

/// One file being followed.
#[derive(Debug)]
struct Followed {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    /// Set once the file has bytes; widened up to [`FINGERPRINT_BYTES`].
    fingerprint: Option<(u64, u32)>,
    /// Checkpoint offset: start of the first event not yet emitted.
    consumed: u64,
    /// Bytes read up to here.
    read_pos: u64,
    /// The partial line at the end of what was read.
    partial: Vec<u8>,
    /// Discarding the rest of a line that was cut.
    discarding: bool,
    /// The multi-line event being built: its text, its lines, and where
    /// its last complete line ends.
    pending: Option<(String, usize)>,
    pending_end: u64,
    /// Left its watched path; polls since it last grew.
    rotated: Option<u32>,
}

/// Follows the files of one [`TailConfig`].
#[derive(Debug)]
pub struct Tailer {
    config: TailConfig,
    files: Vec<Followed>,
    /// Checkpoints from the previous run not yet matched to a file.
    restored: Vec<FileCheckpoint>,
    /// Whether any checkpoint was given (a restart, not a first start).
    resumed: bool,
    polled: bool,
    stats: TailStats,
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of `file`'s first bytes, as long as it has (up to
/// [`FINGERPRINT_BYTES`]); `None` for an empty file.
fn fingerprint_of(file: &File, len: usize) -> std::io::Result<Option<(u64, u32)>> {
    let mut buf = vec![0u8; len.min(FINGERPRINT_BYTES)];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok((got > 0).then(|| (fnv1a(&buf[..got]), got as u32)))
}

/// Whether `file` still starts with the bytes of `fingerprint`.
fn starts_with(file: &File, fingerprint: (u64, u32)) -> std::io::Result<bool> {
    Ok(fingerprint_of(file, fingerprint.1 as usize)? == Some(fingerprint))
}

impl Tailer {
    /// A tailer resuming from `checkpoints` (empty on a first start).
    pub fn new(config: TailConfig, checkpoints: Vec<FileCheckpoint>) -> Self {
        Tailer {
            config,
            files: Vec::new(),
            resumed: !checkpoints.is_empty(),
            restored: checkpoints,
            polled: false,
            stats: TailStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// Files followed now.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Where to resume every followed file (and the restored checkpoints
    /// not found yet: a file that is back later is still resumed).
    pub fn checkpoints(&self) -> Vec<FileCheckpoint> {
        let mut out: Vec<FileCheckpoint> = self
            .files
            .iter()
            .map(|f| FileCheckpoint {
                path: f.path.clone(),
                dev: f.dev,
                ino: f.ino,
                fingerprint: f.fingerprint.map_or(0, |p| p.0),
                fingerprint_len: f.fingerprint.map_or(0, |p| p.1),
                offset: f.consumed,
            })
            .collect();
        out.extend(self.restored.iter().cloned());
        out
    }

    /// Reads what was written since the last poll; appends each complete
    /// event (line, or multi-line event) to `out`, in file order. Problems
    /// (an unreadable file, a bad pattern) are returned to be logged; they
    /// never stop the other files.
    pub fn poll(&mut self, out: &mut Vec<String>) -> Vec<String> {
        let mut problems = Vec::new();
        let found = self.discover(&mut problems);
        let first = !self.polled;
        self.polled = true;
        // Files that left their path.
        for f in &mut self.files {
            if !found.contains_key(&(f.dev, f.ino)) && f.rotated.is_none() {
                f.rotated = Some(0);
                self.stats.rotations += 1;
            }
        }
        // New files.
        let mut found: Vec<((u64, u64), PathBuf)> = found.into_iter().collect();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        for ((dev, ino), path) in found {
            if let Some(f) = self.files.iter_mut().find(|f| f.dev == dev && f.ino == ino) {
                f.path = path;
                f.rotated = None;
                continue;
            }
            if self.files.len() >= MAX_FILES {
                self.stats.refused_files += 1;
                continue;
            }
            match self.open(&path, dev, ino, first) {
                Ok(f) => self.files.push(f),
                Err(e) => {
                    self.stats.read_errors += 1;
                    problems.push(format!("{}: {e}", path.display()));
                }
            }
        }
        if first {
            self.find_renamed();
        }
        let max_line = self.config.max_line_bytes.max(1);
        let max_read = self.config.max_read_per_poll.max(1);
        let start = self.config.multiline_start.clone();
        let stats = &mut self.stats;
        self.files.retain_mut(|f| {
            match read_file(f, max_line, max_read, start.as_ref(), out, stats) {
                Ok(grew) => {
                    if let Some(idle) = &mut f.rotated {
                        *idle = if grew { 0 } else { *idle + 1 };
                        if *idle >= ROTATED_IDLE_POLLS {
                            // Done: what is left without a newline is the
                            // writer's last line.
                            flush_partial(f, start.as_ref(), out, stats);
                            flush_pending(f, out, stats);
                            return false;
                        }
                    }
                    true
                }
                Err(e) => {
                    stats.read_errors += 1;
                    problems.push(format!("{}: {e}", f.path.display()));
                    // A file that cannot be read where it was is let go.
                    f.rotated.is_none()
                }
            }
        });
        problems
    }

    /// The files the include patterns name now, by identity.
    fn discover(&mut self, problems: &mut Vec<String>) -> HashMap<(u64, u64), PathBuf> {
        let mut found = HashMap::new();
        for pattern in &self.config.include {
            let paths = match glob::glob(pattern) {
                Ok(paths) => paths,
                Err(e) => {
                    problems.push(format!("pattern {pattern:?}: {e}"));
                    continue;
                }
            };
            for path in paths.flatten() {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_file() {
                    found.entry((meta.dev(), meta.ino())).or_insert(path);
                }
            }
        }
        found
    }

    /// Opens a newly found file at the offset its checkpoint says, else
    /// from its start (or end, on a first start with no checkpoints).
    fn open(&mut self, path: &Path, dev: u64, ino: u64, first: bool) -> std::io::Result<Followed> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let size = meta.len();
        let mut followed = Followed {
            path: path.to_path_buf(),
            file,
            dev,
            ino,
            fingerprint: None,
            consumed: 0,
            read_pos: 0,
            partial: Vec::new(),
            discarding: false,
            pending: None,
            pending_end: 0,
            rotated: None,
        };
        if let Some(i) = self
            .restored
            .iter()
            .position(|c| c.dev == dev && c.ino == ino)
        {
            let cp = self.restored.swap_remove(i);
            let same = cp.fingerprint_len == 0
                || starts_with(&followed.file, (cp.fingerprint, cp.fingerprint_len))?;
            if same && cp.offset <= size {
                followed.consumed = cp.offset;
                followed.read_pos = cp.offset;
                followed.fingerprint =
                    (cp.fingerprint_len > 0).then_some((cp.fingerprint, cp.fingerprint_len));
                return Ok(followed);
            }
            // The inode was reused, or the file truncated while heal was
            // down: a new file.
            self.stats.truncations += 1;
        } else if first && !self.resumed && self.config.read_from == ReadFrom::End {
            followed.consumed = size;
            followed.read_pos = size;
            followed.fingerprint = fingerprint_of(&followed.file, FINGERPRINT_BYTES)?;
        }
        Ok(followed)
    }

    /// At a restart: checkpointed files no longer under a watched path were
    /// rotated while heal was down; find them in their directory by
    /// identity and read them to their end.
    fn find_renamed(&mut self) {
        let restored = std::mem::take(&mut self.restored);
        for cp in restored {
            if self.files.len() >= MAX_FILES {
                self.restored.push(cp);
                continue;
            }
            let Some(dir) = cp.path.parent() else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let hit = entries.flatten().map(|e| e.path()).find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.dev() == cp.dev && m.ino() == cp.ino)
            });
            let Some(path) = hit else {
                continue;
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let same = cp.fingerprint_len == 0
                || starts_with(&file, (cp.fingerprint, cp.fingerprint_len)).unwrap_or(false);
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            if !same || cp.offset > size {
                continue;
            }
            self.stats.rotations += 1;
            self.files.push(Followed {
                path,
                file,
                dev: cp.dev,
                ino: cp.ino,
                fingerprint: (cp.fingerprint_len > 0)
                    .then_some((cp.fingerprint, cp.fingerprint_len)),
                consumed: cp.offset,
                read_pos: cp.offset,
                partial: Vec::new(),
                discarding: false,
                pending: None,
                pending_end: 0,
                rotated: Some(0),
            });
        }
    }
}

/// Starts `f` over from its first byte (truncated or rewritten in place).
fn restart(f: &mut Followed, stats: &mut TailStats) {
    stats.truncations += 1;
    f.consumed = 0;
    f.read_pos = 0;
    f.partial.clear();
    f.discarding = false;
    f.pending = None;
    f.fingerprint = None;
}

/// Reads what `f` gained; `Ok(true)` when it had new bytes.
fn read_file(
    f: &mut Followed,
    max_line: usize,
    max_read: usize,
    start: Option<&regex::Regex>,
    out: &mut Vec<String>,
    stats: &mut TailStats,
) -> std::io::Result<bool> {
    let size = f.file.metadata()?.len();
    if size < f.read_pos {
        restart(f, stats);
    } else if let Some(fp) = f.fingerprint {
        if !starts_with(&f.file, fp)? {
            restart(f, stats);
        }
    }
    if f.fingerprint
        .is_none_or(|(_, len)| (len as usize) < FINGERPRINT_BYTES)
    {
        // Widen a short fingerprint as the file grows (its prefix was
        // just checked).
        if let Some(fp) = fingerprint_of(&f.file, FINGERPRINT_BYTES)? {
            f.fingerprint = Some(fp);
        }
    }
    let mut grew = false;
    let mut budget = max_read;
    let mut chunk = vec![0u8; 64 * 1024];
    while budget > 0 {
        let want = chunk.len().min(budget);
        let n = f.file.read_at(&mut chunk[..want], f.read_pos)?;
        if n == 0 {
            break;
        }
        grew = true;
        budget -= n;
        stats.bytes += n as u64;
        let base = f.read_pos;
        f.read_pos += n as u64;
        split(f, &chunk[..n], base, max_line, start, out, stats);
    }
    if !grew {
        // A quiet poll ends the multi-line event in progress.
        flush_pending(f, out, stats);
    }
    Ok(grew)
}

/// Splits freshly read bytes (starting at file offset `base`) into lines.
fn split(
    f: &mut Followed,
    bytes: &[u8],
    base: u64,
    max_line: usize,
    start: Option<&regex::Regex>,
    out: &mut Vec<String>,
    stats: &mut TailStats,
) {
    let mut rest = bytes;
    let mut offset = base;
    while !rest.is_empty() {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let end = offset + i as u64 + 1;
                if f.discarding {
                    f.discarding = false;
                    f.partial.clear();
                    if f.pending.is_none() {
                        f.consumed = end;
                    }
                    f.pending_end = end;
                } else {
                    let room = max_line.saturating_sub(f.partial.len());
                    let take = i.min(room);
                    f.partial.extend_from_slice(&rest[..take]);
                    if i > take {
                        stats.cut_lines += 1;
                    }
                    let line_start = end - (f.partial.len() + (i - take)) as u64 - 1;
                    let line = std::mem::take(&mut f.partial);
                    line_done(f, &line, line_start, end, start, out, stats);
                }
                rest = &rest[i + 1..];
                offset = end;
            }
            None => {
                if !f.discarding {
                    let room = max_line.saturating_sub(f.partial.len());
                    let take = rest.len().min(room);
                    f.partial.extend_from_slice(&rest[..take]);
                    if rest.len() > take {
                        // Too long: what fits is the line; the rest of it,
                        // up to its newline, is skipped.
                        stats.cut_lines += 1;
                        let line_start = offset + take as u64 - f.partial.len() as u64;
                        let line = std::mem::take(&mut f.partial);
                        let cut_at = offset + take as u64;
                        line_done(f, &line, line_start, cut_at, start, out, stats);
                        f.discarding = true;
                    }
                }
                rest = &[];
            }
        }
    }
}

/// A complete line `[line_start, end)`: an event of its own, or part of the
/// multi-line event in progress.
fn line_done(
    f: &mut Followed,
    raw: &[u8],
    line_start: u64,
    end: u64,
    start: Option<&regex::Regex>,
    out: &mut Vec<String>,
    stats: &mut TailStats,
) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    let Some(start) = start else {
        out.push(text.into_owned());
        stats.events += 1;
        f.consumed = end;
        return;
    };
    let continues = f
        .pending
        .as_ref()
        .is_some_and(|(_, lines)| *lines < MAX_EVENT_LINES)
        && !start.is_match(&text);
    if continues {
        if let Some((event, lines)) = &mut f.pending {
            event.push('\n');
            event.push_str(&text);
            *lines += 1;
        }
    } else {
        flush_pending(f, out, stats);
        f.consumed = line_start;
        f.pending = Some((text.into_owned(), 1));
    }
    f.pending_end = end;
}

/// Emits the multi-line event in progress.
fn flush_pending(f: &mut Followed, out: &mut Vec<String>, stats: &mut TailStats) {
    if let Some((event, _)) = f.pending.take() {
        out.push(event);
        stats.events += 1;
        f.consumed = f.pending_end;
    }
}

/// Emits the partial line at the end of a file nobody writes any more.
fn flush_partial(
    f: &mut Followed,
    start: Option<&regex::Regex>,
    out: &mut Vec<String>,
    stats: &mut TailStats,
) {
    if f.partial.is_empty() || f.discarding {
        return;
    }
    let line = std::mem::take(&mut f.partial);
    let line_start = f.read_pos - line.len() as u64;
    line_done(f, &line, line_start, f.read_pos, start, out, stats);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn poll(t: &mut Tailer) -> Vec<String> {
        let mut out = Vec::new();
        let problems = t.poll(&mut out);
        assert!(problems.is_empty(), "{problems:?}");
        out
    }

    fn tailer(dir: &Path, pattern: &str, checkpoints: Vec<FileCheckpoint>) -> Tailer {
        let mut config = TailConfig::new(vec![dir.join(pattern).display().to_string()]);
        config.read_from = ReadFrom::Beginning;
        Tailer::new(config, checkpoints)
    }

    #[test]
    fn complete_lines_only_and_partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "one\r\ntwo\nthr");
        let mut t = tailer(dir.path(), "*.log", vec![]);
        assert_eq!(poll(&mut t), ["one", "two"]);
        append(&log, "ee\n");
        assert_eq!(poll(&mut t), ["three"]);
        assert_eq!(poll(&mut t), Vec::<String>::new());
        assert_eq!(t.checkpoints()[0].offset, 15);
    }

    #[test]
    fn read_from_end_skips_history_on_a_first_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "old\n");
        let mut config = TailConfig::new(vec![log.display().to_string()]);
        let mut t = Tailer::new(config.clone(), vec![]);
        assert!(poll(&mut t).is_empty());
        append(&log, "new\n");
        assert_eq!(poll(&mut t), ["new"]);
        // A file that appears later is read from its start.
        let other = dir.path().join("b.log");
        append(&other, "b1\n");
        config.include.push(other.display().to_string());
        let mut t = Tailer::new(config, t.checkpoints());
        assert_eq!(poll(&mut t), ["b1"]);
    }

    #[test]
    fn rename_and_create_reads_the_old_file_to_its_end_then_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "1\n2\n");
        let mut t = tailer(dir.path(), "app.log", vec![]);
        assert_eq!(poll(&mut t), ["1", "2"]);
        // Written before the rename, and after it by a writer that still
        // holds the old file open.
        append(&log, "3\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&dir.path().join("app.log.1"), "4\n");
        append(&log, "5\n");
        let mut got = poll(&mut t);
        got.sort();
        assert_eq!(got, ["3", "4", "5"]);
        assert_eq!(t.stats().rotations, 1);
        append(&dir.path().join("app.log.1"), "late\n");
        assert_eq!(poll(&mut t), ["late"]);
        for _ in 0..ROTATED_IDLE_POLLS {
            poll(&mut t);
        }
        assert_eq!(t.files(), 1, "the rotated file is let go once idle");
    }

    #[test]
    fn copytruncate_starts_over_from_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "aaaa\nbbbb\n");
        let mut t = tailer(dir.path(), "app.log", vec![]);
        assert_eq!(poll(&mut t).len(), 2);
        std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "c\n");
        assert_eq!(poll(&mut t), ["c"]);
        // Rewritten in place past the old length: the first bytes differ.
        std::fs::write(&log, "xxxxxxxxxxxxxxx\nyy\n").unwrap();
        assert_eq!(poll(&mut t), ["xxxxxxxxxxxxxxx", "yy"]);
        assert_eq!(t.stats().truncations, 2);
    }

    #[test]
    fn a_restart_resumes_at_the_checkpoint_even_after_a_rotation_while_down() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "1\n2\n");
        let mut t = tailer(dir.path(), "app.log", vec![]);
        assert_eq!(poll(&mut t), ["1", "2"]);
        let saved = t.checkpoints();
        drop(t);
        // While down: more lines, a rotation, lines in the new file.
        append(&log, "3\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "4\n");
        let mut t = tailer(dir.path(), "app.log", saved);
        let mut got = poll(&mut t);
        got.sort();
        assert_eq!(got, ["3", "4"]);
    }

    #[test]
    fn a_reused_inode_with_other_first_bytes_is_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "first file\n");
        let mut t = tailer(dir.path(), "app.log", vec![]);
        poll(&mut t);
        let mut saved = t.checkpoints();
        // Same inode, other content, longer than the old offset.
        std::fs::write(&log, "second file, longer\n").unwrap();
        saved[0].offset = 5;
        let mut t = tailer(dir.path(), "app.log", saved);
        assert_eq!(poll(&mut t), ["second file, longer"]);
    }

    #[test]
    fn multi_line_events_join_and_end_at_the_next_start_or_a_quiet_poll() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(
            &log,
            "2024 ERROR boom\n  at a()\n  at b()\n2024 INFO ok\n2024 ERROR again\n  at c()\n",
        );
        let mut config = TailConfig::new(vec![log.display().to_string()]);
        config.read_from = ReadFrom::Beginning;
        config.multiline_start = Some(regex::Regex::new(r"^\d{4} ").unwrap());
        let mut t = Tailer::new(config.clone(), vec![]);
        assert_eq!(
            poll(&mut t),
            ["2024 ERROR boom\n  at a()\n  at b()", "2024 INFO ok"]
        );
        // The last event is held (its checkpoint before it), then emitted
        // when nothing more came.
        let held = t.checkpoints();
        assert_eq!(held[0].offset, 47);
        assert_eq!(poll(&mut t), ["2024 ERROR again\n  at c()"]);
        // A restart from the held checkpoint emits it once more, whole.
        let mut t = Tailer::new(config, held);
        poll(&mut t);
        assert_eq!(poll(&mut t), ["2024 ERROR again\n  at c()"]);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, &format!("{}\nshort\n", "x".repeat(100)));
        let mut config = TailConfig::new(vec![log.display().to_string()]);
        config.read_from = ReadFrom::Beginning;
        config.max_line_bytes = 10;
        let mut t = Tailer::new(config, vec![]);
        assert_eq!(poll(&mut t), ["x".repeat(10), "short".to_owned()]);
        assert_eq!(t.stats().cut_lines, 1);
        assert_eq!(t.checkpoints()[0].offset, 107);
    }

    #[test]
    fn reads_at_most_the_budget_per_poll() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, &"0123456789\n".repeat(10));
        let mut config = TailConfig::new(vec![log.display().to_string()]);
        config.read_from = ReadFrom::Beginning;
        config.max_read_per_poll = 33;
        let mut t = Tailer::new(config, vec![]);
        assert_eq!(poll(&mut t).len(), 3);
        assert_eq!(t.checkpoints()[0].offset, 33);
        let mut total = 3;
        for _ in 0..5 {
            total += poll(&mut t).len();
        }
        assert_eq!(total, 10);
    }
}
