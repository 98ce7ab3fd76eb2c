//! k8s-nlb-registrator-sidecar: registers its pod's IP in AWS ELBv2 target
//! groups of type `ip`, waits until the load balancer reports it healthy,
//! and deregisters it on SIGTERM before the pod goes away.
//!
//! The crate is a library with a thin binary (`src/main.rs`). Protocol code
//! (requests, responses, config parsing, the lifecycle's decisions) is
//! pure and tested without IO; [`aws::http`] is the only module that talks
//! to the network, [`signals`] the only one that touches signal handlers.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aws;
pub mod clock;
pub mod command;
pub mod config;
pub mod effects;
pub mod env;
pub mod http_hook;
pub mod lb_health;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod preflight;
pub mod signals;
pub mod status;
pub mod tcp_table;
