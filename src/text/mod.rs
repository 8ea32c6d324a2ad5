//! Text side: the T5 tokenizer.

pub mod examples;
pub mod tokenizer;
