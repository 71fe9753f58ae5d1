//! What travels through the broker between the roles, and how it is keyed.
//!
//! - **samples** (ingest → detect): one message per raw sample, JSON
//!   `{"labels":{...},"ts_ms":...,"value":...}` (a value that is not finite,
//!   a stale marker's NaN included, is written as Prometheus writes it in
//!   JSON: `"NaN"`, `"+Inf"`, `"-Inf"`). Keyed by [`sample_key`].
//! - **scores** (detect → remediate and readers): one message per sample
//!   read, [`ScoreRecord`] as JSON, keyed by its series' group
//!   ([`GroupKeys`]), carrying the sample's (partition, offset): the
//!   de-duplication key (see [`super`]).
//! - **changelog** (detect → detect): the detectors' state, one message per
//!   series per checkpoint, CBOR [`Checkpoint`] keyed by the series, in the
//!   partition of the samples it came from.
//!
//! **The keying rule.** A sample's key is its signal and the value of the
//! signal's service label (`signal \x1f service`), nothing finer: the
//! broker's partitioner sends one key to one partition, so the samples of a
//! series stay in order (the detectors and the sample policy need the
//! order), and the replicas of one service land together, where a peer
//! comparison (which instance differs from its siblings at one timestamp)
//! can see them all. The price: one very large service is one partition's
//! work, however many workers there are.
//!
//! **Scores are keyed by group**, coarser still: the services that call
//! each other (the connected components of the runbooks' declared
//! `diagnosis.services` graph; a service outside it is its own group). A
//! remediate member then sees every anomaly of a group in one partition, in
//! order, which is what correlating them into one diagnosis needs; and a
//! group key is owned by one member at a time. Edges discovered at run time
//! (`diagnosis.edges`) are not known here: only declared ones group.

use std::collections::BTreeMap;

use ingest::Labels;
use serde::{Deserialize, Serialize};

use crate::pipeline::SeriesScorer;

/// The unit separator between a key's parts (never in a metric name).
const SEP: char = '\u{1f}';

/// The key of a sample of `labels` watched by `signal`: the signal and the
/// value of its service label (empty when the series has none).
pub fn sample_key(signal: &remediate::runbook::Signal, labels: &Labels) -> String {
    let service = labels.get(&signal.service_label).unwrap_or("");
    format!("{}{SEP}{service}", signal.name)
}

/// The group of each service (see the module's keying rule): the
/// smallest service name of its connected component in the runbooks'
/// declared call graph.
#[derive(Debug, Clone, Default)]
pub struct GroupKeys {
    group_of: BTreeMap<String, String>,
}

impl GroupKeys {
    /// The groups of `runbooks`' declared call graph.
    pub fn new(runbooks: &remediate::RunbookSet) -> Self {
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        fn root(parent: &mut BTreeMap<String, String>, s: &str) -> String {
            let mut r = s.to_owned();
            while let Some(p) = parent.get(&r).filter(|p| **p != r) {
                r = p.clone();
            }
            r
        }
        if let Some(d) = runbooks.diagnosis() {
            for (service, deps) in &d.services {
                parent
                    .entry(service.clone())
                    .or_insert_with(|| service.clone());
                for callee in &deps.depends_on {
                    parent
                        .entry(callee.clone())
                        .or_insert_with(|| callee.clone());
                    let (a, b) = (root(&mut parent, service), root(&mut parent, callee));
                    // The smaller name becomes the root: the same groups,
                    // named the same, on every member.
                    let (keep, join) = if a <= b { (a, b) } else { (b, a) };
                    parent.insert(join, keep);
                }
            }
        }
        let services: Vec<String> = parent.keys().cloned().collect();
        let group_of = services
            .into_iter()
            .map(|s| {
                let r = root(&mut parent, &s);
                (s, r)
            })
            .collect();
        GroupKeys { group_of }
    }

    /// The group key of a series of `signal` with `labels`: its service's
    /// group (its service when the graph does not name it; empty without
    /// a service label).
    pub fn key(&self, signal: &remediate::runbook::Signal, labels: &Labels) -> String {
        let service = labels.get(&signal.service_label).unwrap_or("");
        self.group_of
            .get(service)
            .cloned()
            .unwrap_or_else(|| service.to_owned())
    }
}

/// One raw sample on the samples topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRecord {
    /// The series' labels, `__name__` (the signal) included.
    pub labels: BTreeMap<String, String>,
    /// Event time, ms since the epoch.
    pub ts_ms: i64,
    /// The value.
    #[serde(with = "prom_float")]
    pub value: f64,
}

impl SampleRecord {
    /// The sample of `labels` at `ts_ms`.
    pub fn new(labels: &Labels, ts_ms: i64, value: f64) -> Self {
        SampleRecord {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ts_ms,
            value,
        }
    }

    /// Its labels as heal's type.
    pub fn labels(&self) -> Labels {
        Labels::from_pairs(self.labels.iter())
    }
}

/// One scored (or dropped) sample on the scores topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRecord {
    /// The sample's place in the samples topic: partition and offset.
    /// Unique per sample produced: the de-duplication key.
    pub partition: i32,
    pub offset: i64,
    /// The series (its labels as Prometheus writes them).
    pub series: String,
    pub ts_ms: i64,
    #[serde(with = "prom_float")]
    pub value: f64,
    /// The detector's score (0 when dropped).
    pub score: f64,
    /// Inside an anomalous excursion.
    pub anomalous: bool,
    /// The sample that opened the excursion.
    pub first: bool,
    /// In the grace period after a gap (scored, not to be acted on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_grace: bool,
    /// Why the sample policy dropped it, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
    /// The excursion it belongs to, when anomalous (what the remediate
    /// role's engine needs: onset, direction, peak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excursion: Option<detect::Excursion>,
    /// The worker that scored it.
    pub member: String,
}

/// A series' detector state at a point of its partition: everything up to
/// and including input `offset` is in `scorer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub offset: i64,
    pub scorer: SeriesScorer,
}

/// A [`Checkpoint`] written from borrowed state (the same encoding): a
/// checkpoint encodes every moved series without cloning it first.
#[derive(Serialize)]
struct CheckpointRef<'a> {
    offset: i64,
    scorer: &'a SeriesScorer,
}

impl Checkpoint {
    /// CBOR: exact floats, infinities and NaN included (JSON has none).
    pub fn encode(&self) -> Vec<u8> {
        Checkpoint::encode_ref(self.offset, &self.scorer)
    }

    /// [`Checkpoint::encode`] of `scorer` at `offset`, without a copy.
    pub fn encode_ref(offset: i64, scorer: &SeriesScorer) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        ciborium::into_writer(&CheckpointRef { offset, scorer }, &mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a changelog message.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        ciborium::from_reader(bytes).map_err(|e| e.to_string())
    }
}

/// The changelog key of the restore barrier (see `detect::restore`): no
/// series' key starts with NUL.
pub const BARRIER_KEY: &[u8] = b"\0barrier";

/// Floats as Prometheus writes them in JSON: finite values as numbers,
/// the others as `"NaN"`, `"+Inf"`, `"-Inf"`.
mod prom_float {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num<'a> {
        F(f64),
        S(&'a str),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Num::deserialize(d)? {
            Num::F(v) => Ok(v),
            Num::S(s) => s.parse::<f64>().map_err(|_| {
                D::Error::custom(format!(
                    "`{s}` is not a number (NaN, +Inf, -Inf or a float)"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(yaml_service_label: &str) -> remediate::runbook::Signal {
        let mut s: remediate::runbook::Signal = serde_json::from_value(serde_json::json!({
            "name": "latency", "query": "x"
        }))
        .unwrap();
        s.service_label = yaml_service_label.to_owned();
        s
    }

    #[test]
    fn services_that_call_each_other_share_a_group_key() {
        let text = "signals:
  - {name: latency, query: x}
diagnosis:
  services:
    web: {depends_on: [api]}
    api: {depends_on: [db]}
    shop: {depends_on: [payments]}
";
        let runbooks =
            remediate::RunbookSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap();
        let keys = GroupKeys::new(&runbooks);
        let sig = signal("service");
        let of =
            |service: &str| keys.key(&sig, &Labels::metric("latency").with("service", service));
        // web -> api -> db: one group, named by its smallest name.
        assert_eq!(of("web"), "api");
        assert_eq!(of("db"), "api");
        assert_eq!(of("api"), "api");
        assert_eq!(of("shop"), "payments");
        assert_eq!(of("payments"), "payments");
        // Outside the graph: its own group.
        assert_eq!(of("batch"), "batch");
        assert_eq!(keys.key(&sig, &Labels::metric("latency")), "");
        // Without a graph, every service is its own group.
        let plain = remediate::RunbookSet::from_sources(&[(
            "r.yaml".into(),
            "signals:\n  - {name: latency, query: x}\n".into(),
        )])
        .unwrap();
        let keys = GroupKeys::new(&plain);
        assert_eq!(
            keys.key(&sig, &Labels::metric("latency").with("service", "web")),
            "web"
        );
    }

    #[test]
    fn replicas_of_a_service_share_a_key_other_services_do_not() {
        let sig = signal("service");
        let a = Labels::metric("latency")
            .with("service", "db")
            .with("instance", "a");
        let b = Labels::metric("latency")
            .with("service", "db")
            .with("instance", "b");
        let c = Labels::metric("latency")
            .with("service", "web")
            .with("instance", "a");
        assert_eq!(sample_key(&sig, &a), sample_key(&sig, &b));
        assert_ne!(sample_key(&sig, &a), sample_key(&sig, &c));
        // The signal's own service label decides.
        let by_job = signal("job");
        assert_eq!(sample_key(&by_job, &a), sample_key(&by_job, &c));
    }

    #[test]
    fn samples_round_trip_with_stale_markers_and_infinities() {
        let labels = Labels::metric("latency").with("service", "<b>db</b>");
        for v in [1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            let r = SampleRecord::new(&labels, 7, v);
            let json = serde_json::to_string(&r).unwrap();
            let back: SampleRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back.value.to_bits(), v.to_bits(), "{json}");
            assert_eq!(back.labels(), labels);
        }
        // Every float exactly, 17 significant digits included (serde_json's
        // default parser was off by an ulp on a third of these).
        for i in 0..10_000u64 {
            let v = 100.0 + (i as f64 * 0.618_033_988_749).sin() * 37.0 + i as f64 * 1e-9;
            let json = serde_json::to_string(&SampleRecord::new(&labels, 7, v)).unwrap();
            let back: SampleRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back.value.to_bits(), v.to_bits(), "{json}");
        }
        let bad = r#"{"labels":{},"ts_ms":1,"value":"many"}"#;
        let err = serde_json::from_str::<SampleRecord>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`many` is not a number"), "{err}");
        let unknown = r#"{"labels":{},"ts_ms":1,"value":1,"extra":2}"#;
        assert!(serde_json::from_str::<SampleRecord>(unknown).is_err());
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;
    use crate::scale::ingest::Synthetic;

    /// A checkpoint taken after any sample, read back, scores the rest of
    /// the series bit for bit as the scorer that never stopped: across an
    /// excursion's opening and its end.
    #[test]
    fn a_checkpoint_anywhere_restores_the_very_scores() {
        let synth = Synthetic {
            signal: "queue_depth".into(),
            series: 18,
            replicas: 3,
            steps: 250,
            start_ms: ingest::SYNTH_START_MS,
            step_ms: 10_000,
            seed: 7,
        };
        let signal: remediate::runbook::Signal =
            serde_json::from_value(serde_json::json!({"name": "queue_depth", "query": "q"}))
                .unwrap();
        let i = 17;
        let run = |from: Option<(usize, &SeriesScorer)>| {
            let (start, mut s) = match from {
                Some((t, s)) => (t, s.clone()),
                None => (0, SeriesScorer::for_signal(&signal)),
            };
            let mut out = Vec::new();
            for t in start..synth.steps {
                let ts = synth.start_ms + t as i64 * synth.step_ms;
                let sample = s.admit(ts, synth.value(i, t)).unwrap();
                out.push(s.score(sample, None).scored.score.to_bits());
            }
            out
        };
        let through = run(None);
        assert!(
            through.iter().any(|&s| f64::from_bits(s) >= 0.5),
            "series 17's fault scores high"
        );
        let mut s = SeriesScorer::for_signal(&signal);
        for cut in 0..synth.steps {
            let restored = Checkpoint::decode(
                &Checkpoint {
                    offset: 0,
                    scorer: s.clone(),
                }
                .encode(),
            )
            .unwrap()
            .scorer;
            assert_eq!(
                run(Some((cut, &restored))),
                through[cut..],
                "restored after {cut} samples"
            );
            let ts = synth.start_ms + cut as i64 * synth.step_ms;
            let sample = s.admit(ts, synth.value(i, cut)).unwrap();
            s.score(sample, None);
        }
    }
}
