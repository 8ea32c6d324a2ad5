//! Prompt tuning (Lester et al. 2021): L trainable vectors prepended to the encoder's input
//! embeddings of the frozen T5. Initialisations, the one tuning loop every method uses, evaluation
//! and the PEFT file format.

pub mod adapter_file;
pub mod bench;
pub mod engine;
pub mod eval;
pub mod optim;
pub mod peft;
pub mod tune;

use crate::model::{Batch, LoadedModel, T5};
use crate::tasks::sampling::SplitMix64;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Default prompt length (MPT used 100 with T5-large; 20 suits flan-t5-small and the browser).
pub const DEFAULT_LEN: usize = 20;
pub const MAX_LEN: usize = 100;
/// Lester et al. sample vocabulary initialisations from the 5,000 most common tokens; the
/// SentencePiece vocabulary is ordered by frequency, so these are ids 3..5003 (0-2 are special).
const COMMON_TOKENS: std::ops::Range<u32> = 3..5003;

/// `len` x `dim` prompt vectors, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftPrompt {
    pub len: usize,
    pub dim: usize,
    pub values: Vec<f32>,
}

impl SoftPrompt {
    pub fn tensor(&self, device: &burn::tensor::Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), [self.len, self.dim]),
            device,
        )
    }
}

/// Where the prompt starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Uniform in [-0.5, 0.5] (Lester et al.).
    Random,
    /// Embeddings of tokens sampled from the 5,000 most common.
    Vocab,
    /// Embeddings of the verbalizer words' tokens, repeated to fill the prompt.
    Labels(Vec<String>),
    /// A given prompt, e.g. a meta-learned initialisation read from a file.
    Given(SoftPrompt),
}

impl Init {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Vocab => "vocab",
            Self::Labels(_) => "labels",
            Self::Given(_) => "file",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    #[error("prompt length {0} is out of range 1..={MAX_LEN}")]
    BadLength(usize),
    #[error("the given prompt is {got} wide but the model's embeddings are {want}")]
    WrongWidth { got: usize, want: usize },
    #[error("label initialisation needs at least one label word")]
    NoLabels,
    #[error(transparent)]
    Tokenizer(#[from] crate::text::tokenizer::TokenizerError),
    #[error("reading tensor values back: {0}")]
    ReadBack(String),
}

async fn rows(t5: &T5, ids: &[u32]) -> Result<Vec<f32>, PromptError> {
    t5.embedding_rows(ids)
        .into_data_async()
        .await
        .map_err(|e| PromptError::ReadBack(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| PromptError::ReadBack(format!("{e:?}")))
}

/// The initial prompt of length `len` for `init`, reproducible from `seed`.
pub async fn initial_prompt(
    model: &LoadedModel,
    init: &Init,
    len: usize,
    seed: u64,
) -> Result<SoftPrompt, PromptError> {
    let dim = model.t5.config.d_model;
    if len == 0 || len > MAX_LEN {
        return Err(PromptError::BadLength(len));
    }
    let mut rng = SplitMix64::new(seed);
    let values = match init {
        Init::Random => (0..len * dim).map(|_| rng.unit_f32() - 0.5).collect(),
        Init::Vocab => {
            let span = (COMMON_TOKENS.end - COMMON_TOKENS.start) as usize;
            let ids: Vec<u32> = (0..len)
                .map(|_| COMMON_TOKENS.start + rng.below(span) as u32)
                .collect();
            rows(&model.t5, &ids).await?
        }
        Init::Labels(words) => {
            let mut tokens = Vec::new();
            for w in words {
                let ids = model.tokenizer.encode(w)?;
                // Drop the closing </s> the tokenizer appends.
                tokens.extend(
                    ids.into_iter()
                        .filter(|&i| i != model.t5.config.eos_token_id),
                );
            }
            if tokens.is_empty() {
                return Err(PromptError::NoLabels);
            }
            let ids: Vec<u32> = tokens.iter().copied().cycle().take(len).collect();
            rows(&model.t5, &ids).await?
        }
        Init::Given(p) => {
            if p.dim != dim {
                return Err(PromptError::WrongWidth {
                    got: p.dim,
                    want: dim,
                });
            }
            if p.len != len {
                return Err(PromptError::BadLength(p.len));
            }
            p.values.clone()
        }
    };
    Ok(SoftPrompt { len, dim, values })
}

/// Encoder states with `prompt` (`[L, d]`, may require grad) prepended to the embedded `batch`;
/// returns the states and the mask over prompt + input.
pub fn encode_with_prompt(
    t5: &T5,
    prompt: Option<Tensor<2>>,
    batch: &Batch,
) -> (Tensor<3>, Vec<f32>) {
    let b = batch.ids.len();
    let embeds = t5.embed(batch);
    let Some(prompt) = prompt else {
        let mask = batch.mask();
        return (t5.encode_embeds(embeds, &mask), mask);
    };
    let l = prompt.dims()[0];
    let p = prompt.unsqueeze::<3>().repeat_dim(0, b);
    let embeds = Tensor::cat(vec![p, embeds], 1);
    let input_mask = batch.mask();
    let mask: Vec<f32> = input_mask
        .chunks(batch.len.max(1))
        .take(b)
        .flat_map(|row| std::iter::repeat_n(1.0, l).chain(row.iter().copied()))
        .collect();
    (t5.encode_embeds(embeds, &mask), mask)
}
