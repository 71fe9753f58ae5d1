//! Which anomalies belong to one incident: those of services that overlap
//! in time and, when a topology is known, are connected in it.
//!
//! Alertmanager groups alerts by equal labels within a time window
//! (`group_by`, `group_wait`); here the grouping is causal: two anomalies
//! join when their time spans overlap (within `gap_secs`) and their services
//! are the same service or call one another. Joining is transitive, so
//! web -> api -> db anomalies form one group through api even though web
//! does not call db, while an unrelated service that happens to misbehave
//! at the same moment stays in a group of its own. Without a topology (or
//! for a service it does not know) time alone decides: nothing known is not
//! evidence of independence.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Topology;

/// One anomaly of one service: the span of an excursion (from the
/// detector's `Excursion::onset_ms` to its latest anomalous sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anomaly<'a> {
    /// Service the anomalous series belongs to.
    pub service: &'a str,
    /// When the excursion fired (ms).
    pub onset_ms: i64,
    /// Its latest anomalous sample (ms), at least `onset_ms`.
    pub last_ms: i64,
}

/// Settings of incident grouping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Two anomalies whose spans are at most this many seconds apart
    /// overlap (one evaluation interval or two absorbs scrape jitter).
    pub gap_secs: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig { gap_secs: 120 }
    }
}

/// One incident group: indices into the anomalies given, its services and
/// its span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentGroup {
    /// Indices of the member anomalies, ascending.
    pub members: Vec<usize>,
    /// The services of the members, sorted, each once.
    pub services: Vec<String>,
    /// Earliest onset among the members: the incident's onset, which
    /// [`rank`](super::rank) measures from.
    pub onset_ms: i64,
    /// Latest anomalous sample among the members.
    pub last_ms: i64,
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Groups `anomalies` into incidents (see the module docs). Groups come
/// in the order of their onsets. Cost: a sweep over the anomalies sorted by
/// onset, comparing each with those whose span it can reach.
pub fn group(
    anomalies: &[Anomaly<'_>],
    topology: Option<&Topology>,
    cfg: &GroupConfig,
) -> Vec<IncidentGroup> {
    let gap = i64::try_from(cfg.gap_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let n = anomalies.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (anomalies[i].onset_ms, i));
    let topology = topology.filter(|t| !t.is_empty());
    // Each anomaly's service resolved once: the sweep compares indices.
    let at: Vec<Option<usize>> = anomalies
        .iter()
        .map(|a| topology.and_then(|t| t.index_of(a.service)))
        .collect();
    let connected = |i: usize, j: usize| match topology {
        None => true,
        Some(t) => match (at[i], at[j]) {
            (Some(x), Some(y)) => x == y || t.adjacent_at(x, y),
            // A service the topology does not know joins by time alone.
            _ => true,
        },
    };
    let mut parent: Vec<usize> = (0..n).collect();
    for (k, &i) in order.iter().enumerate() {
        let a = &anomalies[i];
        let reach = a.last_ms.max(a.onset_ms).saturating_add(gap);
        for &j in order[k + 1..].iter() {
            let b = &anomalies[j];
            if b.onset_ms > reach {
                break;
            }
            if connected(i, j) {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out: Vec<IncidentGroup> = groups
        .into_values()
        .map(|members| {
            let mut services: Vec<String> = members
                .iter()
                .map(|&i| anomalies[i].service.to_string())
                .collect();
            services.sort();
            services.dedup();
            IncidentGroup {
                onset_ms: members
                    .iter()
                    .map(|&i| anomalies[i].onset_ms)
                    .min()
                    .unwrap_or(0),
                last_ms: members
                    .iter()
                    .map(|&i| anomalies[i].last_ms.max(anomalies[i].onset_ms))
                    .max()
                    .unwrap_or(0),
                members,
                services,
            }
        })
        .collect();
    out.sort_by_key(|g| (g.onset_ms, g.members[0]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(service: &str, on: i64, last: i64) -> Anomaly<'_> {
        Anomaly {
            service,
            onset_ms: on * 60_000,
            last_ms: last * 60_000,
        }
    }

    #[test]
    fn connected_services_that_overlap_form_one_group() {
        let t = Topology::from_edges([("web", "api"), ("api", "db"), ("batch", "queue")])
            .expect("valid");
        let anomalies = [
            a("db", 10, 14),
            a("web", 11, 15),
            a("api", 11, 15),
            // Overlaps in time but is not connected to the others.
            a("batch", 12, 13),
            // Connected but much later: a new incident.
            a("db", 40, 41),
        ];
        let g = group(&anomalies, Some(&t), &GroupConfig::default());
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].members, vec![0, 1, 2]);
        assert_eq!(g[0].services, vec!["api", "db", "web"]);
        assert_eq!(g[0].onset_ms, 10 * 60_000);
        assert_eq!(g[0].last_ms, 15 * 60_000);
        assert_eq!(g[1].services, vec!["batch"]);
        assert_eq!(g[2].members, vec![4]);
    }

    #[test]
    fn web_and_db_join_only_through_api() {
        let t = Topology::from_edges([("web", "api"), ("api", "db")]).expect("valid");
        let g = group(
            &[a("web", 10, 12), a("db", 10, 12)],
            Some(&t),
            &GroupConfig::default(),
        );
        assert_eq!(g.len(), 2, "not adjacent, no anomalous api between them");
    }

    #[test]
    fn without_a_topology_time_decides() {
        let g = group(
            &[a("x", 0, 5), a("y", 6, 8), a("z", 30, 31)],
            None,
            &GroupConfig::default(),
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members, vec![0, 1]);
        // A service the topology does not know joins by time alone.
        let t = Topology::from_edges([("web", "api")]).expect("valid");
        let g = group(
            &[a("web", 0, 5), a("mystery", 1, 2)],
            Some(&t),
            &GroupConfig::default(),
        );
        assert_eq!(g.len(), 1);
    }
}
