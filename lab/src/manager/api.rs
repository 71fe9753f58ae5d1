//! The manager's control API, and its client for `heal-lab restart|stop|
//! start|status|shutdown` (what heal's exec actions and monit's `start
//! program`/`stop program` run, argv only).
//!
//! | request | answer (JSON) |
//! |---|---|
//! | `POST /restart/NAME` | `{"name","pid","port","took_ms","restarts"}`: SIGKILL if alive, start on the same port, wait for `listening` |
//! | `POST /start/NAME` | the same plus `"already_running"`; nothing is done if it runs |
//! | `POST /stop/NAME` | `{"name","stopped_pid"}` (`null` if it was not running); removes the pidfile |
//! | `GET /status` | `{"services":[{"name","pid","port","alive","restarts","last_exit"}]}` |
//! | `POST /shutdown` | `{"shutdown":true}`, then every child is killed and the manager exits 0 |
//!
//! Errors are `{"error": "..."}` with 404 (unknown service), 405 (wrong
//! method) or 500 (the service would not start).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::supervisor::{Started, Status, Supervisor};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{client, Peer, Request, Response};

/// Answers one control request.
pub fn handle(sup: &Arc<Supervisor>, req: &Request, _peer: &Peer<'_>) -> Response {
    let path = req.path.trim_end_matches('/');
    let (verb, name) = match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
        Some((verb, name)) => (verb, Some(name)),
        None => (path.trim_start_matches('/'), None),
    };
    let method = req.method.as_str();
    match (verb, name) {
        ("status", None) if method == "GET" => Response::json(200, status_json(&sup.status())),
        ("shutdown", None) if method == "POST" => {
            let sup = Arc::clone(sup);
            Response::json(200, r#"{"shutdown":true}"#).then(move || {
                sup.stop_all();
                note!("heal-lab up: shut down by the control API");
                std::process::exit(0)
            })
        }
        ("restart" | "start" | "stop", Some(name)) if method == "POST" => {
            let result = match verb {
                "restart" => sup.restart(name).map(|s| started_json(&s)),
                "start" => sup.start(name).map(|s| started_json(&s)),
                _ => sup.stop(name).map(|pid| {
                    format!(
                        r#"{{"name":{},"stopped_pid":{}}}"#,
                        json_str(name),
                        json_opt(pid)
                    )
                }),
            };
            match result {
                Ok(body) => Response::json(200, body),
                Err(e) => {
                    let status = if e.kind() == ErrorKind::Usage {
                        404
                    } else {
                        500
                    };
                    Response::json(
                        status,
                        format!(r#"{{"error":{}}}"#, json_str(&e.to_string())),
                    )
                }
            }
        }
        ("status" | "shutdown" | "restart" | "start" | "stop", _) => Response::json(
            405,
            r#"{"error":"method not allowed: GET /status, POST /restart|start|stop/NAME, POST /shutdown"}"#,
        ),
        _ => Response::json(404, r#"{"error":"not found"}"#),
    }
}

fn started_json(s: &Started) -> String {
    format!(
        r#"{{"name":{},"pid":{},"port":{},"took_ms":{:.1},"restarts":{},"already_running":{}}}"#,
        json_str(&s.name),
        s.pid,
        s.port,
        s.took.as_secs_f64() * 1000.0,
        s.restarts,
        s.already_running
    )
}

fn status_json(rows: &[Status]) -> String {
    let mut out = String::from(r#"{"services":["#);
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"name":{},"pid":{},"port":{},"alive":{},"restarts":{},"last_exit":{}}}"#,
            json_str(&r.name),
            json_opt(r.pid),
            r.port,
            r.alive,
            r.restarts,
            r.last_exit
                .as_deref()
                .map_or_else(|| "null".to_string(), json_str)
        );
    }
    out.push_str("]}");
    out
}

fn json_opt(v: Option<u32>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Calls the control API at `control`: `verb` is `restart`, `start`,
/// `stop`, `status` or `shutdown`, `name` the service for the first three.
/// Returns the answer's body; a refusal is an error with the API's message.
pub fn call(control: SocketAddr, verb: &str, name: Option<&str>) -> Result<String> {
    let (method, path) = match (verb, name) {
        ("status", _) => ("GET", "/status".to_string()),
        ("shutdown", _) => ("POST", "/shutdown".to_string()),
        (verb, Some(name)) => ("POST", format!("/{verb}/{name}")),
        (verb, None) => return Err(Error::usage(format!("{verb}: a service name is needed"))),
    };
    if let Some(name) = name {
        if !crate::service::valid_name(name) {
            return Err(Error::usage(format!(
                "{verb}: service name {name:?}: use letters, digits, '_', '-' or '.'"
            )));
        }
    }
    // A restart waits for the child's `listening` line (10 s at most).
    let response =
        client::request(control, method, &path, b"", Duration::from_secs(30)).map_err(|e| {
            Error::unavailable(format!(
                "{verb}{}: control API at {control} unreachable: {e}",
                name.map_or_else(String::new, |n| format!(" {n}"))
            ))
        })?;
    let body = response.body_text();
    if response.status == 200 {
        return Ok(body);
    }
    let message = extract_error(&body).unwrap_or_else(|| body.trim().to_string());
    let what = format!(
        "{verb}{}",
        name.map_or_else(String::new, |n| format!(" {n}"))
    );
    Err(Error::failed(format!(
        "{what}: {message} (HTTP {})",
        response.status
    )))
}

/// The message of an `{"error":"..."}` body (our own, simply escaped).
fn extract_error(body: &str) -> Option<String> {
    let rest = body
        .trim()
        .strip_prefix(r#"{"error":""#)?
        .strip_suffix(r#""}"#)?;
    Some(
        rest.replace("\\\"", "\"")
            .replace("\\n", "\n")
            .replace("\\\\", "\\"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn error_bodies_round_trip() {
        let body = format!(r#"{{"error":{}}}"#, json_str("unknown service \"x\""));
        assert_eq!(
            extract_error(&body).as_deref(),
            Some("unknown service \"x\"")
        );
    }

    #[test]
    fn status_rows_render() {
        let rows = [Status {
            name: "web".into(),
            pid: Some(7),
            port: 80,
            alive: false,
            restarts: 2,
            last_exit: Some("exit status: 1".into()),
        }];
        assert_eq!(
            status_json(&rows),
            r#"{"services":[{"name":"web","pid":7,"port":80,"alive":false,"restarts":2,"last_exit":"exit status: 1"}]}"#
        );
    }
}
