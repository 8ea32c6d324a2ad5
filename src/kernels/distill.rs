//! Soft-target loss fused with its gradient (`shaders/distill.wgsl`). The Rust twin is
//! `crate::cpu::distill`.

use super::{Binding, KernelError, Shader, check_len, grid, read_back, upload, zeros};
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/distill.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    vocab: u32,
    groups_x: u32,
    temperature: f32,
}

pub struct Distill {
    shader: Shader,
}

impl Distill {
    pub fn new(gpu: &Gpu) -> Self {
        use Binding::*;
        Self {
            shader: Shader::new(
                gpu,
                "distill.wgsl",
                SHADER,
                &[Read, ReadWrite, Read, ReadWrite],
                &["loss_and_grad"],
            ),
        }
    }

    /// Records, for `[rows, vocab]` logits: `out[r]` = `weights[r] * T^2 * KL(q || p)` and
    /// `teacher` := the summed loss's gradient with respect to `student`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        student: &wgpu::Buffer,
        teacher: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        vocab: usize,
        temperature: f32,
    ) {
        if rows == 0 {
            return;
        }
        let groups = grid(rows as u32);
        let p = Params {
            rows: rows as u32,
            vocab: vocab as u32,
            groups_x: groups.0,
            temperature,
        };
        let buffers = [student, teacher, weights, out];
        self.shader
            .dispatch(gpu, enc, "loss_and_grad", &buffers, &p, groups);
    }

    /// On slices: `(loss per row, gradient with respect to the student)` (tests).
    pub async fn run(
        &self,
        gpu: &Gpu,
        student: &[f32],
        teacher: &[f32],
        weights: &[f32],
        temperature: f32,
    ) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
        let rows = weights.len();
        let vocab = student.len() / rows.max(1);
        let shape = format!("[{rows}, {vocab}]");
        check_len("student logits", student.len(), rows * vocab, shape.clone())?;
        check_len("teacher logits", teacher.len(), rows * vocab, shape)?;
        let (sb, tb) = (
            upload(gpu, "student", student)?,
            upload(gpu, "teacher", teacher)?,
        );
        let (wb, out) = (upload(gpu, "weights", weights)?, zeros(gpu, "loss", rows));
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.record(gpu, &mut enc, &sb, &tb, &wb, &out, rows, vocab, temperature);
        gpu.queue().submit([enc.finish()]);
        Ok((
            read_back(gpu, &out, rows).await?,
            read_back(gpu, &tb, rows * vocab).await?,
        ))
    }
}
