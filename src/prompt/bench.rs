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

/// How far the WGSL engine's probe step may stray from the CPU engine's on the same batch: the
/// loss relative to its size, the prompt gradient by norm. Rounding (reduction orders, fused
/// multiply-adds) moves both by 1e-5 to 1e-4 through T5's layers; a kernel that is wrong on an
/// adapter moves them by O(1).
pub const AGREEMENT: (f32, f32) = (1e-3, 1e-2);

/// Whether a step on one engine agrees with the reference engine's on the same batch: at load,
/// the page's worker checks the WGSL engine (every kernel of a training step, forward and
/// backward, on the user's adapter) against our CPU engine before it trains on it.
pub fn agreement(got: (f32, &[f32]), want: (f32, &[f32])) -> Result<(), String> {
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let loss = ((got.0 - want.0).abs() / want.0.abs().max(1.0)) as f64;
    let grad = if got.1.len() == want.1.len() {
        let diff: Vec<f32> = got.1.iter().zip(want.1).map(|(a, b)| a - b).collect();
        norm(&diff) / norm(want.1).max(1e-12)
    } else {
        f64::INFINITY
    };
    // NaN compares false: `!(x <= tol)` also refuses non-finite results.
    if !(loss <= AGREEMENT.0 as f64 && grad <= AGREEMENT.1 as f64) {
        return Err(format!(
            "its step disagrees with our CPU engine's (loss {} vs {}, gradient off by {:.1e} of its norm): not used",
            got.0, want.0, grad
        ));
    }
    Ok(())
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

    #[test]
    fn agreement_allows_rounding_and_refuses_a_broken_kernel() {
        let g = [0.5f32, -1.0, 2.0, 0.25];
        let close = [0.500_01f32, -1.000_02, 1.999_98, 0.25];
        assert!(agreement((3.000_1, &close), (3.0, &g)).is_ok());
        let err = agreement((3.0, &[0.5, -1.0, 2.0, 0.0]), (3.0, &g)).unwrap_err();
        assert!(err.contains("gradient off by"), "{err}");
        assert!(agreement((3.1, &g), (3.0, &g)).is_err());
        assert!(agreement((f32::NAN, &g), (3.0, &g)).is_err());
        assert!(agreement((3.0, &g[..3]), (3.0, &g)).is_err());
    }
}
