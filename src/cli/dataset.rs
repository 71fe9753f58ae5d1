#[derive(Debug, clap::Subcommand)]
pub enum DatasetCmd {
    Info,
}
pub fn run(_c: DatasetCmd) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
