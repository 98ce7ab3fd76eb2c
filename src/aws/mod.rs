//! The AWS layer without an SDK (`aws-sigv4`, `ureq`, `quick-xml`): pure
//! protocol modules (the Query protocol and its actions, XML, errors,
//! credentials, endpoints, signing, retries), then IO: [`http`],
//! the one module that imports the HTTP client, and [`client`].

pub mod client;
pub mod credentials;
pub mod elbv2;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod query;
pub mod retry;
mod sign;
pub mod sts;
#[cfg(test)]
pub(crate) mod tests;
pub mod xml;

pub use client::{Budget, Client, Settings};
pub use credentials::Role;
pub use error::{AwsError, Error};
pub use query::{Action, WithId};
