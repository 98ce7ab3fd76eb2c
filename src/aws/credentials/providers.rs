//! Fetching from the metadata endpoints: the container endpoint and IMDSv2.
//! One pass, no retries (the client retries within its budget).

use super::{parse_expiration, Credentials, Secret};
use crate::aws::error::Error;
use crate::aws::http::{HttpRequest, HttpResponse, Transport};
use crate::aws::query::parse_error;
use std::time::Duration;

/// Fetches credentials once from the container endpoint, with the
/// `Authorization` value of `token_file` (re-read) or `token`.
///
/// # Errors
/// [`Error::Credentials`] for an unreadable token file; the endpoint's
/// error; [`Error::Response`] for an answer without credentials.
pub fn container(
    url: &str,
    token_file: Option<&str>,
    token: Option<&Secret>,
    transport: &dyn Transport,
    left: Left,
) -> Result<Credentials, Error> {
    const WHAT: &str = "container credentials";
    let var = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    let from_file = token_file.map(|path| read_token(path, var)).transpose()?;
    let auth = from_file.or_else(|| token.cloned());
    let header = auth.map(|a| ("authorization", a.expose().to_owned()));
    let resp = get((transport, left), WHAT, "GET", url.to_owned(), header)?;
    parse_credentials_json(WHAT, &resp.body)
}

/// Reads a token file afresh (they rotate).
pub fn read_token(path: &str, what: &str) -> Result<Secret, Error> {
    let contents = std::fs::read(path)
        .map_err(|e| Error::Credentials(format!("cannot read {what} {path}: {e}")))?;
    token_from(&contents).map_err(|why| Error::Credentials(format!("{what} {path} {why}")))
}

/// The time left for the fetch.
pub type Left<'a> = &'a dyn Fn() -> Duration;

/// One request with a timeout of 2 s at most (a pod that cannot reach the
/// endpoint fails fast); a non-2xx answer is the endpoint's error.
fn get(
    (transport, left): (&dyn Transport, Left),
    what: &str,
    method: &'static str,
    url: String,
    header: Option<(&str, String)>,
) -> Result<HttpResponse, Error> {
    let req = HttpRequest {
        method,
        url,
        headers: header.map(|(k, v)| (k.to_owned(), v)).into_iter().collect(),
        body: Vec::new(),
        timeout: left().min(Duration::from_secs(2)),
    };
    let resp = transport.send(what, &req)?;
    if !(200..300).contains(&resp.status) {
        return Err(Error::Aws {
            action: what.to_owned(),
            error: parse_error(resp.status, &resp.body),
        });
    }
    Ok(resp)
}

/// IMDSv2: a session token, the role name, then the role's credentials.
pub fn imds(endpoint: &str, transport: &dyn Transport, left: Left) -> Result<Credentials, Error> {
    const WHAT: &str = "IMDSv2";
    let ttl = Some(("x-aws-ec2-metadata-token-ttl-seconds", "21600".to_owned()));
    let url = format!("{endpoint}/latest/api/token");
    // Unreachable IMDS (a pod behind a hop limit of 1, or no EC2 at all)
    // is final: fail fast with the hint instead of retrying for minutes.
    let resp = get((transport, left), WHAT, "PUT", url, ttl).map_err(|e| match imds_hint(e) {
        e @ Error::Transport { .. } => Error::Credentials(e.to_string()),
        e => e,
    })?;
    let token = String::from_utf8_lossy(&resp.body).trim().to_owned();
    let get = |role: &str| {
        let url = format!("{endpoint}/latest/meta-data/iam/security-credentials/{role}");
        let header = Some(("x-aws-ec2-metadata-token", token.clone()));
        get((transport, left), WHAT, "GET", url, header).map_err(imds_hint)
    };
    let no_role = || Error::Credentials("IMDSv2: no IAM role is attached to this instance".into());
    let listing = get("").map_err(|e| match e.aws_code() {
        Some("HttpStatus404") => no_role(),
        _ => e,
    })?;
    let body = String::from_utf8_lossy(&listing.body);
    let role = body.lines().map(str::trim).find(|l| !l.is_empty());
    let role = role.ok_or_else(no_role)?;
    if role.contains(['/', '?', '#', ' ']) {
        return Err(Error::Response {
            action: WHAT.into(),
            detail: format!("unexpected role name {role:?}"),
        });
    }
    let resp = get(role)?;
    parse_credentials_json(WHAT, &resp.body)
}

fn imds_hint(mut e: Error) -> Error {
    if let Error::Transport { detail, .. } = &mut e {
        detail.push_str(
            " (pods reach IMDS only with a hop limit of 2; prefer IRSA or EKS Pod Identity, \
             or set AWS_EC2_METADATA_DISABLED=true)",
        );
    }
    e
}

/// A token from its file's contents, trimmed; the error says what is
/// wrong with it (it goes into a header or a form).
pub fn token_from(contents: &[u8]) -> Result<Secret, &'static str> {
    let token = std::str::from_utf8(contents)
        .map_err(|_| "is not UTF-8")?
        .trim();
    if token.is_empty() {
        return Err("is empty");
    }
    if token.contains(['\r', '\n']) {
        return Err("holds a line break");
    }
    Ok(Secret::new(token.to_owned()))
}

/// Parses the JSON of a container credentials endpoint or of IMDS (whose
/// `Code` must be `Success`).
///
/// # Errors
/// [`Error::Response`] naming `what` for any answer without credentials.
pub fn parse_credentials_json(what: &str, body: &[u8]) -> Result<Credentials, Error> {
    let bad = |detail: String| Error::Response {
        action: what.to_owned(),
        detail,
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let field = |name: &str| -> Option<String> {
        v.get(name)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(code) = field("Code").filter(|c| c != "Success") {
        let msg = field("Message").unwrap_or_default();
        return Err(bad(format!("Code is {code:?}: {msg}")));
    }
    let need = |name: &str| field(name).ok_or_else(|| bad(format!("no {name} in the response")));
    let (access_key_id, secret) = (need("AccessKeyId")?, need("SecretAccessKey")?);
    let expiry = field("Expiration")
        .map(|e| parse_expiration(&e).ok_or_else(|| bad(format!("unreadable Expiration {e:?}"))))
        .transpose()?;
    Ok(Credentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: field("Token").map(Secret::new),
        expiry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::tests::{ok, status, Scripted};

    #[test]
    fn imds_flow_and_errors() {
        let creds = include_bytes!("../../../tests/data/imds_credentials.json");
        let s = Scripted::new([ok(b"IMDSTOKEN"), ok(b"my-role\n"), ok(creds)]);
        let got = imds("http://127.0.0.1:4", &&s, &|| Duration::MAX).unwrap();
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
        let e = imds("http://127.0.0.1:4", &&s, &|| Duration::MAX).unwrap_err();
        assert!(e.to_string().contains("hop limit"), "{e}");

        let s = Scripted::new([ok(b"T"), status(404, b"")]);
        let e = imds("http://127.0.0.1:4", &&s, &|| Duration::MAX).unwrap_err();
        assert!(e.to_string().contains("no IAM role"), "{e}");
    }

    #[test]
    fn container_sends_the_token_and_checks_the_status() {
        let json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"S1","Token":"T1","Expiration":"2099-01-01T00:00:00Z"}"#;
        let token = Secret::new("container-token".into());
        let fetch = |s: &Scripted| {
            container("http://127.0.0.1:3/creds", None, Some(&token), &s, &|| {
                Duration::MAX
            })
        };
        let s = Scripted::new([ok(json), status(500, b"down")]);
        let got = fetch(&s).unwrap();
        assert_eq!(got.access_key_id, "ASIA1");
        assert!(s.seen.borrow()[0]
            .headers
            .contains(&("authorization".into(), "container-token".into())));
        let e = fetch(&s).unwrap_err();
        assert_eq!(e.aws_code(), Some("HttpStatus500"));
    }

    #[test]
    fn parses_recorded_credentials_json() {
        let c = parse_credentials_json(
            "container",
            include_bytes!("../../../tests/data/container_credentials.json"),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.session_token.as_ref().unwrap().expose(),
            "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
        );
        assert_eq!(c.expiry, parse_expiration("2026-11-25T18:04:33Z"));
        let c = parse_credentials_json(
            "IMDS",
            include_bytes!("../../../tests/data/imds_credentials.json"),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert!(!format!("{c:?}").contains("wJalr"));
    }

    #[test]
    fn rejects_bad_credentials_json() {
        for body in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"AccessKeyId":"A"}"#,
            br#"{"AccessKeyId":1,"SecretAccessKey":"S"}"#,
            br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no"}"#,
            br#"{"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"tomorrow"}"#,
        ] {
            assert!(parse_credentials_json("c", body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn token_files() {
        assert_eq!(token_from(b" eyJ \n").unwrap().expose(), "eyJ");
        assert_eq!(token_from(b"a\nb").unwrap_err(), "holds a line break");
        assert_eq!(token_from(b"\n").unwrap_err(), "is empty");
        assert_eq!(token_from(b"\xff").unwrap_err(), "is not UTF-8");
        assert_eq!(format!("{:?}", Secret::new("x".into())), "** redacted **");
    }
}
