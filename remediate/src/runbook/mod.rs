//! Runbooks: the YAML files users write, loaded and validated as one set.

mod config;
pub(crate) mod load;
// Detector parameter files (`heal tune -o`, `--params`).
mod params;
mod validate;
// Also used by the agent's and the supervisor's configuration loaders (same
// positioned errors).
pub mod yaml;

pub use config::{
    Action, ActionKind, AlertmanagerSignal, DiagnosisConfig, Docker, DockerMetric, DockerOp,
    DockerPer, DockerSignal, EdgeQuery, FailureAction, FieldAgg, Guardrails, Guards, HttpMethod,
    KafkaAssign, KafkaSourceConfig, LogCount, LogSignal, LogSourceConfig, Probe, ReadFrom,
    RecoveredWhen, Rollout, Rule, RunbookFile, ServerState, ServiceDeps, Severity, Signal,
    UrlPiece, Verify, When,
};
pub use load::RunbookSet;
pub use params::{detector_params_from_source, load_detector_params};

/// The JSON Schema of one runbook file, generated from the same types the
/// loader deserializes into, so it cannot drift from what is accepted.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RunbookFile);
    // A schema built by schemars is plain data; serializing it cannot fail.
    serde_json::to_value(schema).expect("a JSON Schema serializes to JSON")
}
