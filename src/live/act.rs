//! The act stage: performs allowed actions one at a time, through the one
//! executor entry (`Executors::perform`).
//!
//! Just before each, it asks the decider to re-check the step with the
//! engine (a step that waited in line behind slow ones must not act on a
//! symptom that is gone). When the engine's suppression chain now mutes
//! it, the decider records that as the step's one decision
//! (`symptom_resolved`) and nothing runs: the store's executions journal
//! records only what ran.

use std::sync::Arc;
use std::time::Duration;

use executors::Executors;
use remediate::action::{ActionResult, RenderedAction};
use stdx::Clock;
use store::{ActionKey, StoreError, StoreWriter};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{Command, LOG_TARGET};
use crate::telemetry::Telemetry;

/// How long the act stage waits for the decider's answer to a re-check.
/// The decider may itself be waiting for this stage (action queue full):
/// then the step was decided moments ago and goes ahead, rather than
/// deadlock.
const RECHECK_WAIT: Duration = Duration::from_secs(1);

/// What the decider sends the act stage: an allowed step.
#[derive(Debug)]
pub struct ActionJob {
    /// Its incident.
    pub incident: String,
    /// 1-based step.
    pub step: usize,
    /// The action, every template filled in.
    pub action: RenderedAction,
    /// The step's timeout.
    pub timeout: Duration,
}

/// Runs until the decider drops its sender.
pub(crate) async fn act(
    mut rx: mpsc::Receiver<ActionJob>,
    telemetry: Arc<Telemetry>,
    commands: mpsc::Sender<Command>,
    store: Option<StoreWriter>,
    executors: Executors,
    clock: Arc<dyn Clock>,
    stop: tokio_util::sync::CancellationToken,
) {
    while let Some(job) = rx.recv().await {
        if stop.is_cancelled() {
            // Shutting down: the action in flight was finished; the ones
            // still in line are not begun (the store reports them as
            // abandoned at the next start).
            tracing::warn!(target: LOG_TARGET, stage = "remediate", incident = %job.incident, step = job.step, "shutting down: action not begun");
            continue;
        }
        if !recheck(&job, &commands).await {
            // The decider recorded why (and counted it).
            continue;
        }
        // With an incident store, each action is begun in the store
        // (committed) before its executor runs and finished after; a key
        // the store already has is not run again. A store that fails
        // otherwise (disk full) does not stop remediation: the action runs
        // and the failure is logged. Attempt 1: `act` does not retry.
        let key = ActionKey::new(job.incident.clone(), job.step, 1);
        let kind = job.action.kind_name();
        if let Some(store) = &store {
            match store
                .begin_action(key.clone(), job.action.summary(), clock.now_ms())
                .await
            {
                Ok(()) => {}
                Err(e @ StoreError::DuplicateAction { .. }) => {
                    tracing::error!(stage = "remediate", error = %e, "action not run");
                    telemetry.add(
                        "heal_actions_total",
                        &[("kind", kind), ("outcome", "duplicate")],
                        1.0,
                    );
                    continue;
                }
                Err(e) => {
                    tracing::error!(stage = "remediate", error = %e, "incident store: action begin not recorded")
                }
            }
        }
        let result = perform(&job, &telemetry, &executors).await;
        if let Some(store) = &store {
            // Begun, so finished too, whatever happened (else the next
            // start would call it interrupted).
            if let Err(e) = store.finish_action(key, result, clock.now_ms()).await {
                tracing::error!(stage = "remediate", error = %e, "incident store: action result not recorded");
            }
        }
    }
}

/// Asks the decider whether `job` may still run. `false` only when the
/// engine muted it and the decider recorded that: if the decider does not
/// answer within [`RECHECK_WAIT`] (or its queue is full), the step goes
/// ahead, and the answer channel is closed first so that a late answer is
/// never recorded (the decider records a suppression only once its answer
/// was delivered).
pub(crate) async fn recheck(job: &ActionJob, commands: &mpsc::Sender<Command>) -> bool {
    let (tx, mut reply) = oneshot::channel();
    let sent = commands.try_send(Command::Recheck {
        incident: job.incident.clone(),
        step: job.step,
        reply: tx,
    });
    if sent.is_err() {
        return true;
    }
    match tokio::time::timeout(RECHECK_WAIT, &mut reply).await {
        Ok(answer) => answer.unwrap_or(true),
        Err(_) => {
            reply.close();
            // An answer that made it in before the close stands.
            reply.try_recv().unwrap_or(true)
        }
    }
}

/// Performs one job with its executor; counts and logs the outcome.
async fn perform(job: &ActionJob, telemetry: &Telemetry, executors: &Executors) -> ActionResult {
    let span = tracing::info_span!("action", incident = %job.incident, step = job.step);
    let kind = job.action.kind_name();
    async {
        let result = executors.perform(&job.action, job.timeout, false).await;
        let outcome = if result.ok { "ok" } else { "failed" };
        telemetry.add(
            "heal_actions_total",
            &[("kind", kind), ("outcome", outcome)],
            1.0,
        );
        if result.ok {
            tracing::warn!(target: LOG_TARGET, stage = "remediate", kind, outcome, summary = %result.summary, duration_ms = result.duration.as_millis() as u64, "action performed");
        } else {
            // Why, in the log line itself: the output's last line usually
            // says it (`control API at 127.0.0.1:19400 unreachable`).
            let reason = failure_reason(&result);
            tracing::warn!(target: LOG_TARGET, stage = "remediate", kind, outcome, summary = %result.summary, %reason, duration_ms = result.duration.as_millis() as u64, "action failed: {reason}");
        }
        result
    }
    .instrument(span)
    .await
}

/// Why a failed action failed, in one line: the last non-empty line of its
/// output (capped), else its summary.
pub(crate) fn failure_reason(result: &ActionResult) -> String {
    let line = result
        .output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(&result.summary);
    let mut line = line.to_owned();
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    if line == result.summary {
        line
    } else {
        format!("{}: {line}", result.summary)
    }
}

#[cfg(test)]
mod tests {
    //! The re-check's timing under paused tokio time: what happens between
    //! a decision and its execution.

    use super::*;

    fn job() -> ActionJob {
        ActionJob {
            incident: "inc-000001".into(),
            step: 1,
            action: RenderedAction::Restart {
                target: "supervisor/web".into(),
            },
            timeout: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_the_engine_now_mutes_is_not_performed() {
        let (tx, mut rx) = mpsc::channel(4);
        // The decider's stand-in: the symptom is gone.
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let Command::Recheck { reply, .. } = cmd {
                    let _ = reply.send(false);
                }
            }
        });
        let started = tokio::time::Instant::now();
        assert!(!recheck(&job(), &tx).await);
        // Answered at once: no waiting for the re-check's deadline.
        assert!(started.elapsed() < RECHECK_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_decider_does_not_deadlock_the_act_stage_and_a_late_answer_is_refused() {
        // Nobody reads the commands: the decider is itself waiting for this
        // stage. After the one-second deadline the step goes ahead (it was
        // decided moments ago).
        let (tx, mut rx) = mpsc::channel(4);
        let started = tokio::time::Instant::now();
        assert!(recheck(&job(), &tx).await);
        let waited = started.elapsed();
        assert!(
            waited >= RECHECK_WAIT && waited < 2 * RECHECK_WAIT,
            "{waited:?}"
        );
        // The decider gets to the command later: its answer cannot be
        // delivered, so it records nothing.
        let Some(Command::Recheck { reply, .. }) = rx.recv().await else {
            panic!("no re-check sent");
        };
        assert!(reply.send(false).is_err());
        // A full command queue (try_send fails) goes ahead at once.
        let (tx, _rx) = mpsc::channel(1);
        tx.try_send(Command::ListApprovals {
            reply: oneshot::channel().0,
        })
        .unwrap();
        let started = tokio::time::Instant::now();
        assert!(recheck(&job(), &tx).await);
        assert!(started.elapsed() < RECHECK_WAIT);
    }
}
