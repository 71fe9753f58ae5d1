//! The act stage: performs allowed actions through the one executor entry
//! (`Executors::perform_observed`), each in a task of its own, so that no
//! incident's step waits on another incident's slow executor (a webhook
//! retrying a failing DNS lookup, a long `exec`).
//!
//! How many run at once is bounded by the guardrails' `max_concurrent`
//! (the engine already refuses a step beyond it; the act stage holds to it
//! too, so a burst cannot start more). The steps of one incident still run
//! one after the other, in the order they were decided: a step planned
//! while the previous one is still running waits for it.
//!
//! Just before each, it asks the decider to re-check the step with the
//! engine (a step that waited in line behind slow ones must not act on a
//! symptom that is gone). When the engine's suppression chain now mutes
//! it, the decider records that as the step's one decision
//! (`symptom_resolved`) and nothing runs: the store's executions journal
//! records only what ran.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use executors::Executors;
use remediate::action::{ActionResult, RenderedAction};
use stdx::Clock;
use store::{ActionKey, ChildProcess, StoreError, StoreWriter};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
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

/// What every job's task shares.
#[derive(Debug, Clone)]
pub(crate) struct Actors {
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) store: Option<StoreWriter>,
    pub(crate) executors: Executors,
    pub(crate) clock: Arc<dyn Clock>,
    /// Cancelled when heal shuts down: a job not begun by then is not
    /// begun at all (the store reports it as abandoned at the next start);
    /// the ones running finish.
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

/// Runs until the decider drops its sender, then waits for the jobs still
/// running (each has a timeout). At most `max_in_flight` jobs run at once;
/// receiving waits for a free place (back-pressure up to the decider).
pub(crate) async fn act(mut rx: mpsc::Receiver<ActionJob>, actors: Actors, max_in_flight: usize) {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // Per incident with a job queued or running: the end of its last job
    // (the sender is dropped when that job is done). A new job of the
    // incident waits for it, so its steps keep their order.
    let mut last_of: HashMap<String, oneshot::Receiver<()>> = HashMap::new();
    let mut running = JoinSet::new();
    while let Some(job) = rx.recv().await {
        while let Some(done) = running.try_join_next() {
            report_panic(done);
        }
        last_of.retain(|_, done| matches!(done.try_recv(), Err(TryRecvError::Empty)));
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let previous = last_of.insert(job.incident.clone(), done_rx);
        let actors = actors.clone();
        running.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            run_job(job, &actors).await;
            drop(done_tx);
            drop(permit);
        });
    }
    while let Some(done) = running.join_next().await {
        report_panic(done);
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(stage = "remediate", error = %e, "an action task failed");
    }
}

/// One job: the re-check, the begin in the store, the executor (its child
/// process recorded as soon as it is spawned), the finish.
async fn run_job(job: ActionJob, actors: &Actors) {
    let Actors {
        telemetry,
        commands,
        store,
        executors,
        clock,
        stop,
    } = actors;
    if stop.is_cancelled() {
        tracing::warn!(target: LOG_TARGET, stage = "remediate", incident = %job.incident, step = job.step, "shutting down: action not begun");
        return;
    }
    if !recheck(&job, commands).await {
        // The decider recorded why (and counted it).
        return;
    }
    // With an incident store, each action is begun in the store
    // (committed) before its executor runs and finished after; a key the
    // store already has is not run again. A store that fails otherwise
    // (disk full) does not stop remediation: the action runs and the
    // failure is logged. Attempt 1: `act` does not retry.
    let key = ActionKey::new(job.incident.clone(), job.step, 1);
    let kind = job.action.kind_name();
    if let Some(store) = store {
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
                report_finished(&job, commands);
                return;
            }
            Err(e) => {
                tracing::error!(stage = "remediate", error = %e, "incident store: action begin not recorded")
            }
        }
    }
    let (spawned_tx, spawned_rx) = oneshot::channel::<executors::exec::Spawned>();
    let record_process = async {
        // An `exec` child's pid, committed while it runs: a restart after
        // heal is killed finds it and settles it.
        if let (Ok(spawned), Some(store)) = (spawned_rx.await, store) {
            let process = ChildProcess {
                pid: spawned.pid,
                start_ticks: spawned.start_ticks,
            };
            if let Err(e) = store.process(key.clone(), process).await {
                tracing::error!(stage = "remediate", error = %e, "incident store: action process not recorded");
            }
        }
    };
    let (result, ()) = tokio::join!(
        perform(&job, telemetry, executors, Some(spawned_tx)),
        record_process
    );
    if let Some(store) = store {
        // Begun, so finished too, whatever happened (else the next
        // start would call it interrupted).
        if let Err(e) = store.finish_action(key, result, clock.now_ms()).await {
            tracing::error!(stage = "remediate", error = %e, "incident store: action result not recorded");
        }
    }
    report_finished(&job, commands);
}

/// Tells the decider the step's action is over, so that its verification
/// wait starts now. Never blocks the job: a decider busy handing out jobs
/// gets it once it reads its commands again (a lost report only makes the
/// engine wait until `timeout + verify.wait`).
fn report_finished(job: &ActionJob, commands: &mpsc::Sender<Command>) {
    let cmd = Command::ActionFinished {
        incident: job.incident.clone(),
        step: job.step,
    };
    if let Err(mpsc::error::TrySendError::Full(cmd)) = commands.try_send(cmd) {
        let commands = commands.clone();
        tokio::spawn(async move {
            let _ = commands.send(cmd).await;
        });
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
async fn perform(
    job: &ActionJob,
    telemetry: &Telemetry,
    executors: &Executors,
    spawned: Option<oneshot::Sender<executors::exec::Spawned>>,
) -> ActionResult {
    let span = tracing::info_span!("action", incident = %job.incident, step = job.step);
    let kind = job.action.kind_name();
    async {
        let result = executors
            .perform_observed(&job.action, job.timeout, false, spawned)
            .await;
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

    /// A webhook target on 127.0.0.1 that answers `/fast` at once and holds
    /// `/slow` until `release` fires; it reports each request's path as it
    /// arrives and as it is answered.
    async fn target(
        release: oneshot::Receiver<()>,
    ) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log, seen) = mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Mutex::new(Some(release)));
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let log = log.clone();
                let release = release.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let _ = log.send(format!("got {path}"));
                    if path == "/slow" {
                        if let Some(rx) = release.lock().await.take() {
                            let _ = rx.await;
                        }
                    }
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = log.send(format!("answered {path}"));
                });
            }
        });
        (addr, seen)
    }

    fn webhook(incident: &str, step: usize, addr: std::net::SocketAddr, path: &str) -> ActionJob {
        ActionJob {
            incident: incident.into(),
            step,
            action: RenderedAction::Webhook {
                url: format!("http://{addr}{path}"),
                method: remediate::runbook::HttpMethod::Post,
                headers: Default::default(),
                body: None,
            },
            timeout: Duration::from_secs(60),
        }
    }

    /// The act stage with a decider stand-in that lets every step run.
    fn actors() -> Actors {
        let (commands, mut rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let Command::Recheck { reply, .. } = cmd {
                    let _ = reply.send(true);
                }
            }
        });
        let clock: Arc<dyn Clock> = Arc::new(stdx::ManualClock::at(0));
        Actors {
            telemetry: Arc::new(Telemetry::default()),
            commands,
            store: None,
            executors: Executors::new(Arc::new(|_: &str| None), clock.clone()),
            clock,
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_executor_does_not_hold_back_another_incidents_step() {
        let (release, held) = oneshot::channel();
        let (addr, mut seen) = target(held).await;
        let (tx, rx) = mpsc::channel(4);
        let acting = tokio::spawn(act(rx, actors(), 10));
        tx.send(webhook("inc-000001", 1, addr, "/slow"))
            .await
            .unwrap();
        assert_eq!(seen.recv().await.unwrap(), "got /slow");
        tx.send(webhook("inc-000002", 1, addr, "/fast"))
            .await
            .unwrap();
        // Event order, no clock: the second incident's webhook is answered
        // while the first one's is still held. (Before, the act stage ran
        // one job at a time and this waited for ever: the hang guard below
        // only turns that into a failure.)
        let next = tokio::time::timeout(Duration::from_secs(30), async {
            (seen.recv().await.unwrap(), seen.recv().await.unwrap())
        })
        .await
        .expect("the second incident's step waited on the first one's slow webhook");
        assert_eq!(next, ("got /fast".to_owned(), "answered /fast".to_owned()));
        release.send(()).unwrap();
        assert_eq!(seen.recv().await.unwrap(), "answered /slow");
        drop(tx);
        acting.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_incidents_steps_still_run_in_order() {
        let (release, held) = oneshot::channel();
        let (addr, mut seen) = target(held).await;
        let (tx, rx) = mpsc::channel(4);
        let acting = tokio::spawn(act(rx, actors(), 10));
        tx.send(webhook("inc-000001", 1, addr, "/slow"))
            .await
            .unwrap();
        assert_eq!(seen.recv().await.unwrap(), "got /slow");
        tx.send(webhook("inc-000001", 2, addr, "/fast"))
            .await
            .unwrap();
        // A third job of another incident, answered: by then step 2 of the
        // first incident had every chance to start if it were not waiting.
        tx.send(webhook("inc-000002", 1, addr, "/other"))
            .await
            .unwrap();
        assert_eq!(seen.recv().await.unwrap(), "got /other");
        assert_eq!(seen.recv().await.unwrap(), "answered /other");
        release.send(()).unwrap();
        assert_eq!(seen.recv().await.unwrap(), "answered /slow");
        assert_eq!(seen.recv().await.unwrap(), "got /fast");
        drop(tx);
        acting.await.unwrap();
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
