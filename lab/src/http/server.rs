//! A compact HTTP/1.1 server: one request per connection, one thread per
//! connection, a cap on concurrent connections.
//!
//! Why hand-written: the lab's services must behave like small daemons and
//! build in seconds; a thread per connection is also what makes a "hung"
//! handler realistic (the thread blocks, the accept loop goes on). Every
//! response carries `Connection: close`, so there is no keep-alive state.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body accepted; the lab's APIs take parameters in the query.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request or read the answer; a slow
/// client must not hold a connection slot forever.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string, e.g. `/fault/leak`.
    pub path: String,
    /// The raw query string without `?` (may be empty).
    pub query: String,
    /// Header names lowercased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, as long as `Content-Length` said.
    pub body: Vec<u8>,
}

impl Request {
    /// The value of query parameter `name`, if present. Values are not
    /// percent-decoded: the lab's parameters are numbers and names.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(&self.query, name)
    }
}

/// The value of `name` in a raw query string `a=1&b=2`.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Work to do once the response has been written and the connection closed,
/// e.g. exiting the process after answering `/fault/crash`.
pub type AfterResponse = Box<dyn FnOnce() + Send>;

/// A response to write.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header value.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Run after the answer was sent and the socket shut down.
    pub after: Option<AfterResponse>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("after", &self.after.is_some())
            .finish()
    }
}

impl Response {
    /// A `text/plain` response; a newline is appended when missing.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
            after: None,
        }
    }

    /// An `application/json` response from already serialised JSON.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        body.push('\n');
        Response {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
            after: None,
        }
    }

    /// Runs `f` once this response has been sent.
    pub fn then(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.after = Some(Box::new(f));
        self
    }
}

/// The client side of a connection as a handler sees it: lets a handler that
/// blocks on purpose notice that the client gave up.
#[derive(Debug)]
pub struct Peer<'a> {
    stream: &'a TcpStream,
}

impl Peer<'_> {
    /// Whether the client has closed its side of the connection (or it broke).
    /// Waits up to `wait` for news. Clients send nothing after their request,
    /// so any readable data is ignored and an end of stream means it left.
    pub fn gone(&self, wait: Duration) -> bool {
        if self
            .stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            return true;
        }
        let mut byte = [0u8; 1];
        match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => {
                // Pipelined garbage: drain it so the next peek can see an EOF.
                let mut sink = [0u8; 512];
                let _ = (&*self.stream).read(&mut sink);
                false
            }
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

/// What answers requests. Called on the connection's own thread.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: &Request, peer: &Peer<'_>) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request, &Peer<'_>) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: &Request, peer: &Peer<'_>) -> Response {
        self(request, peer)
    }
}

/// Accepts connections on `listener` forever, each on its own thread, at most
/// `max_connections` at a time; beyond that a connection gets a `503` at once
/// from the accept loop, so the server never stops answering altogether.
pub fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, max_connections: usize) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // EMFILE or a connection reset before accept: back off a little
            // instead of spinning, then go on.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = write_response(&stream, Response::text(503, "too many connections"));
            continue;
        }
        let handler = Arc::clone(&handler);
        let slot = ActiveGuard(Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _slot = slot;
                handle_connection(stream, &*handler);
            });
        if spawned.is_err() {
            // The guard moved into the closure was dropped with it.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Releases a connection slot when the connection's thread ends, even by panic.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn handle_connection<H: Handler + ?Sized>(stream: TcpStream, handler: &H) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let response = match read_request(&stream) {
        Ok(request) => handler.handle(&request, &Peer { stream: &stream }),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
        Err(e) => Response::text(400, format!("bad request: {e}")),
    };
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let after = write_response(&stream, response);
    if let Some(after) = after {
        after();
    }
}

/// Writes `response`, shuts the socket down, and hands back its `after` hook.
fn write_response(mut stream: &TcpStream, mut response: Response) -> Option<AfterResponse> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&response.body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    response.after.take()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Reads one request: request line, headers, `Content-Length` body.
fn read_request(stream: &TcpStream) -> io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut head_bytes = 0usize;
    let mut line = String::new();
    let mut read_line = |line: &mut String| -> io::Result<()> {
        line.clear();
        let n = (&mut reader)
            .take((MAX_HEAD_BYTES - head_bytes) as u64 + 1)
            .read_line(line)?;
        head_bytes += n;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if head_bytes > MAX_HEAD_BYTES {
            return Err(invalid("request head too large"));
        }
        Ok(())
    };
    read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("unsupported HTTP version"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        ..Request::default()
    };
    loop {
        read_line(&mut line)?;
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid("malformed header"));
        };
        request
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = match request.headers.iter().find(|(n, _)| n == "content-length") {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| invalid("bad content-length"))?,
        None => 0,
    };
    if length > MAX_BODY_BYTES {
        return Err(invalid("body too large"));
    }
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(request)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param("a=1&mb_per_s=20", "mb_per_s"), Some("20"));
        assert_eq!(query_param("a=1&flag", "flag"), Some(""));
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("ab=1", "a"), None);
    }

    #[test]
    fn text_responses_end_with_a_newline() {
        assert_eq!(Response::text(200, "ok").body, b"ok\n");
        assert_eq!(Response::text(200, "ok\n").body, b"ok\n");
    }

    #[test]
    fn serves_a_request_and_runs_the_after_hook() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let tx = std::sync::Mutex::new(tx);
        let handler = move |req: &Request, _: &Peer<'_>| {
            let tx = tx.lock().unwrap().clone();
            let seen = format!(
                "{} {} {} {}",
                req.method,
                req.path,
                req.query,
                String::from_utf8_lossy(&req.body)
            );
            Response::text(200, "hello").then(move || tx.send(seen).unwrap())
        };
        std::thread::spawn(move || serve(listener, Arc::new(handler), 4));
        let response =
            crate::http::client::request(addr, "POST", "/x?y=1", b"body", Duration::from_secs(5))
                .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body_text(), "hello\n");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            "POST /x y=1 body"
        );
    }
}
