//! The runbooks' log sources and `logs:` signals as the ingest stage runs
//! them: one translation, shared by `heal watch` (inputs tailed or
//! consumed), `heal record` (inputs read, nothing counted) and `heal replay`
//! (recorded lines fed in), so that the three count the same way.

use ingest::log_source::{FieldAgg, LogCount, LogInput, LogSource, LogWatch};
use remediate::runbook::{FieldAgg as Agg, LogCount as Count, ReadFrom};
use remediate::RunbookSet;

/// Where the sources' lines come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// Their files or Kafka topics, as the runbooks say.
    Live,
    /// Handed in by a replay.
    Recorded,
}

/// The runbooks' `logs:` signals.
pub fn watches(runbooks: &RunbookSet) -> Vec<LogWatch> {
    runbooks
        .signals()
        .iter()
        .filter_map(|s| {
            let l = s.logs.as_ref()?;
            Some(LogWatch {
                name: s.name.clone(),
                source: l.source.clone(),
                levels: l.level.clone(),
                // Validated with the runbook.
                pattern: l.pattern.as_deref().and_then(|p| regex::Regex::new(p).ok()),
                template: l.template.clone(),
                count: match l.count {
                    Count::Lines => LogCount::Lines,
                    Count::Templates => LogCount::Templates,
                    Count::NewTemplates => LogCount::NewTemplates,
                    Count::Field => LogCount::Field {
                        name: l.field.clone().unwrap_or_default(),
                        agg: match l.agg {
                            None | Some(Agg::Mean) => FieldAgg::Mean,
                            Some(Agg::Max) => FieldAgg::Max,
                            Some(Agg::Sum) => FieldAgg::Sum,
                        },
                    },
                },
            })
        })
        .collect()
}

/// The runbooks' log sources, reading from `inputs`.
pub fn sources(runbooks: &RunbookSet, inputs: Inputs) -> Vec<LogSource> {
    runbooks
        .log_sources()
        .iter()
        .map(|c| {
            let read_from = match c.read_from {
                ReadFrom::Beginning => ingest::file::ReadFrom::Beginning,
                ReadFrom::End => ingest::file::ReadFrom::End,
            };
            let input = match &c.kafka {
                _ if inputs == Inputs::Recorded => LogInput::Recorded,
                Some(k) => {
                    let mut config =
                        ingest::kafka::KafkaConfig::new(k.brokers.clone(), k.topics.clone());
                    config.group = k.group.clone();
                    config.instance = k.instance.clone();
                    config.assign = match k.assign {
                        remediate::runbook::KafkaAssign::Group => ingest::kafka::Assign::Group,
                        remediate::runbook::KafkaAssign::AllPartitions => {
                            ingest::kafka::Assign::AllPartitions
                        }
                    };
                    config.read_from = read_from;
                    LogInput::Kafka(config)
                }
                None => {
                    let mut tail = ingest::file::TailConfig::new(c.files.clone());
                    tail.read_from = read_from;
                    tail.multiline_start = c
                        .multiline_start
                        .as_deref()
                        .and_then(|p| regex::Regex::new(p).ok());
                    LogInput::Files(tail)
                }
            };
            LogSource {
                name: c.name.clone(),
                input,
                format: c.format.clone(),
                miner: logs::MinerConfig {
                    mask: c.mask.clone(),
                    max_templates: c.max_templates,
                    ..logs::MinerConfig::default()
                },
                late_after_ms: c.late_after.as_millis_i64(),
                labels: c
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        })
        .collect()
}
