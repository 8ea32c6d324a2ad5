//! One run of the page's Lifelong section: the pasted sequence, two contenders (methods), and
//! what each did task by task. The worker fills it in from the run's progress and posts it as it
//! goes; the page keeps it in its history (IndexedDB) so that a reload finds it.

use super::learner::{LifelongConfig, Method, Progress};
use super::paste::PastedSequence;
use super::{LifelongRun, StreamTask};
use crate::compare::Status;
use serde::{Deserialize, Serialize};

/// Where a contender is: the task and step of the last step heard, and its loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct At {
    pub task: usize,
    pub step: usize,
    pub loss: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contender {
    pub method: Method,
    /// The run so far (its score rows fill in as tasks are scored), the whole run once over.
    pub run: LifelongRun,
    pub at: Option<At>,
    /// Optimiser steps taken, over every task.
    pub steps_done: usize,
    /// Per task: the validation losses heard, (step, loss).
    pub valid: Vec<Vec<(usize, f32)>>,
}

impl Contender {
    pub fn new(method: Method, seed: u64, order: Vec<String>) -> Self {
        Self {
            method,
            run: LifelongRun::empty(method, seed, order),
            at: None,
            steps_done: 0,
            valid: Vec::new(),
        }
    }

    /// Takes in one event of its run.
    pub fn hear(&mut self, p: &Progress) {
        match *p {
            Progress::Generated { set, .. } => self.run.pseudo.push(set.clone()),
            Progress::Step {
                task, step, loss, ..
            } => {
                self.steps_done += 1;
                self.at = Some(At { task, step, loss });
            }
            Progress::Validated { task, step, loss } => {
                if self.valid.len() <= task {
                    self.valid.resize(task + 1, Vec::new());
                }
                self.valid[task].push((step, loss));
            }
            Progress::Scored { after, score, .. } => {
                if self.run.scores.len() <= after {
                    self.run.scores.resize(after + 1, Vec::new());
                }
                self.run.scores[after].push(score);
            }
            Progress::Decided { task, choices } => {
                self.run.modules.truncate(task);
                self.run.modules.push(choices.to_vec());
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifelongRecord {
    pub id: u64,
    pub started: String,
    pub paste: PastedSequence,
    /// Per class (per task without labels), for training and as many for validation.
    pub shots: usize,
    /// Test examples per task at most.
    pub max_test: usize,
    /// Its `seed` draws the shots and the initial prompt.
    pub config: LifelongConfig,
    pub contenders: [Contender; 2],
    pub status: Status,
    pub engine: String,
    /// Seconds since the worker started the run.
    pub secs: f64,
    pub error: Option<String>,
}

impl LifelongRecord {
    /// A new run of `paste` with `methods`, not started.
    pub fn new(
        id: u64,
        started: String,
        paste: PastedSequence,
        methods: [Method; 2],
        shots: usize,
        max_test: usize,
        config: LifelongConfig,
    ) -> Self {
        let order: Vec<String> = paste.tasks.iter().map(|t| t.name.clone()).collect();
        let seed = config.seed;
        Self {
            id,
            started,
            paste,
            shots,
            max_test,
            config,
            contenders: methods.map(|m| Contender::new(m, seed, order.clone())),
            status: Status::Running,
            engine: "starting…".into(),
            secs: 0.0,
            error: None,
        }
    }

    /// The stream both contenders learn.
    pub fn stream(&self) -> Result<Vec<StreamTask>, super::LifelongError> {
        self.paste
            .stream(self.shots, self.max_test, self.config.seed)
    }

    /// Optimiser steps of the whole run (both contenders, every task).
    pub fn total_steps(&self) -> usize {
        let n = self.paste.tasks.len();
        self.contenders
            .iter()
            .map(|c| {
                (0..n)
                    .map(|t| c.method.task_steps(t, &self.config))
                    .sum::<usize>()
            })
            .sum()
    }

    pub fn steps_done(&self) -> usize {
        self.contenders.iter().map(|c| c.steps_done).sum()
    }

    /// Seconds left at the pace so far (generation and scoring included in the pace).
    pub fn eta_secs(&self) -> Option<f64> {
        let done = self.steps_done();
        (done > 0 && self.status == Status::Running).then(|| {
            self.secs / done as f64 * (self.total_steps() - done.min(self.total_steps())) as f64
        })
    }

    /// One line for the history list.
    pub fn summary(&self) -> String {
        let last = |c: &Contender| {
            let full = c.run.scores.len() == self.paste.tasks.len()
                && c.run
                    .scores
                    .last()
                    .is_some_and(|r| r.len() == c.run.scores.len());
            if full {
                format!("{:.1}", 100.0 * c.run.final_average())
            } else {
                "–".into()
            }
        };
        let [a, b] = &self.contenders;
        format!(
            "{} · {} tasks, {}-shot, {} steps · {} {} vs {} {} average after the last task · {:?}",
            self.started
                .get(..16)
                .unwrap_or(&self.started)
                .replace('T', " "),
            self.paste.tasks.len(),
            self.shots,
            self.config.steps,
            a.method.name(),
            last(a),
            b.method.name(),
            last(b),
            self.status
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::examples::Limits;

    #[test]
    fn a_contender_fills_its_matrix_from_what_it_hears() {
        let paste = super::super::paste::parse(
            "# a\nx => 1\ny => 2\n# b\nz => 3\nw => 4",
            &Limits::default(),
        );
        let cfg = LifelongConfig {
            steps: 2,
            ..LifelongConfig::default()
        };
        let mut r = LifelongRecord::new(
            1,
            "2026-12-03T10:00".into(),
            paste,
            [Method::Lfpt5, Method::Sequential],
            1,
            5,
            cfg,
        );
        assert_eq!(r.total_steps(), 8);
        let c = &mut r.contenders[0];
        for p in [
            Progress::Step {
                task: 0,
                step: 1,
                steps: 2,
                loss: 2.0,
            },
            Progress::Step {
                task: 0,
                step: 2,
                steps: 2,
                loss: 1.0,
            },
            Progress::Validated {
                task: 0,
                step: 2,
                loss: 1.5,
            },
            Progress::Scored {
                after: 0,
                task: 0,
                score: 0.5,
            },
            Progress::Scored {
                after: 1,
                task: 0,
                score: 0.25,
            },
            Progress::Scored {
                after: 1,
                task: 1,
                score: 1.0,
            },
        ] {
            c.hear(&p);
        }
        assert_eq!(c.run.scores, vec![vec![0.5], vec![0.25, 1.0]]);
        assert_eq!((c.steps_done, c.valid.clone()), (2, vec![vec![(2, 1.5)]]));
        assert_eq!(c.run.forgetting(), [0.25]);
        r.secs = 10.0;
        assert_eq!(r.eta_secs(), Some(30.0));
        assert!(
            r.summary().contains("lfpt5 62.5 vs sequential –"),
            "{}",
            r.summary()
        );
    }
}
