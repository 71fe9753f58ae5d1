//! Detector parameter files: what `heal tune -o FILE` writes and what
//! `heal replay --params FILE` and `heal watch --params FILE` read.
//!
//! A parameter file is one YAML mapping of the [`DetectorConfig`] shape
//! (the same as a runbook's `signals[].detector`), read with the runbook
//! loader's positioned reader so that every problem names the file, the
//! line and the field, and checked with [`DetectorConfig::problems`] like
//! a runbook's detector.

use std::path::Path;

use detect::DetectorConfig;
use serde_json::Value;

use super::load::path_and_message;
use super::yaml;
use crate::error::{RunbookError, RunbookErrors};

/// Reads and checks a detector parameter file.
///
/// # Errors
///
/// Every problem found, each with file, line and field (one error without
/// a line when the file cannot be read).
pub fn load_detector_params(path: impl AsRef<Path>) -> Result<DetectorConfig, RunbookErrors> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunbookErrors(vec![RunbookError::unreadable(path, "parameter file", &e)]))?;
    detector_params_from_source(path, &text)
}

/// Parses and checks a parameter file's text; `path` is only used in messages.
///
/// # Errors
///
/// Every problem found, each with file, line and field.
pub fn detector_params_from_source(
    path: &Path,
    text: &str,
) -> Result<DetectorConfig, RunbookErrors> {
    let at =
        |line: Option<usize>, column: Option<usize>, field: &str, message: String| RunbookError {
            file: path.to_path_buf(),
            line,
            column,
            field: field.to_owned(),
            message,
        };
    let (value, positions, problems) = yaml::parse(text).map_err(|p| {
        RunbookErrors(vec![at(
            Some(p.pos.line),
            Some(p.pos.column),
            "",
            p.message,
        )])
    })?;
    let mut found: Vec<RunbookError> = problems
        .into_iter()
        .map(|p| at(Some(p.pos.line), Some(p.pos.column), &p.path, p.message))
        .collect();
    let placed = |field: String, message: String| {
        let pos = positions.find(&field);
        at(pos.map(|p| p.line), pos.map(|p| p.column), &field, message)
    };
    if !matches!(value, Value::Object(_)) {
        found.push(placed(
            String::new(),
            "expected a mapping of detector settings (the `detector:` shape of a runbook signal)"
                .to_owned(),
        ));
        return Err(RunbookErrors(found));
    }
    match serde_path_to_error::deserialize::<_, DetectorConfig>(&value) {
        Ok(cfg) => {
            for (field, message) in cfg.problems() {
                found.push(placed(field.to_owned(), message));
            }
            if found.is_empty() {
                return Ok(cfg);
            }
        }
        Err(e) => {
            let (field, message) = path_and_message("", e);
            let field = positions.unknown_field_path(field, &message);
            found.push(placed(field, message));
        }
    }
    found.sort_by_key(|e| (e.line, e.column));
    Err(RunbookErrors(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<DetectorConfig, String> {
        detector_params_from_source(Path::new("p.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_detector_shape() {
        let cfg = load("# tuned\nthreshold: 0.25\nreset_threshold: 0.1\ndaily_buckets: 0\n")
            .expect("valid");
        assert_eq!(cfg.threshold, 0.25);
        assert_eq!(cfg.reset_threshold, 0.1);
        assert_eq!(cfg.daily_buckets, 0);
        assert_eq!(
            cfg.level_half_life,
            DetectorConfig::default().level_half_life
        );
    }

    #[test]
    fn unknown_field_is_placed_at_its_line() {
        let err = load("threshold: 0.25\nthreshhold: 0.3\n").unwrap_err();
        assert!(
            err.starts_with("p.yaml:2:1: threshhold: unknown field `threshhold`"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_value_is_reported() {
        let err = load("threshold: 1.5\nreset_samples: 0\n").unwrap_err();
        assert_eq!(
            err,
            "p.yaml:1:1: threshold: must be within [0, 1], got 1.5\n\
             p.yaml:2:1: reset_samples: must be at least 1, got 0"
        );
    }

    #[test]
    fn wrong_type_and_not_a_mapping() {
        let err = load("threshold: high\n").unwrap_err();
        assert!(err.starts_with("p.yaml:1:"), "{err}");
        assert!(err.contains("threshold: invalid type"), "{err}");
        let err = load("- 1\n").unwrap_err();
        assert!(err.contains("expected a mapping"), "{err}");
    }
}
