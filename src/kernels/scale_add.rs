//! `y = a * y + b * x` (`shaders/scale_add.wgsl`). The Rust twin is `crate::cpu::scale_add`.

use super::{Binding, KernelError, Shader, check_len, groups_for, read_back, upload};
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/scale_add.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    groups_x: u32,
    a: f32,
    b: f32,
}

pub struct ScaleAdd {
    shader: Shader,
}

impl ScaleAdd {
    pub fn new(gpu: &Gpu) -> Self {
        use Binding::*;
        Self {
            shader: Shader::new(
                gpu,
                "scale_add.wgsl",
                SHADER,
                &[ReadWrite, Read],
                &["scale_add"],
            ),
        }
    }

    /// Records `y[..n] = a * y + b * x`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        y: &wgpu::Buffer,
        a: f32,
        x: &wgpu::Buffer,
        b: f32,
        n: usize,
    ) {
        if n == 0 {
            return;
        }
        let groups = groups_for(n, 256);
        let p = Params {
            n: n as u32,
            groups_x: groups.0,
            a,
            b,
        };
        self.shader
            .dispatch(gpu, enc, "scale_add", &[y, x], &p, groups);
    }

    /// On slices (tests).
    pub async fn run(
        &self,
        gpu: &Gpu,
        y: &[f32],
        a: f32,
        x: &[f32],
        b: f32,
    ) -> Result<Vec<f32>, KernelError> {
        check_len("x", x.len(), y.len(), "as long as y")?;
        let (yb, xb) = (upload(gpu, "y", y)?, upload(gpu, "x", x)?);
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.record(gpu, &mut enc, &yb, a, &xb, b, y.len());
        gpu.queue().submit([enc.finish()]);
        read_back(gpu, &yb, y.len()).await
    }
}
