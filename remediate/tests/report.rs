//! Post-incident reports (Markdown, HTML with its chart, the Atom feed) of
//! the example runbooks on scripted anomalies, checked against golden files.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p remediate --test report`
//! and review the diff. The HTML pages and the feed are also parsed as XML
//! (well-formed, and the chart drew what it should).

use std::collections::BTreeMap;
use std::path::Path;

use detect::{Excursion, Scored};
use remediate::engine::{Engine, EngineOptions, Incident, Observation};
use remediate::report::{Evidence, EvidencePoint, LogEvidence, TemplateMove};
use remediate::{report, RunbookSet};

const MIN: i64 = 60_000;
/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;

/// Compares `actual` with the golden file at `path` (relative to this
/// crate), or rewrites the file when `UPDATE_GOLDEN=1`.
fn check(actual: &str, path: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output; rerun with UPDATE_GOLDEN=1 and review the diff.\n--- actual ---\n{actual}",
        path.display()
    );
}

fn examples() -> RunbookSet {
    RunbookSet::load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn labels(name: &str, service: &str, instance: &str) -> BTreeMap<String, String> {
    [
        ("__name__", name),
        ("service", service),
        ("instance", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// One sample a minute for `minutes`; `at(m)` gives value and excursion
/// (onset minute, peak score), always above the baseline.
fn replay(
    engine: &mut Engine,
    signal: &str,
    labels: &BTreeMap<String, String>,
    minutes: i64,
    at: impl Fn(i64) -> (f64, Option<(i64, f64)>),
) {
    for m in 0..minutes {
        let (value, ex) = at(m);
        let excursion = ex.map(|(onset, peak_score)| Excursion {
            onset_ms: T0 + onset * MIN,
            above: true,
            peak_score,
            peer_z: None,
            first: onset == m,
            in_band: false,
            band: (f64::NEG_INFINITY, f64::INFINITY),
        });
        let scored = Scored {
            score: excursion.map_or(0.3, |e| e.peak_score),
            excursion,
        };
        engine.observe(&Observation {
            signal,
            labels,
            ts_ms: T0 + m * MIN,
            value,
            scored,
        });
    }
}

/// Checkout p99 latency shifts up at minute 10 and stays up: restart, then
/// rollback, then a page, and the incident is still open when data ends.
fn checkout_at(m: i64) -> (f64, Option<(i64, f64)>) {
    if m < 10 {
        (0.25, None)
    } else {
        (1.4, Some((10, if m < 20 { 0.99995 } else { 0.9999995 })))
    }
}

/// Payments error ratio spikes for 4 minutes; draining the instance is
/// verified by the error ratio being under 1%.
fn payments_at(m: i64) -> (f64, Option<(i64, f64)>) {
    match m {
        0..=4 => (0.002, None),
        5..=8 => (0.08, Some((5, 0.9999999))),
        9..=12 => (0.004, Some((5, 0.9999999))),
        _ => (0.002, None),
    }
}

/// Same spike, errors staying high longer, and the instance label carries a
/// shell injection: the drain is refused, the rollback (service only) goes on.
fn hostile_at(m: i64) -> (f64, Option<(i64, f64)>) {
    match m {
        0..=4 => (0.002, None),
        5..=12 => (0.08, Some((5, 0.9999999))),
        _ => (0.002, None),
    }
}

/// A scenario: the value and the excursion `(onset minute, peak score)` at
/// each minute.
type Scenario = fn(i64) -> (f64, Option<(i64, f64)>);

/// The first incident of one scenario run alone through the example runbooks.
fn first_incident(
    signal: &str,
    service: &str,
    instance: &str,
    minutes: i64,
    at: Scenario,
) -> Incident {
    let set = examples();
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: true,
            await_actions: false,
        },
    );
    let l = labels(signal, service, instance);
    replay(&mut engine, signal, &l, minutes, at);
    engine.finish(T0 + minutes * MIN).remove(0)
}

fn checkout_latency() -> Incident {
    first_incident(
        "http_latency_p99_seconds",
        "checkout",
        "checkout-0",
        60,
        checkout_at,
    )
}

fn payments_errors() -> Incident {
    first_incident(
        "http_error_ratio",
        "payments",
        "payments-0",
        30,
        payments_at,
    )
}

fn payments_hostile_label() -> Incident {
    first_incident(
        "http_error_ratio",
        "payments",
        "payments-0; rm -rf /",
        30,
        hostile_at,
    )
}

#[test]
fn checkout_latency_report() {
    check(
        &report::markdown(&checkout_latency()),
        "tests/golden/checkout_latency.md",
    );
}

#[test]
fn payments_errors_report() {
    check(
        &report::markdown(&payments_errors()),
        "tests/golden/payments_errors.md",
    );
}

#[test]
fn hostile_label_report() {
    check(
        &report::markdown(&payments_hostile_label()),
        "tests/golden/payments_hostile_label.md",
    );
}

#[test]
fn incidents_as_json_lines() {
    // Both faults through one engine, samples interleaved in event time, as
    // a replay of the dataset would feed them: every rule that matches opens
    // its own incident, ids in order of opening.
    let set = examples();
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: true,
            await_actions: false,
        },
    );
    let checkout = labels("http_latency_p99_seconds", "checkout", "checkout-0");
    let payments = labels("http_error_ratio", "payments", "payments-0");
    for m in 0..60 {
        for (signal, l, at) in [
            (
                "http_latency_p99_seconds",
                &checkout,
                checkout_at as fn(i64) -> _,
            ),
            ("http_error_ratio", &payments, payments_at),
        ] {
            let (value, ex) = at(m);
            let excursion = ex.map(|(onset, peak_score)| Excursion {
                onset_ms: T0 + onset * MIN,
                above: true,
                peak_score,
                peer_z: None,
                first: onset == m,
                in_band: false,
                band: (f64::NEG_INFINITY, f64::INFINITY),
            });
            let scored = Scored {
                score: excursion.map_or(0.3, |e| e.peak_score),
                excursion,
            };
            engine.observe(&Observation {
                signal,
                labels: l,
                ts_ms: T0 + m * MIN,
                value,
                scored,
            });
        }
    }
    let incidents = engine.finish(T0 + 60 * MIN);
    let lines = report::json_lines(&incidents);
    check(&lines, "tests/golden/incidents.jsonl");

    let parsed: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<(&str, &str)> = parsed
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("inc-000001", "error-ratio-spike"),
            ("inc-000002", "error-ratio-notify"),
            ("inc-000003", "latency-p99-high"),
        ]
    );
    let first = &parsed[0];
    assert_eq!(first["onset"], "2026-03-01T00:05:00Z");
    assert_eq!(first["onset_ms"], T0 + 5 * MIN);
    assert_eq!(first["resolved"], "2026-03-01T00:13:00Z");
    assert_eq!(first["resolved_ms"], T0 + 13 * MIN);
    assert_eq!(first["actions"][0]["planned"], "2026-03-01T00:06:00Z");
    assert_eq!(first["actions"][0]["planned_ms"], T0 + 6 * MIN);
    assert_eq!(first["actions"][0]["decision"]["reason"], "dry_run");
    assert_eq!(first["actions"][0]["verification"]["outcome"], "recovered");
    assert_eq!(
        first["actions"][0]["verification"]["decided"],
        "2026-03-01T00:09:00Z"
    );
    assert_eq!(parsed[2]["status"], "open");
    assert_eq!(parsed[2]["unresolved_at"], "2026-03-01T01:00:00Z");
}

/// The evidence a pipeline would have recorded for an incident of a
/// scenario: one point a minute from minute 0 (the context, up to the
/// opening) to the resolution or the end, inside a fixed band around the
/// scenario's normal value. A fixed band, not a detector's: the goldens
/// check the rendering, and must not change when the detector is tuned.
fn evidence(inc: &Incident, at: Scenario, minutes: i64, band: (f64, f64)) -> Evidence {
    let opened = (inc.opened_ms - T0) / MIN;
    let end = inc.resolved_ms.map_or(minutes - 1, |t| (t - T0) / MIN + 2);
    let points: Vec<EvidencePoint> = (0..=end.min(minutes - 1))
        .map(|m| EvidencePoint::new(T0 + m * MIN, at(m).0, band))
        .collect();
    Evidence {
        context: opened as usize + 1,
        samples: points.len() as u64,
        points,
        logs: None,
    }
}

/// One element of a parsed document: its name and `class` attribute.
#[derive(Debug)]
struct Element {
    name: String,
    class: String,
    /// Names of its attributes.
    attributes: Vec<String>,
}

/// Parses `text` as XML and fails the test on anything not well-formed:
/// unbalanced or mismatched tags, duplicate attributes, an undefined entity
/// (XML knows only the five predefined ones and character references),
/// more than one root element. Returns every element in document order.
fn parse_xml(text: &str) -> Vec<Element> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed at {}: {e}", reader.buffer_position()));
        let mut element = |e: &quick_xml::events::BytesStart| {
            if depth == 0 {
                roots += 1;
            }
            let mut class = String::new();
            let mut attributes = Vec::new();
            for a in e.attributes() {
                let a = a.unwrap_or_else(|err| panic!("bad attribute: {err}"));
                let v = a
                    .unescape_value()
                    .unwrap_or_else(|err| panic!("bad attribute value: {err}"));
                attributes.push(String::from_utf8(a.key.as_ref().to_vec()).unwrap());
                if a.key.as_ref() == b"class" {
                    class = v.into_owned();
                }
            }
            out.push(Element {
                name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
                class,
                attributes,
            });
        };
        match event {
            Event::Start(e) => {
                element(&e);
                depth += 1;
            }
            Event::Empty(e) => element(&e),
            Event::End(_) => depth -= 1,
            Event::GeneralRef(r) => {
                let name = String::from_utf8(r.to_vec()).unwrap();
                assert!(
                    name.starts_with('#') || ["amp", "lt", "gt", "quot", "apos"].contains(&&*name),
                    "undefined entity &{name};"
                );
            }
            Event::Text(t) => assert!(
                depth > 0 || t.iter().all(u8::is_ascii_whitespace),
                "text outside the root element"
            ),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    assert_eq!(roots, 1, "one root element");
    out
}

/// Checks what the chart of `inc` drew: one series line, one band, and one
/// marker for the onset, each step and each verification, with the step
/// markers coloured by decision class. Returns the page's elements.
fn check_chart(page: &str, inc: &Incident) -> Vec<Element> {
    let elements = parse_xml(page);
    let count = |name: &str, class: &str| {
        elements
            .iter()
            .filter(|e| e.name == name && e.class == class)
            .count()
    };
    assert_eq!(elements.iter().filter(|e| e.name == "polyline").count(), 1);
    assert_eq!(count("polyline", "series"), 1);
    assert_eq!(count("polygon", "band"), 1);
    assert_eq!(count("svg", "chart"), 1);
    assert_eq!(count("g", "marker onset"), 1);
    let verified = inc
        .actions
        .iter()
        .filter(|a| a.verification.is_some())
        .count();
    let markers = elements
        .iter()
        .filter(|e| e.name == "g" && e.class.starts_with("marker "))
        .count();
    assert_eq!(markers, 1 + inc.actions.len() + verified);
    for class in ["allowed", "dry_run", "suppressed"] {
        let expected = inc
            .actions
            .iter()
            .filter(|a| match a.decision.label() {
                "allowed" | "dry_run" => a.decision.label() == class,
                _ => class == "suppressed",
            })
            .count();
        assert_eq!(
            count("g", &format!("marker action {class}")),
            expected,
            "{class}"
        );
    }
    for outcome in ["recovered", "not_recovered", "worse"] {
        let expected = inc
            .actions
            .iter()
            .filter(|a| {
                a.verification
                    .as_ref()
                    .is_some_and(|v| v.outcome.as_str() == outcome)
            })
            .count();
        assert_eq!(count("g", &format!("marker verify {outcome}")), expected);
    }
    // Self-contained: nothing to run, nothing fetched.
    assert!(!elements
        .iter()
        .any(|e| e.name == "script" || e.name == "link" || e.name == "img"));
    assert!(!elements.iter().any(|e| e
        .attributes
        .iter()
        .any(|a| a == "src" || a.ends_with("href") || a.starts_with("on"))));
    assert!(!page.contains("url(") && !page.contains("@import"));
    elements
}

#[test]
fn checkout_latency_html_report() {
    let inc = checkout_latency();
    let ev = evidence(&inc, checkout_at, 60, (0.1, 0.4));
    let page = report::html(&inc, Some(&ev));
    check(&page, "tests/golden/checkout_latency.html");
    check_chart(&page, &inc);
    // Every event of the Markdown timeline is in the page.
    assert!(page.contains("STILL OPEN"));
    assert!(page.contains("incident opened by rule latency-p99-high"));
}

#[test]
fn payments_errors_html_report() {
    let inc = payments_errors();
    let ev = evidence(&inc, payments_at, 30, (0.0, 0.01));
    let page = report::html(&inc, Some(&ev));
    check(&page, "tests/golden/payments_errors.html");
    check_chart(&page, &inc);
    assert!(page.contains("<p class=\"status resolved\"><strong>Resolved</strong>"));
}

#[test]
fn hostile_label_html_report() {
    let inc = payments_hostile_label();
    let ev = evidence(&inc, hostile_at, 30, (0.0, 0.01));
    let page = report::html(&inc, Some(&ev));
    check(&page, "tests/golden/payments_hostile_label.html");
    check_chart(&page, &inc);
    assert!(inc
        .actions
        .iter()
        .any(|a| a.decision.label() == "invalid_label_value"));
}

/// Inventory's request rate gets five times noisier from minute 20 (a
/// variance change), around the same mean; it never goes below zero.
fn noisier_at(m: i64) -> (f64, Option<(i64, f64)>) {
    let wobble = if m % 2 == 0 { 1.0 } else { -1.0 };
    if m < 20 {
        (50.0 + 2.0 * wobble, None)
    } else {
        (
            50.0 + 20.0 * wobble * (1.0 + (m % 3) as f64 / 4.0),
            Some((20, 0.97)),
        )
    }
}

/// A variance change is described as one (not "above"), its non-negative
/// series has no band below zero, and every number is for people.
#[test]
fn noisier_request_rate_html_report() {
    let inc = first_incident(
        "http_request_rate",
        "inventory",
        "inventory-0",
        60,
        noisier_at,
    );
    // The detector's band before the onset reached below zero.
    let ev = evidence(&inc, noisier_at, 60, (-20.0, 60.0));
    let page = report::html(&inc, Some(&ev));
    check(&page, "tests/golden/inventory_noisier.html");
    check_chart(&page, &inc);
    assert!(page.contains("inventory http_request_rate noisier: spread"));
    let md = report::markdown_with(&inc, Some(&ev));
    check(&md, "tests/golden/inventory_noisier.md");
    // The band's polygon stays at or above the y of value 0.
    let svg = &page[page.find("<svg").unwrap()..];
    let band = svg.split("class=\"band\" points=\"").nth(1).unwrap();
    let band = band.split('"').next().unwrap();
    let zero_y = svg
        .split("class=\"tick\"")
        .filter_map(|t| {
            let y: f64 = t.split("y=\"").nth(1)?.split('"').next()?.parse().ok()?;
            let label = t.split('>').nth(1)?.split('<').next()?;
            (label == "0").then_some(y - 4.0)
        })
        .next()
        .expect("a 0 tick");
    for pt in band.split(' ') {
        let y: f64 = pt.split(',').nth(1).unwrap().parse().unwrap();
        assert!(
            y <= zero_y + 0.05,
            "band point {pt} below zero (y of 0 is {zero_y})"
        );
    }
}

#[test]
fn a_report_without_evidence_has_no_chart() {
    let inc = payments_errors();
    let page = report::html(&inc, None);
    let elements = parse_xml(&page);
    assert!(!elements.iter().any(|e| e.name == "svg"));
    assert!(page.contains("No samples were recorded for this incident"));
    let empty = report::html(&inc, Some(&Evidence::default()));
    assert_eq!(empty, page);
}

#[test]
fn markup_in_labels_and_text_stays_text() {
    // A label value, a rule description and a verification detail could all
    // carry markup; none may reach the page as markup.
    let set = examples();
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: true,
            await_actions: false,
        },
    );
    let l = labels(
        "http_error_ratio",
        "<script>alert(1)</script>",
        "x\"><img src=x onerror=alert(2)>&amp;",
    );
    replay(&mut engine, "http_error_ratio", &l, 30, hostile_at);
    let mut inc = engine.finish(T0 + 30 * MIN).remove(0);
    inc.description = Some("</p><script>alert(3)</script>\u{1}".to_owned());
    let ev = evidence(&inc, hostile_at, 30, (0.0, 0.01));
    let page = report::html(&inc, Some(&ev));
    let elements = check_chart(&page, &inc);
    assert!(!elements
        .iter()
        .any(|e| e.name == "script" || e.name == "img"));
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;&amp;amp;"));
    assert!(!page.contains('\u{1}'));
    let feed = report::atom(
        std::slice::from_ref(&inc),
        "http://127.0.0.1:9090/feed.atom",
        T0 + 30 * MIN,
    );
    parse_xml(&feed);
    assert!(!feed.contains("<script"));
}

/// The three incidents of the interleaved run (one still open).
fn interleaved() -> Vec<Incident> {
    let set = examples();
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: true,
            await_actions: false,
        },
    );
    let checkout = labels("http_latency_p99_seconds", "checkout", "checkout-0");
    let payments = labels("http_error_ratio", "payments", "payments-0");
    for m in 0..60 {
        for (signal, l, at) in [
            (
                "http_latency_p99_seconds",
                &checkout,
                checkout_at as Scenario,
            ),
            ("http_error_ratio", &payments, payments_at),
        ] {
            replay_one(&mut engine, signal, l, m, at);
        }
    }
    engine.finish(T0 + 60 * MIN)
}

/// Feeds minute `m` of a scenario.
fn replay_one(
    engine: &mut Engine,
    signal: &str,
    labels: &BTreeMap<String, String>,
    m: i64,
    at: Scenario,
) {
    let (value, ex) = at(m);
    let excursion = ex.map(|(onset, peak_score)| Excursion {
        onset_ms: T0 + onset * MIN,
        above: true,
        peak_score,
        peer_z: None,
        first: onset == m,
        in_band: false,
        band: (f64::NEG_INFINITY, f64::INFINITY),
    });
    let scored = Scored {
        score: excursion.map_or(0.3, |e| e.peak_score),
        excursion,
    };
    engine.observe(&Observation {
        signal,
        labels,
        ts_ms: T0 + m * MIN,
        value,
        scored,
    });
}

#[test]
fn atom_feed_of_closed_incidents() {
    let incidents = interleaved();
    let feed = report::atom(&incidents, "http://127.0.0.1:9090/feed.atom", T0 + 60 * MIN);
    check(&feed, "tests/golden/feed.atom");
    let elements = parse_xml(&feed);
    assert_eq!(elements[0].name, "feed");
    // RFC 4287 4.1.1: a feed has an id, a title, an updated and an author
    // (or every entry has one); 4.1.2: each entry has id, title, updated.
    let top: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    for required in ["id", "title", "updated", "author", "link"] {
        assert!(top.contains(&required), "{required}");
    }
    let closed = incidents.iter().filter(|i| i.resolved_ms.is_some()).count();
    assert_eq!(closed, 2, "the latency incident is still open");
    assert_eq!(top.iter().filter(|n| **n == "entry").count(), closed);
    assert!(feed.contains("<id>urn:heal:incident:inc-000001</id>"));
    assert!(feed.contains("href=\"http://127.0.0.1:9090/incidents/inc-000001\""));
    assert!(
        !feed.contains("inc-000003"),
        "open incidents are not in the feed"
    );
    assert!(feed.contains("<updated>2026-03-01T00:13:00Z</updated>"));
}

#[test]
fn atom_entry_links_can_point_at_files() {
    let incidents = interleaved();
    let feed = report::atom_linked(
        &incidents,
        "file:///tmp/report/feed.atom",
        T0 + 60 * MIN,
        &|i| format!("{}.html", i.id),
    );
    parse_xml(&feed);
    assert!(feed.contains("href=\"inc-000001.html\""));
    assert!(report::atom(&[], "urn:x", 0).contains("<updated>1970-01-01T00:00:00Z</updated>"));
}

#[test]
fn an_incident_its_peers_fired_says_so_in_every_format() {
    let mut inc = checkout_latency();
    assert!(
        !report::json_line(&inc).contains("peer_z"),
        "absent when None"
    );
    assert!(!report::markdown(&inc).contains("| Cause |"));
    inc.peer_z = Some(8.123);
    assert!(report::json_line(&inc).contains(r#""peer_z":8.123,"chain_len""#));
    assert!(report::markdown(&inc).contains("| Cause | differs from its siblings (robust z 8.1) |"));
    assert!(report::html(&inc, None)
        .contains("<tr><th>Cause</th><td>differs from its siblings (robust z 8.1)</td></tr>"));
}

#[test]
fn markdown_escapes_script_tags_newlines_and_controls_in_label_values() {
    // Issue 10, 5: a `<script>` service label appeared raw in inc-*.md and a
    // newline in it broke the heading.
    let service = "<script>alert(1)</script>\n# owned\r\u{1b}[2J";
    let md = report::markdown(&first_incident(
        "http_error_ratio",
        service,
        "payments-0; <b>x</b>\n",
        30,
        payments_at,
    ));
    assert!(!md.contains("<script>") && !md.contains("<b>"), "{md}");
    assert!(!md.contains('\r') && !md.contains('\u{1b}'), "{md}");
    let mut lines = md.lines();
    assert_eq!(
        lines.next(),
        Some(
            r"# inc-000001: &lt;script&gt;alert(1)&lt;/script&gt;\n# owned\r\u{1b}\[2J http_error_ratio above its normal band (critical)"
        )
    );
    assert_eq!(lines.next(), Some(""), "the heading is one line");
    // No line of the report starts a heading of the label's making.
    assert!(!md.lines().any(|l| l.starts_with("# owned")), "{md}");
    // Every table row is still one line with its two cells.
    for line in md
        .lines()
        .filter(|l| l.starts_with("| Service") || l.starts_with("| Series"))
    {
        assert_eq!(line.matches(" | ").count(), 1, "{line}");
    }
}

/// The log evidence of an incident on a log signal: the templates that
/// moved and example lines, one of them hostile (markup, a fence, a
/// newline that would end a Markdown code block, a control character);
/// none of it acts as markup in either format.
#[test]
fn log_evidence_in_markdown_and_html() {
    let inc = payments_errors();
    let mut ev = evidence(&inc, payments_at, 30, (0.0, 0.01));
    let moves = [
        TemplateMove {
            template_id: "3f9a0c1d2e4b5a69".into(),
            template: "connection to <*> refused (attempt <*>); served from cache".into(),
            before: 0.0,
            during: 24.0,
        },
        TemplateMove {
            template_id: "0b1c2d3e4f5a6b7c".into(),
            template: "GET / <*> in <*> ms".into(),
            before: 50.0,
            during: 47.0,
        },
    ];
    let lines = [
        "2026-03-01 00:12:00,101 ERROR payments.db: connection to 10.0.0.7:5432 refused (attempt 1); served from cache".to_owned(),
        "2026-03-01 00:12:00,340 ERROR payments.db: <script>alert(1)</script> | [x](y) ```\n## not a heading\u{1}".to_owned(),
    ];
    ev.logs = Some(LogEvidence::default());
    ev.logs
        .as_mut()
        .unwrap()
        .add(inc.opened_ms, 24, &lines, &moves);
    let md = report::markdown_with(&inc, Some(&ev));
    check(&md, "tests/golden/payments_log_evidence.md");
    assert!(md.contains("## What the log said"));
    // Every physical line of the hostile example is inside the code block.
    assert!(md.contains("\n    ## not a heading\u{fffd}\n"), "{md}");
    assert!(!md.contains("\n## not a heading"));
    let page = report::html(&inc, Some(&ev));
    check(&page, "tests/golden/payments_log_evidence.html");
    let elements = check_chart(&page, &inc);
    assert!(!elements.iter().any(|e| e.name == "script"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("<td><code>connection to &lt;*&gt; refused (attempt &lt;*&gt;); served from cache</code></td>"));
    // The store keeps it as JSON and gives it back the same.
    let json = serde_json::to_string(&ev).unwrap();
    assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), ev);
}
