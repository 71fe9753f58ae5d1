//! `heal score INPUT.csv [-o OUT.csv] [--detector NAME | --params FILE]`:
//! NAB-style scoring of one file. Prints its throughput on stderr.

use std::io::Write;
use std::path::PathBuf;

use heal::bench::nab::DetectorName;

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// A CSV file with header `timestamp,value` (NAB layout).
    input: PathBuf,
    /// Where to write `timestamp,value,anomaly_score`; standard output when omitted.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Which detector configuration to run, by the names of `heal bench
    /// nab --detector` (`adaptive`, the default, `sensitive`,
    /// `changepoint`, `seasonal`, `ensemble`, `novelty`, `nab`), at its own
    /// threshold.
    #[arg(long, conflicts_with = "params")]
    detector: Option<DetectorName>,
    /// A detector parameter file (the `detector:` shape of a runbook
    /// signal, as `heal tune -o` writes it): any configuration and
    /// threshold, such as one `heal bench nab` reports.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let cfg = match (&args.params, args.detector) {
        (Some(path), _) => {
            remediate::runbook::load_detector_params(path).map_err(heal::Error::Runbooks)?
        }
        (None, Some(name)) => name.config().ok_or_else(|| {
            heal::Error::Usage(
                "--detector all: heal score runs one configuration; name one".to_owned(),
            )
        })?,
        (None, None) => detect::DetectorConfig::default(),
    };
    let started = std::time::Instant::now();
    let (out, drops) = heal::score::score_csv(&args.input, &cfg)?;
    match &args.output {
        Some(path) => stdx::write_atomically(path, out.as_bytes())?,
        None => std::io::stdout().lock().write_all(out.as_bytes())?,
    }
    // The throughput the README quotes: read, scored and written, end to
    // end (on stderr, so the output stays the CSV alone).
    let took = started.elapsed().as_secs_f64();
    let rows = out
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        .saturating_sub(1);
    eprintln!(
        "{}: {rows} rows read, scored and written in {took:.2} s ({:.2} M rows/s)",
        args.input.display(),
        rows as f64 / took.max(1e-9) / 1e6
    );
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
