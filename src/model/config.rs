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

    /// A `config.json`, read and checked: every size the model is built from at least 1 and
    /// the special token ids inside the vocabulary. An error names the field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let c: Self = serde_json::from_slice(bytes).map_err(|e| format!("config.json: {e}"))?;
        c.check().map_err(|e| format!("config.json: {e}"))?;
        Ok(c)
    }

    /// The first field out of range.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_decoder_layers", self.num_decoder_layers),
            ("num_heads", self.num_heads),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
            ),
            (
                "relative_attention_max_distance",
                self.relative_attention_max_distance,
            ),
        ] {
            // Above 2^20 no T5 exists and products of sizes could overflow.
            if !(1..=1 << 20).contains(&value) {
                return Err(format!("field `{field}` is {value}, expected 1 to 1048576"));
            }
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return Err(format!(
                "field `layer_norm_epsilon` is {}, expected a small positive number",
                self.layer_norm_epsilon
            ));
        }
        if self.feed_forward_proj != "gated-gelu" {
            return Err(format!(
                "field `feed_forward_proj` is {:?}, only \"gated-gelu\" (T5 v1.1, flan) is supported",
                self.feed_forward_proj
            ));
        }
        for (field, id) in [
            ("decoder_start_token_id", self.decoder_start_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if id as usize >= self.vocab_size {
                return Err(format!(
                    "field `{field}` is {id}, outside the vocabulary of {}",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Every tensor the model needs, with its shape ([out, in] for linear layers, as in PyTorch).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        use super::names::{ATTENTION, Block, FEED_FORWARD, LM_HEAD, SHARED, Stack, weight};
        let (d, inner, ff) = (self.d_model, self.inner_dim(), self.d_ff);
        let mut t = vec![(SHARED.to_string(), vec![self.vocab_size, d])];
        let attn = |t: &mut Vec<(String, Vec<usize>)>, module: &str| {
            for (part, shape) in
                ATTENTION
                    .iter()
                    .zip([[inner, d], [inner, d], [inner, d], [d, inner]])
            {
                t.push((weight(module, part), shape.to_vec()));
            }
        };
        for (stack, layers) in [
            (Stack::Encoder, self.num_layers),
            (Stack::Decoder, self.num_decoder_layers),
        ] {
            for i in 0..layers {
                let b = Block::new(stack, i);
                attn(&mut t, &b.self_attention());
                t.push((b.self_norm(), vec![d]));
                if i == 0 {
                    t.push((
                        stack.relative_bias(),
                        vec![self.relative_attention_num_buckets, self.num_heads],
                    ));
                }
                if stack == Stack::Decoder {
                    attn(&mut t, &b.cross_attention());
                    t.push((b.cross_norm(), vec![d]));
                }
                let m = b.feed_forward();
                for (part, shape) in FEED_FORWARD.iter().zip([[ff, d], [ff, d], [d, ff]]) {
                    t.push((weight(&m, part), shape.to_vec()));
                }
                t.push((b.ff_norm(), vec![d]));
            }
            t.push((stack.final_norm(), vec![d]));
        }
        if !self.tie_word_embeddings {
            t.push((LM_HEAD.into(), vec![self.vocab_size, d]));
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
        assert_eq!(T5Config::from_json(s.as_bytes()).unwrap(), c);
    }

    #[test]
    fn a_config_out_of_range_is_refused_by_its_field() {
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(T5Config::flan_t5_small()).unwrap();
            edit(&mut v);
            T5Config::from_json(v.to_string().as_bytes()).unwrap_err()
        };
        assert_eq!(
            bad(&|v| v["d_model"] = 0.into()),
            "config.json: field `d_model` is 0, expected 1 to 1048576"
        );
        assert!(bad(&|v| v["eos_token_id"] = 40_000.into()).contains("`eos_token_id` is 40000"));
        assert!(bad(&|v| v["feed_forward_proj"] = "relu".into()).contains("feed_forward_proj"));
        assert!(bad(&|v| v["layer_norm_epsilon"] = (-1.0).into()).contains("layer_norm_epsilon"));
        assert!(bad(&|v| v["num_heads"] = (-1).into()).starts_with("config.json: "));
        assert!(
            T5Config::from_json(b"{")
                .unwrap_err()
                .starts_with("config.json: ")
        );
    }
}
