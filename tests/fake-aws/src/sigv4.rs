//! SigV4 verification, written independently of aws-sigv4 (with `ring`),
//! and a signer for tests that need a correctly signed request.

use crate::http::Request;
use crate::state::{AwsError, State};
use crate::time::{format_amz_date, parse_amz_date};
use crate::wire::{hex, percent_decode, uri_encode};
use crate::{ELB_SERVICE, REGION};
use ring::{digest, hmac};
use std::time::{Duration, SystemTime};

/// Largest clock difference accepted in `x-amz-date` (as AWS: 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(crate) struct Auth {
    pub(crate) access_key_id: Option<String>,
    pub(crate) signature_ok: bool,
    pub(crate) error: Option<AwsError>,
    pub(crate) region: Option<String>,
    pub(crate) service: Option<String>,
}

pub(crate) struct AuthHeader {
    pub(crate) access_key_id: String,
    pub(crate) date: String,
    pub(crate) region: String,
    pub(crate) service: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

pub(crate) fn parse_authorization(value: &str) -> Option<AuthHeader> {
    let rest = value.trim().strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => cred = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => sig = Some(v.trim()),
            _ => return None,
        }
    }
    let scope: Vec<&str> = cred?.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" || scope[..4].iter().any(|s| s.is_empty()) {
        return None;
    }
    let signed_headers: Vec<String> = signed?.split(';').map(str::to_string).collect();
    if signed_headers.iter().any(String::is_empty) {
        return None;
    }
    Some(AuthHeader {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers,
        signature: sig?.to_string(),
    })
}

pub(crate) fn check_sigv4(
    st: &State,
    req: &Request,
    expected_service: &str,
    now: SystemTime,
) -> Auth {
    let mut auth = Auth::default();
    let Some(value) = req.header("authorization") else {
        auth.error = Some(AwsError::new(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
        return auth;
    };
    let Some(h) = parse_authorization(value) else {
        auth.error = Some(AwsError::new(
            400,
            "IncompleteSignature",
            format!(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' in the form 'AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex': '{value}'"
            ),
        ));
        return auth;
    };
    auth.access_key_id = Some(h.access_key_id.clone());
    auth.region = Some(h.region.clone());
    auth.service = Some(h.service.clone());
    let cred = st.creds.get(&h.access_key_id);
    let amz_date = req.header("x-amz-date");
    let signed: Vec<&str> = h.signed_headers.iter().map(String::as_str).collect();
    let canonical = canonical_request(
        &req.method,
        &req.path,
        &req.query,
        &req.headers,
        &signed,
        &req.body,
    );
    let mut to_sign = String::new();
    if let (Some(cred), Some(date), Some(canonical)) = (cred, amz_date, &canonical) {
        let scope = format!("{}/{}/{}/aws4_request", h.date, h.region, h.service);
        to_sign = string_to_sign(date, &scope, canonical);
        let key = signing_key(&cred.secret, &h.date, &h.region, &h.service);
        auth.signature_ok = hex(hmac::sign(&key, to_sign.as_bytes()).as_ref()) == h.signature;
    }
    let sdm = |msg: String| Some(AwsError::new(403, "SignatureDoesNotMatch", msg));
    let token = req.header("x-amz-security-token");
    auth.error = if let Some(cred) = cred {
        let skew = amz_date.and_then(parse_amz_date);
        if cred.token.as_deref() != token {
            Some(AwsError::new(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ))
        } else if token.is_some() && !signed.contains(&"x-amz-security-token") {
            sdm("x-amz-security-token must be a signed header (fake AWS rule)".into())
        } else if cred.expires.is_some_and(|e| e <= now) {
            Some(AwsError::new(
                400,
                "ExpiredToken",
                "The security token included in the request is expired",
            ))
        } else if h.service != expected_service {
            sdm(format!(
                "Credential should be scoped to correct service: '{expected_service}'. "
            ))
        } else if st.region.as_deref().is_some_and(|r| r != h.region) {
            sdm("Credential should be scoped to a valid region. ".into())
        } else if amz_date.is_none() {
            Some(AwsError::new(
                400,
                "IncompleteSignature",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            ))
        } else if skew.is_none() {
            Some(AwsError::new(
                400,
                "IncompleteSignature",
                "X-Amz-Date must be in the ISO 8601 basic format YYYYMMDDTHHMMSSZ",
            ))
        } else if amz_date.and_then(|d| d.get(..8)) != Some(h.date.as_str()) {
            sdm(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                h.date,
                amz_date.and_then(|d| d.get(..8)).unwrap_or(""),
                amz_date.unwrap_or("")
            ))
        } else if skew.is_some_and(|t| t.checked_add(MAX_SKEW).is_some_and(|late| late < now)) {
            sdm(format!(
                "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                amz_date.unwrap_or(""),
                format_amz_date(now.checked_sub(MAX_SKEW).unwrap_or(now)),
                format_amz_date(now)
            ))
        } else if skew.is_some_and(|t| t > now + MAX_SKEW) {
            sdm(format!(
                "Signature not yet current: {} is still later than {} ({} + 5 min.)",
                amz_date.unwrap_or(""),
                format_amz_date(now + MAX_SKEW),
                format_amz_date(now)
            ))
        } else if !signed.contains(&"host") {
            sdm("'Host' must be a 'SignedHeader' in the AWS Authorization.".into())
        } else if canonical.is_none() {
            sdm(format!(
                "A header listed in SignedHeaders is missing from the request: {}",
                signed.join(";")
            ))
        } else if !auth.signature_ok {
            sdm(format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
                canonical.as_deref().unwrap_or("")
            ))
        } else {
            None
        }
    } else {
        Some(AwsError::new(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ))
    };
    auth
}

/// The SigV4 canonical request, or None when a signed header is absent.
/// `path` is the path as sent (it is URI-encoded once more, as for every
/// service but S3), `query` the raw query string, `signed_headers` the
/// lowercase names in the order of the SignedHeaders list.
pub fn canonical_request<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(K, V)],
    signed_headers: &[&str],
    body: &[u8],
) -> Option<String> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return None;
        }
        canonical_headers.push_str(&name.to_ascii_lowercase());
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let uri = if path.is_empty() {
        "/".to_string()
    } else {
        uri_encode(path.as_bytes(), true)
    };
    Some(format!(
        "{method}\n{uri}\n{}\n{canonical_headers}\n{}\n{}",
        canonical_query(query),
        signed_headers.join(";"),
        hex(digest::digest(&digest::SHA256, body).as_ref())
    ))
}

/// Query parameters decoded, re-encoded strictly and sorted.
pub(crate) fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|seg| {
            let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
            (
                uri_encode(&percent_decode(k, false), false),
                uri_encode(&percent_decode(v, false), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\nhex(sha256(canonical_request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    )
}

pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
        key = hmac::sign(&k, part.as_bytes()).as_ref().to_vec();
    }
    hmac::Key::new(hmac::HMAC_SHA256, &key)
}

/// Hex SigV4 signature of a canonical request (scope date = first 8 chars of `amz_date`).
pub fn sigv4_signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let key = signing_key(secret, date, region, service);
    hex(hmac::sign(
        &key,
        string_to_sign(amz_date, &scope, canonical_request).as_bytes(),
    )
    .as_ref())
}

/// Credentials and scope for [`sign_for_test`].
#[derive(Clone, Copy, Debug)]
pub struct TestSigner<'a> {
    /// Access key id.
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret: &'a str,
    /// Session token, sent (and signed) as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope.
    pub service: &'a str,
}

impl<'a> TestSigner<'a> {
    /// ELBv2 in [`REGION`] with static credentials.
    pub fn elb(access_key_id: &'a str, secret: &'a str) -> TestSigner<'a> {
        TestSigner {
            access_key_id,
            secret,
            session_token: None,
            region: REGION,
            service: ELB_SERVICE,
        }
    }
}

/// Sign a request with SigV4 as of `time`: returns `headers` (all of them
/// signed; include `host`) plus `x-amz-date`, `x-amz-security-token` (with a
/// session token) and `authorization`.
pub fn sign_for_test(
    signer: &TestSigner<'_>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    let date = format_amz_date(time);
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.push(("x-amz-date".into(), date.clone()));
    if let Some(t) = signer.session_token {
        out.push(("x-amz-security-token".into(), t.to_string()));
    }
    let mut names: Vec<String> = out.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let canonical = canonical_request(method, path, query, &out, &refs, body).unwrap_or_default();
    let signature = sigv4_signature(
        signer.secret,
        &date,
        signer.region,
        signer.service,
        &canonical,
    );
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
            signer.access_key_id,
            date.get(..8).unwrap_or(""),
            signer.region,
            signer.service,
            names.join(";")
        ),
    ));
    out
}
