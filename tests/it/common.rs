//! What the process tests share beyond the `fake-aws` crate: the path of
//! the binary cargo built for them.

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_k8s-nlb-registrator-sidecar");
