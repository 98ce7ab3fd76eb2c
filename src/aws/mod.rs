//! The AWS layer: SigV4-signed ELBv2 and STS Query API calls, credentials,
//! endpoints and retries, written against `aws-sigv4`, `ureq` and
//! `quick-xml` without an AWS SDK.
//!
//! Layout, pure protocol first:
//! - [`query`]: the Query protocol and the [`Action`] trait
//!   (an action's name, parameters and response parser);
//! - [`elbv2`]: the target and health types and one file per ELBv2 action;
//!   [`sts`]: AssumeRoleWithWebIdentity and AssumeRole;
//! - [`xml`], [`error`]: reading answers and AWS errors;
//! - [`credentials`]: choosing a source, the cache, the `-role-arn` role,
//!   and the metadata endpoints ([`providers`](credentials::providers));
//! - [`endpoint`], [`sign`], [`retry`]: region and URLs, SigV4, backoff;
//!   [`skew`]: the signing time corrected by AWS's `Date` header.
//!
//! Then IO: [`http`], the one module that imports the HTTP client, and
//! [`client`], which signs, sends and retries any action.

pub mod client;
pub mod credentials;
pub mod elbv2;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod query;
pub mod retry;
pub mod sign;
pub mod skew;
pub mod sts;
#[cfg(test)]
mod tests;
pub mod xml;

pub use client::{Budget, Client, Settings};
pub use credentials::Role;
pub use error::{AwsError, Error};
pub use query::{Action, WithId};
