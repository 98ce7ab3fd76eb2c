//! The credential endpoints: STS AssumeRoleWithWebIdentity and AssumeRole,
//! the container credentials endpoint (ECS / EKS Pod Identity) and IMDSv2.

use crate::http::{Kind, Request, Response};
use crate::routes::error_response;
use crate::sigv4::Auth;
use crate::state::{AssumedRole, AwsError, State, ALNUM};
use crate::time::rfc3339;
use crate::wire::{json_escape, param, xml_escape};
use crate::{ACCOUNT_ID, IMDS_ROLE, REGION};
use std::time::{Duration, SystemTime};

impl State {
    pub(crate) fn assume_role_with_web_identity(
        &mut self,
        params: &[(String, String)],
        now: SystemTime,
    ) -> Result<String, AwsError> {
        if let Some(token) = param(params, "WebIdentityToken") {
            self.web_identity_tokens.push(token.to_string());
        }
        match param(params, "Version") {
            Some("2011-06-15") => {}
            v => {
                return Err(AwsError::new(
                    400,
                    "InvalidAction",
                    format!(
                        "Could not find operation AssumeRoleWithWebIdentity for version {}",
                        v.unwrap_or("NO_VERSION_SPECIFIED")
                    ),
                ))
            }
        }
        let role_arn = param(params, "RoleArn").ok_or_else(|| AwsError::null("roleArn"))?;
        let role_name = role_arn.split_once(":role/").map(|(_, r)| r).unwrap_or("");
        if !role_arn.starts_with("arn:aws:iam::") || role_name.is_empty() {
            return Err(AwsError::validation(format!("{role_arn} is invalid")));
        }
        let session = check_session_name(params)?;
        let token =
            param(params, "WebIdentityToken").ok_or_else(|| AwsError::null("webIdentityToken"))?;
        if token.is_empty() {
            return Err(AwsError::new(
                400,
                "InvalidIdentityToken",
                "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)",
            ));
        }
        check_duration(params)?;
        let role_name = role_name
            .rsplit('/')
            .next()
            .unwrap_or(role_name)
            .to_string();
        let (akid, secret, session_token, expires) =
            self.issue_credentials("ASIAFAKE", self.sts_lifetime, now);
        Ok(format!(
            "
    <SubjectFromWebIdentityToken>system:serviceaccount:default:fake</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/{session}</Arn>
      <AssumedRoleId>AROAFAKEROLEID0000000:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{akid}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::{ACCOUNT_ID}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/FAKE0123456789ABCDEF</Provider>
  ",
            role = xml_escape(&role_name),
            session = xml_escape(session),
            token = xml_escape(&session_token),
            secret = xml_escape(&secret),
            expiration = rfc3339(expires),
        ))
    }

    /// STS AssumeRole, signed (service `sts`) with the caller's credentials:
    /// the role must be known ([`crate::FakeAws::add_role`]), its ExternalId
    /// must match, and a caller with temporary credentials (role chaining)
    /// may ask for one hour at most, as AWS rules.
    pub(crate) fn assume_role(
        &mut self,
        params: &[(String, String)],
        auth: &Auth,
        now: SystemTime,
    ) -> Result<String, AwsError> {
        if let Some(e) = &auth.error {
            return Err(e.clone());
        }
        let caller = auth.access_key_id.clone().unwrap_or_default();
        if param(params, "Version") != Some("2011-06-15") {
            return Err(AwsError::new(
                400,
                "InvalidAction",
                "Could not find operation AssumeRole for this version",
            ));
        }
        let role_arn = param(params, "RoleArn").ok_or_else(|| AwsError::null("roleArn"))?;
        let Some((account, role_name)) = role_arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.split_once(":role/"))
            .filter(|(a, r)| a.len() == 12 && !r.is_empty())
        else {
            return Err(AwsError::validation(format!("{role_arn} is invalid")));
        };
        let session = check_session_name(params)?;
        let duration = check_duration(params)?;
        let denied = || {
            AwsError::new(
                403,
                "AccessDenied",
                format!(
                    "User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/fake-caller/{caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                ),
            )
        };
        let spec = self.roles.get(role_arn).ok_or_else(denied)?;
        if spec.external_id.is_some() && spec.external_id.as_deref() != param(params, "ExternalId")
        {
            return Err(denied());
        }
        let chained = self.creds.get(&caller).is_some_and(|c| c.token.is_some());
        if chained && duration.is_some_and(|d| d > 3600) {
            return Err(AwsError::validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ));
        }
        let lifetime = self
            .assume_role_lifetime
            .unwrap_or(Duration::from_secs(duration.unwrap_or(3600)));
        let (akid, secret, session_token, expires) =
            self.issue_credentials("ASIAROLE", lifetime, now);
        self.assumed_roles.push(AssumedRole {
            role_arn: role_arn.to_string(),
            session_name: session.to_string(),
            external_id: param(params, "ExternalId").map(str::to_string),
            duration_seconds: duration,
            caller_access_key_id: caller,
            issued_access_key_id: akid.clone(),
        });
        let role_name = role_name.rsplit('/').next().unwrap_or(role_name);
        Ok(format!(
            "
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn>
      <AssumedRoleId>AROAFAKECROSSACCOUNT0:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  ",
            account = xml_escape(account),
            role = xml_escape(role_name),
            session = xml_escape(session),
            token = xml_escape(&session_token),
            secret = xml_escape(&secret),
            expiration = rfc3339(expires),
        ))
    }

    /// GetCallerIdentity: signed (the caller checked the signature); the
    /// ARN of a user for long-term keys, of the assumed role's session for
    /// keys AssumeRole issued, of the fake role's for the other temporary
    /// ones.
    pub(crate) fn get_caller_identity(
        &mut self,
        params: &[(String, String)],
        auth: &Auth,
    ) -> Result<String, AwsError> {
        if param(params, "Version") != Some("2011-06-15") {
            return Err(AwsError::new(
                400,
                "InvalidAction",
                "Could not find operation GetCallerIdentity for this version",
            ));
        }
        let Some(akid) = auth.access_key_id.as_deref() else {
            return Err(AwsError::new(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ));
        };
        let assumed = self
            .assumed_roles
            .iter()
            .find(|r| r.issued_access_key_id == akid);
        let (arn, user_id) = if let Some(r) = assumed {
            let (account, role) = r
                .role_arn
                .strip_prefix("arn:aws:iam::")
                .and_then(|x| x.split_once(":role/"))
                .unwrap_or((ACCOUNT_ID, "role"));
            let role = role.rsplit('/').next().unwrap_or(role);
            (
                format!(
                    "arn:aws:sts::{account}:assumed-role/{role}/{}",
                    r.session_name
                ),
                format!("AROAFAKECROSSACCOUNT0:{}", r.session_name),
            )
        } else if akid.starts_with("ASIA") {
            (
                format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{IMDS_ROLE}/fake-session"),
                "AROAFAKEROLEID0000000:fake-session".to_string(),
            )
        } else {
            (
                format!("arn:aws:iam::{ACCOUNT_ID}:user/fake-user"),
                "AIDAFAKEUSERID0000000".to_string(),
            )
        };
        Ok(format!(
            "
    <Arn>{}</Arn>
    <UserId>{user_id}</UserId>
    <Account>{ACCOUNT_ID}</Account>
  ",
            xml_escape(&arn)
        ))
    }

    // --- container credentials and IMDS -------------------------------------

    pub(crate) fn container(
        &mut self,
        req: &Request,
        now: SystemTime,
        request_id: &str,
    ) -> Response {
        if req.method != "GET" {
            let e = AwsError::new(405, "MethodNotAllowed", "only GET is supported");
            return error_response(Kind::Container, &e, request_id);
        }
        if let Some(expected) = &self.container_token {
            if req.header("authorization") != Some(expected.as_str()) {
                let e = AwsError::new(
                    401,
                    "AccessDenied",
                    "Authorization token is missing or invalid",
                );
                return error_response(Kind::Container, &e, request_id);
            }
        }
        let (akid, secret, token, expires) =
            self.issue_credentials("ASIACONT", self.container_lifetime, now);
        let body = format!(
            "{{\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"{}\",\"Token\":\"{}\",\"AccountId\":\"{ACCOUNT_ID}\",\"Expiration\":\"{}\",\"RoleArn\":\"arn:aws:iam::{ACCOUNT_ID}:role/fake-pod-role\"}}",
            json_escape(&akid),
            json_escape(&secret),
            json_escape(&token),
            rfc3339(expires)
        );
        Response::new(200, "application/json", body.into_bytes())
    }

    pub(crate) fn imds(&mut self, req: &Request, now: SystemTime) -> Response {
        let text =
            |status: u16, body: &str| Response::new(status, "text/plain", body.as_bytes().to_vec());
        if req.path == "/latest/api/token" {
            if req.method != "PUT" {
                return text(405, "Method Not Allowed");
            }
            if req.header("x-forwarded-for").is_some() {
                return text(403, "Forbidden");
            }
            let ttl = match req
                .header("x-aws-ec2-metadata-token-ttl-seconds")
                .map(str::parse::<u64>)
            {
                Some(Ok(ttl @ 1..=21600)) => ttl,
                _ => return text(400, "Bad Request"),
            };
            let token = format!("AQAEAFAKE{}==", self.random_string(48, ALNUM));
            self.imds_tokens.retain(|(_, exp)| *exp > now);
            self.imds_tokens
                .push((token.clone(), now + Duration::from_secs(ttl)));
            return text(200, &token)
                .header("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", &ttl.to_string());
        }
        if req.method != "GET" {
            return text(405, "Method Not Allowed");
        }
        let authorized = req
            .header("x-aws-ec2-metadata-token")
            .is_some_and(|t| self.imds_tokens.iter().any(|(k, exp)| k == t && *exp > now));
        if !authorized {
            return text(401, "Unauthorized");
        }
        let creds_path = "/latest/meta-data/iam/security-credentials";
        let Some(rest) = req.path.strip_prefix(creds_path) else {
            return text(404, "Not Found");
        };
        match rest.trim_end_matches('/') {
            "" => text(200, IMDS_ROLE),
            r if r.strip_prefix('/') == Some(IMDS_ROLE) => {
                let (akid, secret, token, expires) =
                    self.issue_credentials("ASIAIMDS", self.imds_lifetime, now);
                let body = format!(
                    "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"{}\",\n  \"SecretAccessKey\" : \"{}\",\n  \"Token\" : \"{}\",\n  \"Expiration\" : \"{}\"\n}}",
                    rfc3339(now),
                    json_escape(&akid),
                    json_escape(&secret),
                    json_escape(&token),
                    rfc3339(expires)
                );
                text(200, &body)
            }
            _ => text(404, "Not Found"),
        }
    }
}

/// `RoleSessionName`, present and as STS constrains it.
fn check_session_name(params: &[(String, String)]) -> Result<&str, AwsError> {
    let session =
        param(params, "RoleSessionName").ok_or_else(|| AwsError::null("roleSessionName"))?;
    if !(2..=64).contains(&session.len())
        || !session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(session)
}

/// `DurationSeconds`, when present: 900 to 43200.
fn check_duration(params: &[(String, String)]) -> Result<Option<u64>, AwsError> {
    match param(params, "DurationSeconds") {
        None => Ok(None),
        Some(d) => match d.parse::<u64>() {
            Ok(secs @ 900..=43200) => Ok(Some(secs)),
            _ => Err(AwsError::validation(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
            ))),
        },
    }
}
