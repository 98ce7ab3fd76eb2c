//! One signed request, the credentials fetches, and the clock skew
//! correction (docs/aws.md, "Clock skew"): a refusal whose `Date` header is
//! minutes from the time we signed with gives the offset to AWS's clock.

use super::{Client, Credentials, Error};
use crate::aws::credentials::{providers, Source};
use crate::aws::error::{is_throttling_code, AwsError, Layer};
use crate::aws::http::{HttpRequest, Transport};
use crate::aws::query::{encode_form, read_answer, with_id, Action, Params, Parser, WithId};
use crate::aws::sign::sign;
use crate::aws::sts::AssumeRoleWithWebIdentity;
use crate::clock::Clock;
use crate::metrics;
use log::debug;
use std::time::{Duration, Instant, SystemTime};

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
// The SDK for Java's; AWS allows 5 minutes at least.
const SKEW_THRESHOLD_MS: u64 = 4 * 60 * 1000;

impl<T: Transport> Client<T> {
    pub(super) fn aws_time(&self, clock: &dyn Clock) -> SystemTime {
        shift(clock.wall(), self.offset.get())
    }

    /// Sends `action` once (unsigned without `creds`) by `until`: a thin
    /// generic wrapper over [`Client::exchange`].
    pub(super) fn query<A: Action>(
        &self,
        action: &A,
        creds: Option<&Credentials>,
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<WithId<A::Output>, Error> {
        let mut value = None;
        let what = (A::NAME, A::SERVICE);
        let request_id = self.exchange(what, &action.form(), creds, until, clock, &mut |r| {
            value = Some(A::parse(r)?);
            Ok(())
        })?;
        with_id(A::NAME, value, request_id)
    }

    /// Sends a request, signed with `creds`, parses the answer with `parse`, learns AWS's time
    /// from a refusal, counts the request in the metrics.
    pub(super) fn exchange(
        &self,
        (name, service): (&str, &str),
        form: &Params,
        creds: Option<&Credentials>,
        until: Instant,
        clock: &dyn Clock,
        parse: Parser,
    ) -> Result<Option<String>, Error> {
        let s = &self.settings;
        let url = [&s.elbv2_url, &s.sts_url][usize::from(service == "sts")];
        let mut req = HttpRequest {
            method: "POST",
            url: format!("{url}/"),
            headers: vec![("content-type".into(), FORM.into())],
            body: encode_form(form).into_bytes(),
            // ureq sends nothing once the time is up.
            timeout: until.saturating_duration_since(clock.now()),
        };
        if let Some(creds) = creds {
            sign(&mut req, creds, &s.region, service, self.aws_time(clock))?;
        }
        let started = clock.now();
        let result = self.transport.send(name, &req).and_then(|r| {
            let answer = read_answer(name, r.status, &r.body, parse);
            if let Err(Error::Aws { error, .. }) = &answer {
                let fix = correction(error, r.date.as_deref(), clock.wall(), self.offset.get());
                self.offset.set(fix.unwrap_or(self.offset.get()));
            }
            answer
        });
        let took = clock.now().saturating_duration_since(started);
        record(name, result.as_ref().err(), took);
        result
    }

    /// The source's credentials, fetched once by `until`.
    fn fetch_source(&self, until: Instant, clock: &dyn Clock) -> Result<Credentials, Error> {
        let left = || until.saturating_duration_since(clock.now());
        match &self.settings.source {
            Source::Static(c) => Ok(c.clone()),
            Source::WebIdentity {
                role_arn,
                token_file,
                session_name,
            } => {
                let token = providers::read_token(token_file, "web identity token file")?;
                let action = AssumeRoleWithWebIdentity {
                    role_arn,
                    session_name,
                    token: &token,
                };
                self.query(&action, None, until, clock).map(|r| r.value)
            }
            Source::Container {
                url,
                token_file,
                token,
            } => {
                let token_file = token_file.as_deref();
                providers::container(url, token_file, token.as_ref(), &self.transport, &left)
            }
            Source::Imds { endpoint } => providers::imds(endpoint, &self.transport, &left),
        }
    }

    /// Fetches the signing credentials once by `until` into the cache
    /// ([`Cache::store`](crate::aws::credentials::Cache::store)): the
    /// source's, or the role's assumed with the source's (`base`: refreshed
    /// when due; with `background`, ahead of need).
    pub(super) fn fetch(
        &mut self,
        background: bool,
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<Credentials, Error> {
        let (now, source) = (self.aws_time(clock), self.settings.source.name());
        let Some(role) = self.settings.role.clone() else {
            let fetched = self.fetch_source(until, clock);
            let fetched = fetched.map_err(|e| fetch_error(Layer::Source, e));
            return self.cache.store(source, now, background, fetched);
        };
        let due = background && self.base.refresh_due().is_some_and(|due| due <= now);
        let base = match self.base.fresh(now, due) {
            Some(base) => base,
            None => {
                let fetched = self.fetch_source(until, clock);
                let fetched = fetched.map_err(|e| fetch_error(Layer::Base(source), e));
                self.base.store(source, now, due, fetched)?
            }
        };
        // An ExpiredToken here means the base credentials died early: the
        // client forgets them and tries again, after looking for an event.
        let fetched = self.query(&role, Some(&base), until, clock);
        let label = format!("role {}", role.arn);
        let fetched = fetched
            .map(|r| r.value)
            .map_err(|e| fetch_error(Layer::Role(role.arn), e));
        self.cache.store(&label, now, background, fetched)
    }
}

/// Counts a request and its outcome in the metrics (not one never sent).
fn record(name: &str, err: Option<&Error>, took: Duration) {
    let outcome = match err {
        None => "ok",
        Some(Error::Aws { error, .. }) => error.code.as_str(),
        Some(Error::Transport { .. }) => "transport_error",
        Some(Error::Response { .. }) => "invalid_response",
        Some(_) => return,
    };
    debug!("{name} -> {outcome} in {} ms", took.as_millis());
    let m = metrics::global();
    if is_throttling_code(outcome) || outcome == "HttpStatus429" {
        m.aws_throttled(name);
    }
    m.aws_request(name, outcome, took);
}

fn fetch_error(layer: Layer, error: Error) -> Error {
    let error = Box::new(error);
    Error::Fetch { layer, error }
}

/// `t` moved by `offset` ms (unchanged on overflow).
pub(super) fn shift(t: SystemTime, offset: i64) -> SystemTime {
    let by = Duration::from_millis(offset.unsigned_abs());
    let moved = match offset >= 0 {
        true => t.checked_add(by),
        false => t.checked_sub(by),
    };
    moved.unwrap_or(t)
}

/// The offset to sign with from now on, when `error` refuses our signature
/// and the answer's `date` is far from the time we signed with; `None`
/// otherwise, so a wrong secret key stays final.
fn correction(error: &AwsError, date: Option<&str>, now: SystemTime, current: i64) -> Option<i64> {
    const CODES: &str = "RequestTimeTooSkewed RequestExpired RequestInTheFuture \
        InvalidSignatureException SignatureDoesNotMatch AuthFailure";
    let refused = matches!(error.status, 401 | 403) || CODES.split(' ').any(|c| c == error.code);
    // The header is truncated to the second: AWS's time is its middle.
    let aws = parse_http_date(date?)?.checked_add(Duration::from_millis(500))?;
    let offset = match aws.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(behind) => i64::try_from(behind.duration().as_millis()).map_or(i64::MIN, |m| -m),
    };
    (refused && offset.abs_diff(current) >= SKEW_THRESHOLD_MS).then_some(offset)
}

/// `AWS's clock is 900 s ahead of the local one` (or `behind`).
pub(super) fn describe(offset: i64) -> String {
    let secs = offset.unsigned_abs().saturating_add(500) / 1000;
    let dir = if offset >= 0 { "ahead of" } else { "behind" };
    format!("AWS's clock is {secs} s {dir} the local one")
}

/// Parses an IMF-fixdate (`Tue, 14 Nov 2023 22:13:20 GMT`), as AWS sends.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    const MONTHS: &str = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec";
    let fields: Vec<&str> = s.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = fields[..] else {
        return None;
    };
    let month = MONTHS.split(' ').position(|m| m == month)? + 1;
    // humantime checks the rest (digits, ranges, leap years).
    humantime::parse_rfc3339(&format!("{year}-{month:02}-{day}T{time}Z")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_the_date_aws_sends_only() {
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(at(1_700_000_000))
        );
        for bad in [
            "",
            "Tue, 14 Nov 2023 22:13:20 UTC",
            "Tue, 4 Nov 2023 22:13:20 GMT",
            "Tue, 31 Nov 2023 22:13:20 GMT",
            "Tue, 14 nov 2023 22:13:20 GMT",
            "Tue, 14 Nov 2023 22:13 GMT",
            "Tuesday, 14-Nov-23 22:13:20 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    fn aws(status: u16, code: &str) -> AwsError {
        AwsError {
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        }
    }

    #[test]
    fn corrects_only_refusals_with_a_far_date() {
        let now = at(1_700_000_000);
        let ahead = Some("Tue, 14 Nov 2023 22:30:00 GMT");
        let refused = aws(400, "SignatureDoesNotMatch");
        assert_eq!(correction(&refused, ahead, now, 0), Some(1_000_500));
        assert_eq!(correction(&aws(403, "X"), ahead, now, 0), Some(1_000_500));
        let behind = Some("Tue, 14 Nov 2023 21:56:40 GMT");
        assert_eq!(correction(&refused, behind, now, 0), Some(-999_500));
        // Another error, no Date, a Date close to the time we signed with.
        assert_eq!(correction(&aws(400, "Throttling"), ahead, now, 0), None);
        assert_eq!(correction(&refused, None, now, 0), None);
        let close = Some("Tue, 14 Nov 2023 22:16:40 GMT");
        assert_eq!(correction(&refused, close, now, 0), None);
        assert_eq!(correction(&refused, ahead, now, 1_000_000), None);
        assert_eq!(
            describe(1_799_600),
            "AWS's clock is 1800 s ahead of the local one"
        );
        assert_eq!(
            describe(-900_000),
            "AWS's clock is 900 s behind the local one"
        );
        assert_eq!(shift(now, -1000), at(1_699_999_999));
    }
}
