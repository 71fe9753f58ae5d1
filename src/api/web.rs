//! The incident feed as web pages, for people at 3 a.m.: `GET /` lists
//! incidents with filters (service, signal, rule, status, outcome, time
//! range) and pages, each linking to its report (`/incidents/ID`);
//! `GET /silences` and `GET /approvals` list what mutes heal and what
//! waits for a person, with forms to add and expire silences and to
//! approve a parked step.
//!
//! **No build step, no external assets.** The pages are written here with
//! the reports' style sheet inline; the one script (`/static/heal.js`,
//! served by heal, a few lines) only submits a filter when a choice changes
//! and remembers the token for the tab. Everything works without it: the
//! filters have a button, the forms post plainly.
//!
//! **Changes behind the token.** A form carries the API token in a
//! password field (a browser cannot add a bearer header without script);
//! the bearer header is taken too. Without a configured token, changes are
//! refused, as over the JSON API. Every text is escaped
//! ([`remediate::report::escape`]); the pages send a Content-Security-Policy
//! that allows heal's own script and nothing from elsewhere.
//!
//! `heal serve` (a store with no watch running) serves the same pages:
//! silences come from the store's guard state, read-only, and approving
//! or expiring says that it needs the `heal watch` that owns the store.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Form;
use remediate::engine::{EngineEvent, Silence};
use remediate::report::{escape, STYLE};
use remediate::time::rfc3339;
use serde::Deserialize;
use store::{Facets, IncidentPage};

use super::feed::{filter, with_store, ListQuery};
use super::{ApiState, NO_WATCH};
use crate::live::{ChangeError, Command};

/// The pages' routes.
pub(crate) fn routes(api: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/", get(incidents))
        .route("/silences", get(silences).post(add_silence))
        .route("/silences/{id}/expire", post(expire_silence))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}/approve", post(approve))
        .route("/static/heal.js", get(script))
        .with_state(api)
}

/// The pages' one script: filters submit when a choice changes; the token
/// typed in one form fills the others for this tab (sessionStorage, gone
/// when the tab closes). Nothing depends on it.
const SCRIPT: &str = r#"'use strict';
document.querySelectorAll('form.filters select').forEach(function (s) {
  s.addEventListener('change', function () { s.form.submit(); });
});
var saved = sessionStorage.getItem('heal-token');
document.querySelectorAll('input[name=token]').forEach(function (t) {
  if (saved && !t.value) { t.value = saved; }
  t.form.addEventListener('submit', function () {
    if (t.value) { sessionStorage.setItem('heal-token', t.value); }
  });
});
"#;

const PAGE_STYLE: &str = "
nav { display: flex; gap: 1.2rem; align-items: baseline; border-bottom: 1px solid #d0d7de; padding-bottom: 0.5rem; }
nav .brand { font-weight: 700; }
nav a.here { font-weight: 600; text-decoration: none; color: #1f2328; }
form.filters { display: flex; flex-wrap: wrap; gap: 0.6rem 1rem; align-items: end; margin: 1rem 0; }
form.filters label, form.change label { display: flex; flex-direction: column; font-size: 0.85rem; color: #57606a; }
form.change { display: flex; flex-wrap: wrap; gap: 0.4rem 0.8rem; align-items: end; }
input, select, button, textarea { font: inherit; font-size: 0.9rem; }
.error { background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px; padding: 0.5rem 0.8rem; }
.done { background: #dafbe1; border: 1px solid #4ac26b; border-radius: 6px; padding: 0.5rem 0.8rem; }
.pager { margin: 1rem 0; display: flex; gap: 1.5rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table#incidents th, table#incidents td.nowrap { overflow-wrap: normal; white-space: nowrap; }
";

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// A whole page: `here` is the nav entry to mark.
fn page(status: StatusCode, title: &str, here: &str, body: &str) -> Response {
    let mut nav = String::new();
    for (href, name) in [
        ("/", "Incidents"),
        ("/silences", "Silences"),
        ("/approvals", "Approvals"),
        ("/feed.atom", "Atom feed"),
    ] {
        let class = if name == here { " class=\"here\"" } else { "" };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{name}</a>");
    }
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>{title} · heal</title><style>{STYLE}{PAGE_STYLE}</style></head>\
         <body><nav><span class=\"brand\">heal</span>{nav}</nav>\n<h1>{title}</h1>\n{body}\
         <script src=\"/static/heal.js\"></script></body></html>\n",
        title = escape(title),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// A page that only says something (a refusal, a result), with a way back.
fn notice(
    status: StatusCode,
    title: &str,
    here: &str,
    class: &str,
    text: &str,
    back: &str,
) -> Response {
    page(
        status,
        title,
        here,
        &format!(
            "<p class=\"{class}\">{}</p><p><a href=\"{back}\">Back</a></p>",
            escape(text)
        ),
    )
}

/// `?a=b&c=d` with each value escaped for a URL, empty values left out.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&query_path(v));
    }
    out
}

/// The list page's query: the feed's, every field optional and an empty
/// one (a form's "any") meaning none.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PageQuery {
    service: String,
    signal: String,
    rule: String,
    status: String,
    outcome: String,
    since: String,
    until: String,
    cursor: String,
    limit: String,
}

impl PageQuery {
    fn pairs(&self) -> [(&'static str, &str); 8] {
        [
            ("service", &self.service),
            ("signal", &self.signal),
            ("rule", &self.rule),
            ("status", &self.status),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
            ("limit", &self.limit),
        ]
    }
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A `<select>` of `choices`, `chosen` selected, "any" first.
fn select(name: &str, label: &str, choices: &[String], chosen: &str) -> String {
    let mut out = format!("<label>{label}<select name=\"{name}\"><option value=\"\">any</option>");
    let mut listed = false;
    for c in choices {
        let sel = if c == chosen {
            listed = true;
            " selected=\"selected\""
        } else {
            ""
        };
        let _ = write!(out, "<option{sel}>{}</option>", escape(c));
    }
    // A value from the URL that no incident carries stays shown.
    if !listed && !chosen.is_empty() {
        let _ = write!(
            out,
            "<option selected=\"selected\">{}</option>",
            escape(chosen)
        );
    }
    out.push_str("</select></label>");
    out
}

fn incidents_body(q: &PageQuery, facets: &Facets, found: Result<&IncidentPage, &str>) -> String {
    let mut b = String::from("<form class=\"filters\" method=\"get\" action=\"/\">");
    b.push_str(&select("service", "Service", &facets.services, &q.service));
    b.push_str(&select("signal", "Signal", &facets.signals, &q.signal));
    b.push_str(&select("rule", "Rule", &facets.rules, &q.rule));
    let fixed = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    b.push_str(&select(
        "status",
        "Status",
        &fixed(&["open", "resolved", "closed"]),
        &q.status,
    ));
    b.push_str(&select(
        "outcome",
        "Outcome",
        &fixed(&["recovered", "worse", "not_recovered", "none"]),
        &q.outcome,
    ));
    for (name, label, v) in [
        ("since", "Opened since", &q.since),
        ("until", "Opened before", &q.until),
    ] {
        let _ = write!(
            b,
            "<label>{label}<input name=\"{name}\" value=\"{}\" placeholder=\"-24h or 2026-12-01T00:00:00Z\" size=\"22\"/></label>",
            escape(v)
        );
    }
    if !q.limit.is_empty() {
        let _ = write!(
            b,
            "<input type=\"hidden\" name=\"limit\" value=\"{}\"/>",
            escape(&q.limit)
        );
    }
    b.push_str("<button type=\"submit\">Filter</button><a href=\"/\">Clear</a></form>\n");
    let page = match found {
        Ok(p) => p,
        Err(e) => {
            let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>", escape(e));
            return b;
        }
    };
    if page.incidents.is_empty() {
        b.push_str("<p class=\"muted\" id=\"count\">No incident matches.</p>");
    } else {
        let n = page.incidents.len();
        let more = if page.next_cursor.is_some() {
            ", more on the next page"
        } else {
            ""
        };
        let _ = write!(
            b,
            "<p class=\"muted\" id=\"count\">{n} incident{} on this page{more}, newest first.</p>",
            if n == 1 { "" } else { "s" }
        );
        b.push_str(
            "<table id=\"incidents\"><thead><tr><th>Incident</th><th>Opened (UTC)</th><th>Service</th><th>Signal</th>\
             <th>Rule</th><th>Severity</th><th>Status</th><th>Outcome</th><th>Steps</th><th>Peak score</th></tr></thead><tbody>",
        );
        for i in &page.incidents {
            let id = escape(&i.id);
            let _ = write!(
                b,
                "<tr><td class=\"nowrap\"><a href=\"/incidents/{}\">{id}</a></td><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td class=\"num\" title=\"performed / planned\">{} / {}</td><td class=\"num\">{:.2}</td></tr>",
                query_path(&i.id),
                rfc3339(i.opened_ms),
                escape(&i.service),
                escape(&i.signal),
                escape(&i.rule),
                i.severity.as_str(),
                i.status.as_str(),
                i.outcome.as_str(),
                i.performed,
                i.steps,
                i.peak_score,
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<div class=\"pager\">");
    if !q.cursor.is_empty() {
        let _ = write!(
            b,
            "<a href=\"/{}\">First page</a>",
            escape(&query_string(&q.pairs()))
        );
    }
    if let Some(next) = &page.next_cursor {
        let mut pairs = q.pairs().to_vec();
        pairs.push(("cursor", next));
        let _ = write!(
            b,
            "<a href=\"/{}\" rel=\"next\" id=\"next\">Next page</a>",
            escape(&query_string(&pairs))
        );
    }
    b.push_str("</div>");
    b
}

/// A value percent-encoded for a URL path segment or query (an incident
/// id is `inc-NNNNNN`, but a store is data: anything else is encoded).
fn query_path(id: &str) -> String {
    stdx::text::percent_encode(id, b"")
}

async fn incidents(
    State(api): State<ApiState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return notice(
                StatusCode::BAD_REQUEST,
                "Incidents",
                "Incidents",
                "error",
                &e.body_text(),
                "/",
            )
        }
    };
    let limit = match q.limit.trim() {
        "" => Ok(None),
        n => n
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("limit {n:?}: expected a number of incidents per page")),
    };
    let asked = limit.and_then(|limit| {
        filter(
            ListQuery {
                service: some(&q.service),
                signal: some(&q.signal),
                rule: some(&q.rule),
                since: some(&q.since),
                until: some(&q.until),
                status: some(&q.status),
                outcome: some(&q.outcome),
                limit,
                cursor: some(&q.cursor),
            },
            api.clock.now_ms(),
        )
    });
    let read = with_store(api.db.clone(), move |s| {
        let facets = s.facets().map_err(|e| e.to_string())?;
        let page = match asked {
            Ok(f) => Ok(s.list(&f).map_err(|e| e.to_string())?),
            Err(e) => Err(e),
        };
        Ok((facets, page))
    })
    .await;
    match read {
        Ok((facets, Ok(p))) => page(
            StatusCode::OK,
            "Incidents",
            "Incidents",
            &incidents_body(&q, &facets, Ok(&p)),
        ),
        Ok((facets, Err(e))) => page(
            StatusCode::BAD_REQUEST,
            "Incidents",
            "Incidents",
            &incidents_body(&q, &facets, Err(&e)),
        ),
        Err(r) => {
            let status = r.status();
            let text = if status == StatusCode::NOT_FOUND {
                "No incident store: start heal watch with --db FILE (or heal serve --db FILE)."
                    .to_owned()
            } else {
                format!("The incident store could not be read ({status}); heal's log says why.")
            };
            notice(status, "Incidents", "Incidents", "error", &text, "/")
        }
    }
}

/// A form's token field, or the bearer header.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenForm {
    token: String,
    by: String,
    matchers: String,
    duration: String,
    comment: String,
}

/// Whether the request carries the API token; the refusal page otherwise.
#[allow(clippy::result_large_err)]
fn authorized(
    api: &ApiState,
    headers: &HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
    here: &str,
    back: &str,
) -> Result<TokenForm, Response> {
    // A body that is no form has no token: refused like a missing one.
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let refuse = |status, text: &str| Err(notice(status, "Refused", here, "error", text, back));
    let Some(expected) = &api.token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: changes are disabled on this heal (start it with --api-token-env VAR). Nothing was changed.",
        );
    };
    let given = form.token.trim();
    if daemons::bearer_matches(headers, expected)
        || (!given.is_empty() && daemons::constant_time_eq(given.as_bytes(), expected.as_bytes()))
    {
        Ok(form)
    } else {
        refuse(
            StatusCode::UNAUTHORIZED,
            "Refused: the API token is missing or wrong. Nothing was changed.",
        )
    }
}

/// The decider's answer, or the page saying why there is none.
async fn ask_page<T>(
    api: &ApiState,
    here: &str,
    back: &str,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    if api.commands.is_none() {
        return Err(notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not here",
            here,
            "error",
            NO_WATCH,
            back,
        ));
    }
    super::ask(api, make).await.map_err(|_| {
        notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            here,
            "error",
            "heal is shutting down.",
            back,
        )
    })
}

fn token_field() -> &'static str {
    "<label>API token<input type=\"password\" name=\"token\" autocomplete=\"current-password\" required=\"required\" size=\"16\"/></label>"
}

fn silences_body(list: &[Silence], now_ms: i64, live: bool) -> String {
    let mut b = String::new();
    if !live {
        let _ = write!(b, "<p class=\"muted\">{}</p>", escape(NO_WATCH));
    }
    if list.is_empty() {
        b.push_str("<p class=\"muted\" id=\"count\">No silence is active or scheduled.</p>");
    } else {
        b.push_str(
            "<table id=\"silences\"><thead><tr><th>Silence</th><th>Mutes</th><th>From (UTC)</th><th>Until (UTC)</th>\
             <th>State</th><th>By</th><th>Why</th><th></th></tr></thead><tbody>",
        );
        for s in list {
            let state = if s.starts_ms > now_ms {
                "scheduled"
            } else {
                "active"
            };
            let matchers: Vec<String> = s.matchers.iter().map(|m| escape(&m.to_string())).collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>",
                escape(&s.id),
                matchers.join("</code>, <code>"),
                rfc3339(s.starts_ms),
                rfc3339(s.ends_ms),
                escape(&s.created_by),
                escape(&s.comment),
            );
            if live {
                let _ = write!(
                    b,
                    "<form class=\"change\" method=\"post\" action=\"/silences/{}/expire\">{}<button type=\"submit\">Expire</button></form>",
                    query_path(&s.id),
                    token_field()
                );
            }
            b.push_str("</td></tr>");
        }
        b.push_str("</tbody></table>");
    }
    if live {
        let _ = write!(
            b,
            "<h2>Add a silence</h2><form class=\"change\" method=\"post\" action=\"/silences\">\
             <label>Matchers (one per line: name=value, name!=value, name=~re)<textarea name=\"matchers\" rows=\"2\" cols=\"30\" required=\"required\"></textarea></label>\
             <label>For<input name=\"duration\" value=\"1h\" size=\"6\" required=\"required\"/></label>\
             <label>By<input name=\"by\" size=\"12\" required=\"required\"/></label>\
             <label>Why<input name=\"comment\" size=\"24\"/></label>{}<button type=\"submit\">Add</button></form>",
            token_field()
        );
    }
    b
}

async fn silences(State(api): State<ApiState>) -> Response {
    let now = api.clock.now_ms();
    let (list, live) = if api.commands.is_some() {
        match ask_page(&api, "Silences", "/silences", |reply| {
            Command::ListSilences { reply }
        })
        .await
        {
            Ok(l) => (l, true),
            Err(r) => return r,
        }
    } else {
        // heal serve: the silences the store's guard state holds.
        let read = with_store(api.db.clone(), move |s| {
            Ok(s.guard_state()
                .map_err(|e| e.to_string())?
                .map(|g| g.silences.into_iter().filter(|s| s.ends_ms > now).collect())
                .unwrap_or_default())
        })
        .await;
        match read {
            Ok(l) => (l, false),
            Err(_) => (Vec::new(), false),
        }
    };
    page(
        StatusCode::OK,
        "Silences",
        "Silences",
        &silences_body(&list, now, live),
    )
}

async fn add_silence(
    State(api): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match authorized(&api, &headers, form, "Silences", "/silences") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let body = super::NewSilence {
        matchers: form
            .matchers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        starts_at: None,
        duration: form.duration.trim().to_owned(),
        created_by: form.by.trim().to_owned(),
        comment: form.comment.trim().to_owned(),
    };
    let (matchers, starts_ms, ends_ms) = match super::check_new_silence(&body, api.clock.now_ms()) {
        Ok(v) => v,
        Err(e) => {
            return notice(
                StatusCode::BAD_REQUEST,
                "Not added",
                "Silences",
                "error",
                &e,
                "/silences",
            )
        }
    };
    let made = ask_page(&api, "Silences", "/silences", |reply| Command::AddSilence {
        matchers,
        starts_ms,
        ends_ms,
        by: body.created_by,
        comment: body.comment,
        reply,
    })
    .await;
    match made {
        Ok(Ok(s)) => notice(
            StatusCode::CREATED,
            "Silence added",
            "Silences",
            "done",
            &format!("{} added: {}", s.id, s.describe()),
            "/silences",
        ),
        Ok(Err(e)) => change_refused(e, StatusCode::CONFLICT, "Not done", "Silences", "/silences"),
        Err(r) => r,
    }
}

/// The page of a change the decider did not make: `refused` when the
/// engine said no, 500 when it could not persist it.
fn change_refused<E: std::error::Error>(
    e: ChangeError<E>,
    refused: StatusCode,
    title: &str,
    here: &str,
    back: &str,
) -> Response {
    let status = match e {
        ChangeError::NotPersisted(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ChangeError::Refused(_) => refused,
    };
    notice(status, title, here, "error", &e.to_string(), back)
}

async fn expire_silence(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(r) = authorized(&api, &headers, form, "Silences", "/silences") {
        return r;
    }
    match ask_page(&api, "Silences", "/silences", |reply| {
        Command::ExpireSilence { id, reply }
    })
    .await
    {
        Ok(Ok(s)) => notice(
            StatusCode::OK,
            "Silence expired",
            "Silences",
            "done",
            &format!("{} expired: {}", s.id, s.describe()),
            "/silences",
        ),
        Ok(Err(e)) => change_refused(e, StatusCode::CONFLICT, "Not done", "Silences", "/silences"),
        Err(r) => r,
    }
}

async fn approvals(State(api): State<ApiState>) -> Response {
    let mut b = String::new();
    let ids = if api.commands.is_some() {
        match ask_page(&api, "Approvals", "/approvals", |reply| {
            Command::ListApprovals { reply }
        })
        .await
        {
            Ok(ids) => ids,
            Err(r) => return r,
        }
    } else {
        let _ = write!(b, "<p class=\"muted\">{}</p>", escape(NO_WATCH));
        Vec::new()
    };
    if ids.is_empty() {
        b.push_str("<p class=\"muted\" id=\"count\">No step waits for approval.</p>");
        return page(StatusCode::OK, "Approvals", "Approvals", &b);
    }
    // What each incident is, from the store when there is one.
    let wanted = ids.clone();
    let known = with_store(api.db.clone(), move |s| {
        Ok(wanted
            .iter()
            .map(|id| s.incident(id).ok().flatten())
            .collect::<Vec<_>>())
    })
    .await
    .unwrap_or_else(|_| vec![None; ids.len()]);
    b.push_str(
        "<table id=\"approvals\"><thead><tr><th>Incident</th><th>Rule</th><th>Series</th><th>Waiting step</th><th></th></tr></thead><tbody>",
    );
    for (id, record) in ids.iter().zip(known) {
        let (rule, series, step) = record.map_or_else(Default::default, |r| {
            let step = r
                .incident
                .actions
                .iter()
                .rev()
                .find(|a| a.decision.label() == "awaiting_approval")
                .map(|a| a.summary.clone())
                .unwrap_or_default();
            (
                r.incident.rule.clone(),
                remediate::engine::series_selector(&r.incident.series),
                step,
            )
        });
        let _ = write!(
            b,
            "<tr><td><a href=\"/incidents/{path}\">{}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>\
             <form class=\"change\" method=\"post\" action=\"/approvals/{path}/approve\">\
             <label>By<input name=\"by\" size=\"10\" required=\"required\"/></label>{}<button type=\"submit\">Approve</button></form></td></tr>",
            escape(id),
            escape(&rule),
            escape(&series),
            escape(&step),
            token_field(),
            path = query_path(id),
        );
    }
    b.push_str("</tbody></table>");
    page(StatusCode::OK, "Approvals", "Approvals", &b)
}

async fn approve(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(incident): Path<String>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match authorized(&api, &headers, form, "Approvals", "/approvals") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let by = form.by.trim().to_owned();
    if by.is_empty() {
        return notice(
            StatusCode::BAD_REQUEST,
            "Not approved",
            "Approvals",
            "error",
            "Say who approves (By).",
            "/approvals",
        );
    }
    let id = incident.clone();
    match ask_page(&api, "Approvals", "/approvals", |reply| Command::Approve {
        incident,
        by,
        reply,
    })
    .await
    {
        Ok(Ok(events)) => {
            let decided: Vec<String> = events
                .iter()
                .filter_map(|e| match e {
                    EngineEvent::Planned { action, .. } => Some(format!(
                        "step {}: {} ({})",
                        action.step + 1,
                        action.summary,
                        action.decision.label()
                    )),
                    _ => None,
                })
                .collect();
            notice(
                StatusCode::OK,
                "Approved",
                "Approvals",
                "done",
                &format!("{id} approved. {}", decided.join("; ")),
                "/approvals",
            )
        }
        Ok(Err(e)) => change_refused(
            e,
            StatusCode::NOT_FOUND,
            "Not approved",
            "Approvals",
            "/approvals",
        ),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_escape_values_and_leave_empty_ones_out() {
        assert_eq!(
            query_string(&[("service", "web&x=<1>"), ("rule", ""), ("cursor", "5:7")]),
            "?service=web%26x%3D%3C1%3E&cursor=5%3A7"
        );
        assert_eq!(query_string(&[("a", "")]), "");
        assert_eq!(query_path("inc-000001"), "inc-000001");
        assert_eq!(query_path("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn a_hostile_value_in_a_filter_stays_text() {
        let facets = Facets {
            services: vec!["<script>alert(1)</script>".into()],
            ..Facets::default()
        };
        let q = PageQuery {
            rule: "\"><img src=x onerror=alert(1)>".into(),
            ..PageQuery::default()
        };
        let html = incidents_body(&q, &facets, Err("bad <b>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("bad &lt;b&gt;"), "{html}");
    }
}
