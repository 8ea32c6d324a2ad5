//! The frozen T5 on the GPU with our kernels only: int8 weights stay int8 in GPU memory, every op
//! of the prompt-tuning step is one of our WGSL kernels, and backward computes activation
//! gradients only, exactly as the CPU engine (`crate::cpu::t5`, whose structure this mirrors
//! dispatch for dispatch). A whole step is recorded into one command buffer; only the loss and
//! the encoder's input gradient come back.

use super::attention::{AttentionKernel, GpuBias, KeyValues};
use super::cross_entropy::CrossEntropy;
use super::gated_gelu::GatedGelu;
use super::matmul::{Block, GpuQuant, Mat, Matmul, QuantMatrix};
use super::rms_norm::RmsNormKernel;
use super::{KernelError, read_back, upload, zeros};
use crate::cpu::attention::Dims;
use crate::cpu::t5::{
    Greedy, embed_inputs, padded_targets, position_bias, prompt_grad, sequence_scores,
    teacher_inputs,
};
use crate::gpu::Gpu;
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use crate::model::config::T5Config;
use burn::tensor::wgpu::wgpu;

#[derive(Debug, thiserror::Error)]
pub enum GpuT5Error {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

struct SelfAttention {
    wqkv: GpuQuant,
    wo: GpuQuant,
}

struct CrossAttention {
    wq: GpuQuant,
    wkv: GpuQuant,
    wo: GpuQuant,
}

struct FeedForward {
    wi: GpuQuant,
    wo: GpuQuant,
}

struct EncoderLayer {
    ln_attn: wgpu::Buffer,
    attn: SelfAttention,
    ln_ff: wgpu::Buffer,
    ff: FeedForward,
}

struct DecoderLayer {
    ln_self: wgpu::Buffer,
    self_attn: SelfAttention,
    ln_cross: wgpu::Buffer,
    cross: CrossAttention,
    ln_ff: wgpu::Buffer,
    ff: FeedForward,
}

struct Kernels {
    matmul: Matmul,
    attention: AttentionKernel,
    norm: RmsNormKernel,
    gelu: GatedGelu,
    ce: CrossEntropy,
}

/// flan-t5 on the GPU: weights as int8 bytes with per-tensor scales, norms in f32.
pub struct GpuT5 {
    pub config: T5Config,
    gpu: Gpu,
    k: Kernels,
    /// Token embeddings stay on the host: inputs are gathered there and uploaded (a few hundred
    /// KB per step), which keeps the 16 MB table out of the step.
    shared: Vec<f32>,
    enc_position: Vec<f32>,
    dec_position: Vec<f32>,
    encoder: Vec<EncoderLayer>,
    enc_norm: wgpu::Buffer,
    decoder: Vec<DecoderLayer>,
    dec_norm: wgpu::Buffer,
    lm_head: GpuQuant,
    /// Bytes of weights on the GPU (bytes plus per-column scales and zero points).
    pub weight_bytes: u64,
    /// Elements of those weight matrices (as f32 they would take 4 bytes each).
    pub weight_elements: u64,
    step_bytes: std::sync::atomic::AtomicU64,
}

/// A residual sub-layer's saved input and attention state for backward.
struct AttentionTape {
    x: wgpu::Buffer,
    /// Fused `[rows, 3 * inner]` projections (self-attention) or `[rows, inner]` queries (cross).
    q: wgpu::Buffer,
    probs: wgpu::Buffer,
    dims: Dims,
}

struct FeedForwardTape {
    x: wgpu::Buffer,
    gu: wgpu::Buffer,
}

/// Encoder output on the GPU with what backward needs.
pub struct GpuEncoded {
    pub batch: usize,
    pub len: usize,
    pub prompt_len: usize,
    mask: wgpu::Buffer,
    /// Per decoder layer, cross-attention keys and values `[batch * len, 2 * inner]`.
    cross: Vec<wgpu::Buffer>,
    layers: Vec<(AttentionTape, FeedForwardTape)>,
    last: wgpu::Buffer,
}

struct DecoderTape {
    len: usize,
    layers: Vec<(AttentionTape, AttentionTape, FeedForwardTape)>,
    last: wgpu::Buffer,
}

impl GpuT5 {
    pub fn from_checkpoint(gpu: &Gpu, ckpt: &Checkpoint, c: &T5Config) -> Result<Self, GpuT5Error> {
        let d = c.d_model;
        let bytes = std::cell::Cell::new(0u64);
        let elements = std::cell::Cell::new(0u64);
        let block = Block::for_adapter(gpu);
        let fused = |names: &[String], inp: usize, scale: f32| -> Result<GpuQuant, GpuT5Error> {
            let stored = names
                .iter()
                .map(|n| Ok((n.as_str(), ckpt.stored(n)?)))
                .collect::<Result<Vec<_>, CheckpointError>>()?;
            let m = QuantMatrix::fuse(&stored, inp, scale)?;
            elements.set(elements.get() + m.bytes.len() as u64);
            let up = m.upload(gpu, "weight", block)?;
            bytes.set(bytes.get() + up.gpu_bytes());
            Ok(up)
        };
        let linear = |p: &str, parts: &[&str], inp: usize| {
            let names: Vec<String> = parts.iter().map(|s| format!("{p}.{s}.weight")).collect();
            fused(&names, inp, 1.0)
        };
        let norm = |name: &str| -> Result<wgpu::Buffer, GpuT5Error> {
            Ok(upload(gpu, "layer_norm", &ckpt.f32(name)?)?)
        };
        let mut encoder = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let b = format!("encoder.block.{i}");
            let sa = format!("{b}.layer.0.SelfAttention");
            let ff = format!("{b}.layer.1.DenseReluDense");
            encoder.push(EncoderLayer {
                ln_attn: norm(&format!("{b}.layer.0.layer_norm.weight"))?,
                attn: SelfAttention {
                    wqkv: linear(&sa, &["q", "k", "v"], d)?,
                    wo: linear(&sa, &["o"], c.inner_dim())?,
                },
                ln_ff: norm(&format!("{b}.layer.1.layer_norm.weight"))?,
                ff: FeedForward {
                    wi: linear(&ff, &["wi_0", "wi_1"], d)?,
                    wo: linear(&ff, &["wo"], c.d_ff)?,
                },
            });
        }
        let mut decoder = Vec::with_capacity(c.num_decoder_layers);
        for i in 0..c.num_decoder_layers {
            let b = format!("decoder.block.{i}");
            let sa = format!("{b}.layer.0.SelfAttention");
            let x = format!("{b}.layer.1.EncDecAttention");
            let ff = format!("{b}.layer.2.DenseReluDense");
            decoder.push(DecoderLayer {
                ln_self: norm(&format!("{b}.layer.0.layer_norm.weight"))?,
                self_attn: SelfAttention {
                    wqkv: linear(&sa, &["q", "k", "v"], d)?,
                    wo: linear(&sa, &["o"], c.inner_dim())?,
                },
                ln_cross: norm(&format!("{b}.layer.1.layer_norm.weight"))?,
                cross: CrossAttention {
                    wq: linear(&x, &["q"], d)?,
                    wkv: linear(&x, &["k", "v"], d)?,
                    wo: linear(&x, &["o"], c.inner_dim())?,
                },
                ln_ff: norm(&format!("{b}.layer.2.layer_norm.weight"))?,
                ff: FeedForward {
                    wi: linear(&ff, &["wi_0", "wi_1"], d)?,
                    wo: linear(&ff, &["wo"], c.d_ff)?,
                },
            });
        }
        // Tied heads rescale by d_model^-0.5 (as Hugging Face does only when tied).
        let lm_head = if c.tie_word_embeddings {
            fused(&["shared.weight".into()], d, (d as f32).powf(-0.5))?
        } else {
            fused(&["lm_head.weight".into()], d, 1.0)?
        };
        let rel = |p: &str| ckpt.f32(&format!("{p}.relative_attention_bias.weight"));
        Ok(Self {
            config: c.clone(),
            gpu: gpu.clone(),
            k: Kernels {
                matmul: Matmul::with_block(gpu, block),
                attention: AttentionKernel::new(gpu),
                norm: RmsNormKernel::new(gpu),
                gelu: GatedGelu::new(gpu),
                ce: CrossEntropy::new(gpu),
            },
            shared: ckpt.f32("shared.weight")?,
            enc_position: rel("encoder.block.0.layer.0.SelfAttention")?,
            dec_position: rel("decoder.block.0.layer.0.SelfAttention")?,
            encoder,
            enc_norm: norm("encoder.final_layer_norm.weight")?,
            decoder,
            dec_norm: norm("decoder.final_layer_norm.weight")?,
            lm_head,
            weight_bytes: bytes.get(),
            weight_elements: elements.get(),
            step_bytes: Default::default(),
        })
    }

    /// A zeroed buffer for this step, counted in [`Self::step_bytes`].
    fn zeros(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.step_bytes.fetch_add(
            (len.max(1) * 4) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        zeros(&self.gpu, label, len)
    }

    fn upload<T: bytemuck::Pod>(
        &self,
        tensor: &'static str,
        data: &[T],
    ) -> Result<wgpu::Buffer, KernelError> {
        self.step_bytes.fetch_add(
            std::mem::size_of_val(data).max(4) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        upload(&self.gpu, tensor, data)
    }

    /// Bytes of GPU buffers made by the calls since the last [`Self::reset_step_bytes`]: all
    /// of a tuning step's buffers live until its read-back, so after one step this is its peak
    /// memory beyond the weights.
    pub fn step_bytes(&self) -> u64 {
        self.step_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn reset_step_bytes(&self) {
        self.step_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
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

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.gpu
            .wgpu_device()
            .create_command_encoder(&Default::default())
    }

    /// Submits what `enc` has recorded and leaves a fresh encoder in its place, so the GPU runs
    /// one layer while the CPU records the next: recording a whole step before submitting it left
    /// the GPU idle for half of each step on an H100.
    fn flush(&self, enc: &mut wgpu::CommandEncoder) {
        let done = std::mem::replace(enc, self.encoder());
        self.gpu.queue().submit([done.finish()]);
    }

    /// A copy of `x` (`len` floats): the residual stream a sub-layer adds into.
    fn copy(&self, enc: &mut wgpu::CommandEncoder, x: &wgpu::Buffer, len: usize) -> wgpu::Buffer {
        let out = self.zeros("residual", len);
        enc.copy_buffer_to_buffer(x, 0, &out, 0, (len * 4) as u64);
        out
    }

    /// Encoder over `prompt` (`[L, d]`, shared by the batch) and each input's embeddings.
    pub fn encode(&self, prompt: &[f32], inputs: &[Vec<u32>]) -> Result<GpuEncoded, KernelError> {
        let c = &self.config;
        let (d, inner) = (c.d_model, c.inner_dim());
        super::check_len("prompt", prompt.len() % d, 0, format!("whole {d}-vectors"))?;
        let (b, l) = (inputs.len(), prompt.len() / d);
        let (x, mask, s) = embed_inputs(c, &self.shared, prompt, inputs);
        let gpu = &self.gpu;
        let mut x = self.upload("encoder input", &x)?;
        let mask = self.upload("key mask", &mask)?;
        let position = upload(
            gpu,
            "position bias",
            &position_bias(c, &self.enc_position, s, s, true),
        )?;
        let bias = GpuBias {
            position: Some(&position),
            key_mask: Some(&mask),
            causal: false,
        };
        let mut enc = self.encoder();
        let mut layers = Vec::with_capacity(self.encoder.len());
        for layer in &self.encoder {
            let (h, sa) = self.self_attention(&mut enc, x, &layer.ln_attn, &layer.attn, b, s, bias);
            let (h, ff) = self.feed_forward(&mut enc, h, &layer.ln_ff, &layer.ff, b * s);
            layers.push((sa, ff));
            x = h;
            self.flush(&mut enc);
        }
        let states = self.zeros("encoder states", b * s * d);
        self.k.norm.record_forward(
            gpu,
            &mut enc,
            &x,
            &self.enc_norm,
            &states,
            b * s,
            d,
            self.eps(),
        );
        // Every decoder layer's cross-attention keys and values, once per encoding.
        let cross = self
            .decoder
            .iter()
            .map(|layer| {
                let kv = self.zeros("cross kv", b * s * 2 * inner);
                let (a, c) = (Mat::new(&states, d), Mat::new(&kv, 2 * inner));
                self.k
                    .matmul
                    .record(gpu, &mut enc, a, b * s, &layer.cross.wkv, false, c, false);
                kv
            })
            .collect();
        gpu.queue().submit([enc.finish()]);
        Ok(GpuEncoded {
            batch: b,
            len: s,
            prompt_len: l,
            mask,
            cross,
            layers,
            last: x,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn self_attention(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x: wgpu::Buffer,
        ln: &wgpu::Buffer,
        w: &SelfAttention,
        b: usize,
        s: usize,
        bias: GpuBias,
    ) -> (wgpu::Buffer, AttentionTape) {
        let (d, inner) = (self.config.d_model, self.config.inner_dim());
        let gpu = &self.gpu;
        let n = self.zeros("normed", b * s * d);
        self.k
            .norm
            .record_forward(gpu, enc, &x, ln, &n, b * s, d, self.eps());
        let qkv = self.zeros("qkv", b * s * 3 * inner);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&n, d),
            b * s,
            &w.wqkv,
            false,
            Mat::new(&qkv, 3 * inner),
            false,
        );
        let dims = self.dims(b, s, s);
        let probs = self.zeros("probs", b * dims.heads * s * s);
        let ctx = self.zeros("context", b * s * inner);
        let kv = KeyValues {
            buf: &qkv,
            stride: 3 * inner,
            k_col: inner,
            v_col: 2 * inner,
        };
        self.k.attention.record_forward(
            gpu,
            enc,
            dims,
            Mat::new(&qkv, 3 * inner),
            kv,
            bias,
            &probs,
            Mat::new(&ctx, inner),
        );
        let h = self.copy(enc, &x, b * s * d);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&ctx, inner),
            b * s,
            &w.wo,
            false,
            Mat::new(&h, d),
            true,
        );
        (
            h,
            AttentionTape {
                x,
                q: qkv,
                probs,
                dims,
            },
        )
    }

    fn feed_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x: wgpu::Buffer,
        ln: &wgpu::Buffer,
        w: &FeedForward,
        rows: usize,
    ) -> (wgpu::Buffer, FeedForwardTape) {
        let (d, ff) = (self.config.d_model, self.config.d_ff);
        let gpu = &self.gpu;
        let n = self.zeros("normed", rows * d);
        self.k
            .norm
            .record_forward(gpu, enc, &x, ln, &n, rows, d, self.eps());
        let gu = self.zeros("gate and linear", rows * 2 * ff);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&n, d),
            rows,
            &w.wi,
            false,
            Mat::new(&gu, 2 * ff),
            false,
        );
        let act = self.zeros("activation", rows * ff);
        self.k.gelu.record_forward(gpu, enc, &gu, &act, rows, ff);
        let h = self.copy(enc, &x, rows * d);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&act, ff),
            rows,
            &w.wo,
            false,
            Mat::new(&h, d),
            true,
        );
        (h, FeedForwardTape { x, gu })
    }

    /// Decoder over `dec_inputs`: the `[B * T, vocab]` logits (recorded into `enc`) and the tape.
    fn decode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        e: &GpuEncoded,
        dec_inputs: &[Vec<u32>],
    ) -> Result<(wgpu::Buffer, DecoderTape), KernelError> {
        let c = &self.config;
        let (d, inner) = (c.d_model, c.inner_dim());
        super::check_len(
            "decoder inputs",
            dec_inputs.len(),
            e.batch,
            "one per encoded input",
        )?;
        let (b, s) = (e.batch, e.len);
        let gpu = &self.gpu;
        let (x, _, t) = embed_inputs(c, &self.shared, &[], dec_inputs);
        let mut x = self.upload("decoder input", &x)?;
        let position = upload(
            gpu,
            "position bias",
            &position_bias(c, &self.dec_position, t, t, false),
        )?;
        // No padding mask on decoder self-attention: causality keeps padding after the target
        // out of every scored position.
        let self_bias = GpuBias {
            position: Some(&position),
            key_mask: None,
            causal: true,
        };
        let cross_bias = GpuBias {
            position: None,
            key_mask: Some(&e.mask),
            causal: false,
        };
        let mut layers = Vec::with_capacity(self.decoder.len());
        for (layer, kv) in self.decoder.iter().zip(&e.cross) {
            let (h, sa) =
                self.self_attention(enc, x, &layer.ln_self, &layer.self_attn, b, t, self_bias);
            let n = self.zeros("normed", b * t * d);
            self.k
                .norm
                .record_forward(gpu, enc, &h, &layer.ln_cross, &n, b * t, d, self.eps());
            let q = self.zeros("cross q", b * t * inner);
            self.k.matmul.record(
                gpu,
                enc,
                Mat::new(&n, d),
                b * t,
                &layer.cross.wq,
                false,
                Mat::new(&q, inner),
                false,
            );
            let dims = self.dims(b, t, s);
            let probs = self.zeros("probs", b * dims.heads * t * s);
            let ctx = self.zeros("context", b * t * inner);
            let kvs = KeyValues {
                buf: kv,
                stride: 2 * inner,
                k_col: 0,
                v_col: inner,
            };
            self.k.attention.record_forward(
                gpu,
                enc,
                dims,
                Mat::new(&q, inner),
                kvs,
                cross_bias,
                &probs,
                Mat::new(&ctx, inner),
            );
            let h2 = self.copy(enc, &h, b * t * d);
            self.k.matmul.record(
                gpu,
                enc,
                Mat::new(&ctx, inner),
                b * t,
                &layer.cross.wo,
                false,
                Mat::new(&h2, d),
                true,
            );
            let ca = AttentionTape {
                x: h,
                q,
                probs,
                dims,
            };
            let (h3, ff) = self.feed_forward(enc, h2, &layer.ln_ff, &layer.ff, b * t);
            layers.push((sa, ca, ff));
            x = h3;
            self.flush(enc);
        }
        let n = self.zeros("normed", b * t * d);
        self.k
            .norm
            .record_forward(gpu, enc, &x, &self.dec_norm, &n, b * t, d, self.eps());
        let logits = self.zeros("logits", b * t * c.vocab_size);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&n, d),
            b * t,
            &self.lm_head,
            false,
            Mat::new(&logits, c.vocab_size),
            false,
        );
        Ok((
            logits,
            DecoderTape {
                len: t,
                layers,
                last: x,
            },
        ))
    }

    /// Sum of log-probabilities of each `targets[b]` given encoded input `b`.
    pub async fn score(
        &self,
        e: &GpuEncoded,
        targets: &[Vec<u32>],
    ) -> Result<Vec<f32>, KernelError> {
        let c = &self.config;
        let mut enc = self.encoder();
        let (logits, tape) = self.decode(&mut enc, e, &teacher_inputs(c, targets))?;
        let t = tape.len;
        let (ids, w) = padded_targets(c, targets, t);
        let gpu = &self.gpu;
        let (idb, wb) = (self.upload("targets", &ids)?, self.upload("weights", &w)?);
        let lp = self.zeros("log probs", ids.len());
        self.k.ce.record(
            gpu,
            &mut enc,
            &logits,
            &idb,
            &wb,
            &lp,
            ids.len(),
            c.vocab_size,
            false,
        );
        gpu.queue().submit([enc.finish()]);
        let lp = read_back(gpu, &lp, ids.len()).await?;
        Ok(sequence_scores(&lp, &w, t, targets.len()))
    }

    /// Greedy decoding of up to `max_new` tokens (no key/value cache, as the CPU engine).
    pub async fn generate(
        &self,
        e: &GpuEncoded,
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, KernelError> {
        let c = &self.config;
        let mut g = Greedy::new(c, e.batch);
        for _ in 0..max_new {
            let mut enc = self.encoder();
            let (logits, tape) = self.decode(&mut enc, e, &g.seqs)?;
            self.gpu.queue().submit([enc.finish()]);
            let t = tape.len;
            let logits = read_back(&self.gpu, &logits, e.batch * t * c.vocab_size).await?;
            if g.push(c, &logits, t) {
                break;
            }
        }
        Ok(g.finish(c))
    }

    /// Mean cross-entropy per target token and its gradient with respect to the prompt (`[L,
    /// d]`, summed over the batch).
    pub async fn loss_and_prompt_grad(
        &self,
        prompt: &[f32],
        inputs: &[Vec<u32>],
        targets: &[Vec<u32>],
    ) -> Result<(f32, Vec<f32>), KernelError> {
        let c = &self.config;
        let (d, inner) = (c.d_model, c.inner_dim());
        let gpu = &self.gpu;
        let e = self.encode(prompt, inputs)?;
        let mut enc = self.encoder();
        let (logits, dec) = self.decode(&mut enc, &e, &teacher_inputs(c, targets))?;
        let (b, s, t) = (e.batch, e.len, dec.len);
        let (ids, mut w) = padded_targets(c, targets, t);
        let n_tokens = w.iter().sum::<f32>().max(1.0);
        w.iter_mut().for_each(|x| *x /= n_tokens);
        let (idb, wb) = (self.upload("targets", &ids)?, self.upload("weights", &w)?);
        let losses = self.zeros("losses", ids.len());
        self.k.ce.record(
            gpu,
            &mut enc,
            &logits,
            &idb,
            &wb,
            &losses,
            ids.len(),
            c.vocab_size,
            true,
        );

        // Decoder, top down; `dh` is the gradient of the residual stream.
        let mm = &self.k.matmul;
        let dn = self.zeros("d normed", b * t * d);
        mm.record(
            gpu,
            &mut enc,
            Mat::new(&logits, c.vocab_size),
            b * t,
            &self.lm_head,
            true,
            Mat::new(&dn, d),
            false,
        );
        let dh = self.zeros("d residual", b * t * d);
        self.k.norm.record_backward_add(
            gpu,
            &mut enc,
            &dec.last,
            &self.dec_norm,
            &dn,
            &dh,
            b * t,
            d,
            self.eps(),
        );
        let d_enc = self.zeros("d encoder states", b * s * d);
        for (i, (layer, (sa, ca, ff))) in self.decoder.iter().zip(&dec.layers).enumerate().rev() {
            self.feed_forward_backward(&mut enc, ff, &layer.ln_ff, &layer.ff, &dh, b * t);
            // Cross-attention: queries' gradient into the decoder stream, keys' and values' into
            // the encoder states.
            let dctx = self.zeros("d context", b * t * inner);
            mm.record(
                gpu,
                &mut enc,
                Mat::new(&dh, d),
                b * t,
                &layer.cross.wo,
                true,
                Mat::new(&dctx, inner),
                false,
            );
            let kv = KeyValues {
                buf: &e.cross[i],
                stride: 2 * inner,
                k_col: 0,
                v_col: inner,
            };
            let ds = self.zeros("d scores", b * c.num_heads * t * s);
            let dq = self.zeros("d cross q", b * t * inner);
            let dkv = self.zeros("d cross kv", b * s * 2 * inner);
            self.k.attention.record_backward(
                gpu,
                &mut enc,
                ca.dims,
                Mat::new(&ca.q, inner),
                kv,
                &ca.probs,
                Mat::new(&dctx, inner),
                &ds,
                Mat::new(&dq, inner),
                KeyValues { buf: &dkv, ..kv },
            );
            mm.record(
                gpu,
                &mut enc,
                Mat::new(&dkv, 2 * inner),
                b * s,
                &layer.cross.wkv,
                true,
                Mat::new(&d_enc, d),
                true,
            );
            let dn = self.zeros("d normed", b * t * d);
            mm.record(
                gpu,
                &mut enc,
                Mat::new(&dq, inner),
                b * t,
                &layer.cross.wq,
                true,
                Mat::new(&dn, d),
                false,
            );
            self.k.norm.record_backward_add(
                gpu,
                &mut enc,
                &ca.x,
                &layer.ln_cross,
                &dn,
                &dh,
                b * t,
                d,
                self.eps(),
            );
            // Block 0's self-attention reads only the fixed decoder embeddings.
            if i > 0 {
                self.self_attention_backward(&mut enc, sa, &layer.ln_self, &layer.self_attn, &dh);
            }
            self.flush(&mut enc);
        }

        // Encoder, top down from the states' gradient.
        let dh = self.zeros("d residual", b * s * d);
        self.k.norm.record_backward_add(
            gpu,
            &mut enc,
            &e.last,
            &self.enc_norm,
            &d_enc,
            &dh,
            b * s,
            d,
            self.eps(),
        );
        for (layer, (sa, ff)) in self.encoder.iter().zip(&e.layers).rev() {
            self.feed_forward_backward(&mut enc, ff, &layer.ln_ff, &layer.ff, &dh, b * s);
            self.self_attention_backward(&mut enc, sa, &layer.ln_attn, &layer.attn, &dh);
            self.flush(&mut enc);
        }
        gpu.queue().submit([enc.finish()]);
        let loss: f32 = read_back(gpu, &losses, ids.len()).await?.iter().sum();
        let dh = read_back(gpu, &dh, b * s * d).await?;
        Ok((loss, prompt_grad(&dh, b, s, e.prompt_len, d)))
    }

    fn feed_forward_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        tape: &FeedForwardTape,
        ln: &wgpu::Buffer,
        w: &FeedForward,
        dh: &wgpu::Buffer,
        rows: usize,
    ) {
        let (d, ff) = (self.config.d_model, self.config.d_ff);
        let gpu = &self.gpu;
        let dact = self.zeros("d activation", rows * ff);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(dh, d),
            rows,
            &w.wo,
            true,
            Mat::new(&dact, ff),
            false,
        );
        let dgu = self.zeros("d gate and linear", rows * 2 * ff);
        self.k
            .gelu
            .record_backward(gpu, enc, &tape.gu, &dact, &dgu, rows, ff);
        let dn = self.zeros("d normed", rows * d);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&dgu, 2 * ff),
            rows,
            &w.wi,
            true,
            Mat::new(&dn, d),
            false,
        );
        self.k
            .norm
            .record_backward_add(gpu, enc, &tape.x, ln, &dn, dh, rows, d, self.eps());
    }

    fn self_attention_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        tape: &AttentionTape,
        ln: &wgpu::Buffer,
        w: &SelfAttention,
        dh: &wgpu::Buffer,
    ) {
        let (d, inner) = (self.config.d_model, self.config.inner_dim());
        let gpu = &self.gpu;
        let dims = tape.dims;
        let rows = dims.batch * dims.q_len;
        let dctx = self.zeros("d context", rows * inner);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(dh, d),
            rows,
            &w.wo,
            true,
            Mat::new(&dctx, inner),
            false,
        );
        let ds = zeros(
            gpu,
            "d scores",
            dims.batch * dims.heads * dims.q_len * dims.k_len,
        );
        let dqkv = self.zeros("d qkv", rows * 3 * inner);
        let kv = KeyValues {
            buf: &tape.q,
            stride: 3 * inner,
            k_col: inner,
            v_col: 2 * inner,
        };
        self.k.attention.record_backward(
            gpu,
            enc,
            dims,
            Mat::new(&tape.q, 3 * inner),
            kv,
            &tape.probs,
            Mat::new(&dctx, inner),
            &ds,
            Mat::new(&dqkv, 3 * inner),
            KeyValues { buf: &dqkv, ..kv },
        );
        let dn = self.zeros("d normed", rows * d);
        self.k.matmul.record(
            gpu,
            enc,
            Mat::new(&dqkv, 3 * inner),
            rows,
            &w.wqkv,
            true,
            Mat::new(&dn, d),
            false,
        );
        self.k
            .norm
            .record_backward_add(gpu, enc, &tape.x, ln, &dn, dh, rows, d, self.eps());
    }
}
