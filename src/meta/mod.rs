//! Meta Prompt Tuning (Qin et al., ACL 2023): learn the soft prompt's *initialisation* over many
//! source tasks so that few-shot prompt tuning on an unseen task starts closer to a good prompt.
//! Each meta-step samples a batch of episodes, takes every episode's outer gradient
//! (`outer::task_grad`: MAML, FoMAML, Reptile, or the multi-task baseline), averages, clips and
//! applies it with the outer optimiser. Written against `Engine`, so it runs on every engine.
//! The whole state is serialisable: a long run checkpoints and resumes exactly.

pub mod episode;
pub mod outer;

use crate::prompt::SoftPrompt;
use crate::prompt::engine::Engine;
use crate::prompt::optim::{Optimizer, OptimizerKind, clip_grad_norm};
use crate::prompt::tune::TuneError;
use episode::{SourceTask, episodes};
use outer::{Inner, task_grad};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algo {
    Maml,
    FoMaml,
    Reptile,
    /// One prompt trained on all source tasks mixed (the paper's multi-task baseline).
    MultiTask,
}

impl Algo {
    pub const ALL: [Algo; 4] = [Algo::Maml, Algo::FoMaml, Algo::Reptile, Algo::MultiTask];

    pub fn name(self) -> &'static str {
        match self {
            Algo::Maml => "maml",
            Algo::FoMaml => "fomaml",
            Algo::Reptile => "reptile",
            Algo::MultiTask => "multitask",
        }
    }

    pub fn parse(s: &str) -> Result<Self, MetaError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                MetaError::Config(format!(
                    "unknown algorithm {s:?} (maml|fomaml|reptile|multitask)"
                ))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaConfig {
    pub algo: Algo,
    pub meta_steps: usize,
    /// Episodes (distinct tasks) per meta-step.
    pub task_batch: usize,
    pub inner_steps: usize,
    pub inner_lr: f32,
    pub outer_lr: f32,
    pub outer_optimizer: OptimizerKind,
    /// Examples per episode's support and query sets.
    pub support: usize,
    pub query: usize,
    /// MAML's finite-difference radius, relative to the prompt's norm.
    pub fd_eps: f32,
    /// Cap on the averaged outer gradient's norm.
    pub max_grad_norm: f32,
    pub seed: u64,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            algo: Algo::FoMaml,
            meta_steps: 150,
            task_batch: 4,
            inner_steps: 3,
            // Plain gradient descent on prompts made of T5 embeddings (norms in the hundreds,
            // gradients ~0.01-0.1) needs a large rate: on 4 meta-train episodes the adapted query
            // loss from the vocab start went 4.88 -> 4.16 (1e3), 2.83 (1e4), 2.63 (3e4), 2.20 (1e5).
            inner_lr: 3e4,
            outer_lr: 0.1,
            outer_optimizer: OptimizerKind::Adafactor,
            support: 8,
            query: 8,
            fd_eps: 1e-3,
            max_grad_norm: 1.0,
            seed: 0,
        }
    }
}

impl MetaConfig {
    pub fn check(&self) -> Result<(), MetaError> {
        let bad = |what: &str| Err(MetaError::Config(what.to_string()));
        if self.meta_steps == 0 {
            return bad("--meta-steps must be at least 1");
        }
        if self.task_batch == 0 || self.support == 0 || self.query == 0 {
            return bad("--task-batch, --support and --query must be at least 1");
        }
        if self.algo != Algo::MultiTask && self.inner_steps == 0 {
            return bad("--inner-steps must be at least 1 for maml, fomaml and reptile");
        }
        if !(self.inner_lr.is_finite() && self.inner_lr > 0.0) {
            return bad("--inner-lr must be a positive number");
        }
        if !(self.outer_lr.is_finite() && self.outer_lr > 0.0) {
            return bad("--outer-lr must be a positive number");
        }
        if !(self.fd_eps.is_finite() && self.fd_eps > 0.0) {
            return bad("--fd-eps must be a positive number");
        }
        Ok(())
    }
}

/// One point of the meta-training curve (means over the step's episodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaReport {
    pub step: usize,
    /// Query loss at the initialisation, and after the inner-loop adaptation.
    pub before: f32,
    pub after: f32,
    /// Norm of the averaged outer gradient, before clipping.
    pub grad_norm: f32,
    pub elapsed_s: f64,
    pub tasks: Vec<String>,
}

/// Everything a run needs to resume: config, source tasks, initialisation, optimiser, curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaState {
    pub config: MetaConfig,
    pub tasks: Vec<String>,
    pub prompt: SoftPrompt,
    pub optimizer: Optimizer,
    pub curve: Vec<MetaReport>,
}

impl MetaState {
    pub fn new(config: MetaConfig, tasks: &[SourceTask], start: SoftPrompt) -> Self {
        let optimizer = Optimizer::new(config.outer_optimizer, start.len, start.dim);
        Self {
            config,
            tasks: tasks.iter().map(|t| t.name.clone()).collect(),
            prompt: start,
            optimizer,
            curve: Vec::new(),
        }
    }

    pub fn step(&self) -> usize {
        self.curve.len()
    }

    pub fn elapsed_s(&self) -> f64 {
        self.curve.last().map_or(0.0, |r| r.elapsed_s)
    }

    pub fn finished(&self) -> bool {
        self.step() >= self.config.meta_steps
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetaError {
    #[error("meta-training settings: {0}")]
    Config(String),
    #[error("source task {task:?} has {n} training examples; an episode needs at least 2")]
    SmallTask { task: String, n: usize },
    #[error("no source tasks")]
    NoTasks,
    #[error("meta-step {step}, task {task}: {source}")]
    Tune {
        step: usize,
        task: String,
        source: TuneError,
    },
    #[error("meta-step {step}: the outer gradient is not finite; lower --inner-lr or --outer-lr")]
    NonFinite { step: usize },
}

/// Written next to a meta-learned prompt (`provenance.json`): what produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// "MPT" (a meta-learning algorithm) or "MTL" (the multi-task baseline).
    pub method: String,
    pub algorithm: String,
    pub suite: String,
    pub source_tasks: usize,
    pub meta_steps: usize,
    pub seed: u64,
    pub config: MetaConfig,
    /// The initialisation meta-training started from.
    pub start: String,
    pub max_input: usize,
    pub engine: String,
    pub minutes: f64,
    pub git_commit: String,
    pub date: String,
    pub command_line: String,
}

impl Provenance {
    /// "MPT fomaml", "MTL": how tables name an initialisation.
    pub fn label(&self) -> String {
        if self.method == "MTL" {
            "MTL".into()
        } else {
            format!("{} {}", self.method, self.algorithm)
        }
    }

    /// The provenance beside a prompt folder, if it has one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn beside(prompt: &std::path::Path) -> Option<Self> {
        let dir = if prompt.is_dir() {
            prompt
        } else {
            prompt.parent()?
        };
        let text = std::fs::read_to_string(dir.join("provenance.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Runs meta-steps from `state.step() + 1` to the configured budget. `on_step` sees each report
/// and the state after it (to draw progress and write checkpoints); `Break` stops early, leaving
/// a state that resumes where it stopped.
pub async fn meta_train(
    engine: Engine<'_>,
    state: &mut MetaState,
    tasks: &[SourceTask],
    on_step: &mut dyn FnMut(&MetaReport, &MetaState) -> ControlFlow<()>,
) -> Result<(), MetaError> {
    let cfg = state.config.clone();
    cfg.check()?;
    if tasks.is_empty() {
        return Err(MetaError::NoTasks);
    }
    if let Some(t) = tasks.iter().find(|t| t.pool.len() < 2) {
        return Err(MetaError::SmallTask {
            task: t.name.clone(),
            n: t.pool.len(),
        });
    }
    let inner = Inner {
        steps: cfg.inner_steps,
        lr: cfg.inner_lr,
        fd_eps: cfg.fd_eps,
    };
    let started = crate::clock::now_ms();
    let offset = state.elapsed_s();
    while !state.finished() {
        let step = state.step() + 1;
        let eps = episodes(
            tasks,
            step,
            cfg.task_batch,
            cfg.support,
            cfg.query,
            cfg.seed,
        );
        let mut grad = vec![0.0f32; state.prompt.values.len()];
        let (mut before, mut after) = (0.0, 0.0);
        for ep in &eps {
            let tg = task_grad(engine, cfg.algo, &state.prompt, ep, inner)
                .await
                .map_err(|source| MetaError::Tune {
                    step,
                    task: tasks[ep.task].name.clone(),
                    source,
                })?;
            grad.iter_mut().zip(&tg.grad).for_each(|(a, b)| *a += b);
            before += tg.before;
            after += tg.after;
        }
        let n = eps.len() as f32;
        grad.iter_mut().for_each(|g| *g /= n);
        let grad_norm = clip_grad_norm(&mut grad, cfg.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(MetaError::NonFinite { step });
        }
        state
            .optimizer
            .step(&mut state.prompt.values, &grad, cfg.outer_lr);
        let report = MetaReport {
            step,
            before: before / n,
            after: after / n,
            grad_norm,
            elapsed_s: offset + (crate::clock::now_ms() - started) / 1000.0,
            tasks: eps.iter().map(|e| tasks[e.task].name.clone()).collect(),
        };
        state.curve.push(report.clone());
        if on_step(&report, state).is_break() {
            break;
        }
    }
    Ok(())
}
