//! Errors of the remediate crate.

use std::fmt;
use std::path::PathBuf;

/// One problem in a runbook directory, with where it is.
///
/// Displays as `file:line:column: field: message`, the format compilers and
/// editors understand; parts that do not apply are left out (a file that
/// cannot be read has no line, a YAML syntax error has no field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookError {
    /// The file, as given (joined onto the directory given).
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column, when the problem has a place in the file.
    pub column: Option<usize>,
    /// JSON path of the offending field, like `rules[0].then[1].target`;
    /// empty when the problem is not about one field.
    pub field: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for RunbookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RunbookError {}

impl RunbookError {
    /// A file that could not be read at all (no line, no field): `what` says
    /// what the file was for, such as `runbook file`.
    pub fn unreadable(path: &std::path::Path, what: &str, e: &std::io::Error) -> Self {
        RunbookError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("reading {what}: {e}"),
        }
    }
}

/// Every problem found while loading a runbook directory, in file order and,
/// within a file, in line order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RunbookErrors(pub Vec<RunbookError>);

impl fmt::Display for RunbookErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl RunbookErrors {
    /// The problems.
    pub fn errors(&self) -> &[RunbookError] {
        &self.0
    }
}

/// Errors of the remediate crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runbook directory has problems; every one is listed.
    #[error("loading runbooks:\n{0}")]
    Runbooks(#[from] RunbookErrors),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_what_does_not_apply() {
        let e = |line, column, field: &str| RunbookError {
            file: "runbooks/a.yaml".into(),
            line,
            column,
            field: field.to_owned(),
            message: "boom".to_owned(),
        };
        assert_eq!(
            e(Some(3), Some(7), "rules[0].name").to_string(),
            "runbooks/a.yaml:3:7: rules[0].name: boom"
        );
        assert_eq!(
            e(Some(3), Some(7), "").to_string(),
            "runbooks/a.yaml:3:7: boom"
        );
        assert_eq!(e(None, None, "").to_string(), "runbooks/a.yaml: boom");
        let all = RunbookErrors(vec![e(Some(1), Some(1), "a"), e(Some(2), Some(1), "b")]);
        assert_eq!(
            all.to_string(),
            "runbooks/a.yaml:1:1: a: boom\nrunbooks/a.yaml:2:1: b: boom"
        );
    }
}
