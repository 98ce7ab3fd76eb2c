//! A tiny HTTP/1.1 client for tests: one request on a new connection, or a
//! request written and a response read on a stream the test holds.

use crate::wire::{header_of, xml_text};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response read by [`http_request`] or [`read_response`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order, original case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// Body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Text of the first `<tag>` in the body.
    pub fn xml(&self, tag: &str) -> Option<String> {
        xml_text(&self.text(), tag)
    }
}

/// Write one HTTP/1.1 request. Adds `Host: 127.0.0.1:PORT` unless given, and
/// Content-Length for a body or a POST/PUT unless given.
pub fn write_request<W: Write, K: AsRef<str>, V: AsRef<str>>(
    stream: &mut W,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(K, V)],
    body: &[u8],
) -> io::Result<()> {
    let has = |name: &str| {
        headers
            .iter()
            .any(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{}: {}\r\n", k.as_ref(), v.as_ref()));
    }
    if !has("content-length") && (!body.is_empty() || method == "POST" || method == "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Read one HTTP/1.1 response (skipping 1xx). A body shorter than its
/// Content-Length is an `UnexpectedEof` error; without Content-Length the body
/// runs to EOF.
pub fn read_response<R: BufRead>(reader: &mut R) -> io::Result<HttpResponse> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("malformed status line"))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in headers",
                ));
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').ok_or_else(|| bad("malformed header"))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut body = Vec::new();
        match header_of(&headers, "content-length") {
            Some(len) => {
                let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
                body.resize(len, 0);
                reader.read_exact(&mut body)?;
            }
            None => {
                reader.read_to_end(&mut body)?;
            }
        }
        return Ok(HttpResponse {
            status,
            headers,
            body,
        });
    }
}

/// One request on a new connection to 127.0.0.1:`port` (with
/// `Connection: close` unless given; 10 s read timeout).
pub fn http_request<K: AsRef<str>, V: AsRef<str>>(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(K, V)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect();
    if header_of(&all, "connection").is_none() {
        all.push(("Connection".into(), "close".into()));
    }
    write_request(&mut stream, port, method, path, &all, body)?;
    read_response(&mut BufReader::new(stream))
}
