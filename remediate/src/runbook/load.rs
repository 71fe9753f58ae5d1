//! Reading a runbook directory: files to YAML trees to typed runbooks, with
//! every problem collected and placed at its file, line and field.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::config::{
    Agent, DiagnosisConfig, Docker, Exec, Guardrails, LogSourceConfig, Reroute, Restart, Rollback,
    Rule, Scale, Signal, Webhook,
};
use super::validate;
use super::yaml::{self, join, kind, Positions};
use crate::error::{RunbookError, RunbookErrors};

/// Every runbook of a directory, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RunbookSet {
    files: Vec<PathBuf>,
    signals: Vec<Signal>,
    rules: Vec<Rule>,
    guardrails: Guardrails,
    log_sources: Vec<LogSourceConfig>,
    diagnosis: Option<DiagnosisConfig>,
}

/// A problem tagged with the index of its file, for sorting.
pub(crate) type Found = (usize, RunbookError);

/// One file after parsing, before cross-file validation.
#[derive(Debug)]
pub(crate) struct ParsedFile {
    /// Path for messages.
    pub path: PathBuf,
    /// Where every node is.
    pub positions: Positions,
    /// Signals that deserialized, with their index in `signals:`.
    pub signals: Vec<(usize, Signal)>,
    /// Rules that deserialized, with their index in `rules:`.
    pub rules: Vec<(usize, Rule)>,
    /// Names of signals that failed to deserialize, so rules referring to
    /// them are not also reported as referring to an undefined signal.
    pub broken_signal_names: Vec<String>,
    /// Names of rules that failed to deserialize, likewise for duplicates.
    pub broken_rule_names: Vec<String>,
    /// The file's `guardrails:`, when it has them and they deserialized.
    pub guardrails: Option<Guardrails>,
    /// Log sources that deserialized, with their index in `log_sources:`.
    pub log_sources: Vec<(usize, LogSourceConfig)>,
    /// The file's `diagnosis:`, when it has one and it deserialized.
    pub diagnosis: Option<DiagnosisConfig>,
    /// Names of log sources that failed to deserialize.
    pub broken_log_source_names: Vec<String>,
}

impl ParsedFile {
    /// A problem at `field` (a JSON path) of this file.
    pub(crate) fn error(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> RunbookError {
        let field = field.into();
        let pos = self.positions.find(&field);
        RunbookError {
            file: self.path.clone(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            field,
            message: message.into(),
        }
    }
}

impl RunbookSet {
    /// Loads every `*.yaml` and `*.yml` file of `dir` (not recursing), in
    /// file-name order, and validates them together.
    ///
    /// # Errors
    ///
    /// Every problem found, each with file, line and field.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RunbookSet, RunbookErrors> {
        let dir = dir.as_ref();
        let fail = |message: String| {
            RunbookErrors(vec![RunbookError {
                file: dir.to_path_buf(),
                line: None,
                column: None,
                field: String::new(),
                message,
            }])
        };
        let entries =
            std::fs::read_dir(dir).map_err(|e| fail(format!("reading runbook directory: {e}")))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| fail(format!("reading runbook directory: {e}")))?;
            let path = entry.path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if is_yaml && path.is_file() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(fail(
                "reading runbook directory: no *.yaml or *.yml files".to_owned(),
            ));
        }
        paths.sort();
        RunbookSet::load_files(&paths)
    }

    /// Loads the given files, in this order, and validates them together.
    ///
    /// # Errors
    ///
    /// Every problem found, each with file, line and field.
    pub fn load_files(paths: &[impl AsRef<Path>]) -> Result<RunbookSet, RunbookErrors> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let path = path.as_ref();
            match std::fs::read_to_string(path) {
                Ok(text) => sources.push((path.to_path_buf(), text)),
                Err(e) => errors.push(RunbookError::unreadable(path, "runbook file", &e)),
            }
        }
        let result = RunbookSet::from_sources(&sources);
        match (errors.is_empty(), result) {
            (true, result) => result,
            (false, Ok(_)) => Err(RunbookErrors(errors)),
            (false, Err(RunbookErrors(more))) => {
                errors.extend(more);
                Err(RunbookErrors(errors))
            }
        }
    }

    /// Parses and validates runbook texts; each path is only used in
    /// messages. This is what [`RunbookSet::load_dir`] does after reading.
    ///
    /// # Errors
    ///
    /// Every problem found, each with file, line and field.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<RunbookSet, RunbookErrors> {
        let mut found: Vec<Found> = Vec::new();
        let mut files = Vec::new();
        for (index, (path, text)) in sources.iter().enumerate() {
            if let Some(file) = parse_file(index, path, text, &mut found) {
                files.push((index, file));
            }
        }
        validate::validate(&files, &mut found);
        if !found.is_empty() {
            found.sort_by_key(|(file, e)| (*file, e.line, e.column));
            return Err(RunbookErrors(found.into_iter().map(|(_, e)| e).collect()));
        }
        let mut set = RunbookSet {
            files: Vec::new(),
            signals: Vec::new(),
            rules: Vec::new(),
            guardrails: Guardrails::default(),
            log_sources: Vec::new(),
            diagnosis: None,
        };
        for (_, file) in files {
            if let Some(g) = file.guardrails {
                set.guardrails = g;
            }
            if let Some(d) = file.diagnosis {
                set.diagnosis = Some(d);
            }
            set.files.push(file.path);
            set.signals
                .extend(file.signals.into_iter().map(|(_, mut s)| {
                    // An alert signal without a detector: a firing alert fires,
                    // from its first sample, and nothing else does.
                    if s.alertmanager.is_some() && s.detector.is_none() {
                        s.detector = Some(detect::DetectorConfig {
                            direction: detect::Direction::Up,
                            limit_above: Some(0.5),
                            warmup: u32::MAX,
                            ..Default::default()
                        });
                    }
                    s
                }));
            set.rules.extend(file.rules.into_iter().map(|(_, mut r)| {
                // `alert: NAME` is `match: {alertname: NAME}`.
                if let Some(alert) = r.when.alert.clone() {
                    r.when.matchers.insert("alertname".into(), alert);
                }
                r
            }));
            set.log_sources
                .extend(file.log_sources.into_iter().map(|(_, l)| l));
        }
        Ok(set)
    }

    /// The files loaded, in load order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every signal, in file order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The guardrails in effect (a file's `guardrails:`, or the defaults).
    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    /// Every log source, in file order.
    pub fn log_sources(&self) -> &[LogSourceConfig] {
        &self.log_sources
    }

    /// The `diagnosis:` block, when a file sets one.
    pub fn diagnosis(&self) -> Option<&DiagnosisConfig> {
        self.diagnosis.as_ref()
    }

    /// The signal with this name.
    pub fn signal(&self, name: &str) -> Option<&Signal> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// A one-line count for humans: `3 files, 4 signals, 6 rules`.
    pub fn summary(&self) -> String {
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "{}, {}, {}",
            count(self.files.len(), "file"),
            count(self.signals.len(), "signal"),
            count(self.rules.len(), "rule")
        )
    }
}

/// Parses one file; problems go to `found`. Returns `None` when nothing in
/// the file can be trusted (YAML syntax error, not a mapping).
fn parse_file(index: usize, path: &Path, text: &str, found: &mut Vec<Found>) -> Option<ParsedFile> {
    let error_at = |line: Option<usize>, column: Option<usize>, field: &str, message: String| {
        (
            index,
            RunbookError {
                file: path.to_path_buf(),
                line,
                column,
                field: field.to_owned(),
                message,
            },
        )
    };
    let (value, positions, problems) = match yaml::parse(text) {
        Ok(parsed) => parsed,
        Err(p) => {
            // The YAML reader cannot go on after a syntax error, so nothing
            // after it can be checked: say so, rather than let the next run
            // surprise.
            found.push(error_at(
                Some(p.pos.line),
                Some(p.pos.column),
                "",
                format!(
                    "{} (a YAML syntax error stops the reader: the rest of this file was not \
                     checked; other files were)",
                    p.message
                ),
            ));
            return None;
        }
    };
    for p in problems {
        found.push(error_at(
            Some(p.pos.line),
            Some(p.pos.column),
            &p.path,
            p.message,
        ));
    }
    let mut file = ParsedFile {
        path: path.to_path_buf(),
        positions,
        signals: Vec::new(),
        rules: Vec::new(),
        broken_signal_names: Vec::new(),
        broken_rule_names: Vec::new(),
        guardrails: None,
        log_sources: Vec::new(),
        broken_log_source_names: Vec::new(),
        diagnosis: None,
    };
    let top = match value {
        Value::Object(map) => map,
        Value::Null => {
            found.push(error_at(
                None,
                None,
                "",
                "empty runbook file: expected `signals:`, `rules:` or both".to_owned(),
            ));
            return None;
        }
        other => {
            let e = file.error(
                "",
                format!(
                    "invalid type: {}, expected a mapping with `signals` and `rules`",
                    kind(&other)
                ),
            );
            found.push((index, e));
            return None;
        }
    };
    for (key, value) in top {
        match key.as_str() {
            "signals" => {
                let (ok, broken) =
                    deserialize_each::<Signal>(index, &file, "signals", value, found);
                file.signals = ok;
                file.broken_signal_names = broken;
            }
            "rules" => {
                let (ok, broken) = deserialize_each::<Rule>(index, &file, "rules", value, found);
                file.rules = ok;
                file.broken_rule_names = broken;
            }
            "log_sources" => {
                let (ok, broken) =
                    deserialize_each::<LogSourceConfig>(index, &file, "log_sources", value, found);
                file.log_sources = ok;
                file.broken_log_source_names = broken;
            }
            "diagnosis" => match serde_path_to_error::deserialize::<_, DiagnosisConfig>(&value) {
                Ok(d) => file.diagnosis = Some(d),
                Err(e) => {
                    let (field, message) = path_and_message("diagnosis", e);
                    let field = file.positions.unknown_field_path(field, &message);
                    found.push((index, file.error(field, message)));
                }
            },
            "guardrails" => match serde_path_to_error::deserialize::<_, Guardrails>(&value) {
                Ok(g) => file.guardrails = Some(g),
                Err(e) => {
                    let (field, message) = path_and_message("guardrails", e);
                    let field = file.positions.unknown_field_path(field, &message);
                    found.push((index, file.error(field, message)));
                }
            },
            other => {
                let e = file.error(
                    other,
                    format!(
                        "unknown field `{other}`, expected `signals`, `rules`, `guardrails`, `log_sources` or `diagnosis`"
                    ),
                );
                found.push((index, e));
            }
        }
    }
    Some(file)
}

/// Deserializes each element of the list under `key` on its own, so one
/// broken element does not hide problems in the others. Returns the elements
/// that deserialized (with their index) and the `name` of those that did not.
fn deserialize_each<T: DeserializeOwned>(
    index: usize,
    file: &ParsedFile,
    key: &str,
    value: Value,
    found: &mut Vec<Found>,
) -> (Vec<(usize, T)>, Vec<String>) {
    let mut ok = Vec::new();
    let mut broken = Vec::new();
    let items = match value {
        Value::Array(items) => items,
        // `rules:` with nothing after it: nothing to do, not worth an error.
        Value::Null => return (ok, broken),
        other => {
            let e = file.error(
                key,
                format!("invalid type: {}, expected a list", kind(&other)),
            );
            found.push((index, e));
            return (ok, broken);
        }
    };
    for (i, mut item) in items.into_iter().enumerate() {
        let base = format!("{key}[{i}]");
        let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
        // serde stops at an element's first problem: take the offending
        // field out and deserialize again, so that one run reports every
        // problem of the element (bounded; a field whose removal only makes
        // it missing was reported already).
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..MAX_PROBLEMS_PER_ITEM {
            let e = match serde_path_to_error::deserialize::<_, T>(&item) {
                Ok(t) => {
                    // With its bad fields taken out it reads: validation
                    // (references, templates) still checks the rest of it
                    // in this same run. The file's problems are already
                    // recorded, so the set does not load either way.
                    ok.push((i, t));
                    break;
                }
                Err(e) => e,
            };
            let (mut field, mut message) = path_and_message(&base, e);
            if let Some((sub, better)) = refine_action(&item, &base, &field) {
                (field, message) = (sub, better);
            }
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
                .map(|m| join(&field, m));
            if missing.is_some_and(|m| removed.contains(&m)) {
                break;
            }
            let field = file.positions.unknown_field_path(field, &message);
            found.push((index, file.error(field.clone(), message)));
            let taken = field
                .strip_prefix(&base)
                .is_some_and(|rel| remove_at(&mut item, rel));
            if !taken {
                break;
            }
            removed.push(field);
        }
        if !ok.iter().any(|(j, _)| *j == i) {
            if let Some(name) = name {
                broken.push(name);
            }
        }
    }
    (ok, broken)
}

/// Most problems reported for one signal or rule.
const MAX_PROBLEMS_PER_ITEM: usize = 32;

/// Removes the map entry at `rel` (`.when.for`, `.then[1].url`) from
/// `value`; `false` when `rel` is empty or ends at a list element (removing
/// it would shift its siblings' positions) or does not exist.
fn remove_at(value: &mut Value, rel: &str) -> bool {
    let mut segments: Vec<&str> = Vec::new();
    for part in rel.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                segments.push(&rest[..i]);
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                segments.push(&rest[..=end]);
                rest = &rest[end + 1..];
            }
        } else {
            segments.push(rest);
        }
    }
    let Some((last, path)) = segments.split_last() else {
        return false;
    };
    if last.starts_with('[') {
        return false;
    }
    let mut at = value;
    for seg in path {
        let next = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => i.parse::<usize>().ok().and_then(|i| at.get_mut(i)),
            None => at.get_mut(*seg),
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    at.as_object_mut().and_then(|m| m.remove(*last)).is_some()
}

/// The full JSON path and the message of a deserialization error.
pub fn path_and_message(
    base: &str,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> (String, String) {
    use serde_path_to_error::Segment;
    let mut field = base.to_owned();
    for segment in e.path() {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => field = join(&field, key),
            Segment::Unknown => field = join(&field, "?"),
        }
    }
    (field, e.into_inner().to_string())
}

/// When an error points at a whole step (`rules[0].then[1]`), deserializes
/// that step again as the struct its `action:` names, whose error has the
/// exact field. See the comment on `Action`.
fn refine_action(rule: &Value, base: &str, field: &str) -> Option<(String, String)> {
    fn again<T: DeserializeOwned>(base: &str, step: Value) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(&step)
            .err()
            .map(|e| path_and_message(base, e))
    }
    let j: usize = field
        .strip_prefix(base)?
        .strip_prefix(".then[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let mut step = rule.get("then")?.get(j)?.as_object()?.clone();
    let action = step.remove("action")?;
    let step = Value::Object(step);
    match action.as_str()? {
        "restart" => again::<Restart>(field, step),
        "scale" => again::<Scale>(field, step),
        "rollback" => again::<Rollback>(field, step),
        "reroute" => again::<Reroute>(field, step),
        "exec" => again::<Exec>(field, step),
        "webhook" => again::<Webhook>(field, step),
        "agent" => again::<Agent>(field, step),
        "docker" => again::<Docker>(field, step),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        match RunbookSet::from_sources(&[("r.yaml".into(), text.to_owned())]) {
            Ok(set) => panic!("loaded: {}", set.summary()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn file_shape_problems() {
        assert_eq!(
            errors(""),
            "r.yaml: empty runbook file: expected `signals:`, `rules:` or both"
        );
        assert_eq!(
            errors("- a\n- b\n"),
            "r.yaml:1:1: invalid type: sequence, expected a mapping with `signals` and `rules`"
        );
        assert_eq!(
            errors("signals: []\nrunbooks: []\nrules: 5\n"),
            "r.yaml:2:1: runbooks: unknown field `runbooks`, expected `signals`, `rules`, `guardrails`, `log_sources` or `diagnosis`\n\
             r.yaml:3:1: rules: invalid type: number, expected a list"
        );
    }

    #[test]
    fn a_broken_signal_does_not_cause_undefined_signal_noise() {
        let text = "signals:\n  - name: s\n    query: q\n    critical_score: high\nrules:\n  - name: r\n    when: {signal: s}\n    then:\n      - {action: restart, target: x}\n";
        assert_eq!(
            errors(text),
            "r.yaml:4:5: signals[0].critical_score: invalid type: string \"high\", expected f64"
        );
    }

    #[test]
    fn every_problem_of_one_rule_is_reported_in_one_run() {
        let text = "signals:
  - name: s
    query: q
    critical_scor: 0.9
    detector: {threshold: high}
rules:
  - name: r
    when: {signal: s, fro: 2m, severity: warning}
    then:
      - {action: restart, target: x, replica: 2}
      - {action: webhook, url: 'https://x.example.com', method: FETCH}
    verify: {wait: soon}
    guards: {cooldown: 5m, max_attempt: 3}
";
        assert_eq!(
            errors(text),
            "r.yaml:4:5: signals[0].critical_scor: unknown field `critical_scor`, expected one of `name`, `query`, `probe`, `docker`, `logs`, `remote_write`, `alertmanager`, `service_label`, `instance_label`, `detector`, `peer`, `critical_score`\n\
             r.yaml:5:16: signals[0].detector.threshold: invalid type: string \"high\", expected f64\n\
             r.yaml:8:23: rules[0].when.fro: unknown field `fro`, expected one of `signal`, `direction`, `for`, `severity`, `match`, `root_cause`, `alert`\n\
             r.yaml:10:38: rules[0].then[0].replica: unknown field `replica`, expected one of `target`, `timeout`, `dry_run`\n\
             r.yaml:11:57: rules[0].then[1].method: unknown variant `FETCH`, expected one of `GET`, `POST`, `PUT`, `PATCH`, `DELETE`\n\
             r.yaml:12:14: rules[0].verify.wait: invalid duration \"soon\": expected a number and a unit (ms, s, m, h or d), like \"90s\" or \"1h30m\"\n\
             r.yaml:13:28: rules[0].guards.max_attempt: unknown field `max_attempt`, expected one of `cooldown`, `max_attempts`, `window`, `dry_run`, `require_approval`, `approval_timeout`"
        );
    }

    #[test]
    fn a_rule_with_a_typo_is_still_validated_in_the_same_run() {
        let text = "signals:\n  - name: s\n    query: q\nrules:\n  - name: r\n    when: {signal: nosuch, fro: 2m}\n    then:\n      - {action: restart, target: x}\n";
        let e = errors(text);
        assert!(e.contains("rules[0].when.fro: unknown field `fro`"), "{e}");
        assert!(e.contains("undefined signal \"nosuch\""), "{e}");
    }

    #[test]
    fn a_yaml_syntax_error_says_the_rest_of_the_file_was_not_checked() {
        let e = errors("signals:\n  - name: s\n    query: [q\nrules: []\n");
        assert!(
            e.ends_with(
                "(a YAML syntax error stops the reader: the rest of this file was not checked; other files were)"
            ),
            "{e}"
        );
    }

    #[test]
    fn missing_fields_and_positions_in_flow_style() {
        let text = "signals: [{name: s, query: q}]\nrules:\n  - {name: r, when: {signal: s}, then: [{action: scale, target: x}]}\n";
        assert_eq!(
            errors(text),
            "r.yaml:3:42: rules[0].then[0]: missing field `replicas`"
        );
    }

    #[test]
    fn loads_a_valid_set() {
        let text = "signals: [{name: s, query: q}]\nrules:\n  - {name: r, when: {signal: s, for: 1m30s}, then: [{action: restart, target: 'deployment/{{service}}'}]}\n";
        let set = RunbookSet::from_sources(&[("r.yaml".into(), text.to_owned())]).unwrap();
        assert_eq!(set.summary(), "1 file, 1 signal, 1 rule");
        assert_eq!(set.rules()[0].when.for_.as_millis(), 90_000);
        assert_eq!(set.signal("s").unwrap().service_label, "service");
        assert_eq!(set.signal("s").unwrap().critical_score, 0.8);
    }
}
