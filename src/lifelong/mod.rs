//! Lifelong few-shot learning: a stream of tasks learned one after another by soft prompts on
//! the frozen T5, every task seen so far scored after each one (the accuracy matrix), and how
//! much each method forgets. LFPT5 ([`lfpt5`]) against its baselines ([`learner::Method`]).

pub mod dmea;
pub mod learner;
pub mod lfpt5;
pub mod paste;
pub mod record;
pub mod stream;

pub use learner::{LifelongConfig, Method, Progress, run};
pub use stream::{StreamTask, TaskType};

use crate::prompt::eval::EvalError;
use crate::prompt::tune::TuneError;
use crate::text::tokenizer::TokenizerError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LifelongError {
    #[error("the task sequence is empty")]
    Empty,
    /// A problem of a pasted sequence (`paste`), as it names it.
    #[error("{0}")]
    Paste(String),
    #[error("task {task} has {got} {split} examples (at least 2 training and 1 test needed)")]
    TooFew {
        task: String,
        split: &'static str,
        got: usize,
    },
    #[error("task {0} has no labels: a classification prompt needs label words")]
    NoLabels(String),
    #[error("task {task}: label {label:?} is not in its label set")]
    UnknownLabel { task: String, label: String },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Tune(#[from] TuneError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Prompt(#[from] crate::prompt::PromptError),
}

/// One method's pass over one stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LifelongRun {
    pub method: Method,
    pub seed: u64,
    /// Task names in the order learned.
    pub order: Vec<String>,
    /// The headline metric of each task (accuracy, span F1, ROUGE-L), in `order`.
    pub metrics: Vec<String>,
    /// `scores[j][i]`: task `i`'s test score after learning task `j` (`i <= j`).
    pub scores: Vec<Vec<f64>>,
    /// LFPT5's pseudo examples, generated before each task (empty for the other methods).
    pub pseudo: Vec<lfpt5::PseudoSet>,
    /// Per task: the step of the prompt kept by validation (0: the prompt it started from).
    pub best_step: Vec<usize>,
    /// Per task: seconds of generation and training (evaluation excluded).
    pub train_seconds: Vec<f64>,
    /// Per task: seconds spent scoring the test sets after it.
    pub eval_seconds: Vec<f64>,
    /// The prompts kept after the last task learned, by name: LFPT5's one per task type, the
    /// other methods' one ([`learner::ALL_TASKS`]).
    #[serde(default)]
    pub prompts: Vec<(String, crate::prompt::SoftPrompt)>,
    /// The adapter methods: per task, per adapter site, the module it uses (new or reused).
    #[serde(default)]
    pub modules: Vec<Vec<dmea::Choice>>,
    /// The adapter methods: per task, the parameters its new modules added.
    #[serde(default)]
    pub parameters: Vec<usize>,
    /// The adapter methods: per task, the cosine of its representation (mean encoder state of
    /// its inputs) with each earlier task's.
    #[serde(default)]
    pub similarity: Vec<Vec<f64>>,
}

impl LifelongRun {
    /// Nothing learned yet of the tasks in `order`.
    pub fn empty(method: Method, seed: u64, order: Vec<String>) -> Self {
        Self {
            method,
            seed,
            order,
            metrics: Vec::new(),
            scores: Vec::new(),
            pseudo: Vec::new(),
            best_step: Vec::new(),
            train_seconds: Vec::new(),
            eval_seconds: Vec::new(),
            prompts: Vec::new(),
            modules: Vec::new(),
            parameters: Vec::new(),
            similarity: Vec::new(),
        }
    }

    /// Mean over every task of its score after the last task.
    pub fn final_average(&self) -> f64 {
        let last = self.scores.last().map_or(&[][..], Vec::as_slice);
        last.iter().sum::<f64>() / last.len().max(1) as f64
    }

    /// Per task but the last: its best score on the way minus its final score (>= 0).
    pub fn forgetting(&self) -> Vec<f64> {
        let n = self.scores.len();
        (0..n.saturating_sub(1))
            .map(|i| {
                let best = (i..n - 1)
                    .map(|j| self.scores[j][i])
                    .fold(f64::NEG_INFINITY, f64::max);
                (best - self.scores[n - 1][i]).max(0.0)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_is_best_minus_final() {
        let run = LifelongRun {
            method: Method::Sequential,
            seed: 0,
            order: vec!["a".into(), "b".into(), "c".into()],
            metrics: vec!["accuracy".into(); 3],
            scores: vec![vec![0.8], vec![0.9, 0.7], vec![0.5, 0.75, 0.6]],
            pseudo: vec![],
            best_step: vec![1; 3],
            train_seconds: vec![0.0; 3],
            eval_seconds: vec![0.0; 3],
            ..LifelongRun::empty(Method::Sequential, 0, vec![])
        };
        let f = run.forgetting();
        assert!((f[0] - 0.4).abs() < 1e-12 && f[1] == 0.0, "{f:?}");
        assert!((run.final_average() - 0.6166666).abs() < 1e-6);
    }
}
