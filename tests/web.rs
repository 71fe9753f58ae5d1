//! The incident feed's web pages in a real browser: Debian's `chromium`,
//! headless, driven through `chromedriver` over the W3C WebDriver protocol
//! (a small client below: JSON over HTTP). The test asserts what a person
//! sees: the list, a filter narrowing it (by a choice, with the page's
//! script, and by the Filter button), a link opening the incident's
//! report, an approval refused without the token and nothing changed,
//! then approved with it, a silence added and expired through the forms,
//! and a hostile label value shown as text. A screenshot of the list is
//! saved in `$CARGO_TARGET_TMPDIR/web/incidents.png`.
//!
//! heal's incidents come from a real `heal watch --db` whose runbook acts
//! on Alertmanager's webhook: the test posts the payloads Alertmanager
//! would (tests/alertmanager.rs has the real Alertmanager), so the store,
//! the engine and the approval queue are heal's own. `heal serve` on the
//! same store then serves the pages with no engine, and says so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::http::client;
use serde_json::{json, Value};

mod common;
use common::{free_port, wait_until, Guard};

const TOKEN: &str = "web-test-token";

/// One HTTP/1.1 exchange with `Connection: close`; the body decoded
/// (Content-Length or chunked).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read until the announced length is in (a server may keep the
    // connection open), the last chunk, or the close.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|len| raw.len() >= end + 4 + len)
            || (head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n"))
        {
            break;
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut rest = raw[end..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let line_end = i + rest[i..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[i..line_end])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            i = line_end + 2 + size + 2;
        }
        rest = out;
    }
    (status, String::from_utf8_lossy(&rest).to_string())
}

/// A WebDriver session on chromedriver.
struct Browser {
    driver: SocketAddr,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(driver: SocketAddr) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }
        }}});
        let (status, body) = http(driver, "POST", "/session", Some(&caps.to_string()));
        assert_eq!(status, 200, "new session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        Browser {
            driver,
            session: v["value"]["sessionId"].as_str().unwrap().to_owned(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call_raw(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn call_raw(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = http(
            self.driver,
            method,
            &format!("/session/{}{path}", self.session),
            body.map(|b| b.to_string()).as_deref(),
        );
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        (status, v)
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("not an element: {e}"))
                .to_owned()
        })
        .collect()
    }

    fn one(&self, css: &str) -> String {
        let found = self.all(css);
        assert!(
            !found.is_empty(),
            "no {css} on {}:\n{}",
            self.url(),
            self.text("body")
        );
        found[0].clone()
    }

    /// The element's visible text; empty when the element is gone (the
    /// page navigated between finding it and reading it, which a wait's
    /// poll can meet: it then polls again). ChromeDriver says so with
    /// "stale element reference" or, when the navigation lands between
    /// its own steps, with an "unknown error" that the node "does not
    /// belong to the document".
    fn text_of(&self, el: &str) -> String {
        let (status, v) = self.call_raw("GET", &format!("/element/{el}/text"), None);
        let stale = (status == 404 && v["value"]["error"] == "stale element reference")
            || (status == 500
                && v["value"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("does not belong to the document")));
        if stale {
            return String::new();
        }
        assert_eq!(status, 200, "GET /element/{el}/text: {v}");
        v["value"].as_str().unwrap().to_owned()
    }

    /// The visible text of the first `css`.
    fn text(&self, css: &str) -> String {
        let el = self.all(css);
        el.first().map(|e| self.text_of(e)).unwrap_or_default()
    }

    fn click(&self, el: &str) {
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    fn type_in(&self, el: &str, text: &str) {
        self.call("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Waits until `cond` holds on the page (navigation is asynchronous
    /// after a click).
    fn wait_for(&self, what: &str, cond: impl Fn(&Browser) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: not seen on {}:\n{}",
                self.url(),
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn rows(&self, table: &str) -> Vec<String> {
        self.all(&format!("table#{table} tbody tr"))
            .iter()
            .map(|r| self.text_of(r))
            .collect()
    }

    fn screenshot(&self, to: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

fn post_alerts(heal: SocketAddr, alerts: Value) {
    let body = json!({"version": "4", "status": "firing", "alerts": alerts}).to_string();
    let mut s = TcpStream::connect(heal).unwrap();
    write!(
        s,
        "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

fn alert(name: &str, service: &str) -> Value {
    json!({"status": "firing", "labels": {"alertname": name, "service": service, "job": "shop"}, "endsAt": "0001-01-01T00:00:00Z"})
}

fn chromedriver() -> PathBuf {
    let bin = PathBuf::from("/usr/bin/chromedriver");
    assert!(
        bin.exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and chromium-driver (.ci/run installs them)"
    );
    bin
}

#[test]
fn a_person_browses_filters_opens_approves_and_silences_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    std::fs::create_dir(d("runbooks")).unwrap();
    std::fs::write(
        d("runbooks").join("shop.yaml"),
        "signals:
  - name: alerts
    alertmanager: {match: {job: shop}}
rules:
  - name: web-down
    when: {signal: alerts, alert: WebDown, for: 0s}
    then: [{action: exec, argv: ['true', 'web']}]
    guards: {require_approval: true, approval_timeout: 1h}
  - name: db-slow
    when: {signal: alerts, alert: DbSlow, for: 0s}
    then: [{action: exec, argv: ['true']}]
",
    )
    .unwrap();
    let heal = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let db = d("heal.db");
    let _heal = Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["watch", "--prometheus", "http://127.0.0.1:9"])
            .arg("--runbooks")
            .arg(d("runbooks"))
            .arg("--db")
            .arg(&db)
            .args(["--interval", "1s", "--backfill", "0s"])
            .args(["--listen", &heal.to_string()])
            .args(["--api-token-env", "HEAL_WEB_TOKEN"])
            // Acting for real (the steps run `true`): a dry run needs
            // nobody's approval, so only a live engine parks a step.
            .arg("--execute")
            .env("HEAL_WEB_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d("heal.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let heal_log = || std::fs::read_to_string(d("heal.err")).unwrap_or_default();
    let start = Instant::now();
    while client::get(heal, "/healthz", Duration::from_secs(1)).map_or(true, |r| r.status != 200) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "heal never healthy:\n{}",
            heal_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Three incidents: web (its step parked for approval), db, and a
    // service whose name is markup.
    post_alerts(
        heal,
        json!([
            alert("WebDown", "web"),
            alert("DbSlow", "db"),
            alert("DbSlow", "<b>evil</b><script>alert(1)</script>"),
        ]),
    );
    wait_until(
        "three incidents in the store",
        Duration::from_secs(30),
        || {
            let (_, body) = http(heal, "GET", "/api/incidents", None);
            let v: Value = serde_json::from_str(&body).ok()?;
            (v["incidents"].as_array()?.len() == 3).then_some(())
        },
    );

    let driver = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _chromedriver = Guard(
        Command::new(chromedriver())
            .arg(format!("--port={}", driver.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("chromedriver", Duration::from_secs(30), || {
        TcpStream::connect(driver).ok().and_then(|_| {
            let (s, b) = http(driver, "GET", "/status", None);
            (s == 200 && b.contains("\"ready\":true")).then_some(())
        })
    });
    let b = Browser::start(driver);
    let base = format!("http://{heal}");

    // The list: three rows, newest first, the markup shown as text.
    b.goto(&format!("{base}/"));
    assert_eq!(b.text("h1"), "Incidents");
    let rows = b.rows("incidents");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.contains("<b>evil</b><script>alert(1)</script>")),
        "{rows:?}"
    );
    assert!(b.all("table#incidents b").is_empty(), "markup was rendered");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web/incidents.png");
    b.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // A choice narrows the list (the page's script submits it).
    let option = b
        .all("select[name=service] option")
        .into_iter()
        .find(|o| b.text_of(o) == "db")
        .expect("db among the service choices");
    let chosen = "db".to_owned();
    b.click(&b.one("select[name=service]"));
    b.click(&option);
    b.wait_for("the service filter applied", |b| {
        b.url().contains("service=")
    });
    let rows = b.rows("incidents");
    assert_eq!(rows.len(), 1, "{chosen}: {rows:?}");
    assert!(rows[0].contains(&chosen), "{chosen}: {rows:?}");
    // Clear, then the rule filter by name and the Filter button: two rows.
    b.click(&b.one("form.filters a[href='/']"));
    b.wait_for("the filters cleared", |b| b.rows("incidents").len() == 3);
    b.goto(&format!("{base}/?rule=db-slow"));
    assert_eq!(b.rows("incidents").len(), 2);
    // A time range typed in and the button pressed: nothing opened in the
    // future.
    b.type_in(&b.one("input[name=since]"), "2999-01-01T00:00:00Z");
    b.click(&b.one("form.filters button[type=submit]"));
    b.wait_for("the time filter applied", |b| {
        b.text("#count").contains("No incident")
    });
    // A bad time is said, with the form still there.
    b.goto(&format!("{base}/?since=yesterday"));
    assert!(
        b.text(".error").contains("since \"yesterday\""),
        "{}",
        b.text("body")
    );
    assert!(!b.all("form.filters").is_empty());

    // Paging: two a page, the next page holds the oldest, and the first
    // page link comes back.
    b.goto(&format!("{base}/?limit=2"));
    assert_eq!(b.rows("incidents").len(), 2);
    assert!(
        b.text("#count").contains("more on the next page"),
        "{}",
        b.text("#count")
    );
    let newest = b.rows("incidents");
    b.click(&b.one("a#next"));
    b.wait_for("the next page", |b| b.url().contains("cursor="));
    let older = b.rows("incidents");
    assert_eq!(older.len(), 1, "{older:?}");
    assert!(older[0].contains("inc-000001"), "{older:?}");
    assert!(
        newest.iter().all(|r| !r.contains("inc-000001")),
        "{newest:?}"
    );
    assert!(b.all("a#next").is_empty(), "a next link on the last page");
    let first = b
        .all(".pager a")
        .into_iter()
        .find(|a| b.text_of(a) == "First page")
        .expect("a first page link");
    b.click(&first);
    b.wait_for("the first page again", |b| !b.url().contains("cursor="));
    assert_eq!(b.rows("incidents"), newest);

    // A link opens the incident's report.
    b.goto(&format!("{base}/?rule=web-down"));
    let link = b.one("table#incidents tbody tr a");
    let id = b.text_of(&link);
    b.click(&link);
    b.wait_for("the incident's page", |b| {
        b.url().ends_with(&format!("/incidents/{id}"))
    });
    let report = b.text("body");
    assert!(
        report.contains("web-down") && report.contains(&id),
        "{report}"
    );
    assert!(report.contains("awaiting approval"), "{report}");

    // Approvals: the parked step; a wrong token is refused, nothing changes.
    b.goto(&format!("{base}/approvals"));
    let rows = b.rows("approvals");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains(&id) && rows[0].contains("web-down"),
        "{rows:?}"
    );
    b.type_in(&b.one("table#approvals input[name=by]"), "alice");
    b.type_in(&b.one("table#approvals input[name=token]"), "not-the-token");
    b.click(&b.one("table#approvals button"));
    b.wait_for("the refusal", |b| b.text("h1") == "Refused");
    assert!(
        b.text("p.error")
            .contains("the API token is missing or wrong. Nothing was changed."),
        "{}",
        b.text("body")
    );
    b.goto(&format!("{base}/approvals"));
    assert_eq!(
        b.rows("approvals").len(),
        1,
        "an unauthorised approve changed something"
    );
    // With the token it is approved, and the queue is empty.
    b.type_in(&b.one("table#approvals input[name=by]"), "alice");
    b.type_in(&b.one("table#approvals input[name=token]"), TOKEN);
    b.click(&b.one("table#approvals button"));
    b.wait_for("the approval", |b| b.text("h1") == "Approved");
    assert!(
        b.text("p.done").contains(&format!("{id} approved")),
        "{}",
        b.text("body")
    );
    b.goto(&format!("{base}/approvals"));
    assert!(
        b.text("#count").contains("No step waits"),
        "{}",
        b.text("body")
    );
    // The incident's page says who approved the step, and that it ran.
    b.wait_for("the approved step in the report", |b| {
        b.goto(&format!("{base}/incidents/{id}"));
        b.text("body").contains("approved by alice")
    });
    assert!(heal_log().contains("action performed"), "{}", heal_log());

    // Silences: add one through the form (the token typed before is
    // remembered by the page's script for this tab), then expire it.
    b.goto(&format!("{base}/silences"));
    assert!(
        b.text("#count").contains("No silence"),
        "{}",
        b.text("body")
    );
    b.type_in(&b.one("textarea[name=matchers]"), "service=db");
    b.type_in(&b.one("input[name=duration]"), "2h");
    b.type_in(&b.one("input[name=by]"), "bob");
    b.type_in(&b.one("input[name=comment]"), "db migration <tonight>");
    b.click(&b.one("form[action='/silences'] button"));
    b.wait_for("the silence added", |b| b.text("h1") == "Silence added");
    b.goto(&format!("{base}/silences"));
    let rows = b.rows("silences");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("service=\"db\"") || rows[0].contains("service=db"),
        "{rows:?}"
    );
    assert!(
        rows[0].contains("db migration <tonight>") && rows[0].contains("bob"),
        "{rows:?}"
    );
    // Remembered token: the expire form's field is already filled.
    let token_field = b.one("table#silences input[name=token]");
    let filled = b.call(
        "GET",
        &format!("/element/{token_field}/property/value"),
        None,
    );
    assert_eq!(filled, TOKEN, "the page's script did not fill the token");
    b.click(&b.one("table#silences button"));
    b.wait_for("the silence expired", |b| b.text("h1") == "Silence expired");
    b.goto(&format!("{base}/silences"));
    assert!(
        b.text("#count").contains("No silence"),
        "{}",
        b.text("body")
    );

    // heal serve on the same store: the same list, and changes refused
    // with the reason.
    let served = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _serve = Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["serve", "--db"])
            .arg(&db)
            .args(["--listen", &served.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d("serve.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("heal serve", Duration::from_secs(30), || {
        client::get(served, "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });
    b.goto(&format!("http://{served}/"));
    assert_eq!(b.rows("incidents").len(), 3);
    b.goto(&format!("http://{served}/approvals"));
    assert!(
        b.text("body").contains("This is heal serve"),
        "{}",
        b.text("body")
    );
    let (status, _) = http(served, "POST", &format!("/approvals/{id}/approve"), None);
    assert_eq!(status, 403, "heal serve without a token refuses changes");
}
