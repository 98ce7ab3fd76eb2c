//! STS over the Query API: `AssumeRoleWithWebIdentity` (IRSA),
//! `AssumeRole` (`-role-arn`) and `GetCallerIdentity` (`-check`).
//! API reference: <https://docs.aws.amazon.com/STS/latest/APIReference/>.

use super::credentials::{parse_expiration, Credentials, Role, Secret};
use super::query::{params, Action, Params};
use super::xml::Element;

/// AssumeRoleWithWebIdentity: a web identity token for the temporary
/// credentials of `role_arn`. The token is a secret: never log the form.
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
    const SERVICE: &'static str = "sts";
    const NAME: &'static str = "AssumeRoleWithWebIdentity";
    type Output = Credentials;

    fn params(&self) -> Params {
        params(&[
            ("RoleArn", self.role_arn),
            ("RoleSessionName", self.session_name),
            ("WebIdentityToken", self.token.expose()),
        ])
    }

    fn parse(result: &Element) -> Result<Credentials, String> {
        parse_credentials(result)
    }
}

/// AssumeRole (`-role-arn`): the role's credentials for an hour (STS's
/// default, and the most AWS allows for role chaining), signed with the
/// caller's. `ExternalId` is sent only when given, and never logged.
impl Action for Role {
    const SERVICE: &'static str = "sts";
    const NAME: &'static str = "AssumeRole";
    type Output = Credentials;

    fn params(&self) -> Params {
        let mut p = params(&[
            ("RoleArn", &self.arn),
            ("RoleSessionName", &self.session_name),
            ("DurationSeconds", "3600"),
        ]);
        let id = self.external_id.as_ref().map(Secret::expose);
        p.extend(id.map(|id| ("ExternalId".to_owned(), id.to_owned())));
        p
    }

    fn parse(result: &Element) -> Result<Credentials, String> {
        parse_credentials(result)
    }
}

/// The `<Credentials>` of an STS result. White space inside the session
/// token is dropped: AWS's own examples wrap the base64 over several lines.
fn parse_credentials(result: &Element) -> Result<Credentials, String> {
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
    let mut token = field("SessionToken")?;
    token.retain(|c| !c.is_ascii_whitespace());
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: Some(Secret::new(token)),
        expiry: Some(expiry),
    })
}

/// GetCallerIdentity: who the credentials belong to (needs no permission).
#[derive(Debug, Clone, Copy, Default)]
pub struct GetCallerIdentity;

/// What GetCallerIdentity answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The account that owns the calling entity.
    pub account: String,
    /// The ARN of the calling entity (a user, or an assumed role's session).
    pub arn: String,
}

impl Action for GetCallerIdentity {
    const SERVICE: &'static str = "sts";
    const NAME: &'static str = "GetCallerIdentity";
    type Output = CallerIdentity;

    fn params(&self) -> Params {
        Vec::new()
    }

    fn parse(result: &Element) -> Result<CallerIdentity, String> {
        Ok(CallerIdentity {
            arn: result.text_at(&["Arn"]).ok_or("no Arn in the response")?,
            account: result.text_at(&["Account"]).unwrap_or_default(),
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
    fn builds_assume_role_request() {
        let action = Role {
            arn: "arn:aws:iam::444455556666:role/nlb-registrator".into(),
            session_name: "pod-a".into(),
            external_id: Some("ext-1".into()),
        };
        assert_eq!(
            crate::aws::query::encode_form(&action.form()),
            "Action=AssumeRole&Version=2011-06-15\
             &RoleArn=arn%3Aaws%3Aiam%3A%3A444455556666%3Arole%2Fnlb-registrator\
             &RoleSessionName=pod-a&DurationSeconds=3600&ExternalId=ext-1"
        );
        let without = Role {
            external_id: None,
            ..action
        }
        .form();
        assert!(without.iter().all(|(k, _)| k != "ExternalId"));
        assert_eq!(Role::SERVICE, "sts");
    }

    /// The example answer of the AssumeRole API reference, as published
    /// (its session token wrapped over five lines).
    #[test]
    fn parses_recorded_assume_role_response() {
        let r =
            Role::parse_response(200, include_bytes!("../../tests/data/assume_role.xml")).unwrap();
        assert_eq!(
            r.request_id.as_deref(),
            Some("c6104cbe-af31-11e0-8154-cbc7ccf896c7")
        );
        let c = r.value;
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        let token = c.session_token.as_ref().map(Secret::expose).unwrap();
        assert!(token.starts_with(
            "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqw"
        ));
        assert!(
            token.ends_with("+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==")
        );
        assert!(!token.contains(char::is_whitespace));
        assert_eq!(token.len(), 336);
        // 2019-11-09T13:34:41Z
        assert_eq!(
            c.expiry,
            Some(UNIX_EPOCH + Duration::from_secs(1_573_306_481))
        );
    }

    #[test]
    fn assume_role_errors_keep_their_code() {
        let body = br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:sts::111122223333:assumed-role/workload/pod-a is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::444455556666:role/nlb-registrator</Message>
  </Error>
  <RequestId>4a3d1d3b-2d34-4f0f-9f1c-6f3b5c1d2e3f</RequestId>
</ErrorResponse>"#;
        let e = Role::parse_response(403, body).unwrap_err();
        assert_eq!(e.aws_code(), Some("AccessDenied"));
        assert!(
            e.to_string().starts_with(
                "AssumeRole failed: AccessDenied (HTTP 403): User: arn:aws:sts::111122223333"
            ),
            "{e}"
        );
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
