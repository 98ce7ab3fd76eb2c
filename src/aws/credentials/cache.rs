//! The credentials cache: reused until [`REFRESH_BEFORE`](super::REFRESH_BEFORE)
//! their expiry, and kept in use while a refresh fails and they have not
//! expired yet.

use super::Credentials;
use crate::aws::error::Error;
use crate::metrics;
use log::{info, warn};
use std::time::SystemTime;

/// The last credentials fetched, if any.
#[derive(Debug, Default)]
pub struct Cache {
    cached: Option<Credentials>,
}

impl Cache {
    /// Valid credentials at `now`: the cached ones unless due for a
    /// refresh, else those `fetch` gets from `source` (stored), else, when
    /// it fails, the cached ones until they expire.
    ///
    /// # Errors
    /// The fetch error when no unexpired credentials are cached.
    pub fn get(
        &mut self,
        now: SystemTime,
        source: &str,
        fetch: impl FnOnce() -> Result<Credentials, Error>,
    ) -> Result<Credentials, Error> {
        if let Some(c) = self.cached.as_ref().filter(|c| !c.needs_refresh(now)) {
            return Ok(c.clone());
        }
        match self.store(source, fetch()) {
            Ok(fresh) => Ok(fresh.clone()),
            Err(e) => match &self.cached {
                Some(old) if self.usable(now) => {
                    warn!("refreshing credentials from {source} failed, using the cached ones until they expire: {e}");
                    Ok(old.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Stores the result of a fetch from `source` when it succeeded (a
    /// failed one leaves the cache as it was), and counts it in the metrics.
    ///
    /// # Errors
    /// The fetch error.
    pub fn store_fetched(
        &mut self,
        source: &str,
        fetched: Result<Credentials, Error>,
    ) -> Result<(), Error> {
        self.store(source, fetched).map(|_| ())
    }

    fn store(
        &mut self,
        source: &str,
        fetched: Result<Credentials, Error>,
    ) -> Result<&Credentials, Error> {
        let expiry = fetched.as_ref().ok().and_then(|c| c.expiry);
        metrics::global().credentials_fetched(source, fetched.is_ok(), expiry);
        let fresh = fetched?;
        if let Some(expiry) = expiry {
            let until = humantime::format_rfc3339_seconds(expiry);
            info!(
                "credentials from {source} for {} valid until {until}",
                fresh.access_key_id
            );
        }
        Ok(self.cached.insert(fresh))
    }

    /// Drops the cached credentials (AWS said they expired).
    pub fn forget(&mut self) {
        self.cached = None;
    }

    /// Whether credentials are cached that have not expired at `now`.
    pub fn usable(&self, now: SystemTime) -> bool {
        self.cached
            .as_ref()
            .is_some_and(|c| c.expiry.is_none_or(|x| x > now))
    }

    /// When the cached credentials should be refreshed ahead of need.
    pub fn refresh_due(&self) -> Option<SystemTime> {
        self.cached.as_ref().and_then(Credentials::refresh_due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::credentials::Secret;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds(id: &str, expiry_secs: u64) -> Credentials {
        Credentials {
            access_key_id: id.into(),
            secret_access_key: Secret::new("s".into()),
            session_token: None,
            expiry: Some(UNIX_EPOCH + Duration::from_secs(expiry_secs)),
        }
    }

    fn down() -> Result<Credentials, Error> {
        Err(Error::Credentials("down".into()))
    }

    #[test]
    fn reuses_until_due_then_keeps_old_ones_until_expiry() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let mut c = Cache::default();
        assert!(c.get(at(0), "x", down).is_err());
        assert_eq!(
            c.get(at(0), "x", || Ok(creds("A", 1000)))
                .unwrap()
                .access_key_id,
            "A"
        );
        // Not due: no fetch.
        assert_eq!(c.get(at(100), "x", down).unwrap().access_key_id, "A");
        assert_eq!(c.refresh_due(), Some(at(400)));
        // Due, the fetch fails, still valid: the old ones.
        assert_eq!(c.get(at(800), "x", down).unwrap().access_key_id, "A");
        assert!(c.usable(at(800)));
        // Expired: the error.
        assert!(c.get(at(1000), "x", down).is_err());
        assert!(!c.usable(at(1000)));
        c.store_fetched("x", Ok(creds("B", 5000))).unwrap();
        assert_eq!(c.get(at(1000), "x", down).unwrap().access_key_id, "B");
        c.forget();
        assert!(c.get(at(1000), "x", down).is_err());
    }
}
