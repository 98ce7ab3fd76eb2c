//! The AWS layer: SigV4-signed ELBv2 and STS Query API calls, credentials,
//! endpoints and retries, written against `aws-sigv4`, `ureq` and
//! `quick-xml` without an AWS SDK.
//!
//! Layout: pure protocol modules ([`query`], [`elbv2`], [`sts`],
//! [`credentials`], [`endpoint`], [`sign`], [`retry`], [`error`]) that
//! build requests and parse responses without IO, the one module that
//! imports the HTTP client ([`http`]), and [`client`], which drives them.

pub mod client;
pub mod credentials;
pub mod elbv2;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod query;
pub mod resolver;
pub mod retry;
pub mod sign;
pub mod sts;

pub use client::{Budget, Client, Settings, WithId};
pub use error::{AwsError, Error};
