//! `heal score INPUT.csv [-o OUT.csv]`: NAB-style scoring of one file.

use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// A CSV file with header `timestamp,value` (NAB layout).
    input: PathBuf,
    /// Where to write `timestamp,value,anomaly_score`; standard output when omitted.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let (out, drops) = heal::score::score_csv(&args.input)?;
    match &args.output {
        Some(path) => stdx::write_atomically(path, out.as_bytes())?,
        None => std::io::stdout().lock().write_all(out.as_bytes())?,
    }
    if drops.total() > 0 {
        eprintln!(
            "{}: {} rows not scored ({})",
            args.input.display(),
            drops.total(),
            heal::score::describe_drops(&drops)
        );
    }
    Ok(())
}
