//! The benchmarks' fixed tuning batch: `metaprompt bench tune` times it natively, and the page's
//! worker times a smaller one on each engine to choose the faster.

use super::SoftPrompt;
use super::tune::Pair;
use crate::model::T5Config;

/// The benchmarks' shape: batch 8, 64 input tokens + 20 prompt tokens, 4 target tokens (3 + EOS).
pub const SHAPE: Shape = Shape {
    batch: 8,
    input: 64,
    prompt: 20,
    target: 4,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub batch: usize,
    pub input: usize,
    pub prompt: usize,
    /// Target tokens including the EOS.
    pub target: usize,
}

/// A fixed batch and prompt of `shape` (token ids spread over the vocabulary).
pub fn batch(c: &T5Config, shape: Shape) -> (Vec<Pair>, SoftPrompt) {
    let pairs: Vec<Pair> = (0..shape.batch)
        .map(|i| Pair {
            input: (0..shape.input)
                .map(|j| 100 + ((i * 131 + j * 17) % 5000) as u32)
                .collect(),
            target: (0..shape.target.saturating_sub(1))
                .map(|j| {
                    if j == 0 {
                        1000 + i as u32
                    } else {
                        1000 * (j as u32 + 1)
                    }
                })
                .chain([c.eos_token_id])
                .collect(),
        })
        .collect();
    let prompt = SoftPrompt {
        len: shape.prompt,
        dim: c.d_model,
        values: crate::selfcheck::test_values(shape.prompt * c.d_model, 1)
            .iter()
            .map(|x| x / 4.0)
            .collect(),
    };
    (pairs, prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_has_the_shape_asked_for() {
        let c = T5Config::flan_t5_small();
        let (pairs, prompt) = batch(&c, SHAPE);
        assert_eq!(pairs.len(), 8);
        assert!(pairs.iter().all(|p| p.input.len() == 64));
        assert_eq!(pairs[3].target, [1003, 2000, 3000, c.eos_token_id]);
        assert_eq!((prompt.len, prompt.values.len()), (20, 20 * c.d_model));
    }
}
