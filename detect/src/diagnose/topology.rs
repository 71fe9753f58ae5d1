//! Which service calls which: the call graph that diagnosis reasons along.
//!
//! An edge `caller -> callee` means that a fault in the callee can show in
//! the caller (its latency and errors). Where it comes from is the caller's
//! business (a runbook's `services: depends_on`, a service mesh's request
//! counters); the graph here only holds names.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::DiagnoseError;

/// A call graph over service names. Cheap to build (a few thousand edges);
/// built once per topology change, not per evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
    callees: Vec<BTreeSet<usize>>,
    callers: Vec<BTreeSet<usize>>,
    edges: usize,
}

impl Topology {
    /// An empty topology (nothing known: diagnosis then uses time and
    /// magnitude alone).
    pub fn new() -> Self {
        Topology::default()
    }

    /// A topology from `(caller, callee)` pairs. A self-call is ignored, a
    /// repeated edge kept once; an empty name is an error.
    pub fn from_edges<'a, I>(edges: I) -> Result<Self, DiagnoseError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut t = Topology::new();
        for (a, b) in edges {
            t.add_edge(a, b)?;
        }
        Ok(t)
    }

    /// Adds the edge `caller -> callee` (see [`Topology::from_edges`]).
    pub fn add_edge(&mut self, caller: &str, callee: &str) -> Result<(), DiagnoseError> {
        if caller.is_empty() || callee.is_empty() {
            return Err(DiagnoseError::EmptyServiceName {
                caller: caller.to_string(),
                callee: callee.to_string(),
            });
        }
        let a = self.intern(caller);
        let b = self.intern(callee);
        if a != b && self.callees[a].insert(b) {
            self.callers[b].insert(a);
            self.edges += 1;
        }
        Ok(())
    }

    fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.callees.push(BTreeSet::new());
        self.callers.push(BTreeSet::new());
        i
    }

    /// Whether the topology knows `service`.
    pub fn contains(&self, service: &str) -> bool {
        self.index.contains_key(service)
    }

    /// Whether no edge is known.
    pub fn is_empty(&self) -> bool {
        self.edges == 0
    }

    /// The services `service` calls directly (empty when unknown).
    pub fn callees(&self, service: &str) -> impl Iterator<Item = &str> + '_ {
        self.neighbours(service, &self.callees)
    }

    /// The services that call `service` directly (empty when unknown).
    pub fn callers(&self, service: &str) -> impl Iterator<Item = &str> + '_ {
        self.neighbours(service, &self.callers)
    }

    fn neighbours<'a>(
        &'a self,
        service: &str,
        adj: &'a [BTreeSet<usize>],
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.index
            .get(service)
            .into_iter()
            .flat_map(move |&i| adj[i].iter().map(|&j| self.names[j].as_str()))
    }

    /// The index of `service`, for repeated adjacency tests.
    pub(crate) fn index_of(&self, service: &str) -> Option<usize> {
        self.index.get(service).copied()
    }

    /// [`Topology::adjacent`] by index.
    pub(crate) fn adjacent_at(&self, i: usize, j: usize) -> bool {
        self.callees[i].contains(&j) || self.callees[j].contains(&i)
    }

    /// Whether `a` calls `b` or `b` calls `a`.
    pub fn adjacent(&self, a: &str, b: &str) -> bool {
        match (self.index.get(a), self.index.get(b)) {
            (Some(&i), Some(&j)) => self.callees[i].contains(&j) || self.callees[j].contains(&i),
            _ => false,
        }
    }

    /// Every edge as `(caller, callee)`, sorted.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .callees
            .iter()
            .enumerate()
            .flat_map(|(i, cs)| {
                cs.iter()
                    .map(move |&j| (self.names[i].as_str(), self.names[j].as_str()))
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The call path from an entry point (a service nobody calls) down to
    /// `service`, shortest first, preferring at each step the caller with the
    /// highest `weight` (the most anomalous); `[service]` when it has no
    /// callers or is unknown. A cycle ends the walk where it would repeat.
    pub fn path_to(&self, service: &str, weight: impl Fn(&str) -> f64) -> Vec<String> {
        self.path_with(service, &self.entry_distances(), weight)
    }

    /// Each service's distance (in calls) from the nearest entry point,
    /// `usize::MAX` when no entry point reaches it (a cycle nobody enters).
    pub(crate) fn entry_distances(&self) -> Vec<usize> {
        let n = self.names.len();
        let mut dist = vec![usize::MAX; n];
        let mut queue = VecDeque::new();
        for (i, d) in dist.iter_mut().enumerate() {
            if self.callers[i].is_empty() {
                *d = 0;
                queue.push_back(i);
            }
        }
        while let Some(i) = queue.pop_front() {
            for &j in &self.callees[i] {
                if dist[j] == usize::MAX {
                    dist[j] = dist[i] + 1;
                    queue.push_back(j);
                }
            }
        }
        dist
    }

    /// [`Topology::path_to`] with the distances computed once for many
    /// services.
    pub(crate) fn path_with(
        &self,
        service: &str,
        dist: &[usize],
        weight: impl Fn(&str) -> f64,
    ) -> Vec<String> {
        let Some(&start) = self.index.get(service) else {
            return vec![service.to_string()];
        };
        let mut path = vec![start];
        let mut on_path = vec![false; self.names.len()];
        on_path[start] = true;
        let mut at = start;
        while dist[at] != 0 && dist[at] != usize::MAX {
            let next = self.callers[at]
                .iter()
                .copied()
                .filter(|&c| dist[c] < dist[at] && !on_path[c])
                .max_by(|&a, &b| {
                    weight(&self.names[a])
                        .total_cmp(&weight(&self.names[b]))
                        .then(b.cmp(&a))
                });
            match next {
                Some(c) => {
                    on_path[c] = true;
                    path.push(c);
                    at = c;
                }
                None => break,
            }
        }
        path.reverse();
        path.into_iter().map(|i| self.names[i].clone()).collect()
    }

    /// Callees before their callers (a reverse topological order); services
    /// on a cycle come in the order a depth-first walk meets them.
    pub(crate) fn callees_first(&self) -> Vec<&str> {
        let n = self.names.len();
        let mut state = vec![0u8; n];
        let mut out = Vec::with_capacity(n);
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            // Iterative post-order DFS along callees.
            let mut stack: Vec<(usize, Vec<usize>)> =
                vec![(root, self.callees[root].iter().copied().collect())];
            state[root] = 1;
            while let Some((node, rest)) = stack.last_mut() {
                if let Some(next) = rest.pop() {
                    if state[next] == 0 {
                        state[next] = 1;
                        let kids = self.callees[next].iter().copied().collect();
                        stack.push((next, kids));
                    }
                } else {
                    state[*node] = 2;
                    out.push(*node);
                    stack.pop();
                }
            }
        }
        out.into_iter().map(|i| self.names[i].as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Topology {
        Topology::from_edges([
            ("web", "api"),
            ("api", "db"),
            ("api", "cache"),
            ("web", "cache"),
            ("api", "api"),
        ])
        .expect("valid")
    }

    #[test]
    fn edges_and_neighbours() {
        let t = shop();
        assert_eq!(
            t.edges(),
            vec![
                ("api", "cache"),
                ("api", "db"),
                ("web", "api"),
                ("web", "cache")
            ]
        );
        assert_eq!(t.callers("cache").collect::<Vec<_>>(), vec!["web", "api"]);
        assert!(t.adjacent("db", "api"));
        assert!(!t.adjacent("db", "web"));
        assert_eq!(t.callees("nope").count(), 0);
    }

    #[test]
    fn empty_names_are_rejected() {
        let e = Topology::from_edges([("web", "")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology edge with an empty service name: \"web\" -> \"\""
        );
    }

    #[test]
    fn path_from_the_entry_point() {
        let t = shop();
        assert_eq!(t.path_to("db", |_| 0.0), vec!["web", "api", "db"]);
        assert_eq!(t.path_to("web", |_| 0.0), vec!["web"]);
        assert_eq!(t.path_to("unknown", |_| 0.0), vec!["unknown"]);
        // cache has two callers: the shorter path wins.
        assert_eq!(t.path_to("cache", |_| 0.0), vec!["web", "cache"]);
    }

    #[test]
    fn callees_come_first_even_with_a_cycle() {
        let t = shop();
        let order = t.callees_first();
        let pos = |s: &str| order.iter().position(|&x| x == s).expect("present");
        assert!(pos("db") < pos("api") && pos("api") < pos("web"));
        assert!(pos("cache") < pos("api"));
        let cyc = Topology::from_edges([("a", "b"), ("b", "a"), ("b", "c")]).expect("valid");
        assert_eq!(cyc.callees_first().len(), 3);
    }
}
