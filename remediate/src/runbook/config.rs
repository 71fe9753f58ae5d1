//! What a user writes in a runbook file.
//!
//! Every `///` doc here is user documentation: it ends up in the JSON Schema
//! (`heal runbooks schema`), which editors show on hover.

use std::collections::BTreeMap;

use detect::{DetectorConfig, Direction, PeerConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::action::ApiAddress;
use crate::duration::Duration;
use crate::template::{Part, Template, Var};

/// One runbook file: the signals it watches and the rules that act on them.
/// Signals are shared by every file of the directory, so rules may refer to a
/// signal declared in another file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunbookFile {
    /// Metric series to watch, each with its anomaly detector.
    #[serde(default)]
    pub signals: Vec<Signal>,
    /// What to do when a signal misbehaves.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Limits over every rule at once (rate, concurrency, blast radius,
    /// flap damping). At most one file of a directory may set them; the
    /// defaults apply otherwise.
    #[serde(default)]
    pub guardrails: Option<Guardrails>,
    /// Log files heal tails itself, for `logs:` signals. Names are unique
    /// across the directory.
    #[serde(default)]
    pub log_sources: Vec<LogSourceConfig>,
    /// Cross-service diagnosis: anomalies of services that overlap in time
    /// (and are connected in the call graph, when one is given) form one
    /// group with one ranked root cause, and steps planned for its symptoms
    /// are held back. At most one file of a directory may set it; without
    /// it, every incident acts on its own.
    #[serde(default)]
    pub diagnosis: Option<DiagnosisConfig>,
}

/// See [`RunbookFile::diagnosis`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosisConfig {
    /// The call graph: each service with the services it calls
    /// (`web: {depends_on: [api]}`), as `heal supervise` has it. Services
    /// are the values of the signals' `service_label`. Without one, time
    /// alone groups anomalies.
    pub services: BTreeMap<String, ServiceDeps>,
    /// A new incident's steps wait this long for the anomalies of the
    /// services around it to join its group (`awaiting_diagnosis`), so
    /// that a caller whose latency fired first is not restarted before its
    /// slow callee is seen (Alertmanager's `group_wait`).
    pub group_wait: Duration,
    /// Anomalies whose spans are at most this far apart overlap.
    pub window: Duration,
    /// Call-graph edges from Prometheus: each query's series are edges from
    /// the value of its `caller` label to that of its `callee` label (a
    /// service mesh's `sum by (source_workload, destination_workload)
    /// (rate(istio_requests_total[5m])) > 0`). Added to `services`;
    /// queried by `heal watch` every `refresh` (the last answer is kept
    /// while Prometheus is down) and by `heal topology --prometheus`.
    pub edges: Vec<EdgeQuery>,
    /// How often `edges` are queried.
    pub refresh: Duration,
}

/// See [`DiagnosisConfig::edges`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeQuery {
    /// PromQL whose series are edges.
    pub query: String,
    /// The label naming the calling service.
    pub caller: String,
    /// The label naming the called service.
    pub callee: String,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        DiagnosisConfig {
            services: BTreeMap::new(),
            group_wait: Duration::from_secs(30),
            window: Duration::from_secs(120),
            edges: Vec::new(),
            refresh: Duration::from_secs(60),
        }
    }
}

/// The services one service calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceDeps {
    /// Services it calls.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A log source: files tailed (rotation by rename or copytruncate is
/// followed; offsets are kept across restarts with `--log-state`), each line
/// read by its `format`, each message mined into a template (variables as
/// `<*>`, stable ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSourceConfig {
    /// Name, unique; a signal's `logs.source` names it.
    pub name: String,
    /// Paths or globs (`*`, `?`, `[...]`): `/var/log/web/*.log`. A file
    /// is known by its inode and first bytes, so a glob that also matches
    /// rotated files (`app.log*`) reads no line twice. Give `files` or
    /// `kafka`, not both.
    #[serde(default)]
    pub files: Vec<String>,
    /// Kafka topics instead of files: `{brokers: ["kafka-1:9092"], topics:
    /// [web-logs], group: heal}`. One message is one event; offsets are
    /// committed only after the evaluations that counted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSourceConfig>,
    /// Where to begin in a file that exists when heal first starts (with no
    /// saved offsets): `end` (the default: only new lines count) or
    /// `beginning`. Files that appear later are read from their start.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How a line reads: `{type: plain}` (the default: the line is the
    /// message), `{type: log_format, log_format: "<Date> <Time> <Level>
    /// <Component>: <Content>"}` (Loghub's syntax), `{type: json, message:
    /// msg, fields: [level, latency_ms]}` (dotted paths), `{type: logfmt}`,
    /// `{type: regex, regex: "(?P<level>\\w+) (?P<msg>.*)", message: msg}`;
    /// each may take `time: {field: ts, format: "%Y-%m-%d %H:%M:%S"}`.
    #[serde(default = "plain_format")]
    #[schemars(with = "serde_json::Value")]
    pub format: logs::FormatConfig,
    /// A regex that starts an event: the lines that follow and do not match
    /// it belong to it (a stack trace). Leave out for one event per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiline_start: Option<String>,
    /// Labels of the series of this source's signals; `service` and
    /// `instance` default to the source's name.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Variable masking: `{rules: [{name: ticket, regex: "T-\\d+"}], keep:
    /// [eth0]}` beside the built-in rules (numbers, hex, IPs and ports,
    /// UUIDs, paths, URLs, sizes).
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub mask: logs::MaskConfig,
    /// Most templates kept (the least recently seen are evicted, counted).
    #[serde(default = "default_max_templates")]
    pub max_templates: usize,
    /// With an event time (`format.time`): a line whose event time is
    /// older than this before the slot it is read in is late. It is mined
    /// but counted in no signal (`heal_log_late_lines_total`), so a backlog
    /// delivered at once (a Kafka consumer catching up, a shipper
    /// reconnecting) does not read as a burst.
    #[serde(default = "default_late_after")]
    pub late_after: Duration,
}

fn default_late_after() -> Duration {
    Duration::from_secs(5 * 60)
}

/// See [`LogSourceConfig::kafka`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port` of one or more brokers (the rest are discovered).
    pub brokers: Vec<String>,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group: heal processes with the same group share the
    /// partitions (default `heal`).
    #[serde(default = "default_group")]
    pub group: String,
    /// This heal's static member name in the group (`group.instance.id`):
    /// restarted, it takes its partitions back at once instead of waiting
    /// for the broker to expire its previous self. Unique per heal process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `group` (the default): share the partitions with the group's other
    /// members, rebalanced as they come and go. `all_partitions`: read every
    /// partition of the topics here (one heal per group; a restart resumes
    /// at once, with no rebalance to wait for).
    #[serde(default)]
    pub assign: KafkaAssign,
}

/// See [`KafkaSourceConfig::assign`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaAssign {
    /// Consumer group membership.
    #[default]
    Group,
    /// Every partition, to this heal.
    AllPartitions,
}

fn default_group() -> String {
    "heal".to_owned()
}

fn plain_format() -> logs::FormatConfig {
    logs::FormatConfig::Plain
}

fn default_max_templates() -> usize {
    logs::DEFAULT_MAX_TEMPLATES
}

/// See [`LogSourceConfig::read_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte.
    Beginning,
    /// From the end.
    #[default]
    End,
}

/// A signal counted from a log source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSignal {
    /// The `log_sources:` entry.
    pub source: String,
    /// Only lines whose `level` field (any case) is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level: Vec<String>,
    /// Only lines whose message matches this regex.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Only lines whose template is this text (`connection to <*> refused`,
    /// as `heal logs templates` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// What is counted per evaluation: `lines` (the default), `templates`
    /// (lines per template: one series per template, label `template_id`),
    /// `new_templates` (lines whose template was never seen before), or
    /// `field` (the numeric `field` of the lines, by `agg`).
    #[serde(default)]
    pub count: LogCount,
    /// With `count: field`: the field (as the format names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `count: field`: `mean` (the default), `max` or `sum` of the
    /// values within one evaluation; none: no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<FieldAgg>,
}

/// See [`LogSignal::count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogCount {
    /// Lines.
    #[default]
    Lines,
    /// Lines per template.
    Templates,
    /// Lines of new templates.
    NewTemplates,
    /// A numeric field.
    Field,
}

/// See [`LogSignal::agg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldAgg {
    /// Mean.
    Mean,
    /// Largest.
    Max,
    /// Sum.
    Sum,
}

/// Limits that hold across every rule: whatever the runbooks say, heal never
/// acts faster, wider or more often than this. A step that would break one
/// is suppressed with the limit's name as reason and recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Guardrails {
    /// At most this many steps performed in any 60 seconds, over every rule
    /// and target (dry runs count, so a replay suppresses what live would).
    pub max_actions_per_minute: u32,
    /// At most this many steps in progress at once: performed and not yet
    /// verified.
    pub max_concurrent: u32,
    /// Blast radius: at most this many instances of one service with a step
    /// in progress at once.
    pub max_instances_per_service: u32,
    /// Blast radius: at most this percentage of the instances heal has seen
    /// of one service with a step in progress at once (rounded down, but
    /// one instance is always allowed).
    pub max_percent_per_service: f64,
    /// Flap damping on firing: a rule whose incidents on one series opened
    /// this many times within `flap_window` is flapping, and its steps on
    /// that series are suppressed (`flapping`) until it calms down.
    pub flap_max_opens: u32,
    /// The sliding window of `flap_max_opens`.
    pub flap_window: Duration,
    /// Flap damping on resolving: an incident resolves only once its series
    /// stayed out of the anomaly this long; an anomaly that comes back
    /// sooner continues the same incident.
    pub resolve_after: Duration,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            max_actions_per_minute: 30,
            max_concurrent: 10,
            max_instances_per_service: 2,
            max_percent_per_service: 50.0,
            flap_max_opens: 5,
            flap_window: Duration::from_secs(30 * 60),
            resolve_after: Duration::from_secs(0),
        }
    }
}

/// A metric watched for anomalies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// Name of the signal, unique across the directory. It is also the
    /// `__name__` of matching series in recorded datasets, so it must be a
    /// valid Prometheus metric name.
    pub name: String,
    /// PromQL query that yields the signal's series when watching live, one
    /// series per service instance. Give either `query` or `probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// An HTTP probe heal runs itself, instead of a query: the signal is 1
    /// for a target that answered 2xx within the timeout, 0 otherwise (like
    /// blackbox_exporter's `probe_success`). Give either `query` or `probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Read from the Docker Engine instead (`heal watch --docker`): one
    /// series per container, labelled `instance` (the container's name),
    /// `service` (its Compose or Swarm service, else its name), `container`,
    /// `image` and the Compose/Swarm labels; the engine's events update it
    /// the moment a container dies, restarts or changes health, without
    /// waiting for a scrape. Give one of `query`, `probe` or `docker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerSignal>,
    /// Counted from a log source's lines (`log_sources:`) at every
    /// evaluation: one series per source (its `labels`), or per template.
    /// Give one of `query`, `probe`, `docker` or `logs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogSignal>,
    /// Pushed to heal by Prometheus remote write (`POST /api/v1/write` on
    /// `heal watch --listen`, with the API token): the series of `metric`
    /// carrying every `match` pair, one value per evaluation (the latest
    /// sample of the interval, or with `rate: true` a counter's increase
    /// per second). Give one of `query`, `probe`, `docker`, `logs` or
    /// `remote_write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write: Option<RemoteWriteSignal>,
    /// Alerts Alertmanager sends to heal (`POST /api/v1/alerts`, its
    /// webhook, with the API token): one series per alert carrying the
    /// `match` labels, 1 while it fires, 0 once resolved. Rules pick
    /// alerts with `when: {signal: NAME, alert: ALERTNAME}`. Without a
    /// `detector:` it fires on a firing alert and nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerSignal>,
    /// Label whose value names the service (`{{service}}` in templates).
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// Label whose value names the instance (`{{instance}}` in templates).
    #[serde(default = "default_instance_label")]
    pub instance_label: String,
    /// Detector settings; leave out for the defaults.
    #[serde(default)]
    pub detector: Option<DetectorConfig>,
    /// Peer outliers: compare each series with its siblings, the series of
    /// this signal with the same `service_label` value (one per instance,
    /// named by `instance_label`), at every timestamp they share. An
    /// instance whose robust z-score among them stays beyond `threshold`
    /// for `consecutive` timestamps scores as an anomaly of its own series
    /// (the higher of its own detector's score and the peer score counts,
    /// against the detector's `threshold`: with the default 0.4, a robust
    /// z of about 4.3), so the rules of this signal match it like any
    /// other anomaly, in the detector's `direction`, and the incident says
    /// it differs from its siblings. Leave out to turn it off. Needs at
    /// least three instances with a value at a timestamp; not run on a
    /// back-fill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerConfig>,
    /// Anomaly score at or above which an anomaly is `critical` rather than
    /// `warning`; in [0, 1]. The default 0.8 is a calibrated tail
    /// probability of about 2.5e-10 (the score is `log(p) / log(1e-12)`).
    #[serde(default = "default_critical_score")]
    pub critical_score: f64,
}

fn default_service_label() -> String {
    "service".to_owned()
}

fn default_instance_label() -> String {
    "instance".to_owned()
}

fn default_critical_score() -> f64 {
    0.8
}

impl Signal {
    /// The detector settings in effect (the defaults when none are given).
    pub fn detector(&self) -> DetectorConfig {
        self.detector.clone().unwrap_or_default()
    }

    /// For a probe signal, its URL template resolved for this signal:
    /// `{{service}}` and `{{instance}}` become the signal's label names,
    /// `{{signal}}` its name. `None` for a query signal, or when the template
    /// does not validate (a loaded runbook set never has one).
    pub fn probe_url(&self) -> Option<Vec<UrlPiece>> {
        let parts = self.probe.as_ref()?.url.parse().ok()?;
        parts
            .into_iter()
            .map(|part| {
                Some(match part {
                    Part::Literal(text) => UrlPiece::Text(text),
                    Part::Var(Var::Signal) => UrlPiece::Text(self.name.clone()),
                    Part::Var(Var::Service) => UrlPiece::Label(self.service_label.clone()),
                    Part::Var(Var::Instance) => UrlPiece::Label(self.instance_label.clone()),
                    Part::Var(Var::Label(name)) => UrlPiece::Label(name),
                    Part::Var(Var::Rule) => return None,
                })
            })
            .collect()
    }
}

/// An HTTP probe of every series of a PromQL query, run by heal itself.
///
/// Every evaluation slot, heal requests each target's URL once (`GET`, no
/// redirects followed, no proxy) and records 1 for a 2xx answer within
/// `timeout`, 0 for a timeout, a refused connection or any other status.
/// The probe for a slot starts `timeout` before it, so its result is known
/// at the slot: a hang is seen within one evaluation interval plus the
/// timeout, without waiting for a Prometheus scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// PromQL whose series are the targets, e.g. `up{job="web"}`; the
    /// probe's series carry their labels (the metric name becomes the
    /// signal's). Re-evaluated every slot; while Prometheus is down, the
    /// last known targets keep being probed.
    pub targets: String,
    /// The URL to request for one target, a template over the target's
    /// labels: `http://{{label.address}}/healthz`. Plain `http://` only.
    /// Every label value is checked before use (host, port or DNS name
    /// characters only: no `/`, `@`, `?`, `#`, spaces or `..`); a target
    /// with a bad value is skipped and counted.
    pub url: Template,
    /// How long one request may take, answer included; must be below the
    /// evaluation interval of `heal watch`.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
}

fn default_probe_timeout() -> Duration {
    Duration::from_millis(500)
}

/// A piece of a probe's URL, see [`Signal::probe_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlPiece {
    /// Text copied as is.
    Text(String),
    /// The value of this label of the target.
    Label(String),
}

/// When a signal misbehaves in a given way, run a chain of actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Name of the rule, unique across the directory; shows in incident
    /// reports and as `{{rule}}` in templates.
    pub name: String,
    /// What the rule is for, for the humans reading incident reports (a
    /// sentence, a dashboard or a wiki link).
    #[serde(default)]
    pub description: Option<String>,
    /// Which anomalies this rule handles.
    pub when: When,
    /// Actions to try in order: the first when the rule matches, each next
    /// one only if verification of the previous one says the signal did not
    /// recover.
    pub then: Vec<Action>,
    /// Limits on how often the rule acts.
    #[serde(default)]
    pub guards: Guards,
    /// How to tell whether an action helped.
    #[serde(default)]
    pub verify: Verify,
}

/// Which anomalies a rule handles; all conditions must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Name of the signal, declared in any file of the directory.
    pub signal: String,
    /// Which excursions count: `up` (above the baseline), `down` or `both`.
    #[serde(default)]
    pub direction: Direction,
    /// How long an excursion must have lasted before the rule acts; `0s`
    /// acts on the sample that fired.
    #[serde(rename = "for", default)]
    pub for_: Duration,
    /// Minimum severity: `warning` (any anomaly) or `critical` (peak score at
    /// or above the signal's `critical_score`).
    #[serde(default)]
    pub severity: Severity,
    /// Labels the series must have, with exactly these values.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    /// With `diagnosis:`: `true` acts only while the incident's service is
    /// the ranked root cause of its group (or alone), `false` only while it
    /// is a symptom of another service's fault. Unset: acts as `true` does
    /// (a symptom's steps are held back, `inhibited_by_root_cause`), so
    /// that heal restarts the slow database, not the web tier waiting on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<bool>,
    /// With an `alertmanager:` signal: only the alert of this `alertname`
    /// (the same as `match: {alertname: NAME}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

/// How bad an anomaly is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Any anomaly.
    #[default]
    Warning,
    /// Peak score at or above the signal's `critical_score`.
    Critical,
}

impl Severity {
    /// The lowercase name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One remediation step, chosen by `action:`. Every step may set `timeout`
/// and `dry_run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Action {
    /// Restart a workload (rolling restart of a deployment, service restart).
    Restart(Restart),
    /// Set the replica count of a workload.
    Scale(Scale),
    /// Roll a workload back to a previous release.
    Rollback(Rollback),
    /// Change the state of a server in an HAProxy backend (take an instance
    /// out of rotation or put it back).
    Reroute(Reroute),
    /// Run a program directly (no shell): `argv[0]` is the program, the rest
    /// are its arguments, each one a template.
    Exec(Exec),
    /// Send an HTTP request, e.g. to page someone or post to a chat.
    Webhook(Webhook),
    /// Ask a `heal agent` on another host to run one of the actions it
    /// allows, with parameters; the request is signed with a shared key.
    Agent(Agent),
    /// Act on Docker containers or Swarm services through the Docker Engine
    /// API on its UNIX socket.
    Docker(Docker),
}

// Why newtype variants around named structs rather than struct variants:
// serde buffers an internally tagged enum before picking the variant, which
// hides where inside the step a problem is. With named structs the loader can
// deserialize a failing step again as its own type and report the exact
// field (`rules[0].then[1].replicas`), see `load::refine_action`.

/// `action: restart`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// What to restart, e.g. `deployment/{{service}}`.
    pub target: Template,
    /// Give up on the step after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// `action: scale`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// What to scale, e.g. `deployment/{{service}}`.
    pub target: Template,
    /// Desired number of replicas, at least 1.
    pub replicas: u32,
    /// Give up on the step after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// `action: rollback`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// What to roll back, e.g. `deployment/{{service}}`.
    pub target: Template,
    /// Release to go back to; leave out for the previous one.
    #[serde(default)]
    pub to: Option<Template>,
    /// Give up on the step after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// `action: reroute`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reroute {
    /// The server in the backend, e.g. `{{instance}}`.
    pub target: Template,
    /// The HAProxy backend name, e.g. `be_{{service}}`.
    pub backend: Template,
    /// New state of the server: `drain`, `maint` or `ready`.
    pub state: ServerState,
    /// Where HAProxy's runtime API listens: `unix:/run/haproxy/admin.sock`
    /// (the `stats socket` of Debian's packaged configuration) or
    /// `HOST:PORT` (`stats socket ipv4@127.0.0.1:9999`). The socket must be
    /// declared with `level admin`, or HAProxy refuses state changes.
    pub api: ApiAddress,
    /// Also set the server's weight, within [0, 256]; e.g. `state: ready`
    /// with `weight: 10` puts an instance back with a small share of the
    /// traffic. Leave out to keep the weight.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Give up on the step after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// `action: exec`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// Program and arguments, e.g. `["/usr/local/bin/heap-dump", "--pod",
    /// "{{instance}}"]`. Never a shell command line: the program is run
    /// directly and must be fixed text.
    pub argv: Vec<Template>,
    /// Kill the program after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// `action: webhook`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// URL to call (`http://` or `https://`).
    pub url: Template,
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Request headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// JSON request body; every string in it is a template.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Give up on the request after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// `action: agent`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Base URL of the agent, e.g. `http://{{instance}}:9465` or
    /// `http://10.0.0.5:9465` (`http://` or `https://`).
    pub url: Template,
    /// Name of the action in the agent's allowlist, e.g. `restart-api`.
    pub name: String,
    /// Parameter values by name; values are templates. The agent checks
    /// each against the type it declares before anything runs.
    #[serde(default)]
    pub params: BTreeMap<String, Template>,
    /// Environment variable of heal holding the key shared with the agent
    /// (`[A-Z_][A-Z0-9_]*`). The key itself is never written in a runbook.
    pub key_env: String,
    /// Give up on the call (the agent's run of the program included) after
    /// this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// A signal fed by Alertmanager's webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSignal {
    /// Labels the alerts must carry, with exactly these values.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
}

/// A signal pushed by Prometheus remote write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSignal {
    /// The metric name taken (`__name__` of the pushed series).
    pub metric: String,
    /// Labels the pushed series must carry, with exactly these values.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    /// A counter: its increase per second between evaluations, as
    /// Prometheus' `rate` (a decrease is a restart from zero).
    #[serde(default)]
    pub rate: bool,
}

/// A signal read from the Docker Engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSignal {
    /// `up`: 1 while the container runs, 0 once it died (crash, OOM kill,
    /// stop); `healthy`: 1 healthy, 0 unhealthy, for containers with a
    /// health check (others have no series); `memory`: bytes in use (as
    /// `docker stats` counts them); `cpu`: cores used since the previous
    /// evaluation; `restarts`: the engine's restart count (restarts by its
    /// restart policy). `memory` and `cpu` are read for running containers
    /// only.
    pub metric: DockerMetric,
    /// Only containers carrying this label, `KEY=VALUE`.
    #[serde(default)]
    pub label: Option<String>,
    /// `container` (the default): one series per container. `service`:
    /// one series per Swarm or Compose service, over its containers: `up`
    /// counts the running ones, `healthy` is the fraction of running ones
    /// with a known health that pass, `memory` and `cpu` are means per
    /// running container, `restarts` a sum; and the service-only metrics
    /// `replicas` and `spare_replicas` (Swarm services).
    #[serde(default)]
    pub per: DockerPer,
    /// With `metric: spare_replicas`: the CPU cores one replica should use
    /// at most (Kubernetes' HPA target, in cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_per_replica: Option<f64>,
}

/// What one series of a Docker signal stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DockerPer {
    /// A container.
    #[default]
    Container,
    /// A Swarm or Compose service (its containers together).
    Service,
}

/// What a Docker signal measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DockerMetric {
    /// Whether the container runs.
    Up,
    /// Whether its health check passes.
    Healthy,
    /// Bytes of memory in use.
    Memory,
    /// CPU cores used.
    Cpu,
    /// Restarts by the engine's restart policy.
    Restarts,
    /// `per: service` only: the replicas a Swarm service is set to run.
    Replicas,
    /// `per: service` only: the running replicas of a Swarm service less
    /// those it needs to keep each under `cpu_per_replica` cores (at least
    /// one): negative when short of replicas, positive when some are spare.
    #[serde(rename = "spare_replicas")]
    SpareReplicas,
}

/// `action: docker`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Docker {
    /// What to do: `restart`, `stop`, `start` or `kill` a container;
    /// `scale`, `redeploy` (force a new deployment of the same spec) or
    /// `rollback` (to the previous spec) a Swarm service; `drain` a Swarm
    /// node (its tasks move to the others) or `activate` it again.
    pub op: DockerOp,
    /// `container/NAME`, `label/KEY=VALUE` (every container carrying that
    /// label, for container operations), `service/NAME` (Swarm service
    /// operations) or `node/NAME` (a Swarm node, by hostname or id), e.g.
    /// `container/{{instance}}`.
    pub target: Template,
    /// With `op: kill`: the signal, e.g. `SIGTERM` (`SIGKILL` when left
    /// out). Only with `kill`.
    #[serde(default)]
    pub signal: Option<String>,
    /// With `op: scale`: the replica count, within [1, 100]. Only with
    /// `scale`.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// With `op: update`: the image the service's tasks move to, e.g.
    /// `registry.example.com/web:{{label.version}}`. Only with `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Template>,
    /// With `op: update`: how the rolling update proceeds (Swarm's own
    /// update config, health-gated). Only with `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Give up on the step (waiting for the change to converge included)
    /// after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Only plan and record this step, never perform it.
    #[serde(default)]
    pub dry_run: bool,
}

/// How a Swarm rolling update (`op: update`) proceeds: the engine updates
/// `parallelism` tasks at a time, waits until each batch's tasks have run
/// healthy for `monitor` (their health check passing) and `delay` more,
/// and on a failure does `failure_action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Rollout {
    /// Tasks updated at once, at least 1.
    pub parallelism: u32,
    /// Wait between batches.
    pub delay: Duration,
    /// How long a batch's tasks must run without failing before the next.
    pub monitor: Duration,
    /// `rollback` (the default: the engine goes back to the previous spec),
    /// `pause` (stops where it is) or `continue`.
    pub failure_action: FailureAction,
    /// Share of tasks that may fail during the update, within [0, 1].
    pub max_failure_ratio: f64,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            parallelism: 1,
            delay: Duration::from_secs(0),
            monitor: Duration::from_secs(10),
            failure_action: FailureAction::Rollback,
            max_failure_ratio: 0.0,
        }
    }
}

/// What the engine does when a rolling update's task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Go back to the previous spec.
    #[default]
    Rollback,
    /// Stop the update where it is.
    Pause,
    /// Go on.
    Continue,
}

impl FailureAction {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Rollback => "rollback",
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
        }
    }
}

/// What a `docker` step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DockerOp {
    /// Restart a container.
    Restart,
    /// Stop a container (SIGTERM, then SIGKILL after the engine's grace).
    Stop,
    /// Start a stopped container.
    Start,
    /// Send a container a signal.
    Kill,
    /// Set a Swarm service's replica count.
    Scale,
    /// Force a Swarm service to redeploy every task with the same spec.
    Redeploy,
    /// Roll a Swarm service back to its previous spec.
    Rollback,
    /// Roll a Swarm service's tasks to a new image, batch by batch, each
    /// batch gated on its tasks' health (`rollout`).
    Update,
    /// Drain a Swarm node: the engine moves its tasks to the other nodes.
    Drain,
    /// Make a drained Swarm node active again.
    Activate,
}

impl DockerOp {
    /// The lowercase name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DockerOp::Restart => "restart",
            DockerOp::Stop => "stop",
            DockerOp::Start => "start",
            DockerOp::Kill => "kill",
            DockerOp::Scale => "scale",
            DockerOp::Redeploy => "redeploy",
            DockerOp::Rollback => "rollback",
            DockerOp::Update => "update",
            DockerOp::Drain => "drain",
            DockerOp::Activate => "activate",
        }
    }

    /// Whether the operation acts on Swarm nodes.
    pub fn on_node(self) -> bool {
        matches!(self, DockerOp::Drain | DockerOp::Activate)
    }

    /// Whether the operation acts on Swarm services (else on containers).
    pub fn on_service(self) -> bool {
        matches!(
            self,
            DockerOp::Scale | DockerOp::Redeploy | DockerOp::Rollback | DockerOp::Update
        )
    }
}

/// Which kind of action a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// `restart`
    Restart,
    /// `scale`
    Scale,
    /// `rollback`
    Rollback,
    /// `reroute`
    Reroute,
    /// `exec`
    Exec,
    /// `webhook`
    Webhook,
    /// `agent`
    Agent,
    /// `docker`
    Docker,
}

impl ActionKind {
    /// The lowercase name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Restart => "restart",
            ActionKind::Scale => "scale",
            ActionKind::Rollback => "rollback",
            ActionKind::Reroute => "reroute",
            ActionKind::Exec => "exec",
            ActionKind::Webhook => "webhook",
            ActionKind::Agent => "agent",
            ActionKind::Docker => "docker",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// Which kind of action this is.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Restart(_) => ActionKind::Restart,
            Action::Scale(_) => ActionKind::Scale,
            Action::Rollback(_) => ActionKind::Rollback,
            Action::Reroute(_) => ActionKind::Reroute,
            Action::Exec(_) => ActionKind::Exec,
            Action::Webhook(_) => ActionKind::Webhook,
            Action::Agent(_) => ActionKind::Agent,
            Action::Docker(_) => ActionKind::Docker,
        }
    }

    /// The step's own timeout, if set.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Action::Restart(a) => a.timeout,
            Action::Scale(a) => a.timeout,
            Action::Rollback(a) => a.timeout,
            Action::Reroute(a) => a.timeout,
            Action::Exec(a) => a.timeout,
            Action::Webhook(a) => a.timeout,
            Action::Agent(a) => a.timeout,
            Action::Docker(a) => a.timeout,
        }
    }

    /// Whether the step itself is marked dry-run.
    pub fn dry_run(&self) -> bool {
        match self {
            Action::Restart(a) => a.dry_run,
            Action::Scale(a) => a.dry_run,
            Action::Rollback(a) => a.dry_run,
            Action::Reroute(a) => a.dry_run,
            Action::Exec(a) => a.dry_run,
            Action::Webhook(a) => a.dry_run,
            Action::Agent(a) => a.dry_run,
            Action::Docker(a) => a.dry_run,
        }
    }

    /// Every template of the step with its field path relative to the step
    /// (`target`, `argv[1]`, `body.text`).
    pub(crate) fn templates(&self) -> Vec<(String, Template)> {
        let one = |name: &str, t: &Template| vec![(name.to_owned(), t.clone())];
        match self {
            Action::Restart(Restart { target, .. })
            | Action::Scale(Scale { target, .. })
            | Action::Docker(Docker { target, .. }) => one("target", target),
            Action::Rollback(Rollback { target, to, .. }) => {
                let mut out = one("target", target);
                if let Some(to) = to {
                    out.push(("to".to_owned(), to.clone()));
                }
                out
            }
            Action::Reroute(Reroute {
                target, backend, ..
            }) => {
                let mut out = one("target", target);
                out.push(("backend".to_owned(), backend.clone()));
                out
            }
            Action::Exec(Exec { argv, .. }) => argv
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("argv[{i}]"), t.clone()))
                .collect(),
            Action::Webhook(Webhook {
                url, headers, body, ..
            }) => {
                let mut out = one("url", url);
                for (name, value) in headers {
                    out.push((format!("headers.{name}"), value.clone()));
                }
                if let Some(body) = body {
                    json_strings(body, "body".to_owned(), &mut out);
                }
                out
            }
            Action::Agent(Agent { url, params, .. }) => {
                let mut out = one("url", url);
                for (name, value) in params {
                    out.push((format!("params.{name}"), value.clone()));
                }
                out
            }
        }
    }
}

/// Every string inside a JSON value, as a template with its path.
fn json_strings(value: &serde_json::Value, path: String, out: &mut Vec<(String, Template)>) {
    match value {
        serde_json::Value::String(s) => out.push((path, Template(s.clone()))),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_strings(item, format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                json_strings(item, format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// State of a server in an HAProxy backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Finish current connections, take no new ones.
    Drain,
    /// Out of rotation at once (maintenance).
    Maint,
    /// Back in rotation.
    Ready,
}

impl ServerState {
    /// The lowercase name used in configuration and HAProxy's runtime API.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Drain => "drain",
            ServerState::Maint => "maint",
            ServerState::Ready => "ready",
        }
    }
}

/// HTTP method of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST`
    #[default]
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl HttpMethod {
    /// The uppercase method name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// Limits on how often a rule acts. Every planned step passes these checks
/// first; a step that fails one is recorded as suppressed with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Guards {
    /// After this rule acted on a target, a new incident of the same rule
    /// takes no action on that target for this long. Escalation within one
    /// incident is paced by `verify.wait` instead.
    pub cooldown: Duration,
    /// At most this many steps of this rule on one target per `window`,
    /// counting every incident.
    pub max_attempts: u32,
    /// The sliding window of `max_attempts`.
    pub window: Duration,
    /// Only plan and record this rule's steps, never perform them.
    pub dry_run: bool,
    /// Park every step of this rule until a human approves it (`heal approve
    /// INCIDENT`, or `POST /api/incidents/INCIDENT/approve`). Just before an
    /// approved step runs, heal checks that the symptom still holds.
    pub require_approval: bool,
    /// A parked step not approved within this long expires
    /// (`approval_expired`) and the chain moves on to its next step.
    pub approval_timeout: Duration,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            cooldown: Duration::from_secs(30 * 60),
            max_attempts: 3,
            window: Duration::from_secs(60 * 60),
            dry_run: false,
            require_approval: false,
            approval_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// How to tell whether a step helped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Verify {
    /// How long to watch the series after a step before judging it.
    pub wait: Duration,
    /// What counts as recovered at the end of `wait`: `cleared` (the
    /// anomaly is over), `{value_below: X}` or `{value_above: X}` (the last
    /// sample's value).
    pub recovered_when: RecoveredWhen,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            wait: Duration::from_secs(5 * 60),
            recovered_when: RecoveredWhen::Cleared,
        }
    }
}

/// What counts as recovered at the end of a verification wait.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RecoveredWhen {
    /// The series is no longer in an anomalous excursion.
    #[default]
    Cleared,
    /// The last sample's value is below this.
    ValueBelow(f64),
    /// The last sample's value is above this.
    ValueAbove(f64),
}

impl std::fmt::Display for RecoveredWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveredWhen::Cleared => f.write_str("anomaly cleared"),
            RecoveredWhen::ValueBelow(x) => write!(f, "value below {x}"),
            RecoveredWhen::ValueAbove(x) => write!(f, "value above {x}"),
        }
    }
}
