//! T5's gated-GELU feed-forward activation (`shaders/gated_gelu.wgsl`), forward and backward.
//! The Rust twin is `crate::cpu::gated_gelu`.

use super::{Binding, KernelError, Shader, groups_for, read_back, upload, zeros};
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/gated_gelu.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    ff: u32,
    groups_x: u32,
    _pad: u32,
}

pub struct GatedGelu {
    shader: Shader,
}

impl GatedGelu {
    pub fn new(gpu: &Gpu) -> Self {
        use Binding::*;
        Self {
            shader: Shader::new(
                gpu,
                "gated_gelu.wgsl",
                SHADER,
                &[Read, Read, ReadWrite],
                &["forward", "backward"],
            ),
        }
    }

    /// Records `out = gelu(gate) * linear` for `gu` `[rows, 2 * ff]` into `out` `[rows, ff]`.
    pub fn record_forward(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        gu: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        ff: usize,
    ) {
        self.record(gpu, enc, "forward", [gu, gu, out], rows, ff);
    }

    /// Records `dgu` `[rows, 2 * ff]` from the activation's gradient `dact` `[rows, ff]`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_backward(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        gu: &wgpu::Buffer,
        dact: &wgpu::Buffer,
        dgu: &wgpu::Buffer,
        rows: usize,
        ff: usize,
    ) {
        self.record(gpu, enc, "backward", [gu, dact, dgu], rows, ff);
    }

    fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        entry: &str,
        buffers: [&wgpu::Buffer; 3],
        rows: usize,
        ff: usize,
    ) {
        if rows * ff == 0 {
            return;
        }
        let groups = groups_for(rows * ff, 256);
        let p = Params {
            rows: rows as u32,
            ff: ff as u32,
            groups_x: groups.0,
            _pad: 0,
        };
        self.shader.dispatch(gpu, enc, entry, &buffers, &p, groups);
    }

    /// Forward and backward on slices: `(act, dgu)` (tests and self-checks).
    pub async fn run(
        &self,
        gpu: &Gpu,
        gu: &[f32],
        dact: &[f32],
        ff: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
        let rows = gu.len() / (2 * ff).max(1);
        super::check_len(
            "gu",
            gu.len(),
            rows * 2 * ff,
            format!("gu must be [rows, {}]", 2 * ff),
        )?;
        super::check_len(
            "dact",
            dact.len(),
            rows * ff,
            format!("dact must be [{rows}, {ff}]"),
        )?;
        let (gub, db) = (upload(gpu, "gu", gu)?, upload(gpu, "dact", dact)?);
        let (act, dgu) = (zeros(gpu, "act", rows * ff), zeros(gpu, "dgu", gu.len()));
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.record_forward(gpu, &mut enc, &gub, &act, rows, ff);
        self.record_backward(gpu, &mut enc, &gub, &db, &dgu, rows, ff);
        gpu.queue().submit([enc.finish()]);
        Ok((
            read_back(gpu, &act, rows * ff).await?,
            read_back(gpu, &dgu, gu.len()).await?,
        ))
    }
}
