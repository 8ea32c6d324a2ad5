//! The CPU path: T5's prompt-tuning step written out by hand (forward that keeps what backward
//! needs, backward for activations only), on the `gemm` crate and rayon. Each op here is the Rust
//! reference twin of a WGSL kernel, and the whole is the fast native engine that meta-training and
//! the evaluation tables run on.

pub mod attention;
pub mod cross_entropy;
pub mod gated_gelu;
pub mod gemm;
mod par;
pub mod rms_norm;
pub mod t5;

pub use t5::{CpuT5, Encoded};
