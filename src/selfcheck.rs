//! A GPU self-check shared by the CLI (`metaprompt gpu`), the page and the tests: runs our WGSL
//! kernels and burn's generic ops on the shared device and compares both with the Rust reference.

use crate::gpu::Gpu;
use crate::kernels::{KernelError, max_abs_diff, rms_norm};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Tolerance of f32 GPU results against the reference: both sides sum a few hundred terms in
/// different orders, values are O(1).
pub const TOLERANCE: f32 = 1e-4;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SelfCheck {
    pub kernel: String,
    pub rows: usize,
    pub cols: usize,
    /// Max abs error of our WGSL forward against the Rust reference.
    pub forward_err: f32,
    /// Max abs error of our WGSL input-gradient against the Rust reference.
    pub backward_err: f32,
    /// Max abs error of burn's generic ops on the same device against the Rust reference.
    pub burn_err: f32,
}

impl SelfCheck {
    pub fn passed(&self) -> bool {
        self.forward_err <= TOLERANCE
            && self.backward_err <= TOLERANCE
            && self.burn_err <= TOLERANCE
    }
}

/// Deterministic values in [-2, 2): a 64-bit LCG, so page, CLI and tests draw the same inputs.
pub fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// `p` with every value moved by `size` times a value of [`test_values`] (in [-2, 2)): a start
/// that another machine's rounding would, in effect, have given. Learning tests assert their
/// property from both starts, so that it is not one trajectory's luck.
pub fn nudged(p: &crate::prompt::SoftPrompt, size: f32) -> crate::prompt::SoftPrompt {
    let noise = test_values(p.values.len(), 77);
    crate::prompt::SoftPrompt {
        values: p
            .values
            .iter()
            .zip(&noise)
            .map(|(x, n)| x + size * n)
            .collect(),
        ..p.clone()
    }
}

/// Runs RMS norm forward and backward on `rows x cols` through our kernel and through burn.
pub async fn rms_norm_check(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<SelfCheck, KernelError> {
    let x = test_values(rows * cols, seed);
    let w = test_values(cols, seed + 1);
    let dy = test_values(rows * cols, seed + 2);
    let eps = rms_norm::EPS;
    let kernel = rms_norm::RmsNormKernel::new(gpu);

    let want = rms_norm::forward_ref(&x, &w, eps);
    let got = kernel.forward(gpu, &x, &w, eps).await?;
    let want_dx = rms_norm::backward_ref(&x, &w, &dy, eps);
    let got_dx = kernel.backward(gpu, &x, &w, &dy, eps).await?;

    let xt = Tensor::<2>::from_data(TensorData::new(x, [rows, cols]), &gpu.device);
    let wt = Tensor::<1>::from_data(TensorData::new(w, [cols]), &gpu.device);
    let burn_out = rms_norm::forward_burn(xt, wt, eps)
        .into_data_async()
        .await
        .map_err(|e| KernelError::Readback(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| KernelError::Readback(format!("{e:?}")))?;

    Ok(SelfCheck {
        kernel: "rms_norm".into(),
        rows,
        cols,
        forward_err: max_abs_diff(&got, &want),
        backward_err: max_abs_diff(&got_dx, &want_dx),
        burn_err: max_abs_diff(&burn_out, &want),
    })
}
