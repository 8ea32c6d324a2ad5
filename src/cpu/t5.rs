//! The frozen T5 with a hand-written forward pass that keeps what backward needs, and a backward
//! pass that computes activation gradients only: the model is frozen, so no weight gradient is
//! ever formed, the decoder's first self-attention (fed by fixed token embeddings) is skipped, and
//! the result is the gradient of the soft prompt. Each step is one of the reference ops beside
//! this file, the same boundaries the WGSL kernels have.

use super::attention::{self, Bias, Dims, Heads};
use super::gemm::{View, matmul, product};
use super::{cross_entropy, gated_gelu, rms_norm};
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use crate::model::config::T5Config;
use crate::model::t5::relative_position_bucket;

/// Query, key and value projections side by side (`[d, 3 * inner]`: one GEMM instead of three)
/// and the output projection `[inner, d]`.
struct SelfAttention {
    wqkv: Vec<f32>,
    wo: Vec<f32>,
}

struct CrossAttention {
    /// `[d, inner]`
    wq: Vec<f32>,
    /// `[d, 2 * inner]`, applied to the encoder states.
    wkv: Vec<f32>,
    wo: Vec<f32>,
}

/// `wi` is `[d, 2 * ff]`: gate (wi_0) and linear (wi_1) halves side by side; `wo` is `[ff, d]`.
struct FeedForward {
    wi: Vec<f32>,
    wo: Vec<f32>,
}

struct EncoderLayer {
    ln_attn: Vec<f32>,
    attn: SelfAttention,
    ln_ff: Vec<f32>,
    ff: FeedForward,
}

struct DecoderLayer {
    ln_self: Vec<f32>,
    self_attn: SelfAttention,
    ln_cross: Vec<f32>,
    cross: CrossAttention,
    ln_ff: Vec<f32>,
    ff: FeedForward,
}

/// flan-t5 on the CPU, weights dequantised to f32 and laid out `[in, out]`.
pub struct CpuT5 {
    pub config: T5Config,
    /// `[vocab, d]`
    shared: Vec<f32>,
    /// `[buckets, heads]` of block 0 of each stack.
    enc_position: Vec<f32>,
    dec_position: Vec<f32>,
    encoder: Vec<EncoderLayer>,
    enc_norm: Vec<f32>,
    decoder: Vec<DecoderLayer>,
    dec_norm: Vec<f32>,
    /// `[d, vocab]`
    lm_head: Vec<f32>,
}

/// PyTorch `[out, in]` weights -> one `[in, sum(out)]` matrix, the weights' columns side by side.
fn linear(ckpt: &Checkpoint, names: &[String], inp: usize) -> Result<Vec<f32>, CheckpointError> {
    let ws = names
        .iter()
        .map(|n| ckpt.f32(n))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = ws.iter().map(|w| w.len() / inp).sum();
    let mut t = vec![0f32; inp * total];
    let mut col = 0;
    for w in &ws {
        let out = w.len() / inp;
        for (o, row) in w.chunks_exact(inp).enumerate() {
            for (i, &x) in row.iter().enumerate() {
                t[i * total + col + o] = x;
            }
        }
        col += out;
    }
    Ok(t)
}

impl CpuT5 {
    pub fn from_checkpoint(ckpt: &Checkpoint, c: &T5Config) -> Result<Self, CheckpointError> {
        let d = c.d_model;
        let names = |p: &str, parts: &[&str]| -> Vec<String> {
            parts.iter().map(|s| format!("{p}.{s}.weight")).collect()
        };
        let self_attention = |p: &str| -> Result<SelfAttention, CheckpointError> {
            Ok(SelfAttention {
                wqkv: linear(ckpt, &names(p, &["q", "k", "v"]), d)?,
                wo: linear(ckpt, &names(p, &["o"]), c.inner_dim())?,
            })
        };
        let feed_forward = |p: &str| -> Result<FeedForward, CheckpointError> {
            Ok(FeedForward {
                wi: linear(ckpt, &names(p, &["wi_0", "wi_1"]), d)?,
                wo: linear(ckpt, &names(p, &["wo"]), c.d_ff)?,
            })
        };
        let encoder = (0..c.num_layers)
            .map(|i| {
                let b = format!("encoder.block.{i}");
                Ok(EncoderLayer {
                    ln_attn: ckpt.f32(&format!("{b}.layer.0.layer_norm.weight"))?,
                    attn: self_attention(&format!("{b}.layer.0.SelfAttention"))?,
                    ln_ff: ckpt.f32(&format!("{b}.layer.1.layer_norm.weight"))?,
                    ff: feed_forward(&format!("{b}.layer.1.DenseReluDense"))?,
                })
            })
            .collect::<Result<_, CheckpointError>>()?;
        let decoder = (0..c.num_decoder_layers)
            .map(|i| {
                let b = format!("decoder.block.{i}");
                let x = format!("{b}.layer.1.EncDecAttention");
                Ok(DecoderLayer {
                    ln_self: ckpt.f32(&format!("{b}.layer.0.layer_norm.weight"))?,
                    self_attn: self_attention(&format!("{b}.layer.0.SelfAttention"))?,
                    ln_cross: ckpt.f32(&format!("{b}.layer.1.layer_norm.weight"))?,
                    cross: CrossAttention {
                        wq: linear(ckpt, &names(&x, &["q"]), d)?,
                        wkv: linear(ckpt, &names(&x, &["k", "v"]), d)?,
                        wo: linear(ckpt, &names(&x, &["o"]), c.inner_dim())?,
                    },
                    ln_ff: ckpt.f32(&format!("{b}.layer.2.layer_norm.weight"))?,
                    ff: feed_forward(&format!("{b}.layer.2.DenseReluDense"))?,
                })
            })
            .collect::<Result<_, CheckpointError>>()?;
        let shared = ckpt.f32("shared.weight")?;
        let lm_head = if c.tie_word_embeddings {
            // Tied heads rescale by d_model^-0.5 (as Hugging Face does only when tied).
            let s = (d as f32).powf(-0.5);
            let mut t = vec![0f32; shared.len()];
            for (v, row) in shared.chunks_exact(d).enumerate() {
                for (i, &x) in row.iter().enumerate() {
                    t[i * c.vocab_size + v] = x * s;
                }
            }
            t
        } else {
            linear(ckpt, &["lm_head.weight".to_string()], d)?
        };
        let rel = |p: &str| ckpt.f32(&format!("{p}.relative_attention_bias.weight"));
        Ok(Self {
            config: c.clone(),
            shared,
            enc_position: rel("encoder.block.0.layer.0.SelfAttention")?,
            dec_position: rel("decoder.block.0.layer.0.SelfAttention")?,
            encoder,
            enc_norm: ckpt.f32("encoder.final_layer_norm.weight")?,
            decoder,
            dec_norm: ckpt.f32("decoder.final_layer_norm.weight")?,
            lm_head,
        })
    }

    fn eps(&self) -> f32 {
        self.config.layer_norm_epsilon
    }

    fn heads(&self, batch: usize, len: usize, stride: usize, col: usize) -> Heads {
        Heads {
            batch,
            len,
            heads: self.config.num_heads,
            d_kv: self.config.d_kv,
            stride,
            col,
        }
    }

    /// Encoder over `prompt` (`[L, d]` row-major, shared by the batch; may be empty) followed by
    /// each input's token embeddings, padded to the longest input.
    pub fn encode(&self, prompt: &[f32], inputs: &[Vec<u32>]) -> Encoded {
        let c = &self.config;
        let d = c.d_model;
        assert_eq!(
            prompt.len() % d,
            0,
            "prompt is not a whole number of {d}-vectors"
        );
        let (b, l) = (inputs.len(), prompt.len() / d);
        let (mut x, mask, s) = embed_inputs(c, &self.shared, prompt, inputs);
        let position = position_bias(c, &self.enc_position, s, s, true);
        let bias = Bias {
            position: Some(&position),
            key_mask: Some(&mask),
            causal: false,
        };
        let mut layers = Vec::with_capacity(self.encoder.len());
        for layer in &self.encoder {
            let (h, attn) = self.self_attention(x, &layer.ln_attn, &layer.attn, b, s, bias);
            let (h, ff) = self.feed_forward(h, &layer.ln_ff, &layer.ff);
            layers.push((attn, ff));
            x = h;
        }
        let (states, inv) = rms_norm::forward(&x, &self.enc_norm, self.eps());
        // Every decoder layer's cross-attention keys and values depend only on the encoder
        // states: computed once here, not again for every label scored or token generated.
        let inner = c.inner_dim();
        let cross = self
            .decoder
            .iter()
            .map(|layer| {
                let kv = product(
                    View::new(&states, b * s, d),
                    View::new(&layer.cross.wkv, d, 2 * inner),
                );
                (
                    attention::split_heads(&kv, self.heads(b, s, 2 * inner, 0)),
                    attention::split_heads(&kv, self.heads(b, s, 2 * inner, inner)),
                )
            })
            .collect();
        Encoded {
            batch: b,
            len: s,
            prompt_len: l,
            states,
            mask,
            cross,
            tape: EncoderTape {
                layers,
                last: x,
                inv,
            },
        }
    }

    /// Residual self-attention sub-layer: returns `x + attn(norm(x))` and its tape.
    fn self_attention(
        &self,
        x: Vec<f32>,
        ln: &[f32],
        w: &SelfAttention,
        b: usize,
        s: usize,
        bias: Bias,
    ) -> (Vec<f32>, AttentionTape) {
        let (d, inner) = (self.config.d_model, self.config.inner_dim());
        let (n, inv) = rms_norm::forward(&x, ln, self.eps());
        let qkv = product(View::new(&n, b * s, d), View::new(&w.wqkv, d, 3 * inner));
        let split = |col| attention::split_heads(&qkv, self.heads(b, s, 3 * inner, col));
        let (q, k, v) = (split(0), split(inner), split(2 * inner));
        let dims = self.dims(b, s, s);
        let a = attention::forward(&q, &k, &v, dims, bias);
        let mut ctx = vec![0f32; b * s * inner];
        attention::merge_heads(&a.out, &mut ctx, self.heads(b, s, inner, 0));
        let mut h = x.clone();
        matmul(
            &mut h,
            d,
            View::new(&ctx, b * s, inner),
            View::new(&w.wo, inner, d),
            true,
            true,
        );
        let tape = AttentionTape {
            x,
            inv,
            q,
            k,
            v,
            probs: a.probs,
            dims,
        };
        (h, tape)
    }

    fn dims(&self, batch: usize, q_len: usize, k_len: usize) -> Dims {
        Dims {
            batch,
            heads: self.config.num_heads,
            q_len,
            k_len,
            d_kv: self.config.d_kv,
        }
    }

    /// Residual gated-GELU feed-forward sub-layer.
    fn feed_forward(
        &self,
        x: Vec<f32>,
        ln: &[f32],
        w: &FeedForward,
    ) -> (Vec<f32>, FeedForwardTape) {
        let (d, ff) = (self.config.d_model, self.config.d_ff);
        let rows = x.len() / d;
        let (n, inv) = rms_norm::forward(&x, ln, self.eps());
        let gu = product(View::new(&n, rows, d), View::new(&w.wi, d, 2 * ff));
        let act = gated_gelu::forward(&gu, ff);
        let mut h = x.clone();
        matmul(
            &mut h,
            d,
            View::new(&act, rows, ff),
            View::new(&w.wo, ff, d),
            true,
            true,
        );
        (h, FeedForwardTape { x, inv, gu })
    }

    /// Decoder over `dec_inputs` (each starting with the start token; shorter ones padded),
    /// returning the `[B * T, vocab]` logits and the tape.
    fn decode(&self, enc: &Encoded, dec_inputs: &[Vec<u32>]) -> (Vec<f32>, DecoderTape) {
        let c = &self.config;
        let (d, inner) = (c.d_model, c.inner_dim());
        assert_eq!(
            dec_inputs.len(),
            enc.batch,
            "one decoder input per encoded input"
        );
        let (b, s) = (enc.batch, enc.len);
        let (mut x, _, t) = embed_inputs(c, &self.shared, &[], dec_inputs);
        let position = position_bias(c, &self.dec_position, t, t, false);
        // No padding mask on decoder self-attention: causality keeps padding after the target
        // out of every position that is scored.
        let self_bias = Bias {
            position: Some(&position),
            key_mask: None,
            causal: true,
        };
        let cross_bias = Bias {
            position: None,
            key_mask: Some(&enc.mask),
            causal: false,
        };
        let mut layers = Vec::with_capacity(self.decoder.len());
        for (i, layer) in self.decoder.iter().enumerate() {
            let (h, sa) = self.self_attention(x, &layer.ln_self, &layer.self_attn, b, t, self_bias);
            // Cross-attention: queries from the decoder, keys and values from the encoder.
            let (n, inv) = rms_norm::forward(&h, &layer.ln_cross, self.eps());
            let q = product(
                View::new(&n, b * t, d),
                View::new(&layer.cross.wq, d, inner),
            );
            let q = attention::split_heads(&q, self.heads(b, t, inner, 0));
            let (k, v) = &enc.cross[i];
            let dims = self.dims(b, t, s);
            let a = attention::forward(&q, k, v, dims, cross_bias);
            let mut ctx = vec![0f32; b * t * inner];
            attention::merge_heads(&a.out, &mut ctx, self.heads(b, t, inner, 0));
            let mut h2 = h.clone();
            matmul(
                &mut h2,
                d,
                View::new(&ctx, b * t, inner),
                View::new(&layer.cross.wo, inner, d),
                true,
                true,
            );
            let ca = CrossTape {
                x: h,
                inv,
                q,
                probs: a.probs,
                dims,
            };
            let (h3, ff) = self.feed_forward(h2, &layer.ln_ff, &layer.ff);
            layers.push(DecoderLayerTape { sa, ca, ff });
            x = h3;
        }
        let (n, inv) = rms_norm::forward(&x, &self.dec_norm, self.eps());
        let logits = product(
            View::new(&n, b * t, d),
            View::new(&self.lm_head, d, c.vocab_size),
        );
        (
            logits,
            DecoderTape {
                len: t,
                layers,
                last: x,
                inv,
            },
        )
    }

    /// Sum of log-probabilities of each `targets[b]` given encoded input `b`: rank
    /// classification scores.
    pub fn score(&self, enc: &Encoded, targets: &[Vec<u32>]) -> Vec<f32> {
        let c = &self.config;
        let (logits, tape) = self.decode(enc, &teacher_inputs(c, targets));
        let t = tape.len;
        let (ids, w) = padded_targets(c, targets, t);
        let lp = cross_entropy::target_log_probs(&logits, self.config.vocab_size, &ids);
        sequence_scores(&lp, &w, t, targets.len())
    }

    /// Greedy decoding of up to `max_new` tokens for every encoded input; stops at EOS, which is
    /// not returned. (No key/value cache: each step re-runs the decoder over the prefix.)
    pub fn generate(&self, enc: &Encoded, max_new: usize) -> Vec<Vec<u32>> {
        let mut g = Greedy::new(&self.config, enc.batch);
        for _ in 0..max_new {
            let (logits, tape) = self.decode(enc, &g.seqs);
            if g.push(&self.config, &logits, tape.len) {
                break;
            }
        }
        g.finish(&self.config)
    }

    /// Mean cross-entropy per target token, and its gradient with respect to the prompt
    /// (`[L, d]`, summed over the batch since every sequence shares the prompt).
    pub fn loss_and_prompt_grad(
        &self,
        prompt: &[f32],
        inputs: &[Vec<u32>],
        targets: &[Vec<u32>],
    ) -> (f32, Vec<f32>) {
        let c = &self.config;
        let (d, inner) = (c.d_model, c.inner_dim());
        let enc = self.encode(prompt, inputs);
        let (mut logits, dec) = self.decode(&enc, &teacher_inputs(c, targets));
        let (b, s, t) = (enc.batch, enc.len, dec.len);
        let (ids, mut w) = padded_targets(c, targets, t);
        let n_tokens = w.iter().sum::<f32>().max(1.0);
        w.iter_mut().for_each(|x| *x /= n_tokens);
        let loss = cross_entropy::loss_and_grad_in_place(&mut logits, c.vocab_size, &ids, &w);

        // Decoder, top down. `dh` is the gradient of the residual stream.
        let dn = product(
            View::new(&logits, b * t, c.vocab_size),
            View::new(&self.lm_head, d, c.vocab_size).t(),
        );
        let mut dh = vec![0f32; b * t * d];
        rms_norm::backward_add(&dec.last, &self.dec_norm, &dec.inv, &dn, &mut dh);
        let mut d_enc = vec![0f32; b * s * d];
        for (i, (layer, tape)) in self.decoder.iter().zip(&dec.layers).enumerate().rev() {
            self.feed_forward_backward(&tape.ff, &layer.ln_ff, &layer.ff, &mut dh);
            // Cross-attention: queries' gradient into the decoder stream, keys' and values' into
            // the encoder states.
            let ca = &tape.ca;
            let dctx = product(
                View::new(&dh, b * t, d),
                View::new(&layer.cross.wo, inner, d).t(),
            );
            let dout = attention::split_heads(&dctx, self.heads(b, t, inner, 0));
            let (k, v) = &enc.cross[i];
            let (dq, dk, dv) = attention::backward(&ca.q, k, v, &ca.probs, &dout, ca.dims);
            let mut dq_rows = vec![0f32; b * t * inner];
            attention::merge_heads(&dq, &mut dq_rows, self.heads(b, t, inner, 0));
            let mut dkv = vec![0f32; b * s * 2 * inner];
            attention::merge_heads(&dk, &mut dkv, self.heads(b, s, 2 * inner, 0));
            attention::merge_heads(&dv, &mut dkv, self.heads(b, s, 2 * inner, inner));
            matmul(
                &mut d_enc,
                d,
                View::new(&dkv, b * s, 2 * inner),
                View::new(&layer.cross.wkv, d, 2 * inner).t(),
                true,
                true,
            );
            let dn = product(
                View::new(&dq_rows, b * t, inner),
                View::new(&layer.cross.wq, d, inner).t(),
            );
            rms_norm::backward_add(&ca.x, &layer.ln_cross, &ca.inv, &dn, &mut dh);
            // Block 0's self-attention reads only the fixed decoder embeddings: nothing below it
            // depends on the prompt.
            if i > 0 {
                self.self_attention_backward(&tape.sa, &layer.ln_self, &layer.self_attn, &mut dh);
            }
        }

        // Encoder, top down from the states' gradient.
        let mut dh = vec![0f32; b * s * d];
        rms_norm::backward_add(
            &enc.tape.last,
            &self.enc_norm,
            &enc.tape.inv,
            &d_enc,
            &mut dh,
        );
        for (layer, (sa, fft)) in self.encoder.iter().zip(&enc.tape.layers).rev() {
            self.feed_forward_backward(fft, &layer.ln_ff, &layer.ff, &mut dh);
            self.self_attention_backward(sa, &layer.ln_attn, &layer.attn, &mut dh);
        }
        (loss, prompt_grad(&dh, b, s, enc.prompt_len, d))
    }

    fn feed_forward_backward(
        &self,
        tape: &FeedForwardTape,
        ln: &[f32],
        w: &FeedForward,
        dh: &mut [f32],
    ) {
        let (d, ff) = (self.config.d_model, self.config.d_ff);
        let rows = dh.len() / d;
        let dact = product(View::new(dh, rows, d), View::new(&w.wo, ff, d).t());
        let dgu = gated_gelu::backward(&tape.gu, &dact, ff);
        let dn = product(
            View::new(&dgu, rows, 2 * ff),
            View::new(&w.wi, d, 2 * ff).t(),
        );
        rms_norm::backward_add(&tape.x, ln, &tape.inv, &dn, dh);
    }

    fn self_attention_backward(
        &self,
        tape: &AttentionTape,
        ln: &[f32],
        w: &SelfAttention,
        dh: &mut [f32],
    ) {
        let (d, inner) = (self.config.d_model, self.config.inner_dim());
        let Dims {
            batch: b, q_len: s, ..
        } = tape.dims;
        let dctx = product(View::new(dh, b * s, d), View::new(&w.wo, inner, d).t());
        let dout = attention::split_heads(&dctx, self.heads(b, s, inner, 0));
        let (dq, dk, dv) =
            attention::backward(&tape.q, &tape.k, &tape.v, &tape.probs, &dout, tape.dims);
        let mut dqkv = vec![0f32; b * s * 3 * inner];
        for (part, col) in [(&dq, 0), (&dk, inner), (&dv, 2 * inner)] {
            attention::merge_heads(part, &mut dqkv, self.heads(b, s, 3 * inner, col));
        }
        let dn = product(
            View::new(&dqkv, b * s, 3 * inner),
            View::new(&w.wqkv, d, 3 * inner).t(),
        );
        rms_norm::backward_add(&tape.x, ln, &tape.inv, &dn, dh);
    }
}

/// `[H, q, k]` relative-position bias from a stack's `[buckets, H]` table.
pub(crate) fn position_bias(
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
pub(crate) fn embed_inputs(
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
pub(crate) fn teacher_inputs(c: &T5Config, targets: &[Vec<u32>]) -> Vec<Vec<u32>> {
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
pub(crate) fn padded_targets(c: &T5Config, targets: &[Vec<u32>], t: usize) -> (Vec<u32>, Vec<f32>) {
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
pub(crate) fn sequence_scores(lp: &[f32], w: &[f32], t: usize, n: usize) -> Vec<f32> {
    lp.chunks(t.max(1))
        .zip(w.chunks(t.max(1)))
        .map(|(l, w)| l.iter().zip(w).map(|(a, b)| a * b).sum())
        .take(n)
        .collect()
}

/// The prompt's gradient `[L, d]` from the encoder input's `dh` (`[b * s, d]`): its first `l`
/// rows of every sequence, summed over the batch since every sequence shares the prompt.
pub(crate) fn prompt_grad(dh: &[f32], b: usize, s: usize, l: usize, d: usize) -> Vec<f32> {
    let mut grad = vec![0f32; l * d];
    for bi in 0..b {
        let rows = &dh[bi * s * d..(bi * s + l) * d];
        grad.iter_mut().zip(rows).for_each(|(g, x)| *g += x);
    }
    grad
}

/// Greedy decoding state shared by both engines: the sequences so far (starting with the start
/// token), and which have produced EOS (padded from then on).
pub(crate) struct Greedy {
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
        for (bi, seq) in self.seqs.iter_mut().enumerate() {
            let next = argmax(&logits[(bi * t + t - 1) * v..(bi * t + t) * v]);
            self.done[bi] |= next == c.eos_token_id;
            seq.push(if self.done[bi] { c.pad_token_id } else { next });
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

/// What a residual attention sub-layer keeps for backward.
struct AttentionTape {
    /// The sub-layer's input (the residual stream) and its norm's `1 / rms`.
    x: Vec<f32>,
    inv: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    dims: Dims,
}

/// Cross-attention keeps its queries; keys and values stay in [`Encoded::cross`].
struct CrossTape {
    x: Vec<f32>,
    inv: Vec<f32>,
    q: Vec<f32>,
    probs: Vec<f32>,
    dims: Dims,
}

struct FeedForwardTape {
    x: Vec<f32>,
    inv: Vec<f32>,
    /// `[rows, 2 * ff]` pre-activation.
    gu: Vec<f32>,
}

struct EncoderTape {
    layers: Vec<(AttentionTape, FeedForwardTape)>,
    last: Vec<f32>,
    inv: Vec<f32>,
}

struct DecoderLayerTape {
    sa: AttentionTape,
    ca: CrossTape,
    ff: FeedForwardTape,
}

struct DecoderTape {
    len: usize,
    layers: Vec<DecoderLayerTape>,
    last: Vec<f32>,
    inv: Vec<f32>,
}

/// Encoder output with what backward needs.
pub struct Encoded {
    pub batch: usize,
    /// Prompt + longest input.
    pub len: usize,
    pub prompt_len: usize,
    /// `[batch * len, d]`
    pub states: Vec<f32>,
    /// `[batch, len]`, 1 at prompt and real tokens.
    pub mask: Vec<f32>,
    /// Per decoder layer, cross-attention keys and values `[B, H, len, dk]`.
    cross: Vec<(Vec<f32>, Vec<f32>)>,
    tape: EncoderTape,
}
