//! Errors of the `logs` crate, one enum per failure domain.

use thiserror::Error;

/// A line format, a mask rule or a miner configuration that cannot be built.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A Loghub `log_format` that has no `<Content>` (or other message) field or
    /// does not compile.
    #[error("log format {format:?}: {reason}")]
    LogFormat {
        /// The format as written.
        format: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A regular expression (line format or mask rule) that does not compile.
    #[error("{what} {pattern:?}: {reason}")]
    Regex {
        /// Which regex: "line regex", "mask rule `name`", "keep rule".
        what: String,
        /// The pattern as written.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A line regex without the named group that holds the message.
    #[error("line regex {pattern:?}: no named group `{group}` for the message")]
    NoMessageGroup {
        /// The pattern as written.
        pattern: String,
        /// The group name that was expected.
        group: String,
    },
    /// A field path (JSON lines) that is empty or has an empty segment.
    #[error("field path {path:?}: {reason}")]
    FieldPath {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A time format that is neither a strftime pattern nor a known keyword.
    #[error("time format {format:?}: {reason}")]
    TimeFormat {
        /// The format as written.
        format: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A miner setting out of its range.
    #[error("miner setting `{field}` = {value}: {reason}")]
    Miner {
        /// The setting's name.
        field: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        reason: String,
    },
}

/// One line that its source's format cannot read. The caller knows the file
/// (or topic) and the line number; [`LineError::at`] attaches them.
#[derive(Debug, Error, PartialEq)]
pub enum LineError {
    /// The line does not match the header layout or the line regex.
    #[error("does not match the {kind} {format:?}")]
    NoMatch {
        /// "log format" or "line regex".
        kind: &'static str,
        /// The format or pattern.
        format: String,
    },
    /// The line is not one JSON object.
    #[error("not a JSON object: {reason}")]
    Json {
        /// The parser's message.
        reason: String,
    },
    /// A logfmt line that cannot be split into pairs.
    #[error("logfmt at byte {at}: {reason}")]
    Logfmt {
        /// Byte offset of the problem in the line.
        at: usize,
        /// What is wrong.
        reason: String,
    },
    /// A field that is missing or has the wrong type.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The field's name or path.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The event-time field does not parse with its format.
    #[error("time field `{field}` = {value:?} does not match the time format {format:?}")]
    Time {
        /// The field's name or path.
        field: String,
        /// The value found (truncated to 80 bytes).
        value: String,
        /// The format.
        format: String,
    },
}

impl LineError {
    /// This error at `line` (1-based) of `source` (a file path or a topic).
    pub fn at(self, file: impl Into<String>, line: u64) -> LineErrorAt {
        LineErrorAt {
            file: file.into(),
            line,
            error: self,
        }
    }
}

/// A [`LineError`] with the file (or topic) and the line number it came from.
#[derive(Debug, Error, PartialEq)]
#[error("{file}:{line}: {error}")]
pub struct LineErrorAt {
    /// File path or topic.
    pub file: String,
    /// 1-based line number (or offset, for a topic).
    pub line: u64,
    /// What is wrong with the line.
    pub error: LineError,
}

/// A persisted miner state that cannot be restored.
#[derive(Debug, Error, PartialEq)]
pub enum StateError {
    /// The state was written by an incompatible version of the miner.
    #[error("template state version {found}, this heal reads version {expected}")]
    Version {
        /// Version in the state.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The state was mined with a different masking or matching configuration:
    /// its templates would not match what the current configuration produces.
    #[error("template state was mined with configuration {found:016x}, the source's configuration is {expected:016x}; delete the state to mine afresh")]
    Config {
        /// Fingerprint in the state.
        found: u64,
        /// Fingerprint of the current configuration.
        expected: u64,
    },
    /// A template that is malformed or duplicated.
    #[error("template {id:016x}: {reason}")]
    Template {
        /// The template's id.
        id: u64,
        /// What is wrong.
        reason: String,
    },
}

/// A Loghub ground-truth or prediction file that cannot be read.
#[derive(Debug, Error, PartialEq)]
pub enum LoghubError {
    /// A CSV that cannot be parsed or lacks a column.
    #[error("{file}: {reason}")]
    Csv {
        /// Which file (as the caller named it).
        file: String,
        /// What is wrong, with the row when there is one.
        reason: String,
    },
    /// Predictions and ground truth of different lengths.
    #[error("{predicted} predicted lines for {truth} ground-truth lines")]
    Length {
        /// Number of predicted lines.
        predicted: usize,
        /// Number of ground-truth lines.
        truth: usize,
    },
    /// Nothing to score.
    #[error("no lines to score")]
    Empty,
    /// A log line that its header layout does not read.
    #[error(transparent)]
    Line(#[from] LineErrorAt),
}
