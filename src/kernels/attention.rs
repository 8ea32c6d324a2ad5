//! T5 attention with relative-position bias and padding / causal masks, softmax fused
//! (`shaders/attention.wgsl`), forward and backward with respect to q, k and v. Heads are read
//! from the projection layouts in place. The Rust twin is `crate::cpu::attention`.

use super::matmul::Mat;
use super::{Binding, KernelError, Shader, grid, read_back, upload, zeros};
use crate::cpu::attention::{self as cpu, Bias, Dims, Heads};
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/attention.wgsl");

/// Keys and values side by side in one buffer: `[batch * k_len, stride]`, a head's columns at
/// `k_col + h * d_kv` and `v_col + h * d_kv`.
#[derive(Clone, Copy)]
pub struct KeyValues<'a> {
    pub buf: &'a wgpu::Buffer,
    pub stride: usize,
    pub k_col: usize,
    pub v_col: usize,
}

/// Biases as buffers: position `[heads, q_len, k_len]`, key mask `[batch, k_len]` (1 = attend).
#[derive(Clone, Copy, Default)]
pub struct GpuBias<'a> {
    pub position: Option<&'a wgpu::Buffer>,
    pub key_mask: Option<&'a wgpu::Buffer>,
    pub causal: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    heads: u32,
    q_len: u32,
    k_len: u32,
    d_kv: u32,
    q_stride: u32,
    q_col: u32,
    kv_stride: u32,
    k_col: u32,
    v_col: u32,
    o_stride: u32,
    g_stride: u32,
    gq_col: u32,
    gk_col: u32,
    gv_col: u32,
    flags: u32,
}

fn params(d: Dims, q: Mat, kv: KeyValues, o_stride: usize) -> Params {
    Params {
        batch: d.batch as u32,
        heads: d.heads as u32,
        q_len: d.q_len as u32,
        k_len: d.k_len as u32,
        d_kv: d.d_kv as u32,
        q_stride: q.stride as u32,
        q_col: q.offset as u32,
        kv_stride: kv.stride as u32,
        k_col: kv.k_col as u32,
        v_col: kv.v_col as u32,
        o_stride: o_stride as u32,
        ..Default::default()
    }
}

pub struct AttentionKernel {
    shader: Shader,
}

impl AttentionKernel {
    pub fn new(gpu: &Gpu) -> Self {
        use Binding::*;
        Self {
            shader: Shader::new(
                gpu,
                "attention.wgsl",
                SHADER,
                &[Read, Read, Read, Read, ReadWrite, ReadWrite],
                &["forward", "backward_rows", "backward_keys"],
            ),
        }
    }

    /// Records the forward pass: `probs` `[batch, heads, q_len, k_len]` and the output into
    /// `out` (`[batch * q_len, out_stride]`, head h at columns `h * d_kv`).
    #[allow(clippy::too_many_arguments)] // operands of one dispatch
    pub fn record_forward(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        dims: Dims,
        q: Mat,
        kv: KeyValues,
        bias: GpuBias,
        probs: &wgpu::Buffer,
        out: Mat,
    ) {
        let rows = dims.batch * dims.heads * dims.q_len;
        if rows == 0 || dims.k_len == 0 {
            return;
        }
        let mut p = params(dims, q, kv, out.stride);
        p.flags = bias.position.is_some() as u32
            | (bias.key_mask.is_some() as u32) << 1
            | (bias.causal as u32) << 2;
        let position = bias.position.unwrap_or(q.buf);
        let mask = bias.key_mask.unwrap_or(q.buf);
        self.shader.dispatch(
            gpu,
            enc,
            "forward",
            &[q.buf, kv.buf, position, mask, probs, out.buf],
            &p,
            grid(rows as u32),
        );
    }

    /// Records backward from `dout` (`[batch * q_len, stride]`): `dq` into `dq`, and `dk`, `dv`
    /// into `dkv`'s key and value columns. `ds` is scratch of the probabilities' size.
    #[allow(clippy::too_many_arguments)]
    pub fn record_backward(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        dims: Dims,
        q: Mat,
        kv: KeyValues,
        probs: &wgpu::Buffer,
        dout: Mat,
        ds: &wgpu::Buffer,
        dq: Mat,
        dkv: KeyValues,
    ) {
        let rows = dims.batch * dims.heads * dims.q_len;
        if rows == 0 || dims.k_len == 0 {
            return;
        }
        let mut p = params(dims, q, kv, dout.stride);
        p.g_stride = dq.stride as u32;
        p.gq_col = dq.offset as u32;
        self.shader.dispatch(
            gpu,
            enc,
            "backward_rows",
            &[q.buf, kv.buf, probs, dout.buf, ds, dq.buf],
            &p,
            grid(rows as u32),
        );
        p.g_stride = dkv.stride as u32;
        p.gk_col = dkv.k_col as u32;
        p.gv_col = dkv.v_col as u32;
        self.shader.dispatch(
            gpu,
            enc,
            "backward_keys",
            &[q.buf, kv.buf, probs, dout.buf, ds, dkv.buf],
            &p,
            grid((dims.batch * dims.heads * dims.k_len) as u32),
        );
    }
}

/// One attention layer's results in the projection layouts: `out` and `dq` `[batch * q_len,
/// inner]`, `probs` `[batch, heads, q_len, k_len]`, `dkv` `[batch * k_len, 2 * inner]` (keys' then
/// values' gradients).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub out: Vec<f32>,
    pub probs: Vec<f32>,
    pub dq: Vec<f32>,
    pub dkv: Vec<f32>,
}

/// The inputs of [`run`] and [`reference`]: `q` `[batch * q_len, inner]`, `kv` `[batch * k_len,
/// 2 * inner]`, `dout` like `q`; biases as in [`Bias`].
pub struct Case<'a> {
    pub dims: Dims,
    pub q: &'a [f32],
    pub kv: &'a [f32],
    pub dout: &'a [f32],
    pub bias: Bias<'a>,
}

impl Case<'_> {
    fn inner(&self) -> usize {
        self.dims.heads * self.dims.d_kv
    }

    fn heads(&self, len: usize, stride: usize, col: usize) -> Heads {
        Heads {
            batch: self.dims.batch,
            len,
            heads: self.dims.heads,
            d_kv: self.dims.d_kv,
            stride,
            col,
        }
    }
}

/// Forward and backward through our kernel on slices (tests and self-checks).
pub async fn run(gpu: &Gpu, case: &Case<'_>) -> Result<Run, KernelError> {
    let d = case.dims;
    let inner = case.inner();
    let check = super::check_len;
    check(
        "q",
        case.q.len(),
        d.batch * d.q_len * inner,
        "[batch * q_len, inner]",
    )?;
    check(
        "kv",
        case.kv.len(),
        d.batch * d.k_len * 2 * inner,
        "[batch * k_len, 2 * inner]",
    )?;
    check(
        "dout",
        case.dout.len(),
        case.q.len(),
        "dout has the shape of q",
    )?;
    let k = AttentionKernel::new(gpu);
    let qb = upload(gpu, "q", case.q)?;
    let kvb = upload(gpu, "kv", case.kv)?;
    let dob = upload(gpu, "dout", case.dout)?;
    let position = case
        .bias
        .position
        .map(|p| upload(gpu, "position", p))
        .transpose()?;
    let mask = case
        .bias
        .key_mask
        .map(|m| upload(gpu, "key_mask", m))
        .transpose()?;
    let n_probs = d.batch * d.heads * d.q_len * d.k_len;
    let (probs, ds) = (zeros(gpu, "probs", n_probs), zeros(gpu, "ds", n_probs));
    let out = zeros(gpu, "out", case.q.len());
    let dq = zeros(gpu, "dq", case.q.len());
    let dkv = zeros(gpu, "dkv", case.kv.len());
    let kv = KeyValues {
        buf: &kvb,
        stride: 2 * inner,
        k_col: 0,
        v_col: inner,
    };
    let mut enc = gpu
        .wgpu_device()
        .create_command_encoder(&Default::default());
    let bias = GpuBias {
        position: position.as_ref(),
        key_mask: mask.as_ref(),
        causal: case.bias.causal,
    };
    let q = Mat::new(&qb, inner);
    k.record_forward(gpu, &mut enc, d, q, kv, bias, &probs, Mat::new(&out, inner));
    let dkv_view = KeyValues { buf: &dkv, ..kv };
    k.record_backward(
        gpu,
        &mut enc,
        d,
        q,
        kv,
        &probs,
        Mat::new(&dob, inner),
        &ds,
        Mat::new(&dq, inner),
        dkv_view,
    );
    gpu.queue().submit([enc.finish()]);
    Ok(Run {
        out: read_back(gpu, &out, case.q.len()).await?,
        probs: read_back(gpu, &probs, n_probs).await?,
        dq: read_back(gpu, &dq, case.q.len()).await?,
        dkv: read_back(gpu, &dkv, case.kv.len()).await?,
    })
}

/// The Rust twin on the same layouts: split heads, `crate::cpu::attention`, merge heads.
pub fn reference(case: &Case<'_>) -> Run {
    let d = case.dims;
    let inner = case.inner();
    let q = cpu::split_heads(case.q, case.heads(d.q_len, inner, 0));
    let k = cpu::split_heads(case.kv, case.heads(d.k_len, 2 * inner, 0));
    let v = cpu::split_heads(case.kv, case.heads(d.k_len, 2 * inner, inner));
    let dout = cpu::split_heads(case.dout, case.heads(d.q_len, inner, 0));
    let f = cpu::forward(&q, &k, &v, d, case.bias);
    let (dq, dk, dv) = cpu::backward(&q, &k, &v, &f.probs, &dout, d);
    let mut out = vec![0.0; case.q.len()];
    cpu::merge_heads(&f.out, &mut out, case.heads(d.q_len, inner, 0));
    let mut dq_rows = vec![0.0; case.q.len()];
    cpu::merge_heads(&dq, &mut dq_rows, case.heads(d.q_len, inner, 0));
    let mut dkv = vec![0.0; case.kv.len()];
    cpu::merge_heads(&dk, &mut dkv, case.heads(d.k_len, 2 * inner, 0));
    cpu::merge_heads(&dv, &mut dkv, case.heads(d.k_len, 2 * inner, inner));
    Run {
        out,
        probs: f.probs,
        dq: dq_rows,
        dkv,
    }
}
