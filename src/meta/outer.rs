//! The outer (meta) gradient each algorithm takes from one episode, at the shared initialisation
//! `p0`. The inner loop is plain gradient descent on the whole support set (full batch, no
//! clipping), which is what MAML differentiates through.
//!
//! - MAML (Finn et al. 2017): d/dp0 L_query(p_k) = prod_t (I - a H_t) * g_query(p_k). The engines
//!   give first derivatives only, so each Hessian-vector product is a central finite difference
//!   of two gradients, H v = (g(p + r v) - g(p - r v)) / 2r with r = eps max(|p|, 1) / |v|:
//!   2 extra gradients per inner step, exact to O(eps^2).
//! - FoMAML: drop the Hessian terms, g_query(p_k).
//! - Reptile (Nichol et al. 2018): adapt on support and query together; the outer "gradient" is
//!   p0 - p_k, a step towards the adapted prompt.
//! - Multi-task (the paper's MTL baseline): no adaptation, the plain gradient on support + query.

use super::Algo;
use super::episode::Episode;
use crate::prompt::SoftPrompt;
use crate::prompt::engine::Engine;
use crate::prompt::tune::{Pair, TuneError};

/// What one episode contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGrad {
    pub grad: Vec<f32>,
    /// Query loss at `p0` and after adaptation (equal for multi-task).
    pub before: f32,
    pub after: f32,
}

fn finite(step: usize, what: &'static str, value: f32) -> Result<f32, TuneError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TuneError::NonFinite { step, what, value })
    }
}

/// Prompts p0, p1, ..., pk of `steps` full-batch gradient-descent steps on `data`.
pub async fn adapt(
    engine: Engine<'_>,
    p0: &SoftPrompt,
    data: &[Pair],
    steps: usize,
    lr: f32,
) -> Result<Vec<SoftPrompt>, TuneError> {
    let refs: Vec<&Pair> = data.iter().collect();
    let mut path = vec![p0.clone()];
    for step in 1..=steps {
        let p = path.last().expect("p0");
        let (l, g) = engine.loss_and_grad(p, &refs).await?;
        finite(step, "inner-loop loss", l)?;
        let mut next = p.clone();
        for (x, gx) in next.values.iter_mut().zip(&g) {
            *x -= lr * gx;
        }
        // RMS norm would hide an overflowing prompt from the loss: check the prompt itself.
        if let Some(&bad) = next.values.iter().find(|x| !x.is_finite()) {
            return Err(TuneError::NonFinite {
                step,
                what: "adapted prompt",
                value: bad,
            });
        }
        path.push(next);
    }
    Ok(path)
}

/// Hessian of the loss on `data` at `p`, times `v`, by a central difference of gradients. The
/// step is `eps` relative to the prompt's norm (at least 1): prompts built from T5's embeddings
/// have norms in the hundreds, where an absolute step would drown in float32 rounding.
pub async fn hessian_vector(
    engine: Engine<'_>,
    p: &SoftPrompt,
    data: &[&Pair],
    v: &[f32],
    eps: f32,
) -> Result<Vec<f32>, TuneError> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return Ok(vec![0.0; v.len()]);
    }
    let scale = p.values.iter().map(|x| x * x).sum::<f32>().sqrt().max(1.0);
    let r = eps * scale / norm;
    let shifted = |sign: f32| {
        let mut q = p.clone();
        q.values
            .iter_mut()
            .zip(v)
            .for_each(|(x, vx)| *x += sign * r * vx);
        q
    };
    let (_, plus) = engine.loss_and_grad(&shifted(1.0), data).await?;
    let (_, minus) = engine.loss_and_grad(&shifted(-1.0), data).await?;
    Ok(plus
        .iter()
        .zip(&minus)
        .map(|(a, b)| (a - b) / (2.0 * r))
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inner {
    pub steps: usize,
    pub lr: f32,
    /// Finite-difference radius of MAML's Hessian-vector products.
    pub fd_eps: f32,
}

/// The outer gradient of `algo` for one episode.
pub async fn task_grad(
    engine: Engine<'_>,
    algo: Algo,
    p0: &SoftPrompt,
    ep: &Episode,
    inner: Inner,
) -> Result<TaskGrad, TuneError> {
    let query: Vec<&Pair> = ep.query.iter().collect();
    match algo {
        Algo::MultiTask => {
            let both: Vec<&Pair> = ep.support.iter().chain(&ep.query).collect();
            let (l, g) = engine.loss_and_grad(p0, &both).await?;
            let l = finite(0, "multi-task loss", l)?;
            Ok(TaskGrad {
                grad: g,
                before: l,
                after: l,
            })
        }
        Algo::Reptile => {
            let before = engine.loss(p0, &query).await?;
            let both: Vec<Pair> = ep.support.iter().chain(&ep.query).cloned().collect();
            let path = adapt(engine, p0, &both, inner.steps, inner.lr).await?;
            let pk = path.last().expect("p0");
            let after = finite(inner.steps, "query loss", engine.loss(pk, &query).await?)?;
            Ok(TaskGrad {
                grad: p0
                    .values
                    .iter()
                    .zip(&pk.values)
                    .map(|(a, b)| a - b)
                    .collect(),
                before,
                after,
            })
        }
        Algo::FoMaml | Algo::Maml => {
            let before = engine.loss(p0, &query).await?;
            let path = adapt(engine, p0, &ep.support, inner.steps, inner.lr).await?;
            let (after, mut v) = engine
                .loss_and_grad(path.last().expect("p0"), &query)
                .await?;
            finite(inner.steps, "query loss", after)?;
            if algo == Algo::Maml {
                let support: Vec<&Pair> = ep.support.iter().collect();
                // Back through the inner steps: v <- (I - a H(p_t)) v, t = k-1 .. 0.
                for p in path[..inner.steps].iter().rev() {
                    let hv = hessian_vector(engine, p, &support, &v, inner.fd_eps).await?;
                    v.iter_mut().zip(&hv).for_each(|(x, h)| *x -= inner.lr * h);
                }
            }
            Ok(TaskGrad {
                grad: v,
                before,
                after,
            })
        }
    }
}
