//! Clock skew (docs/aws.md, "Clock skew"): a refusal whose `Date` header
//! is minutes from the time we signed with gives the offset to AWS's clock.

use super::error::Error;
use std::time::{Duration, SystemTime};

/// AWS's clock minus the local one, in milliseconds.
pub type Offset = i64;

// The SDK for Java's; AWS allows 5 minutes at least.
const THRESHOLD_MS: u64 = 4 * 60 * 1000;

/// `t` moved by `offset` (unchanged on overflow).
pub fn shift(t: SystemTime, offset: Offset) -> SystemTime {
    let by = Duration::from_millis(offset.unsigned_abs());
    let moved = if offset >= 0 {
        t.checked_add(by)
    } else {
        t.checked_sub(by)
    };
    moved.unwrap_or(t)
}

/// The offset to sign with from now on, when `err` refuses our signature
/// and the answer's `date` is far from the time we signed with; `None`
/// otherwise, so a wrong secret key stays final.
pub fn correction(
    err: &Error,
    date: Option<SystemTime>,
    now: SystemTime,
    current: Offset,
) -> Option<Offset> {
    let error = match err {
        Error::Aws { error, .. } => error,
        Error::Fetch { error, .. } => return correction(error, date, now, current),
        _ => return None,
    };
    let refused = matches!(error.status, 401 | 403)
        || matches!(
            error.code.as_str(),
            "RequestTimeTooSkewed"
                | "RequestExpired"
                | "RequestInTheFuture"
                | "InvalidSignatureException"
                | "SignatureDoesNotMatch"
                | "AuthFailure"
        );
    // The header is truncated to the second: AWS's time is its middle.
    let aws = date?.checked_add(Duration::from_millis(500))?;
    let offset = match aws.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(behind) => i64::try_from(behind.duration().as_millis()).map_or(i64::MIN, |m| -m),
    };
    (refused && offset.abs_diff(current) >= THRESHOLD_MS).then_some(offset)
}

/// `AWS's clock is 900 s ahead of the local one` (or `behind`).
pub fn describe(offset: Offset) -> String {
    let secs = offset.unsigned_abs().saturating_add(500) / 1000;
    let dir = if offset >= 0 { "ahead of" } else { "behind" };
    format!("AWS's clock is {secs} s {dir} the local one")
}

/// Parses an IMF-fixdate (`Tue, 14 Nov 2023 22:13:20 GMT`), as AWS sends.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let fields: Vec<&str> = s.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = fields[..] else {
        return None;
    };
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    // humantime checks the rest (digits, ranges, leap years).
    humantime::parse_rfc3339(&format!("{year}-{month:02}-{day}T{time}Z")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::AwsError;
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
    fn corrects_only_refusals_with_a_far_date() {
        let now = at(1_700_000_000);
        let ahead = Some(at(1_700_001_000));
        let refused = aws(400, "SignatureDoesNotMatch");
        assert_eq!(correction(&refused, ahead, now, 0), Some(1_000_500));
        assert_eq!(correction(&aws(403, "X"), ahead, now, 0), Some(1_000_500));
        let behind = Some(at(1_699_999_000));
        assert_eq!(correction(&refused, behind, now, 0), Some(-999_500));
        // Another error, no Date, a Date close to the time we signed with.
        assert_eq!(correction(&aws(400, "Throttling"), ahead, now, 0), None);
        assert_eq!(correction(&refused, None, now, 0), None);
        assert_eq!(correction(&refused, Some(at(1_700_000_200)), now, 0), None);
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
