//! The T5 graph written once over [`ops::Ops`], which our CPU kernels (`crate::cpu::ops`) and our
//! WGSL kernels (`crate::kernels::ops`) implement; burn's autodiff model (`crate::model::t5`) is
//! the oracle the tests hold both to.

pub mod host;
pub mod ops;
pub mod t5;

pub use ops::{Bias, KeyValues, LoadError, Mat, Ops};
pub use t5::{DecoderTape, Encoded, T5Graph};
