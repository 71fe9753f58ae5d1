//! A minimal blocking HTTP/1.1 client with one deadline for the whole
//! exchange (connect, send, read to the end), which is what a load generator
//! and a health probe need: "did it answer within T?".

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response read; the lab's bodies are small, `/metrics` a few KiB.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether an error from [`request`] means the deadline passed.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// `GET path` on `addr` within `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "GET", path, b"", timeout)
}

/// `POST path` with an empty body on `addr` within `timeout`.
pub fn post(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "POST", path, b"", timeout)
}

/// Sends one request and reads the whole response before `timeout` has
/// passed. A deadline miss is an error of kind `TimedOut`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    request_with(addr, method, path, &[], body, timeout)
}

/// [`request`] with extra header lines (`("Authorization", "Bearer x")`,
/// `("Content-Type", ...)`), written as given: the caller's, never a
/// peer's, so not checked.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: heal-lab\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::with_capacity(1024);
    let mut buf = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "response too large",
                    ));
                }
                // Stop as soon as the announced body is complete, without
                // waiting for the server's close.
                if let Some(done) = complete_length(&raw) {
                    if raw.len() >= done {
                        raw.truncate(done);
                        break;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
            }
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw)
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
    } else {
        Ok(left)
    }
}

fn find_head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Total length of the response once its head is complete and it announces
/// a `Content-Length`.
fn complete_length(raw: &[u8]) -> Option<usize> {
    let end = find_head_end(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .map(|len| end + len)
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = find_head_end(raw).ok_or_else(|| bad("incomplete response head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nX-A: b\r\n\r\nno\n",
        )
        .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-a"), Some("b"));
        assert_eq!(r.body_text(), "no\n");
    }

    #[test]
    fn knows_when_the_body_is_complete() {
        assert_eq!(
            complete_length(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
            Some(40)
        );
        assert_eq!(
            complete_length(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"),
            None
        );
    }

    #[test]
    fn a_silent_server_is_a_timeout() {
        // Accepts (the kernel backlog does) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let err = get(addr, "/", Duration::from_millis(200)).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }
}
