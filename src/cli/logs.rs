//! `heal logs templates FILE --log-format FMT [-o OUT.csv]`: one row per input
//! line, in order, with the template the miner gave it.

use std::io::Write;
use std::path::PathBuf;

use logs::loghub;
use logs::{LoghubFormat, LoghubFormatConfig, MinerConfig};

use super::error::UsageError;

#[derive(Debug, clap::Subcommand)]
pub enum LogsCmd {
    /// Mine a log file into templates: writes `template_id,template`, one
    /// row per line of FILE, in order (the id a log signal's `template_id`
    /// label carries). Lines the header layout does not read are mined
    /// whole and counted on stderr.
    Templates(TemplatesArgs),
}

#[derive(Debug, clap::Args)]
pub struct TemplatesArgs {
    /// The log file.
    file: PathBuf,
    /// Header layout in Loghub's `log_format` syntax (`<Date> <Time>
    /// <Level> <Component>: <Content>`); `<Content>` is the message.
    #[arg(long, default_value = "<Content>")]
    log_format: String,
    /// Write the CSV here instead of stdout.
    #[arg(short, long, value_name = "OUT.csv")]
    output: Option<PathBuf>,
}

pub fn run(cmd: LogsCmd) -> anyhow::Result<()> {
    match cmd {
        LogsCmd::Templates(args) => templates(args),
    }
}

fn templates(args: TemplatesArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| UsageError(format!("{}: {e}", args.file.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let format = LoghubFormat::new(&LoghubFormatConfig::new(&args.log_format))
        .map_err(|e| UsageError(format!("--log-format: {e}")))?;
    let (messages, unread) = loghub::messages_or_lines(&text, &format);
    let mined = loghub::mine_messages(&messages, &MinerConfig::default())
        .map_err(|e| UsageError(e.to_string()))?;
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            loghub::write_templates_csv(std::io::BufWriter::new(file), &mined)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            loghub::write_templates_csv(&mut lock, &mined)?;
            lock.flush()?;
        }
    }
    eprintln!(
        "{}: {} lines, {} templates{}",
        args.file.display(),
        messages.len(),
        mined.templates,
        if unread > 0 {
            format!("; {unread} lines did not match the layout and were mined whole")
        } else {
            String::new()
        }
    );
    Ok(())
}
