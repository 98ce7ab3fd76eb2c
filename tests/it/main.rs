//! Integration tests, one binary (each binary is a link, and links dominate
//! a 2-core test run): the real sidecar as a process against the fake
//! ELBv2/STS (`tests/fake-aws`), moto, the static binaries and the image.

mod assume_role;
mod budget;
mod check;
mod common;
mod credentials;
mod docs;
mod endpoints;
mod fleet;
mod hooks;
mod http_hooks;
mod image;
mod invariant;
mod ipv6;
mod lb_health;
mod lifecycle;
mod log_format;
mod manifests;
mod metrics;
mod monitoring;
mod moto;
mod pid1;
mod proxy;
mod readiness;
mod scratch;
mod skew;
mod soak;
mod status;
mod status_abuse;
mod verify_deps;
mod zero_downtime;
