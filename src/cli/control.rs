//! `heal silence add|list|expire` and `heal approve ID`: talking to a
//! running `heal watch` over its API (`heal::api`).

use heal::api::{ApiCall, Approval, NewSilence};
use remediate::engine::Silence;
use stdx::Clock;

use super::UsageError;

/// Where the running heal is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Base URL of the running `heal watch` (its `--listen` address).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    api: String,
    /// Name of the environment variable holding the API's bearer token.
    #[arg(long, default_value = "HEAL_API_TOKEN")]
    token_env: String,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SilenceCmd {
    /// Mute every action on series matching all matchers, now or later (a
    /// maintenance window).
    Add {
        #[command(flatten)]
        api: ApiArgs,
        /// `name=value`, `name!=value`, `name=~regex` or `name!~regex`;
        /// repeat for more (all must match).
        #[arg(long = "matcher", required = true)]
        matchers: Vec<String>,
        /// How long (`30m`, `2h`).
        #[arg(long)]
        duration: String,
        /// Start (RFC 3339); now when left out.
        #[arg(long)]
        starts_at: Option<String>,
        /// Who sets it; `$USER` when left out.
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// List silences, active and scheduled.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        api: ApiArgs,
        /// Silence id (`sil-000001`).
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Incident id (`inc-000042`).
    incident: String,
    /// Who approves; `$USER` when left out.
    #[arg(long)]
    by: Option<String>,
}

fn user(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Sends one request to the API and returns its JSON answer. A change
/// (anything but GET) needs the token: an unset variable is named here
/// rather than left to a bare `401 Unauthorized`.
fn call(
    api: &ApiArgs,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<String> {
    let token = std::env::var(&api.token_env).ok().filter(|t| !t.is_empty());
    if token.is_none() && method != "GET" {
        return Err(UsageError(format!(
            "{var} is not set: changes through heal watch's API need its bearer token \
             (export {var}=the token heal watch was given with --api-token-env, or name \
             another variable with --token-env)",
            var = api.token_env
        ))
        .into());
    }
    let call = ApiCall {
        base: api.api.clone(),
        token,
        method,
        path: path.to_owned(),
        body,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(heal::api::call(call)).map_err(|e| {
        let text = e.to_string();
        if text.contains("401") {
            anyhow::Error::from(e).context(format!(
                "the token in {} was refused: is it the one heal watch was given?",
                api.token_env
            ))
        } else {
            e.into()
        }
    })?;
    Ok(answer)
}

/// Silences as a table: times in RFC 3339, whether each is active now.
fn silence_table(silences: &[Silence], now_ms: i64) -> String {
    use remediate::time::rfc3339;
    let mut rows = vec![[
        "ID".to_owned(),
        "STATE".to_owned(),
        "STARTS".to_owned(),
        "ENDS".to_owned(),
        "BY".to_owned(),
        "MATCHERS".to_owned(),
        "COMMENT".to_owned(),
    ]];
    for s in silences {
        let state = if s.ends_ms <= now_ms {
            "ended"
        } else if s.starts_ms > now_ms {
            "scheduled"
        } else {
            "active"
        };
        let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
        rows.push([
            s.id.clone(),
            state.to_owned(),
            rfc3339(s.starts_ms),
            rfc3339(s.ends_ms),
            s.created_by.clone(),
            matchers.join(", "),
            s.comment.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints silences (one or a list) as the API gave them (`--json`) or as a
/// table.
fn print_silences(api: &ApiArgs, answer: &str) -> anyhow::Result<()> {
    if api.json {
        println!("{answer}");
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_str(answer)?;
    let silences: Vec<Silence> = if value.is_array() {
        serde_json::from_value(value)?
    } else {
        vec![serde_json::from_value(value)?]
    };
    if silences.is_empty() {
        println!("no silences");
    } else {
        print!("{}", silence_table(&silences, stdx::SystemClock.now_ms()));
    }
    Ok(())
}

pub fn run_silence(cmd: SilenceCmd) -> anyhow::Result<()> {
    match cmd {
        SilenceCmd::Add {
            api,
            matchers,
            duration,
            starts_at,
            by,
            comment,
        } => {
            let body = NewSilence {
                matchers,
                starts_at,
                duration,
                created_by: user(by),
                comment,
            };
            // Checked here first: a typo is reported without a round trip.
            let now = stdx::SystemClock.now_ms();
            let (_, _, ends_ms) = heal::api::check_new_silence(&body, now).map_err(UsageError)?;
            if ends_ms <= now {
                eprintln!(
                    "warning: this silence ends at {}, before now: it will mute nothing (check --starts-at and --duration)",
                    remediate::time::rfc3339(ends_ms)
                );
            }
            let answer = call(
                &api,
                "POST",
                "/api/silences",
                Some(serde_json::to_value(&body)?),
            )?;
            print_silences(&api, &answer)
        }
        SilenceCmd::List { api } => {
            let answer = call(&api, "GET", "/api/silences", None)?;
            print_silences(&api, &answer)
        }
        SilenceCmd::Expire { api, id } => {
            let answer = call(&api, "DELETE", &format!("/api/silences/{id}"), None)?;
            print_silences(&api, &answer)
        }
    }
}

pub fn run_approve(args: ApproveArgs) -> anyhow::Result<()> {
    let body = serde_json::to_value(Approval { by: user(args.by) })?;
    let answer = call(
        &args.api,
        "POST",
        &format!("/api/incidents/{}/approve", args.incident),
        Some(body),
    )?;
    println!("{answer}");
    Ok(())
}
