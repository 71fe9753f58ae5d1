//! `heal-lab load` against real lab services.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{free_port, run, Service};

/// The `key=value` fields of the summary line that starts with `prefix`.
fn fields(stdout: &str, prefix: &str) -> BTreeMap<String, String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn count(f: &BTreeMap<String, String>, key: &str) -> u64 {
    f[key].parse().unwrap()
}

#[test]
fn counts_every_request_over_two_targets() {
    let a = Service::start("a", &[]);
    let b = Service::start("b", &[]);
    let (ua, ub) = (format!("http://{}/", a.addr), format!("http://{}/", b.addr));
    let out = run(
        &[
            "load",
            "--target",
            &ua,
            "--target",
            &ub,
            "--rps",
            "100",
            "--duration-s",
            "1",
        ],
        Duration::from_secs(15),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = fields(&stdout, "total ");
    assert_eq!(
        (
            count(&total, "sent"),
            count(&total, "ok"),
            count(&total, "errors"),
            count(&total, "timeouts")
        ),
        (100, 100, 0, 0),
        "{stdout}"
    );
    assert!(total["p50_ms"].parse::<f64>().unwrap() <= total["p99_ms"].parse::<f64>().unwrap());
    assert_eq!(count(&fields(&stdout, &format!("target {ua} ")), "ok"), 50);
    // The services saw them, round-robin.
    assert_eq!(a.metric("http_requests_total", &[("code", "200")]), 50.0);
    assert_eq!(b.metric("http_requests_total", &[("code", "200")]), 50.0);
}

#[test]
fn errors_and_timeouts_are_told_apart() {
    let failing = Service::start("failing", &["--fault", "errors:1"]);
    let hung = Service::start("hung", &["--fault", "hang"]);
    let closed = format!("http://127.0.0.1:{}/", free_port());
    let (uf, uh) = (
        format!("http://{}/", failing.addr),
        format!("http://{}/", hung.addr),
    );
    let out = run(
        &[
            "load",
            "--target",
            &uf,
            "--target",
            &uh,
            "--target",
            &closed,
            "--rps",
            "30",
            "--duration-s",
            "1",
            "--timeout-ms",
            "200",
        ],
        Duration::from_secs(15),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let f = fields(&stdout, &format!("target {uf} "));
    assert_eq!(
        (count(&f, "sent"), count(&f, "errors"), count(&f, "ok")),
        (10, 10, 0),
        "{stdout}"
    );
    let h = fields(&stdout, &format!("target {uh} "));
    assert_eq!(
        (count(&h, "sent"), count(&h, "timeouts"), count(&h, "ok")),
        (10, 10, 0),
        "{stdout}"
    );
    assert_eq!(h["p50_ms"], "-");
    let c = fields(&stdout, &format!("target {closed} "));
    assert_eq!(
        (count(&c, "sent"), count(&c, "errors")),
        (10, 10),
        "{stdout}"
    );
}

#[test]
fn only_loopback_targets_are_allowed() {
    for url in [
        "http://192.0.2.1:80/",
        "http://example.com/",
        "https://127.0.0.1/",
    ] {
        let out = run(
            &["load", "--target", url, "--rps", "1", "--duration-s", "1"],
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(64), "{url}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .starts_with(&format!("heal-lab: load target \"{url}\": ")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(
        &[
            "load",
            "--target",
            "http://127.0.0.1:1/",
            "--rps",
            "0",
            "--duration-s",
            "1",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(64));
}
