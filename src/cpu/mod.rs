//! The CPU backend of the T5 graph (`crate::graph`): its ops on the `gemm` crate and rayon. Each op here is the Rust
//! reference twin of a WGSL kernel, and the whole is the fast native engine that meta-training and
//! the evaluation tables run on.

pub mod adapter;
pub mod attention;
pub mod cross_entropy;
pub mod distill;
pub mod gated_gelu;
pub mod gemm;
pub mod ops;
mod par;
pub mod rms_norm;
pub mod scale_add;

pub use ops::{CpuOps, CpuT5};
