//! The `exec` executor: runs a program with an argv, never through a shell.
//!
//! Why no shell: a shell would re-parse the rendered arguments, so a label
//! value such as `x; rm -rf /` would become two commands. With an argv the
//! program receives each argument as one opaque string, whatever it holds;
//! label values are additionally checked against a strict pattern before
//! they are substituted (see `template`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

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

/// Runs `req`. A program that cannot be started is not retryable; one that
/// timed out is (it was killed; a second try may be faster); a non-zero
/// exit is not (the program said no).
pub async fn run(req: &ExecRequest) -> ActionResult {
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
        // The future owning the child is dropped here; `kill_on_drop` kills it.
        Err(_) => ActionResult {
            ok: false,
            retryable: true,
            summary: format!("timed out after {:?}", req.timeout),
            output: String::new(),
            duration: started.elapsed(),
        },
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
