//! The `exec` executor: runs a program with an argv, never through a shell.
//!
//! Why no shell: a shell would re-parse the rendered arguments, so a label
//! value such as `x; rm -rf /` would become two commands. With an argv the
//! program receives each argument as one opaque string, whatever it holds;
//! label values are additionally checked against a strict pattern before
//! they are substituted (see `template`).
//!
//! The child runs in a process group of its own (its pid is the group id),
//! so that everything it starts can be stopped together: on timeout, and
//! when heal was killed while it ran (the child outlives heal; the next
//! start finds its pid in the incident store and [`settle`]s it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::oneshot;

use remediate::action::ActionResult;

/// Most output kept from one execution, per stream.
const MAX_OUTPUT: usize = 4096;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no
    /// slash.
    pub argv: Vec<String>,
    /// Environment variables passed to the program; nothing else of heal's
    /// environment is (the allowlist is the caller's: secrets stay out
    /// unless asked for by name).
    pub env: BTreeMap<String, String>,
    /// Killed after this long.
    pub timeout: Duration,
    /// Record what would run, run nothing.
    pub dry_run: bool,
}

/// A child process as started: the leader of its own process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// Its pid, also its process group id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field
    /// 22), when readable: tells it apart from a later process that reused
    /// the pid.
    pub start_ticks: Option<u64>,
}

/// Runs `req`. A program that cannot be started is not retryable; one that
/// timed out is (it was killed; a second try may be faster); a non-zero
/// exit is not (the program said no).
pub async fn run(req: &ExecRequest) -> ActionResult {
    run_observed(req, None).await
}

/// [`run`], telling `spawned` the child's pid right after the spawn (so the
/// caller can record it while the child runs).
pub async fn run_observed(
    req: &ExecRequest,
    spawned: Option<oneshot::Sender<Spawned>>,
) -> ActionResult {
    let started = Instant::now();
    let Some((program, args)) = req.argv.split_first() else {
        return ActionResult {
            ok: false,
            retryable: false,
            summary: "empty argv".into(),
            output: String::new(),
            duration: started.elapsed(),
        };
    };
    if req.dry_run {
        return ActionResult {
            ok: true,
            retryable: false,
            summary: format!("dry run: would run {:?}", req.argv),
            output: String::new(),
            duration: started.elapsed(),
        };
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&req.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own process group: heal's terminal signals do not reach it,
        // and the group is what a timeout or a restart kills.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ActionResult {
                ok: false,
                retryable: false,
                summary: format!("starting {program}: {e}"),
                output: String::new(),
                duration: started.elapsed(),
            }
        }
    };
    let pid = child.id();
    if let (Some(pid), Some(tx)) = (pid, spawned) {
        let _ = tx.send(Spawned {
            pid,
            start_ticks: start_ticks(pid),
        });
    }
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let _ = (a, b);
        let status = child.wait().await;
        (status, out, err)
    };
    match tokio::time::timeout(req.timeout, collect).await {
        Ok((status, out, err)) => {
            let output = render_output(&out, &err);
            match status {
                Ok(s) => ActionResult {
                    ok: s.success(),
                    retryable: false,
                    summary: match s.code() {
                        Some(c) => format!("exit status {c}"),
                        None => "killed by a signal".into(),
                    },
                    output,
                    duration: started.elapsed(),
                },
                Err(e) => ActionResult {
                    ok: false,
                    retryable: true,
                    summary: format!("waiting for {program}: {e}"),
                    output,
                    duration: started.elapsed(),
                },
            }
        }
        // The future owning the child is dropped here; `kill_on_drop` kills
        // (and reaps) the leader, and the group goes with it.
        Err(_) => {
            if let Some(group) = pid.and_then(|p| Pid::from_raw(p as i32)) {
                let _ = kill_process_group(group, Signal::KILL);
            }
            ActionResult {
                ok: false,
                retryable: true,
                summary: format!("timed out after {:?}", req.timeout),
                output: String::new(),
                duration: started.elapsed(),
            }
        }
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`
/// field 22), `None` where `/proc` cannot say (not Linux, gone).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields after its last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field 22 is its 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How a restart settled an interrupted `exec` action's child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Its process group was still alive and got SIGKILL.
    Killed,
    /// No process of its group was left: it finished (how is unknown) or
    /// was stopped by someone else.
    Gone,
}

impl Settlement {
    /// What the store records, lowercase.
    pub fn describe(self, pid: u32) -> String {
        match self {
            Settlement::Killed => format!(
                "process group {pid} was still running at restart: killed (SIGKILL); its outcome is unknown"
            ),
            Settlement::Gone => format!(
                "process group {pid} had already ended at restart; its outcome is unknown"
            ),
        }
    }
}

/// Settles the child an earlier heal started and never saw end: kills its
/// process group if any of it is alive.
///
/// Why the group is safe to signal: the child was the leader of a group
/// with its own pid as id, and Linux does not hand out a pid equal to an
/// existing process group's id, so while any member lives the group is
/// still the one heal made. A leader whose start time no longer matches is
/// another process (the pid was reused after the group ended): then the
/// group is gone and nothing is signalled.
pub fn settle(pid: u32, start_ticks_then: Option<u64>) -> Settlement {
    let Some(group) = Pid::from_raw(pid as i32) else {
        return Settlement::Gone;
    };
    if let (Some(then), Some(now)) = (start_ticks_then, start_ticks(pid)) {
        if then != now && test_kill_process_group(group).is_err() {
            return Settlement::Gone;
        }
    }
    if test_kill_process_group(group).is_err() {
        return Settlement::Gone;
    }
    // Zombies count as members until reaped; killing them is harmless.
    if kill_process_group(group, Signal::KILL).is_ok() {
        Settlement::Killed
    } else {
        Settlement::Gone
    }
}

fn render_output(out: &[u8], err: &[u8]) -> String {
    let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]).into_owned();
    match (out.is_empty(), err.is_empty()) {
        (_, true) => cut(out),
        (true, false) => cut(err),
        (false, false) => format!("{}\n--- stderr ---\n{}", cut(out), cut(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn runs_a_program_and_captures_output() {
        let r = run(&req(&["echo", "hello", "world"])).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.summary, "exit status 0");
        assert_eq!(r.output, "hello world\n");
    }

    #[tokio::test]
    async fn arguments_are_never_interpreted_by_a_shell() {
        // If a shell parsed this, `$(id)` would expand and `;` would split.
        let r = run(&req(&["echo", "a; rm -rf /tmp/nothing", "$(id)", "`id`"])).await;
        assert_eq!(r.output, "a; rm -rf /tmp/nothing $(id) `id`\n");
    }

    #[tokio::test]
    async fn environment_is_only_the_allowlist() {
        let mut q = req(&["env"]);
        q.env.insert("ONLY".into(), "this".into());
        let r = run(&q).await;
        assert_eq!(r.output, "ONLY=this\n");
    }

    #[tokio::test]
    async fn non_zero_exit_is_a_failure_retry_cannot_fix() {
        let r = run(&req(&["false"])).await;
        assert!(!r.ok && !r.retryable);
        assert_eq!(r.summary, "exit status 1");
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let r = run(&req(&["/nonexistent/heal-test-program"])).await;
        assert!(!r.ok && !r.retryable);
        assert!(
            r.summary
                .starts_with("starting /nonexistent/heal-test-program: "),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn timeout_kills_and_is_retryable() {
        let mut q = req(&["sleep", "10"]);
        q.timeout = Duration::from_millis(200);
        let r = run(&q).await;
        assert!(!r.ok && r.retryable);
        assert!(r.duration < Duration::from_secs(5));
        assert_eq!(r.summary, "timed out after 200ms");
    }

    #[tokio::test]
    async fn the_child_leads_its_own_process_group_and_a_timeout_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-ran");
        // The child starts a grandchild in the background, which would
        // touch the marker after 2 s if it survived the timeout.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let mut q = req(&["sh", "-c", &script]);
        q.timeout = Duration::from_millis(300);
        let (tx, rx) = oneshot::channel();
        let r = run_observed(&q, Some(tx)).await;
        assert_eq!(r.summary, "timed out after 300ms");
        let spawned = rx.await.expect("the pid is reported");
        assert!(spawned.start_ticks.is_some());
        // The whole group got SIGKILL, grandchild included (it may linger
        // as a zombie until its new parent reaps it, so the proof is that
        // it never ran on).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the grandchild outlived the timeout");
    }

    #[test]
    fn settle_kills_a_live_group_and_says_gone_for_an_ended_one() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let ticks = start_ticks(pid);
        assert!(ticks.is_some());
        assert_eq!(settle(pid, ticks), Settlement::Killed);
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Reaped: nothing of the group is left.
        assert_eq!(settle(pid, ticks), Settlement::Gone);
        assert_eq!(
            Settlement::Gone.describe(7),
            "process group 7 had already ended at restart; its outcome is unknown"
        );
    }

    #[tokio::test]
    async fn dry_run_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let mut q = req(&["touch", marker.to_str().unwrap()]);
        q.dry_run = true;
        let r = run(&q).await;
        assert!(r.ok);
        assert!(!marker.exists());
        assert!(r.summary.starts_with("dry run: would run"));
    }
}
