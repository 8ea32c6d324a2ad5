//! The host side of the graph, the same for every backend: token embeddings gathered from the
//! shared table, relative-position biases, teacher forcing, target padding, greedy decoding.

use crate::model::config::T5Config;
use crate::model::t5::relative_position_bucket;

/// `[H, q, k]` relative-position bias from a stack's `[buckets, H]` table.
pub fn position_bias(
    c: &T5Config,
    table: &[f32],
    q: usize,
    k: usize,
    bidirectional: bool,
) -> Vec<f32> {
    let h = c.num_heads;
    let mut out = vec![0f32; h * q * k];
    for i in 0..q {
        for j in 0..k {
            let bucket = relative_position_bucket(
                j as i64 - i as i64,
                bidirectional,
                c.relative_attention_num_buckets,
                c.relative_attention_max_distance,
            );
            for hi in 0..h {
                out[(hi * q + i) * k + j] = table[bucket * h + hi];
            }
        }
    }
    out
}

/// `prompt` (`[L, d]`, shared by the batch; may be empty) followed by each sequence's token
/// embeddings from `shared`, padded with the pad token to the longest: `([B * S, d], key mask
/// [B, S] with 1 at prompt and real tokens, S)`.
pub fn embed_inputs(
    c: &T5Config,
    shared: &[f32],
    prompt: &[f32],
    inputs: &[Vec<u32>],
) -> (Vec<f32>, Vec<f32>, usize) {
    let d = c.d_model;
    let (b, l) = (inputs.len(), prompt.len() / d);
    let s = l + inputs.iter().map(Vec::len).max().unwrap_or(0);
    let mut x = vec![0f32; b * s * d];
    let mut mask = vec![0f32; b * s];
    for (bi, ids) in inputs.iter().enumerate() {
        let rows = &mut x[bi * s * d..(bi + 1) * s * d];
        rows[..l * d].copy_from_slice(prompt);
        for j in 0..s - l {
            // Padding embeds the pad token (masked out of attention).
            let id = ids.get(j).copied().unwrap_or(c.pad_token_id) as usize;
            rows[(l + j) * d..(l + j + 1) * d].copy_from_slice(&shared[id * d..(id + 1) * d]);
        }
        mask[bi * s..bi * s + l + ids.len()].fill(1.0);
    }
    (x, mask, s)
}

/// Teacher forcing: the decoder reads the start token and the target shifted right.
pub fn teacher_inputs(c: &T5Config, targets: &[Vec<u32>]) -> Vec<Vec<u32>> {
    targets
        .iter()
        .map(|t| {
            std::iter::once(c.decoder_start_token_id)
                .chain(t[..t.len().saturating_sub(1)].iter().copied())
                .collect()
        })
        .collect()
}

/// Padded target ids `[B * T]` and 1/0 weights at real target tokens.
pub fn padded_targets(c: &T5Config, targets: &[Vec<u32>], t: usize) -> (Vec<u32>, Vec<f32>) {
    let mut ids = vec![c.pad_token_id; targets.len() * t];
    let mut w = vec![0f32; targets.len() * t];
    for (bi, tgt) in targets.iter().enumerate() {
        ids[bi * t..bi * t + tgt.len()].copy_from_slice(tgt);
        w[bi * t..bi * t + tgt.len()].fill(1.0);
    }
    (ids, w)
}

/// Rank-classification scores: each sequence's target log-probabilities `lp` (`[n * t]`) summed
/// over its real tokens (weights `w`, 1 or 0).
pub fn sequence_scores(lp: &[f32], w: &[f32], t: usize, n: usize) -> Vec<f32> {
    lp.chunks(t.max(1))
        .zip(w.chunks(t.max(1)))
        .map(|(l, w)| l.iter().zip(w).map(|(a, b)| a * b).sum())
        .take(n)
        .collect()
}

/// The prompt's gradient `[L, d]` from the encoder input's `dh` (`[b * s, d]`): its first `l`
/// rows of every sequence, summed over the batch since every sequence shares the prompt.
pub fn prompt_grad(dh: &[f32], b: usize, s: usize, l: usize, d: usize) -> Vec<f32> {
    let mut grad = vec![0f32; l * d];
    for bi in 0..b {
        let rows = &dh[bi * s * d..(bi * s + l) * d];
        grad.iter_mut().zip(rows).for_each(|(g, x)| *g += x);
    }
    grad
}

/// Greedy decoding state shared by every engine (our graph and burn's model): the sequences so
/// far (starting with the start token), and which have produced EOS (padded from then on).
pub struct Greedy {
    pub seqs: Vec<Vec<u32>>,
    done: Vec<bool>,
}

impl Greedy {
    pub fn new(c: &T5Config, batch: usize) -> Self {
        Self {
            seqs: vec![vec![c.decoder_start_token_id]; batch],
            done: vec![false; batch],
        }
    }

    /// Appends each sequence's most likely next token from the decoder's `[batch * t, vocab]`
    /// logits; true once every sequence is done.
    pub fn push(&mut self, c: &T5Config, logits: &[f32], t: usize) -> bool {
        let v = c.vocab_size;
        let next: Vec<u32> = (0..self.seqs.len())
            .map(|bi| argmax(&logits[(bi * t + t - 1) * v..(bi * t + t) * v]))
            .collect();
        self.push_tokens(c, &next)
    }

    /// Appends each sequence's chosen next token; true once every sequence is done.
    pub fn push_tokens(&mut self, c: &T5Config, next: &[u32]) -> bool {
        for ((seq, done), &next) in self.seqs.iter_mut().zip(&mut self.done).zip(next) {
            *done |= next == c.eos_token_id;
            seq.push(if *done { c.pad_token_id } else { next });
        }
        self.done.iter().all(|&x| x)
    }

    /// The generated tokens, without the start token and the closing EOS.
    pub fn finish(self, c: &T5Config) -> Vec<Vec<u32>> {
        self.seqs
            .into_iter()
            .map(|s| {
                s[1..]
                    .iter()
                    .copied()
                    .take_while(|&t| t != c.pad_token_id)
                    .collect()
            })
            .collect()
    }
}

/// Index of the largest value (greedy decoding).
fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &x)| if x > m.1 { (i, x) } else { m },
        )
        .0 as u32
}
