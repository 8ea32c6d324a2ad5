//! The T5 graph written once over [`ops::Ops`], which our CPU kernels (`crate::cpu::ops`) and our
//! WGSL kernels (`crate::kernels::ops`) implement; burn's autodiff model (`crate::model::t5`) is
//! the oracle the tests hold both to.

pub mod adapters;
pub mod host;
pub mod objective;
pub mod ops;
pub mod sampling;
pub mod t5;

pub use adapters::{Adapter, Adapters, Mixture, Sublayer};
pub use host::Piece;
pub use objective::{Gradients, Loss, Objective, Part, Row, Teacher};
pub use ops::{Bias, KeyValues, LoadError, Mat, Ops};
pub use sampling::Sampler;
pub use t5::{DecoderCache, DecoderTape, Encoded, Memory, T5Graph};
