//! A fake AWS endpoint for process tests.
//!
//! One `std::net::TcpListener` bound to 127.0.0.1:0 serves, routed by path
//! and by the `Action` parameter:
//! - `POST /` with an ELBv2 action (DescribeTargetGroups, RegisterTargets,
//!   DeregisterTargets, DescribeTargetHealth): the ELBv2 Query API, every
//!   request SigV4-verified independently (with `ring`, not aws-sigv4);
//! - `POST /` with `Action=AssumeRoleWithWebIdentity`: STS, unsigned;
//! - `POST /` with `Action=AssumeRole`: STS, SigV4-verified for service
//!   `sts` (roles added with [`FakeAws::add_role`], ExternalId checked);
//! - `POST /` with `Action=GetCallerIdentity`: STS, signed (service `sts`);
//! - DescribeTargetGroupAttributes, and per-group settings
//!   ([`GroupSettings`]: target type, load balancer, deregistration delay,
//!   health check timing) for `-check`;
//! - `GET /container-credentials...`: the ECS / EKS Pod Identity credentials
//!   endpoint (point `AWS_CONTAINER_CREDENTIALS_FULL_URI` at it);
//! - `/latest/...`: IMDSv2 (token, role name, role credentials).
//!
//! Every request is recorded ([`Recorded`]) and calls can be scripted to fail
//! ([`Fault`]). HTTP/1.1 with keep-alive and Content-Length bodies only. The
//! shape follows ureq 2.x's test server: an accept thread, one thread per
//! connection, and `Drop` stops the server. Each request also prints one line
//! on stderr (`fake-aws: ...`), which the test harness shows only for a
//! failing test.
//!
//! Beside the fake, [`process`] runs the sidecar binary against it: a
//! controlled environment, captured output, real signals, a kill on drop;
//! [`fleet`] runs many of them at once against one fake with ELBv2's
//! token buckets.
//!
//! Modules follow the parts of the fake: [`server`] is the handle tests hold,
//! `state` (with `elbv2` and `credentials`) the ELBv2, STS, container and
//! IMDS state, [`sigv4`] the independent verifier, `http` and `routes` the
//! server loop and the answers, [`wire`] the form/XML/JSON encoding,
//! [`time`] the date formats, [`client`] a tiny HTTP client for tests.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod credentials;
mod elbv2;
pub mod fleet;
mod http;
pub mod process;
mod routes;
pub mod server;
pub mod sigv4;
mod state;
pub mod time;
pub mod wire;

pub use client::{http_request, read_response, write_request, HttpResponse};
pub use server::{FakeAws, Fault, RateLimits, Recorded};
pub use sigv4::{canonical_request, sign_for_test, sigv4_signature, string_to_sign, TestSigner};
pub use state::{AssumedRole, GroupSettings};
pub use time::{format_amz_date, parse_amz_date, rfc3339};
pub use wire::{form_encode, json_text, parse_form, xml_text, xml_texts};

/// Account id in every ARN the fake hands out.
pub const ACCOUNT_ID: &str = "123456789012";
/// Region in the ARNs the fake hands out. Requests may be signed for any
/// region unless [`FakeAws::require_region`] says otherwise.
pub const REGION: &str = "us-east-1";
/// VPC of every target group.
pub const VPC_ID: &str = "vpc-0a1b2c3d4e5f60718";
/// The one load balancer every target group is attached to.
pub const LOAD_BALANCER_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/fake-nlb/50dc6c495c0c9188";
/// XML namespace of ELBv2 responses.
pub const ELB_NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
/// XML namespace of STS responses.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// Access key accepted from the start.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIDFAKE";
/// Secret of [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_SECRET: &str = "fake-secret";
/// Role name served by the fake IMDS.
pub const IMDS_ROLE: &str = "fake-role";
/// SigV4 signing name of ELBv2.
pub const ELB_SERVICE: &str = "elasticloadbalancing";
/// ELBv2 actions the fake implements.
pub const ELB_ACTIONS: [&str; 5] = [
    "DescribeTargetGroups",
    "DescribeTargetGroupAttributes",
    "RegisterTargets",
    "DeregisterTargets",
    "DescribeTargetHealth",
];
