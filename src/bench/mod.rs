//! The benchmarks: [`nab`] (NAB scores of a corpus), [`storm`] (an action
//! storm against the guardrails), [`lab`] (time to recovery on the real
//! lab, heal against monit), [`loghub`] (the template miner on Loghub-2k
//! systems), [`docker`] (time to recovery of containers,
//! heal against Docker's restart policy and Swarm) and [`daemons`] (`heal agent` latency, `heal
//! supervise` recovery times).

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
pub mod storm;
