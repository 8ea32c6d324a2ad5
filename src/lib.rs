//! metaprompt: few-shot soft-prompt learning on a frozen T5, shared by the web app (wasm32) and
//! the native CLI, so both report the same numbers.

pub mod clock;
pub mod compare;
pub mod cpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod fuzzing;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod lifelong;
pub mod meta;
pub mod model;
pub mod prompt;
pub mod relation;
pub mod selfcheck;
pub mod tasks;
pub mod text;
pub mod worker;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
pub mod browser;
