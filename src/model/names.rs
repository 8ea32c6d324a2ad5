//! Hugging Face T5 tensor names, written once: the checkpoint check
//! ([`super::config::T5Config::expected_tensors`], which adds the shapes), the converter's
//! output, and every loader (burn's model, our graph) read them from here.

pub const SHARED: &str = "shared.weight";
pub const LM_HEAD: &str = "lm_head.weight";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    Encoder,
    Decoder,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Encoder => "encoder",
            Stack::Decoder => "decoder",
        }
    }

    pub fn final_norm(self) -> String {
        format!("{}.final_layer_norm.weight", self.name())
    }

    /// The relative-position table `[buckets, heads]`, held by block 0's self-attention.
    pub fn relative_bias(self) -> String {
        format!(
            "{}.relative_attention_bias.weight",
            Block::new(self, 0).self_attention()
        )
    }
}

/// The projections of an attention module (`{module}.{q,k,v,o}.weight`).
pub const ATTENTION: [&str; 4] = ["q", "k", "v", "o"];
/// The gated feed-forward's projections (`{module}.{wi_0,wi_1,wo}.weight`).
pub const FEED_FORWARD: [&str; 3] = ["wi_0", "wi_1", "wo"];

/// `{module}.{part}.weight`
pub fn weight(module: &str, part: &str) -> String {
    format!("{module}.{part}.weight")
}

/// One block of a stack: self-attention, (decoder) cross-attention, feed-forward, each behind
/// its own layer norm.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub stack: Stack,
    pub index: usize,
}

impl Block {
    pub fn new(stack: Stack, index: usize) -> Self {
        Self { stack, index }
    }

    fn layer(&self, sub: usize) -> String {
        format!("{}.block.{}.layer.{sub}", self.stack.name(), self.index)
    }

    /// The feed-forward's sub-layer: after cross-attention in the decoder.
    fn ff_sub(&self) -> usize {
        match self.stack {
            Stack::Encoder => 1,
            Stack::Decoder => 2,
        }
    }

    pub fn self_attention(&self) -> String {
        format!("{}.SelfAttention", self.layer(0))
    }

    pub fn self_norm(&self) -> String {
        format!("{}.layer_norm.weight", self.layer(0))
    }

    /// Decoder blocks only.
    pub fn cross_attention(&self) -> String {
        format!("{}.EncDecAttention", self.layer(1))
    }

    pub fn cross_norm(&self) -> String {
        format!("{}.layer_norm.weight", self.layer(1))
    }

    pub fn feed_forward(&self) -> String {
        format!("{}.DenseReluDense", self.layer(self.ff_sub()))
    }

    pub fn ff_norm(&self) -> String {
        format!("{}.layer_norm.weight", self.layer(self.ff_sub()))
    }
}
