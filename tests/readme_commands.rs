//! Every command the README names for a figure exists: each `heal bench
//! NAME` is a subcommand, each `cargo bench -p CRATE --bench NAME` a bench
//! target, each `--example NAME` an example of its crate; and `heal score`,
//! named for its rows/s, prints them. (Which command a figure names is
//! reviewed with the figure; that the command is there is checked here.)

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    // Line breaks inside a sentence do not split a command.
    std::fs::read_to_string(root().join("README.md"))
        .unwrap()
        .replace('\n', " ")
}

/// The words following each occurrence of `prefix`, up to a backtick.
fn after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            rest.split('`').next().unwrap_or("")
        })
        .collect()
}

/// `NAME` of `--flag NAME` in `words`.
fn flag<'a>(words: &'a str, flag: &str) -> Option<&'a str> {
    let mut it = words.split_whitespace();
    it.by_ref().find(|w| *w == flag)?;
    it.next()
}

#[test]
fn every_bench_and_example_the_readme_names_exists() {
    let text = readme();
    let mut checked = 0;
    for rest in after(&text, "cargo bench ") {
        let krate = flag(rest, "-p").unwrap_or("heal");
        let dir = if krate == "heal" {
            root().to_path_buf()
        } else {
            root().join(krate)
        };
        assert!(
            dir.join("Cargo.toml").is_file(),
            "`cargo bench {rest}`: no crate {krate}"
        );
        if let Some(bench) = flag(rest, "--bench") {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            assert!(
                dir.join(format!("benches/{bench}.rs")).is_file()
                    && manifest.contains(&format!("name = \"{bench}\"")),
                "`cargo bench {rest}`: {krate} has no bench {bench}"
            );
            checked += 1;
        }
    }
    for rest in after(&text, "cargo run ") {
        if let Some(example) = flag(rest, "--example") {
            let krate = flag(rest, "-p").unwrap_or("heal");
            let dir = if krate == "heal" {
                root().to_path_buf()
            } else {
                root().join(krate)
            };
            assert!(
                dir.join(format!("examples/{example}.rs")).is_file(),
                "`cargo run {rest}`: {krate} has no example {example}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "only {checked} bench or example commands found"
    );
}

#[test]
fn every_heal_bench_the_readme_names_is_a_subcommand() {
    let text = readme();
    let mut names: Vec<&str> = after(&text, "heal bench ")
        .into_iter()
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    names.sort();
    names.dedup();
    for expected in ["agent", "lab", "nab", "storm", "supervise"] {
        assert!(
            names.contains(&expected),
            "README names no `heal bench {expected}`: {names:?}"
        );
    }
    for name in names {
        let o = Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["bench", name, "--help"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "`heal bench {name}` (named in the README) is not a command: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn heal_score_prints_the_rows_per_second_the_readme_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..500 {
        text.push_str(&format!(
            "2024-01-01 {:02}:{:02}:00,{}\n",
            i / 60,
            i % 60,
            i % 7
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out.csv");
    let o = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "score",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("rows read, scored and written in"))
        .unwrap_or_else(|| panic!("no throughput line: {stderr}"));
    assert!(line.contains(": 500 rows read"), "{line}");
    assert!(line.ends_with(" M rows/s)"), "{line}");
    assert!(readme().contains("prints its rows/s"));
}
