//! Text side: the T5 tokenizer.

pub mod tokenizer;
