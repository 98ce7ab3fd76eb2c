//! Routing of a request to its endpoint, scripted faults, and the answers
//! (success bodies and each endpoint's error format).

use crate::http::{Kind, Request, Response};
use crate::server::{Fault, Recorded};
use crate::sigv4::{check_sigv4, Auth};
use crate::state::{AwsError, Shared};
use crate::wire::{json_escape, param, parse_form, xml_escape};
use crate::{ACCOUNT_ID, ELB_NS, ELB_SERVICE, STS_NS};
use std::time::Instant;

/// Route a request: (kind, action name for faults and records, parameters).
pub(crate) fn route(req: &Request) -> (Kind, String, Vec<(String, String)>) {
    let mut params = parse_form(&req.query);
    if req.path == "/" {
        let is_form = req.header("content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if req.method == "POST" && is_form {
            params.extend(parse_form(&String::from_utf8_lossy(&req.body)));
        }
        let kind = match param(&params, "Action") {
            None => Kind::MissingAction,
            Some("AssumeRoleWithWebIdentity" | "AssumeRole" | "GetCallerIdentity") => Kind::Sts,
            Some(_) => Kind::Elb,
        };
        let action = param(&params, "Action").unwrap_or("").to_string();
        (kind, action, params)
    } else if req.path.starts_with("/container-credentials") {
        (Kind::Container, "container".into(), params)
    } else if req.path == "/latest" || req.path.starts_with("/latest/") {
        (Kind::Imds, "imds".into(), params)
    } else {
        (Kind::NotFound, "unknown".into(), params)
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) req: &'a Request,
    pub(crate) kind: Kind,
    pub(crate) action: &'a str,
    pub(crate) params: &'a [(String, String)],
    pub(crate) auth: &'a Auth,
    pub(crate) request_id: &'a str,
}

/// Record the request, apply any fault, build the answer (None: close without one).
pub(crate) fn handle(shared: &Shared, req: &Request) -> Option<Response> {
    let at = Instant::now();
    let now = shared.now();
    let (kind, action, params) = route(req);
    let mut st = shared.lock();
    let auth = match kind {
        Kind::Elb => check_sigv4(&st, req, ELB_SERVICE, now),
        Kind::Sts if action == "AssumeRole" || req.header("authorization").is_some() => {
            check_sigv4(&st, req, "sts", now)
        }
        _ => Auth::default(),
    };
    let request_id = st.request_id();
    // An empty token bucket throttles the call before anything else (a
    // scripted fault stays queued for the next call).
    let throttled = kind == Kind::Elb && !st.take_token(&action, at);
    let fault = if throttled {
        None
    } else {
        st.pop_fault(&action)
    };
    let quiet = st.quiet;
    st.requests.push(Recorded {
        action: action.clone(),
        params: params.clone(),
        at,
        access_key_id: auth.access_key_id.clone(),
        signature_ok: auth.signature_ok,
        path: req.path.clone(),
        method: req.method.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        auth_error: auth.error.as_ref().map(|e| e.code.clone()),
        region: auth.region.clone(),
        service: auth.service.clone(),
        request_id: request_id.clone(),
        fault: fault.clone(),
        status: None,
        error_code: None,
    });
    let index = st.requests.len() - 1;
    shared.cond.notify_all();
    drop(st);

    let ctx = Ctx {
        shared,
        req,
        kind,
        action: &action,
        params: &params,
        auth: &auth,
        request_id: &request_id,
    };
    let resp = if throttled {
        apply(Some(Fault::Throttle), &ctx)
    } else {
        apply(fault.clone(), &ctx)
    };

    let mut st = shared.lock();
    if let Some(r) = st.requests.get_mut(index) {
        r.status = resp.as_ref().map(|r| r.status);
        r.error_code = resp.as_ref().and_then(|r| r.error_code.clone());
    }
    drop(st);
    if quiet {
        return resp;
    }
    eprintln!(
        "fake-aws: {} {} action={:?} key={} sig_ok={} fault={:?} -> {}",
        req.method,
        req.path,
        action,
        auth.access_key_id.as_deref().unwrap_or("-"),
        auth.signature_ok,
        fault,
        match &resp {
            Some(r) => format!("{} {}", r.status, r.error_code.as_deref().unwrap_or("")),
            None => "no answer".into(),
        }
    );
    resp
}

pub(crate) fn apply(fault: Option<Fault>, c: &Ctx<'_>) -> Option<Response> {
    let fail = |e: AwsError| Some(error_response(c.kind, &e, c.request_id));
    match fault {
        None => Some(normal(c)),
        Some(Fault::Delay(d)) => c.shared.sleep(d).then(|| normal(c)),
        Some(Fault::Throttle) => {
            let status = if matches!(c.kind, Kind::Container | Kind::Imds) {
                429
            } else {
                400
            };
            fail(AwsError::new(status, "Throttling", "Rate exceeded"))
        }
        Some(Fault::Status(s)) => fail(status_error(s)),
        Some(Fault::Error(s, code)) => fail(AwsError::new(s, code, code_message(code))),
        Some(Fault::Reset) => None,
        Some(Fault::Garbage(body)) => Some(Response::new(200, content_type(c.kind), body.to_vec())),
        Some(Fault::Truncated) => {
            let body = match c.kind {
                Kind::Container | Kind::Imds => "{\"AccessKeyId\":\"ASIA".to_string(),
                _ => format!("<{}Response xmlns=\"{ELB_NS}\">\n  <", c.action),
            };
            let mut r = Response::new(200, content_type(c.kind), body.into_bytes());
            r.truncate = true;
            Some(r)
        }
        Some(Fault::Hang) => {
            c.shared.wait_stop();
            None
        }
        Some(Fault::Hold) => {
            let r = normal(c);
            c.shared.hold().then_some(r)
        }
        Some(Fault::HoldThenApply) => c.shared.hold().then(|| normal(c)),
        Some(Fault::ApplyThenFail(s)) => {
            let _ = normal(c);
            fail(status_error(s))
        }
        Some(Fault::ApplyThenReset) => {
            let _ = normal(c);
            None
        }
        Some(Fault::LandAfterDeregister(d)) => {
            if c.kind == Kind::Elb && c.action == "RegisterTargets" && c.auth.error.is_none() {
                c.shared.lock().hold_registration(c.params, d);
            }
            None
        }
    }
}

/// The answer without faults (applies the action's effect).
pub(crate) fn normal(c: &Ctx<'_>) -> Response {
    let now = c.shared.now();
    let rid = c.request_id;
    match c.kind {
        Kind::Elb => {
            if let Some(e) = &c.auth.error {
                return error_response(Kind::Elb, e, rid);
            }
            let result = c.shared.lock().elb(c.action, c.params);
            match result {
                Ok(inner) => ok_xml(ELB_NS, c.action, &inner, rid),
                Err(e) => error_response(Kind::Elb, &e, rid),
            }
        }
        Kind::Sts if c.action == "GetCallerIdentity" => {
            let result = match &c.auth.error {
                Some(e) => Err(e.clone()),
                None => c.shared.lock().get_caller_identity(c.params, c.auth),
            };
            match result {
                Ok(inner) => ok_xml(STS_NS, c.action, &inner, rid),
                Err(e) => error_response(Kind::Sts, &e, rid),
            }
        }
        Kind::Sts => {
            let result = if c.action == "AssumeRole" {
                c.shared.lock().assume_role(c.params, c.auth, now)
            } else {
                c.shared.lock().assume_role_with_web_identity(c.params, now)
            };
            match result {
                Ok(inner) => ok_xml(STS_NS, c.action, &inner, rid),
                Err(e) => error_response(Kind::Sts, &e, rid),
            }
        }
        Kind::Container => c.shared.lock().container(c.req, now, rid),
        Kind::Imds => c.shared.lock().imds(c.req, now),
        Kind::MissingAction => error_response(
            Kind::Elb,
            &AwsError::new(
                400,
                "MissingAction",
                "Missing Action parameter (POST / needs a form body with Action=...)",
            ),
            rid,
        ),
        Kind::NotFound => Response::new(404, "text/plain", b"not found (fake AWS)\n".to_vec()),
    }
}

pub(crate) fn content_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Container => "application/json",
        Kind::Imds | Kind::NotFound => "text/plain",
        _ => "text/xml",
    }
}

pub(crate) fn ok_xml(ns: &str, action: &str, inner: &str, request_id: &str) -> Response {
    let result = if inner.is_empty() {
        format!("<{action}Result/>")
    } else {
        format!("<{action}Result>{inner}</{action}Result>")
    };
    let body = format!(
        "<{action}Response xmlns=\"{ns}\">\n  {result}\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n"
    );
    Response::new(200, "text/xml", body.into_bytes()).header("x-amzn-RequestId", request_id)
}

pub(crate) fn error_response(kind: Kind, e: &AwsError, request_id: &str) -> Response {
    let mut r = match kind {
        Kind::Container => Response::new(
            e.status,
            "application/json",
            format!(
                "{{\"code\":\"{}\",\"message\":\"{}\"}}",
                json_escape(&e.code),
                json_escape(&e.message)
            )
            .into_bytes(),
        ),
        Kind::Imds | Kind::NotFound => Response::new(
            e.status,
            "text/plain",
            format!("{}: {}\n", e.code, e.message).into_bytes(),
        ),
        Kind::Sts | Kind::Elb | Kind::MissingAction => {
            let ns = if kind == Kind::Sts { STS_NS } else { ELB_NS };
            let typ = if e.status >= 500 {
                "Receiver"
            } else {
                "Sender"
            };
            let body = format!(
                "<ErrorResponse xmlns=\"{ns}\">\n  <Error>\n    <Type>{typ}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
                xml_escape(&e.code),
                xml_escape(&e.message)
            );
            Response::new(e.status, "text/xml", body.into_bytes())
                .header("x-amzn-RequestId", request_id)
        }
    };
    r.error_code = Some(e.code.clone());
    r
}

pub(crate) fn status_error(status: u16) -> AwsError {
    match status {
        500 => AwsError::new(500, "InternalFailure", code_message("InternalFailure")),
        503 => AwsError::new(
            503,
            "ServiceUnavailable",
            code_message("ServiceUnavailable"),
        ),
        429 => AwsError::new(429, "Throttling", code_message("Throttling")),
        403 => AwsError::new(403, "AccessDenied", code_message("AccessDenied")),
        s if s >= 500 => AwsError::new(s, "InternalFailure", code_message("InternalFailure")),
        s => AwsError::new(s, "ValidationError", code_message("ValidationError")),
    }
}

pub(crate) fn code_message(code: &str) -> String {
    match code {
        "AccessDenied" => format!(
            "User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/fake-role/fake-session is not authorized to perform this action"
        ),
        "TargetGroupNotFound" => "One or more target groups not found".into(),
        "ValidationError" => "Fake validation error".into(),
        "InvalidTarget" => "The specified target does not exist, is not in the same VPC as the target group, or has an unsupported instance type".into(),
        "Throttling" => "Rate exceeded".into(),
        "InternalFailure" => "An internal error has occurred. Please try again.".into(),
        "ServiceUnavailable" => "Service is unavailable. Please try again.".into(),
        "ExpiredToken" => "The security token included in the request is expired".into(),
        "InvalidClientTokenId" => "The security token included in the request is invalid.".into(),
        "InvalidIdentityToken" => "Couldn't retrieve verification key from your identity provider".into(),
        "IDPCommunicationError" => "Couldn't contact the identity provider".into(),
        "HealthUnavailable" => {
            "The health of the specified targets could not be retrieved due to an internal error."
                .into()
        }
        other => format!("Fake {other} error"),
    }
}
