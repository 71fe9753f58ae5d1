//! The chaos bench's short version in the suite: `heal bench chaos` for 25
//! seconds against the real lab and a real Prometheus, with heal SIGKILLed
//! and restarted, Prometheus killed, lab services broken, series churning
//! and hostile label values. The figures that must be 0 are checked by the
//! bench itself (it exits 1 otherwise) and again here from what it printed.
//! The full run is `heal bench chaos --duration 4m` (README).

use std::path::Path;
use std::process::Command;

#[test]
fn a_short_chaos_run_has_no_duplicate_action_no_lost_incident_and_no_panic() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_heal")).parent().unwrap();
    assert!(
        bin_dir.join("heal-lab").is_file(),
        "heal-lab must be built beside heal: `cargo build -p lab` (the workspace test run does)"
    );
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "bench",
            "chaos",
            "--duration",
            "25s",
            "--seed",
            "3",
            "--churn",
            "50",
        ])
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = |prefix: &str| -> String {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .to_owned()
    };
    assert!(
        line("duplicate actions ").starts_with("duplicate actions 0 "),
        "{stdout}"
    );
    assert!(
        line("lost incidents ").starts_with("lost incidents 0 "),
        "{stdout}"
    );
    assert!(line("peak RSS ").ends_with("; panics 0"), "{stdout}");
    // Something happened: heal was killed at least once and opened incidents.
    let faults = line("faults: ");
    assert!(
        !faults.starts_with("faults: heal SIGKILLed 0 times"),
        "{stdout}"
    );
    let opened: usize = line("incidents opened ")
        .trim_start_matches("incidents opened ")
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(opened > 0, "{stdout}");
}
