//! `heal dataset import|info|synth`: create and inspect dataset files (Parquet plus an optional
//! `<stem>.truth.json` ground-truth sidecar; the format is documented in `ingest::Dataset`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use ingest::{Dataset, Labels, NabTruth, METRIC_NAME_LABEL};

use super::UsageError;

/// The layout of a CSV file to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CsvFormat {
    /// NAB: `timestamp,value`, one series per file.
    Nab,
    /// Long form: `timestamp`, `value`, and one column per label (`__name__` is the metric name).
    Long,
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetCmd {
    /// Import a CSV file as a dataset.
    Import {
        /// The CSV file.
        input: PathBuf,
        /// The dataset file to write (Parquet); ground truth goes to `<stem>.truth.json` beside it.
        #[arg(short = 'o')]
        output: PathBuf,
        /// The CSV layout.
        #[arg(long, value_enum, default_value_t = CsvFormat::Nab)]
        format: CsvFormat,
        /// Metric name of the series (nab only); defaults to the file stem.
        #[arg(long)]
        name: Option<String>,
        /// A label `NAME=VALUE` added to every series; repeatable.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
        /// NAB's `labels/combined_windows.json`, to import the file's anomaly windows as truth
        /// (nab only).
        #[arg(long)]
        nab_windows: Option<PathBuf>,
        /// The file's key in the windows file, e.g. `realKnownCause/nyc_taxi.csv`. By default
        /// `<parent dir>/<file name>`, or else the one key for a file of that name.
        #[arg(long, requires = "nab_windows")]
        nab_key: Option<String>,
    },
    /// Print a summary of a dataset: per series, samples, time range, step, gaps, NaNs, windows.
    Info {
        /// The dataset file (Parquet).
        dataset: PathBuf,
    },
    /// Read a dataset and write it again, with the file and content hashes heal checks on every read
    /// (for a file from another tool, which loads unchecked with a warning, or from an older heal).
    Rewrite {
        /// The dataset file to read (Parquet, with its truth sidecar if any).
        input: PathBuf,
        /// The dataset file to write (may be the input itself: written atomically).
        #[arg(short = 'o')]
        output: PathBuf,
    },
    /// Write the synthetic scenario (4 services x 4 signals, 7 days, 4 labelled faults).
    Synth {
        /// Seed of the generator; the same seed gives the same dataset.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The dataset file to write (Parquet).
        #[arg(short = 'o')]
        output: PathBuf,
    },
}

/// Runs one `dataset` subcommand, printing what it did.
pub fn run(cmd: DatasetCmd) -> anyhow::Result<()> {
    match cmd {
        DatasetCmd::Import {
            input,
            output,
            format,
            name,
            labels,
            nab_windows,
            nab_key,
        } => {
            let extra = parse_labels(&labels)?;
            let mut dataset = match format {
                CsvFormat::Nab => {
                    let labels = match name {
                        Some(n) => extra.with(METRIC_NAME_LABEL, n),
                        None => extra,
                    };
                    let truth = nab_windows.map(|windows_file| NabTruth {
                        windows_file,
                        key: nab_key,
                    });
                    ingest::import_nab_csv(&input, labels, truth.as_ref())
                        .map_err(|e| UsageError(e.to_string()))?
                }
                CsvFormat::Long => {
                    if name.is_some() || nab_windows.is_some() {
                        return Err(UsageError(
                            "--name and --nab-windows apply to --format nab only; in long form the metric name is the __name__ column".into(),
                        )
                        .into());
                    }
                    let mut d =
                        ingest::import_long_csv(&input).map_err(|e| UsageError(e.to_string()))?;
                    for s in &mut d.series {
                        for (k, v) in extra.iter() {
                            s.labels.set(k, v);
                        }
                    }
                    d
                }
            };
            dataset.sort();
            write(&dataset, &output)
        }
        DatasetCmd::Info { dataset } => {
            let d = Dataset::read(&dataset).map_err(|e| UsageError(e.to_string()))?;
            println!("{}", d.info());
            Ok(())
        }
        DatasetCmd::Rewrite { input, output } => {
            let d = Dataset::read_to_rewrite(&input).map_err(|e| UsageError(e.to_string()))?;
            write(&d, &output)
        }
        DatasetCmd::Synth { seed, output } => write(&ingest::synth(seed), &output),
    }
}

/// Parses repeated `--label NAME=VALUE` arguments.
fn parse_labels(args: &[String]) -> anyhow::Result<Labels> {
    let mut labels = Labels::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => labels.set(k, v),
            _ => return Err(UsageError(format!("--label {arg:?}: expected NAME=VALUE")).into()),
        }
    }
    Ok(labels)
}

fn write(dataset: &Dataset, output: &Path) -> anyhow::Result<()> {
    dataset
        .write(output)
        .with_context(|| format!("writing dataset {}", output.display()))?;
    let truth = if dataset.truth.is_empty() {
        String::new()
    } else {
        format!(" (+ truth: {} windows)", dataset.truth.len())
    };
    println!(
        "wrote {} samples in {} series to {}{truth}",
        dataset.num_samples(),
        dataset.series.len(),
        output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_args() {
        let l = parse_labels(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(l.to_string(), r#"{a="1",b="x=y"}"#);
        assert_eq!(
            parse_labels(&["=1".into()]).unwrap_err().to_string(),
            r#"--label "=1": expected NAME=VALUE"#
        );
        assert_eq!(
            parse_labels(&["a".into()]).unwrap_err().to_string(),
            r#"--label "a": expected NAME=VALUE"#
        );
    }

    #[test]
    fn synth_then_info() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("synth.parquet");
        run(DatasetCmd::Synth {
            seed: 3,
            output: out.clone(),
        })
        .unwrap();
        assert!(dir.path().join("synth.truth.json").exists());
        run(DatasetCmd::Info { dataset: out }).unwrap();
    }

    #[test]
    fn import_long_with_extra_labels() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("x.csv");
        std::fs::write(
            &input,
            "timestamp,value,__name__\n2026-01-05T00:00:00Z,1,m\n",
        )
        .unwrap();
        let output = dir.path().join("x.parquet");
        run(DatasetCmd::Import {
            input,
            output: output.clone(),
            format: CsvFormat::Long,
            name: None,
            labels: vec!["env=prod".into()],
            nab_windows: None,
            nab_key: None,
        })
        .unwrap();
        let d = Dataset::read(&output).unwrap();
        assert_eq!(d.series[0].labels.to_string(), r#"m{env="prod"}"#);
    }
}
