//! T5 hyper-parameters, in the field names of Hugging Face's `config.json` so a converted
//! checkpoint's config reads like the original.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_decoder_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f32,
    /// "gated-gelu": T5 v1.1 / flan feed-forward with tanh-approximated GELU.
    pub feed_forward_proj: String,
    pub tie_word_embeddings: bool,
    pub decoder_start_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
}

impl T5Config {
    /// flan-t5-small, as shipped in traceforge-title-model 0.2.0.
    pub fn flan_t5_small() -> Self {
        Self {
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 1024,
            num_layers: 8,
            num_decoder_layers: 8,
            num_heads: 6,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "gated-gelu".into(),
            tie_word_embeddings: false,
            decoder_start_token_id: 0,
            eos_token_id: 1,
            pad_token_id: 0,
        }
    }

    /// A tiny random-weight configuration for fast tests (same structure, small sizes).
    pub fn tiny() -> Self {
        Self {
            vocab_size: 64,
            d_model: 16,
            d_kv: 4,
            d_ff: 24,
            num_layers: 2,
            num_decoder_layers: 2,
            num_heads: 2,
            relative_attention_num_buckets: 8,
            relative_attention_max_distance: 16,
            ..Self::flan_t5_small()
        }
    }

    /// [`Self::tiny`] with flan-t5-small's vocabulary, so that the real tokenizer's ids fit: the
    /// page's end-to-end tests run the whole path on it in seconds.
    pub fn tiny_full_vocab() -> Self {
        Self {
            vocab_size: Self::flan_t5_small().vocab_size,
            ..Self::tiny()
        }
    }

    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Every tensor the model needs, with its shape ([out, in] for linear layers, as in PyTorch).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, inner, ff) = (self.d_model, self.inner_dim(), self.d_ff);
        let mut t = vec![("shared.weight".to_string(), vec![self.vocab_size, d])];
        let attn = |t: &mut Vec<(String, Vec<usize>)>, p: &str| {
            for m in ["q", "k", "v"] {
                t.push((format!("{p}.{m}.weight"), vec![inner, d]));
            }
            t.push((format!("{p}.o.weight"), vec![d, inner]));
        };
        let ffn = |t: &mut Vec<(String, Vec<usize>)>, p: &str| {
            t.push((format!("{p}.DenseReluDense.wi_0.weight"), vec![ff, d]));
            t.push((format!("{p}.DenseReluDense.wi_1.weight"), vec![ff, d]));
            t.push((format!("{p}.DenseReluDense.wo.weight"), vec![d, ff]));
            t.push((format!("{p}.layer_norm.weight"), vec![d]));
        };
        for (stack, layers) in [
            ("encoder", self.num_layers),
            ("decoder", self.num_decoder_layers),
        ] {
            for i in 0..layers {
                let b = format!("{stack}.block.{i}");
                attn(&mut t, &format!("{b}.layer.0.SelfAttention"));
                t.push((format!("{b}.layer.0.layer_norm.weight"), vec![d]));
                if i == 0 {
                    t.push((
                        format!("{b}.layer.0.SelfAttention.relative_attention_bias.weight"),
                        vec![self.relative_attention_num_buckets, self.num_heads],
                    ));
                }
                if stack == "decoder" {
                    attn(&mut t, &format!("{b}.layer.1.EncDecAttention"));
                    t.push((format!("{b}.layer.1.layer_norm.weight"), vec![d]));
                    ffn(&mut t, &format!("{b}.layer.2"));
                } else {
                    ffn(&mut t, &format!("{b}.layer.1"));
                }
            }
            t.push((format!("{stack}.final_layer_norm.weight"), vec![d]));
        }
        if !self.tie_word_embeddings {
            t.push(("lm_head.weight".into(), vec![self.vocab_size, d]));
        }
        t
    }

    pub fn parameter_count(&self) -> usize {
        self.expected_tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flan_t5_small_has_the_documented_parameter_count() {
        assert_eq!(T5Config::flan_t5_small().parameter_count(), 76_961_152);
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = T5Config::flan_t5_small();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<T5Config>(&s).unwrap(), c);
    }
}
