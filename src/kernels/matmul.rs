//! Matmul of f32 activations by int8 per-tensor-quantised weights (`shaders/matmul_q8.wgsl`): the
//! forward product `x W` and the input gradient `dy W^T` of every linear layer of the frozen T5.
//! Weights stay as the bytes the checkpoint ships (4x fewer than f32) and are dequantised in the
//! kernel. The Rust twin is the dequantised weight through `crate::cpu::gemm`.

use super::{Binding, KernelError, Shader, grid, groups_for, read_back, upload, zeros};
use crate::cpu::gemm::{View, product};
use crate::gpu::Gpu;
use crate::model::checkpoint::Stored;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/matmul_q8.wgsl");
/// The same product for CPU adapters ([`Block::Rows`]).
pub const ROWS_SHADER: &str = include_str!("../../shaders/matmul_q8_rows.wgsl");

/// A weight `[rows, cols]` (`[in, out]`) as unsigned bytes, dequantised as
/// `(byte - zero) * scale` with one `[scale, zero]` per column.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    pub bytes: Vec<u8>,
    pub quant: Vec<[f32; 2]>,
}

impl QuantMatrix {
    /// PyTorch `[out, in]` weights side by side as one `[in, sum(out)]` matrix (the fused q/k/v
    /// and gate/linear projections), each keeping its own scale and zero point. `scale` multiplies
    /// every scale (the tied head's `d_model^-0.5`).
    pub fn fuse(parts: &[(&str, Stored)], inp: usize, scale: f32) -> Result<Self, KernelError> {
        let mut cols = 0;
        let mut sources = Vec::with_capacity(parts.len());
        for (name, stored) in parts {
            let Stored::Quantized {
                q,
                scale: s,
                zero_point,
            } = stored
            else {
                return Err(KernelError::NotQuantized {
                    tensor: name.to_string(),
                });
            };
            if inp == 0 || q.len() % inp != 0 {
                return Err(KernelError::Shape {
                    tensor: "weight",
                    expected: inp,
                    got: q.len(),
                    why: format!("`{name}` must be [out, {inp}]"),
                });
            }
            // int8 is shifted into 0..=255 (with its zero point), uint8 kept as is.
            let shift = if q.iter().any(|&v| v < 0) { 128 } else { 0 };
            sources.push((q, *s * scale, (zero_point + shift) as f32, shift));
            cols += q.len() / inp;
        }
        let mut bytes = vec![0u8; inp * cols];
        let mut quant = Vec::with_capacity(cols);
        let mut col = 0;
        for (q, s, z, shift) in sources {
            let out = q.len() / inp;
            for (o, row) in q.chunks_exact(inp).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    bytes[i * cols + col + o] = (v + shift) as u8;
                }
            }
            quant.extend(std::iter::repeat_n([s, z], out));
            col += out;
        }
        Ok(Self {
            rows: inp,
            cols,
            bytes,
            quant,
        })
    }

    /// The f32 matrix the kernel multiplies by (the reference side of parity tests).
    pub fn dequantize(&self) -> Vec<f32> {
        self.bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let [s, z] = self.quant[i % self.cols];
                (b as f32 - z) * s
            })
            .collect()
    }

    /// Uploads the bytes (and, for [`Block::Rows`], a transposed copy for `dy W^T`).
    pub fn upload(
        &self,
        gpu: &Gpu,
        tensor: &'static str,
        block: Block,
    ) -> Result<GpuQuant, KernelError> {
        let words = |bytes: &[u8]| {
            let mut words = vec![0u32; bytes.len().div_ceil(4)];
            for (i, &b) in bytes.iter().enumerate() {
                words[i / 4] |= (b as u32) << (8 * (i % 4));
            }
            words
        };
        let transposed = if block == Block::Rows && self.rows.is_multiple_of(4) {
            let mut t = vec![0u8; self.bytes.len()];
            for (i, row) in self.bytes.chunks_exact(self.cols).enumerate() {
                for (j, &b) in row.iter().enumerate() {
                    t[j * self.rows + i] = b;
                }
            }
            Some(upload(gpu, tensor, &words(&t))?)
        } else {
            None
        };
        Ok(GpuQuant {
            rows: self.rows,
            cols: self.cols,
            bytes: upload(gpu, tensor, &words(&self.bytes))?,
            quant: upload(gpu, tensor, &self.quant)?,
            transposed,
        })
    }
}

/// A [`QuantMatrix`] on the GPU.
pub struct GpuQuant {
    pub rows: usize,
    pub cols: usize,
    bytes: wgpu::Buffer,
    quant: wgpu::Buffer,
    /// W^T's bytes (`[cols, rows]`), for [`Block::Rows`]'s `dy W^T`.
    transposed: Option<wgpu::Buffer>,
}

impl GpuQuant {
    /// Bytes this weight holds on the GPU (the transposed copy included).
    pub fn gpu_bytes(&self) -> u64 {
        let t = self.transposed.as_ref().map_or(0, |b| b.size());
        self.bytes.size() + self.quant.size() + t
    }
}

/// An f32 matrix inside a GPU buffer.
pub type Mat<'a> = crate::graph::Mat<'a, wgpu::Buffer>;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    a_off: u32,
    ldc: u32,
    c_off: u32,
    w_cols: u32,
    trans: u32,
    accumulate: u32,
    groups_x: u32,
    splits: u32,
    k_chunk: u32,
    _pad: [u32; 3],
}

/// `shaders/matmul_q8_rows.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowsParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    a_off: u32,
    ldc: u32,
    c_off: u32,
    w_cols: u32,
    accumulate: u32,
    groups_x: u32,
    _pad: [u32; 2],
}

/// How many outputs one invocation of `shaders/matmul_q8.wgsl` accumulates: both cover a 64 x 64
/// tile per workgroup; 8 x 8 reads half as much workgroup memory per FMA with a quarter of the
/// invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// 4 x 4 outputs, 256 invocations per workgroup (entry point `main`).
    B4,
    /// 8 x 8 outputs, 64 invocations per workgroup (entry point `main8`).
    B8,
    /// CPU adapters: 32 rows x 8 columns per invocation, 8 invocations per workgroup, no
    /// workgroup memory (`shaders/matmul_q8_rows.wgsl`). Products it cannot take (a row stride,
    /// offset, K or byte row not a multiple of 4) run `main8`.
    Rows,
}

impl Block {
    fn entry(self) -> &'static str {
        match self {
            Block::B4 => "main",
            Block::B8 => "main8",
            // the products `Rows` cannot take
            Block::Rows => "main8",
        }
    }

    /// The block for an adapter. Measured with `bench kernels` at the tuning step's shapes: on an
    /// H100, 4 x 4 runs the [672 x 512] x [512 x 2048] product at 10.1 TFLOP/s against 4.2 for
    /// 8 x 8 (a quarter of the invocations leaves the GPU short of warps). On lavapipe (CPU) the
    /// same product ran at 4 GFLOP/s with 8 x 8 (every workgroup-memory access is a loop over the
    /// SIMD lanes, every barrier a coroutine switch) and runs at 15 GFLOP/s with `Rows`
    /// (`results/bench/lavapipe.txt`). So `Rows` on native CPU adapters with 8-lane subgroups,
    /// 8 x 8 on other CPU adapters (SwiftShader), 4 x 4 on GPUs.
    /// `METAPROMPT_MATMUL_BLOCK=4x4|8x8|rows` (native) overrides it for benchmarks.
    pub fn for_adapter(gpu: &Gpu) -> Self {
        match super::variant_override("METAPROMPT_MATMUL_BLOCK", &["4x4", "8x8", "rows"]) {
            Some("4x4") => Block::B4,
            Some("8x8") => Block::B8,
            Some(_) => Block::Rows,
            None if super::cpu_variants(gpu) => Block::Rows,
            None if gpu.report().is_fallback => Block::B8,
            None => Block::B4,
        }
    }
}

pub struct Matmul {
    shader: Shader,
    rows: Option<Shader>,
    block: Block,
    /// Split-K's partial products, shared by every product: dispatches run in recording order,
    /// so one product's `reduce` has read it before the next `main` writes it. Grown on demand
    /// (a replaced buffer lives on in the bind groups that still use it).
    scratch: std::sync::Mutex<Option<wgpu::Buffer>>,
}

/// Workgroups a product should fill before split-K stops paying: two per streaming multiprocessor
/// of a large GPU. WebGPU does not tell how many cores an adapter has.
const TARGET_GROUPS: usize = 256;
/// Tile and K step of `shaders/matmul_q8.wgsl`.
const TILE: usize = 64;
const BK: usize = 16;

/// How many K chunks (and of what length, a multiple of the K step) a `[m, k] x [k, n]` product
/// is cut into: enough to fill [`TARGET_GROUPS`] workgroups, each chunk at least 8 K steps.
pub fn split_k(m: usize, n: usize, k: usize) -> (usize, usize) {
    let tiles = m.div_ceil(TILE) * n.div_ceil(TILE);
    let steps = k.div_ceil(BK).max(1);
    let want = if 2 * tiles >= TARGET_GROUPS {
        1
    } else {
        (TARGET_GROUPS / tiles).min(steps / 8).max(1)
    };
    let chunk = steps.div_ceil(want) * BK;
    (k.div_ceil(chunk).max(1), chunk)
}

impl Matmul {
    pub fn new(gpu: &Gpu) -> Self {
        Self::with_block(gpu, Block::for_adapter(gpu))
    }

    pub fn with_block(gpu: &Gpu, block: Block) -> Self {
        use Binding::*;
        Self {
            block,
            shader: Shader::new(
                gpu,
                "matmul_q8.wgsl",
                SHADER,
                &[Read, Read, Read, ReadWrite, ReadWrite],
                &["main", "main8", "reduce"],
            ),
            rows: (block == Block::Rows && super::lanes8(gpu)).then(|| {
                Shader::new(
                    gpu,
                    "matmul_q8_rows.wgsl",
                    &super::subgroup_source(ROWS_SHADER),
                    &[Read, Read, Read, ReadWrite],
                    &["main", "main_t"],
                )
            }),
            scratch: Default::default(),
        }
    }

    /// The split-K scratch buffer, at least `len` floats.
    fn scratch(&self, gpu: &Gpu, len: usize) -> wgpu::Buffer {
        let mut s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        match &*s {
            Some(b) if b.size() >= (len.max(1) * 4) as u64 => b.clone(),
            _ => {
                let b = zeros(gpu, "split-K partial products", len);
                *s = Some(b.clone());
                b
            }
        }
    }

    /// Records `c (+)= a W` (`trans` false: a is `[m, W.rows]`) or `c (+)= a W^T` (`trans`
    /// true: a is `[m, W.cols]`).
    #[allow(clippy::too_many_arguments)] // operands and flags of one dispatch
    pub fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        a: Mat,
        m: usize,
        w: &GpuQuant,
        trans: bool,
        c: Mat,
        accumulate: bool,
    ) {
        let (k, n) = if trans {
            (w.cols, w.rows)
        } else {
            (w.rows, w.cols)
        };
        if m == 0 || n == 0 {
            return;
        }
        // The kernel profile's name and floating-point operations for this product.
        let profile_name = |shader: &str| {
            let op = if trans { "dy W^T" } else { "x W" };
            let name = format!("{shader} {op} [{m}x{k}]·[{k}x{n}]");
            (name, 2.0 * (m * n * k) as f64)
        };
        let rows_bytes = match (trans, &w.transposed) {
            (false, _) => Some(&w.bytes),
            (true, t) => t.as_ref(),
        };
        let fits = [a.offset, a.stride, k, n]
            .iter()
            .all(|v| v.is_multiple_of(4));
        if let (Some(rows), Some(bytes), true) = (&self.rows, rows_bytes, fits) {
            let groups = grid((m.div_ceil(32) * n.div_ceil(64)) as u32);
            let params = RowsParams {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                lda: a.stride as u32,
                a_off: a.offset as u32,
                ldc: c.stride as u32,
                c_off: c.offset as u32,
                w_cols: n as u32,
                accumulate: accumulate as u32,
                groups_x: groups.0,
                _pad: [0; 2],
            };
            let buffers = [a.buf, bytes, &w.quant, c.buf];
            let what = || profile_name("matmul_q8_rows");
            let entry = if trans { "main_t" } else { "main" };
            rows.dispatch_named(gpu, enc, entry, &buffers, &params, groups, what);
            return;
        }
        let (splits, k_chunk) = split_k(m, n, k);
        let groups = grid((m.div_ceil(TILE) * n.div_ceil(TILE) * splits) as u32);
        let mut params = Params {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            lda: a.stride as u32,
            a_off: a.offset as u32,
            ldc: c.stride as u32,
            c_off: c.offset as u32,
            w_cols: w.cols as u32,
            trans: trans as u32,
            accumulate: accumulate as u32,
            groups_x: groups.0,
            splits: splits as u32,
            k_chunk: k_chunk as u32,
            _pad: [0; 3],
        };
        let scratch = self.scratch(gpu, if splits > 1 { splits * m * n } else { 1 });
        let buffers = [a.buf, &w.bytes, &w.quant, c.buf, &scratch];
        let what = || profile_name("matmul_q8");
        self.shader.dispatch_named(
            gpu,
            enc,
            self.block.entry(),
            &buffers,
            &params,
            groups,
            what,
        );
        if splits > 1 {
            let groups = groups_for(m * n, 256);
            params.groups_x = groups.0;
            let what = || (format!("matmul_q8 split-K reduce ({splits} chunks)"), 0.0);
            self.shader
                .dispatch_named(gpu, enc, "reduce", &buffers, &params, groups, what);
        }
    }

    /// `a W` or `a W^T` (+ `c`) on slices: uploads, runs, reads back (tests and self-checks).
    pub async fn run(
        &self,
        gpu: &Gpu,
        a: &[f32],
        m: usize,
        w: &QuantMatrix,
        trans: bool,
        c: Option<&[f32]>,
    ) -> Result<Vec<f32>, KernelError> {
        let (k, n) = if trans {
            (w.cols, w.rows)
        } else {
            (w.rows, w.cols)
        };
        super::check_len("a", a.len(), m * k, format!("a must be [{m}, {k}]"))?;
        let wq = w.upload(gpu, "w", self.block)?;
        let ab = upload(gpu, "a", a)?;
        let cb = match c {
            Some(c) => {
                super::check_len("c", c.len(), m * n, format!("c must be [{m}, {n}]"))?;
                upload(gpu, "c", c)?
            }
            None => zeros(gpu, "c", m * n),
        };
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.record(
            gpu,
            &mut enc,
            Mat::new(&ab, k),
            m,
            &wq,
            trans,
            Mat::new(&cb, n),
            c.is_some(),
        );
        gpu.queue().submit([enc.finish()]);
        read_back(gpu, &cb, m * n).await
    }
}

/// Reference twin: `a W` or `a W^T` (+ `c`) with the dequantised weight.
pub fn reference(a: &[f32], m: usize, w: &QuantMatrix, trans: bool, c: Option<&[f32]>) -> Vec<f32> {
    let deq = w.dequantize();
    let wv = View::new(&deq, w.rows, w.cols);
    let wv = if trans { wv.t() } else { wv };
    let mut out = product(View::new(a, m, wv.rows), wv);
    if let Some(c) = c {
        out.iter_mut().zip(c).for_each(|(o, c)| *o += c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_k_fills_the_gpu_only_where_tiles_are_few() {
        // The LM head's input gradient: 8 tiles over K = 32,128.
        let (splits, chunk) = split_k(32, 512, 32128);
        assert_eq!((splits, chunk % BK), (32, 0));
        assert!(splits * chunk >= 32128 && (splits - 1) * chunk < 32128);
        // Encoder products have tiles enough.
        assert_eq!(split_k(672, 2048, 512).0, 1);
        // Short K is never cut below 8 K steps.
        assert_eq!(split_k(32, 512, 384).0, 3);
        assert_eq!(split_k(1, 1, 1), (1, BK));
        for (m, n, k) in [(33, 70, 1000), (5, 40, 1500), (3, 7, 100_000)] {
            let (s, c) = split_k(m, n, k);
            assert!(
                s > 1 && s * c >= k && (s - 1) * c < k,
                "{m} {n} {k}: {s} x {c}"
            );
        }
    }

    #[test]
    fn fuse_keeps_each_parts_quantisation_and_transposes() {
        // Two [out=2, in=3] weights: one int8, one uint8.
        let a = Stored::Quantized {
            q: vec![-128, 0, 127, 1, 2, 3],
            scale: 0.5,
            zero_point: 0,
        };
        let b = Stored::Quantized {
            q: vec![10, 20, 30, 40, 50, 60],
            scale: 2.0,
            zero_point: 10,
        };
        let f = QuantMatrix::fuse(&[("a", a.clone()), ("b", b.clone())], 3, 1.0).unwrap();
        assert_eq!((f.rows, f.cols), (3, 4));
        let deq = f.dequantize();
        let (da, db) = (a.dequantize(), b.dequantize());
        for i in 0..3 {
            for o in 0..2 {
                assert_eq!(deq[i * 4 + o], da[o * 3 + i]);
                assert_eq!(deq[i * 4 + 2 + o], db[o * 3 + i]);
            }
        }
        let err = QuantMatrix::fuse(&[("f", Stored::F32(vec![1.0; 3]))], 3, 1.0).unwrap_err();
        assert!(err.to_string().contains("`f`"), "{err}");
    }
}
