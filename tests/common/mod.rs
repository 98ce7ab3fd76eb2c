pub mod fake;
pub mod sidecar;
