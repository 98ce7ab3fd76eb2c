//! The listeners' HTTP/1.x: one request head (headers skipped), one answer,
//! `Connection: close`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers); larger gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait, after an answer, for the client to close its side.
const LINGER: Duration = Duration::from_millis(200);

/// A request's method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// As sent, e.g. `GET`.
    pub method: String,
    /// Without query or fragment, e.g. `/healthz`.
    pub path: String,
}

/// Reads one request head, which must arrive whole within `timeout`;
/// `Ok(None)` when it does not, or when the client closes first.
pub(super) fn read_head(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<Request>, Response> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_HEAD + 1];
    let mut len = 0;
    // parse_head decides before the buffer is full: it holds one byte too many.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ok(None);
        }
        match stream.read(&mut buf[len..]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => len += n,
        }
        if let Some(req) = parse_head(&buf[..len])? {
            return Ok(Some(req));
        }
    }
}

/// Parses a request head from the bytes read so far: `Ok(None)` while it
/// is incomplete. Leading empty lines are ignored (RFC 9112).
///
/// # Errors
/// The refusal of a head that is too large (431) or malformed (400).
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, Response> {
    let head = &buf[..buf.len().min(MAX_HEAD)];
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n');
    let head = &head[start.unwrap_or(head.len())..];
    // The request line is judged as soon as it ends; the head at an empty line.
    if let Some(eol) = head.iter().position(|&b| b == b'\n') {
        let bad = || Response::text(400, "bad request");
        let req = request_line(&head[..eol]).ok_or_else(bad)?;
        let rest = &head[eol..];
        if rest.windows(2).any(|w| w == b"\n\n") || rest.windows(3).any(|w| w == b"\n\r\n") {
            return Ok(Some(req));
        }
    }
    if buf.len() > MAX_HEAD {
        return Err(Response::text(431, "request head too large"));
    }
    Ok(None)
}

fn request_line(line: &[u8]) -> Option<Request> {
    let line = std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)).ok()?;
    let [method, target, version] = line.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    let ok = !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && target.bytes().all(|b| b.is_ascii_graphic())
        && (version == "HTTP/1.1" || version == "HTTP/1.0");
    let path = target.split(['?', '#']).next()?;
    ok.then(|| Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// An answer: code, body (sent ending with a newline), `Content-Type` and
/// the `Allow` of a 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub code: u16,
    pub(crate) body: String,
    pub(crate) content_type: &'static str,
    pub(crate) allow: Option<&'static str>,
}

impl Response {
    /// A plain-text answer.
    pub fn text(code: u16, body: &str) -> Self {
        Response {
            code,
            body: body.to_owned(),
            content_type: "text/plain; charset=utf-8",
            allow: None,
        }
    }

    /// 405, with the methods allowed.
    pub fn not_allowed(body: &str, allow: &'static str) -> Self {
        Response {
            allow: Some(allow),
            ..Response::text(405, body)
        }
    }
}

/// The bytes of an answer (headers only for HEAD).
pub fn render(resp: &Response, head_only: bool) -> Vec<u8> {
    let reason = match resp.code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let body = format!("{}\n", resp.body.strip_suffix('\n').unwrap_or(&resp.body));
    let allow = resp.allow.map(|a| format!("Allow: {a}\r\n"));
    format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\
         Connection: close\r\n\r\n{}",
        resp.code,
        resp.content_type,
        body.len(),
        allow.unwrap_or_default(),
        if head_only { "" } else { &body },
    )
    .into_bytes()
}

/// Writes `resp` and closes gracefully: what the client still sends is read
/// and dropped for a moment, so no reset destroys the answer in flight.
pub(super) fn write_and_close(s: &mut TcpStream, resp: &Response, head_only: bool) {
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    if s.write_all(&render(resp, head_only)).is_err() || s.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let end = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        // A zero timeout is an error: the loop ends at the deadline.
        let timeout = s.set_read_timeout(Some(left));
        if timeout.is_err() || matches!(s.read(&mut sink), Ok(0) | Err(_)) {
            break;
        }
    }
}
