//! Test doubles shared by the AWS layer's unit tests: a scripted transport
//! and its answers. The fake clock is [`crate::clock::testing::FakeClock`].

use super::error::{Error, TransportKind};
use super::http::{HttpRequest, HttpResponse, Transport};
use std::cell::RefCell;
use std::collections::VecDeque;

/// A transport answering from a script and recording what it was sent;
/// once the script is exhausted every send is a connect error.
pub struct Scripted {
    pub answers: RefCell<VecDeque<Result<HttpResponse, Error>>>,
    pub seen: RefCell<Vec<HttpRequest>>,
}

impl Scripted {
    pub fn new(answers: impl IntoIterator<Item = Result<HttpResponse, Error>>) -> Self {
        Scripted {
            answers: RefCell::new(answers.into_iter().collect()),
            seen: RefCell::new(Vec::new()),
        }
    }
}

impl Transport for &Scripted {
    fn send(&self, _action: &str, req: &HttpRequest) -> Result<HttpResponse, Error> {
        self.seen.borrow_mut().push(req.clone());
        self.answers.borrow_mut().pop_front().unwrap_or_else(|| {
            Err(Error::Transport {
                action: "x".into(),
                url: req.url.clone(),
                kind: TransportKind::Connect,
                detail: "script exhausted".into(),
            })
        })
    }
}

/// A 200 answer with `body`.
pub fn ok(body: &[u8]) -> Result<HttpResponse, Error> {
    status(200, body)
}

/// An answer with status `code` and `body`.
pub fn status(code: u16, body: &[u8]) -> Result<HttpResponse, Error> {
    Ok(HttpResponse {
        status: code,
        date: None,
        body: body.to_vec(),
    })
}

/// An answer with status `code`, a `Date` header and `body`.
pub fn dated(code: u16, date: &str, body: &[u8]) -> Result<HttpResponse, Error> {
    Ok(HttpResponse {
        status: code,
        date: Some(date.to_owned()),
        body: body.to_vec(),
    })
}
