//! A bottleneck adapter's kernels: the f32 product (`shaders/matmul_f32.wgsl`, any operand read
//! transposed: forward, input gradient and weight gradient from one entry point) and its
//! element-wise and reduction parts (`shaders/adapter.wgsl`). The Rust twins are
//! `crate::cpu::gemm::matmul` and `crate::cpu::adapter`.

use super::{Binding, KernelError, Shader, grid, groups_for, read_back, upload};
use crate::gpu::Gpu;
use crate::graph::Mat;
use burn::tensor::wgpu::wgpu;

pub const GEMM_SHADER: &str = include_str!("../../shaders/matmul_f32.wgsl");
pub const SHADER: &str = include_str!("../../shaders/adapter.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_rs: u32,
    groups_x: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    extra: u32,
}

/// An operand of [`AdapterKernels::gemm`]: a matrix in a buffer, read transposed or not.
pub struct Operand<'a> {
    pub mat: Mat<'a, wgpu::Buffer>,
    pub trans: bool,
}

impl Operand<'_> {
    /// (row stride, column stride) of the operand as read.
    fn strides(&self) -> (u32, u32) {
        let s = self.mat.stride as u32;
        if self.trans { (1, s) } else { (s, 1) }
    }
}

/// Which entry point of `shaders/matmul_f32.wgsl` runs the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmVariant {
    /// Workgroup-memory tiles (GPUs).
    Tiles,
    /// No workgroup memory (CPU adapters; `bench kernels --adapters` times it on lavapipe).
    Direct,
}

impl GemmVariant {
    /// The variant for this adapter (`METAPROMPT_GEMM_F32=tiles|direct` overrides natively).
    pub fn for_adapter(gpu: &Gpu) -> Self {
        match super::variant_override("METAPROMPT_GEMM_F32", &["tiles", "direct"]) {
            Some("tiles") => Self::Tiles,
            Some(_) => Self::Direct,
            None if gpu.report().is_fallback && cfg!(not(target_arch = "wasm32")) => Self::Direct,
            None => Self::Tiles,
        }
    }
}

pub struct AdapterKernels {
    gemm: Shader,
    parts: Shader,
    variant: GemmVariant,
}

impl AdapterKernels {
    pub fn new(gpu: &Gpu) -> Self {
        Self::with_variant(gpu, GemmVariant::for_adapter(gpu))
    }

    pub fn with_variant(gpu: &Gpu, variant: GemmVariant) -> Self {
        use Binding::*;
        Self {
            variant,
            gemm: Shader::new(
                gpu,
                "matmul_f32.wgsl",
                GEMM_SHADER,
                &[Read, Read, ReadWrite],
                &["gemm", "gemm_direct"],
            ),
            parts: Shader::new(
                gpu,
                "adapter.wgsl",
                SHADER,
                &[Read, Read, ReadWrite],
                &["add_bias", "relu", "relu_backward", "column_sums", "dot"],
            ),
        }
    }

    /// Records `c (+)= op(a) op(b)`, `op(a)` `[m, k]`, `op(b)` `[k, n]`, `c` row-major.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        a: Operand,
        b: Operand,
        c: Mat<wgpu::Buffer>,
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) {
        if m * n == 0 {
            return;
        }
        let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides(), b.strides());
        let (entry, groups) = match self.variant {
            GemmVariant::Tiles => ("gemm", (n.div_ceil(16) as u32, m.div_ceil(16) as u32)),
            GemmVariant::Direct => ("gemm_direct", groups_for(n * m.div_ceil(4), 64)),
        };
        let p = GemmParams {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            accumulate: accumulate as u32,
            a_off: a.mat.offset as u32,
            a_rs,
            a_cs,
            b_off: b.mat.offset as u32,
            b_rs,
            b_cs,
            c_off: c.offset as u32,
            c_rs: c.stride as u32,
            groups_x: groups.0,
            _pad: [0; 3],
        };
        let buffers = [a.mat.buf, b.mat.buf, c.buf];
        let what = || (format!("matmul_f32 {m}x{k}x{n}"), 2.0 * (m * k * n) as f64);
        self.gemm
            .dispatch_named(gpu, enc, entry, &buffers, &p, groups, what);
    }

    /// Records one element-wise or reduction entry point of `shaders/adapter.wgsl` over a
    /// `[rows, cols]` operand: `add_bias` (y += x broadcast over rows), `relu` (y = relu(x)),
    /// `relu_backward` (y *= x > 0), `column_sums` (y[extra + c] = column sums of x), `dot`
    /// (y[extra] = x . z).
    #[allow(clippy::too_many_arguments)]
    pub fn part(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        entry: &'static str,
        x: &wgpu::Buffer,
        z: &wgpu::Buffer,
        y: &wgpu::Buffer,
        (rows, cols): (usize, usize),
        extra: u32,
    ) {
        if rows * cols == 0 {
            return;
        }
        let groups = match entry {
            "dot" => grid(1),
            "column_sums" => groups_for(cols, 256),
            _ => groups_for(rows * cols, 256),
        };
        let p = Params {
            rows: rows as u32,
            cols: cols as u32,
            groups_x: groups.0,
            extra,
        };
        self.parts.dispatch(gpu, enc, entry, &[x, z, y], &p, groups);
    }

    /// On slices: `c (+)= op(a) op(b)` (tests).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_gemm(
        &self,
        gpu: &Gpu,
        a: (&[f32], usize, bool),
        b: (&[f32], usize, bool),
        c: &[f32],
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) -> Result<Vec<f32>, KernelError> {
        let (ab, bb, cb) = (
            upload(gpu, "a", a.0)?,
            upload(gpu, "b", b.0)?,
            upload(gpu, "c", c)?,
        );
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        let op = |buf, (_, stride, trans): (&[f32], usize, bool)| Operand {
            mat: Mat::new(buf, stride),
            trans,
        };
        self.gemm(
            gpu,
            &mut enc,
            op(&ab, a),
            op(&bb, b),
            Mat::new(&cb, n),
            (m, k, n),
            accumulate,
        );
        gpu.queue().submit([enc.finish()]);
        read_back(gpu, &cb, c.len()).await
    }

    /// On slices: one entry point of [`Self::part`], `y` as it is after (tests).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_part(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        x: &[f32],
        z: &[f32],
        y: &[f32],
        (rows, cols): (usize, usize),
        extra: u32,
    ) -> Result<Vec<f32>, KernelError> {
        let (xb, zb, yb) = (
            upload(gpu, "x", x)?,
            upload(gpu, "z", z)?,
            upload(gpu, "y", y)?,
        );
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.part(gpu, &mut enc, entry, &xb, &zb, &yb, (rows, cols), extra);
        gpu.queue().submit([enc.finish()]);
        read_back(gpu, &yb, y.len()).await
    }
}
