//! The host side of the graph, the same for every backend: token embeddings gathered from the
//! shared table, relative-position biases, teacher forcing, target padding, greedy decoding.

use crate::kernels::KernelError;
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

/// One encoder input position: a token of the vocabulary, or row `i` of the vectors injected
/// with the batch (SUPMER gives cluster centroids as option tokens this way).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Piece {
    Token(u32),
    Injected(usize),
}

impl Piece {
    /// A sequence of tokens only.
    pub fn tokens(ids: &[u32]) -> Vec<Piece> {
        ids.iter().map(|&t| Piece::Token(t)).collect()
    }
}

/// `prompt` (`[L, d]`, shared by the batch; may be empty) followed by each sequence's token
/// embeddings from `shared`, padded with the pad token to the longest: `([B * S, d], key mask
/// [B, S] with 1 at prompt and real tokens, S)`.
pub fn embed_inputs(
    c: &T5Config,
    shared: &[f32],
    prompt: &[f32],
    inputs: &[Vec<u32>],
) -> Result<(Vec<f32>, Vec<f32>, usize), KernelError> {
    let pieces: Vec<Vec<Piece>> = inputs.iter().map(|ids| Piece::tokens(ids)).collect();
    embed_pieces(c, shared, prompt, &pieces, &[], 0)
}

/// [`embed_inputs`] over tokens and rows of `injected` (`[n, d]`), padded to at least `min_len`
/// input positions. A token outside the vocabulary or a row past `injected` is an error naming
/// the sequence and the position.
pub fn embed_pieces(
    c: &T5Config,
    shared: &[f32],
    prompt: &[f32],
    inputs: &[Vec<Piece>],
    injected: &[f32],
    min_len: usize,
) -> Result<(Vec<f32>, Vec<f32>, usize), KernelError> {
    let d = c.d_model;
    let (b, l) = (inputs.len(), prompt.len() / d);
    let s = l + inputs.iter().map(Vec::len).max().unwrap_or(0).max(min_len);
    let n_injected = injected.len() / d;
    let mut x = vec![0f32; b * s * d];
    let mut mask = vec![0f32; b * s];
    for (bi, seq) in inputs.iter().enumerate() {
        let rows = &mut x[bi * s * d..(bi + 1) * s * d];
        rows[..l * d].copy_from_slice(prompt);
        for j in 0..s - l {
            // Padding embeds the pad token (masked out of attention).
            let piece = seq.get(j).copied().unwrap_or(Piece::Token(c.pad_token_id));
            let (table, i, n, what) = match piece {
                Piece::Token(t) => (shared, t as usize, c.vocab_size, "token"),
                Piece::Injected(i) => (injected, i, n_injected, "injected vector"),
            };
            if i >= n {
                return Err(KernelError::Shape {
                    tensor: "encoder input",
                    expected: n,
                    got: i,
                    why: format!("sequence {bi}, position {j}: {what} {i} of {n}"),
                });
            }
            rows[(l + j) * d..(l + j + 1) * d].copy_from_slice(&table[i * d..(i + 1) * d]);
        }
        mask[bi * s..bi * s + l + seq.len()].fill(1.0);
    }
    Ok((x, mask, s))
}

/// The injected vectors' gradient `[n, d]` from the encoder input's `dh` (`[b * s, d]`): every
/// position that reads row `i` adds its gradient to row `i`.
pub fn injected_grad(
    dh: &[f32],
    inputs: &[Vec<Piece>],
    s: usize,
    l: usize,
    d: usize,
    n: usize,
) -> Vec<f32> {
    let mut grad = vec![0f32; n * d];
    for (bi, seq) in inputs.iter().enumerate() {
        for (j, piece) in seq.iter().enumerate() {
            if let Piece::Injected(i) = *piece {
                let at = (bi * s + l + j) * d;
                grad[i * d..(i + 1) * d]
                    .iter_mut()
                    .zip(&dh[at..at + d])
                    .for_each(|(g, x)| *g += x);
            }
        }
    }
    grad
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

/// Decoding state shared by every engine (our graph and burn's model) and every way of picking
/// the next token: the sequences so far (starting with the start token), and which have
/// produced EOS (padded from then on).
pub struct Decoding {
    pub seqs: Vec<Vec<u32>>,
    done: Vec<bool>,
}

impl Decoding {
    pub fn new(c: &T5Config, batch: usize) -> Self {
        Self {
            seqs: vec![vec![c.decoder_start_token_id]; batch],
            done: vec![false; batch],
        }
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

/// Index of the largest value (greedy decoding); the first of equals.
pub fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &x)| if x > m.1 { (i, x) } else { m },
        )
        .0 as u32
}
