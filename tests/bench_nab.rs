//! `heal bench nab --detector ...`: every detector kind on a small corpus.

use std::process::Output;

fn heal(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(args)
        .output()
        .expect("running heal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A two-file corpus in NAB layout: one series with a labelled spike, one
/// clean series.
fn small_nab_corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/cat");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(dir.path().join("labels")).unwrap();
    let mut a = String::from("timestamp,value\n");
    let mut b = String::from("timestamp,value\n");
    for i in 0..2000u32 {
        let t = format!(
            "2024-01-{:02} {:02}:{:02}:00",
            1 + i / 1440,
            i / 60 % 24,
            i % 60
        );
        let noise = ((i * 7919) % 13) as f64 / 13.0;
        let va = if i == 1500 { 100.0 } else { 10.0 + noise };
        a.push_str(&format!("{t},{va}\n"));
        b.push_str(&format!("{t},{}\n", 10.0 + noise));
    }
    std::fs::write(data.join("a.csv"), a).unwrap();
    std::fs::write(data.join("b.csv"), b).unwrap();
    std::fs::write(
        dir.path().join("labels/combined_windows.json"),
        r#"{"cat/a.csv": [["2024-01-02 00:50:00.000000", "2024-01-02 01:30:00.000000"]], "cat/b.csv": []}"#,
    )
    .unwrap();
    dir
}

#[test]
fn bench_nab_detector_all_prints_every_detector_side_by_side() {
    let dir = small_nab_corpus();
    let o = heal(&[
        "bench",
        "nab",
        dir.path().to_str().unwrap(),
        "--detector",
        "all",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in [
        "adaptive",
        "sensitive",
        "changepoint",
        "seasonal",
        "ensemble",
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"));
        // name, then (threshold, score, tp/fn/fp) for three profiles, then
        // the time per point.
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 11, "{line}");
        let ns: f64 = cols[10].parse().unwrap();
        assert!(ns > 0.0, "{line}");
    }
    // The spike is plain: the adaptive detector and the ensemble find it.
    for name in ["adaptive", "ensemble"] {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        assert_eq!(line.split_whitespace().nth(3), Some("1/0/0"), "{line}");
    }
}
