//! ERDA's data augmentation: for each support example of a new task, the unlabelled sentences
//! with the same entity pair (up to `max_same`, cosine above the threshold), else the single
//! nearest sentence of the pool; they inherit the support example's label. Cosines are taken
//! on the frozen encoder's vectors, so retrieval does not depend on the head. The threshold was
//! 0.65 for the authors' BiLSTM; ours is calibrated on the first task (`calibrate`).

use super::loss::unit;
use crate::cpu::gemm::{View, matmul};
use std::collections::HashMap;

/// The pool's unit vectors and its sentences by entity pair.
pub struct PoolIndex {
    pub dim: usize,
    units: Vec<f32>,
    by_pair: HashMap<(String, String), Vec<usize>>,
}

impl PoolIndex {
    pub fn new<'a>(dim: usize, items: impl Iterator<Item = (&'a [f32], (String, String))>) -> Self {
        let (mut units, mut by_pair) = (Vec::new(), HashMap::<_, Vec<usize>>::new());
        for (i, (x, pair)) in items.enumerate() {
            units.extend(unit(x));
            by_pair.entry(pair).or_default().push(i);
        }
        Self {
            dim,
            units,
            by_pair,
        }
    }

    pub fn len(&self) -> usize {
        self.units.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// One retrieved sentence: pool index, the support example it was retrieved for, its cosine.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Retrieved {
    pub pool: usize,
    pub support: usize,
    pub similarity: f32,
    pub same_pair: bool,
}

/// Retrieval for each `(vector, pair)` of the support set.
pub fn retrieve(
    pool: &PoolIndex,
    support: &[(&[f32], (String, String))],
    threshold: f32,
    max_same: usize,
) -> Vec<Retrieved> {
    let d = pool.dim;
    let q: Vec<f32> = support.iter().flat_map(|(x, _)| unit(x)).collect();
    let (n, p) = (support.len(), pool.len());
    if n == 0 || p == 0 {
        return Vec::new();
    }
    let mut sims = vec![0.0; n * p];
    matmul(
        &mut sims,
        p,
        View::new(&q, n, d),
        View::new(&pool.units, p, d).t(),
        false,
        true,
    );
    let mut out = Vec::new();
    for (i, (_, pair)) in support.iter().enumerate() {
        let row = &sims[i * p..(i + 1) * p];
        let mut same: Vec<Retrieved> = pool
            .by_pair
            .get(pair)
            .into_iter()
            .flatten()
            .filter(|&&j| row[j] > threshold)
            .map(|&j| Retrieved {
                pool: j,
                support: i,
                similarity: row[j],
                same_pair: true,
            })
            .collect();
        same.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        same.truncate(max_same);
        if same.is_empty() {
            let (j, s) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (j, &s)| if s > a.1 { (j, s) } else { a },
                );
            same.push(Retrieved {
                pool: j,
                support: i,
                similarity: s,
                same_pair: false,
            });
        }
        out.extend(same);
    }
    out
}

/// How our encoder's cosines spread on labelled data, and the threshold taken from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Quantiles 10/25/50/75/90 % of cosines between examples of the same relation.
    pub same: [f32; 5],
    /// The same between examples of different relations.
    pub different: [f32; 5],
    /// Ours: the median same-relation cosine.
    pub threshold: f32,
    pub pairs: usize,
}

fn quantiles(mut v: Vec<f32>) -> [f32; 5] {
    v.sort_by(f32::total_cmp);
    let q = |f: f64| {
        v.get(((v.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(f32::NAN)
    };
    [q(0.1), q(0.25), q(0.5), q(0.75), q(0.9)]
}

/// Cosines between every two of `items` (vector, relation), split by whether they share the
/// relation.
pub fn calibrate(items: &[(&[f32], usize)]) -> Calibration {
    let units: Vec<Vec<f32>> = items.iter().map(|(x, _)| unit(x)).collect();
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            let c: f32 = units[i].iter().zip(&units[j]).map(|(a, b)| a * b).sum();
            if items[i].1 == items[j].1 {
                &mut same
            } else {
                &mut different
            }
            .push(c);
        }
    }
    let pairs = same.len() + different.len();
    let same = quantiles(same);
    Calibration {
        threshold: same[2],
        same,
        different: quantiles(different),
        pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str) -> (String, String) {
        (a.into(), "t".into())
    }

    #[test]
    fn same_pair_first_above_threshold_else_the_nearest() {
        let pool_x = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]];
        let pairs = [pair("a"), pair("a"), pair("a"), pair("b")];
        let pool = PoolIndex::new(2, pool_x.iter().map(|x| &x[..]).zip(pairs));
        let q1 = [1.0f32, 0.0];
        let q2 = [0.6f32, 0.8];
        let got = retrieve(
            &pool,
            &[(&q1[..], pair("a")), (&q2[..], pair("z"))],
            0.5,
            16,
        );
        // Query 1: pool 0 and 1 share its pair and pass 0.5; pool 2 shares it but is orthogonal.
        let first: Vec<usize> = got
            .iter()
            .filter(|r| r.support == 0)
            .map(|r| r.pool)
            .collect();
        assert_eq!(first, vec![0, 1]);
        // Query 2: no pool sentence has its pair: the single nearest (pool 3).
        let second: Vec<_> = got.iter().filter(|r| r.support == 1).collect();
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].pool, second[0].same_pair), (3, false));
    }

    #[test]
    fn calibration_separates_same_from_different() {
        let xs = [[1.0, 0.1], [1.0, 0.2], [0.1, 1.0], [0.2, 1.0]];
        let items: Vec<(&[f32], usize)> = xs
            .iter()
            .zip([0, 0, 1, 1])
            .map(|(x, r)| (&x[..], r))
            .collect();
        let c = calibrate(&items);
        assert_eq!(c.pairs, 6);
        assert!(c.same[0] > c.different[4], "{c:?}");
        assert!(c.threshold > 0.9);
    }
}
