//! k8s-nlb-registrator-sidecar: registers its pod's IP in AWS ELBv2 `ip`
//! target groups, waits until healthy, and deregisters it on SIGTERM. A
//! library with a thin binary; [`aws::http`] alone talks to the network,
//! [`signals`] alone touches signal handlers.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aws;
pub mod clock;
pub mod config;
pub mod env;
pub mod hooks;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod preflight;
pub mod signals;
pub mod status;
pub mod system;
pub mod tcp_table;
