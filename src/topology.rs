//! The call graph of a `diagnosis:` block: the runbooks' `services:` and
//! the edges its PromQL queries find (`edges:`), for `heal watch` (queried
//! every `refresh`, sent to the decider as `SourceEvent::Topology`) and
//! `heal topology`.

use std::collections::BTreeSet;

use ingest::{Labels, PrometheusClient, SourceEvent, Timer};
use remediate::is_safe_label_value;
use remediate::runbook::{DiagnosisConfig, EdgeQuery};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A call-graph edge: (caller, callee).
pub type Edge = (String, String);

/// The edges of `services:` (`web: {depends_on: [api]}` is web -> api).
pub fn static_edges(cfg: &DiagnosisConfig) -> Vec<Edge> {
    let mut out: Vec<Edge> = cfg
        .services
        .iter()
        .flat_map(|(caller, deps)| {
            deps.depends_on
                .iter()
                .map(move |callee| (caller.clone(), callee.clone()))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The edges of one query's answer: each series with both labels is an
/// edge. A series without them, a loop, or a value heal never puts in a
/// target (a hostile label) is skipped and counted.
pub fn edges_from(results: &[(Labels, f64)], q: &EdgeQuery) -> (Vec<Edge>, usize) {
    let mut edges = BTreeSet::new();
    let mut skipped = 0;
    for (labels, _) in results {
        match (labels.get(&q.caller), labels.get(&q.callee)) {
            (Some(a), Some(b))
                if a != b && !a.is_empty() && is_safe_label_value(a) && is_safe_label_value(b) =>
            {
                edges.insert((a.to_owned(), b.to_owned()));
            }
            _ => skipped += 1,
        }
    }
    (edges.into_iter().collect(), skipped)
}

/// Runs every edge query at `at_ms`: the edges found (sorted, each once),
/// or the first query that failed with its error.
///
/// # Errors
///
/// A query Prometheus could not answer.
pub async fn query_edges(
    client: &PrometheusClient,
    queries: &[EdgeQuery],
    at_ms: i64,
) -> Result<Vec<Edge>, (usize, ingest::PromError)> {
    let mut all = BTreeSet::new();
    for (i, q) in queries.iter().enumerate() {
        let results = client.query(&q.query, at_ms).await.map_err(|e| (i, e))?;
        let (edges, skipped) = edges_from(&results, q);
        if skipped > 0 {
            tracing::warn!(stage = "diagnose", query = i + 1, skipped, caller = %q.caller, callee = %q.callee,
                "edge query: series without both labels (or with a value heal never uses) skipped");
        }
        all.extend(edges);
    }
    Ok(all.into_iter().collect())
}

/// Queries the edges now and every `refresh_ms` until `stop`, sending each
/// answer that came; a failed refresh keeps the last edges (nothing is
/// sent) and is tried again at the next one.
pub async fn run_edges<C: Timer>(
    client: PrometheusClient,
    queries: Vec<EdgeQuery>,
    refresh_ms: i64,
    tx: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
    clock: C,
) {
    let refresh_ms = refresh_ms.max(1);
    let mut next = clock.now_ms();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(next) => {}
        }
        match query_edges(&client, &queries, clock.now_ms()).await {
            Ok(edges) => {
                tracing::info!(
                    stage = "diagnose",
                    edges = edges.len(),
                    "call graph refreshed from Prometheus"
                );
                if tx.send(SourceEvent::Topology(edges)).await.is_err() {
                    return;
                }
            }
            Err((i, e)) => tracing::warn!(stage = "diagnose", query = i + 1, error = %e,
                "call graph not refreshed: the last edges are kept"),
        }
        next += refresh_ms;
        let now = clock.now_ms();
        if next <= now {
            next = now + refresh_ms;
        }
    }
}

/// `heal topology`'s text: the runbooks' edges, then each query's (when
/// asked), then the services.
pub fn describe(cfg: &DiagnosisConfig, discovered: Option<&[Edge]>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let fixed = static_edges(cfg);
    let _ = writeln!(
        out,
        "call graph from the runbooks' services: {} edges",
        fixed.len()
    );
    for (a, b) in &fixed {
        let _ = writeln!(
            out,
            "  {} -> {}",
            stdx::text::terminal(a),
            stdx::text::terminal(b)
        );
    }
    let mut all: BTreeSet<&Edge> = fixed.iter().collect();
    match discovered {
        Some(edges) => {
            let _ = writeln!(
                out,
                "from the edge queries: {} edges ({} not in the runbooks)",
                edges.len(),
                edges.iter().filter(|e| !fixed.contains(e)).count()
            );
            for (a, b) in edges {
                let _ = writeln!(
                    out,
                    "  {} -> {}",
                    stdx::text::terminal(a),
                    stdx::text::terminal(b)
                );
            }
            all.extend(edges.iter());
        }
        None if !cfg.edges.is_empty() => {
            let _ = writeln!(
                out,
                "{} edge queries (give --prometheus URL to run them)",
                cfg.edges.len()
            );
        }
        None => {}
    }
    let services: BTreeSet<&str> = all
        .iter()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    let _ = writeln!(
        out,
        "services: {}",
        services
            .iter()
            .map(|s| stdx::text::terminal(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_come_from_both_labels_and_hostile_values_are_skipped() {
        let q = EdgeQuery {
            query: "x".into(),
            caller: "src".into(),
            callee: "dst".into(),
        };
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        let results = vec![
            (l(&[("src", "web"), ("dst", "api")]), 1.0),
            (l(&[("src", "web"), ("dst", "api"), ("code", "500")]), 1.0),
            (l(&[("src", "api"), ("dst", "db")]), 1.0),
            (l(&[("src", "api")]), 1.0),
            (l(&[("src", "db"), ("dst", "db")]), 1.0),
            (l(&[("src", "x; rm -rf /"), ("dst", "db")]), 1.0),
        ];
        let (edges, skipped) = edges_from(&results, &q);
        assert_eq!(
            edges,
            [("api".into(), "db".into()), ("web".into(), "api".into())]
        );
        assert_eq!(skipped, 3);
    }
}
