//! T5 encoder-decoder (v1.1 / flan flavour) on burn tensors, runnable on any burn device (CPU or
//! wgpu). Follows Hugging Face's `modeling_t5.py` names. Two classic traps, both honoured here:
//! attention scores are NOT divided by sqrt(d_kv) (T5 folds that into its weights), and with an
//! untied lm_head the decoder output is NOT rescaled by d_model^-0.5.

use super::checkpoint::{Checkpoint, CheckpointError};
use super::config::T5Config;
use super::names::{Block, LM_HEAD, SHARED, Stack, weight};
use crate::graph::host::Decoding;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A large negative additive mask value: exp underflows to exactly 0 in f32.
const MASKED: f32 = -1e9;

struct Attention {
    /// [d_model, inner] each (stored transposed from PyTorch's [out, in] so that `x.matmul(w)`).
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    /// [inner, d_model]
    o: Tensor<2>,
    /// [buckets, heads], only in block 0 of each stack.
    relative_bias: Option<Tensor<2>>,
}

struct FeedForward {
    wi_0: Tensor<2>,
    wi_1: Tensor<2>,
    wo: Tensor<2>,
}

struct EncoderBlock {
    ln_attn: Tensor<1>,
    attn: Attention,
    ln_ff: Tensor<1>,
    ff: FeedForward,
}

struct DecoderBlock {
    ln_self: Tensor<1>,
    self_attn: Attention,
    ln_cross: Tensor<1>,
    cross_attn: Attention,
    ln_ff: Tensor<1>,
    ff: FeedForward,
}

/// The frozen model.
pub struct T5 {
    pub config: T5Config,
    pub device: Device,
    /// [vocab, d_model]
    shared: Tensor<2>,
    encoder: Vec<EncoderBlock>,
    encoder_norm: Tensor<1>,
    decoder: Vec<DecoderBlock>,
    decoder_norm: Tensor<1>,
    /// [d_model, vocab]
    lm_head: Tensor<2>,
}

/// Token ids of a padded batch: `ids[b]` padded to a common length with `pad`, `mask` 1/0.
#[derive(Clone, Debug)]
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub len: usize,
}

impl Batch {
    /// Pads every sequence to the longest (an empty batch has length 0).
    pub fn new(seqs: &[Vec<u32>]) -> Self {
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        Self {
            ids: seqs.to_vec(),
            len,
        }
    }

    fn padded_ids(&self, pad: u32) -> Vec<i64> {
        self.ids
            .iter()
            .flat_map(|s| {
                s.iter()
                    .map(|&t| t as i64)
                    .chain(std::iter::repeat_n(pad as i64, self.len - s.len()))
            })
            .collect()
    }

    /// 1.0 at real tokens, 0.0 at padding; `[batch, len]` row-major.
    pub fn mask(&self) -> Vec<f32> {
        self.ids
            .iter()
            .flat_map(|s| (0..self.len).map(move |i| if i < s.len() { 1.0 } else { 0.0 }))
            .collect()
    }
}

impl T5 {
    /// Builds the model on `device` from a verified checkpoint, dequantising to f32.
    pub fn load(
        ckpt: &Checkpoint,
        config: &T5Config,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let c = config;
        let vec1 = |name: &str| -> Result<Tensor<1>, CheckpointError> {
            let v = ckpt.f32(name)?;
            let n = v.len();
            Ok(Tensor::from_data(TensorData::new(v, [n]), device))
        };
        // PyTorch [out, in] -> ours [in, out], transposed on the host so that the stored
        // layout is contiguous (a strided view makes the CPU matmul repack it on every call).
        let linear = |name: &str, out: usize, inp: usize| -> Result<Tensor<2>, CheckpointError> {
            let w = ckpt.f32(name)?;
            let mut t = vec![0f32; w.len()];
            for (o, row) in w.chunks_exact(inp).enumerate() {
                for (i, &x) in row.iter().enumerate() {
                    t[i * out + o] = x;
                }
            }
            Ok(Tensor::<2>::from_data(
                TensorData::new(t, [inp, out]),
                device,
            ))
        };
        let (d, inner, ff) = (c.d_model, c.inner_dim(), c.d_ff);
        let attention = |p: &str, bias: Option<Stack>| -> Result<Attention, CheckpointError> {
            Ok(Attention {
                q: linear(&weight(p, "q"), inner, d)?,
                k: linear(&weight(p, "k"), inner, d)?,
                v: linear(&weight(p, "v"), inner, d)?,
                o: linear(&weight(p, "o"), d, inner)?,
                relative_bias: match bias {
                    Some(stack) => Some(Tensor::from_data(
                        TensorData::new(
                            ckpt.f32(&stack.relative_bias())?,
                            [c.relative_attention_num_buckets, c.num_heads],
                        ),
                        device,
                    )),
                    None => None,
                },
            })
        };
        let feed_forward = |b: Block| -> Result<FeedForward, CheckpointError> {
            let p = b.feed_forward();
            Ok(FeedForward {
                wi_0: linear(&weight(&p, "wi_0"), ff, d)?,
                wi_1: linear(&weight(&p, "wi_1"), ff, d)?,
                wo: linear(&weight(&p, "wo"), d, ff)?,
            })
        };
        // Block 0 of each stack holds the relative-position table.
        let bias = |b: Block| (b.index == 0).then_some(b.stack);
        let encoder = (0..c.num_layers)
            .map(|i| {
                let b = Block::new(Stack::Encoder, i);
                Ok(EncoderBlock {
                    ln_attn: vec1(&b.self_norm())?,
                    attn: attention(&b.self_attention(), bias(b))?,
                    ln_ff: vec1(&b.ff_norm())?,
                    ff: feed_forward(b)?,
                })
            })
            .collect::<Result<_, CheckpointError>>()?;
        let decoder = (0..c.num_decoder_layers)
            .map(|i| {
                let b = Block::new(Stack::Decoder, i);
                Ok(DecoderBlock {
                    ln_self: vec1(&b.self_norm())?,
                    self_attn: attention(&b.self_attention(), bias(b))?,
                    ln_cross: vec1(&b.cross_norm())?,
                    cross_attn: attention(&b.cross_attention(), None)?,
                    ln_ff: vec1(&b.ff_norm())?,
                    ff: feed_forward(b)?,
                })
            })
            .collect::<Result<_, CheckpointError>>()?;
        let shared = Tensor::from_data(
            TensorData::new(ckpt.f32(SHARED)?, [c.vocab_size, d]),
            device,
        );
        let lm_head = if c.tie_word_embeddings {
            // Tied heads rescale by d_model^-0.5 (HF does so only when tied).
            shared.clone().transpose().mul_scalar((d as f32).powf(-0.5))
        } else {
            linear(LM_HEAD, c.vocab_size, d)?
        };
        Ok(Self {
            config: c.clone(),
            device: device.clone(),
            shared,
            encoder,
            encoder_norm: vec1(&Stack::Encoder.final_norm())?,
            decoder,
            decoder_norm: vec1(&Stack::Decoder.final_norm())?,
            lm_head,
        })
    }

    /// Token embeddings `[batch, len, d_model]` (padding embeds the pad token).
    pub fn embed(&self, batch: &Batch) -> Tensor<3> {
        let b = batch.ids.len();
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(batch.padded_ids(self.config.pad_token_id), [b * batch.len]),
            &self.device,
        );
        self.shared
            .clone()
            .select(0, ids)
            .reshape([b, batch.len, self.config.d_model])
    }

    /// Whether any weight would receive a gradient (never, for the frozen model: prompt tuning
    /// relies on the backward pass doing no work for weights).
    pub fn any_weight_tracked(&self) -> bool {
        let mut t = vec![
            self.shared.is_require_grad(),
            self.lm_head.is_require_grad(),
            self.encoder_norm.is_require_grad(),
            self.decoder_norm.is_require_grad(),
        ];
        for b in &self.encoder {
            t.extend(
                [
                    &b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o, &b.ff.wi_0, &b.ff.wi_1, &b.ff.wo,
                ]
                .map(|w| w.is_require_grad()),
            );
        }
        for b in &self.decoder {
            t.extend([&b.self_attn.q, &b.cross_attn.q, &b.ff.wo].map(|w| w.is_require_grad()));
        }
        t.into_iter().any(|x| x)
    }

    /// Rows `ids` of the input embedding matrix, `[ids.len(), d_model]` (prompt initialisation).
    pub fn embedding_rows(&self, ids: &[u32]) -> Tensor<2> {
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(
                ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [ids.len()],
            ),
            &self.device,
        );
        self.shared.clone().select(0, idx)
    }

    /// Encoder over input embeddings (so a soft prompt can be prepended): `embeds` is
    /// `[batch, len, d_model]`, `mask` is `[batch, len]` of 1/0. Returns hidden states.
    pub fn encode_embeds(&self, embeds: Tensor<3>, mask: &[f32]) -> Tensor<3> {
        self.encode_embeds_with(embeds, mask, None)
    }

    /// [`Self::encode_embeds`] with adapters at the graph's sites (the oracle of
    /// `crate::graph::adapters`).
    pub fn encode_embeds_with(
        &self,
        embeds: Tensor<3>,
        mask: &[f32],
        adapters: Option<&BurnAdapters>,
    ) -> Tensor<3> {
        let [b, s, _] = embeds.dims();
        let pad_bias = self.padding_bias(mask, b, s);
        let position = self.position_bias(&self.encoder[0].attn, s, s, true);
        let bias = position + pad_bias.clone();
        let adapt = |site: usize, f: Tensor<3>| match adapters {
            Some(a) => a.apply(site, f),
            None => f,
        };
        let mut h = embeds;
        for (i, block) in self.encoder.iter().enumerate() {
            let x = rms_norm(h.clone(), &block.ln_attn, self.config.layer_norm_epsilon);
            h = h + adapt(
                2 * i,
                self.attention(&block.attn, x.clone(), x, bias.clone()),
            );
            let x = rms_norm(h.clone(), &block.ln_ff, self.config.layer_norm_epsilon);
            h = h + adapt(2 * i + 1, feed_forward(&block.ff, x));
        }
        rms_norm(h, &self.encoder_norm, self.config.layer_norm_epsilon)
    }

    pub fn encode(&self, batch: &Batch) -> Tensor<3> {
        self.encode_embeds(self.embed(batch), &batch.mask())
    }

    /// Decoder logits `[batch, t, vocab]` for decoder inputs `dec` (already shifted right, starting
    /// with the decoder start token) attending to `enc` under the encoder `enc_mask`.
    pub fn decode(&self, dec: &Batch, enc: Tensor<3>, enc_mask: &[f32]) -> Tensor<3> {
        self.decode_with(dec, enc, enc_mask, None)
    }

    /// [`Self::decode`] with adapters at the graph's sites.
    pub fn decode_with(
        &self,
        dec: &Batch,
        enc: Tensor<3>,
        enc_mask: &[f32],
        adapters: Option<&BurnAdapters>,
    ) -> Tensor<3> {
        let [b, s, _] = enc.dims();
        let t = dec.len;
        let eps = self.config.layer_norm_epsilon;
        let self_bias =
            self.position_bias(&self.decoder[0].self_attn, t, t, false) + self.causal_bias(t);
        let cross_bias = self.padding_bias(enc_mask, b, s);
        let base = 2 * self.encoder.len();
        let adapt = |site: usize, f: Tensor<3>| match adapters {
            Some(a) => a.apply(base + site, f),
            None => f,
        };
        let mut h = self.embed(dec);
        for (i, block) in self.decoder.iter().enumerate() {
            let x = rms_norm(h.clone(), &block.ln_self, eps);
            let f = self.attention(&block.self_attn, x.clone(), x, self_bias.clone());
            h = h + adapt(2 * i, f);
            let x = rms_norm(h.clone(), &block.ln_cross, eps);
            h = h + self.attention(&block.cross_attn, x, enc.clone(), cross_bias.clone());
            let x = rms_norm(h.clone(), &block.ln_ff, eps);
            h = h + adapt(2 * i + 1, feed_forward(&block.ff, x));
        }
        let h = rms_norm(h, &self.decoder_norm, eps);
        linear(h, &self.lm_head)
    }

    /// Multi-head attention of queries from `x` over keys/values from `kv`, plus an additive bias
    /// broadcastable to `[batch, heads, tq, tk]`.
    fn attention(&self, a: &Attention, x: Tensor<3>, kv: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let (h, dk) = (self.config.num_heads, self.config.d_kv);
        let [b, tq, _] = x.dims();
        let tk = kv.dims()[1];
        let heads = |t: Tensor<3>, w: &Tensor<2>, len: usize| -> Tensor<4> {
            linear(t, w).reshape([b, len, h, dk]).swap_dims(1, 2)
        };
        let q = heads(x, &a.q, tq);
        let k = heads(kv.clone(), &a.k, tk);
        let v = heads(kv, &a.v, tk);
        // No 1/sqrt(d_kv): folded into T5's weights.
        let scores = q.matmul(k.swap_dims(2, 3)) + bias;
        let out = softmax(scores, 3).matmul(v);
        linear(out.swap_dims(1, 2).reshape([b, tq, h * dk]), &a.o)
    }

    /// `[1, heads, q, k]` relative-position bias of a stack's first block.
    fn position_bias(&self, a: &Attention, q: usize, k: usize, bidirectional: bool) -> Tensor<4> {
        let c = &self.config;
        let table = a
            .relative_bias
            .clone()
            .expect("relative bias lives in block 0");
        let buckets: Vec<i64> = (0..q)
            .flat_map(|i| {
                (0..k).map(move |j| {
                    relative_position_bucket(
                        j as i64 - i as i64,
                        bidirectional,
                        c.relative_attention_num_buckets,
                        c.relative_attention_max_distance,
                    ) as i64
                })
            })
            .collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(buckets, [q * k]), &self.device);
        // [q*k, heads] -> [heads, q, k]
        table
            .select(0, idx)
            .transpose()
            .reshape([1, c.num_heads, q, k])
    }

    /// `[batch, 1, 1, len]`: 0 where attended, a large negative number at padding.
    fn padding_bias(&self, mask: &[f32], b: usize, s: usize) -> Tensor<4> {
        let v: Vec<f32> = mask
            .iter()
            .map(|&m| if m > 0.5 { 0.0 } else { MASKED })
            .collect();
        Tensor::from_data(TensorData::new(v, [b, 1, 1, s]), &self.device)
    }

    fn causal_bias(&self, t: usize) -> Tensor<4> {
        let v: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { MASKED }))
            .collect();
        Tensor::from_data(TensorData::new(v, [1, 1, t, t]), &self.device)
    }

    /// Greedy decoding of every sequence of `batch` up to `max_new` tokens (stops at EOS). Returns
    /// the generated ids without the start token and without EOS; an error when the device's
    /// answer cannot be read back (a lost device).
    pub async fn generate(
        &self,
        enc: Tensor<3>,
        enc_mask: &[f32],
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, String> {
        let b = enc.dims()[0];
        let c = &self.config;
        let mut g = Decoding::new(c, b);
        for _ in 0..max_new {
            let dec = Batch::new(&g.seqs);
            let logits = self.decode(&dec, enc.clone(), enc_mask);
            let t = dec.len;
            // The argmax on the device: only `b` ids come back.
            let last = logits.narrow(1, t - 1, 1).reshape([b, c.vocab_size]);
            let next = last
                .argmax(1)
                .into_data_async()
                .await
                .map_err(|e| format!("reading the next tokens back: {e:?}"))?;
            let next: Vec<i64> = next
                .convert::<i64>()
                .try_to_vec()
                .map_err(|e| format!("the next tokens as integers: {e:?}"))?;
            let next: Vec<u32> = next.iter().map(|&t| t as u32).collect();
            if g.push_tokens(c, &next) {
                break;
            }
        }
        Ok(g.finish(c))
    }

    /// Sum of log-probabilities of each `targets[i]` (EOS appended by the caller if wanted) given
    /// the encoder states: rank classification scores. Returns one score per target.
    pub fn score_tensor(
        &self,
        enc: Tensor<3>,
        enc_mask: &[f32],
        targets: &[Vec<u32>],
    ) -> Tensor<1> {
        let c = &self.config;
        let b = targets.len();
        let inputs: Vec<Vec<u32>> = targets
            .iter()
            .map(|t| {
                std::iter::once(c.decoder_start_token_id)
                    .chain(t[..t.len().saturating_sub(1)].iter().copied())
                    .collect()
            })
            .collect();
        let dec = Batch::new(&inputs);
        let t = dec.len;
        let logp = log_softmax(self.decode(&dec, enc, enc_mask), 2);
        let tgt = Batch::new(targets);
        let idx = Tensor::<3, Int>::from_data(
            TensorData::new(tgt.padded_ids(c.pad_token_id), [b, t, 1]),
            &self.device,
        );
        let picked = logp.gather(2, idx).reshape([b, t]);
        let mask = Tensor::<2>::from_data(TensorData::new(tgt.mask(), [b, t]), &self.device);
        (picked * mask).sum_dim(1).reshape([b])
    }
}

/// Adapters as burn tensors, per site (the graph's order): each module's `[down [d, r],
/// down_bias [1, r], up [r, d], up_bias [1, d]]` and the mixing coefficients `[modules]`.
pub struct BurnAdapters {
    pub sites: Vec<(Vec<[Tensor<2>; 4]>, Tensor<1>)>,
}

impl BurnAdapters {
    /// `f + sum_i softmax(coefs)_i (relu(f down_i + b_down_i) up_i + b_up_i)`.
    fn apply(&self, site: usize, f: Tensor<3>) -> Tensor<3> {
        let Some((modules, coefs)) = self.sites.get(site).filter(|m| !m.0.is_empty()) else {
            return f;
        };
        let pi = burn::tensor::activation::softmax(coefs.clone(), 0);
        let mut out = f.clone();
        for (i, [down, down_bias, up, up_bias]) in modules.iter().enumerate() {
            let z = linear(f.clone(), down) + down_bias.clone().unsqueeze::<3>();
            let a =
                linear(burn::tensor::activation::relu(z), up) + up_bias.clone().unsqueeze::<3>();
            out = out + a * pi.clone().narrow(0, i, 1).reshape([1, 1, 1]);
        }
        out
    }
}

fn rms_norm<const D: usize>(x: Tensor<D>, w: &Tensor<1>, eps: f32) -> Tensor<D> {
    let r = x
        .clone()
        .powi_scalar(2)
        .mean_dim(D - 1)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * r * w.clone().unsqueeze::<D>()
}

/// T5 v1.1's gated GELU with the tanh approximation ("gelu_new").
fn feed_forward(f: &FeedForward, x: Tensor<3>) -> Tensor<3> {
    let g = linear(x.clone(), &f.wi_0);
    let lin = linear(x, &f.wi_1);
    linear(gelu_tanh(g) * lin, &f.wo)
}

/// `x @ w` for activations `[batch, len, in]` as one `[batch * len, in]` matmul: a single large
/// GEMM parallelises and packs the weight once instead of once per sequence.
fn linear(x: Tensor<3>, w: &Tensor<2>) -> Tensor<3> {
    let [b, s, d] = x.dims();
    let n = w.dims()[1];
    x.reshape([b * s, d]).matmul(w.clone()).reshape([b, s, n])
}

pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    // Clamped because WebGPU's tanh (SwiftShader, and WGSL in general) may compute it through exp
    // and return NaN for large arguments; flan-t5's feed-forward activations reach 1e5. tanh(15)
    // is 1.0 in f32, so the clamp changes nothing else.
    let inner = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715))
        .mul_scalar(C)
        .clamp(-15.0, 15.0);
    x.clone().mul_scalar(0.5) * (inner.tanh().add_scalar(1.0))
}

/// Hugging Face's `_relative_position_bucket`: exact buckets for small distances, logarithmic
/// ones up to `max_distance`; the encoder distinguishes direction, the decoder looks back only.
pub fn relative_position_bucket(
    relative: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut buckets = num_buckets as i64;
    let mut base = 0;
    let mut n = relative;
    if bidirectional {
        buckets /= 2;
        if n > 0 {
            base += buckets;
        }
        n = n.abs();
    } else {
        n = -n.min(0);
    }
    let max_exact = buckets / 2;
    let bucket = if n < max_exact {
        n
    } else {
        let large = max_exact
            + ((n as f32 / max_exact as f32).ln() / (max_distance as f32 / max_exact as f32).ln()
                * (buckets - max_exact) as f32) as i64;
        large.min(buckets - 1)
    };
    (base + bucket) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_buckets_match_hugging_face() {
        // Values from transformers' T5 for num_buckets=32, max_distance=128.
        let enc: Vec<usize> = [-200, -128, -20, -8, -1, 0, 1, 7, 8, 20, 127, 500]
            .iter()
            .map(|&r| relative_position_bucket(r, true, 32, 128))
            .collect();
        assert_eq!(enc, vec![15, 15, 10, 8, 1, 0, 17, 23, 24, 26, 31, 31]);
        let dec: Vec<usize> = [-200, -20, -16, -15, -1, 0, 5]
            .iter()
            .map(|&r| relative_position_bucket(r, false, 32, 128))
            .collect();
        assert_eq!(dec, vec![31, 17, 16, 15, 1, 0, 0]);
    }
}
