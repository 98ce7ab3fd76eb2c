//! Fetching credentials from the sources that need IO: STS web identity
//! (IRSA), the container credentials endpoint (EKS Pod Identity, ECS) and
//! IMDSv2. Each fetch is one pass with no retries (the client retries it
//! within its budget) and goes through a [`Transport`], so tests script it.

use super::{container_token_from, parse_credentials_json, web_identity_token_from};
use super::{Credentials, Source};
use crate::aws::error::{snippet, AwsError, Error};
use crate::aws::http::{HttpRequest, HttpResponse, Transport};
use crate::aws::query::{self, Action, CALL_TIMEOUT};
use crate::aws::sts::AssumeRoleWithWebIdentity;
use log::debug;
use std::time::Duration;

/// Overall timeout of one IMDS or container-credentials request: short, so
/// a pod that cannot reach them fails fast.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Fetches credentials from `source` once (STS at `sts_url` for web identity).
///
/// # Errors
/// [`Error::Credentials`] for an unreadable token file or an unreachable
/// IMDS (with a hint); the AWS, HTTP-status or transport error of the
/// endpoint; [`Error::Response`] for an answer that holds no credentials.
pub fn fetch(
    source: &Source,
    sts_url: &str,
    transport: &dyn Transport,
) -> Result<Credentials, Error> {
    match source {
        Source::Static(c) => Ok(c.clone()),
        Source::WebIdentity {
            role_arn,
            token_file,
            session_name,
        } => web_identity(role_arn, token_file, session_name, sts_url, transport),
        Source::Container {
            url,
            token_file,
            token,
        } => {
            let auth = match (token_file, token) {
                (Some(path), _) => Some(container_token_from(
                    &read(path, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")?,
                    path,
                )?),
                (None, Some(t)) => Some(t.clone()),
                (None, None) => None,
            };
            container(url, auth.as_ref().map(|a| a.expose()), transport)
        }
        Source::Imds { endpoint } => imds(endpoint, transport),
    }
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Credentials(format!("cannot read {what} {path}: {e}")))
}

/// IRSA: reads the token file afresh and exchanges it at STS (unsigned).
fn web_identity(
    role_arn: &str,
    token_file: &str,
    session_name: &str,
    sts_url: &str,
    transport: &dyn Transport,
) -> Result<Credentials, Error> {
    let token = web_identity_token_from(&read(token_file, "web identity token file")?, token_file)?;
    let action = AssumeRoleWithWebIdentity {
        role_arn,
        session_name,
        token: &token,
    };
    let req = query::request(sts_url, &action.form(), CALL_TIMEOUT);
    let name = AssumeRoleWithWebIdentity::NAME;
    let resp = transport.send(name, &req)?;
    debug!("{name} -> HTTP {}", resp.status);
    AssumeRoleWithWebIdentity::parse_response(resp.status, &resp.body).map(|r| r.value)
}

/// The container endpoint: a GET of `url` with the `Authorization` value, if any.
fn container(
    url: &str,
    auth: Option<&str>,
    transport: &dyn Transport,
) -> Result<Credentials, Error> {
    const WHAT: &str = "container credentials";
    let req = HttpRequest {
        method: "GET",
        url: url.to_owned(),
        headers: auth
            .map(|a| ("authorization".to_owned(), a.to_owned()))
            .into_iter()
            .collect(),
        body: Vec::new(),
        timeout: METADATA_TIMEOUT,
    };
    let resp = transport.send(WHAT, &req)?;
    check_status(WHAT, &resp)?;
    parse_credentials_json(WHAT, resp.status, &resp.body)
}

/// IMDSv2: a session token, the role name, then the role's credentials.
fn imds(endpoint: &str, transport: &dyn Transport) -> Result<Credentials, Error> {
    const WHAT: &str = "IMDSv2";
    let token_req = HttpRequest {
        method: "PUT",
        url: format!("{endpoint}/latest/api/token"),
        headers: vec![(
            "x-aws-ec2-metadata-token-ttl-seconds".into(),
            "21600".into(),
        )],
        body: Vec::new(),
        timeout: METADATA_TIMEOUT,
    };
    // Unreachable IMDS (a pod behind a hop limit of 1, or no EC2 at all)
    // is final: fail fast with the hint instead of retrying for minutes.
    let resp = transport
        .send(WHAT, &token_req)
        .map_err(|e| Error::Credentials(imds_hint(e).to_string()))?;
    check_status(WHAT, &resp)?;
    let token = String::from_utf8(resp.body).map_err(|_| Error::Response {
        action: WHAT.into(),
        status: resp.status,
        detail: "token is not UTF-8".into(),
    })?;
    let get = |path: &str| HttpRequest {
        method: "GET",
        url: format!("{endpoint}/latest/meta-data/iam/security-credentials/{path}"),
        headers: vec![("x-aws-ec2-metadata-token".into(), token.trim().to_owned())],
        body: Vec::new(),
        timeout: METADATA_TIMEOUT,
    };
    let resp = transport.send(WHAT, &get("")).map_err(imds_hint)?;
    if resp.status == 404 {
        return Err(Error::Credentials(
            "IMDSv2: no IAM role is attached to this instance".into(),
        ));
    }
    check_status(WHAT, &resp)?;
    let listing = String::from_utf8_lossy(&resp.body).into_owned();
    let role = listing
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| {
            Error::Credentials("IMDSv2: no IAM role is attached to this instance".into())
        })?
        .to_owned();
    if role.contains(['/', '?', '#', ' ']) {
        return Err(Error::Response {
            action: WHAT.into(),
            status: resp.status,
            detail: format!("unexpected role name {role:?}"),
        });
    }
    let resp = transport.send(WHAT, &get(&role)).map_err(imds_hint)?;
    check_status(WHAT, &resp)?;
    parse_credentials_json(WHAT, resp.status, &resp.body)
}

fn check_status(what: &str, resp: &HttpResponse) -> Result<(), Error> {
    if (200..300).contains(&resp.status) {
        return Ok(());
    }
    Err(Error::Aws {
        action: what.to_owned(),
        error: AwsError {
            status: resp.status,
            code: format!("HttpStatus{}", resp.status),
            message: snippet(&resp.body),
            request_id: None,
        },
    })
}

fn imds_hint(e: Error) -> Error {
    e.map_transport_detail(|detail| {
        format!(
            "{detail} (pods reach IMDS only with a hop limit of 2; prefer IRSA or EKS Pod Identity, \
             or set AWS_EC2_METADATA_DISABLED=true)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::testing::{ok, status, Scripted};

    #[test]
    fn imds_flow_and_errors() {
        let creds = include_bytes!("../../../tests/data/imds_credentials.json");
        let s = Scripted::new([ok(b"IMDSTOKEN"), ok(b"my-role\n"), ok(creds)]);
        let got = imds("http://127.0.0.1:4", &&s).unwrap();
        assert_eq!(got.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        let seen = s.seen.borrow();
        assert_eq!(seen[0].method, "PUT");
        assert_eq!(
            seen[2].url,
            "http://127.0.0.1:4/latest/meta-data/iam/security-credentials/my-role"
        );
        assert!(seen[2]
            .headers
            .contains(&("x-aws-ec2-metadata-token".into(), "IMDSTOKEN".into())));
        drop(seen);

        let s = Scripted::new([]);
        let e = imds("http://127.0.0.1:4", &&s).unwrap_err();
        assert!(e.to_string().contains("hop limit"), "{e}");

        let s = Scripted::new([ok(b"T"), status(404, b"")]);
        let e = imds("http://127.0.0.1:4", &&s).unwrap_err();
        assert!(e.to_string().contains("no IAM role"), "{e}");
    }

    #[test]
    fn container_sends_the_token_and_checks_the_status() {
        let json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"S1","Token":"T1","Expiration":"2099-01-01T00:00:00Z"}"#;
        let source = Source::Container {
            url: "http://127.0.0.1:3/creds".into(),
            token_file: None,
            token: Some(super::super::Secret::new("container-token".into())),
        };
        let s = Scripted::new([ok(json), status(500, b"down")]);
        let got = fetch(&source, "http://127.0.0.1:2", &&s).unwrap();
        assert_eq!(got.access_key_id, "ASIA1");
        assert!(s.seen.borrow()[0]
            .headers
            .contains(&("authorization".into(), "container-token".into())));
        let e = fetch(&source, "http://127.0.0.1:2", &&s).unwrap_err();
        assert_eq!(e.aws_code(), Some("HttpStatus500"));
    }
}
