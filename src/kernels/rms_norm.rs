//! T5's layer norm (RMS norm, no mean, no bias): WGSL kernel `shaders/rms_norm.wgsl`, its Rust
//! reference twin, and the same op written with burn's generic tensor ops.

use super::{Binding, KernelError, Shader, check_len, grid, read_back, upload, zeros};
use crate::gpu::Gpu;
use burn::tensor::Tensor;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/rms_norm.wgsl");

/// T5's epsilon.
pub const EPS: f32 = 1e-6;

/// Reference forward: `x` is `[rows, cols]` row-major, `w` is `[cols]`.
pub fn forward_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let cols = w.len();
    x.chunks(cols)
        .flat_map(|row| {
            let r = inv_rms(row, eps);
            row.iter().zip(w).map(move |(v, g)| v * r * g)
        })
        .collect()
}

/// Reference input-gradient: `dx` for upstream gradient `dy`, same shapes as `x`.
pub fn backward_ref(x: &[f32], w: &[f32], dy: &[f32], eps: f32) -> Vec<f32> {
    let cols = w.len();
    x.chunks(cols)
        .zip(dy.chunks(cols))
        .flat_map(|(row, drow)| {
            let r = inv_rms(row, eps);
            // Accumulate in f64 so the reference is the more exact side of the parity test.
            let dot: f64 = row
                .iter()
                .zip(drow)
                .zip(w)
                .map(|((v, d), g)| (*v as f64) * (*d as f64) * (*g as f64))
                .sum();
            let k = (r as f64).powi(3) / cols as f64 * dot;
            row.iter()
                .zip(drow)
                .zip(w)
                .map(move |((v, d), g)| (r as f64 * *g as f64 * *d as f64 - *v as f64 * k) as f32)
        })
        .collect()
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f64 = row.iter().map(|v| (*v as f64) * (*v as f64)).sum();
    (1.0 / (ss / row.len() as f64 + eps as f64).sqrt()) as f32
}

/// The same op with burn's generic tensor ops: the "generic" side of kernel comparisons.
pub fn forward_burn(x: Tensor<2>, w: Tensor<1>, eps: f32) -> Tensor<2> {
    let r = x
        .clone()
        .powi_scalar(2)
        .mean_dim(1)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * r * w.unsqueeze::<2>()
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    groups_x: u32,
}

/// What a dispatch computes; each has a workgroup-per-row and a row-per-invocation entry point.
#[derive(Clone, Copy)]
enum Op {
    Forward,
    Backward,
    BackwardAdd,
}

impl Op {
    fn entry(self, row_per_lane: bool) -> &'static str {
        match (self, row_per_lane) {
            (Op::Forward, false) => "forward",
            (Op::Backward, false) => "backward",
            (Op::BackwardAdd, false) => "backward_add",
            (Op::Forward, true) => "forward_rows",
            (Op::Backward, true) => "backward_rows",
            (Op::BackwardAdd, true) => "backward_add_rows",
        }
    }
}

/// Compiled pipelines of `rms_norm.wgsl` on one device.
pub struct RmsNormKernel {
    shader: Shader,
    /// One row per invocation (the `*_rows` entry points, for CPU adapters) instead of one
    /// 64-invocation workgroup per row.
    row_per_lane: bool,
}

impl RmsNormKernel {
    /// The adapter's variant: a row per invocation on CPU adapters (lavapipe: `bench kernels`
    /// measured 486 -> 317 ms per tuning step), a workgroup per row elsewhere.
    pub fn new(gpu: &Gpu) -> Self {
        Self::with_row_per_lane(gpu, super::cpu_variants(gpu))
    }

    pub fn with_row_per_lane(gpu: &Gpu, row_per_lane: bool) -> Self {
        use Binding::*;
        Self {
            shader: Shader::new(
                gpu,
                "rms_norm.wgsl",
                SHADER,
                &[Read, Read, Read, ReadWrite],
                &[Op::Forward, Op::Backward, Op::BackwardAdd]
                    .into_iter()
                    .flat_map(|op| [op.entry(false), op.entry(true)])
                    .collect::<Vec<_>>(),
            ),
            row_per_lane,
        }
    }

    /// Records `out = norm(x) * w` over `rows` rows of `w`'s width.
    #[allow(clippy::too_many_arguments)] // buffers and shape of one dispatch
    pub(crate) fn record_forward(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        eps: f32,
    ) {
        self.record(gpu, enc, Op::Forward, [x, w, x, out], rows, cols, eps);
    }

    /// Records `out += dx`, the input gradient for upstream gradient `dy`.
    #[allow(clippy::too_many_arguments)] // buffers and shape of one dispatch
    pub(crate) fn record_backward_add(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        eps: f32,
    ) {
        self.record(gpu, enc, Op::BackwardAdd, [x, w, dy, out], rows, cols, eps);
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        op: Op,
        buffers: [&wgpu::Buffer; 4],
        rows: usize,
        cols: usize,
        eps: f32,
    ) {
        if rows == 0 {
            return;
        }
        let groups = if self.row_per_lane {
            grid(rows.div_ceil(8) as u32)
        } else {
            grid(rows as u32)
        };
        let params = Params {
            rows: rows as u32,
            cols: cols as u32,
            eps,
            groups_x: groups.0,
        };
        self.shader.dispatch(
            gpu,
            enc,
            op.entry(self.row_per_lane),
            &buffers,
            &params,
            groups,
        );
    }

    pub async fn forward(
        &self,
        gpu: &Gpu,
        x: &[f32],
        w: &[f32],
        eps: f32,
    ) -> Result<Vec<f32>, KernelError> {
        self.run(gpu, Op::Forward, x, w, None, eps).await
    }

    pub async fn backward(
        &self,
        gpu: &Gpu,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        eps: f32,
    ) -> Result<Vec<f32>, KernelError> {
        check_len(
            "dy",
            dy.len(),
            x.len(),
            "the upstream gradient has the shape of x",
        )?;
        self.run(gpu, Op::Backward, x, w, Some(dy), eps).await
    }

    async fn run(
        &self,
        gpu: &Gpu,
        op: Op,
        x: &[f32],
        w: &[f32],
        dy: Option<&[f32]>,
        eps: f32,
    ) -> Result<Vec<f32>, KernelError> {
        let cols = w.len();
        if cols == 0 {
            return Err(KernelError::Shape {
                tensor: "w",
                expected: 1,
                got: 0,
                why: "the norm weight must have at least one column".into(),
            });
        }
        let rows = x.len() / cols;
        check_len(
            "x",
            x.len(),
            rows * cols,
            format!("x must be [rows, {cols}]"),
        )?;
        let xb = upload(gpu, "x", x)?;
        let wb = upload(gpu, "w", w)?;
        // The forward entry point does not read dy; bind x again in its place.
        let dyb = match dy {
            Some(dy) => upload(gpu, "dy", dy)?,
            None => xb.clone(),
        };
        let out = zeros(gpu, "out", x.len());
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.record(gpu, &mut enc, op, [&xb, &wb, &dyb, &out], rows, cols, eps);
        gpu.queue().submit([enc.finish()]);
        read_back(gpu, &out, x.len()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_normalises_rows_to_unit_rms() {
        let x = [3.0, 4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let y = forward_ref(&x, &[1.0; 4], 0.0);
        let rms0 = (25.0f32 / 4.0).sqrt();
        assert!((y[0] - 3.0 / rms0).abs() < 1e-6 && (y[1] - 4.0 / rms0).abs() < 1e-6);
        assert_eq!(&y[4..], &[1.0; 4]);
    }

    #[test]
    fn reference_backward_matches_finite_differences() {
        let cols = 5;
        let x: Vec<f32> = (0..2 * cols)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let w: Vec<f32> = (0..cols).map(|i| 0.5 + i as f32 / 4.0).collect();
        let dy: Vec<f32> = (0..2 * cols)
            .map(|i| ((i * 3 % 5) as f32 - 2.0) / 2.0)
            .collect();
        let dx = backward_ref(&x, &w, &dy, EPS);
        // Loss L = sum(dy * y); dL/dx_i by central differences in f64 around x_i.
        let loss = |x: &[f32]| -> f64 {
            forward_ref(x, &w, EPS)
                .iter()
                .zip(&dy)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        for i in 0..x.len() {
            let h = 1e-3;
            let mut xp = x.clone();
            xp[i] += h;
            let mut xm = x.clone();
            xm[i] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
            assert!(
                (fd - dx[i] as f64).abs() < 2e-3,
                "dx[{i}]: analytic {} vs finite difference {fd}",
                dx[i]
            );
        }
    }
}
