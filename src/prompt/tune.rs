//! The one tuning loop: text-to-text loss on the target tokens, gradients for the prompt only
//! (the model's tensors are not tracked, so autodiff computes no weight gradient at all), clipping,
//! Adafactor or Adam, a step budget or early stopping on the support loss, a progress callback
//! that can cancel, and a clear stop on NaN/inf.

use super::engine::Engine;
use super::optim::{Optimizer, OptimizerKind, clip_grad_norm};
use super::{SoftPrompt, encode_with_prompt};
use crate::model::{Batch, T5};
use crate::tasks::sampling::SplitMix64;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// One tokenised training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub input: Vec<u32>,
    /// Target tokens including the closing EOS.
    pub target: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneConfig {
    /// Most optimiser steps.
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub optimizer: OptimizerKind,
    /// Global gradient-norm cap (1.0 in the MPT code).
    pub max_grad_norm: f32,
    /// Stop when the support loss (measured every `every` steps on the whole support set) has
    /// not improved for `patience` measurements.
    pub early_stop: Option<EarlyStop>,
    /// Seeds the minibatch order.
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    pub every: usize,
    pub patience: usize,
}

impl Default for TuneConfig {
    /// Lester et al.'s optimiser and learning rate; a budget that fits a few-shot support set.
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 8,
            lr: 0.3,
            optimizer: OptimizerKind::Adafactor,
            max_grad_norm: 1.0,
            early_stop: None,
            seed: 0,
        }
    }
}

/// What the callback sees after every step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: usize,
    pub loss: f32,
    pub grad_norm: f32,
    pub elapsed_ms: f64,
    /// Support-set loss, on the steps where early stopping measured it.
    pub support_loss: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    Budget,
    EarlyStopped,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tuned {
    pub prompt: SoftPrompt,
    pub history: Vec<StepReport>,
    pub stop: StopReason,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TuneError {
    #[error("no training examples")]
    Empty,
    #[error(
        "step {step}: the {what} is {value} (not finite); lower the learning rate or check the data"
    )]
    NonFinite {
        step: usize,
        what: &'static str,
        value: f32,
    },
    #[error(
        "the prompt is {len} x {dim} ({values} values) and this model is {d_model} wide: it was trained under another model"
    )]
    PromptShape {
        len: usize,
        dim: usize,
        values: usize,
        d_model: usize,
    },
    #[error("{what} {row}, token {position}: id {id} is outside the model's vocabulary of {vocab}")]
    TokenOutOfVocab {
        what: &'static str,
        row: usize,
        position: usize,
        id: u32,
        vocab: usize,
    },
    #[error("reading values back from the device: {0}")]
    ReadBack(String),
    #[error("the saved tuner state cannot resume this run: {0}")]
    BadState(String),
    #[error("our GPU kernels: {0}")]
    Kernel(#[from] crate::kernels::KernelError),
    #[error("{0} runs on our engines only (CPU or WGSL kernels), not burn's generic ops")]
    NeedsOurEngine(&'static str),
    #[error(
        "input {input}: the score of label {label} is {value} (not finite); the prompt or the model's weights are corrupt"
    )]
    ScoreNotFinite {
        input: usize,
        label: usize,
        value: f32,
    },
}

/// Mean cross-entropy per target token of `pairs` under `prompt` (a tracked tensor when
/// gradients are wanted).
pub fn loss(t5: &T5, prompt: Option<Tensor<2>>, pairs: &[&Pair]) -> Tensor<1> {
    let inputs: Vec<Vec<u32>> = pairs.iter().map(|p| p.input.clone()).collect();
    let targets: Vec<Vec<u32>> = pairs.iter().map(|p| p.target.clone()).collect();
    let batch = Batch::new(&inputs);
    let (enc, mask) = encode_with_prompt(t5, prompt, &batch);
    let n_tokens: usize = targets.iter().map(Vec::len).sum();
    t5.score_tensor(enc, &mask, &targets)
        .sum()
        .mul_scalar(-1.0 / n_tokens.max(1) as f32)
}

/// Loss and prompt gradient for one minibatch (burn engines need an autodiff device).
pub async fn loss_and_grad<'a>(
    engine: impl Into<Engine<'a>>,
    prompt: &SoftPrompt,
    pairs: &[&Pair],
) -> Result<(f32, Vec<f32>), TuneError> {
    engine.into().loss_and_grad(prompt, pairs).await
}

/// The largest `[rows x target tokens, vocab]` f32 logits one pass may bind: WebGPU's default
/// `max_storage_buffer_binding_size` (128 MiB), which lavapipe and the browsers keep (16 rows of
/// 91-token targets need 178 MiB and fail validation).
pub const MAX_LOGITS_BYTES: usize = 128 << 20;

/// `[start, end)` minibatches of at most `batch` rows whose logits fit [`MAX_LOGITS_BYTES`]
/// (a row alone always goes through).
pub fn loss_batches(target_lens: &[usize], batch: usize, vocab: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < target_lens.len() {
        let (mut end, mut longest) = (start, 0);
        while end < target_lens.len() && end - start < batch.max(1) {
            let l = longest.max(target_lens[end] + 1);
            if end > start && (end - start + 1) * l * vocab * 4 > MAX_LOGITS_BYTES {
                break;
            }
            (longest, end) = (l, end + 1);
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// Support-set loss without gradients, in minibatches.
pub async fn support_loss(
    engine: Engine<'_>,
    prompt: &SoftPrompt,
    pairs: &[Pair],
    batch: usize,
) -> Result<f32, TuneError> {
    let mut total = 0.0;
    let mut tokens = 0usize;
    let lens: Vec<usize> = pairs.iter().map(|p| p.target.len()).collect();
    for (a, b) in loss_batches(&lens, batch, engine.config().vocab_size) {
        let chunk = &pairs[a..b];
        let refs: Vec<&Pair> = chunk.iter().collect();
        let n: usize = chunk.iter().map(|p| p.target.len()).sum();
        total += engine.loss(prompt, &refs).await? * n as f32;
        tokens += n;
    }
    Ok(total / tokens.max(1) as f32)
}

/// The tuning loop one step at a time, so that a caller can interleave several runs (the page
/// trains two contenders side by side) or stop between any two steps. [`tune`] drives it.
#[derive(Debug, Clone)]
pub struct Tuner {
    pub prompt: SoftPrompt,
    cfg: TuneConfig,
    opt: Optimizer,
    rng: SplitMix64,
    order: Vec<usize>,
    step: usize,
    start_ms: f64,
}

/// Everything a tuner carries from one step to the next, to the bit (prompt, optimiser moments,
/// the minibatch stream): a run resumed from it takes exactly the steps the uninterrupted run
/// would have taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunerState {
    pub prompt: SoftPrompt,
    pub opt: Optimizer,
    pub rng: SplitMix64,
    /// The rest of the current epoch's permutation.
    pub order: Vec<usize>,
    pub step: usize,
}

impl Tuner {
    pub fn state(&self) -> TunerState {
        TunerState {
            prompt: self.prompt.clone(),
            opt: self.opt.clone(),
            rng: self.rng.clone(),
            order: self.order.clone(),
            step: self.step,
        }
    }

    /// Carries on from `state` (saved by [`Tuner::state`], maybe read back from storage) over a
    /// support set of `support` examples; refuses a state that does not fit them or `cfg`.
    pub fn resume(state: TunerState, cfg: &TuneConfig, support: usize) -> Result<Self, TuneError> {
        let bad = |why: String| Err(TuneError::BadState(why));
        let p = &state.prompt;
        if p.values.len() != p.len * p.dim {
            return bad(format!(
                "its prompt holds {} values for {} x {}",
                p.values.len(),
                p.len,
                p.dim
            ));
        }
        if let Err(why) = state.opt.fits(cfg.optimizer, p.len, p.dim) {
            return bad(why);
        }
        if let Some(&i) = state.order.iter().find(|&&i| i >= support) {
            return bad(format!(
                "its minibatch order names example {i} of {support}"
            ));
        }
        Ok(Self {
            prompt: state.prompt,
            cfg: cfg.clone(),
            opt: state.opt,
            rng: state.rng,
            order: state.order,
            step: state.step,
            start_ms: crate::clock::now_ms(),
        })
    }

    pub fn new(prompt: SoftPrompt, cfg: &TuneConfig) -> Self {
        Self {
            opt: Optimizer::new(cfg.optimizer, prompt.len, prompt.dim),
            prompt,
            cfg: cfg.clone(),
            rng: SplitMix64::new(cfg.seed),
            order: Vec::new(),
            step: 0,
            start_ms: crate::clock::now_ms(),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One optimiser step on a minibatch of `support`; errors on an empty set or a non-finite
    /// loss or gradient (the prompt is then left as it was).
    pub async fn step(
        &mut self,
        engine: Engine<'_>,
        support: &[Pair],
    ) -> Result<StepReport, TuneError> {
        if support.is_empty() {
            return Err(TuneError::Empty);
        }
        let step = self.step + 1;
        let bs = self.cfg.batch_size.clamp(1, support.len());
        // Epochs of a fresh seeded permutation; a minibatch never straddles two epochs.
        if self.order.len() < bs {
            self.order = (0..support.len()).collect();
            self.rng.shuffle(&mut self.order);
        }
        let pairs: Vec<&Pair> = self.order.drain(..bs).map(|i| &support[i]).collect();
        let (l, mut g) = engine.loss_and_grad(&self.prompt, &pairs).await?;
        if !l.is_finite() {
            return Err(TuneError::NonFinite {
                step,
                what: "loss",
                value: l,
            });
        }
        let grad_norm = clip_grad_norm(&mut g, self.cfg.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(TuneError::NonFinite {
                step,
                what: "gradient norm",
                value: grad_norm,
            });
        }
        self.opt.step(&mut self.prompt.values, &g, self.cfg.lr);
        self.step = step;
        Ok(StepReport {
            step,
            loss: l,
            grad_norm,
            elapsed_ms: crate::clock::now_ms() - self.start_ms,
            support_loss: None,
        })
    }
}

/// Tunes `prompt` on `support`. `on_step` is called after every step; returning
/// `ControlFlow::Break(())` cancels (the prompt so far is returned).
pub async fn tune<'a>(
    engine: impl Into<Engine<'a>>,
    prompt: SoftPrompt,
    support: &[Pair],
    cfg: &TuneConfig,
    on_step: &mut dyn FnMut(&StepReport) -> ControlFlow<()>,
) -> Result<Tuned, TuneError> {
    if support.is_empty() {
        return Err(TuneError::Empty);
    }
    let engine = engine.into();
    let mut tuner = Tuner::new(prompt, cfg);
    let mut history = Vec::with_capacity(cfg.steps);
    let (mut best, mut best_prompt, mut since_best) = (f32::INFINITY, tuner.prompt.clone(), 0usize);
    for step in 1..=cfg.steps {
        let mut report = tuner.step(engine, support).await?;
        let mut stop_early = false;
        if let Some(es) = cfg.early_stop
            && step % es.every.max(1) == 0
        {
            let sl = support_loss(engine, &tuner.prompt, support, cfg.batch_size).await?;
            report.support_loss = Some(sl);
            if sl < best {
                (best, best_prompt, since_best) = (sl, tuner.prompt.clone(), 0);
            } else {
                since_best += 1;
                stop_early = since_best >= es.patience;
            }
        }
        history.push(report);
        if on_step(&report).is_break() {
            return Ok(Tuned {
                prompt: tuner.prompt,
                history,
                stop: StopReason::Cancelled,
            });
        }
        if stop_early {
            return Ok(Tuned {
                prompt: best_prompt,
                history,
                stop: StopReason::EarlyStopped,
            });
        }
    }
    // With early stopping, the best measured prompt; else the last.
    let prompt = if cfg.early_stop.is_some() && best.is_finite() {
        best_prompt
    } else {
        tuner.prompt
    };
    Ok(Tuned {
        prompt,
        history,
        stop: StopReason::Budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_batches_keep_logits_under_the_binding_limit() {
        let v = 32_128;
        // Short targets: plain minibatches of `batch`.
        assert_eq!(loss_batches(&[3; 5], 2, v), [(0, 2), (2, 4), (4, 5)]);
        // 91-token targets (the lavapipe failure): 16 rows need 178 MiB, so fewer per pass.
        let long = loss_batches(&[90; 16], 16, v);
        assert!(long.len() > 1, "{long:?}");
        for &(a, b) in &long {
            assert!((b - a) * 91 * v * 4 <= MAX_LOGITS_BYTES, "{a}..{b}");
        }
        assert_eq!(long.last().unwrap().1, 16);
        // A row too long for the budget still goes, alone.
        assert_eq!(loss_batches(&[5000, 3], 4, v), [(0, 1), (1, 2)]);
        assert!(loss_batches(&[], 4, v).is_empty());
    }
}
