//! Checks that need more than one field, or more than one file: references,
//! uniqueness, templates, bounds. Every problem is reported; none stops the
//! others from being looked for.

use std::collections::{BTreeSet, HashMap};

use detect::Direction;

use super::config::{
    Action, Agent, Docker, DockerOp, DockerSignal, Exec, Guardrails, LogCount, LogSignal,
    LogSourceConfig, Probe, Reroute, Rule, Scale, Signal, Webhook,
};
use super::load::{Found, ParsedFile};
use super::yaml::join;
use crate::action::{
    env_references, is_env_name, DockerTarget, DOCKER_SIGNALS, MAX_DOCKER_REPLICAS, MAX_WEIGHT,
};
use crate::template::{is_label_name, is_safe_label_value, url_template_problem, Part, Var};

/// Programs that turn an argument into a command line.
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"];

/// Adds every semantic problem of `files` (validated together) to `found`.
pub(crate) fn validate(files: &[(usize, ParsedFile)], found: &mut Vec<Found>) {
    // Log sources first: signals refer to them.
    let mut log_sources: HashMap<&str, String> = HashMap::new();
    for (index, file) in files {
        for name in &file.broken_log_source_names {
            log_sources.entry(name).or_default();
        }
        for (i, source) in &file.log_sources {
            let at = format!("log_sources[{i}]");
            let mut report = |field: String, message: String| {
                found.push((*index, file.error(format!("{at}.{field}"), message)));
            };
            check_log_source(source, &mut report);
            if let Some(first) = log_sources.get(source.name.as_str()) {
                report(
                    "name".into(),
                    format!(
                        "duplicate log source name {:?} (first defined at {first})",
                        source.name
                    ),
                );
            } else {
                log_sources.insert(&source.name, location(file, &format!("{at}.name")));
            }
        }
    }
    // Signals next: rules refer to them.
    let mut signals: HashMap<&str, (&Signal, String)> = HashMap::new();
    let mut defined: BTreeSet<&str> = BTreeSet::new();
    for (index, file) in files {
        defined.extend(file.broken_signal_names.iter().map(String::as_str));
        for (i, signal) in &file.signals {
            let at = format!("signals[{i}]");
            let mut report = |field: String, message: String| {
                found.push((*index, file.error(format!("{at}.{field}"), message)));
            };
            check_signal(signal, &mut report);
            if let Some(logs) = &signal.logs {
                if !log_sources.contains_key(logs.source.as_str()) {
                    let mut names: Vec<&str> = log_sources.keys().copied().collect();
                    names.sort_unstable();
                    let list = if names.is_empty() {
                        "no log_sources are defined".to_owned()
                    } else {
                        format!("defined: {}", names.join(", "))
                    };
                    report(
                        "logs.source".into(),
                        format!("undefined log source {:?} ({list})", logs.source),
                    );
                }
            }
            let here = location(file, &format!("{at}.name"));
            if let Some((_, first)) = signals.get(signal.name.as_str()) {
                report(
                    "name".into(),
                    format!(
                        "duplicate signal name {:?} (first defined at {first})",
                        signal.name
                    ),
                );
            } else {
                signals.insert(&signal.name, (signal, here));
            }
            defined.insert(&signal.name);
        }
    }

    let mut rule_names: HashMap<&str, String> = HashMap::new();
    for (index, file) in files {
        for (i, rule) in &file.rules {
            let at = format!("rules[{i}]");
            let mut report = |field: String, message: String| {
                found.push((*index, file.error(format!("{at}.{field}"), message)));
            };
            if let Some(first) = rule_names.get(rule.name.as_str()) {
                report(
                    "name".into(),
                    format!(
                        "duplicate rule name {:?} (first defined at {first})",
                        rule.name
                    ),
                );
            } else if !file.broken_rule_names.contains(&rule.name) {
                rule_names.insert(&rule.name, location(file, &format!("{at}.name")));
            }
            let signal = signals.get(rule.when.signal.as_str()).map(|(s, _)| *s);
            if !defined.contains(rule.when.signal.as_str()) {
                let list = if defined.is_empty() {
                    "no signals are defined".to_owned()
                } else {
                    format!(
                        "defined: {}",
                        defined.iter().copied().collect::<Vec<_>>().join(", ")
                    )
                };
                report(
                    "when.signal".into(),
                    format!("undefined signal {:?} ({list})", rule.when.signal),
                );
            }
            if let Some(alert) = &rule.when.alert {
                if signal.is_some_and(|s| s.alertmanager.is_none()) {
                    report(
                        "when.alert".into(),
                        format!(
                            "signal {:?} is not fed by Alertmanager: `alert` needs an `alertmanager:` signal",
                            rule.when.signal
                        ),
                    );
                }
                if alert.is_empty() || rule.when.matchers.contains_key("alertname") {
                    report(
                        "when.alert".into(),
                        "give the alert's name once (`alert: NAME`, or `match: {alertname: NAME}`)"
                            .into(),
                    );
                }
            }
            check_rule(rule, signal, &mut report);
        }
    }

    // Guardrails: one file sets them for the whole directory.
    let mut guardrails_at: Option<String> = None;
    for (index, file) in files {
        let Some(g) = &file.guardrails else { continue };
        let mut report = |field: &str, message: String| {
            let path = if field.is_empty() {
                "guardrails".to_owned()
            } else {
                join("guardrails", field)
            };
            found.push((*index, file.error(path, message)));
        };
        if let Some(first) = &guardrails_at {
            report(
                "",
                format!("guardrails are set twice (first at {first}); keep one"),
            );
        } else {
            guardrails_at = Some(location(file, "guardrails"));
        }
        check_guardrails(g, &mut report);
    }

    // Diagnosis: one file sets it for the whole directory; rules that ask
    // for a root cause need it.
    let mut diagnosis_at: Option<String> = None;
    for (index, file) in files {
        let Some(d) = &file.diagnosis else { continue };
        let mut report = |field: String, message: String| {
            let path = if field.is_empty() {
                "diagnosis".to_owned()
            } else {
                join("diagnosis", &field)
            };
            found.push((*index, file.error(path, message)));
        };
        if let Some(first) = &diagnosis_at {
            report(
                String::new(),
                format!("diagnosis is set twice (first at {first}); keep one"),
            );
        } else {
            diagnosis_at = Some(location(file, "diagnosis"));
        }
        if d.window.is_zero() {
            report("window".into(), "must be longer than 0s".into());
        }
        if d.refresh.is_zero() {
            report("refresh".into(), "must be longer than 0s".into());
        }
        for (i, e) in d.edges.iter().enumerate() {
            if e.query.trim().is_empty() {
                report(format!("edges[{i}].query"), "empty query".into());
            }
            for (field, name) in [("caller", &e.caller), ("callee", &e.callee)] {
                if !is_label_name(name) {
                    report(
                        format!("edges[{i}].{field}"),
                        format!("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
                    );
                }
            }
            if e.caller == e.callee {
                report(
                    format!("edges[{i}].callee"),
                    "the same label as `caller`: every edge would be a loop".into(),
                );
            }
        }
        for (service, deps) in &d.services {
            if service.is_empty() || !is_safe_label_value(service) {
                report(
                    format!("services.{service}"),
                    format!("service {service:?}: not a label value heal puts in a target"),
                );
            }
            for (i, callee) in deps.depends_on.iter().enumerate() {
                if callee == service {
                    report(
                        format!("services.{service}.depends_on[{i}]"),
                        format!("{service:?} depends on itself"),
                    );
                } else if callee.is_empty() || !is_safe_label_value(callee) {
                    report(
                        format!("services.{service}.depends_on[{i}]"),
                        format!("service {callee:?}: not a label value heal puts in a target"),
                    );
                }
            }
        }
    }
    if diagnosis_at.is_none() {
        for (index, file) in files {
            for (i, rule) in &file.rules {
                if rule.when.root_cause.is_some() {
                    found.push((
                        *index,
                        file.error(
                            format!("rules[{i}].when.root_cause"),
                            "needs a `diagnosis:` block (in any file of the directory): without one no root cause is ranked".to_owned(),
                        ),
                    ));
                }
            }
        }
    }
}

/// A log source: files given, its format, start pattern and masks compile.
fn check_log_source(source: &LogSourceConfig, report: &mut impl FnMut(String, String)) {
    if source.name.trim().is_empty() {
        report("name".into(), "empty name".into());
    }
    match (&source.kafka, source.files.is_empty()) {
        (None, true) => report(
            "files".into(),
            "no files: give paths or globs (`/var/log/web/*.log`), or `kafka:`".into(),
        ),
        (Some(_), false) => report(
            "kafka".into(),
            "give `files` or `kafka`, not both (one source reads one kind of input)".into(),
        ),
        _ => {}
    }
    if let Some(k) = &source.kafka {
        if k.brokers.is_empty() {
            report(
                "kafka.brokers".into(),
                "no brokers: give `host:port`".into(),
            );
        }
        for (i, b) in k.brokers.iter().enumerate() {
            let ok = b.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_[]:".contains(c))
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                report(
                    format!("kafka.brokers[{i}]"),
                    format!("{b:?} is not `host:port`"),
                );
            }
        }
        if k.topics.is_empty() {
            report("kafka.topics".into(), "no topics".into());
        }
        // Kafka's own rule for topic names (and group ids, kept as strict).
        let kafka_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 249
                && n != "."
                && n != ".."
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        for (i, t) in k.topics.iter().enumerate() {
            if !kafka_name(t) {
                report(
                    format!("kafka.topics[{i}]"),
                    format!("{t:?} is not a Kafka topic name (letters, digits, `.`, `_`, `-`; at most 249)"),
                );
            }
        }
        if !kafka_name(&k.group) {
            report(
                "kafka.group".into(),
                format!("{:?}: letters, digits, `.`, `_`, `-`", k.group),
            );
        }
        if let Some(instance) = &k.instance {
            if !kafka_name(instance) {
                report(
                    "kafka.instance".into(),
                    format!("{instance:?}: letters, digits, `.`, `_`, `-`"),
                );
            }
        }
        if source.multiline_start.is_some() {
            report(
                "multiline_start".into(),
                "a Kafka message is already one event: leave multiline_start out".into(),
            );
        }
    }
    for (i, pattern) in source.files.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(pattern) {
            report(format!("files[{i}]"), format!("{pattern:?}: {e}"));
        } else if !pattern.starts_with('/') {
            report(
                format!("files[{i}]"),
                format!("{pattern:?} is relative: give an absolute path (heal may run from any directory)"),
            );
        }
    }
    if let Err(e) = logs::LineFormat::new(&source.format) {
        report("format".into(), e.to_string());
    }
    if let Some(start) = &source.multiline_start {
        if let Err(e) = regex::Regex::new(start) {
            report("multiline_start".into(), format!("not a regex: {e}"));
        }
    }
    if source.late_after.is_zero() {
        report(
            "late_after".into(),
            "must be longer than 0s (give a long one, like 1d, to count every line)".into(),
        );
    }
    for (name, value) in &source.labels {
        if ["line", "log_source", "timestamp"].contains(&name.as_str()) {
            report(
                format!("labels.{name}"),
                format!("{name:?} is reserved: it is a column of a recorded log dataset"),
            );
        } else if !is_label_name(name) {
            report(
                format!("labels.{name}"),
                format!("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        } else if !is_safe_label_value(value) {
            report(
                format!("labels.{name}"),
                format!("label value {value:?} has characters heal never puts in a target"),
            );
        }
    }
    if source.max_templates == 0 {
        report("max_templates".into(), "must be at least 1".into());
    }
    let miner = logs::MinerConfig {
        mask: source.mask.clone(),
        max_templates: source.max_templates.max(1),
        ..logs::MinerConfig::default()
    };
    if let Err(e) = logs::TemplateMiner::new(miner) {
        report("mask".into(), e.to_string());
    }
}

/// A `logs:` signal: its regex compiles, `field` and `agg` go with
/// `count: field` only.
fn check_log_signal(logs: &LogSignal, report: &mut impl FnMut(String, String)) {
    if let Some(pattern) = &logs.pattern {
        if let Err(e) = regex::Regex::new(pattern) {
            report("logs.match".into(), format!("not a regex: {e}"));
        }
    }
    match (logs.count, &logs.field) {
        (LogCount::Field, None) => report(
            "logs.field".into(),
            "`count: field` needs the field to read (`field: latency_ms`)".into(),
        ),
        (LogCount::Field, Some(_)) => {}
        (_, Some(_)) => report(
            "logs.field".into(),
            "`field` is read with `count: field` only".into(),
        ),
        (_, None) => {}
    }
    if logs.agg.is_some() && logs.count != LogCount::Field {
        report(
            "logs.agg".into(),
            "`agg` goes with `count: field` only".into(),
        );
    }
}

fn check_guardrails(g: &Guardrails, report: &mut impl FnMut(&str, String)) {
    for (field, v) in [
        ("max_actions_per_minute", g.max_actions_per_minute),
        ("max_concurrent", g.max_concurrent),
        ("max_instances_per_service", g.max_instances_per_service),
        ("flap_max_opens", g.flap_max_opens),
    ] {
        if v == 0 {
            report(
                field,
                "must be at least 1 (to keep heal from acting, run without --execute or set \
                 `guards.dry_run: true` on the rules)"
                    .into(),
            );
        }
    }
    if !(g.max_percent_per_service > 0.0 && g.max_percent_per_service <= 100.0) {
        report(
            "max_percent_per_service",
            format!("must be within (0, 100], got {}", g.max_percent_per_service),
        );
    }
    if g.flap_window.is_zero() {
        report("flap_window", "must be longer than 0s".into());
    }
}

/// `file:line` of a field, for "first defined at" messages.
fn location(file: &ParsedFile, field: &str) -> String {
    match file.positions.find(field) {
        Some(pos) => format!("{}:{}", file.path.display(), pos.line),
        None => file.path.display().to_string(),
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A `docker:` signal: service-only metrics per service, and a CPU target
/// with (and only with) `spare_replicas`.
fn check_docker_signal(docker: &DockerSignal, report: &mut impl FnMut(String, String)) {
    use crate::runbook::{DockerMetric, DockerPer};
    let service_only = matches!(
        docker.metric,
        DockerMetric::Replicas | DockerMetric::SpareReplicas
    );
    if service_only && docker.per != DockerPer::Service {
        report(
            "docker.per".into(),
            "`replicas` and `spare_replicas` are a Swarm service's: give `per: service`".into(),
        );
    }
    match (docker.metric, docker.cpu_per_replica) {
        (DockerMetric::SpareReplicas, None) => report(
            "docker.cpu_per_replica".into(),
            "`spare_replicas` needs `cpu_per_replica`, the cores one replica should use at most"
                .into(),
        ),
        (DockerMetric::SpareReplicas, Some(c)) if !(c.is_finite() && c > 0.0) => report(
            "docker.cpu_per_replica".into(),
            format!("must be a positive number of cores, got {c}"),
        ),
        (DockerMetric::SpareReplicas, Some(_)) | (_, None) => {}
        (_, Some(_)) => report(
            "docker.cpu_per_replica".into(),
            "only `metric: spare_replicas` takes `cpu_per_replica`".into(),
        ),
    }
}

fn check_signal(signal: &Signal, report: &mut impl FnMut(String, String)) {
    if !is_metric_name(&signal.name) {
        report(
            "name".into(),
            format!(
                "invalid signal name {:?}: must be a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                signal.name
            ),
        );
    }
    let given = [
        signal.query.is_some(),
        signal.probe.is_some(),
        signal.docker.is_some(),
        signal.logs.is_some(),
        signal.remote_write.is_some(),
        signal.alertmanager.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        let field = if signal.alertmanager.is_some() {
            "alertmanager"
        } else if signal.remote_write.is_some() {
            "remote_write"
        } else if signal.logs.is_some() {
            "logs"
        } else if signal.docker.is_some() {
            "docker"
        } else {
            "probe"
        };
        report(
            field.into(),
            "give one of `query` (PromQL), `probe` (an HTTP probe heal runs), `docker` (the Docker Engine), `logs` (a log source), `remote_write` (pushed by Prometheus) or `alertmanager` (its webhook), not several".into(),
        );
    }
    if let Some(logs) = &signal.logs {
        check_log_signal(logs, report);
    }
    if let Some(query) = &signal.query {
        if query.trim().is_empty() {
            report(
                "query".into(),
                "empty query: give the PromQL that yields this signal".into(),
            );
        }
    }
    if let Some(probe) = &signal.probe {
        check_probe(probe, report);
    }
    if let Some(am) = &signal.alertmanager {
        for name in am.matchers.keys() {
            if !is_label_name(name) || name == "__name__" {
                report(
                    format!("alertmanager.match.{name}"),
                    "not a label name to match".into(),
                );
            }
        }
    }
    if let Some(rw) = &signal.remote_write {
        if !is_metric_name(&rw.metric) {
            report(
                "remote_write.metric".into(),
                format!("invalid metric name {:?}", rw.metric),
            );
        }
        for name in rw.matchers.keys() {
            if !is_label_name(name) || name == "__name__" {
                report(
                    format!("remote_write.match.{name}"),
                    "not a label name to match (the metric is `metric`)".into(),
                );
            }
        }
    }
    if let Some(docker) = &signal.docker {
        check_docker_signal(docker, report);
        if let Some(label) = &docker.label {
            let ok = label.split_once('=').is_some_and(|(k, v)| {
                DockerTarget::parse(&format!("label/{k}={v}"), crate::runbook::DockerOp::Restart)
                    .is_ok()
            });
            if !ok {
                report(
                    "docker.label".into(),
                    format!("expected KEY=VALUE with Docker's name rules, got {label:?}"),
                );
            }
        }
    }
    if given == 0 {
        report(
            "name".into(),
            "signal has none of `query`, `probe`, `docker`, `logs`, `remote_write` or `alertmanager`: give the PromQL that yields it, a probe, a docker source, a log source, a remote-write metric or Alertmanager's alerts"
                .into(),
        );
    }
    for (field, name) in [
        ("service_label", &signal.service_label),
        ("instance_label", &signal.instance_label),
    ] {
        if !is_label_name(name) {
            report(
                field.into(),
                format!("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
    }
    if !(0.0..=1.0).contains(&signal.critical_score) {
        report(
            "critical_score".into(),
            format!("must be within [0, 1], got {}", signal.critical_score),
        );
    }
    if let Some(detector) = &signal.detector {
        for (field, problem) in detector.problems() {
            report(format!("detector.{field}"), problem);
        }
    }
    if let Some(peer) = &signal.peer {
        for (field, problem) in peer.problems() {
            report(format!("peer.{field}"), problem);
        }
        if signal.service_label == signal.instance_label {
            report(
                "peer".into(),
                format!(
                    "service_label and instance_label are both {:?}: peers are the instances of one service, so they must differ",
                    signal.service_label
                ),
            );
        }
    }
}

fn check_probe(probe: &Probe, report: &mut impl FnMut(String, String)) {
    if probe.targets.trim().is_empty() {
        report(
            "probe.targets".into(),
            "empty query: give the PromQL whose series are the targets".into(),
        );
    }
    match probe.url.parse() {
        Err(errors) => {
            for e in errors {
                report("probe.url".into(), e.to_string());
            }
        }
        Ok(parts) => {
            if parts.contains(&Part::Var(Var::Rule)) {
                report(
                    "probe.url".into(),
                    "{{rule}} has no value when probing (a probe runs before any rule)".into(),
                );
            }
            // The URL must be plain http with a host once filled in; `x` stands for every
            // label value, which passes the per-target check.
            let sample: String = parts
                .iter()
                .map(|p| match p {
                    Part::Literal(text) => text.as_str(),
                    Part::Var(_) => "x",
                })
                .collect();
            match url::Url::parse(&sample) {
                Ok(u) if u.scheme() == "http" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
                _ => report(
                    "probe.url".into(),
                    format!(
                        "must be a plain http:// URL with a host once filled in (no TLS in this build), got {:?}",
                        probe.url.0
                    ),
                ),
            }
        }
    }
    if probe.timeout.is_zero() {
        report("probe.timeout".into(), "must be longer than 0s".into());
    }
}

fn check_rule(rule: &Rule, signal: Option<&Signal>, report: &mut impl FnMut(String, String)) {
    if !is_safe_label_value(&rule.name) || rule.name.contains(['@', '/', ':']) {
        report(
            "name".into(),
            format!(
                "invalid rule name {:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                rule.name
            ),
        );
    }
    if let Some(signal) = signal {
        let reports = signal.detector().direction;
        if reports != Direction::Both
            && rule.when.direction != Direction::Both
            && reports != rule.when.direction
        {
            report(
                "when.direction".into(),
                format!(
                    "rule watches {:?} excursions but the detector of signal {:?} only reports {:?} ones",
                    rule.when.direction.as_str(),
                    signal.name,
                    reports.as_str()
                ),
            );
        }
    }
    for name in rule.when.matchers.keys() {
        if !is_label_name(name) {
            report(
                format!("when.match.{name}"),
                format!("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
    }
    if rule.then.is_empty() {
        report(
            "then".into(),
            "empty action chain: give at least one step".into(),
        );
    }
    for (j, action) in rule.then.iter().enumerate() {
        check_action(action, &format!("then[{j}]"), report);
    }
    if rule.guards.max_attempts == 0 {
        report(
            "guards.max_attempts".into(),
            "must be at least 1 (to keep a rule from acting, set `guards.dry_run: true`)".into(),
        );
    }
    if rule.guards.require_approval && rule.guards.approval_timeout.is_zero() {
        report(
            "guards.approval_timeout".into(),
            "must be longer than 0s when require_approval is set".into(),
        );
    }
    if rule.guards.window.is_zero() {
        report("guards.window".into(), "must be longer than 0s".into());
    }
    if rule.verify.wait.is_zero() {
        report(
            "verify.wait".into(),
            "must be longer than 0s: a step needs time to take effect".into(),
        );
    }
}

fn check_action(action: &Action, at: &str, report: &mut impl FnMut(String, String)) {
    for (field, template) in action.templates() {
        if let Err(errors) = template.parse() {
            for e in errors {
                report(format!("{at}.{field}"), e.to_string());
            }
        }
        let required = !field.starts_with("body") && !field.starts_with("headers") && field != "to";
        if required && template.0.trim().is_empty() {
            report(format!("{at}.{field}"), "must not be empty".into());
        }
    }
    if action.timeout().is_some_and(|t| t.is_zero()) {
        report(format!("{at}.timeout"), "must be longer than 0s".into());
    }
    match action {
        Action::Scale(Scale { replicas: 0, .. }) => {
            report(format!("{at}.replicas"), "must be at least 1, got 0".into());
        }
        Action::Reroute(Reroute {
            target,
            backend,
            weight,
            ..
        }) => {
            if let Some(w) = weight.filter(|w| *w > MAX_WEIGHT) {
                report(
                    format!("{at}.weight"),
                    format!("must be within [0, {MAX_WEIGHT}] (HAProxy's range), got {w}"),
                );
            }
            // The executor refuses such names at run time (see
            // `action::Name`); fixed text that can never pass is
            // better reported now.
            for (field, what, template) in [
                ("target", "server", target),
                ("backend", "backend", backend),
            ] {
                let Ok(parts) = template.parse() else {
                    continue;
                };
                let bad = parts.iter().find_map(|p| match p {
                    Part::Literal(text) => text
                        .chars()
                        .find(|c| !(c.is_ascii_alphanumeric() || "._:-".contains(*c))),
                    Part::Var(_) => None,
                });
                if let Some(c) = bad {
                    report(
                        format!("{at}.{field}"),
                        format!("{c:?} cannot be part of an HAProxy {what} name (allowed: letters, digits, `.`, `_`, `-`, `:`)"),
                    );
                }
            }
        }
        Action::Exec(Exec { argv, .. }) => {
            if argv.is_empty() {
                report(
                    format!("{at}.argv"),
                    "empty argv: give the program and its arguments".into(),
                );
            } else {
                if argv[0].has_variables() {
                    report(
                        format!("{at}.argv[0]"),
                        "the program must be fixed text, not a template".into(),
                    );
                }
                let program = argv[0].0.rsplit('/').next().unwrap_or_default();
                if SHELLS.contains(&program)
                    && argv
                        .iter()
                        .skip(1)
                        .any(|a| a.0.starts_with('-') && a.0.contains('c'))
                {
                    report(
                        format!("{at}.argv"),
                        "shell command lines are not allowed: exec runs argv directly, write the program and each argument as its own item"
                            .into(),
                    );
                }
            }
        }
        Action::Webhook(Webhook {
            url, headers, body, ..
        }) => {
            // `${env:NAME}` (a secret from heal's environment) is accepted in
            // the URL and header values, and may be the whole URL.
            if !(url.0.starts_with("http://")
                || url.0.starts_with("https://")
                || url.0.starts_with("${env:")
                || url.0.trim().is_empty())
            {
                report(
                    format!("{at}.url"),
                    format!("must start with http:// or https://, got {:?}", url.0),
                );
            }
            for name in headers.keys() {
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    report(
                        format!("{at}.headers.{name}"),
                        format!("invalid header name {name:?}"),
                    );
                }
            }
            if let Some(problem) = url_template_problem(url) {
                report(format!("{at}.url"), problem);
            }
            let secrets = std::iter::once(("url".to_owned(), &url.0))
                .chain(headers.iter().map(|(n, v)| (format!("headers.{n}"), &v.0)));
            for (field, text) in secrets {
                if let Err(e) = env_references(text) {
                    report(format!("{at}.{field}"), e);
                }
            }
            if let Some(body) = body {
                if body.to_string().contains("${env:") {
                    report(
                        format!("{at}.body"),
                        "${env:...} is only substituted in `url` and `headers`: a body is recorded in incidents and often echoed back".into(),
                    );
                }
            }
        }
        Action::Agent(Agent {
            url,
            name,
            params,
            key_env,
            ..
        }) => {
            if !(url.0.starts_with("http://")
                || url.0.starts_with("https://")
                || url.0.trim().is_empty())
            {
                report(
                    format!("{at}.url"),
                    format!("must start with http:// or https://, got {:?}", url.0),
                );
            }
            if let Some(problem) = url_template_problem(url) {
                report(format!("{at}.url"), problem);
            }
            if !is_safe_label_value(name) || name.contains(['/', ':', '@']) {
                report(
                    format!("{at}.name"),
                    format!(
                        "invalid agent action name {name:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
                    ),
                );
            }
            for param in params.keys() {
                if !is_label_name(param) {
                    report(
                        format!("{at}.params.{param}"),
                        format!(
                            "invalid parameter name {param:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"
                        ),
                    );
                }
            }
            if !is_env_name(key_env) {
                report(
                    format!("{at}.key_env"),
                    format!(
                        "invalid environment variable name {key_env:?}: must match [A-Z_][A-Z0-9_]*"
                    ),
                );
            }
        }
        Action::Docker(d) => check_docker(d, at, report),
        _ => {}
    }
}

/// A `docker` step: the fields its `op` takes and only those, the target's
/// form (fully when it has no variable, its fixed prefix otherwise).
fn check_docker(d: &Docker, at: &str, report: &mut impl FnMut(String, String)) {
    let op = d.op.as_str();
    match (d.op, d.replicas) {
        (DockerOp::Scale, None) => {
            report(format!("{at}.replicas"), "scale needs `replicas`".into());
        }
        (DockerOp::Scale, Some(n)) if n == 0 || n > MAX_DOCKER_REPLICAS => report(
            format!("{at}.replicas"),
            format!("must be within [1, {MAX_DOCKER_REPLICAS}], got {n}"),
        ),
        (DockerOp::Scale, Some(_)) | (_, None) => {}
        (_, Some(_)) => report(
            format!("{at}.replicas"),
            format!("only `op: scale` takes `replicas`, this step is `op: {op}`"),
        ),
    }
    match (&d.signal, d.op) {
        (None, _) => {}
        (Some(sig), DockerOp::Kill) => {
            if !DOCKER_SIGNALS.contains(&sig.as_str()) {
                report(
                    format!("{at}.signal"),
                    format!(
                        "unknown signal {sig:?}: expected one of {}",
                        DOCKER_SIGNALS.join(", ")
                    ),
                );
            }
        }
        (Some(_), _) => report(
            format!("{at}.signal"),
            format!("only `op: kill` takes `signal`, this step is `op: {op}`"),
        ),
    }
    match (d.op, &d.image) {
        (DockerOp::Update, None) => {
            report(format!("{at}.image"), "update needs `image`".into());
        }
        (DockerOp::Update, Some(image)) => {
            if !image.0.contains("{{") {
                if let Err(e) = crate::action::image_ref(&image.0) {
                    report(format!("{at}.image"), e);
                }
            }
        }
        (_, Some(_)) => report(
            format!("{at}.image"),
            format!("only `op: update` takes `image`, this step is `op: {op}`"),
        ),
        (_, None) => {}
    }
    if let Some(r) = &d.rollout {
        if d.op != DockerOp::Update {
            report(
                format!("{at}.rollout"),
                format!("only `op: update` takes `rollout`, this step is `op: {op}`"),
            );
        }
        if r.parallelism == 0 {
            report(
                format!("{at}.rollout.parallelism"),
                "must be at least 1".into(),
            );
        }
        if !(0.0..=1.0).contains(&r.max_failure_ratio) {
            report(
                format!("{at}.rollout.max_failure_ratio"),
                format!("must be within [0, 1], got {}", r.max_failure_ratio),
            );
        }
    }
    let text = &d.target.0;
    let prefixes: &[&str] = if d.op.on_service() {
        &["service/"]
    } else if d.op.on_node() {
        &["node/"]
    } else {
        &["container/", "label/"]
    };
    if !text.contains("{{") {
        if let Err(e) = DockerTarget::parse(text, d.op) {
            report(format!("{at}.target"), e);
        }
    } else if !prefixes.iter().any(|p| text.starts_with(p)) {
        report(
            format!("{at}.target"),
            format!(
                "{op} takes a target starting with {}, got {text:?}",
                prefixes.join(" or ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::RunbookSet;

    #[test]
    fn every_semantic_check_reports_with_its_field() {
        let text = r#"signals:
  - name: 5xx-ratio
    query: " "
    service_label: app-name
    critical_score: 2
  - name: mem
    query: q
    detector: {direction: down}
rules:
  - name: "bad name!"
    when:
      signal: mem
      direction: up
      match: {"bad-label": x}
    then: []
    guards: {max_attempts: 0, window: 0s}
    verify: {wait: 0s}
  - name: ok-name
    when: {signal: mem}
    then:
      - {action: restart, target: "", timeout: 0s}
      - action: webhook
        url: ftp://example.com/{{rule}}
        headers: {"Bad Header": x}
        body: {text: "{{nope}}"}
"#;
        let err = RunbookSet::from_sources(&[("v.yaml".into(), text.into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"v.yaml:2:5: signals[0].name: invalid signal name "5xx-ratio": must be a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
v.yaml:3:5: signals[0].query: empty query: give the PromQL that yields this signal
v.yaml:4:5: signals[0].service_label: invalid label name "app-name": must match [a-zA-Z_][a-zA-Z0-9_]*
v.yaml:5:5: signals[0].critical_score: must be within [0, 1], got 2
v.yaml:10:5: rules[0].name: invalid rule name "bad name!": use letters, digits, `_`, `.` and `-`, starting with a letter or digit
v.yaml:13:7: rules[0].when.direction: rule watches "up" excursions but the detector of signal "mem" only reports "down" ones
v.yaml:14:15: rules[0].when.match.bad-label: invalid label name "bad-label": must match [a-zA-Z_][a-zA-Z0-9_]*
v.yaml:15:5: rules[0].then: empty action chain: give at least one step
v.yaml:16:14: rules[0].guards.max_attempts: must be at least 1 (to keep a rule from acting, set `guards.dry_run: true`)
v.yaml:16:31: rules[0].guards.window: must be longer than 0s
v.yaml:17:14: rules[0].verify.wait: must be longer than 0s: a step needs time to take effect
v.yaml:21:27: rules[1].then[0].target: must not be empty
v.yaml:21:39: rules[1].then[0].timeout: must be longer than 0s
v.yaml:23:9: rules[1].then[1].url: must start with http:// or https://, got "ftp://example.com/{{rule}}"
v.yaml:24:19: rules[1].then[1].headers.Bad Header: invalid header name "Bad Header"
v.yaml:25:16: rules[1].then[1].body.text: unknown template variable "nope" (known: service, instance, signal, rule, label.NAME)"#
        );
    }

    #[test]
    fn a_signal_is_a_query_or_a_probe() {
        let text = r#"signals:
  - name: both
    query: up
    probe: {targets: up, url: "http://{{instance}}/"}
  - name: neither
  - name: bad_probe
    probe:
      targets: " "
      url: "https://{{label.address}}/{{rule}}/{{nope}}"
      timeout: 0s
  - name: good_probe
    probe: {targets: 'up{job="lab"}', url: "http://{{label.address}}/healthz", timeout: 500ms}
rules: []
"#;
        let err = RunbookSet::from_sources(&[("p.yaml".into(), text.into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"p.yaml:4:5: signals[0].probe: give one of `query` (PromQL), `probe` (an HTTP probe heal runs), `docker` (the Docker Engine), `logs` (a log source), `remote_write` (pushed by Prometheus) or `alertmanager` (its webhook), not several
p.yaml:5:5: signals[1].name: signal has none of `query`, `probe`, `docker`, `logs`, `remote_write` or `alertmanager`: give the PromQL that yields it, a probe, a docker source, a log source, a remote-write metric or Alertmanager's alerts
p.yaml:8:7: signals[2].probe.targets: empty query: give the PromQL whose series are the targets
p.yaml:9:7: signals[2].probe.url: unknown template variable "nope" (known: service, instance, signal, rule, label.NAME)
p.yaml:10:7: signals[2].probe.timeout: must be longer than 0s"#
        );
        let text = r#"signals:
  - name: rule_in_url
    probe: {targets: up, url: "https://{{label.address}}/{{rule}}"}
"#;
        let err = RunbookSet::from_sources(&[("p.yaml".into(), text.into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"p.yaml:3:26: signals[0].probe.url: {{rule}} has no value when probing (a probe runs before any rule)
p.yaml:3:26: signals[0].probe.url: must be a plain http:// URL with a host once filled in (no TLS in this build), got "https://{{label.address}}/{{rule}}""#
        );
    }

    #[test]
    fn probe_urls_resolve_to_label_names() {
        use crate::runbook::UrlPiece;
        let text = r#"signals:
  - name: probe_success
    instance_label: addr
    probe: {targets: up, url: "http://{{instance}}/{{signal}}/{{label.path}}"}
"#;
        let set = RunbookSet::from_sources(&[("p.yaml".into(), text.into())]).unwrap();
        let signal = &set.signals()[0];
        assert_eq!(signal.probe.as_ref().unwrap().timeout.as_millis(), 500);
        assert_eq!(
            signal.probe_url().unwrap(),
            [
                UrlPiece::Text("http://".into()),
                UrlPiece::Label("addr".into()),
                UrlPiece::Text("/".into()),
                UrlPiece::Text("probe_success".into()),
                UrlPiece::Text("/".into()),
                UrlPiece::Label("path".into()),
            ]
        );
    }

    #[test]
    fn agent_steps_and_environment_secrets() {
        let text = r#"signals: [{name: mem, query: q}]
rules:
  - name: ok
    when: {signal: mem}
    then:
      - action: webhook
        url: "${env:SLACK_HOOK_URL}"
        headers: {Authorization: "Bearer ${env:PAGER_TOKEN}"}
      - action: agent
        url: "http://{{instance}}:9465"
        name: restart-api
        params: {instance: "{{instance}}", mode: fast}
        key_env: HEAL_AGENT_KEY
        timeout: 20s
  - name: bad
    when: {signal: mem}
    then:
      - action: webhook
        url: "https://hooks.example.com/${env:lower}"
        headers: {X-Key: "${env:KEY"}
        body: {token: "${env:TOKEN}"}
      - action: agent
        url: "ftp://x"
        name: "rm -rf"
        params: {"bad-name": "{{nope}}"}
        key_env: "key"
  - name: broken
    when: {signal: mem}
    then: [{action: agent, url: "http://x", name: a, extra: 1, key_env: K}]
"#;
        let err = RunbookSet::from_sources(&[("a.yaml".into(), text.into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"a.yaml:19:9: rules[1].then[0].url: invalid environment variable name "lower" in ${env:...}: must match [A-Z_][A-Z0-9_]*
a.yaml:20:19: rules[1].then[0].headers.X-Key: unclosed "${env:": write ${env:NAME}
a.yaml:21:9: rules[1].then[0].body: ${env:...} is only substituted in `url` and `headers`: a body is recorded in incidents and often echoed back
a.yaml:23:9: rules[1].then[1].url: must start with http:// or https://, got "ftp://x"
a.yaml:24:9: rules[1].then[1].name: invalid agent action name "rm -rf": use letters, digits, `_`, `.` and `-`, starting with a letter or digit
a.yaml:25:18: rules[1].then[1].params.bad-name: unknown template variable "nope" (known: service, instance, signal, rule, label.NAME)
a.yaml:25:18: rules[1].then[1].params.bad-name: invalid parameter name "bad-name": must match [a-zA-Z_][a-zA-Z0-9_]*
a.yaml:26:9: rules[1].then[1].key_env: invalid environment variable name "key": must match [A-Z_][A-Z0-9_]*
a.yaml:29:54: rules[2].then[0].extra: unknown field `extra`, expected one of `url`, `name`, `params`, `key_env`, `timeout`, `dry_run`"#
        );
        let ok = text.split("  - name: bad").next().unwrap();
        let set = RunbookSet::from_sources(&[("a.yaml".into(), ok.into())]).unwrap();
        assert_eq!(set.rules()[0].then[1].kind().as_str(), "agent");
    }
}

#[cfg(test)]
mod peer_tests {
    use crate::RunbookSet;

    #[test]
    fn peer_settings_are_validated_with_their_positions() {
        let text = r#"signals:
  - name: latency
    query: q
    peer:
      threshold: 0
      consecutive: 0
      min_spread: -1
  - name: same_labels
    query: q
    service_label: host
    instance_label: host
    peer: {}
  - name: typo
    query: q
    peer: {treshold: 3}
"#;
        let err = RunbookSet::from_sources(&[("peer.yaml".into(), text.into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"peer.yaml:5:7: signals[0].peer.threshold: must be > 0, got 0
peer.yaml:6:7: signals[0].peer.consecutive: must be at least 1, got 0
peer.yaml:7:7: signals[0].peer.min_spread: must be >= 0, got -1
peer.yaml:12:5: signals[1].peer: service_label and instance_label are both "host": peers are the instances of one service, so they must differ
peer.yaml:15:12: signals[2].peer.treshold: unknown field `treshold`, expected one of `threshold`, `consecutive`, `min_spread`"#
        );
    }

    #[test]
    fn peer_is_off_unless_given_and_defaults_fill_in() {
        let text = r#"signals:
  - {name: a, query: q}
  - {name: b, query: q, peer: {consecutive: 5}}
"#;
        let set = RunbookSet::from_sources(&[("p.yaml".into(), text.into())]).unwrap();
        assert_eq!(set.signal("a").unwrap().peer, None);
        let peer = set.signal("b").unwrap().peer.clone().unwrap();
        assert_eq!(peer.consecutive, 5);
        assert_eq!(peer.threshold, detect::PeerConfig::default().threshold);
        let schema = crate::json_schema().to_string();
        assert!(schema.contains("Peer outliers"), "the schema documents it");
    }
}

#[cfg(test)]
mod reroute_tests {
    use crate::RunbookSet;

    fn load(then: &str) -> Result<RunbookSet, String> {
        let text = format!(
            "signals: [{{name: s, query: q}}]\nrules:\n  - name: r\n    when: {{signal: s}}\n    then:\n{then}"
        );
        RunbookSet::from_sources(&[("h.yaml".into(), text)]).map_err(|e| e.to_string())
    }

    #[test]
    fn docker_signals_take_a_metric_and_a_checked_label() {
        let text = "signals:
  - {name: up_c, docker: {metric: up, label: com.docker.compose.project=shop}}
  - {name: mem, docker: {metric: memory}}
  - {name: bad, docker: {metric: up, label: \"a=b&c\"}}
  - {name: both, query: up, docker: {metric: healthy}}
  - {name: typo, docker: {metric: alive}}
";
        let e = RunbookSet::from_sources(&[("d.yaml".into(), text.into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.yaml:4:38: signals[2].docker.label: expected KEY=VALUE with Docker's name rules, got \"a=b&c\"
d.yaml:5:29: signals[3].docker: give one of `query` (PromQL), `probe` (an HTTP probe heal runs), `docker` (the Docker Engine), `logs` (a log source), `remote_write` (pushed by Prometheus) or `alertmanager` (its webhook), not several
d.yaml:6:27: signals[4].docker.metric: unknown variant `alive`, expected one of `up`, `healthy`, `memory`, `cpu`, `restarts`, `replicas`, `spare_replicas`"
        );
    }

    #[test]
    fn service_metrics_need_per_service_and_spare_replicas_a_cpu_target() {
        let good = "signals:
  - {name: reps, docker: {metric: replicas, per: service}}
  - {name: spare, docker: {metric: spare_replicas, per: service, cpu_per_replica: 0.5}}
  - {name: cpu_svc, docker: {metric: cpu, per: service, label: com.docker.swarm.service.name=web}}
";
        RunbookSet::from_sources(&[("d.yaml".into(), good.into())]).unwrap();
        let bad = "signals:
  - {name: reps, docker: {metric: replicas}}
  - {name: spare, docker: {metric: spare_replicas, per: service}}
  - {name: zero, docker: {metric: spare_replicas, per: service, cpu_per_replica: 0}}
  - {name: cpu, docker: {metric: cpu, cpu_per_replica: 0.5}}
";
        let e = RunbookSet::from_sources(&[("d.yaml".into(), bad.into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.yaml:2:18: signals[0].docker.per: `replicas` and `spare_replicas` are a Swarm service's: give `per: service`
d.yaml:3:19: signals[1].docker.cpu_per_replica: `spare_replicas` needs `cpu_per_replica`, the cores one replica should use at most
d.yaml:4:65: signals[2].docker.cpu_per_replica: must be a positive number of cores, got 0
d.yaml:5:39: signals[3].docker.cpu_per_replica: only `metric: spare_replicas` takes `cpu_per_replica`"
        );
        let node = "signals: [{name: per, docker: {metric: up, per: node}}]";
        let e = RunbookSet::from_sources(&[("d.yaml".into(), node.into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker.per: unknown variant `node`, expected `container` or `service`"),
            "{e}"
        );
    }

    #[test]
    fn log_sources_and_log_signals_are_checked_together() {
        let good = "log_sources:
  - name: web
    files: [/var/log/web/*.log]
    format: {type: log_format, log_format: \"<Level> <Content>\"}
    multiline_start: '^\\S'
    labels: {service: web}
signals:
  - {name: web_errors, logs: {source: web, level: [ERROR], match: refused}}
  - {name: web_latency, logs: {source: web, count: field, field: ms, agg: max}}
";
        let set = RunbookSet::from_sources(&[("l.yaml".into(), good.into())]).unwrap();
        assert_eq!(set.log_sources()[0].files, ["/var/log/web/*.log"]);
        assert_eq!(
            set.signal("web_latency")
                .unwrap()
                .logs
                .as_ref()
                .unwrap()
                .field
                .as_deref(),
            Some("ms")
        );

        let bad = "log_sources:
  - name: web
    files: [relative.log, '/a/[b']
    format: {type: log_format, log_format: \"<Level> <Message>\"}
    multiline_start: '('
    labels: {service: 'a;b'}
  - {name: web, files: [/x.log]}
  - {name: w2, files: [/y.log], late_after: 0s, labels: {line: x}}
signals:
  - {name: a, logs: {source: nope}}
  - {name: b, logs: {source: web, match: '(', count: lines, field: ms}}
  - {name: c, logs: {source: web, count: field, agg: sum}}
  - {name: d, logs: {source: web, count: rate}}
";
        let e = RunbookSet::from_sources(&[("l.yaml".into(), bad.into())])
            .unwrap_err()
            .to_string();
        for want in [
            "l.yaml:3:13: log_sources[0].files[0]: \"relative.log\" is relative",
            "log_sources[0].files[1]: \"/a/[b\"",
            "l.yaml:4:5: log_sources[0].format: log format \"<Level> <Message>\": no `<Content>` field",
            "log_sources[0].multiline_start: not a regex",
            "log_sources[0].labels.service: label value \"a;b\"",
            "l.yaml:7:6: log_sources[1].name: duplicate log source name \"web\" (first defined at l.yaml:2)",
            "l.yaml:10:22: signals[0].logs.source: undefined log source \"nope\" (defined: w2, web)",
            "log_sources[2].late_after: must be longer than 0s",
            "log_sources[2].labels.line: \"line\" is reserved: it is a column of a recorded log dataset",
            "signals[1].logs.match: not a regex",
            "signals[1].logs.field: `field` is read with `count: field` only",
            "signals[2].logs.field: `count: field` needs the field",
            "signals[3].logs.count: unknown variant `rate`",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
    }
    #[test]
    fn diagnosis_is_checked_with_every_problem_at_once() {
        let good = "signals:
  - {name: lat, query: lat}
rules:
  - name: r
    when: {signal: lat, root_cause: true}
    then: [{action: exec, argv: [/bin/true]}]
diagnosis:
  group_wait: 10s
  services: {web: {depends_on: [api]}}
  edges: [{query: 'sum by (a, b) (x)', caller: a, callee: b}]
";
        let set = RunbookSet::from_sources(&[("d.yaml".into(), good.into())]).unwrap();
        let d = set.diagnosis().unwrap();
        assert_eq!(d.services["web"].depends_on, ["api"]);
        assert_eq!(d.edges[0].caller, "a");
        assert_eq!(set.rules()[0].when.root_cause, Some(true));

        let bad = "diagnosis:
  window: 0s
  refresh: 0s
  services: {web: {depends_on: [web, 'a b']}}
  edges: [{query: '', caller: 'x-y', callee: 'x-y'}]
";
        let e = RunbookSet::from_sources(&[
            ("d.yaml".into(), bad.into()),
            ("e.yaml".into(), "diagnosis: {window: 1m}\n".into()),
        ])
        .unwrap_err()
        .to_string();
        for want in [
            "diagnosis.window: must be longer than 0s",
            "diagnosis.refresh: must be longer than 0s",
            "diagnosis.services.web.depends_on[0]: \"web\" depends on itself",
            "diagnosis.services.web.depends_on[1]: service \"a b\"",
            "diagnosis.edges[0].query: empty query",
            "diagnosis.edges[0].caller: invalid label name \"x-y\"",
            "diagnosis.edges[0].callee: the same label as `caller`",
            "e.yaml:1:1: diagnosis: diagnosis is set twice (first at d.yaml:1); keep one",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
        let no_block = "signals:
  - {name: lat, query: lat}
rules:
  - name: r
    when: {signal: lat, root_cause: false}
    then: [{action: exec, argv: [/bin/true]}]
";
        let e = RunbookSet::from_sources(&[("r.yaml".into(), no_block.into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rules[0].when.root_cause: needs a `diagnosis:` block"),
            "{e}"
        );
    }

    #[test]
    fn kafka_log_sources_are_checked() {
        let good = "log_sources:
  - name: k
    kafka: {brokers: [\"kafka-1:9092\"], topics: [web-logs], group: heal, instance: heal-1, assign: all_partitions}
signals:
  - {name: e, logs: {source: k}}
";
        let set = RunbookSet::from_sources(&[("k.yaml".into(), good.into())]).unwrap();
        let k = set.log_sources()[0].kafka.as_ref().unwrap();
        assert_eq!(k.assign, crate::runbook::KafkaAssign::AllPartitions);
        let bad = "log_sources:
  - name: k
    files: [/x.log]
    multiline_start: '^x'
    kafka: {brokers: [\"kafka-1:9092\", \"nope\"], topics: [\"a b\"], group: g, instance: 'x;y'}
  - {name: k2, kafka: {brokers: [], topics: []}}
  - {name: k3, kafka: {brokers: [\"h:1\"], topics: [t], assign: everything}}
";
        let e = RunbookSet::from_sources(&[("k.yaml".into(), bad.into())])
            .unwrap_err()
            .to_string();
        for want in [
            "log_sources[0].kafka: give `files` or `kafka`, not both",
            "log_sources[0].kafka.brokers[1]: \"nope\" is not `host:port`",
            "log_sources[0].kafka.topics[0]: \"a b\" is not a Kafka topic name",
            "log_sources[0].kafka.instance: \"x;y\"",
            "log_sources[0].multiline_start: a Kafka message is already one event",
            "log_sources[1].kafka.brokers: no brokers",
            "log_sources[1].kafka.topics: no topics",
            "log_sources[2].kafka.assign: unknown variant `everything`",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
    }

    #[test]
    fn docker_steps_take_the_fields_of_their_op() {
        let e = load(
            r#"      - action: docker
        op: scale
        target: container/{{service}}
      - action: docker
        op: kill
        target: container/web
        signal: SIGBOGUS
        replicas: 3
      - action: docker
        op: restart
        target: "container/a;b"
"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            r#"h.yaml:6:9: rules[0].then[0].replicas: scale needs `replicas`
h.yaml:8:9: rules[0].then[0].target: scale takes a target starting with service/, got "container/{{service}}"
h.yaml:12:9: rules[0].then[1].signal: unknown signal "SIGBOGUS": expected one of SIGKILL, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT, SIGABRT
h.yaml:13:9: rules[0].then[1].replicas: only `op: scale` takes `replicas`, this step is `op: kill`
h.yaml:16:9: rules[0].then[2].target: docker target "container/a;b": refusing name "a;b": allowed are 1 to 128 of [A-Za-z0-9_.-], starting with a letter or digit"#
        );
        // Unknown fields are refused with the field's own position.
        let e = load(
            r#"      - action: docker
        op: rollback
        target: service/{{service}}
        socket: /var/run/docker.sock
"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "h.yaml:9:9: rules[0].then[0].socket: unknown field `socket`, expected one of `op`, `target`, `signal`, `replicas`, `image`, `rollout`, `timeout`, `dry_run`"
        );
        let ok = load(
            r#"      - action: docker
        op: scale
        target: service/{{service}}
        replicas: 3
      - action: docker
        op: kill
        target: label/com.docker.compose.service={{service}}
        signal: SIGTERM
      - action: docker
        op: drain
        target: node/{{label.node}}
      - action: docker
        op: update
        target: service/{{service}}
        image: registry.example.com/web:v2
        rollout: {parallelism: 2, delay: 5s, monitor: 20s, failure_action: pause}
"#,
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        let e = load(
            r#"      - action: docker
        op: update
        target: service/web
      - action: docker
        op: update
        target: service/web
        image: "web:v2; rm -rf /"
        rollout: {parallelism: 0, max_failure_ratio: 2}
      - action: docker
        op: restart
        target: container/web
        image: web:v2
"#,
        )
        .unwrap_err();
        for want in [
            "rules[0].then[0].image: update needs `image`",
            "rules[0].then[1].image: refusing image \"web:v2; rm -rf /\"",
            "rules[0].then[1].rollout.parallelism: must be at least 1",
            "rules[0].then[1].rollout.max_failure_ratio: must be within [0, 1], got 2",
            "rules[0].then[2].image: only `op: update` takes `image`, this step is `op: restart`",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
        let e = load(
            r#"      - action: docker
        op: drain
        target: service/{{service}}
      - action: docker
        op: activate
        target: node/a;b
"#,
        )
        .unwrap_err();
        assert!(
            e.contains("rules[0].then[0].target: drain takes a target starting with node/"),
            "{e}"
        );
        assert!(
            e.contains("rules[0].then[1].target: docker target \"node/a;b\""),
            "{e}"
        );
    }

    #[test]
    fn reroute_needs_where_the_runtime_api_is() {
        assert_eq!(
            load("      - {action: reroute, backend: be, target: a, state: drain}\n").unwrap_err(),
            "h.yaml:6:10: rules[0].then[0]: missing field `api`"
        );
        assert_eq!(
            load("      - action: reroute\n        backend: be\n        target: a\n        state: drain\n        api: /run/haproxy/admin.sock\n").unwrap_err(),
            "h.yaml:10:9: rules[0].then[0].api: invalid HAProxy runtime API address \"/run/haproxy/admin.sock\": expected unix:/PATH or HOST:PORT"
        );
        assert_eq!(
            load("      - action: reroute\n        backend: be\n        target: a\n        state: drain\n        api: 127.0.0.1:9999\n        weight: 300\n").unwrap_err(),
            "h.yaml:11:9: rules[0].then[0].weight: must be within [0, 256] (HAProxy's range), got 300"
        );
        assert_eq!(
            load("      - action: reroute\n        backend: be\n        target: a\n        state: drain\n        api: 127.0.0.1:9999\n        wieght: 3\n").unwrap_err(),
            "h.yaml:11:9: rules[0].then[0].wieght: unknown field `wieght`, expected one of `target`, `backend`, `state`, `api`, `weight`, `timeout`, `dry_run`"
        );
        assert_eq!(
            load("      - {action: reroute, backend: 'be/{{service}}', target: 'srv {{instance}}', state: drain, api: '127.0.0.1:9999'}\n").unwrap_err(),
            "h.yaml:6:27: rules[0].then[0].backend: '/' cannot be part of an HAProxy backend name (allowed: letters, digits, `.`, `_`, `-`, `:`)\n\
             h.yaml:6:54: rules[0].then[0].target: ' ' cannot be part of an HAProxy server name (allowed: letters, digits, `.`, `_`, `-`, `:`)"
        );
        let set = load("      - {action: reroute, backend: 'be_{{service}}', target: '{{instance}}', state: ready, api: 'unix:/run/haproxy/admin.sock', weight: 10}\n").unwrap();
        assert_eq!(set.summary(), "1 file, 1 signal, 1 rule");
        let schema = crate::json_schema().to_string();
        assert!(schema.contains("HAProxy runtime API address"), "{schema}");
    }
}
