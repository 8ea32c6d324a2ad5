//! [`Ops`] on the GPU with our WGSL kernels only: int8 weights stay int8 in GPU memory, and the
//! ops are recorded into a command encoder that is submitted layer by layer ([`Ops::flush`]) and
//! read back only where the graph needs a result (the loss, the prompt's gradient, logits).

use super::adapter::{AdapterKernels, Operand};
use super::attention::AttentionKernel;
use super::cross_entropy::CrossEntropy;
use super::distill::Distill;
use super::gated_gelu::GatedGelu;
use super::matmul::{Block, GpuQuant, Mat, Matmul, QuantMatrix};
use super::rms_norm::RmsNormKernel;
use super::scale_add::ScaleAdd;
use super::{KernelError, read_back, upload, zeros};
use crate::cpu::attention::Dims;
use crate::gpu::Gpu;
use crate::graph::{Bias, KeyValues, LoadError, Ops, T5Graph};
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use crate::model::config::T5Config;
use burn::tensor::wgpu::wgpu;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// flan-t5 on the GPU: weights as int8 bytes with per-column scales, norms in f32.
pub type GpuT5 = T5Graph<GpuOps>;

impl GpuT5 {
    pub fn from_checkpoint(gpu: &Gpu, ckpt: &Checkpoint, c: &T5Config) -> Result<Self, LoadError> {
        Self::load(GpuOps::new(gpu), ckpt, c)
    }
}

struct Kernels {
    matmul: Matmul,
    attention: AttentionKernel,
    norm: RmsNormKernel,
    gelu: GatedGelu,
    ce: CrossEntropy,
    distill: Distill,
    scale_add: ScaleAdd,
    adapter: AdapterKernels,
}

pub struct GpuOps {
    gpu: Gpu,
    k: Kernels,
    block: Block,
    enc: RefCell<wgpu::CommandEncoder>,
    /// Bytes of weights on the GPU (bytes plus per-column scales and zero points).
    weight_bytes: Cell<u64>,
    /// Elements of those weight matrices (as f32 they would take 4 bytes each).
    weight_elements: Cell<u64>,
    step_bytes: AtomicU64,
}

impl GpuOps {
    pub fn new(gpu: &Gpu) -> Self {
        let block = Block::for_adapter(gpu);
        Self {
            gpu: gpu.clone(),
            k: Kernels {
                matmul: Matmul::with_block(gpu, block),
                attention: AttentionKernel::new(gpu),
                norm: RmsNormKernel::new(gpu),
                gelu: GatedGelu::new(gpu),
                ce: CrossEntropy::new(gpu),
                distill: Distill::new(gpu),
                scale_add: ScaleAdd::new(gpu),
                adapter: AdapterKernels::new(gpu),
            },
            block,
            enc: RefCell::new(Self::encoder(gpu)),
            weight_bytes: Cell::new(0),
            weight_elements: Cell::new(0),
            step_bytes: AtomicU64::new(0),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn part(
        &self,
        entry: &'static str,
        x: &wgpu::Buffer,
        z: &wgpu::Buffer,
        y: &wgpu::Buffer,
        shape: (usize, usize),
        extra: u32,
    ) {
        self.record(|gpu, enc| self.k.adapter.part(gpu, enc, entry, x, z, y, shape, extra));
    }

    fn encoder(gpu: &Gpu) -> wgpu::CommandEncoder {
        gpu.wgpu_device()
            .create_command_encoder(&Default::default())
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes.get()
    }

    pub fn weight_elements(&self) -> u64 {
        self.weight_elements.get()
    }

    /// Bytes of GPU buffers made since the last [`Self::reset_step_bytes`]: all of a tuning
    /// step's buffers live until its read-back, so after one step this is its peak memory beyond
    /// the weights.
    pub fn step_bytes(&self) -> u64 {
        self.step_bytes.load(Relaxed)
    }

    pub fn reset_step_bytes(&self) {
        self.step_bytes.store(0, Relaxed);
    }

    fn count(&self, bytes: usize) {
        self.step_bytes.fetch_add(bytes.max(4) as u64, Relaxed);
    }

    /// Records into this backend's command encoder.
    fn record(&self, f: impl FnOnce(&Gpu, &mut wgpu::CommandEncoder)) {
        f(&self.gpu, &mut self.enc.borrow_mut());
    }
}

impl Ops for GpuOps {
    type Buf = wgpu::Buffer;
    type Ids = wgpu::Buffer;
    type Weight = GpuQuant;

    fn weight(
        &self,
        ckpt: &Checkpoint,
        names: &[String],
        inp: usize,
        scale: f32,
    ) -> Result<GpuQuant, LoadError> {
        let stored = names
            .iter()
            .map(|n| Ok((n.as_str(), ckpt.stored(n)?)))
            .collect::<Result<Vec<_>, CheckpointError>>()?;
        let m = QuantMatrix::fuse(&stored, inp, scale)?;
        let up = m.upload(&self.gpu, "weight", self.block)?;
        self.weight_elements
            .set(self.weight_elements.get() + m.bytes.len() as u64);
        self.weight_bytes
            .set(self.weight_bytes.get() + up.gpu_bytes());
        Ok(up)
    }

    fn zeros(&self, label: &'static str, len: usize) -> wgpu::Buffer {
        self.count(len * 4);
        zeros(&self.gpu, label, len)
    }

    fn upload(&self, label: &'static str, data: &[f32]) -> Result<wgpu::Buffer, KernelError> {
        self.count(std::mem::size_of_val(data));
        upload(&self.gpu, label, data)
    }

    fn upload_ids(&self, label: &'static str, data: &[u32]) -> Result<wgpu::Buffer, KernelError> {
        self.count(std::mem::size_of_val(data));
        upload(&self.gpu, label, data)
    }

    fn copy(&self, x: &wgpu::Buffer, len: usize) -> wgpu::Buffer {
        let out = self.zeros("residual", len);
        self.record(|_, enc| enc.copy_buffer_to_buffer(x, 0, &out, 0, (len * 4) as u64));
        out
    }

    fn matmul(&self, a: Mat, m: usize, w: &GpuQuant, trans: bool, c: Mat, accumulate: bool) {
        self.record(|gpu, enc| {
            self.k
                .matmul
                .record(gpu, enc, a, m, w, trans, c, accumulate)
        });
    }

    fn rms_norm(
        &self,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        d: usize,
        eps: f32,
    ) {
        self.record(|gpu, enc| {
            self.k
                .norm
                .record_forward(gpu, enc, x, w, out, rows, d, eps)
        });
    }

    fn rms_norm_backward_add(
        &self,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        rows: usize,
        d: usize,
        eps: f32,
    ) {
        self.record(|gpu, enc| {
            self.k
                .norm
                .record_backward_add(gpu, enc, x, w, dy, dx, rows, d, eps)
        });
    }

    fn gated_gelu(&self, gu: &wgpu::Buffer, act: &wgpu::Buffer, rows: usize, ff: usize) {
        self.record(|gpu, enc| self.k.gelu.record_forward(gpu, enc, gu, act, rows, ff));
    }

    fn gated_gelu_backward(
        &self,
        gu: &wgpu::Buffer,
        dact: &wgpu::Buffer,
        dgu: &wgpu::Buffer,
        rows: usize,
        ff: usize,
    ) {
        self.record(|gpu, enc| {
            self.k
                .gelu
                .record_backward(gpu, enc, gu, dact, dgu, rows, ff)
        });
    }

    fn attention(
        &self,
        dims: Dims,
        q: Mat,
        kv: KeyValues<wgpu::Buffer>,
        bias: Bias<wgpu::Buffer>,
        probs: &wgpu::Buffer,
        out: Mat,
    ) {
        self.record(|gpu, enc| {
            self.k
                .attention
                .record_forward(gpu, enc, dims, q, kv, bias, probs, out)
        });
    }

    fn attention_backward(
        &self,
        dims: Dims,
        q: Mat,
        kv: KeyValues<wgpu::Buffer>,
        probs: &wgpu::Buffer,
        dout: Mat,
        ds: &wgpu::Buffer,
        dq: Mat,
        dkv: KeyValues<wgpu::Buffer>,
    ) {
        self.record(|gpu, enc| {
            self.k
                .attention
                .record_backward(gpu, enc, dims, q, kv, probs, dout, ds, dq, dkv)
        });
    }

    fn log_probs(
        &self,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        vocab: usize,
    ) {
        // The entry point reads no weights: the targets fill that (read-only) binding.
        self.record(|gpu, enc| {
            self.k
                .ce
                .record(gpu, enc, logits, targets, targets, out, rows, vocab, false)
        });
    }

    fn loss_and_grad(
        &self,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        vocab: usize,
    ) {
        self.record(|gpu, enc| {
            self.k
                .ce
                .record(gpu, enc, logits, targets, weights, out, rows, vocab, true)
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn distill(
        &self,
        student: &wgpu::Buffer,
        teacher: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        vocab: usize,
        temperature: f32,
    ) {
        self.record(|gpu, enc| {
            self.k.distill.record(
                gpu,
                enc,
                student,
                teacher,
                weights,
                out,
                rows,
                vocab,
                temperature,
            )
        });
    }

    fn scale_add(&self, y: &wgpu::Buffer, a: f32, x: &wgpu::Buffer, b: f32, len: usize) {
        self.record(|gpu, enc| self.k.scale_add.record(gpu, enc, y, a, x, b, len));
    }

    fn gemm(
        &self,
        a: Mat,
        ta: bool,
        b: Mat,
        tb: bool,
        c: Mat,
        mkn: (usize, usize, usize),
        accumulate: bool,
    ) {
        let (a, b) = (Operand { mat: a, trans: ta }, Operand { mat: b, trans: tb });
        self.record(|gpu, enc| self.k.adapter.gemm(gpu, enc, a, b, c, mkn, accumulate));
    }

    fn add_bias(&self, y: &wgpu::Buffer, bias: &wgpu::Buffer, rows: usize, cols: usize) {
        self.part("add_bias", bias, bias, y, (rows, cols), 0);
    }

    fn relu(&self, x: &wgpu::Buffer, y: &wgpu::Buffer, len: usize) {
        self.part("relu", x, x, y, (1, len), 0);
    }

    fn relu_backward(&self, x: &wgpu::Buffer, dy: &wgpu::Buffer, len: usize) {
        self.part("relu_backward", x, x, dy, (1, len), 0);
    }

    fn column_sums(&self, x: &wgpu::Buffer, out: Mat, rows: usize, cols: usize) {
        self.part(
            "column_sums",
            x,
            x,
            out.buf,
            (rows, cols),
            out.offset as u32,
        );
    }

    fn dot(&self, x: &wgpu::Buffer, z: &wgpu::Buffer, len: usize, out: &wgpu::Buffer, slot: usize) {
        self.part("dot", x, z, out, (1, len), slot as u32);
    }

    /// Submits what has been recorded and starts a fresh encoder, so the GPU runs one layer while
    /// the CPU records the next: recording a whole step before submitting it left the GPU idle
    /// for half of each step on an H100.
    fn flush(&self) {
        let done = std::mem::replace(&mut *self.enc.borrow_mut(), Self::encoder(&self.gpu));
        self.gpu.queue().submit([done.finish()]);
    }

    fn read(
        &self,
        buf: wgpu::Buffer,
        len: usize,
    ) -> impl std::future::Future<Output = Result<Vec<f32>, KernelError>> {
        self.flush();
        async move { read_back(&self.gpu, &buf, len).await }
    }
}
