//! The agent's configuration file: where the key is, the audit log, and
//! the allowlist of actions with typed parameters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use executors::agent::{ActionRequest, Refusal};
use executors::exec::ExecRequest;
use remediate::runbook::yaml::{self, kind, path_and_message};
use remediate::{
    is_label_name, is_safe_label_value, Duration, RunbookError, RunbookErrors, SAFE_VALUE_RULE,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An agent's configuration file (YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// File holding the shared key (surrounding whitespace ignored); it must
    /// not be readable by group or others. Exactly one of `key_file` and
    /// `key_env`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the shared key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Requests whose timestamp is further than this from the agent's clock
    /// are refused; also how long signatures are remembered. Between 1s and
    /// 5m.
    #[serde(default = "default_window")]
    pub replay_window: Duration,
    /// Where every request is recorded, accepted or refused, as JSON Lines
    /// (appended).
    pub audit_log: PathBuf,
    /// The allowlist: action name -> what it runs.
    pub actions: BTreeMap<String, AllowedAction>,
}

fn default_window() -> Duration {
    Duration::from_secs(30)
}

/// One allowlisted action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedAction {
    /// Program and arguments. `argv[0]` is fixed text and not a shell;
    /// other items may contain `{{param}}` placeholders, each a declared
    /// parameter.
    pub argv: Vec<String>,
    /// Parameters by name (`[a-zA-Z_][a-zA-Z0-9_]*`) with their type; every
    /// one must be used in `argv`, and every request must give them all.
    #[serde(default)]
    pub params: BTreeMap<String, ParamType>,
    /// Kill the program after this long.
    #[serde(default = "default_action_timeout")]
    pub timeout: Duration,
    /// Environment of the program (besides `PATH`, which the agent passes
    /// on); nothing else of the agent's environment is.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_action_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The type of a parameter: what values it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ParamType {
    /// A name as a label value holds it (service, instance, pod,
    /// `host:port`): the safe label value pattern,
    /// `^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$` without `..`.
    Label,
    /// A decimal integer, optionally bounded.
    Integer {
        /// Smallest value accepted.
        #[serde(default)]
        min: Option<i64>,
        /// Largest value accepted.
        #[serde(default)]
        max: Option<i64>,
    },
    /// One of a fixed list of values.
    OneOf {
        /// The values accepted; each must itself be a safe label value.
        values: Vec<String>,
    },
}

impl ParamType {
    /// Checks one value.
    fn check(&self, value: &str) -> Result<(), String> {
        match self {
            ParamType::Label => {
                if is_safe_label_value(value) {
                    Ok(())
                } else {
                    Err(format!(
                        "{value:?} is not a safe value (allowed: {SAFE_VALUE_RULE})"
                    ))
                }
            }
            ParamType::Integer { min, max } => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                let n: i64 = (!digits.is_empty()
                    && digits.len() <= 18
                    && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse().ok())
                .flatten()
                .ok_or_else(|| format!("{value:?} is not an integer"))?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(format!(
                        "{n} is out of range [{}, {}]",
                        min.map_or("-inf".into(), |m| m.to_string()),
                        max.map_or("inf".into(), |m| m.to_string())
                    ));
                }
                Ok(())
            }
            ParamType::OneOf { values } => {
                if values.iter().any(|v| v == value) {
                    Ok(())
                } else {
                    Err(format!("{value:?} is not one of {}", values.join(", ")))
                }
            }
        }
    }
}

/// One piece of an argv item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Param(&'a str),
}

/// Splits an argv item into text and `{{param}}` placeholders.
fn pieces(item: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = item;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed \"{{{{\" in {item:?}"))?;
        out.push(Piece::Param(after[..close].trim()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Programs that would turn an argument into a command line.
const SHELLS: [&str; 8] = ["sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "env"];

/// Whether `name` is fit as an action name: a safe label value without
/// `/`, `:` or `@` (it appears in URLs, logs and file names).
fn is_action_name(name: &str) -> bool {
    is_safe_label_value(name) && !name.contains(['/', ':', '@'])
}

impl AgentConfig {
    /// Parses and validates an agent configuration; `path` is only used in
    /// messages.
    ///
    /// # Errors
    ///
    /// Every problem found, each as `file:line:column: field: message`.
    pub fn from_yaml(path: &Path, text: &str) -> Result<AgentConfig, RunbookErrors> {
        let at = |pos: Option<yaml::Pos>, field: &str, message: String| RunbookError {
            file: path.to_path_buf(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            field: field.to_owned(),
            message,
        };
        let (value, positions, problems) =
            yaml::parse(text).map_err(|p| RunbookErrors(vec![at(Some(p.pos), "", p.message)]))?;
        let mut errors: Vec<RunbookError> = problems
            .into_iter()
            .map(|p| at(Some(p.pos), &p.path, p.message))
            .collect();
        let mut report = |field: &str, message: String| {
            errors.push(at(positions.find(field), field, message));
        };
        // Each action is deserialized on its own, so one broken action does
        // not hide the problems of the others.
        let mut value = value;
        let actions = match value.as_object_mut().and_then(|m| m.remove("actions")) {
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                report(
                    "actions",
                    format!(
                        "invalid type: {}, expected a map of action names",
                        kind(&other)
                    ),
                );
                None
            }
            None => None,
        };
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Top {
            #[serde(default)]
            key_file: Option<PathBuf>,
            #[serde(default)]
            key_env: Option<String>,
            #[serde(default = "default_window")]
            replay_window: Duration,
            audit_log: PathBuf,
        }
        let top = match serde_path_to_error::deserialize::<_, Top>(&value) {
            Ok(top) => Some(top),
            Err(e) => {
                let (field, message) = path_and_message("", e);
                report(&field, message);
                None
            }
        };
        let mut parsed = BTreeMap::new();
        match &actions {
            None if value.is_object() => report("actions", "missing field `actions`".into()),
            Some(map) if map.is_empty() => report(
                "actions",
                "empty allowlist: give at least one action".into(),
            ),
            _ => {}
        }
        for (name, action) in actions.into_iter().flatten() {
            let base = format!("actions.{name}");
            if !is_action_name(&name) {
                report(
                    &base,
                    format!("invalid action name {name:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
                );
            }
            match serde_path_to_error::deserialize::<_, AllowedAction>(action) {
                Ok(a) => {
                    check_action(&a, &base, &mut report);
                    parsed.insert(name, a);
                }
                Err(e) => {
                    let (field, message) = path_and_message(&base, e);
                    report(&field, message);
                }
            }
        }
        if let Some(top) = &top {
            match (&top.key_file, &top.key_env) {
                (Some(_), Some(_)) | (None, None) => report(
                    "",
                    "give exactly one of `key_file` and `key_env` (the key is never given on the command line)".into(),
                ),
                (None, Some(name)) if !remediate::action::is_env_name(name) => report(
                    "key_env",
                    format!("invalid environment variable name {name:?}: must match [A-Z_][A-Z0-9_]*"),
                ),
                _ => {}
            }
            let w = top.replay_window.as_millis();
            if !(1000..=300_000).contains(&w) {
                report(
                    "replay_window",
                    format!("must be between 1s and 5m, got {}", top.replay_window),
                );
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(RunbookErrors(errors));
        }
        let top = top.expect("no errors means the top level deserialized");
        Ok(AgentConfig {
            key_file: top.key_file,
            key_env: top.key_env,
            replay_window: top.replay_window,
            audit_log: top.audit_log,
            actions: parsed,
        })
    }

    /// Loads and validates an agent configuration file.
    ///
    /// # Errors
    ///
    /// Every problem found, or the file cannot be read.
    pub fn load(path: &Path) -> Result<AgentConfig, RunbookErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RunbookErrors(vec![RunbookError::unreadable(
                path,
                "agent configuration",
                &e,
            )])
        })?;
        AgentConfig::from_yaml(path, &text)
    }

    /// What `req` runs: its action looked up, every parameter checked
    /// against its type, substituted into the action's argv.
    ///
    /// # Errors
    ///
    /// An unknown action, or every parameter problem (missing, undeclared,
    /// invalid) in one message.
    pub fn prepare(&self, req: &ActionRequest) -> Result<ExecRequest, Refusal> {
        let action = self
            .actions
            .get(&req.action)
            .ok_or_else(|| Refusal::UnknownAction(req.action.clone()))?;
        let mut problems = Vec::new();
        for (name, ty) in &action.params {
            match req.params.get(name) {
                None => problems.push(format!("parameter {name}: missing")),
                Some(value) => {
                    if let Err(e) = ty.check(value) {
                        problems.push(format!("parameter {name}: {e}"));
                    }
                }
            }
        }
        for name in req.params.keys() {
            if !action.params.contains_key(name) {
                problems.push(format!(
                    "parameter {name:?}: not declared by action {:?}",
                    req.action
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Refusal::InvalidParams(problems.join("; ")));
        }
        let argv = action
            .argv
            .iter()
            .map(|item| {
                pieces(item)
                    .expect("argv of a validated configuration parses")
                    .into_iter()
                    .map(|p| match p {
                        Piece::Text(t) => t,
                        Piece::Param(name) => req.params[name].as_str(),
                    })
                    .collect::<String>()
            })
            .collect();
        Ok(ExecRequest {
            argv,
            env: action.env.clone(),
            timeout: std::time::Duration::from_millis(action.timeout.as_millis()),
            dry_run: false,
        })
    }
}

fn check_action(action: &AllowedAction, base: &str, report: &mut impl FnMut(&str, String)) {
    let mut used = Vec::new();
    match action.argv.first() {
        None => report(
            &format!("{base}.argv"),
            "empty argv: give the program and its arguments".into(),
        ),
        Some(program) => {
            if program.contains("{{") {
                report(
                    &format!("{base}.argv[0]"),
                    "the program must be fixed text, not a template".into(),
                );
            }
            let name = program.rsplit('/').next().unwrap_or_default();
            if SHELLS.contains(&name) {
                report(
                    &format!("{base}.argv[0]"),
                    format!("{name:?} would run a command line: an agent runs programs directly, never through a shell or env"),
                );
            }
            if program.trim().is_empty() {
                report(&format!("{base}.argv[0]"), "must not be empty".into());
            }
        }
    }
    for (i, item) in action.argv.iter().enumerate().skip(1) {
        match pieces(item) {
            Err(e) => report(&format!("{base}.argv[{i}]"), e),
            Ok(parts) => {
                for p in parts {
                    if let Piece::Param(name) = p {
                        if action.params.contains_key(name) {
                            used.push(name.to_owned());
                        } else {
                            report(
                                &format!("{base}.argv[{i}]"),
                                format!(
                                    "undeclared parameter {name:?} (declare it under `params`)"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    for (name, ty) in &action.params {
        let at = format!("{base}.params.{name}");
        if !is_label_name(name) {
            report(
                &at,
                format!("invalid parameter name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
        if !used.contains(name) {
            report(&at, format!("parameter {name:?} is not used in argv"));
        }
        match ty {
            ParamType::Integer {
                min: Some(lo),
                max: Some(hi),
            } if lo > hi => report(&at, format!("min {lo} is greater than max {hi}")),
            ParamType::OneOf { values } if values.is_empty() => {
                report(&format!("{at}.values"), "give at least one value".into())
            }
            ParamType::OneOf { values } => {
                for v in values.iter().filter(|v| !is_safe_label_value(v)) {
                    report(
                        &format!("{at}.values"),
                        format!("{v:?} is not a safe value (allowed: {SAFE_VALUE_RULE})"),
                    );
                }
            }
            _ => {}
        }
    }
    if action.timeout.is_zero() {
        report(&format!("{base}.timeout"), "must be longer than 0s".into());
    }
    for name in action.env.keys() {
        if !remediate::action::is_env_name(name) {
            report(
                &format!("{base}.env.{name}"),
                format!("invalid environment variable name {name:?}: must match [A-Z_][A-Z0-9_]*"),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The configuration the agent's tests use.
    pub(crate) fn config() -> AgentConfig {
        AgentConfig::from_yaml(
            Path::new("agent.yaml"),
            r#"key_env: HEAL_AGENT_KEY
audit_log: /tmp/audit.jsonl
actions:
  touch-marker:
    argv: [touch, "/tmp/x/marker-{{name}}"]
    params:
      name: {type: label}
  scale:
    argv: [/usr/local/bin/scale, "--replicas={{n}}", "{{mode}}"]
    params:
      n: {type: integer, min: 1, max: 10}
      mode: {type: one_of, values: [fast, slow]}
    timeout: 5s
"#,
        )
        .unwrap()
    }

    /// A request for `action` with `params`.
    pub(crate) fn request(action: &str, params: &[(&str, &str)]) -> ActionRequest {
        ActionRequest {
            action: action.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            request_id: "r1".into(),
        }
    }

    #[test]
    fn prepare_substitutes_checked_params_into_the_fixed_argv() {
        let c = config();
        let e = c
            .prepare(&request("scale", &[("n", "3"), ("mode", "fast")]))
            .unwrap();
        assert_eq!(e.argv, ["/usr/local/bin/scale", "--replicas=3", "fast"]);
        assert_eq!(e.timeout, std::time::Duration::from_secs(5));
        let e = c
            .prepare(&request("touch-marker", &[("name", "checkout-1")]))
            .unwrap();
        assert_eq!(e.argv, ["touch", "/tmp/x/marker-checkout-1"]);
        assert_eq!(e.timeout, std::time::Duration::from_secs(30));
    }

    #[test]
    fn prepare_refuses_injection_and_every_bad_parameter() {
        let c = config();
        for bad in ["; rm -rf /", "$(id)", "`id`", "a\nb", "../etc", "-rf", ""] {
            let r = c
                .prepare(&request("touch-marker", &[("name", bad)]))
                .unwrap_err();
            assert_eq!(r.code(), "invalid_params", "{bad:?}");
            assert_eq!(r.status(), 400);
        }
        assert_eq!(
            c.prepare(&request("scale", &[("n", "11"), ("mode", "turbo"), ("x", "1")]))
                .unwrap_err()
                .to_string(),
            "parameter mode: \"turbo\" is not one of fast, slow; parameter n: 11 is out of range [1, 10]; parameter \"x\": not declared by action \"scale\""
        );
        assert_eq!(
            c.prepare(&request("scale", &[("n", "1 ")]))
                .unwrap_err()
                .to_string(),
            "parameter mode: missing; parameter n: \"1 \" is not an integer"
        );
        assert_eq!(
            c.prepare(&request("rm", &[])).unwrap_err(),
            Refusal::UnknownAction("rm".into())
        );
    }

    #[test]
    fn config_validation_reports_every_problem_with_its_place() {
        let text = r#"key_file: /etc/heal/key
key_env: lower
replay_window: 1h
audit_log: /tmp/a
actions:
  "bad name":
    argv: [sh, -c, "echo {{x}}"]
  shell:
    argv: ["/bin/bash", "{{cmd}}"]
    params:
      cmd: {type: label}
      unused: {type: label}
  typed:
    argv: [prog, "{{n}}", "{{m}}", "{{oops"]
    params:
      n: {type: integer, min: 5, max: 1}
      m: {type: one_of, values: ["ok", "not ok"]}
    timeout: 0s
    env: {lower: x}
  broken:
    argv: [prog]
    params:
      p: {type: regex}
"#;
        let err = AgentConfig::from_yaml(Path::new("agent.yaml"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"agent.yaml:1:1: give exactly one of `key_file` and `key_env` (the key is never given on the command line)
agent.yaml:3:1: replay_window: must be between 1s and 5m, got 1h
agent.yaml:6:3: actions.bad name: invalid action name "bad name": use letters, digits, `_`, `.` and `-`, starting with a letter or digit
agent.yaml:7:12: actions.bad name.argv[0]: "sh" would run a command line: an agent runs programs directly, never through a shell or env
agent.yaml:7:20: actions.bad name.argv[2]: undeclared parameter "x" (declare it under `params`)
agent.yaml:9:12: actions.shell.argv[0]: "bash" would run a command line: an agent runs programs directly, never through a shell or env
agent.yaml:12:7: actions.shell.params.unused: parameter "unused" is not used in argv
agent.yaml:14:36: actions.typed.argv[3]: unclosed "{{" in "{{oops"
agent.yaml:16:7: actions.typed.params.n: min 5 is greater than max 1
agent.yaml:17:25: actions.typed.params.m.values: "not ok" is not a safe value (allowed: ^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$ without "..")
agent.yaml:18:5: actions.typed.timeout: must be longer than 0s
agent.yaml:19:11: actions.typed.env.lower: invalid environment variable name "lower": must match [A-Z_][A-Z0-9_]*
agent.yaml:23:11: actions.broken.params.p.type: unknown variant `regex`, expected one of `label`, `integer`, `one_of`"#
        );
        let err =
            AgentConfig::from_yaml(Path::new("a.yaml"), "audit_log: x\nactions: {}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml:1:1: give exactly one of `key_file` and `key_env` (the key is never given on the command line)\n\
             a.yaml:2:1: actions: empty allowlist: give at least one action"
        );
    }
}
