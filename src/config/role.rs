//! `-role-arn`, `-role-external-id`, `-role-session-name`, checked against
//! STS's constraints (the AssumeRole API reference), so a typo fails at
//! start with exit 2 and the flag's name, not as a `ValidationError` later.

use super::{ConfigError, Settings};
use crate::aws::credentials::Secret;

/// The role to assume, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// `-role-arn`: `arn:PARTITION:iam::ACCOUNT_ID:role/[PATH/]NAME`.
    pub arn: String,
    /// `-role-external-id`, when the role's trust policy asks for one.
    pub external_id: Option<Secret>,
    /// `-role-session-name`; `None`: the default (prefix and time).
    pub session_name: Option<String>,
}

impl Settings<'_> {
    /// The role settings; the external id and the session name need the ARN.
    pub(super) fn role(&self) -> Result<Option<RoleConfig>, ConfigError> {
        let arn = self.optional("role-arn", parse_role_arn)?;
        let external_id = self.optional("role-external-id", parse_external_id)?;
        let session_name = self.optional("role-session-name", parse_session_name)?;
        if arn.is_none() {
            let set = external_id.is_some().then_some("role-external-id");
            if let Some(name) = set.or(session_name.is_some().then_some("role-session-name")) {
                let from = self.lookup(name).map(|(_, from)| from).unwrap_or_default();
                return Err(ConfigError(format!(
                    "{from} is set but -role-arn (NLB_ROLE_ARN) is not: \
                     it only applies to the role to assume"
                )));
            }
        }
        Ok(arn.map(|arn| RoleConfig {
            arn,
            external_id,
            session_name,
        }))
    }
}

/// Whether every character of `v` is a word character or one of `extra`
/// (STS's `[\w+=,.@-]*` patterns).
fn word_chars(v: &str, extra: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c))
}

fn parse_role_arn(what: &str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim();
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| {
            !name.is_empty() && !name.ends_with('/') && word_chars(name, "+=,.@-/")
        })
        && v.len() <= 2048;
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ConfigError(format!(
            "{what}: invalid role ARN {v:?}: expected arn:aws:iam::ACCOUNT_ID:role/NAME"
        )))
    }
}

fn parse_external_id(what: &str, v: &str) -> Result<Secret, ConfigError> {
    if (2..=1224).contains(&v.chars().count()) && word_chars(v, "+=,.@:/-") {
        Ok(v.into())
    } else {
        // Not a secret by AWS's account, but not echoed either.
        Err(ConfigError(format!(
            "{what}: invalid external id: 2 to 1224 characters of letters, digits and _+=,.@:/-"
        )))
    }
}

fn parse_session_name(what: &str, v: &str) -> Result<String, ConfigError> {
    if (2..=64).contains(&v.len()) && word_chars(v, "+=,.@-") {
        Ok(v.to_owned())
    } else {
        Err(ConfigError(format!(
            "{what}: invalid role session name {v:?}: 2 to 64 characters of letters, digits and _+=,.@-"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        for ok in [
            "arn:aws:iam::444455556666:role/nlb-registrator",
            "arn:aws:iam::444455556666:role/service-role/team.a/nlb_registrator+x=y,z@w",
            "arn:aws-cn:iam::444455556666:role/r",
            "arn:aws-us-gov:iam::444455556666:role/r",
        ] {
            assert_eq!(parse_role_arn("-role-arn", ok).unwrap(), ok);
        }
        for bad in [
            "nlb-registrator",
            "arn:aws:iam::4444555566:role/r",
            "arn:aws:iam::444455556666:user/r",
            "arn:aws:iam::444455556666:role/",
            "arn:aws:iam:us-east-1:444455556666:role/r",
            "arn:aws:sts::444455556666:assumed-role/r/s",
            "arn:aws:iam::444455556666:role/a b",
        ] {
            let e = parse_role_arn("-role-arn", bad).unwrap_err();
            assert!(e.0.starts_with("-role-arn: invalid role ARN"), "{bad}: {e}");
        }
    }

    #[test]
    fn external_ids_and_session_names() {
        assert!(parse_external_id("x", "a1:b/c=d@e,f.g+h_i-j").is_ok());
        assert!(parse_external_id("x", "a").is_err());
        assert!(parse_external_id("x", "has space").is_err());
        let e = parse_external_id("NLB_ROLE_EXTERNAL_ID", "sec ret").unwrap_err();
        assert!(!e.0.contains("sec ret"), "{e}");
        assert!(parse_session_name("x", "pod-a.b@c").is_ok());
        assert!(parse_session_name("x", &"a".repeat(64)).is_ok());
        assert!(parse_session_name("x", &"a".repeat(65)).is_err());
        assert!(parse_session_name("x", "a/b").is_err());
    }
}
