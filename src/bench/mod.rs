//! The benchmarks: [`nab`] (NAB scores of a corpus), [`storm`] (an action
//! storm against the guardrails) and [`lab`] (time to recovery on the real
//! lab, heal against monit).

pub mod chaos;
pub mod churn;
pub mod lab;
pub mod nab;
pub mod storm;
