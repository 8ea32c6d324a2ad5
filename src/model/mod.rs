//! The frozen T5: configuration, checkpoint format, the model on burn, and (natively) conversion
//! from the shipped ONNX files.

pub mod checkpoint;
pub mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod manifest;
pub mod names;
pub mod t5;
pub mod tiny;

pub use config::T5Config;
pub use t5::{Batch, T5};

use crate::text::tokenizer::{T5Tokenizer, TokenizerError};
use burn::tensor::Device;
use checkpoint::{Checkpoint, CheckpointError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(String),
    #[error(
        "tokenizer.json gives {tokenizer} token ids and the model has {model} embeddings: they do not belong together"
    )]
    Vocabulary { tokenizer: usize, model: usize },
    #[error("model.safetensors: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{path}: {why}")]
    Io { path: String, why: String },
}

/// The longest input [`LoadedModel::generate_texts`] takes, and the most tokens it writes: the
/// attention's position bias is inputs x inputs per head, so an unbounded text (8,000 words in
/// the page's box) exhausts the memory instead of answering.
pub const MAX_GENERATE_TOKENS: usize = 512;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "input {input} is {tokens} tokens long; generation takes at most {MAX_GENERATE_TOKENS}"
    )]
    TooLong { input: usize, tokens: usize },
    #[error("at most {MAX_GENERATE_TOKENS} new tokens, not {0}")]
    TooMany(usize),
    #[error("{0}")]
    Device(String),
}

/// What [`LoadedModel::generate_texts`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// One decoded output per input.
    pub outputs: Vec<String>,
    /// Decoding steps run (one forward pass of the decoder each).
    pub steps: usize,
}

/// The model and its tokenizer, ready to run.
pub struct LoadedModel {
    pub t5: T5,
    pub tokenizer: T5Tokenizer,
}

impl LoadedModel {
    /// From the three files of a converted model folder.
    pub fn from_bytes(
        safetensors: &[u8],
        config_json: &[u8],
        tokenizer_json: &[u8],
        device: &Device,
    ) -> Result<Self, LoadError> {
        let config = T5Config::from_json(config_json).map_err(LoadError::Config)?;
        let ckpt = Checkpoint::parse(safetensors, &config)?;
        let tokenizer = T5Tokenizer::from_bytes(tokenizer_json)?;
        // Every id the tokenizer gives must have an embedding row.
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(LoadError::Vocabulary {
                tokenizer: tokenizer.vocab_size(),
                model: config.vocab_size,
            });
        }
        Ok(Self {
            t5: T5::load(&ckpt, &config, device)?,
            tokenizer,
        })
    }

    /// Greedy outputs for `texts`, decoded as one batch. The CLI and the page both call this, so
    /// both time the same work.
    pub async fn generate_texts(
        &self,
        texts: &[&str],
        max_new: usize,
    ) -> Result<Generation, GenerateError> {
        if max_new > MAX_GENERATE_TOKENS {
            return Err(GenerateError::TooMany(max_new));
        }
        let ids = texts
            .iter()
            .map(|s| self.tokenizer.encode(s))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some((input, tokens)) = ids
            .iter()
            .map(Vec::len)
            .enumerate()
            .find(|(_, n)| *n > MAX_GENERATE_TOKENS)
        {
            return Err(GenerateError::TooLong { input, tokens });
        }
        let batch = Batch::new(&ids);
        let enc = self.t5.encode(&batch);
        let out = self
            .t5
            .generate(enc, &batch.mask(), max_new)
            .await
            .map_err(GenerateError::Device)?;
        // Decoding steps taken: the longest output plus its EOS step (unless cut at max_new).
        let steps = out
            .iter()
            .map(|o| (o.len() + 1).min(max_new))
            .max()
            .unwrap_or(1);
        let outputs = out
            .iter()
            .map(|o| self.tokenizer.decode(o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Generation { outputs, steps })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path, device: &Device) -> Result<Self, LoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| LoadError::Io {
                path: path.display().to_string(),
                why: format!("{e} (run scripts/fetch-model.sh)"),
            })
        };
        Self::from_bytes(
            &read("model.safetensors")?,
            &read("config.json")?,
            &read("tokenizer.json")?,
            device,
        )
    }
}

/// The model folder a page address may name (`?model=DIR`): a relative path on the page's own
/// origin, `/`-separated names of letters, digits, `.`, `_` and `-` (no `..`, no leading `/`, no
/// scheme, no `//host`), so a link can never make the page fetch from elsewhere. Returns the
/// folder with a trailing `/`, or why it is refused.
pub fn model_dir_from_query(dir: &str) -> Result<String, String> {
    let dir = dir.trim_end_matches('/');
    let name_ok = |n: &str| {
        !n.is_empty()
            && n != "."
            && n != ".."
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if dir.is_empty() || dir.starts_with('/') || !dir.split('/').all(name_ok) {
        return Err(format!(
            "model={dir:?}: expected a relative folder on this site (names of letters, digits, \
             '.', '_', '-' separated by '/')"
        ));
    }
    Ok(format!("{dir}/"))
}

#[cfg(test)]
mod model_dir_tests {
    use super::model_dir_from_query as dir;

    #[test]
    fn only_relative_folders_on_the_page_origin_are_accepted() {
        assert_eq!(dir("models/tiny").unwrap(), "models/tiny/");
        assert_eq!(
            dir("models/flan-t5-small/").unwrap(),
            "models/flan-t5-small/"
        );
        for bad in [
            "",
            "/",
            "//127.0.0.2/models/x",
            "/models/x",
            "https://evil.example/m",
            "models/../../etc",
            "models//x",
            "models/x%2f..",
            "models\\x",
            "./models",
        ] {
            assert!(dir(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
