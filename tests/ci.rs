//! What `.ci/run` promises about itself: a bounded run, goldens compared
//! (never rewritten), benches and examples compiled, and the real servers
//! the tests need installed. The script is read as the shell will run it:
//! comments are dropped, so a promise kept only in a comment fails here.

fn ci_commands() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The index of the first command line containing every one of `words`.
fn find(commands: &[String], words: &[&str]) -> Option<usize> {
    commands
        .iter()
        .position(|l| words.iter().all(|w| l.contains(w)))
}

#[test]
fn ci_is_bounded_compares_goldens_and_compiles_every_target() {
    let c = ci_commands();
    // An overall timeout wraps the whole script, before anything runs.
    let bounded = find(&c, &["exec timeout", "\"$0\""]).expect("no `exec timeout ... \"$0\"`");
    let first_cargo = find(&c, &["cargo "]).expect("no cargo command");
    assert!(
        bounded < first_cargo,
        "the timeout must wrap the cargo runs"
    );
    // UPDATE_GOLDEN rewrites goldens instead of comparing them.
    let unset = find(&c, &["unset UPDATE_GOLDEN"]).expect("UPDATE_GOLDEN is not unset");
    assert!(unset < first_cargo);
    // Benches and examples compile (`cargo test` alone skips them)...
    find(
        &c,
        &["cargo test", "--workspace", "--all-targets", "--no-run"],
    )
    .expect("no `cargo test --workspace --all-targets --no-run`");
    // ...and the README's test command runs.
    assert!(
        c.iter().any(|l| l == "cargo test --workspace --locked"),
        "no `cargo test --workspace --locked`"
    );
    // What the tests look up and fail without is installed when missing.
    for tool in ["prometheus", "promtool", "haproxy"] {
        assert!(
            find(&c, &["need ", tool]).is_some(),
            "`.ci/run` does not install {tool}"
        );
    }
}
