//! The benchmarks: [`nab`] (NAB scores of a corpus), [`storm`] (an action
//! storm against the guardrails), [`lab`] (time to recovery on the real
//! lab, heal against monit), [`loghub`] (the template miner on Loghub-2k
//! systems), [`docker`] (time to recovery of containers,
//! heal against Docker's restart policy and Swarm) and [`daemons`] (`heal agent` latency, `heal
//! supervise` recovery times), among others; [`percentile_ms`] is what
//! their latency columns share.

pub mod chaos;
pub mod churn;
pub mod daemons;
pub mod docker;
pub mod journal;
pub mod lab;
pub mod loghub;
pub mod nab;
pub mod rca;
pub mod remote_write;
pub mod scale;
pub mod storm;

/// The `p` quantile (0 to 1, nearest rank) of `sorted` durations, in
/// milliseconds; 0 for none.
pub(crate) fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}
