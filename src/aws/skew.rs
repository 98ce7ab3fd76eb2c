//! Clock skew: when AWS refuses a signature because our clock is off, the
//! time to sign with comes from the answer's `Date` header.
//!
//! A SigV4 signature carries its time (`x-amz-date`); AWS refuses one that
//! is more than 5 or 15 minutes (depending on the service) away from its
//! own clock. A node whose clock drifted, or a VM restored from a snapshot,
//! would then fail every call, the deregistration included. The SDKs
//! correct it: they read the server's time from the `Date` header of the
//! refused answer, keep the difference as an offset for every later
//! signature, and retry. aws-sdk-java-v2 (`AwsErrorCode`,
//! `AwsServiceException::isClockSkewException`, `ClockSkewAdjuster`) does it
//! for the definite codes `RequestTimeTooSkewed`, `RequestExpired` and
//! `RequestInTheFuture`, and for `InvalidSignatureException`,
//! `SignatureDoesNotMatch` and `AuthFailure` (or any 401/403) when the
//! `Date` header is more than 4 minutes away from the local clock;
//! aws-sdk-js-v3 lists the same six codes (`CLOCK_SKEW_ERROR_CODES`) and
//! keeps a client-wide `systemClockOffset`; smithy-rs reads the same
//! header (`ServiceClockSkewInterceptor`) and adds it to the signing time.
//!
//! Here: an answer with one of those codes or statuses whose `Date` is at
//! least [`THRESHOLD`] away from the time we signed with (local clock plus
//! the current offset) sets a new offset, and the call is signed again
//! once, at once. Requiring the `Date` check for every code keeps a real
//! `SignatureDoesNotMatch` (a wrong secret key) final, as before. The
//! functions here are pure; [`crate::aws::client`] holds the offset.

use super::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Error codes that say the request's time was refused (Java v2's
/// "definite" clock skew codes).
pub const DEFINITE_CODES: &[&str] = &[
    "RequestTimeTooSkewed",
    "RequestExpired",
    "RequestInTheFuture",
];

/// Error codes that a skewed clock produces among other causes (Java v2's
/// "possible" codes): e.g. ELBv2 and STS answer `SignatureDoesNotMatch`
/// "Signature expired: 20231114T221320Z is now earlier than ...".
pub const POSSIBLE_CODES: &[&str] = &[
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
];

/// Least distance between AWS's clock and ours that counts as skew (the
/// SDK for Java's threshold; AWS itself allows 5 minutes at least).
pub const THRESHOLD: Duration = Duration::from_secs(4 * 60);

/// A signed difference between AWS's clock and the local one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offset {
    /// AWS's time minus the local time, in milliseconds.
    pub millis: i64,
}

impl Offset {
    /// The offset that turns `local` into `server`.
    pub fn between(server: SystemTime, local: SystemTime) -> Offset {
        let millis = match server.duration_since(local) {
            Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
            Err(behind) => i64::try_from(behind.duration().as_millis())
                .map(|s| -s)
                .unwrap_or(i64::MIN),
        };
        Offset { millis }
    }

    /// The opposite offset (AWS's time back to the local one).
    pub fn reversed(self) -> Offset {
        Offset {
            millis: self.millis.saturating_neg(),
        }
    }

    /// `local` corrected by this offset (unchanged if that would overflow
    /// or go before 1970).
    pub fn apply(self, local: SystemTime) -> SystemTime {
        let by = Duration::from_millis(self.millis.unsigned_abs());
        let corrected = if self.millis >= 0 {
            local.checked_add(by)
        } else {
            local.checked_sub(by)
        };
        corrected.filter(|t| *t >= UNIX_EPOCH).unwrap_or(local)
    }
}

impl std::fmt::Display for Offset {
    /// `AWS's clock is 900 s ahead of the local one` / `... behind ...`,
    /// to the nearest second.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = if self.millis >= 0 {
            "ahead of"
        } else {
            "behind"
        };
        let secs = self.millis.unsigned_abs().saturating_add(500) / 1000;
        write!(f, "AWS's clock is {secs} s {dir} the local one")
    }
}

/// Whether `err` is an answer that a skewed clock can cause: one of the
/// [`DEFINITE_CODES`] or [`POSSIBLE_CODES`], or an HTTP 401/403.
pub fn is_clock_skew_error(err: &Error) -> bool {
    match err {
        Error::Aws { error, .. } => {
            DEFINITE_CODES.contains(&error.code.as_str())
                || POSSIBLE_CODES.contains(&error.code.as_str())
                || matches!(error.status, 401 | 403)
        }
        _ => false,
    }
}

/// The offset to sign with from now on, when `err` is a clock skew answer
/// and its `Date` header (`server`, received at local time `received`)
/// shows that the time we signed with (`received` corrected by
/// `current`) was at least [`THRESHOLD`] off; `None` otherwise (no `Date`
/// header, another error, or a clock that is right).
///
/// The `Date` header is truncated to the second: AWS's time is taken as
/// its middle, half a second later.
pub fn correction(
    err: &Error,
    server: Option<SystemTime>,
    received: SystemTime,
    current: Offset,
) -> Option<Offset> {
    let server = server?.checked_add(Duration::from_millis(500))?;
    if !is_clock_skew_error(err) {
        return None;
    }
    let signed_with = current.apply(received);
    let off_by = Offset::between(server, signed_with);
    if u128::from(off_by.millis.unsigned_abs()) < THRESHOLD.as_millis() {
        return None;
    }
    Some(Offset::between(server, received))
}

/// Parses an HTTP `Date` header (RFC 9110 / RFC 7231 section 7.1.1.1):
/// the preferred IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, and the two
/// obsolete forms every recipient must accept, RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`.
/// The weekday is not checked against the date. `None` for anything else.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (weekday, rest) = s.split_once([',', ' '])?;
    if weekday.len() < 3 || !weekday.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let (year, month, day, time) = if s.as_bytes().get(weekday.len()) == Some(&b',') {
        match fields.as_slice() {
            // IMF-fixdate: 06 Nov 1994 08:49:37 GMT
            [day, month, year, time, "GMT"] if year.len() == 4 && day.len() == 2 => {
                (year.parse::<u32>().ok()?, *month, *day, *time)
            }
            // RFC 850: 06-Nov-94 08:49:37 GMT
            [date, time, "GMT"] => {
                let mut parts = date.split('-');
                let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() || yy.len() != 2 || day.len() != 2 {
                    return None;
                }
                let yy = yy.parse::<u32>().ok()?;
                // RFC 9110: a two-digit year more than 50 years in the
                // future is in the past century; 70-99 read as 19xx.
                let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
                (year, month, day, *time)
            }
            _ => return None,
        }
    } else {
        // asctime: Nov  6 08:49:37 1994
        match fields.as_slice() {
            [month, day, time, year] if year.len() == 4 && (1..=2).contains(&day.len()) => {
                (year.parse::<u32>().ok()?, *month, *day, *time)
            }
            _ => return None,
        }
    };
    if !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day: u32 = day.parse().ok()?;
    let month = month_number(month)?;
    let mut hms = time.split(':');
    let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some()
        || [h, m, sec]
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    // humantime checks the ranges (day of month, leap years, 23:59:59).
    let rfc3339 = format!("{year:04}-{month:02}-{day:02}T{h}:{m}:{sec}Z");
    let t = humantime::parse_rfc3339(&rfc3339).ok()?;
    (t >= UNIX_EPOCH).then_some(t)
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|m| *m == name)
        .and_then(|i| u32::try_from(i + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::AwsError;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_the_three_http_date_forms() {
        // 1994-11-06T08:49:37Z, RFC 9110's example.
        let t = Some(at(784_111_777));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
        assert_eq!(parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT \r"), t);
        // What AWS sends.
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(at(1_700_000_000))
        );
        assert_eq!(
            parse_http_date("Thursday, 29-Feb-24 00:00:00 GMT"),
            Some(at(1_709_164_800))
        );
        assert_eq!(
            parse_http_date("Thu Jan  1 00:00:00 1970"),
            Some(UNIX_EPOCH)
        );
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "GMT",
            "2023-11-14T22:13:20Z",
            "Tue, 14 Nov 2023 22:13:20",
            "Tue, 14 Nov 2023 22:13:20 UTC",
            "Tue, 14 Nov 2023 22:13:20 +0000",
            "Tue, 14 nov 2023 22:13:20 GMT",
            "Tue, 4 Nov 2023 22:13:20 GMT",
            "Tue, 31 Nov 2023 22:13:20 GMT",
            "Tue, 29 Feb 2023 22:13:20 GMT",
            "Tue, 14 Nov 2023 24:00:00 GMT",
            "Tue, 14 Nov 2023 22:13 GMT",
            "Tue, 14 Nov 2023 22:13:2x GMT",
            "Tue, 14 Nov 2023 22:13:20:00 GMT",
            "Tue, +4 Nov 2023 22:13:20 GMT",
            "Tue, 14 Nov 23 22:13:20 GMT",
            "Tuesday, 14-Nov-2023 22:13:20 GMT",
            "Tuesday, 14-Nov-23-1 22:13:20 GMT",
            "Tue Nov 14 22:13:20 23",
            "Tue Nov 14 22:13:20",
            "1, 14 Nov 2023 22:13:20 GMT",
            "Tue, 14 Nov 1969 22:13:20 GMT",
            "Tue, 14 Nov 2023 22:13:20 GMT extra",
            "\u{e9}\u{e9}\u{e9}, 14 Nov 2023 22:13:20 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn offsets_apply_both_ways() {
        let local = at(1_700_000_000);
        let ahead = Offset::between(at(1_700_000_900), local);
        assert_eq!(ahead, Offset { millis: 900_000 });
        assert_eq!(ahead.apply(local), at(1_700_000_900));
        assert_eq!(ahead.reversed().apply(at(1_700_000_900)), local);
        let behind = Offset::between(at(1_699_999_100), local);
        assert_eq!(behind, Offset { millis: -900_000 });
        assert_eq!(behind.apply(local), at(1_699_999_100));
        assert_eq!(Offset::default().apply(local), local);
        assert_eq!(Offset { millis: i64::MIN }.apply(local), local);
        assert_eq!(Offset { millis: i64::MIN }.reversed().millis, i64::MAX);
        assert_eq!(
            Offset { millis: 1_799_600 }.to_string(),
            "AWS's clock is 1800 s ahead of the local one"
        );
        assert_eq!(
            ahead.to_string(),
            "AWS's clock is 900 s ahead of the local one"
        );
        assert_eq!(
            behind.to_string(),
            "AWS's clock is 900 s behind the local one"
        );
    }

    fn aws(status: u16, code: &str) -> Error {
        Error::Aws {
            action: "DeregisterTargets".into(),
            error: AwsError {
                status,
                code: code.into(),
                message: String::new(),
                request_id: None,
            },
        }
    }

    #[test]
    fn corrects_only_skew_answers_with_a_far_date() {
        let received = at(1_700_000_000);
        let server = Some(at(1_700_001_000)); // 1000 s ahead, to the second
        let none = Offset::default();
        let ahead = Some(Offset { millis: 1_000_500 });
        for code in DEFINITE_CODES.iter().chain(POSSIBLE_CODES) {
            assert_eq!(
                correction(&aws(400, code), server, received, none),
                ahead,
                "{code}"
            );
        }
        assert_eq!(
            correction(&aws(403, "HttpStatus403"), server, received, none),
            ahead
        );
        // Not a skew answer, no Date, or a Date close to ours: no correction.
        assert_eq!(
            correction(&aws(400, "Throttling"), server, received, none),
            None
        );
        assert_eq!(
            correction(&aws(403, "SignatureDoesNotMatch"), None, received, none),
            None
        );
        let close = Some(at(1_700_000_000 + THRESHOLD.as_secs() - 1));
        assert_eq!(
            correction(&aws(403, "SignatureDoesNotMatch"), close, received, none),
            None
        );
        let far = Some(at(1_700_000_000 + THRESHOLD.as_secs()));
        assert!(correction(&aws(403, "SignatureDoesNotMatch"), far, received, none).is_some());
        assert_eq!(
            correction(&Error::Interrupted, server, received, none),
            None
        );
        // Already corrected: nothing more to do; corrected the wrong way
        // (the local clock was fixed since): back to the truth.
        let corrected = Offset { millis: 1_000_000 };
        assert_eq!(
            correction(
                &aws(403, "SignatureDoesNotMatch"),
                server,
                received,
                corrected
            ),
            None
        );
        assert_eq!(
            correction(
                &aws(400, "RequestExpired"),
                Some(received),
                received,
                corrected
            ),
            Some(Offset { millis: 500 })
        );
        // Behind as well as ahead.
        let behind = Some(at(1_699_999_000));
        assert_eq!(
            correction(&aws(400, "RequestTimeTooSkewed"), behind, received, none),
            Some(Offset { millis: -999_500 })
        );
    }
}
