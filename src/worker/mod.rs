//! The page's worker: the model, training, scoring and generation run in a dedicated Web Worker
//! so that the page's thread only draws (a tuning step takes seconds on the CPU engine, and the
//! tab would freeze for all of it). The page and the worker talk in `protocol`'s messages; the
//! worker's side is `host`.

pub mod protocol;

#[cfg(target_arch = "wasm32")]
pub mod host;

#[cfg(target_arch = "wasm32")]
mod relations;

#[cfg(target_arch = "wasm32")]
mod lifelong;
