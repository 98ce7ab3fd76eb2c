//! STS `AssumeRoleWithWebIdentity`: the IRSA credential exchange; and
//! `GetCallerIdentity`, signed, which `-check` uses to name the identity.
//!
//! API reference: <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html>.
//! The request is unsigned (the web identity token is the proof); it goes
//! to the STS endpoint as a Query API POST like ELBv2.

use super::credentials::{parse_expiration, Credentials, Secret};
use super::query::{Action, Params, Service};
use super::xml::Element;

/// AssumeRoleWithWebIdentity: exchanges a web identity token for the
/// temporary credentials of `role_arn`.
///
/// The token is a secret: the request's parameters must never be logged.
#[derive(Debug, Clone, Copy)]
pub struct AssumeRoleWithWebIdentity<'a> {
    /// Role to assume.
    pub role_arn: &'a str,
    /// Role session name.
    pub session_name: &'a str,
    /// The projected service account token.
    pub token: &'a Secret,
}

impl Action for AssumeRoleWithWebIdentity<'_> {
    const SERVICE: Service = Service::Sts;
    const NAME: &'static str = "AssumeRoleWithWebIdentity";
    type Output = Credentials;

    fn params(&self) -> Params {
        vec![
            ("RoleArn".to_owned(), self.role_arn.to_owned()),
            ("RoleSessionName".to_owned(), self.session_name.to_owned()),
            (
                "WebIdentityToken".to_owned(),
                self.token.expose().to_owned(),
            ),
        ]
    }

    /// The credentials; an error when any of the four fields is missing or
    /// the expiration is unreadable.
    fn parse(result: &Element) -> Result<Credentials, String> {
        let creds = result
            .child("Credentials")
            .ok_or("no Credentials in the response")?;
        let field = |name: &str| {
            creds
                .text_at(&[name])
                .ok_or_else(|| format!("no {name} in the response"))
        };
        let expiration = field("Expiration")?;
        let expiry = parse_expiration(&expiration)
            .ok_or_else(|| format!("unreadable Expiration {expiration:?}"))?;
        Ok(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: Secret::new(field("SecretAccessKey")?),
            session_token: Some(Secret::new(field("SessionToken")?)),
            expiry: Some(expiry),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::Error;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn builds_request() {
        let token = Secret::new("tok".into());
        let p = AssumeRoleWithWebIdentity {
            role_arn: "arn:aws:iam::1:role/r",
            session_name: "s",
            token: &token,
        }
        .form();
        assert_eq!(p[1].1, "2011-06-15");
        assert_eq!(p[0].1, "AssumeRoleWithWebIdentity");
        assert_eq!(p[4], ("WebIdentityToken".to_string(), "tok".to_string()));
    }

    fn parse(status: u16, body: &[u8]) -> Result<Credentials, Error> {
        AssumeRoleWithWebIdentity::parse_response(status, body).map(|r| r.value)
    }

    #[test]
    fn parses_recorded_response() {
        let c = parse(
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
        let e = parse(
            400,
            include_bytes!("../../tests/data/sts_invalid_identity_token.xml"),
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), Some("InvalidIdentityToken"));
    }

    #[test]
    fn rejects_incomplete_responses() {
        let body = br#"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><Expiration>2026-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let e = parse(200, body).unwrap_err();
        assert!(e.to_string().contains("no SessionToken"), "{e}");
        let body = br#"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken><Expiration>soon</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        assert!(parse(200, body).is_err());
        assert!(parse(200, b"<x/>").is_err());
    }
}

/// GetCallerIdentity: who the credentials belong to (`-check` reports it).
///
/// API reference: <https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html>.
/// A signed call that needs no permission: AWS answers it even when a
/// policy denies `sts:GetCallerIdentity`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetCallerIdentity;

/// What GetCallerIdentity answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The account that owns the calling entity.
    pub account: String,
    /// The ARN of the calling entity (a user, or an assumed role's session).
    pub arn: String,
    /// Its unique id (`aws:userid`).
    pub user_id: String,
}

impl Action for GetCallerIdentity {
    const SERVICE: Service = Service::Sts;
    const NAME: &'static str = "GetCallerIdentity";
    type Output = CallerIdentity;

    fn params(&self) -> Params {
        Vec::new()
    }

    /// The identity; an error when `Arn` is missing (the other two may be
    /// empty).
    fn parse(result: &Element) -> Result<CallerIdentity, String> {
        Ok(CallerIdentity {
            arn: result.text_at(&["Arn"]).ok_or("no Arn in the response")?,
            account: result.text_at(&["Account"]).unwrap_or_default(),
            user_id: result.text_at(&["UserId"]).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod caller_identity_tests {
    use super::*;

    #[test]
    fn builds_request_and_parses_the_recorded_aws_response() {
        let p = GetCallerIdentity.form();
        assert_eq!(
            p,
            vec![
                ("Action".to_owned(), "GetCallerIdentity".to_owned()),
                ("Version".to_owned(), "2011-06-15".to_owned()),
            ]
        );
        let r = GetCallerIdentity::parse_response(
            200,
            include_bytes!("../../tests/data/get_caller_identity.xml"),
        )
        .unwrap();
        assert_eq!(
            r.value,
            CallerIdentity {
                account: "123456789012".into(),
                arn: "arn:aws:iam::123456789012:user/Alice".into(),
                user_id: "AKIAI44QH8DHBEXAMPLE".into(),
            }
        );
        assert_eq!(
            r.request_id.as_deref(),
            Some("01234567-89ab-cdef-0123-456789abcdef")
        );
        let body =
            b"<GetCallerIdentityResponse><GetCallerIdentityResult/></GetCallerIdentityResponse>";
        assert!(GetCallerIdentity::parse_response(200, body).is_err());
    }
}
