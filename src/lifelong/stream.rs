//! The task stream: few-shot tasks learned one after another, each with its training and
//! validation shots and a held-out test set, in an order fixed by the seed.

use super::LifelongError;
use crate::tasks::sampling::{SplitMix64, k_shot};
use crate::tasks::{Example, TaskInfo, TaskKind};
use serde::{Deserialize, Serialize};

/// LFPT5's task types: a new type gets its own prompt (initialised from the previous one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskType {
    Classification,
    Ner,
    Summarisation,
}

impl TaskType {
    pub fn of(kind: TaskKind) -> Self {
        match kind {
            TaskKind::Classification | TaskKind::Nli | TaskKind::Relation => Self::Classification,
            TaskKind::Ner => Self::Ner,
            TaskKind::Qa | TaskKind::Generation => Self::Summarisation,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Ner => "NER",
            Self::Summarisation => "summarisation",
        }
    }
}

/// One task of the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamTask {
    pub info: TaskInfo,
    pub train: Vec<Example>,
    /// Model selection (the authors: 16 per class, disjoint from `train`).
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
}

impl StreamTask {
    /// `shots` per class (per task without labels) for training and as many again for
    /// validation, drawn disjointly from `pool` for `seed`; at most `max_test` test examples.
    pub fn few_shot(
        info: TaskInfo,
        pool: &[Example],
        mut test: Vec<Example>,
        shots: usize,
        max_test: usize,
        seed: u64,
    ) -> Result<Self, LifelongError> {
        let (train, valid, _) = draw(&info, pool, shots, seed)?;
        test.truncate(max_test);
        Self::new(info, train, valid, test)
    }

    /// A pasted task: training and validation shots as [`Self::few_shot`] draws them, the
    /// rest of `examples` the test set (at most `max_test`).
    pub fn split(
        info: TaskInfo,
        examples: &[Example],
        shots: usize,
        max_test: usize,
        seed: u64,
    ) -> Result<Self, LifelongError> {
        let (train, valid, mut test) = draw(&info, examples, shots, seed)?;
        test.truncate(max_test);
        Self::new(info, train, valid, test)
    }

    /// A task from given splits (pasted tasks); checks what every method needs.
    pub fn new(
        info: TaskInfo,
        train: Vec<Example>,
        valid: Vec<Example>,
        test: Vec<Example>,
    ) -> Result<Self, LifelongError> {
        let task = || info.name.clone();
        if train.len() < 2 {
            return Err(LifelongError::TooFew {
                task: task(),
                split: "training",
                got: train.len(),
            });
        }
        if test.is_empty() {
            return Err(LifelongError::TooFew {
                task: task(),
                split: "test",
                got: 0,
            });
        }
        if info.kind.has_labels() {
            if info.labels.is_empty() {
                return Err(LifelongError::NoLabels(task()));
            }
            let unknown = train
                .iter()
                .chain(&valid)
                .chain(&test)
                .find(|e| !info.labels.contains(&e.target));
            if let Some(e) = unknown {
                return Err(LifelongError::UnknownLabel {
                    task: task(),
                    label: e.target.clone(),
                });
            }
        }
        Ok(Self {
            info,
            train,
            valid,
            test,
        })
    }

    pub fn ty(&self) -> TaskType {
        TaskType::of(self.info.kind)
    }
}

/// Training, validation, and what is left of a pool.
type Drawn = (Vec<Example>, Vec<Example>, Vec<Example>);

/// `shots` per class for training and as many again for validation, disjoint, drawn from
/// `pool` for `seed`; and what is left of the pool.
fn draw(
    info: &TaskInfo,
    pool: &[Example],
    shots: usize,
    seed: u64,
) -> Result<Drawn, LifelongError> {
    let labels = info.kind.has_labels().then_some(info.labels.as_slice());
    if labels.is_some_and(<[String]>::is_empty) {
        return Err(LifelongError::NoLabels(info.name.clone()));
    }
    let train = k_shot(pool, shots, labels, seed);
    let rest: Vec<Example> = pool
        .iter()
        .filter(|e| !train.contains(e))
        .cloned()
        .collect();
    let valid = k_shot(&rest, shots, labels, seed ^ 0x5eed);
    let left = rest.into_iter().filter(|e| !valid.contains(e)).collect();
    Ok((train, valid, left))
}

/// The order the stream is learned in for `seed`: grouped by type in the authors' order
/// (classification, NER, summarisation), the tasks of a type shuffled.
pub fn order(mut tasks: Vec<StreamTask>, seed: u64) -> Vec<StreamTask> {
    let mut rng = SplitMix64::new(seed);
    rng.shuffle(&mut tasks);
    // Stable: the shuffled order survives inside each type.
    tasks.sort_by_key(StreamTask::ty);
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, kind: TaskKind, labels: &[&str]) -> TaskInfo {
        TaskInfo::pasted(name, kind, labels)
    }

    fn pool(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example::new(format!("x{i}"), if i % 2 == 0 { "a" } else { "b" }))
            .collect()
    }

    #[test]
    fn train_and_valid_are_disjoint_per_class_shots() {
        let t = StreamTask::few_shot(
            info("t", TaskKind::Classification, &["a", "b"]),
            &pool(100),
            pool(10),
            4,
            5,
            42,
        )
        .unwrap();
        assert_eq!((t.train.len(), t.valid.len(), t.test.len()), (8, 8, 5));
        assert!(t.valid.iter().all(|e| !t.train.contains(e)));
    }

    #[test]
    fn bad_tasks_are_named() {
        let one = vec![Example::new("x", "a")];
        let e = StreamTask::new(
            info("t", TaskKind::Classification, &["a"]),
            one,
            vec![],
            pool(2),
        );
        assert!(e.unwrap_err().to_string().contains("t has 1 training"));
        let e = StreamTask::new(
            info("n", TaskKind::Classification, &[]),
            pool(4),
            vec![],
            pool(2),
        );
        assert!(e.unwrap_err().to_string().contains("n has no labels"));
        let e = StreamTask::new(
            info("u", TaskKind::Classification, &["a"]),
            pool(4),
            vec![],
            pool(2),
        );
        assert!(e.unwrap_err().to_string().contains("label \"b\""));
    }

    #[test]
    fn order_groups_types_and_depends_on_the_seed() {
        let kinds = [
            TaskKind::Generation,
            TaskKind::Classification,
            TaskKind::Ner,
            TaskKind::Classification,
            TaskKind::Classification,
        ];
        let tasks: Vec<StreamTask> = kinds
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let p: Vec<Example> = (0..4).map(|j| Example::new(format!("{j}"), "a")).collect();
                StreamTask::new(info(&format!("t{i}"), k, &["a"]), p.clone(), vec![], p).unwrap()
            })
            .collect();
        let names = |seed| -> Vec<String> {
            order(tasks.clone(), seed)
                .iter()
                .map(|t| t.info.name.clone())
                .collect()
        };
        let a = names(1);
        let types: Vec<TaskType> = order(tasks.clone(), 1).iter().map(StreamTask::ty).collect();
        assert!(types.is_sorted());
        assert_eq!(&a[3..], ["t2", "t0"]);
        assert!((2..40).any(|s| names(s)[..3] != a[..3]));
    }
}
