//! The supervisor's durable state: per service, every release it ran (with
//! how often and when it was started), which one is current, the order in
//! which releases were activated (what `rollback` walks back). Replica
//! counts are not kept: at start they come from the configuration.
//!
//! One JSON file, `supervisor-state.json` in the state directory, rewritten
//! whole on every change: written to a temporary sibling, flushed to disk,
//! then renamed over the old one, so a crash leaves either the old or the
//! new file, never half of one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::Release;
use super::SupervisorError;

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "supervisor-state.json";

/// Most activations kept per service (older ones are dropped; the releases
/// themselves stay in `releases`).
const MAX_ACTIVATIONS: usize = 100;

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Per service, by name.
    pub services: BTreeMap<String, ServiceState>,
}

/// One service's durable state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Version of the release replicas run now.
    pub current: String,
    /// Every release ever run, in order of first activation.
    pub releases: Vec<ReleaseRecord>,
    /// Versions in order of activation (deploys and rollbacks), newest last.
    pub activations: Vec<String>,
}

/// A release and its starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// What ran.
    pub release: Release,
    /// When it was first activated (ms since the Unix epoch).
    pub activated_ms: i64,
    /// Replica starts with this release.
    pub starts: u64,
    /// The latest start (ms since the Unix epoch), if any.
    pub last_start_ms: Option<i64>,
}

impl ServiceState {
    /// The record of `version`.
    pub fn release(&self, version: &str) -> Option<&ReleaseRecord> {
        self.releases.iter().find(|r| r.release.version == version)
    }

    /// The current release.
    pub fn current_release(&self) -> Option<&Release> {
        self.release(&self.current).map(|r| &r.release)
    }

    /// Makes `release` current. A version already known keeps its record
    /// and must be the very same release: a version names one release.
    pub fn activate(&mut self, release: Release, now_ms: i64) -> Result<(), SupervisorError> {
        match self
            .releases
            .iter()
            .find(|r| r.release.version == release.version)
        {
            Some(r) if r.release != release => {
                return Err(SupervisorError::VersionConflict {
                    version: release.version,
                })
            }
            Some(_) => {}
            None => self.releases.push(ReleaseRecord {
                release: release.clone(),
                activated_ms: now_ms,
                starts: 0,
                last_start_ms: None,
            }),
        }
        self.current = release.version.clone();
        self.activations.push(release.version);
        if self.activations.len() > MAX_ACTIVATIONS {
            let extra = self.activations.len() - MAX_ACTIVATIONS;
            self.activations.drain(..extra);
        }
        Ok(())
    }

    /// The release `rollback` goes back to: `to` when given, otherwise the
    /// latest activated release that is not the current one (so two
    /// rollbacks in a row swap back, like `cd -`).
    pub fn rollback_target(&self, to: Option<&str>) -> Result<Release, SupervisorError> {
        let version = match to {
            Some(v) => v.to_owned(),
            None => self
                .activations
                .iter()
                .rev()
                .find(|v| **v != self.current)
                .cloned()
                .ok_or(SupervisorError::NoPreviousRelease)?,
        };
        self.release(&version)
            .map(|r| r.release.clone())
            .ok_or_else(|| SupervisorError::UnknownVersion {
                version,
                known: self
                    .releases
                    .iter()
                    .map(|r| r.release.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Counts one start of the current release.
    pub fn record_start(&mut self, version: &str, now_ms: i64) {
        if let Some(r) = self
            .releases
            .iter_mut()
            .find(|r| r.release.version == version)
        {
            r.starts += 1;
            r.last_start_ms = Some(now_ms);
        }
    }
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file of `dir`.
    pub fn in_dir(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join(STATE_FILE),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; a missing file is an empty state.
    pub fn read(&self) -> Result<State, SupervisorError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SupervisorError::State {
                path: self.path.clone(),
                message: format!("parsing: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(SupervisorError::State {
                path: self.path.clone(),
                message: format!("reading: {e}"),
            }),
        }
    }

    /// Writes `state` atomically (temporary sibling, fsync, rename).
    pub fn write(&self, state: &State) -> Result<(), SupervisorError> {
        let bytes = serde_json::to_vec_pretty(state).expect("the state serializes to JSON");
        stdx::write_atomically(&self.path, &bytes).map_err(|e| SupervisorError::State {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str) -> Release {
        Release {
            version: v.to_owned(),
            argv: vec!["prog".into(), v.into()],
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn rollback_goes_to_the_previous_release_and_back() {
        let mut s = ServiceState::default();
        assert!(matches!(
            s.rollback_target(None),
            Err(SupervisorError::NoPreviousRelease)
        ));
        s.activate(rel("v1"), 1).unwrap();
        assert!(matches!(
            s.rollback_target(None),
            Err(SupervisorError::NoPreviousRelease)
        ));
        s.activate(rel("v2"), 2).unwrap();
        s.activate(rel("v3"), 3).unwrap();
        assert_eq!(s.rollback_target(None).unwrap().version, "v2");
        assert_eq!(s.rollback_target(Some("v1")).unwrap().version, "v1");
        let e = s.rollback_target(Some("v9")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown release version \"v9\" (known: v1, v2, v3)"
        );
        s.activate(rel("v2"), 4).unwrap();
        // Back to v3, the release before this rollback.
        assert_eq!(s.rollback_target(None).unwrap().version, "v3");
        assert_eq!(s.releases.len(), 3);
    }

    #[test]
    fn a_version_names_one_release() {
        let mut s = ServiceState::default();
        s.activate(rel("v1"), 1).unwrap();
        let mut other = rel("v1");
        other.argv.push("--more".into());
        assert!(matches!(
            s.activate(other, 2),
            Err(SupervisorError::VersionConflict { .. })
        ));
        assert_eq!(s.releases.len(), 1);
    }

    #[test]
    fn starts_are_counted_and_the_file_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        assert_eq!(file.read().unwrap(), State::default());
        let mut state = State::default();
        let s = state.services.entry("api".into()).or_default();
        s.activate(rel("v1"), 10).unwrap();
        s.record_start("v1", 11);
        s.record_start("v1", 12);
        file.write(&state).unwrap();
        let back = file.read().unwrap();
        assert_eq!(back, state);
        let r = back.services["api"].release("v1").unwrap();
        assert_eq!((r.starts, r.last_start_ms), (2, Some(12)));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        std::fs::write(file.path(), "{not json").unwrap();
        let e = file.read().unwrap_err().to_string();
        assert!(e.starts_with("supervisor state "), "{e}");
        assert!(e.contains("parsing:"), "{e}");
    }
}
