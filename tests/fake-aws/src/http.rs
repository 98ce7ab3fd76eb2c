//! The HTTP/1.1 server: accept loop, one thread per connection, request
//! reading with limits, response writing. Keep-alive and Content-Length
//! bodies only.

use crate::routes::handle;
use crate::state::Shared;
use crate::time::http_date;
use crate::wire::header_of;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

/// Largest request head (request line + headers) in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body in bytes.
const MAX_BODY: u64 = 8 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Elb,
    Sts,
    Container,
    Imds,
    MissingAction,
    NotFound,
}

pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) version: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    pub(crate) fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.header("connection")
                .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if has("close") {
            false
        } else {
            self.version == "HTTP/1.1" || has("keep-alive")
        }
    }
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Declare a Content-Length 64 bytes longer than the body, then close.
    pub(crate) truncate: bool,
    pub(crate) error_code: Option<String>,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            truncate: false,
            error_code: None,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub(crate) enum ReadError {
    /// EOF or IO error: close quietly.
    Closed,
    /// Malformed request: answer this status and close.
    Bad(u16, &'static str),
}

pub(crate) fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let Ok(stream) = conn else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        next_id += 1;
        let id = next_id;
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, clone);
        }
        let for_thread = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("fake-aws-conn-{id}"))
            .spawn(move || {
                serve_connection(&for_thread, stream);
                for_thread
                    .conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        if spawned.is_err() {
            shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

pub(crate) fn serve_connection(shared: &Shared, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    while !shared.stopped() {
        let req = match read_request(&mut reader, &mut out) {
            Ok(Some(req)) => req,
            Ok(None) | Err(ReadError::Closed) => break,
            Err(ReadError::Bad(status, msg)) => {
                let resp = Response::new(status, "text/plain", format!("{msg}\n").into_bytes());
                let _ = write_response(&mut out, &resp, true, shared.now());
                break;
            }
        };
        if shared.stopped() {
            break;
        }
        let keep_alive = req.keep_alive();
        let Some(resp) = handle(shared, &req) else {
            break;
        };
        let close = !keep_alive || resp.truncate;
        if write_response(&mut out, &resp, close, shared.now()).is_err() || close {
            break;
        }
    }
    let _ = out.shutdown(Shutdown::Both);
}

pub(crate) fn read_line<R: BufRead>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(limit as u64)
        .read_until(b'\n', &mut buf)
        .map_err(|_| ReadError::Closed)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if buf.len() >= limit {
            ReadError::Bad(431, "request header line too long")
        } else {
            ReadError::Closed
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

pub(crate) fn read_request<R: BufRead>(
    reader: &mut R,
    out: &mut TcpStream,
) -> Result<Option<Request>, ReadError> {
    let mut blank = 0;
    let line = loop {
        match read_line(reader, 8192)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => {
                blank += 1;
                if blank > 8 {
                    return Err(ReadError::Bad(400, "empty request"));
                }
            }
            Some(l) => break String::from_utf8_lossy(&l).into_owned(),
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Bad(400, "malformed request method"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad(505, "HTTP version not supported"));
    }
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err(ReadError::Bad(400, "request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        let Some(h) = read_line(reader, MAX_HEAD)? else {
            return Err(ReadError::Closed);
        };
        if h.is_empty() {
            break;
        }
        total += h.len();
        if total > MAX_HEAD || headers.len() >= 200 {
            return Err(ReadError::Bad(431, "request header fields too large"));
        }
        if h[0] == b' ' || h[0] == b'\t' {
            return Err(ReadError::Bad(400, "obsolete header line folding"));
        }
        let h = String::from_utf8_lossy(&h).into_owned();
        let Some((name, value)) = h.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(ReadError::Bad(400, "malformed header name"));
        }
        headers.push((
            name.to_string(),
            value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(
            400,
            "Transfer-Encoding is not supported by the fake AWS server; send Content-Length",
        ));
    }
    let mut len: Option<u64> = None;
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("content-length") {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Bad(400, "invalid Content-Length"));
            }
            let n = v
                .parse::<u64>()
                .map_err(|_| ReadError::Bad(413, "body too large"))?;
            if len.is_some_and(|l| l != n) {
                return Err(ReadError::Bad(400, "conflicting Content-Length headers"));
            }
            len = Some(n);
        }
    }
    let len = len.unwrap_or(0);
    if len > MAX_BODY {
        return Err(ReadError::Bad(413, "body too large"));
    }
    if len > 0
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Closed)?;
    }
    let mut body = vec![0; len as usize];
    reader
        .read_exact(&mut body)
        .map_err(|_| ReadError::Closed)?;
    req.body = body;
    Ok(Some(req))
}

/// Writes `resp` with `date` (the fake's clock) as its `Date` header.
pub(crate) fn write_response(
    out: &mut TcpStream,
    resp: &Response,
    close: bool,
    date: SystemTime,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\n",
        resp.status,
        reason_phrase(resp.status),
        http_date(date)
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let declared = resp.body.len() + if resp.truncate { 64 } else { 0 };
    head.push_str(&format!("Content-Length: {declared}\r\n"));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&resp.body);
    out.write_all(&bytes)?;
    out.flush()
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}
