//! Tuned prompts in the layout of Hugging Face PEFT prompt tuning, so they open in PEFT:
//! `adapter_model.safetensors` holding `prompt_embeddings` `[num_virtual_tokens, token_dim]` and
//! `adapter_config.json`. Only the encoder gets the prompt here, hence
//! `num_transformer_submodules: 1`.

use super::{Init, SoftPrompt};
use serde::{Deserialize, Serialize};

pub const TENSOR: &str = "prompt_embeddings";
/// The Hugging Face model ours is converted from (its tokenizer is ours too).
pub const BASE_MODEL: &str = "google/flan-t5-small";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub task_type: String,
    pub num_virtual_tokens: usize,
    pub token_dim: usize,
    pub num_transformer_submodules: usize,
    pub num_attention_heads: usize,
    pub num_layers: usize,
    pub prompt_tuning_init: String,
    /// PEFT refuses a `TEXT` config without these two ("When prompt_tuning_init='TEXT',
    /// tokenizer_name_or_path can't be None"); absent for the other inits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tuning_init_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_name_or_path: Option<String>,
    pub base_model_name_or_path: String,
    pub inference_mode: bool,
}

impl AdapterConfig {
    pub fn for_prompt(p: &SoftPrompt, init: &Init, config: &crate::model::T5Config) -> Self {
        let text = match init {
            Init::Labels(words) => Some(words.join(" ")),
            _ => None,
        };
        Self {
            peft_type: "PROMPT_TUNING".into(),
            task_type: "SEQ_2_SEQ_LM".into(),
            num_virtual_tokens: p.len,
            token_dim: p.dim,
            num_transformer_submodules: 1,
            num_attention_heads: config.num_heads,
            num_layers: config.num_layers,
            // PEFT knows RANDOM, TEXT and SAMPLE_VOCAB; ours map onto them (a meta-learned
            // start has no PEFT name: PEFT initialises randomly, then loads our values).
            prompt_tuning_init: match init {
                Init::Vocab => "SAMPLE_VOCAB",
                Init::Labels(_) => "TEXT",
                Init::Random | Init::Given(_) => "RANDOM",
            }
            .into(),
            tokenizer_name_or_path: text.as_ref().map(|_| BASE_MODEL.into()),
            prompt_tuning_init_text: text,
            base_model_name_or_path: BASE_MODEL.into(),
            inference_mode: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeftError {
    #[error("adapter_model.safetensors: {0}")]
    Safetensors(String),
    #[error("adapter_model.safetensors has no tensor {TENSOR:?} (found: {0})")]
    Missing(String),
    #[error("tensor {TENSOR:?} has shape {0:?}, expected [num_virtual_tokens, token_dim]")]
    Shape(Vec<usize>),
    #[error("tensor {TENSOR:?} is {0}, expected F32")]
    Dtype(String),
    #[error("the prompt has {values} values, not {len} x {dim}")]
    Values {
        len: usize,
        dim: usize,
        values: usize,
    },
}

/// The prompt in PEFT's file; a prompt whose values do not fill `len x dim` (a damaged record)
/// is an error.
pub fn to_safetensors(p: &SoftPrompt) -> Result<Vec<u8>, PeftError> {
    let bytes: &[u8] = bytemuck::cast_slice(&p.values);
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![p.len, p.dim], bytes)
            .map_err(|_| PeftError::Values {
                len: p.len,
                dim: p.dim,
                values: p.values.len(),
            })?;
    safetensors::serialize(vec![(TENSOR, view)], None)
        .map_err(|e| PeftError::Safetensors(e.to_string()))
}

pub fn from_safetensors(bytes: &[u8]) -> Result<SoftPrompt, PeftError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| PeftError::Safetensors(e.to_string()))?;
    let t = st
        .tensor(TENSOR)
        .map_err(|_| PeftError::Missing(st.names().join(", ")))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(PeftError::Dtype(format!("{:?}", t.dtype())));
    }
    let [len, dim] = t.shape() else {
        return Err(PeftError::Shape(t.shape().to_vec()));
    };
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(SoftPrompt {
        len: *len,
        dim: *dim,
        values,
    })
}

/// Writes `dir/adapter_model.safetensors` and `dir/adapter_config.json`.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(dir: &std::path::Path, p: &SoftPrompt, config: &AdapterConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = to_safetensors(p).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("adapter_model.safetensors"), bytes)?;
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_string_pretty(config).expect("config serialises") + "\n",
    )
}

/// Reads a prompt from a PEFT folder or directly from a `.safetensors` file.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(path: &std::path::Path) -> Result<SoftPrompt, String> {
    let file = if path.is_dir() {
        path.join("adapter_model.safetensors")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    from_safetensors(&bytes).map_err(|e| format!("{}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_tensor() {
        let p = SoftPrompt {
            len: 3,
            dim: 4,
            values: (0..12).map(|i| i as f32 * 0.5 - 2.0).collect(),
        };
        assert_eq!(from_safetensors(&to_safetensors(&p).unwrap()).unwrap(), p);
        let torn = SoftPrompt {
            values: vec![0.0; 3],
            ..p.clone()
        };
        assert!(matches!(
            to_safetensors(&torn),
            Err(PeftError::Values { values: 3, .. })
        ));
        let other = safetensors::serialize(
            vec![(
                "x",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4])
                    .unwrap(),
            )],
            None,
        )
        .unwrap();
        assert_eq!(
            from_safetensors(&other),
            Err(PeftError::Missing("x".into()))
        );
        assert!(matches!(
            from_safetensors(b"junk"),
            Err(PeftError::Safetensors(_))
        ));
    }

    #[test]
    fn a_text_init_names_its_text_and_tokenizer_as_peft_requires() {
        let c = crate::model::T5Config::tiny();
        let p = SoftPrompt {
            len: 2,
            dim: c.d_model,
            values: vec![0.0; 2 * c.d_model],
        };
        let labels = Init::Labels(vec!["positive".into(), "negative".into()]);
        let json = serde_json::to_value(AdapterConfig::for_prompt(&p, &labels, &c)).unwrap();
        assert_eq!(json["prompt_tuning_init"], "TEXT");
        assert_eq!(json["prompt_tuning_init_text"], "positive negative");
        assert_eq!(json["tokenizer_name_or_path"], BASE_MODEL);
        let json = serde_json::to_value(AdapterConfig::for_prompt(&p, &Init::Random, &c)).unwrap();
        assert_eq!(json["prompt_tuning_init"], "RANDOM");
        assert!(json.get("prompt_tuning_init_text").is_none());
        assert!(json.get("tokenizer_name_or_path").is_none());
    }
}
