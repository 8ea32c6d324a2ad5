//! Reproducible sampling: our own SplitMix64 stream so that a seed picks the same examples on
//! every platform and every future version of this crate (a general RNG crate may change its
//! streams between releases). The MPT code's seeds are 13, 21, 42, 87, 100.

use super::Example;

/// The seeds the MPT paper reports over.
pub const PAPER_SEEDS: [u64; 5] = [13, 21, 42, 87, 100];

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to shuffle datasets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by Lemire's multiply-shift (bias below 2^-64 * n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Splits into (train pool, test) after a seeded shuffle: `test_fraction` of the examples, at
/// most `test_cap`, at least one when there are two or more examples. Train is capped at
/// `train_cap`.
pub fn split(
    mut examples: Vec<Example>,
    test_fraction: f64,
    test_cap: usize,
    train_cap: usize,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    SplitMix64::new(seed).shuffle(&mut examples);
    let n = examples.len();
    let mut n_test = ((n as f64 * test_fraction).round() as usize).min(test_cap);
    if n >= 2 {
        n_test = n_test.max(1);
    }
    let mut train = examples.split_off(n_test);
    train.truncate(train_cap);
    (train, examples)
}

/// The k-shot training set for `seed`: with `labels`, k examples of each label (all of a label's
/// examples when it has fewer); without, k examples. Order is shuffled, so classes interleave.
pub fn k_shot(pool: &[Example], k: usize, labels: Option<&[String]>, seed: u64) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    rng.shuffle(&mut idx);
    let mut picked: Vec<Example> = match labels {
        Some(labels) => labels
            .iter()
            .flat_map(|l| {
                idx.iter()
                    .filter(move |&&i| &pool[i].target == l)
                    .take(k)
                    .map(|&i| pool[i].clone())
            })
            .collect(),
        None => idx.iter().take(k).map(|&i| pool[i].clone()).collect(),
    };
    rng.shuffle(&mut picked);
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example::new(format!("x{i}"), if i % 3 == 0 { "a" } else { "b" }))
            .collect()
    }

    #[test]
    fn same_seed_same_sample_other_seed_other_sample() {
        let p = pool(300);
        let labels = vec!["a".to_string(), "b".to_string()];
        let s1 = k_shot(&p, 16, Some(&labels), 13);
        assert_eq!(s1, k_shot(&p, 16, Some(&labels), 13));
        assert_ne!(s1, k_shot(&p, 16, Some(&labels), 21));
        assert_eq!(s1.iter().filter(|e| e.target == "a").count(), 16);
        assert_eq!(s1.iter().filter(|e| e.target == "b").count(), 16);
    }

    #[test]
    fn k_shot_takes_all_of_a_small_class() {
        let mut p = pool(40);
        p.push(Example::new("rare", "c"));
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let s = k_shot(&p, 8, Some(&labels), 42);
        assert_eq!(s.len(), 8 + 8 + 1);
        assert_eq!(k_shot(&p, 5, None, 1).len(), 5);
    }

    #[test]
    fn split_is_disjoint_capped_and_stable() {
        let (train, test) = split(pool(1000), 0.2, 150, 500, 0);
        assert_eq!(test.len(), 150);
        assert_eq!(train.len(), 500);
        assert!(train.iter().all(|e| !test.contains(e)));
        assert_eq!(
            (train.clone(), test.clone()),
            split(pool(1000), 0.2, 150, 500, 0)
        );
        let (train, test) = split(pool(3), 0.1, 10, 10, 0);
        assert_eq!((train.len(), test.len()), (2, 1));
    }

    #[test]
    fn splitmix_is_the_published_stream() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[r.below(4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }
}
