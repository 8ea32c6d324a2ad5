//! flan-t5, written once over [`Ops`]: the forward pass keeps what backward needs, and backward
//! computes activation gradients only (the model is frozen, so no weight gradient is formed).
//! The parts, top down: [`T5Graph::decoder_backward`] takes the logits' gradient to the encoder
//! states, [`T5Graph::encoder_backward`] takes the states' gradient to the encoder's input
//! embeddings, whose prompt rows are the soft prompt's gradient.

use super::adapters::{AdapterTape, Adapters, DeviceAdapters, Sublayer};
use super::host::{
    Decoding, Piece, argmax, embed_inputs, embed_pieces, padded_targets, position_bias,
    sequence_scores, teacher_inputs,
};
use super::objective::{Objective, Row};
use super::ops::{Bias, KeyValues, LoadError, Mat, Ops};
use crate::cpu::attention::Dims;
use crate::kernels::{KernelError, check_len};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::T5Config;
use crate::model::names::{Block, LM_HEAD, SHARED, Stack, weight};
use std::cell::RefCell;

/// Query, key and value projections side by side (`[d, 3 * inner]`: one product instead of
/// three) and the output projection `[inner, d]`.
struct SelfAttention<O: Ops> {
    wqkv: O::Weight,
    wo: O::Weight,
}

struct CrossAttention<O: Ops> {
    /// `[d, inner]`
    wq: O::Weight,
    /// `[d, 2 * inner]`, applied to the encoder states.
    wkv: O::Weight,
    wo: O::Weight,
}

/// `wi` is `[d, 2 * ff]`: gate (wi_0) and linear (wi_1) halves side by side; `wo` is `[ff, d]`.
struct FeedForward<O: Ops> {
    wi: O::Weight,
    wo: O::Weight,
}

struct EncoderLayer<O: Ops> {
    ln_attn: O::Buf,
    attn: SelfAttention<O>,
    ln_ff: O::Buf,
    ff: FeedForward<O>,
}

struct DecoderLayer<O: Ops> {
    ln_self: O::Buf,
    self_attn: SelfAttention<O>,
    ln_cross: O::Buf,
    cross: CrossAttention<O>,
    ln_ff: O::Buf,
    ff: FeedForward<O>,
}

/// The frozen T5 on one backend.
pub struct T5Graph<O: Ops> {
    pub config: T5Config,
    pub ops: O,
    /// `[vocab, d]`, on the host: inputs are gathered there and uploaded (a few hundred KB per
    /// step), which keeps the 16 MB table out of the step.
    shared: Vec<f32>,
    /// `[buckets, heads]` of block 0 of each stack.
    enc_position: Vec<f32>,
    dec_position: Vec<f32>,
    encoder: Vec<EncoderLayer<O>>,
    enc_norm: O::Buf,
    decoder: Vec<DecoderLayer<O>>,
    dec_norm: O::Buf,
    /// `[d, vocab]`
    lm_head: O::Weight,
    /// Trainable modules inside the layers ([`T5Graph::set_adapters`]); none by default.
    adapters: RefCell<Option<DeviceAdapters<O>>>,
}

/// What a residual attention sub-layer keeps for backward.
struct AttentionTape<O: Ops> {
    /// The sub-layer's input (the residual stream).
    x: O::Buf,
    /// Fused `[rows, 3 * inner]` projections (self-attention) or `[rows, inner]` queries (cross).
    q: O::Buf,
    probs: O::Buf,
    dims: Dims,
    adapter: Option<AdapterTape<O>>,
}

struct FeedForwardTape<O: Ops> {
    rows: usize,
    x: O::Buf,
    /// `[rows, 2 * ff]` pre-activation.
    gu: O::Buf,
    adapter: Option<AdapterTape<O>>,
}

/// What the decoder reads of an encoding: the states, their key mask and every decoder layer's
/// cross-attention keys and values. Built by [`T5Graph::encode`], or by [`T5Graph::memory`] from
/// states formed otherwise (mixed, as SUPMER's task augmentation does).
pub struct Memory<O: Ops> {
    pub batch: usize,
    /// Prompt + longest input.
    pub len: usize,
    /// `[batch * len, d]`
    pub states: O::Buf,
    /// `[batch, len]`, 1 at prompt and real tokens; `mask` holds it on the device.
    pub key_mask: Vec<f32>,
    pub mask: O::Buf,
    /// Per decoder layer, cross-attention keys and values `[batch * len, 2 * inner]`.
    cross: Vec<O::Buf>,
}

/// Encoder output with what backward needs.
pub struct Encoded<O: Ops> {
    pub memory: Memory<O>,
    pub prompt_len: usize,
    layers: Vec<(AttentionTape<O>, FeedForwardTape<O>)>,
    /// The residual stream before the final norm.
    last: O::Buf,
}

/// What incremental decoding keeps between steps: per decoder layer, the fused q/k/v of every
/// position so far (`[B, max_len, 3 * inner]`), and the self-attention position bias
/// `[H, max_len, max_len]` on the host.
pub struct DecoderCache<O: Ops> {
    pub max_len: usize,
    layers: Vec<O::Buf>,
    position: Vec<f32>,
}

/// The decoder's logits' inputs for backward.
pub struct DecoderTape<O: Ops> {
    /// Decoder length (start token + longest target but its last token).
    pub len: usize,
    layers: Vec<(AttentionTape<O>, AttentionTape<O>, FeedForwardTape<O>)>,
    last: O::Buf,
}

impl<O: Ops> T5Graph<O> {
    pub fn load(ops: O, ckpt: &Checkpoint, c: &T5Config) -> Result<Self, LoadError> {
        let (d, inner) = (c.d_model, c.inner_dim());
        let linear = |module: &str, parts: &[&str], inp: usize| {
            let names: Vec<String> = parts.iter().map(|p| weight(module, p)).collect();
            ops.weight(ckpt, &names, inp, 1.0)
        };
        let norm = |name: String| -> Result<O::Buf, LoadError> {
            Ok(ops.upload("layer_norm", &ckpt.f32(&name)?)?)
        };
        let self_attention = |b: Block| -> Result<SelfAttention<O>, LoadError> {
            let m = b.self_attention();
            Ok(SelfAttention {
                wqkv: linear(&m, &["q", "k", "v"], d)?,
                wo: linear(&m, &["o"], inner)?,
            })
        };
        let feed_forward = |b: Block| -> Result<FeedForward<O>, LoadError> {
            let m = b.feed_forward();
            Ok(FeedForward {
                wi: linear(&m, &["wi_0", "wi_1"], d)?,
                wo: linear(&m, &["wo"], c.d_ff)?,
            })
        };
        let encoder = (0..c.num_layers)
            .map(|i| {
                let b = Block::new(Stack::Encoder, i);
                Ok(EncoderLayer {
                    ln_attn: norm(b.self_norm())?,
                    attn: self_attention(b)?,
                    ln_ff: norm(b.ff_norm())?,
                    ff: feed_forward(b)?,
                })
            })
            .collect::<Result<_, LoadError>>()?;
        let decoder = (0..c.num_decoder_layers)
            .map(|i| {
                let b = Block::new(Stack::Decoder, i);
                let x = b.cross_attention();
                Ok(DecoderLayer {
                    ln_self: norm(b.self_norm())?,
                    self_attn: self_attention(b)?,
                    ln_cross: norm(b.cross_norm())?,
                    cross: CrossAttention {
                        wq: linear(&x, &["q"], d)?,
                        wkv: linear(&x, &["k", "v"], d)?,
                        wo: linear(&x, &["o"], inner)?,
                    },
                    ln_ff: norm(b.ff_norm())?,
                    ff: feed_forward(b)?,
                })
            })
            .collect::<Result<_, LoadError>>()?;
        // Tied heads rescale by d_model^-0.5 (as Hugging Face does only when tied).
        let lm_head = if c.tie_word_embeddings {
            ops.weight(ckpt, &[SHARED.into()], d, (d as f32).powf(-0.5))?
        } else {
            ops.weight(ckpt, &[LM_HEAD.into()], d, 1.0)?
        };
        let (enc_norm, dec_norm) = (
            norm(Stack::Encoder.final_norm())?,
            norm(Stack::Decoder.final_norm())?,
        );
        Ok(Self {
            config: c.clone(),
            shared: ckpt.f32(SHARED)?,
            enc_position: ckpt.f32(&Stack::Encoder.relative_bias())?,
            dec_position: ckpt.f32(&Stack::Decoder.relative_bias())?,
            encoder,
            enc_norm,
            decoder,
            dec_norm,
            lm_head,
            ops,
            adapters: RefCell::new(None),
        })
    }

    fn eps(&self) -> f32 {
        self.config.layer_norm_epsilon
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

    /// Encoder over `prompt` (`[L, d]` row-major, shared by the batch; may be empty) followed by
    /// each input's token embeddings, padded to the longest input.
    pub fn encode(&self, prompt: &[f32], inputs: &[Vec<u32>]) -> Result<Encoded<O>, KernelError> {
        let pieces: Vec<Vec<Piece>> = inputs.iter().map(|ids| Piece::tokens(ids)).collect();
        self.encode_pieces(prompt, &pieces, &[], 0)
    }

    /// [`Self::encode`] over inputs of tokens and `injected` vectors (`[n, d]`, e.g. cluster
    /// centroids given as option tokens), padded to at least `min_len` input positions (so that
    /// two batches' states line up for mixing).
    pub fn encode_pieces(
        &self,
        prompt: &[f32],
        inputs: &[Vec<Piece>],
        injected: &[f32],
        min_len: usize,
    ) -> Result<Encoded<O>, KernelError> {
        let c = &self.config;
        let (o, d) = (&self.ops, c.d_model);
        check_len("prompt", prompt.len() % d, 0, format!("whole {d}-vectors"))?;
        let (b, l) = (inputs.len(), prompt.len() / d);
        let (x, key_mask, s) = embed_pieces(c, &self.shared, prompt, inputs, injected, min_len)?;
        let mut x = o.upload("encoder input", &x)?;
        let mask = o.upload("key mask", &key_mask)?;
        let position = position_bias(c, &self.enc_position, s, s, true);
        let position = o.upload("position bias", &position)?;
        let bias = Bias {
            position: Some(&position),
            key_mask: Some(&mask),
            causal: false,
        };
        let mut layers = Vec::with_capacity(self.encoder.len());
        for (i, layer) in self.encoder.iter().enumerate() {
            let site = |sub| Adapters::site(c, false, i, sub);
            let sa_site = site(Sublayer::SelfAttention);
            let (h, sa) = self.self_attention(x, &layer.ln_attn, &layer.attn, b, s, bias, sa_site);
            let ff_site = site(Sublayer::FeedForward);
            let (h, ff) = self.feed_forward(h, &layer.ln_ff, &layer.ff, b * s, ff_site);
            layers.push((sa, ff));
            x = h;
            o.flush();
        }
        let states = o.zeros("encoder states", b * s * d);
        o.rms_norm(&x, &self.enc_norm, &states, b * s, d, self.eps());
        Ok(Encoded {
            memory: self.memory_with_mask(b, s, states, key_mask, mask),
            prompt_len: l,
            layers,
            last: x,
        })
    }

    /// The decoder's view of encoder `states` (`[batch * len, d]`) under `key_mask`
    /// (`[batch, len]`).
    pub fn memory(
        &self,
        batch: usize,
        len: usize,
        states: O::Buf,
        key_mask: Vec<f32>,
    ) -> Result<Memory<O>, KernelError> {
        check_len("key mask", key_mask.len(), batch * len, "[batch, len]")?;
        let mask = self.ops.upload("key mask", &key_mask)?;
        Ok(self.memory_with_mask(batch, len, states, key_mask, mask))
    }

    fn memory_with_mask(
        &self,
        batch: usize,
        len: usize,
        states: O::Buf,
        key_mask: Vec<f32>,
        mask: O::Buf,
    ) -> Memory<O> {
        let (o, d, inner) = (&self.ops, self.config.d_model, self.config.inner_dim());
        let rows = batch * len;
        // Every decoder layer's cross-attention keys and values depend only on the encoder
        // states: computed once here, not again for every label scored or token generated.
        let cross = self
            .decoder
            .iter()
            .map(|layer| {
                let kv = o.zeros("cross kv", rows * 2 * inner);
                let (a, c) = (Mat::new(&states, d), Mat::new(&kv, 2 * inner));
                o.matmul(a, rows, &layer.cross.wkv, false, c, false);
                kv
            })
            .collect();
        o.flush();
        Memory {
            batch,
            len,
            states,
            key_mask,
            mask,
            cross,
        }
    }

    /// `a * x` as a new buffer of `len` floats.
    pub fn scaled(&self, x: &O::Buf, a: f32, len: usize) -> O::Buf {
        let y = self.ops.zeros("scaled", len);
        self.ops.scale_add(&y, 0.0, x, a, len);
        y
    }

    /// The states `la * a + lb * b` of two encodings of one shape, under the union of their key
    /// masks (SUPMER's task mixup).
    pub fn mix(
        &self,
        a: &Memory<O>,
        la: f32,
        b: &Memory<O>,
        lb: f32,
    ) -> Result<Memory<O>, KernelError> {
        let d = self.config.d_model;
        check_len(
            "mixed states",
            b.batch * b.len,
            a.batch * a.len,
            "the same [batch, len]",
        )?;
        let n = a.batch * a.len * d;
        let states = self.scaled(&a.states, la, n);
        self.ops.scale_add(&states, 1.0, &b.states, lb, n);
        let mask = a.key_mask.iter().zip(&b.key_mask).map(|(x, y)| x.max(*y));
        self.memory(a.batch, a.len, states, mask.collect())
    }

    /// Each input's encoder states at `positions[i]` (indices into input i's tokens, after the
    /// prompt), concatenated: `[inputs][positions[i].len() * d]`. The decoder does not run (ERDA's
    /// relation encoder pools the states at the entity markers).
    pub async fn pooled_states(
        &self,
        prompt: &[f32],
        inputs: &[Vec<u32>],
        positions: &[Vec<usize>],
    ) -> Result<Vec<Vec<f32>>, KernelError> {
        let d = self.config.d_model;
        check_len(
            "positions",
            positions.len(),
            inputs.len(),
            "one list per input",
        )?;
        for (i, (ids, at)) in inputs.iter().zip(positions).enumerate() {
            if let Some(&p) = at.iter().find(|&&p| p >= ids.len()) {
                return Err(KernelError::Shape {
                    tensor: "positions",
                    expected: ids.len(),
                    got: p,
                    why: format!(
                        "input {i} has {} tokens; position {p} is past its end",
                        ids.len()
                    ),
                });
            }
        }
        let e = self.encode(prompt, inputs)?;
        let (s, l) = (e.memory.len, e.prompt_len);
        let states = self.ops.read(e.memory.states, inputs.len() * s * d).await?;
        Ok(positions
            .iter()
            .enumerate()
            .map(|(i, at)| {
                at.iter()
                    .flat_map(|&p| &states[(i * s + l + p) * d..(i * s + l + p + 1) * d])
                    .copied()
                    .collect()
            })
            .collect())
    }

    /// Residual self-attention sub-layer: returns `x + attn(norm(x))` and its tape.
    #[allow(clippy::too_many_arguments)]
    fn self_attention(
        &self,
        x: O::Buf,
        ln: &O::Buf,
        w: &SelfAttention<O>,
        b: usize,
        s: usize,
        bias: Bias<O::Buf>,
        site: usize,
    ) -> (O::Buf, AttentionTape<O>) {
        let (o, d, inner) = (&self.ops, self.config.d_model, self.config.inner_dim());
        let n = o.zeros("normed", b * s * d);
        o.rms_norm(&x, ln, &n, b * s, d, self.eps());
        let qkv = o.zeros("qkv", b * s * 3 * inner);
        o.matmul(
            Mat::new(&n, d),
            b * s,
            &w.wqkv,
            false,
            Mat::new(&qkv, 3 * inner),
            false,
        );
        let dims = self.dims(b, s, s);
        let probs = o.zeros("probs", b * dims.heads * s * s);
        let ctx = o.zeros("context", b * s * inner);
        let kv = KeyValues {
            buf: &qkv,
            stride: 3 * inner,
            k_col: inner,
            v_col: 2 * inner,
        };
        let q = Mat::new(&qkv, 3 * inner);
        o.attention(dims, q, kv, bias, &probs, Mat::new(&ctx, inner));
        let (h, adapter) = self.project_out(&x, Mat::new(&ctx, inner), b * s, &w.wo, site);
        let tape = AttentionTape {
            x,
            q: qkv,
            probs,
            dims,
            adapter,
        };
        (h, tape)
    }

    /// Residual cross-attention sub-layer: queries from the decoder stream `x` (`b * t` rows),
    /// keys and values `kv` from the encoder (`s` per sequence).
    #[allow(clippy::too_many_arguments)]
    fn cross_attention(
        &self,
        x: O::Buf,
        ln: &O::Buf,
        w: &CrossAttention<O>,
        kv: &O::Buf,
        (b, t, s): (usize, usize, usize),
        bias: Bias<O::Buf>,
    ) -> (O::Buf, AttentionTape<O>) {
        let (o, d, inner) = (&self.ops, self.config.d_model, self.config.inner_dim());
        let n = o.zeros("normed", b * t * d);
        o.rms_norm(&x, ln, &n, b * t, d, self.eps());
        let q = o.zeros("cross q", b * t * inner);
        o.matmul(
            Mat::new(&n, d),
            b * t,
            &w.wq,
            false,
            Mat::new(&q, inner),
            false,
        );
        let dims = self.dims(b, t, s);
        let probs = o.zeros("probs", b * dims.heads * t * s);
        let ctx = o.zeros("context", b * t * inner);
        let kvs = cross_kv(kv, inner);
        o.attention(
            dims,
            Mat::new(&q, inner),
            kvs,
            bias,
            &probs,
            Mat::new(&ctx, inner),
        );
        let h = o.copy(&x, b * t * d);
        o.matmul(
            Mat::new(&ctx, inner),
            b * t,
            &w.wo,
            false,
            Mat::new(&h, d),
            true,
        );
        let tape = AttentionTape {
            x,
            q,
            probs,
            dims,
            adapter: None,
        };
        (h, tape)
    }

    /// Residual gated-GELU feed-forward sub-layer over `rows` rows.
    fn feed_forward(
        &self,
        x: O::Buf,
        ln: &O::Buf,
        w: &FeedForward<O>,
        rows: usize,
        site: usize,
    ) -> (O::Buf, FeedForwardTape<O>) {
        let (o, d, ff) = (&self.ops, self.config.d_model, self.config.d_ff);
        let n = o.zeros("normed", rows * d);
        o.rms_norm(&x, ln, &n, rows, d, self.eps());
        let gu = o.zeros("gate and linear", rows * 2 * ff);
        o.matmul(
            Mat::new(&n, d),
            rows,
            &w.wi,
            false,
            Mat::new(&gu, 2 * ff),
            false,
        );
        let act = o.zeros("activation", rows * ff);
        o.gated_gelu(&gu, &act, rows, ff);
        let (h, adapter) = self.project_out(&x, Mat::new(&act, ff), rows, &w.wo, site);
        let tape = FeedForwardTape {
            rows,
            x,
            gu,
            adapter,
        };
        (h, tape)
    }

    /// `x + a W` (a sub-layer's output projection into the residual stream), plus the adapters
    /// at `site` applied to `a W` where there are any.
    fn project_out(
        &self,
        x: &O::Buf,
        a: Mat<O::Buf>,
        rows: usize,
        w: &O::Weight,
        site: usize,
    ) -> (O::Buf, Option<AdapterTape<O>>) {
        let (o, d) = (&self.ops, self.config.d_model);
        let h = o.copy(x, rows * d);
        let adapters = self.adapters.borrow();
        match adapters.as_ref().filter(|ad| ad.has(site)) {
            Some(ad) => {
                let f = o.zeros("sub-layer output", rows * d);
                o.matmul(a, rows, w, false, Mat::new(&f, d), false);
                o.scale_add(&h, 1.0, &f, 1.0, rows * d);
                let tape = ad.forward(o, site, f, &h, rows);
                (h, Some(tape))
            }
            None => {
                o.matmul(a, rows, w, false, Mat::new(&h, d), true);
                (h, None)
            }
        }
    }

    /// The adapters' backward at a sub-layer (their gradients into their buffers) and, with
    /// `input_grad`, the gradient at the sub-layer's output projection: `None` where there are
    /// no adapters (then it is `dh`).
    fn adapter_backward(
        &self,
        tape: &Option<AdapterTape<O>>,
        dh: &O::Buf,
        rows: usize,
        input_grad: bool,
    ) -> Option<O::Buf> {
        let adapters = self.adapters.borrow();
        let (ad, t) = (adapters.as_ref()?, tape.as_ref()?);
        ad.backward(&self.ops, t, dh, rows, input_grad)
    }

    /// Trainable adapters inside every layer from now on (`None` removes them): encoding,
    /// decoding, scoring and generation run with them, and [`Self::loss_and_grads`] returns
    /// their gradients.
    pub fn set_adapters(&self, adapters: Option<&Adapters>) -> Result<(), KernelError> {
        let device = match adapters {
            Some(a) => {
                a.check(&self.config).map_err(|why| KernelError::Shape {
                    tensor: "adapters",
                    expected: Adapters::site_count(&self.config),
                    got: a.sites.len(),
                    why,
                })?;
                Some(DeviceAdapters::upload(&self.ops, a)?)
            }
            None => None,
        };
        *self.adapters.borrow_mut() = device;
        Ok(())
    }

    /// The adapters' gradients from the last backward pass, if adapters are set.
    pub async fn adapter_gradients(&self) -> Result<Option<Adapters>, KernelError> {
        let copies = self
            .adapters
            .borrow()
            .as_ref()
            .map(|ad| ad.gradient_copy(&self.ops));
        match copies {
            Some(c) => Ok(Some(c.read(&self.ops).await?)),
            None => Ok(None),
        }
    }

    /// Decoder over `dec_inputs` (each starting with the start token; shorter ones padded):
    /// the `[B * T, vocab]` logits and the tape.
    pub fn decode(
        &self,
        m: &Memory<O>,
        dec_inputs: &[Vec<u32>],
    ) -> Result<(O::Buf, DecoderTape<O>), KernelError> {
        let c = &self.config;
        let (o, d) = (&self.ops, c.d_model);
        check_len(
            "decoder inputs",
            dec_inputs.len(),
            m.batch,
            "one per encoded input",
        )?;
        let (b, s) = (m.batch, m.len);
        let (x, _, t) = embed_inputs(c, &self.shared, &[], dec_inputs)?;
        let mut x = o.upload("decoder input", &x)?;
        let position = position_bias(c, &self.dec_position, t, t, false);
        let position = o.upload("position bias", &position)?;
        // No padding mask on decoder self-attention: causality keeps padding after the target
        // out of every position that is scored.
        let self_bias = Bias {
            position: Some(&position),
            key_mask: None,
            causal: true,
        };
        let cross_bias = Bias {
            position: None,
            key_mask: Some(&m.mask),
            causal: false,
        };
        let mut layers = Vec::with_capacity(self.decoder.len());
        for (i, (layer, kv)) in self.decoder.iter().zip(&m.cross).enumerate() {
            let site = |sub| Adapters::site(c, true, i, sub);
            let sa_site = site(Sublayer::SelfAttention);
            let (h, sa) = self.self_attention(
                x,
                &layer.ln_self,
                &layer.self_attn,
                b,
                t,
                self_bias,
                sa_site,
            );
            let (h, ca) =
                self.cross_attention(h, &layer.ln_cross, &layer.cross, kv, (b, t, s), cross_bias);
            let ff_site = site(Sublayer::FeedForward);
            let (h, ff) = self.feed_forward(h, &layer.ln_ff, &layer.ff, b * t, ff_site);
            layers.push((sa, ca, ff));
            x = h;
            o.flush();
        }
        let n = o.zeros("normed", b * t * d);
        o.rms_norm(&x, &self.dec_norm, &n, b * t, d, self.eps());
        let logits = o.zeros("logits", b * t * c.vocab_size);
        let out = Mat::new(&logits, c.vocab_size);
        o.matmul(Mat::new(&n, d), b * t, &self.lm_head, false, out, false);
        let tape = DecoderTape {
            len: t,
            layers,
            last: x,
        };
        Ok((logits, tape))
    }

    /// One step of incremental decoding: the newest token of each sequence (`tokens`, at
    /// position `pos`) through the decoder, its fused q/k/v written into `cache` beside those of
    /// the earlier positions, which its self-attention reads masked to `0..=pos`. Returns the
    /// next-token logits `[B, vocab]`: one row per sequence per step instead of the whole prefix.
    pub fn decode_step(
        &self,
        m: &Memory<O>,
        cache: &DecoderCache<O>,
        tokens: &[u32],
        pos: usize,
    ) -> Result<O::Buf, KernelError> {
        let c = &self.config;
        let (o, d, inner, h) = (&self.ops, c.d_model, c.inner_dim(), c.num_heads);
        let (b, s, l, w) = (m.batch, m.len, cache.max_len, 3 * c.inner_dim());
        check_len("decoder tokens", tokens.len(), b, "one per encoded input")?;
        if pos >= l {
            return Err(KernelError::Shape {
                tensor: "decoder cache",
                expected: l,
                got: pos + 1,
                why: format!("position {pos} is past the cache's {l} positions"),
            });
        }
        let single: Vec<Vec<u32>> = tokens.iter().map(|&t| vec![t]).collect();
        let (x, _, _) = embed_inputs(c, &self.shared, &[], &single)?;
        let mut x = o.upload("decoder token", &x)?;
        // Row `pos` of the `[H, L, L]` bias: the query at `pos` against every cached key.
        let row: Vec<f32> = (0..h)
            .flat_map(|hi| cache.position[(hi * l + pos) * l..(hi * l + pos + 1) * l].to_vec())
            .collect();
        let position = o.upload("position bias", &row)?;
        let seen: Vec<f32> = (0..b * l)
            .map(|i| if i % l <= pos { 1.0 } else { 0.0 })
            .collect();
        let seen = o.upload("cached keys", &seen)?;
        let self_bias = Bias {
            position: Some(&position),
            key_mask: Some(&seen),
            causal: false,
        };
        let cross_bias = Bias {
            position: None,
            key_mask: Some(&m.mask),
            causal: false,
        };
        for (i, ((layer, kv), qkv)) in self
            .decoder
            .iter()
            .zip(&m.cross)
            .zip(&cache.layers)
            .enumerate()
        {
            let site = |sub| Adapters::site(c, true, i, sub);
            let n = o.zeros("normed", b * d);
            o.rms_norm(&x, &layer.ln_self, &n, b, d, self.eps());
            let newest = Mat {
                buf: qkv,
                offset: pos * w,
                stride: l * w,
            };
            o.matmul(
                Mat::new(&n, d),
                b,
                &layer.self_attn.wqkv,
                false,
                newest,
                false,
            );
            let dims = self.dims(b, 1, l);
            let probs = o.zeros("probs", b * h * l);
            let ctx = o.zeros("context", b * inner);
            let keys = KeyValues {
                buf: qkv,
                stride: w,
                k_col: inner,
                v_col: 2 * inner,
            };
            o.attention(dims, newest, keys, self_bias, &probs, Mat::new(&ctx, inner));
            let sa_site = site(Sublayer::SelfAttention);
            let (hs, _) =
                self.project_out(&x, Mat::new(&ctx, inner), b, &layer.self_attn.wo, sa_site);
            let (hs, _) =
                self.cross_attention(hs, &layer.ln_cross, &layer.cross, kv, (b, 1, s), cross_bias);
            let (hs, _) =
                self.feed_forward(hs, &layer.ln_ff, &layer.ff, b, site(Sublayer::FeedForward));
            x = hs;
            o.flush();
        }
        let n = o.zeros("normed", b * d);
        o.rms_norm(&x, &self.dec_norm, &n, b, d, self.eps());
        let logits = o.zeros("next-token logits", b * c.vocab_size);
        let out = Mat::new(&logits, c.vocab_size);
        o.matmul(Mat::new(&n, d), b, &self.lm_head, false, out, false);
        Ok(logits)
    }

    /// An empty cache for decoding `batch` sequences of up to `max_len` positions.
    pub fn decoder_cache(&self, batch: usize, max_len: usize) -> DecoderCache<O> {
        let c = &self.config;
        let l = max_len.max(1);
        DecoderCache {
            max_len: l,
            layers: (0..self.decoder.len())
                .map(|_| {
                    self.ops
                        .zeros("decoder cache", batch * l * 3 * c.inner_dim())
                })
                .collect(),
            position: position_bias(c, &self.dec_position, l, l, false),
        }
    }

    /// Sum of log-probabilities of each `targets[b]` given encoded input `b`: rank
    /// classification scores.
    pub async fn score(
        &self,
        m: &Memory<O>,
        targets: &[Vec<u32>],
    ) -> Result<Vec<f32>, KernelError> {
        let c = &self.config;
        let o = &self.ops;
        let (logits, tape) = self.decode(m, &teacher_inputs(c, targets))?;
        let t = tape.len;
        let (ids, w) = padded_targets(c, targets, t);
        let idb = o.upload_ids("targets", &ids)?;
        let lp = o.zeros("log probs", ids.len());
        o.log_probs(&logits, &idb, &lp, ids.len(), c.vocab_size);
        let lp = o.read(lp, ids.len()).await?;
        Ok(sequence_scores(&lp, &w, t, targets.len()))
    }

    /// Greedy decoding of up to `max_new` tokens for every encoded input; stops at EOS, which is
    /// not returned.
    pub async fn generate(
        &self,
        m: &Memory<O>,
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, KernelError> {
        self.generate_with(m, max_new, |row, _| argmax(row)).await
    }

    /// Decoding of up to `max_new` tokens, the next token of each sequence chosen by
    /// `pick(next-token logits, the sequence so far)` (greedy, or a [`super::Sampler`]'s draw);
    /// incremental, over a [`DecoderCache`].
    pub async fn generate_with(
        &self,
        m: &Memory<O>,
        max_new: usize,
        mut pick: impl FnMut(&[f32], &[u32]) -> u32,
    ) -> Result<Vec<Vec<u32>>, KernelError> {
        let c = &self.config;
        let v = c.vocab_size;
        let mut g = Decoding::new(c, m.batch);
        let cache = self.decoder_cache(m.batch, max_new);
        for pos in 0..max_new {
            let newest: Vec<u32> = g.seqs.iter().map(|q| q[pos]).collect();
            let logits = self.decode_step(m, &cache, &newest, pos)?;
            let logits = self.ops.read(logits, m.batch * v).await?;
            let next: Vec<u32> = (0..m.batch)
                .map(|bi| pick(&logits[bi * v..(bi + 1) * v], &g.seqs[bi]))
                .collect();
            if g.push_tokens(c, &next) {
                break;
            }
        }
        Ok(g.finish(c))
    }

    /// Mean cross-entropy per target token, and its gradient with respect to the prompt
    /// (`[L, d]`, summed over the batch since every sequence shares the prompt): the
    /// [`Objective`] of one target part.
    pub async fn loss_and_prompt_grad(
        &self,
        prompt: &[f32],
        inputs: &[Vec<u32>],
        targets: &[Vec<u32>],
    ) -> Result<(f32, Vec<f32>), KernelError> {
        let rows: Vec<Row> = inputs
            .iter()
            .zip(targets)
            .map(|(i, t)| Row::new(i, t.clone(), 0))
            .collect();
        let batch = Objective::single(prompt, &rows);
        let g = self.loss_and_grads(&batch).await?;
        Ok((g.loss, g.prompt))
    }

    /// From the logits' gradient (`[B * T, vocab]`), the gradient of the encoder states
    /// (`[B * S, d]`): the decoder top down, cross-attention keys' and values' gradients
    /// collected into the states'.
    pub fn decoder_backward(
        &self,
        m: &Memory<O>,
        dec: &DecoderTape<O>,
        d_logits: &O::Buf,
    ) -> O::Buf {
        let c = &self.config;
        let (o, d, inner) = (&self.ops, c.d_model, c.inner_dim());
        let (b, s, t) = (m.batch, m.len, dec.len);
        let dn = o.zeros("d normed", b * t * d);
        let dl = Mat::new(d_logits, c.vocab_size);
        o.matmul(dl, b * t, &self.lm_head, true, Mat::new(&dn, d), false);
        // `dh` is the gradient of the residual stream.
        let dh = o.zeros("d residual", b * t * d);
        o.rms_norm_backward_add(&dec.last, &self.dec_norm, &dn, &dh, b * t, d, self.eps());
        let d_states = o.zeros("d encoder states", b * s * d);
        for (i, (layer, (sa, ca, ff))) in self.decoder.iter().zip(&dec.layers).enumerate().rev() {
            self.feed_forward_backward(ff, &layer.ln_ff, &layer.ff, &dh);
            // Cross-attention: queries' gradient into the decoder stream, keys' and values' into
            // the encoder states.
            let dctx = o.zeros("d context", b * t * inner);
            o.matmul(
                Mat::new(&dh, d),
                b * t,
                &layer.cross.wo,
                true,
                Mat::new(&dctx, inner),
                false,
            );
            let kv = cross_kv(&m.cross[i], inner);
            let ds = o.zeros("d scores", b * c.num_heads * t * s);
            let dq = o.zeros("d cross q", b * t * inner);
            let dkv = o.zeros("d cross kv", b * s * 2 * inner);
            o.attention_backward(
                ca.dims,
                Mat::new(&ca.q, inner),
                kv,
                &ca.probs,
                Mat::new(&dctx, inner),
                &ds,
                Mat::new(&dq, inner),
                KeyValues { buf: &dkv, ..kv },
            );
            let dkv = Mat::new(&dkv, 2 * inner);
            o.matmul(
                dkv,
                b * s,
                &layer.cross.wkv,
                true,
                Mat::new(&d_states, d),
                true,
            );
            let dn = o.zeros("d normed", b * t * d);
            o.matmul(
                Mat::new(&dq, inner),
                b * t,
                &layer.cross.wq,
                true,
                Mat::new(&dn, d),
                false,
            );
            o.rms_norm_backward_add(&ca.x, &layer.ln_cross, &dn, &dh, b * t, d, self.eps());
            // Block 0's self-attention reads only the fixed decoder embeddings: nothing below it
            // depends on the prompt.
            if i > 0 {
                self.self_attention_backward(sa, &layer.ln_self, &layer.self_attn, &dh);
            } else {
                // Its adapters still learn; nothing below needs their input's gradient.
                self.adapter_backward(&sa.adapter, &dh, b * t, false);
            }
            o.flush();
        }
        d_states
    }

    /// From the encoder states' gradient, the gradient of the encoder's input embeddings
    /// (`[B * S, d]`; the prompt's rows first in every sequence).
    pub fn encoder_backward(&self, e: &Encoded<O>, d_states: &O::Buf) -> O::Buf {
        let (o, d) = (&self.ops, self.config.d_model);
        let rows = e.memory.batch * e.memory.len;
        let dh = o.zeros("d residual", rows * d);
        o.rms_norm_backward_add(&e.last, &self.enc_norm, d_states, &dh, rows, d, self.eps());
        for (layer, (sa, ff)) in self.encoder.iter().zip(&e.layers).rev() {
            self.feed_forward_backward(ff, &layer.ln_ff, &layer.ff, &dh);
            self.self_attention_backward(sa, &layer.ln_attn, &layer.attn, &dh);
            o.flush();
        }
        dh
    }

    fn feed_forward_backward(
        &self,
        tape: &FeedForwardTape<O>,
        ln: &O::Buf,
        w: &FeedForward<O>,
        dh: &O::Buf,
    ) {
        let (o, d, ff) = (&self.ops, self.config.d_model, self.config.d_ff);
        let rows = tape.rows;
        let df = self.adapter_backward(&tape.adapter, dh, rows, true);
        let dact = o.zeros("d activation", rows * ff);
        o.matmul(
            Mat::new(df.as_ref().unwrap_or(dh), d),
            rows,
            &w.wo,
            true,
            Mat::new(&dact, ff),
            false,
        );
        let dgu = o.zeros("d gate and linear", rows * 2 * ff);
        o.gated_gelu_backward(&tape.gu, &dact, &dgu, rows, ff);
        let dn = o.zeros("d normed", rows * d);
        o.matmul(
            Mat::new(&dgu, 2 * ff),
            rows,
            &w.wi,
            true,
            Mat::new(&dn, d),
            false,
        );
        o.rms_norm_backward_add(&tape.x, ln, &dn, dh, rows, d, self.eps());
    }

    fn self_attention_backward(
        &self,
        tape: &AttentionTape<O>,
        ln: &O::Buf,
        w: &SelfAttention<O>,
        dh: &O::Buf,
    ) {
        let (o, d, inner) = (&self.ops, self.config.d_model, self.config.inner_dim());
        let dims = tape.dims;
        let rows = dims.batch * dims.q_len;
        let df = self.adapter_backward(&tape.adapter, dh, rows, true);
        let dctx = o.zeros("d context", rows * inner);
        o.matmul(
            Mat::new(df.as_ref().unwrap_or(dh), d),
            rows,
            &w.wo,
            true,
            Mat::new(&dctx, inner),
            false,
        );
        let ds = o.zeros(
            "d scores",
            dims.batch * dims.heads * dims.q_len * dims.k_len,
        );
        let dqkv = o.zeros("d qkv", rows * 3 * inner);
        let kv = KeyValues {
            buf: &tape.q,
            stride: 3 * inner,
            k_col: inner,
            v_col: 2 * inner,
        };
        o.attention_backward(
            dims,
            Mat::new(&tape.q, 3 * inner),
            kv,
            &tape.probs,
            Mat::new(&dctx, inner),
            &ds,
            Mat::new(&dqkv, 3 * inner),
            KeyValues { buf: &dqkv, ..kv },
        );
        let dn = o.zeros("d normed", rows * d);
        let dqkv = Mat::new(&dqkv, 3 * inner);
        o.matmul(dqkv, rows, &w.wqkv, true, Mat::new(&dn, d), false);
        o.rms_norm_backward_add(&tape.x, ln, &dn, dh, rows, d, self.eps());
    }
}

/// Cross-attention keys and values as computed by [`T5Graph::encode`]: `[rows, 2 * inner]`.
fn cross_kv<B>(buf: &B, inner: usize) -> KeyValues<'_, B> {
    KeyValues {
        buf,
        stride: 2 * inner,
        k_col: 0,
        v_col: inner,
    }
}
