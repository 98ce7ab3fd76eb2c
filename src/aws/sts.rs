//! STS `AssumeRoleWithWebIdentity`: the IRSA credential exchange.
//!
//! API reference: <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html>.
//! The request is unsigned (the web identity token is the proof); it goes
//! to the STS endpoint as a Query API POST like ELBv2.

use super::credentials::{parse_expiration, Credentials, Secret};
use super::error::Error;
use super::query::{read_answer, Params};

/// API version of STS.
pub const VERSION: &str = "2011-06-15";

/// Builds an AssumeRoleWithWebIdentity request.
///
/// The token is a secret: the returned parameters must never be logged.
pub fn assume_role_with_web_identity(role_arn: &str, session_name: &str, token: &Secret) -> Params {
    vec![
        ("Action".to_owned(), "AssumeRoleWithWebIdentity".to_owned()),
        ("Version".to_owned(), VERSION.to_owned()),
        ("RoleArn".to_owned(), role_arn.to_owned()),
        ("RoleSessionName".to_owned(), session_name.to_owned()),
        ("WebIdentityToken".to_owned(), token.expose().to_owned()),
    ]
}

/// Parses an AssumeRoleWithWebIdentity response into credentials.
///
/// # Errors
/// The AWS error for a non-2xx status; [`Error::Response`] when the body
/// lacks any of the four credential fields or has an unreadable expiration.
pub fn parse_assume_role_with_web_identity(status: u16, body: &[u8]) -> Result<Credentials, Error> {
    const ACTION: &str = "AssumeRoleWithWebIdentity";
    let answer = read_answer(ACTION, status, body)?;
    let creds = answer
        .result
        .child("Credentials")
        .ok_or_else(|| missing(status, "Credentials"))?;
    let field = |name: &'static str| creds.text_at(&[name]).ok_or_else(|| missing(status, name));
    let expiration = field("Expiration")?;
    let expiry = parse_expiration(&expiration).ok_or_else(|| Error::Response {
        action: ACTION.into(),
        status,
        detail: format!("unreadable Expiration {expiration:?}"),
    })?;
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: Some(Secret::new(field("SessionToken")?)),
        expiry: Some(expiry),
    })
}

fn missing(status: u16, name: &str) -> Error {
    Error::Response {
        action: "AssumeRoleWithWebIdentity".into(),
        status,
        detail: format!("no {name} in the response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn builds_request() {
        let p =
            assume_role_with_web_identity("arn:aws:iam::1:role/r", "s", &Secret::new("tok".into()));
        assert_eq!(p[0].1, "AssumeRoleWithWebIdentity");
        assert_eq!(p[4], ("WebIdentityToken".to_string(), "tok".to_string()));
    }

    #[test]
    fn parses_recorded_response() {
        let c = parse_assume_role_with_web_identity(
            200,
            include_bytes!("../../tests/data/assume_role_with_web_identity.xml"),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASgeIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            c.session_token.as_ref().map(Secret::expose),
            Some("AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE")
        );
        assert_eq!(
            c.expiry,
            Some(UNIX_EPOCH + Duration::from_secs(1_414_191_623))
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("wJalr") && !dbg.contains("AQoD"), "{dbg}");
    }

    #[test]
    fn parses_recorded_error() {
        let e = parse_assume_role_with_web_identity(
            400,
            include_bytes!("../../tests/data/sts_invalid_identity_token.xml"),
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), Some("InvalidIdentityToken"));
    }

    #[test]
    fn rejects_incomplete_responses() {
        let body = br#"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><Expiration>2026-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let e = parse_assume_role_with_web_identity(200, body).unwrap_err();
        assert!(e.to_string().contains("no SessionToken"), "{e}");
        let body = br#"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken><Expiration>soon</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        assert!(parse_assume_role_with_web_identity(200, body).is_err());
        assert!(parse_assume_role_with_web_identity(200, b"<x/>").is_err());
    }
}
