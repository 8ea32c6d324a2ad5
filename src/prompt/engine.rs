//! What runs the frozen model for tuning and evaluation: burn's generic ops with autodiff (any
//! burn device, CPU or wgpu), or our T5 graph (`crate::graph`) on our CPU or WGSL kernels.
//! Everything above this (the tuning loop, evaluation, meta-training) is written once against it,
//! so the two can be compared on the same work.

use super::tune::{Pair, TuneError, loss};
use super::{SoftPrompt, encode_with_prompt};
use crate::cpu::CpuT5;
use crate::graph::{Gradients, Objective, Ops, Sampler, T5Graph};
use crate::kernels::GpuT5;
use crate::model::{Batch, T5, T5Config};
use burn::tensor::Tensor;

#[derive(Clone, Copy)]
pub enum Engine<'a> {
    /// burn's generic tensor ops; the model must live on an autodiff device for gradients.
    Burn(&'a T5),
    /// Our graph on our CPU kernels (activation gradients only).
    Ours(&'a CpuT5),
    /// The same graph on our WGSL kernels.
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

    /// Refuses what the model cannot take before any kernel sees it: a prompt of another width
    /// (trained under another model, or a damaged record) and token ids past the vocabulary.
    pub fn check(
        &self,
        prompt: Option<&SoftPrompt>,
        what: &'static str,
        seqs: &[&[u32]],
    ) -> Result<(), TuneError> {
        let c = self.config();
        if let Some(p) = prompt
            && (p.dim != c.d_model || p.values.len() != p.len * p.dim)
        {
            return Err(TuneError::PromptShape {
                len: p.len,
                dim: p.dim,
                values: p.values.len(),
                d_model: c.d_model,
            });
        }
        for (row, ids) in seqs.iter().enumerate() {
            if let Some((position, &id)) = ids
                .iter()
                .enumerate()
                .find(|(_, id)| **id as usize >= c.vocab_size)
            {
                return Err(TuneError::TokenOutOfVocab {
                    what,
                    row,
                    position,
                    id,
                    vocab: c.vocab_size,
                });
            }
        }
        Ok(())
    }

    fn check_pairs(&self, prompt: Option<&SoftPrompt>, pairs: &[&Pair]) -> Result<(), TuneError> {
        let inputs: Vec<&[u32]> = pairs.iter().map(|p| p.input.as_slice()).collect();
        let targets: Vec<&[u32]> = pairs.iter().map(|p| p.target.as_slice()).collect();
        self.check(prompt, "input", &inputs)?;
        self.check(None, "target", &targets)
    }

    /// Mean cross-entropy per target token of `pairs` under `prompt`, and the prompt's gradient.
    pub async fn loss_and_grad(
        &self,
        prompt: &SoftPrompt,
        pairs: &[&Pair],
    ) -> Result<(f32, Vec<f32>), TuneError> {
        self.check_pairs(Some(prompt), pairs)?;
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
            Engine::Ours(t5) => graph::loss_and_grad(t5, prompt, pairs).await,
            Engine::Wgpu(t5) => graph::loss_and_grad(t5, prompt, pairs).await,
        }
    }

    /// The same loss without a gradient.
    pub async fn loss(&self, prompt: &SoftPrompt, pairs: &[&Pair]) -> Result<f32, TuneError> {
        self.check_pairs(Some(prompt), pairs)?;
        match self {
            Engine::Burn(t5) => {
                Ok(to_vec(loss(t5, Some(prompt.tensor(&t5.device)), pairs)).await?[0])
            }
            Engine::Ours(t5) => graph::loss(t5, prompt, pairs).await,
            Engine::Wgpu(t5) => graph::loss(t5, prompt, pairs).await,
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
        scores
            .iter()
            .enumerate()
            .map(|(input, row)| {
                best_label(row).map_err(|(label, value)| TuneError::ScoreNotFinite {
                    input,
                    label,
                    value,
                })
            })
            .collect()
    }

    /// `[input][label]`: total log-probability of each label's tokens given each input. The
    /// inputs are encoded once for all labels.
    pub async fn label_scores(
        &self,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        labels: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, TuneError> {
        self.check(prompt, "input", &slices(inputs))?;
        self.check(None, "label", &slices(labels))?;
        match self {
            Engine::Burn(t5) => {
                let mut out = vec![Vec::with_capacity(labels.len()); inputs.len()];
                let b = Batch::new(inputs);
                let (enc, mask) = encode_with_prompt(t5, prompt.map(|p| p.tensor(&t5.device)), &b);
                for tokens in labels {
                    let targets = vec![tokens.clone(); inputs.len()];
                    let scores = to_vec(t5.score_tensor(enc.clone(), &mask, &targets)).await?;
                    keep(&mut out, scores);
                }
                Ok(out)
            }
            Engine::Ours(t5) => graph::label_scores(t5, prompt, inputs, labels).await,
            Engine::Wgpu(t5) => graph::label_scores(t5, prompt, inputs, labels).await,
        }
    }

    /// Greedy decoding of up to `max_new` tokens per input (without the closing EOS).
    pub async fn generate(
        &self,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, TuneError> {
        self.check(prompt, "input", &slices(inputs))?;
        Ok(match self {
            Engine::Burn(t5) => {
                let b = Batch::new(inputs);
                let (enc, mask) = encode_with_prompt(t5, prompt.map(|p| p.tensor(&t5.device)), &b);
                t5.generate(enc, &mask, max_new)
                    .await
                    .map_err(TuneError::ReadBack)?
            }
            Engine::Ours(t5) => graph::generate(t5, prompt, inputs, max_new).await?,
            Engine::Wgpu(t5) => graph::generate(t5, prompt, inputs, max_new).await?,
        })
    }

    /// The loss of a batch of several parts (task, generator, distillation rows) and its
    /// gradients: the continual-learning methods' step. `what` names the method in the error
    /// burn's ops give.
    pub async fn loss_and_grads(
        &self,
        batch: &Objective<'_>,
        what: &'static str,
    ) -> Result<Gradients, TuneError> {
        match self {
            Engine::Burn(_) => Err(TuneError::NeedsOurEngine(what)),
            Engine::Ours(t5) => Ok(t5.loss_and_grads(batch).await?),
            Engine::Wgpu(t5) => Ok(t5.loss_and_grads(batch).await?),
        }
    }

    /// Adapters inside every layer for every call from now on (`None` removes them): DMEA and
    /// its baselines train them.
    pub fn set_adapters(&self, adapters: Option<&crate::graph::Adapters>) -> Result<(), TuneError> {
        match self {
            Engine::Burn(_) => Err(TuneError::NeedsOurEngine("adapters")),
            Engine::Ours(t5) => Ok(t5.set_adapters(adapters)?),
            Engine::Wgpu(t5) => Ok(t5.set_adapters(adapters)?),
        }
    }

    /// Each input's encoder states (no prompt) at `positions[i]`, concatenated per input: ERDA's
    /// relation encoder pools them at the entity mentions.
    pub async fn pooled_states(
        &self,
        inputs: &[Vec<u32>],
        positions: &[Vec<usize>],
    ) -> Result<Vec<Vec<f32>>, TuneError> {
        self.check(None, "input", &slices(inputs))?;
        match self {
            Engine::Burn(_) => Err(TuneError::NeedsOurEngine("relation encoding")),
            Engine::Ours(t5) => Ok(t5.pooled_states(&[], inputs, positions).await?),
            Engine::Wgpu(t5) => Ok(t5.pooled_states(&[], inputs, positions).await?),
        }
    }

    /// Sampled decoding of up to `max_new` tokens per input (without the closing EOS), each
    /// token drawn by `sampler` (LFPT5's pseudo examples).
    pub async fn sample(
        &self,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        max_new: usize,
        sampler: &mut Sampler,
    ) -> Result<Vec<Vec<u32>>, TuneError> {
        self.check(prompt, "input", &slices(inputs))?;
        match self {
            Engine::Burn(_) => Err(TuneError::NeedsOurEngine("sampling")),
            Engine::Ours(t5) => graph::sample(t5, prompt, inputs, max_new, sampler).await,
            Engine::Wgpu(t5) => graph::sample(t5, prompt, inputs, max_new, sampler).await,
        }
    }
}

fn slices(seqs: &[Vec<u32>]) -> Vec<&[u32]> {
    seqs.iter().map(Vec::as_slice).collect()
}

/// Appends each input's score for one label to its row.
fn keep(out: &mut [Vec<f32>], scores: Vec<f32>) {
    for (row, s) in out.iter_mut().zip(scores) {
        row.push(s);
    }
}

/// The engine's methods on our graph, once for both backends.
mod graph {
    use super::*;

    fn values(prompt: Option<&SoftPrompt>) -> &[f32] {
        prompt.map_or(&[][..], |p| &p.values)
    }

    pub async fn loss_and_grad<O: Ops>(
        t5: &T5Graph<O>,
        prompt: &SoftPrompt,
        pairs: &[&Pair],
    ) -> Result<(f32, Vec<f32>), TuneError> {
        let (inputs, targets) = split(pairs);
        Ok(t5
            .loss_and_prompt_grad(&prompt.values, &inputs, &targets)
            .await?)
    }

    pub async fn loss<O: Ops>(
        t5: &T5Graph<O>,
        prompt: &SoftPrompt,
        pairs: &[&Pair],
    ) -> Result<f32, TuneError> {
        let (inputs, targets) = split(pairs);
        let enc = t5.encode(&prompt.values, &inputs)?;
        let n: usize = targets.iter().map(Vec::len).sum();
        let s: f32 = t5.score(&enc.memory, &targets).await?.iter().sum();
        Ok(-s / n.max(1) as f32)
    }

    pub async fn label_scores<O: Ops>(
        t5: &T5Graph<O>,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        labels: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, TuneError> {
        let mut out = vec![Vec::with_capacity(labels.len()); inputs.len()];
        let enc = t5.encode(values(prompt), inputs)?;
        for tokens in labels {
            let targets = vec![tokens.clone(); inputs.len()];
            keep(&mut out, t5.score(&enc.memory, &targets).await?);
        }
        Ok(out)
    }

    pub async fn generate<O: Ops>(
        t5: &T5Graph<O>,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, TuneError> {
        let enc = t5.encode(values(prompt), inputs)?;
        Ok(t5.generate(&enc.memory, max_new).await?)
    }

    pub async fn sample<O: Ops>(
        t5: &T5Graph<O>,
        prompt: Option<&SoftPrompt>,
        inputs: &[Vec<u32>],
        max_new: usize,
        sampler: &mut Sampler,
    ) -> Result<Vec<Vec<u32>>, TuneError> {
        let enc = t5.encode(values(prompt), inputs)?;
        let pick = |row: &[f32], seq: &[u32]| sampler.pick(row, seq);
        Ok(t5.generate_with(&enc.memory, max_new, pick).await?)
    }
}

/// The index of the highest score, the first of equals; a NaN or infinite score is an error
/// (label, value) rather than a silent vote for label 0, which a `>` scan past NaN would give.
pub fn best_label(row: &[f32]) -> Result<usize, (usize, f32)> {
    if let Some((i, &v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err((i, v));
    }
    Ok(crate::graph::host::argmax(row) as usize)
}

#[cfg(test)]
mod tests {
    use super::best_label;

    #[test]
    fn best_label_takes_the_first_of_equals_and_refuses_non_finite_scores() {
        assert_eq!(best_label(&[-3.0, -1.0, -1.0, -2.0]), Ok(1));
        assert_eq!(best_label(&[-1.0, f32::NAN, -0.5]).map_err(|e| e.0), Err(1));
        assert_eq!(
            best_label(&[f32::NEG_INFINITY, -2.0]).map_err(|e| e.0),
            Err(0)
        );
    }
}
