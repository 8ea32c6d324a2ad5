//! Log-softmax + cross-entropy over the vocabulary fused with its gradient
//! (`shaders/cross_entropy.wgsl`). The Rust twin is `crate::cpu::cross_entropy`.

use super::{Binding, KernelError, Shader, grid, read_back, upload, zeros};
use crate::gpu::Gpu;
use burn::tensor::wgpu::wgpu;

pub const SHADER: &str = include_str!("../../shaders/cross_entropy.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    vocab: u32,
    groups_x: u32,
    _pad: u32,
}

pub struct CrossEntropy {
    shader: Shader,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu) -> Self {
        use Binding::*;
        Self {
            shader: Shader::new(
                gpu,
                "cross_entropy.wgsl",
                SHADER,
                &[ReadWrite, Read, Read, ReadWrite],
                &["log_probs", "loss_and_grad"],
            ),
        }
    }

    /// Records, for `logits` `[rows, vocab]`: `grad` true: logits := d loss / d logits and
    /// `out[r]` = `-weights[r] * log p(targets[r])`; `grad` false: `out[r]` = log p(targets[r]).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        vocab: usize,
        grad: bool,
    ) {
        if rows == 0 {
            return;
        }
        let groups = grid(rows as u32);
        let p = Params {
            rows: rows as u32,
            vocab: vocab as u32,
            groups_x: groups.0,
            _pad: 0,
        };
        let entry = if grad { "loss_and_grad" } else { "log_probs" };
        self.shader.dispatch(
            gpu,
            enc,
            entry,
            &[logits, targets, weights, out],
            &p,
            groups,
        );
    }

    /// On slices: `(log p(target) per row, weighted loss per row, gradient)` (tests).
    pub async fn run(
        &self,
        gpu: &Gpu,
        logits: &[f32],
        vocab: usize,
        targets: &[u32],
        weights: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>), KernelError> {
        let rows = targets.len();
        super::check_len(
            "logits",
            logits.len(),
            rows * vocab,
            format!("[{rows}, {vocab}]"),
        )?;
        super::check_len("weights", weights.len(), rows, "one weight per target")?;
        if let Some((r, &t)) = targets
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= vocab)
        {
            return Err(KernelError::Shape {
                tensor: "targets",
                expected: vocab,
                got: t as usize,
                why: format!("target {r} is outside the {vocab}-word vocabulary"),
            });
        }
        let lb = upload(gpu, "logits", logits)?;
        let (tb, wb) = (
            upload(gpu, "targets", targets)?,
            upload(gpu, "weights", weights)?,
        );
        let (lp, loss) = (zeros(gpu, "log_probs", rows), zeros(gpu, "loss", rows));
        let mut enc = gpu
            .wgpu_device()
            .create_command_encoder(&Default::default());
        self.record(gpu, &mut enc, &lb, &tb, &wb, &lp, rows, vocab, false);
        self.record(gpu, &mut enc, &lb, &tb, &wb, &loss, rows, vocab, true);
        gpu.queue().submit([enc.finish()]);
        Ok((
            read_back(gpu, &lp, rows).await?,
            read_back(gpu, &loss, rows).await?,
            read_back(gpu, &lb, logits.len()).await?,
        ))
    }
}
