//! `heal runbooks`: validate a runbook directory, print the JSON Schema.
//!
//! Wiring (main.rs): add `Runbooks { #[command(subcommand)] cmd: RunbooksCmd }`
//! to the top-level command enum and call [`run`]. A failed check returns a
//! [`CheckFailed`] error after printing every problem to stderr; downcast to it
//! to exit with 64 (bad configuration). Its Display is a one-line summary, so
//! printing the error with `{:#}` does not repeat the list.

use std::fmt;
use std::path::PathBuf;

use remediate::RunbookSet;

/// Work with runbook files.
#[derive(Debug, clap::Subcommand)]
pub enum RunbooksCmd {
    /// Load and validate every *.yaml / *.yml file of a directory together
    /// and report every problem at once, as `file:line:column: field: message`.
    Check {
        /// The runbook directory.
        dir: PathBuf,
    },
    /// Print the JSON Schema of a runbook file (for editors and CI).
    Schema,
}

/// A runbook check found problems (already printed, one per line, to stderr).
#[derive(Debug)]
pub struct CheckFailed {
    /// The directory checked.
    pub dir: PathBuf,
    /// How many problems were found.
    pub problems: usize,
}

impl fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.problems == 1 { "" } else { "s" };
        write!(
            f,
            "checking runbooks in {}: {} problem{s}",
            self.dir.display(),
            self.problems
        )
    }
}

impl std::error::Error for CheckFailed {}

/// Runs a `heal runbooks` subcommand.
///
/// # Errors
///
/// [`CheckFailed`] when `check` finds problems; an I/O error when stdout
/// cannot be written.
pub fn run(cmd: RunbooksCmd) -> anyhow::Result<()> {
    match cmd {
        RunbooksCmd::Check { dir } => match RunbookSet::load_dir(&dir) {
            Ok(set) => {
                println!("ok: {}", set.summary());
                Ok(())
            }
            Err(errors) => {
                for error in errors.errors() {
                    eprintln!("{error}");
                }
                Err(CheckFailed {
                    dir,
                    problems: errors.errors().len(),
                }
                .into())
            }
        },
        RunbooksCmd::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&remediate::json_schema())?
            );
            Ok(())
        }
    }
}
