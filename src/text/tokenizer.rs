//! The checkpoint's T5 Unigram tokenizer through the `tokenizers` crate. Its tokenizer.json has
//! truncation (48 tokens) and padding baked in: both are turned off, so long inputs are reported,
//! not silently cut.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.json could not be read: {0}")]
    Load(String),
    #[error("could not tokenize the text: {0}")]
    Encode(String),
    #[error("could not turn token ids back into text: {0}")]
    Decode(String),
}

pub struct T5Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl T5Tokenizer {
    pub fn from_bytes(json: &[u8]) -> Result<Self, TokenizerError> {
        let mut inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| TokenizerError::Load(e.to_string()))?;
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self { inner })
    }

    /// How many ids the tokenizer can give (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids with the closing `</s>` (id 1) that T5's post-processor appends.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.raw(text)?.get_ids().to_vec())
    }

    /// Token ids as `encode` gives them, with each token's byte range in `text` (`</s>`: 0..0).
    pub fn encode_with_offsets(&self, text: &str) -> Result<Spans, TokenizerError> {
        let enc = self.raw(text)?;
        Ok(Spans {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    fn raw(&self, text: &str) -> Result<tokenizers::Encoding, TokenizerError> {
        self.inner
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }
}

/// Token ids with the byte range in the text of each.
pub struct Spans {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}
