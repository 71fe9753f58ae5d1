#[derive(Debug, clap::Subcommand)]
pub enum RunbooksCmd {
    Check,
}
pub fn run(_c: RunbooksCmd) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
