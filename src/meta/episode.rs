//! Episodes: a batch of source tasks per meta-step, each with a support set (adapted on) and a
//! disjoint query set (the meta-objective is measured on it). Sampled from (seed, step) alone, so
//! a resumed run sees exactly the episodes an uninterrupted one would have.

use crate::prompt::tune::Pair;
use crate::tasks::sampling::SplitMix64;

/// One source task's tokenised training pool.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTask {
    pub name: String,
    pub pool: Vec<Pair>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Index into the source tasks.
    pub task: usize,
    pub support: Vec<Pair>,
    pub query: Vec<Pair>,
}

/// The episodes of meta-step `step` (1-based): `task_batch` distinct tasks (all of them when there
/// are fewer), and for each `support` + `query` distinct examples. A pool smaller than
/// `support + query` is split in proportion, keeping at least one example on each side.
pub fn episodes(
    tasks: &[SourceTask],
    step: usize,
    task_batch: usize,
    support: usize,
    query: usize,
    seed: u64,
) -> Vec<Episode> {
    let mut rng = SplitMix64::new(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    rng.shuffle(&mut order);
    order
        .into_iter()
        .take(task_batch.max(1))
        .map(|t| {
            let pool = &tasks[t].pool;
            let mut idx: Vec<usize> = (0..pool.len()).collect();
            rng.shuffle(&mut idx);
            let (s, q) = if pool.len() >= support + query {
                (support, query)
            } else {
                let s = (pool.len() * support / (support + query).max(1)).clamp(1, pool.len() - 1);
                (s, pool.len() - s)
            };
            Episode {
                task: t,
                support: idx[..s].iter().map(|&i| pool[i].clone()).collect(),
                query: idx[s..s + q].iter().map(|&i| pool[i].clone()).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, n: usize) -> SourceTask {
        SourceTask {
            name: name.into(),
            pool: (0..n)
                .map(|i| Pair {
                    input: vec![i as u32, 1],
                    target: vec![1],
                })
                .collect(),
        }
    }

    #[test]
    fn support_and_query_are_disjoint_sized_and_reproducible() {
        let tasks = vec![task("a", 50), task("b", 5), task("c", 50)];
        let eps = episodes(&tasks, 7, 2, 8, 8, 1);
        assert_eq!(eps, episodes(&tasks, 7, 2, 8, 8, 1));
        assert_ne!(eps, episodes(&tasks, 8, 2, 8, 8, 1));
        assert_eq!(eps.len(), 2);
        assert_ne!(eps[0].task, eps[1].task);
        for e in &eps {
            assert!(e.support.iter().all(|p| !e.query.contains(p)));
            let n = tasks[e.task].pool.len();
            assert_eq!(e.support.len() + e.query.len(), n.min(16));
            assert!(!e.support.is_empty() && !e.query.is_empty());
        }
        // A batch larger than the suite takes every task once.
        let all = episodes(&tasks, 1, 10, 2, 2, 1);
        let mut seen: Vec<usize> = all.iter().map(|e| e.task).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
