//! What runs the frozen model for tuning and evaluation: burn's generic ops with autodiff (any
//! burn device, CPU or wgpu), or our own kernels (the hand-written CPU step in `crate::cpu`).
//! Everything above this (the tuning loop, evaluation, meta-training) is written once against it,
//! so the two can be compared on the same work.

use super::tune::{Pair, TuneError, loss};
use super::{SoftPrompt, encode_with_prompt};
use crate::cpu::CpuT5;
use crate::kernels::t5::GpuT5;
use crate::model::{Batch, T5, T5Config};
use burn::tensor::Tensor;

#[derive(Clone, Copy)]
pub enum Engine<'a> {
    /// burn's generic tensor ops; the model must live on an autodiff device for gradients.
    Burn(&'a T5),
    /// Our kernels: the forward/backward written out by hand (activation gradients only).
    Ours(&'a CpuT5),
    /// Our WGSL kernels on the GPU (the same step as `Ours`, dispatch for dispatch).
    Wgpu(&'a GpuT5),
}

impl<'a> From<&'a GpuT5> for Engine<'a> {
    fn from(t5: &'a GpuT5) -> Self {
        Engine::Wgpu(t5)
    }
}

impl<'a> From<&'a T5> for Engine<'a> {
    fn from(t5: &'a T5) -> Self {
        Engine::Burn(t5)
    }
}

impl<'a> From<&'a CpuT5> for Engine<'a> {
    fn from(t5: &'a CpuT5) -> Self {
        Engine::Ours(t5)
    }
}

fn read_back(e: impl std::fmt::Debug) -> TuneError {
    TuneError::ReadBack(format!("{e:?}"))
}

async fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TuneError> {
    t.into_data_async()
        .await
        .map_err(read_back)?
        .try_to_vec::<f32>()
        .map_err(read_back)
}

fn split(pairs: &[&Pair]) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    (
        pairs.iter().map(|p| p.input.clone()).collect(),
        pairs.iter().map(|p| p.target.clone()).collect(),
    )
}

impl Engine<'_> {
    pub fn config(&self) -> &T5Config {
        match self {
            Engine::Burn(t5) => &t5.config,
            Engine::Ours(t5) => &t5.config,
            Engine::Wgpu(t5) => &t5.config,
        }
    }

    /// Mean cross-entropy per target token of `pairs` under `prompt`, and the prompt's gradient.
    pub async fn loss_and_grad(
        &self,
        prompt: &SoftPrompt,
        pairs: &[&Pair],
    ) -> Result<(f32, Vec<f32>), TuneError> {
        match self {
            Engine::Burn(t5) => {
                let p = prompt.tensor(&t5.device).require_grad();
                let l = loss(t5, Some(p.clone()), pairs);
                let grads = l.backward();
                let g = p
                    .grad(&grads)
                    .ok_or_else(|| TuneError::ReadBack("the prompt received no gradient".into()))?;
                let g = to_vec(g).await?;
                Ok((to_vec(l).await?[0], g))
            }
            Engine::Ours(t5) => {
                let (inputs, targets) = split(pairs);
                Ok(t5.loss_and_prompt_grad(&prompt.values, &inputs, &targets))
            }
            Engine::Wgpu(t5) => {
                let (inputs, targets) = split(pairs);
                Ok(t5
                    .loss_and_prompt_grad(&prompt.values, &inputs, &targets)
                    .await?)
            }
        }
    }

    /// The same loss without a gradient.
    pub async fn loss(&self, prompt: &SoftPrompt, pairs: &[&Pair]) -> Result<f32, TuneError> {
        match self {
            Engine::Burn(t5) => {
                Ok(to_vec(loss(t5, Some(prompt.tensor(&t5.device)), pairs)).await?[0])
            }
            Engine::Ours(t5) => {
                let (inputs, targets) = split(pairs);
                let enc = t5.encode(&prompt.values, &inputs);
                let n: usize = targets.iter().map(Vec::len).sum();
                let s: f32 = t5.score(&enc, &targets).iter().sum();
                Ok(-s / n.max(1) as f32)
            }
            Engine::Wgpu(t5) => {
                let (inputs, targets) = split(pairs);
                let enc = t5.encode(&prompt.values, &inputs)?;
                let n: usize = targets.iter().map(Vec::len).sum();
                let s: f32 = t5.score(&enc, &targets).await?.iter().sum();
                Ok(-s / n.max(1) as f32)
            }
        }
    }

    /// Rank classification: for each input, the index of the label whose tokens have the highest
    /// total log-probability.
    pub async fn rank(
        &self,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        labels: &[Vec<u32>],
    ) -> Result<Vec<usize>, TuneError> {
        let scores = self.label_scores(prompt, inputs, labels).await?;
        Ok(scores
            .iter()
            .map(|row| {
                // The first of equal scores, as a strict `>` scan would pick.
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
                        if s > best.1 { (i, s) } else { best }
                    })
                    .0
            })
            .collect())
    }

    /// `[input][label]`: total log-probability of each label's tokens given each input. The
    /// inputs are encoded once for all labels.
    pub async fn label_scores(
        &self,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        labels: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, TuneError> {
        let mut out = vec![Vec::with_capacity(labels.len()); inputs.len()];
        let mut keep = |scores: Vec<f32>| {
            for (row, s) in out.iter_mut().zip(scores) {
                row.push(s);
            }
        };
        match self {
            Engine::Burn(t5) => {
                let b = Batch::new(inputs);
                let (enc, mask) = encode_with_prompt(t5, prompt.map(|p| p.tensor(&t5.device)), &b);
                for tokens in labels {
                    let targets = vec![tokens.clone(); inputs.len()];
                    keep(to_vec(t5.score_tensor(enc.clone(), &mask, &targets)).await?);
                }
            }
            Engine::Ours(t5) => {
                let enc = t5.encode(prompt.map_or(&[][..], |p| &p.values), inputs);
                for tokens in labels {
                    keep(t5.score(&enc, &vec![tokens.clone(); inputs.len()]));
                }
            }
            Engine::Wgpu(t5) => {
                let enc = t5.encode(prompt.map_or(&[][..], |p| &p.values), inputs)?;
                for tokens in labels {
                    let targets = vec![tokens.clone(); inputs.len()];
                    keep(t5.score(&enc, &targets).await?);
                }
            }
        }
        Ok(out)
    }

    /// Greedy decoding of up to `max_new` tokens per input (without the closing EOS).
    pub async fn generate(
        &self,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, TuneError> {
        Ok(match self {
            Engine::Burn(t5) => {
                let b = Batch::new(inputs);
                let (enc, mask) = encode_with_prompt(t5, prompt.map(|p| p.tensor(&t5.device)), &b);
                t5.generate(enc, &mask, max_new).await
            }
            Engine::Ours(t5) => {
                let enc = t5.encode(prompt.map_or(&[][..], |p| &p.values), inputs);
                t5.generate(&enc, max_new)
            }
            Engine::Wgpu(t5) => {
                let enc = t5.encode(prompt.map_or(&[][..], |p| &p.values), inputs)?;
                t5.generate(&enc, max_new).await?
            }
        })
    }
}
