//! `heal logs templates` and `heal bench loghub` through the binary, on
//! small logs this test writes (the Loghub data stays outside the
//! repository): one row per input line in order, the same id for the same
//! statement, and the scores of a directory laid out as loghub-dev.

mod common;

use common::{heal, stderr, stdout};

/// Lines of three statements with varying numbers, addresses and users.
fn lines() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for i in 0..60 {
        out.push(match i % 3 {
            0 => (
                format!(
                    "Received block blk_{} of size {} from /10.0.0.{}",
                    1000 + i,
                    64 * i + 7,
                    i % 9
                ),
                "Received block <*> of size <*> from <*>",
            ),
            1 => (
                format!("session opened for user u{i} by uid {}", i * 7),
                "session opened for user <*> by uid <*>",
            ),
            _ => (
                format!(
                    "connection to 10.0.{}.1:5432 refused after {} ms",
                    i % 5,
                    i * 3
                ),
                "connection to <*> refused after <*> ms",
            ),
        });
    }
    out
}

#[test]
fn logs_templates_writes_one_row_per_line_with_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let text: String = lines()
        .iter()
        .enumerate()
        .map(|(i, (l, _))| format!("2026-12-05 10:00:{:02} INFO app: {l}\n", i % 60))
        .collect();
    std::fs::write(&log, text).unwrap();
    let out = dir.path().join("t.csv");
    let o = heal(&[
        "logs",
        "templates",
        log.to_str().unwrap(),
        "--log-format",
        "<Date> <Time> <Level> <Component>: <Content>",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "template_id,template");
    assert_eq!(rows.len(), 61, "{csv}");
    // Lines of one statement share an id; statements do not.
    let ids: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap())
        .collect();
    for k in 3..60 {
        assert_eq!(ids[k], ids[k - 3], "{csv}");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    // The last lines carry their statements' final templates.
    for (row, (_, want)) in rows[58..].iter().zip(&lines()[57..]) {
        assert!(row.ends_with(want), "{row} vs {want}");
    }

    // A missing file is named.
    let o = heal(&["logs", "templates", "/nonexistent/x.log"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/x.log"), "{}", stderr(&o));
}

#[test]
fn bench_loghub_scores_a_loghub_layout_and_cross_validates() {
    let dir = tempfile::tempdir().unwrap();
    for (sys, shift) in [("Alpha", 0), ("Beta", 1)] {
        let d = dir.path().join(sys);
        std::fs::create_dir_all(&d).unwrap();
        let mut csv = String::from("LineId,Content,EventId,EventTemplate\n");
        for (i, (line, template)) in lines().iter().skip(shift).enumerate() {
            csv.push_str(&format!("{},\"{line}\",E{},\"{template}\"\n", i + 1, i % 3));
        }
        std::fs::write(
            d.join(format!("{sys}_2k.log_structured_corrected.csv")),
            csv,
        )
        .unwrap();
    }
    let o = heal(&[
        "bench",
        "loghub",
        dir.path().to_str().unwrap(),
        "--reps",
        "1",
        "--cv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // system lines true found GA PA FGA ...
    let alpha = row("Alpha");
    assert_eq!(&alpha[1..4], ["60", "3", "3"], "{out}");
    assert_eq!(&alpha[4..7], ["1.0000", "1.0000", "1.0000"], "{out}");
    assert_eq!(row("Beta")[1], "59", "{out}");
    // The table, then leave-one-system-out from the default and from the
    // digits rule alone: a mean row each.
    assert_eq!(out.matches("mean(2)").count(), 3, "{out}");
    assert_eq!(out.matches("leave-one-system-out").count(), 2, "{out}");

    // Not a Loghub layout: said, with the directory.
    let o = heal(&["bench", "loghub", "/nonexistent-dir"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent-dir"), "{}", stderr(&o));
}
