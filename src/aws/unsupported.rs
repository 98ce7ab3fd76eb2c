//! SDK settings this program does not read, found at start so that a
//! user who set one hears it is ignored rather than wondering why it has
//! no effect.
//!
//! The SDKs' shared config and credentials files, and the profiles that
//! live in them, are not supported on purpose (README, "AWS credentials,
//! endpoints and proxies", *Not supported on purpose*): a pod has no home
//! directory worth reading. They are ignored, not refused, so a pod spec copied from
//! one using an SDK keeps working; each one set gets one warning.

use crate::env::Env;

/// The SDK variables warned about: name, why it has no effect, and what to
/// use instead.
const IGNORED: &[(&str, &str, &str)] = &[
    ("AWS_PROFILE", PROFILES, INSTEAD_OF_FILES),
    ("AWS_DEFAULT_PROFILE", PROFILES, INSTEAD_OF_FILES),
    ("AWS_CONFIG_FILE", FILES, INSTEAD_OF_FILES),
    ("AWS_SHARED_CREDENTIALS_FILE", FILES, INSTEAD_OF_FILES),
    ("AWS_MAX_ATTEMPTS", RETRIES, INSTEAD_OF_RETRIES),
    ("AWS_RETRY_MODE", RETRIES, INSTEAD_OF_RETRIES),
];

const PROFILES: &str = "profiles are not supported";
const FILES: &str = "the shared config and credentials files are not supported";
const RETRIES: &str = "retries are bounded by time, not by a count or mode \
    (throttling always slows this pod down, as the SDKs' adaptive mode does)";

/// What to use instead of the shared files and profiles.
const INSTEAD_OF_FILES: &str = "use IRSA or EKS Pod Identity, the node's role through IMDS, \
    or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; AWS_REGION for the region and \
    AWS_ENDPOINT_URL* for endpoints (README: \"Not supported on purpose\")";

/// What to use instead of the SDKs' retry settings.
const INSTEAD_OF_RETRIES: &str = "use -register-timeout, -deregister-timeout and \
    -wait-in-service-timeout (README: \"Not supported on purpose\")";

/// One warning per unsupported SDK variable set in `env` (empty counts as
/// unset), in a fixed order. A warning names the variable, never its value.
pub fn warnings(env: &dyn Env) -> Vec<String> {
    IGNORED
        .iter()
        .filter(|(name, _, _)| env.var(name).is_some())
        .map(|(name, why, instead)| format!("{name} is set but ignored: {why}; {instead}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::test_env;

    #[test]
    fn none_set_means_no_warning() {
        let env = test_env(&[("AWS_REGION", "eu-west-1"), ("AWS_PROFILE", "")]);
        assert!(warnings(&env).is_empty());
    }

    #[test]
    fn each_variable_set_gets_one_warning_naming_it_without_its_value() {
        let env = test_env(&[
            ("AWS_SHARED_CREDENTIALS_FILE", "/home/secret-path/creds"),
            ("AWS_PROFILE", "prod-profile"),
            ("AWS_CONFIG_FILE", "/home/secret-path/config"),
            ("AWS_DEFAULT_PROFILE", "default-profile"),
        ]);
        let w = warnings(&env);
        let names = [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        ];
        assert_eq!(w.len(), names.len());
        for (line, name) in w.iter().zip(names) {
            assert!(
                line.starts_with(&format!("{name} is set but ignored: ")),
                "{line}"
            );
            assert!(
                line.contains("IRSA") && line.contains("AWS_ACCESS_KEY_ID"),
                "{line}"
            );
            assert!(line.contains("Not supported on purpose"), "{line}");
            for value in ["secret-path", "prod-profile", "default-profile"] {
                assert!(!line.contains(value), "{line}");
            }
        }
        assert!(w[0].contains("profiles are not supported"));
        assert!(w[2].contains("shared config and credentials files"));
    }

    #[test]
    fn retry_settings_are_named_with_the_flags_that_bound_retries() {
        let env = test_env(&[("AWS_RETRY_MODE", "standard"), ("AWS_MAX_ATTEMPTS", "7")]);
        let w = warnings(&env);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("AWS_MAX_ATTEMPTS is set but ignored: retries are bounded by time")
        );
        assert!(w[1].starts_with("AWS_RETRY_MODE is set but ignored: "));
        for line in &w {
            assert!(line.contains("-deregister-timeout"), "{line}");
            assert!(!line.contains("standard") && !line.contains('7'), "{line}");
            assert!(!line.contains("IRSA"), "{line}");
        }
    }
}
