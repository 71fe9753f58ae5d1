//! Cross-service diagnosis through `heal replay`: three services in a call
//! chain (web -> api -> db), a latency fault in db that every caller's
//! latency follows. With `diagnosis:` the three incidents form one group
//! ranked with db as its root cause: db's restart is planned, web's and
//! api's are held back as symptoms (`inhibited_by_root_cause`), and every
//! report says so. Without it, all three would be restarted.

mod common;

use std::path::Path;

use common::{heal, normal, stderr, stdout};
use lab::rng::SplitMix64;

const T0_S: i64 = 1_767_571_200;
const STEP_S: i64 = 15;
/// Minutes of data, and the minute db slows down.
const MINUTES: i64 = 60;
const FAULT_MIN: i64 = 40;

fn write_dataset(dir: &Path) -> std::path::PathBuf {
    let mut rng = SplitMix64::new(5);
    let mut csv = String::from("timestamp,value,__name__,service\n");
    for k in 0..MINUTES * 60 / STEP_S {
        let t = T0_S + k * STEP_S;
        let on = k * STEP_S >= FAULT_MIN * 60;
        // db's own time, and each caller's: its own plus its callee's.
        let db = if on { 0.60 } else { 0.05 };
        let api = 0.05 + db;
        let web = 0.05 + api;
        for (svc, lat, cpu) in [("db", db, 40.0), ("api", api, 30.0), ("web", web, 20.0)] {
            let lat = lat * (1.0 + 0.04 * normal(&mut rng));
            let cpu = cpu + 1.5 * normal(&mut rng);
            csv.push_str(&format!("{t},{lat:.5},http_latency_seconds,{svc}\n"));
            csv.push_str(&format!("{t},{cpu:.3},cpu_usage_percent,{svc}\n"));
        }
    }
    std::fs::write(dir.join("chain.csv"), csv).unwrap();
    let out = dir.join("chain.parquet");
    let o = heal(&[
        "dataset",
        "import",
        dir.join("chain.csv").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--format",
        "long",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn write_runbooks(dir: &Path, diagnosis: bool) -> std::path::PathBuf {
    let rb = dir.join(if diagnosis { "with" } else { "without" });
    std::fs::create_dir_all(&rb).unwrap();
    let mut text = String::from(
        "signals:
  - name: http_latency_seconds
    query: http_latency_seconds
    detector: {direction: up}
  - name: cpu_usage_percent
    query: cpu_usage_percent
    detector: {direction: up}
rules:
  - name: restart-slow
    when: {signal: http_latency_seconds, direction: up}
    then:
      - action: restart
        target: supervisor/{{service}}
    verify: {wait: 5m}
",
    );
    if diagnosis {
        text.push_str(
            "diagnosis:
  group_wait: 30s
  services:
    web: {depends_on: [api]}
    api: {depends_on: [db]}
",
        );
    }
    std::fs::write(rb.join("chain.yaml"), text).unwrap();
    rb
}

fn incidents(report: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(report.join("incidents.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (service, reasons of its steps in order, "allowed"/"dry_run" included).
fn steps(incs: &[serde_json::Value]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = incs
        .iter()
        .map(|i| {
            (
                i["service"].as_str().unwrap().to_owned(),
                i["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        a["decision"]["reason"]
                            .as_str()
                            .unwrap_or("allowed")
                            .to_owned()
                    })
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_slow_database_is_diagnosed_as_the_root_cause_and_only_it_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dataset = write_dataset(d);

    let replay = |diagnosis: bool, report: &Path| {
        let o = heal(&[
            "replay",
            dataset.to_str().unwrap(),
            "--runbooks",
            write_runbooks(d, diagnosis).to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}{}", stderr(&o));
        out
    };
    // Without diagnosis: every slow service gets its restart.
    let report = d.join("plain");
    let out = replay(false, &report);
    let s = steps(&incidents(&report));
    assert_eq!(s.len(), 3, "{out}");
    assert!(s.iter().all(|(_, r)| r == &["dry_run"]), "{s:?}");

    // With it: one group, db its root cause, the callers held back.
    let report = d.join("diagnosed");
    let out = replay(true, &report);
    let incs = incidents(&report);
    assert_eq!(incs.len(), 3, "{out}");
    for i in &incs {
        let diag = &i["diagnosis"];
        assert_eq!(diag["root_cause"], "db", "{i}");
        assert_eq!(
            diag["services"],
            serde_json::json!(["api", "db", "web"]),
            "{i}"
        );
        assert_eq!(
            diag["ranking"][0]["service"], "db",
            "the ranking's first: {diag}"
        );
    }
    let s = steps(&incs);
    assert_eq!(
        s,
        [
            (
                "api".into(),
                vec![
                    "inhibited_by_root_cause".into(),
                    "inhibited_by_root_cause".into()
                ]
            ),
            (
                "db".into(),
                vec!["inhibited_by_root_cause".into(), "dry_run".into()]
            ),
            (
                "web".into(),
                vec![
                    "inhibited_by_root_cause".into(),
                    "inhibited_by_root_cause".into()
                ]
            ),
        ],
        "{out}"
    );
    let web = incs.iter().find(|i| i["service"] == "web").unwrap();
    let detail = web["actions"][1]["decision"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"web\" is a symptom: group")
            && detail.contains("ranks \"db\" as its root cause"),
        "{detail}"
    );
    let id = web["id"].as_str().unwrap();
    let md = std::fs::read_to_string(report.join(format!("{id}.md"))).unwrap();
    assert!(md.contains("## Diagnosis"), "{md}");
    assert!(
        md.contains("a **symptom**; the ranked root cause is db"),
        "{md}"
    );
    assert!(md.contains("| 1 | db |"), "{md}");
    let html = std::fs::read_to_string(report.join(format!("{id}.html"))).unwrap();
    assert!(html.contains("<section id=\"diagnosis\">"), "{html}");
    assert!(html.contains("http_latency_seconds up"), "{html}");
}
