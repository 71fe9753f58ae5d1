//! `heal replay DATASET --runbooks DIR`: placeholder until the engine lands.
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    dataset: PathBuf,
}

pub fn run(_a: ReplayArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
