//! `heal silence add|list|expire` and `heal approve ID`: talking to a
//! running `heal watch` over its API (`heal::api`).

use heal::api::{ApiCall, Approval, NewSilence};
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

/// Sends one request to the API and prints the JSON answer.
fn call(
    api: &ApiArgs,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let call = ApiCall {
        base: api.api.clone(),
        token: std::env::var(&api.token_env).ok(),
        method,
        path: path.to_owned(),
        body,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("{}", runtime.block_on(heal::api::call(call))?);
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
            heal::api::check_new_silence(&body, stdx::SystemClock.now_ms()).map_err(UsageError)?;
            call(
                &api,
                "POST",
                "/api/silences",
                Some(serde_json::to_value(&body)?),
            )
        }
        SilenceCmd::List { api } => call(&api, "GET", "/api/silences", None),
        SilenceCmd::Expire { api, id } => {
            call(&api, "DELETE", &format!("/api/silences/{id}"), None)
        }
    }
}

pub fn run_approve(args: ApproveArgs) -> anyhow::Result<()> {
    let body = serde_json::to_value(Approval { by: user(args.by) })?;
    call(
        &args.api,
        "POST",
        &format!("/api/incidents/{}/approve", args.incident),
        Some(body),
    )
}
