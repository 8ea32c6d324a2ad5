//! A random-weight checkpoint of any configuration (usually [`T5Config::tiny`]) for fast tests:
//! int8 weights like the real one, so the same loading path is exercised.

use super::checkpoint::{self, OutData, TensorOut};
use super::config::T5Config;
use crate::selfcheck::test_values;

/// Checkpoint bytes with deterministic pseudo-random weights drawn from `seed`.
pub fn random_checkpoint(config: &T5Config, seed: u64) -> Vec<u8> {
    let tensors: Vec<TensorOut> = config
        .expected_tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let v = test_values(n, seed.wrapping_add(i as u64 * 7919));
            let data = if name.ends_with("layer_norm.weight") {
                // Norm gains near 1, as in trained models.
                OutData::F32(v.iter().map(|x| 1.0 + x / 8.0).collect())
            } else {
                // [-2, 2) -> int8 with scale 1/(64 * sqrt(fan_in)): activations stay O(1).
                let fan_in = *shape.last().unwrap_or(&1) as f32;
                OutData::I8 {
                    q: v.iter().map(|x| (x * 63.0) as i8).collect(),
                    scale: 2.0 / (63.0 * fan_in.sqrt()),
                    zero_point: 0,
                }
            };
            TensorOut { name, shape, data }
        })
        .collect();
    checkpoint::write(&tensors, &[("source", format!("random, seed {seed}"))])
        .expect("tiny checkpoint serialises")
}
