//! Sampling the next token from the decoder's logits, as LFPT5 draws its pseudo examples
//! (Hugging Face's order: repetition penalty, then temperature, then top-k). Written once over
//! host logits with one seeded RNG, so every backend draws the same tokens from the same logits.

use crate::tasks::sampling::SplitMix64;

#[derive(Clone, Debug)]
pub struct Sampler {
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    pub temperature: f32,
    /// CTRL's penalty on tokens already in the sequence: a positive logit is divided by it, a
    /// negative one multiplied (1: none; LFPT5 uses 2.5).
    pub repetition_penalty: f32,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(top_k: usize, temperature: f32, repetition_penalty: f32, seed: u64) -> Self {
        Self {
            top_k,
            temperature,
            repetition_penalty,
            rng: SplitMix64::new(seed),
        }
    }

    /// The next token given its `logits` and the sequence so far (start token included).
    pub fn pick(&mut self, logits: &[f32], seq: &[u32]) -> u32 {
        let mut z = logits.to_vec();
        if self.repetition_penalty != 1.0 {
            let mut seen = seq.to_vec();
            seen.sort_unstable();
            seen.dedup();
            let v = z.len();
            for &t in seen.iter().filter(|&&t| (t as usize) < v) {
                let x = &mut z[t as usize];
                *x = if *x > 0.0 {
                    *x / self.repetition_penalty
                } else {
                    *x * self.repetition_penalty
                };
            }
        }
        let k = if self.top_k == 0 {
            z.len()
        } else {
            self.top_k.min(z.len())
        };
        // The k largest, ties to the lower id: a total order, so the draw is reproducible.
        let mut order: Vec<u32> = (0..z.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| z[*b as usize].total_cmp(&z[*a as usize]).then(a.cmp(b));
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, by_logit);
            order.truncate(k);
        }
        order.sort_unstable_by(by_logit);
        let t = self.temperature.max(1e-6);
        let top = z[order[0] as usize];
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| (((z[i as usize] - top) / t) as f64).exp())
            .collect();
        let u =
            (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * weights.iter().sum::<f64>();
        let mut acc = 0.0;
        for (&i, w) in order.iter().zip(&weights) {
            acc += w;
            if u < acc {
                return i;
            }
        }
        order[k - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_one_is_greedy_and_a_seed_repeats_its_draws() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut s = Sampler::new(1, 1.0, 1.0, 7);
        assert!((0..20).all(|_| s.pick(&logits, &[0]) == 1));
        let draws = |seed| {
            let mut s = Sampler::new(0, 1.0, 1.0, seed);
            (0..50).map(|_| s.pick(&logits, &[0])).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn top_k_never_draws_outside_the_k_and_frequencies_follow_the_softmax() {
        let logits = [1.0f32, 0.0, 3.0, 2.0, -5.0];
        let mut s = Sampler::new(2, 1.0, 1.0, 11);
        let n = 20_000;
        let mut count = [0usize; 5];
        for _ in 0..n {
            count[s.pick(&logits, &[]) as usize] += 1;
        }
        assert_eq!(count[0] + count[1] + count[4], 0, "{count:?}");
        // p(2) = e^3 / (e^3 + e^2) = 0.731; 4 sigma of a binomial at n = 20000 is 0.013.
        let p = count[2] as f64 / n as f64;
        assert!((p - 0.731).abs() < 0.02, "p = {p}");
    }

    #[test]
    fn repetition_penalty_lowers_tokens_already_generated() {
        // Token 1 leads by ln 2; divided by 2.5 it falls behind token 0.
        let logits = [1.0f32, 1.0 + 2f32.ln(), 0.5];
        let greedy = |seq: &[u32]| Sampler::new(1, 1.0, 2.5, 0).pick(&logits, seq);
        assert_eq!(greedy(&[2]), 1);
        assert_eq!(greedy(&[2, 1]), 0);
        // A negative logit is multiplied, so it too falls.
        let neg = [-1.0f32, -0.9];
        assert_eq!(Sampler::new(1, 1.0, 2.5, 0).pick(&neg, &[1]), 0);
    }
}
