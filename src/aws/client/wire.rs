//! One signed request, the credentials fetches, and the clock check
//! (docs/aws.md, "Clock skew"): a refusal whose `Date` header is minutes
//! from our clock says the node's clock is off, a final error.

use super::{Client, Credentials, Error};
use crate::aws::credentials::{providers, Source};
use crate::aws::error::{is_throttling_code, AwsError, Layer};
use crate::aws::http::{HttpRequest, Transport};
use crate::aws::query::{encode_form, read_answer, Action, Params, Parser, WithId};
use crate::aws::sign::sign;
use crate::aws::sts::AssumeRoleWithWebIdentity;
use crate::clock::Clock;
use crate::metrics;
use log::debug;
use std::time::{Duration, Instant, SystemTime};

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
// The SDK for Java's skew threshold; AWS allows 5 minutes at least.
const SKEW_THRESHOLD_SECS: u64 = 4 * 60;

impl<T: Transport> Client<T> {
    /// Sends `action` once (unsigned without `creds`) by `until`: a thin
    /// generic wrapper over [`Client::exchange`].
    pub(super) fn query<A: Action>(
        &self,
        action: &A,
        creds: Option<&Credentials>,
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<WithId<A::Output>, Error> {
        let what = (A::NAME, A::SERVICE);
        A::read(|parse| self.exchange(what, &action.form(), creds, until, clock, parse))
    }

    /// Sends a request, signed with `creds`, parses the answer with `parse`,
    /// names a skewed clock in a refusal, counts the request in the metrics.
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
            sign(&mut req, creds, &s.region, service, clock.wall())?;
        }
        let started = clock.now();
        let result = self.transport.send(name, &req).and_then(|r| {
            let mut answer = read_answer(name, r.status, &r.body, parse);
            if let Err(Error::Aws { error, .. }) = &mut answer {
                if let Some(skew) = skewed(error, r.date.as_deref(), clock.wall()) {
                    error.message = skew;
                }
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
        let (now, source) = (clock.wall(), self.settings.source.name());
        let Some(role) = self.settings.role.clone() else {
            let fetched = in_layer(Layer::Source, self.fetch_source(until, clock));
            return self.cache.store(source, now, background, fetched);
        };
        let label = format!("role {}", role.arn);
        let due = background && self.base.refresh_due().is_some_and(|due| due <= now);
        let base = match self.base.fresh(now, due) {
            Some(base) => base,
            None => {
                let fetched = in_layer(Layer::Base(source), self.fetch_source(until, clock));
                match self.base.store(source, now, due, fetched) {
                    Ok(base) => base,
                    // The role's cached credentials may outlive the failure.
                    failed => return self.cache.store(&label, now, background, failed),
                }
            }
        };
        // An ExpiredToken here means the base credentials died early: the
        // client forgets them and tries again, after looking for an event.
        let fetched = self.query(&role, Some(&base), until, clock);
        let fetched = in_layer(Layer::Role(role.arn), fetched.map(|r| r.value));
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

/// A credentials fetch's error, saying which `layer` failed.
fn in_layer(layer: Layer, fetched: Result<Credentials, Error>) -> Result<Credentials, Error> {
    let boxed = fetched.map_err(Box::new);
    boxed.map_err(|error| Error::Fetch { layer, error })
}

/// When `error` refuses our signature and the answer's `date` is 4 minutes
/// or more from `now`, the message naming the offset (then AWS's, which a
/// 403 of another cause needs); `None` otherwise: a wrong secret key.
fn skewed(error: &AwsError, date: Option<&str>, now: SystemTime) -> Option<String> {
    const CODES: &str = "RequestTimeTooSkewed RequestExpired RequestInTheFuture \
        InvalidSignatureException SignatureDoesNotMatch AuthFailure";
    let refused = matches!(error.status, 401 | 403) || CODES.split(' ').any(|c| c == error.code);
    // The header is truncated to the second: AWS's time is its middle.
    let aws = parse_http_date(date?)?.checked_add(Duration::from_millis(500))?;
    let (dir, by) = match aws.duration_since(now) {
        Ok(ahead) => ("behind", ahead.as_secs()),
        Err(behind) => ("ahead of", behind.duration().as_secs()),
    };
    let (h, m, s) = (by / 3600, by / 60 % 60, by % 60);
    let h = if h > 0 {
        format!("{h}h")
    } else {
        String::new()
    };
    (refused && by >= SKEW_THRESHOLD_SECS).then(|| {
        let said = &error.message;
        format!("this node's clock is {h}{m}m{s}s {dir} AWS's (the answer's Date header): fix the node's time sync (chrony, Amazon Time Sync); AWS said {said:?}")
    })
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
    fn names_the_offset_only_for_refusals_with_a_far_date() {
        let now = at(1_700_000_000);
        let ahead = Some("Tue, 14 Nov 2023 22:30:00 GMT");
        let refused = aws(400, "SignatureDoesNotMatch");
        let says = |dir, by| {
            format!("this node's clock is {by} {dir} AWS's (the answer's Date header): fix the node's time sync (chrony, Amazon Time Sync); AWS said \"\"")
        };
        assert_eq!(skewed(&refused, ahead, now), Some(says("behind", "16m40s")));
        assert_eq!(
            skewed(&aws(403, "X"), ahead, now),
            Some(says("behind", "16m40s"))
        );
        let behind = Some("Tue, 14 Nov 2023 20:56:40 GMT");
        assert_eq!(
            skewed(&refused, behind, now),
            Some(says("ahead of", "1h16m39s"))
        );
        // Another error, no Date, a Date close to our clock.
        assert_eq!(skewed(&aws(400, "Throttling"), ahead, now), None);
        assert_eq!(skewed(&refused, None, now), None);
        let close = Some("Tue, 14 Nov 2023 22:16:40 GMT");
        assert_eq!(skewed(&refused, close, now), None);
    }
}
