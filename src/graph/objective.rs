//! One training batch with several loss parts, as the continual-learning methods mix them
//! (LFPT5: `(1 - k) * (L_task + lm * L_lm) + k * L_KD` over task, generator and pseudo rows): each
//! row belongs to a [`Part`], each part is a mean over its own target tokens, and the batch's
//! loss is the parts' weighted sum. One forward and one backward serve all parts.

use super::host::{Piece, injected_grad, padded_targets, prompt_grad, teacher_inputs};
use super::ops::Ops;
use super::t5::T5Graph;
use crate::kernels::{KernelError, check_len};

/// What a part's rows are scored against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Cross-entropy of the row's target tokens.
    Target,
    /// `T^2 * KL(teacher || student)` over the vocabulary at every target position, the
    /// teacher being the same model under [`Teacher::prompt`] (distillation).
    Distil,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Part {
    /// The part's coefficient in the batch's loss.
    pub weight: f32,
    pub loss: Loss,
}

/// One sequence of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub input: Vec<Piece>,
    /// Decoder targets, EOS included (teacher-forced).
    pub target: Vec<u32>,
    /// Index into [`Objective::parts`].
    pub part: usize,
    /// The row's weight inside its part's mean (1 unless a method rescales it: replay rows).
    pub weight: f32,
}

impl Row {
    pub fn new(tokens: &[u32], target: Vec<u32>, part: usize) -> Self {
        Self {
            input: Piece::tokens(tokens),
            target,
            part,
            weight: 1.0,
        }
    }
}

/// The distillation teacher: the same frozen model under another prompt (with the adapters
/// set on the model, if any); no gradient flows through it.
#[derive(Clone, Copy, Debug)]
pub struct Teacher<'a> {
    pub prompt: &'a [f32],
    pub temperature: f32,
}

#[derive(Clone, Copy, Debug)]
pub struct Objective<'a> {
    /// `[L, d]`, the trained prompt.
    pub prompt: &'a [f32],
    /// `[n, d]` vectors that [`Piece::Injected`] positions read.
    pub injected: &'a [f32],
    pub parts: &'a [Part],
    pub rows: &'a [Row],
    /// Needed when a part is [`Loss::Distil`].
    pub teacher: Option<Teacher<'a>>,
}

const SINGLE: [Part; 1] = [Part {
    weight: 1.0,
    loss: Loss::Target,
}];

impl<'a> Objective<'a> {
    /// Plain prompt tuning: one target part.
    pub fn single(prompt: &'a [f32], rows: &'a [Row]) -> Self {
        Self {
            prompt,
            injected: &[],
            parts: &SINGLE,
            rows,
            teacher: None,
        }
    }
}

/// The batch's loss, each part's own mean (before its weight), and the gradients of the loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    pub loss: f32,
    pub parts: Vec<f32>,
    /// `[L, d]`
    pub prompt: Vec<f32>,
    /// `[n, d]`, the injected vectors'.
    pub injected: Vec<f32>,
    /// The adapters', where the model has adapters ([`T5Graph::set_adapters`]).
    pub adapters: Option<super::Adapters>,
}

impl<O: Ops> T5Graph<O> {
    /// The loss of `batch` and its gradients with respect to the prompt and the injected vectors.
    pub async fn loss_and_grads(&self, batch: &Objective<'_>) -> Result<Gradients, KernelError> {
        let c = &self.config;
        let (o, d, v) = (&self.ops, c.d_model, c.vocab_size);
        let rows = batch.rows;
        if let Some((i, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.part >= batch.parts.len())
        {
            return Err(shape_error(
                "rows",
                batch.parts.len(),
                r.part,
                format!("row {i} names part {}", r.part),
            ));
        }
        let distils = batch.parts.iter().any(|p| p.loss == Loss::Distil);
        if distils && batch.teacher.is_none() {
            return Err(shape_error(
                "teacher",
                1,
                0,
                "a distillation part needs a teacher prompt".into(),
            ));
        }
        let inputs: Vec<Vec<Piece>> = rows.iter().map(|r| r.input.clone()).collect();
        let targets: Vec<Vec<u32>> = rows.iter().map(|r| r.target.clone()).collect();
        let dec_inputs = teacher_inputs(c, &targets);
        let e = self.encode_pieces(batch.prompt, &inputs, batch.injected, 0)?;
        let (logits, dec) = self.decode(&e.memory, &dec_inputs)?;
        let (b, s, t) = (e.memory.batch, e.memory.len, dec.len);
        let (ids, real) = padded_targets(c, &targets, t);
        // Per token: its part's weight times its row's, over the part's target tokens.
        let mut tokens = vec![0f32; batch.parts.len()];
        for r in rows {
            tokens[r.part] += r.target.len() as f32;
        }
        let (mut hard, mut soft) = (vec![0f32; ids.len()], vec![0f32; ids.len()]);
        for (i, r) in rows.iter().enumerate() {
            let p = batch.parts[r.part];
            let w = if tokens[r.part] > 0.0 {
                p.weight * r.weight / tokens[r.part]
            } else {
                0.0
            };
            let out = if p.loss == Loss::Distil {
                &mut soft
            } else {
                &mut hard
            };
            for j in 0..t {
                out[i * t + j] = w * real[i * t + j];
            }
        }
        let n = ids.len();
        let kd = match batch.teacher.filter(|_| distils) {
            Some(tch) => {
                check_len(
                    "teacher prompt",
                    tch.prompt.len() % d,
                    0,
                    format!("whole {d}-vectors"),
                )?;
                let te = self.encode_pieces(tch.prompt, &inputs, batch.injected, 0)?;
                let (tl, _) = self.decode(&te.memory, &dec_inputs)?;
                drop(te);
                let (wb, out) = (
                    o.upload("distil weights", &soft)?,
                    o.zeros("distil losses", n),
                );
                o.distill(&logits, &tl, &wb, &out, n, v, tch.temperature);
                Some((tl, out))
            }
            None => None,
        };
        let (idb, wb) = (o.upload_ids("targets", &ids)?, o.upload("weights", &hard)?);
        let ce = o.zeros("losses", n);
        o.loss_and_grad(&logits, &idb, &wb, &ce, n, v);
        if let Some((kd_grad, _)) = &kd {
            o.scale_add(&logits, 1.0, kd_grad, 1.0, n * v);
        }
        let d_states = self.decoder_backward(&e.memory, &dec, &logits);
        let dh = self.encoder_backward(&e, &d_states);
        let mut per_token = o.read(ce, n).await?;
        if let Some((_, out)) = kd {
            let kd = o.read(out, n).await?;
            per_token.iter_mut().zip(kd).for_each(|(a, b)| *a += b);
        }
        let dh = o.read(dh, b * s * d).await?;
        // Each part's mean before its weight: the weighted token losses summed, over the weight.
        let mut parts = vec![0f32; batch.parts.len()];
        for (i, r) in rows.iter().enumerate() {
            parts[r.part] += per_token[i * t..(i + 1) * t].iter().sum::<f32>();
        }
        let loss = parts.iter().sum();
        for (p, part) in parts.iter_mut().zip(batch.parts) {
            *p = if part.weight != 0.0 {
                *p / part.weight
            } else {
                0.0
            };
        }
        let l = e.prompt_len;
        let adapters = self.adapter_gradients().await?;
        Ok(Gradients {
            adapters,
            loss,
            parts,
            prompt: prompt_grad(&dh, b, s, l, d),
            injected: injected_grad(&dh, &inputs, s, l, d, batch.injected.len() / d),
        })
    }
}

fn shape_error(tensor: &'static str, expected: usize, got: usize, why: String) -> KernelError {
    KernelError::Shape {
        tensor,
        expected,
        got,
        why,
    }
}
