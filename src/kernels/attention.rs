//! T5 attention with relative-position bias and padding / causal masks, softmax fused
//! (`shaders/attention.wgsl`), forward and backward with respect to q, k and v. Heads are read
//! from the projection layouts in place. The Rust twin is `crate::cpu::attention`. CPU adapters
//! run the same computation as small dense products (`shaders/attention_tiles.wgsl`).

use super::matmul::Mat;
use super::{Binding, KernelError, Shader, grid, read_back, upload, zeros};
use crate::cpu::attention::{self as cpu, Bias, Dims, Heads};
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/attention.wgsl");
pub const TILES_SHADER: &str = include_str!("../../shaders/attention_tiles.wgsl");

/// Which attention shader runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `attention.wgsl`: a workgroup of 64 invocations per query (or key) row, reductions in
    /// workgroup memory. GPUs.
    Workgroups,
    /// `attention_tiles.wgsl`: scores, softmax and the probability-weighted sums as separate
    /// dispatches, each invocation a register tile, no workgroup memory. CPU adapters. Shapes it
    /// cannot take (d_kv, a row stride or a column offset not a multiple of 4) run `Workgroups`.
    Tiles,
}

impl Variant {
    /// Measured with `bench kernels` on lavapipe at the tuning step's shapes (README): `Tiles` on
    /// native CPU adapters, `Workgroups` elsewhere. `METAPROMPT_ATTENTION=workgroups|tiles`
    /// (native) overrides it for benchmarks.
    pub fn for_adapter(gpu: &Gpu) -> Self {
        match super::variant_override("METAPROMPT_ATTENTION", &["workgroups", "tiles"]) {
            Some("tiles") => Variant::Tiles,
            Some(_) => Variant::Workgroups,
            None if super::cpu_variants(gpu) => Variant::Tiles,
            None => Variant::Workgroups,
        }
    }
}

/// Keys and values side by side in one GPU buffer.
pub type KeyValues<'a> = crate::graph::KeyValues<'a, wgpu::Buffer>;

impl<'a> KeyValues<'a> {
    /// The keys' (`k` true) or values' rows for the tile shader, `len` per batch.
    fn rows(self, len: usize, k: bool) -> HeadRows<'a> {
        HeadRows {
            buf: self.buf,
            len,
            stride: self.stride,
            col: if k { self.k_col } else { self.v_col },
        }
    }
}

/// Biases as buffers: position `[heads, q_len, k_len]`, key mask `[batch, k_len]` (1 = attend).
pub type GpuBias<'a> = crate::graph::Bias<'a, wgpu::Buffer>;

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

/// Parameters of `attention_tiles.wgsl` (see its `Params`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TileParams {
    batch: u32,
    heads: u32,
    m: u32,
    n: u32,
    t: u32,
    d_kv: u32,
    x_len: u32,
    x_stride: u32,
    x_col: u32,
    y_len: u32,
    y_stride: u32,
    y_col: u32,
    o_stride: u32,
    o_col: u32,
    p_size: u32,
    p_rs: u32,
    p_ts: u32,
    flags: u32,
    tiles_m: u32,
    tiles_n: u32,
    groups_x: u32,
    _pad: [u32; 3],
}

/// A workgroup's rows, keys (`scores`) and columns (`mix`) in `attention_tiles.wgsl`.
const TILE_ROWS: usize = 32;
const SCORE_COLS: usize = 32;
const MIX_COLS: usize = 64;

/// A head's rows in a projection buffer, as `attention_tiles.wgsl` reads them: row r of batch b
/// at `(b * len + r) * stride + col + h * d_kv`.
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    buf: &'a wgpu::Buffer,
    len: usize,
    stride: usize,
    col: usize,
}

impl<'a> HeadRows<'a> {
    fn of(m: Mat<'a>, len: usize) -> Self {
        Self {
            buf: m.buf,
            len,
            stride: m.stride,
            col: m.offset,
        }
    }
}

/// The CPU-adapter shader and a placeholder for the bindings an entry point does not read.
struct Tiles {
    shader: Shader,
    unused: wgpu::Buffer,
}

impl Tiles {
    fn dims_params(d: Dims, m: usize, n: usize, tiles_n: usize) -> TileParams {
        TileParams {
            batch: d.batch as u32,
            heads: d.heads as u32,
            m: m as u32,
            n: n as u32,
            d_kv: d.d_kv as u32,
            tiles_m: m.div_ceil(TILE_ROWS) as u32,
            tiles_n: tiles_n as u32,
            ..Default::default()
        }
    }

    /// `out[b, h, i, j] = x_i . y_j` over the head's d_kv columns (+ biases and masks given in
    /// `flags` with `bias` and `mask`).
    #[allow(clippy::too_many_arguments)] // operands of one dispatch
    fn scores(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        d: Dims,
        x: HeadRows,
        y: HeadRows,
        (flags, bias, mask): (u32, Option<&wgpu::Buffer>, Option<&wgpu::Buffer>),
        out: &wgpu::Buffer,
    ) {
        let tiles_n = d.k_len.div_ceil(SCORE_COLS);
        let mut p = Self::dims_params(d, d.q_len, d.k_len, tiles_n);
        (p.x_len, p.x_stride, p.x_col) = (x.len as u32, x.stride as u32, x.col as u32);
        (p.y_len, p.y_stride, p.y_col) = (y.len as u32, y.stride as u32, y.col as u32);
        p.flags = flags;
        let groups = grid((d.batch * d.heads) as u32 * p.tiles_m * p.tiles_n);
        p.groups_x = groups.0;
        let what = || {
            let name = format!(
                "attention_tiles scores [{}x{}]·[{}x{}] x{}",
                d.q_len,
                d.d_kv,
                d.d_kv,
                d.k_len,
                d.batch * d.heads
            );
            (
                name,
                2.0 * (d.batch * d.heads * d.q_len * d.k_len * d.d_kv) as f64,
            )
        };
        let (bias, mask) = (bias.unwrap_or(&self.unused), mask.unwrap_or(&self.unused));
        let buffers = [x.buf, y.buf, bias, mask, out];
        self.shader
            .dispatch_named(gpu, enc, "scores", &buffers, &p, groups, what);
    }

    /// A row pass (`softmax` or `score_grads`) over `[batch, heads, q_len, k_len]` in `out`.
    fn rows(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        entry: &str,
        d: Dims,
        probs: Option<&wgpu::Buffer>,
        out: &wgpu::Buffer,
    ) {
        let mut p = Self::dims_params(d, d.q_len, d.k_len, 1);
        let groups = grid((d.batch * d.heads * d.q_len).div_ceil(8) as u32);
        p.groups_x = groups.0;
        let buffers = [
            &self.unused,
            &self.unused,
            probs.unwrap_or(&self.unused),
            &self.unused,
            out,
        ];
        self.shader.dispatch(gpu, enc, entry, &buffers, &p, groups);
    }

    /// `o[b, r, h, :] = sum_t P[b, h, r, t] v[b, t, h, :]` for r < `m`, t < `t`, with P's
    /// element (r, t) at `r * rs + t * ts` in its head's `[q_len, k_len]` block.
    #[allow(clippy::too_many_arguments)]
    fn mix(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        d: Dims,
        (m, t): (usize, usize),
        (probs, rs, ts): (&wgpu::Buffer, usize, usize),
        v: HeadRows,
        o: Mat,
    ) {
        let mut p = Self::dims_params(d, m, d.d_kv, d.d_kv.div_ceil(MIX_COLS));
        p.t = t as u32;
        (p.y_len, p.y_stride, p.y_col) = (v.len as u32, v.stride as u32, v.col as u32);
        (p.o_stride, p.o_col) = (o.stride as u32, o.offset as u32);
        (p.p_size, p.p_rs, p.p_ts) = ((d.q_len * d.k_len) as u32, rs as u32, ts as u32);
        let groups = grid((d.batch * d.heads) as u32 * p.tiles_m * p.tiles_n);
        p.groups_x = groups.0;
        let what = || {
            let name = format!(
                "attention_tiles mix [{m}x{t}]·[{t}x{}] x{}",
                d.d_kv,
                d.batch * d.heads
            );
            (name, 2.0 * (d.batch * d.heads * m * t * d.d_kv) as f64)
        };
        let buffers = [&self.unused, v.buf, probs, &self.unused, o.buf];
        self.shader
            .dispatch_named(gpu, enc, "mix", &buffers, &p, groups, what);
    }
}

pub struct AttentionKernel {
    shader: Shader,
    tiles: Option<Tiles>,
}

impl AttentionKernel {
    pub fn new(gpu: &Gpu) -> Self {
        Self::with_variant(gpu, Variant::for_adapter(gpu))
    }

    pub fn with_variant(gpu: &Gpu, variant: Variant) -> Self {
        use Binding::*;
        Self {
            tiles: (variant == Variant::Tiles && super::lanes8(gpu)).then(|| Tiles {
                shader: Shader::new(
                    gpu,
                    "attention_tiles.wgsl",
                    &super::subgroup_source(TILES_SHADER),
                    &[Read, Read, Read, Read, ReadWrite],
                    &["scores", "softmax", "score_grads", "mix"],
                ),
                unused: zeros(gpu, "unused binding", 4),
            }),
            shader: Shader::new(
                gpu,
                "attention.wgsl",
                SHADER,
                &[Read, Read, Read, Read, ReadWrite, ReadWrite],
                &["forward", "backward_rows", "backward_keys"],
            ),
        }
    }

    /// The tile shader, if this kernel has it and the operands suit its vec4 reads.
    fn tiles_for(&self, d: Dims, strides_and_offsets: &[usize]) -> Option<&Tiles> {
        let fits = d.d_kv > 0
            && std::iter::once(d.d_kv)
                .chain(strides_and_offsets.iter().copied())
                .all(|v| v.is_multiple_of(4));
        self.tiles.as_ref().filter(|_| fits)
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
        let flags = bias.position.is_some() as u32
            | (bias.key_mask.is_some() as u32) << 1
            | (bias.causal as u32) << 2;
        let vec4_operands = [q.stride, q.offset, kv.stride, kv.k_col, kv.v_col];
        if let Some(t) = self.tiles_for(dims, &vec4_operands) {
            let d = dims;
            let (k, v) = (kv.rows(d.k_len, true), kv.rows(d.k_len, false));
            let bias = (flags, bias.position, bias.key_mask);
            t.scores(gpu, enc, d, HeadRows::of(q, d.q_len), k, bias, probs);
            t.rows(gpu, enc, "softmax", d, None, probs);
            t.mix(gpu, enc, d, (d.q_len, d.k_len), (probs, d.k_len, 1), v, out);
            return;
        }
        let mut p = params(dims, q, kv, out.stride);
        p.flags = flags;
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
        let vec4_operands = [
            q.stride,
            q.offset,
            kv.stride,
            kv.k_col,
            kv.v_col,
            dout.stride,
            dout.offset,
        ];
        if let Some(t) = self.tiles_for(dims, &vec4_operands) {
            let d = dims;
            let (k, v) = (kv.rows(d.k_len, true), kv.rows(d.k_len, false));
            let (q, dout) = (HeadRows::of(q, d.q_len), HeadRows::of(dout, d.q_len));
            // dp = dout v^T, then ds = p (dp - rowsum(p dp)) in place
            t.scores(gpu, enc, d, dout, v, (0, None, None), ds);
            t.rows(gpu, enc, "score_grads", d, Some(probs), ds);
            let (qk, kq) = ((d.q_len, d.k_len), (d.k_len, d.q_len));
            // dq = ds k, dk = ds^T q, dv = p^T dout
            t.mix(gpu, enc, d, qk, (ds, d.k_len, 1), k, dq);
            let key_grads = |col| Mat::new(dkv.buf, dkv.stride).col(col);
            t.mix(gpu, enc, d, kq, (ds, 1, d.k_len), q, key_grads(dkv.k_col));
            t.mix(
                gpu,
                enc,
                d,
                kq,
                (probs, 1, d.k_len),
                dout,
                key_grads(dkv.v_col),
            );
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

/// Forward and backward through our kernel on slices (tests and self-checks), in the adapter's
/// variant.
pub async fn run(gpu: &Gpu, case: &Case<'_>) -> Result<Run, KernelError> {
    run_variant(gpu, case, Variant::for_adapter(gpu)).await
}

/// [`run`] in a given variant.
pub async fn run_variant(gpu: &Gpu, case: &Case<'_>, variant: Variant) -> Result<Run, KernelError> {
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
    let k = AttentionKernel::with_variant(gpu, variant);
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

/// The Rust twin on the same layouts: `crate::cpu::attention` reading the heads in place, its
/// head-major results merged back into rows.
pub fn reference(case: &Case<'_>) -> Run {
    let d = case.dims;
    let inner = case.inner();
    let rows = |data, stride, col| cpu::HeadRows { data, stride, col };
    let q = rows(case.q, inner, 0);
    let (k, v) = (rows(case.kv, 2 * inner, 0), rows(case.kv, 2 * inner, inner));
    let f = cpu::forward(q, k, v, d, case.bias);
    let (dq, dk, dv) = cpu::backward(q, k, v, &f.probs, rows(case.dout, inner, 0), d);
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
