//! The benchmarks: [`nab`] (NAB scores of a corpus), [`storm`] (an action
//! storm against the guardrails), [`lab`] (time to recovery on the real
//! lab, heal against monit) and [`daemons`] (`heal agent` latency, `heal
//! supervise` recovery times).

pub mod chaos;
pub mod churn;
pub mod daemons;
pub mod lab;
pub mod nab;
pub mod storm;
