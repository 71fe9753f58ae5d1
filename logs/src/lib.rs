//! Logs as an input of heal: lines into messages, messages into templates.
//!
//! Everything here is pure: no file, socket or clock. Sources (file tail,
//! Kafka) read the bytes and the time; this crate turns each line into a
//! [`Record`] (message, fields, event time when the line has one) and each
//! message into a template id with [`TemplateMiner`].
//!
//! ```
//! use logs::{LineFormat, FormatConfig, LoghubFormatConfig, MinerConfig, TemplateMiner};
//!
//! let format = LineFormat::new(&FormatConfig::LogFormat(LoghubFormatConfig::new(
//!     "<Date> <Time> <Level> <Component>: <Content>",
//! )))?;
//! let mut miner = TemplateMiner::new(MinerConfig::default())?;
//! let mut ids = Vec::new();
//! for line in [
//!     "2024-05-01 10:00:00 INFO db: connection to 10.0.0.7:5432 refused after 3 retries",
//!     "2024-05-01 10:00:02 INFO db: connection to 10.0.0.9:5432 refused after 5 retries",
//! ] {
//!     let record = format.parse(line)?;
//!     ids.push(miner.add(&record.message).id);
//! }
//! assert_eq!(ids[0], ids[1]);
//! assert_eq!(
//!     miner.template(ids[0]).unwrap().text,
//!     "connection to <*> refused after <*> retries"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - `format/`: line formats (Loghub `log_format`, JSON lines, logfmt, regex)
//!   and event time.
//! - `mask.rs`: variable masking rules, built-in and per source.
//! - `miner.rs`: the online template miner, its persistent state and ids.
//! - `score.rs`: GA, PA and FGA.
//! - `loghub.rs`: what `heal logs templates` and `heal bench loghub` call.

mod error;
mod format;
mod hash;
pub mod loghub;
mod mask;
mod miner;
mod score;

pub use error::{ConfigError, LineError, LineErrorAt, LoghubError, StateError};
pub use format::{
    FormatConfig, JsonFormat, JsonFormatConfig, LineFormat, LogfmtFormat, LogfmtFormatConfig,
    LoghubFormat, LoghubFormatConfig, Record, RegexFormat, RegexFormatConfig, TimeField,
    TimeParser,
};
pub use mask::{BuiltinRules, MaskConfig, MaskRule, Masker, DEFAULT_MAX_VARIABLE_RUN, VAR};
pub use miner::{
    Change, MinerConfig, MinerState, MinerStats, Outcome, TemplateId, TemplateMiner, TemplateState,
    TemplateView, DEFAULT_FAMILY_MAX_LINES_PER_VALUE, DEFAULT_FAMILY_MIN_VALUES,
    DEFAULT_MAX_TEMPLATES, MAX_REDIRECTS_PER_TEMPLATE, STATE_VERSION,
};
pub use score::{mean, normalise_eq, score, Scores};
