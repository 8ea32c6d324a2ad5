//! The small trainable head over the frozen encoder's pooled vectors: `z = W x + b`, 1024 -> 256
//! (**ours**: the cosine scores normalise `z`, which is the head's norm). It starts as a
//! seeded random projection, which keeps cosines roughly as they were (Johnson-Lindenstrauss),
//! so training starts near the frozen nearest-class-mean baseline.

use crate::cpu::gemm::{View, matmul};
use crate::tasks::sampling::SplitMix64;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub dim_in: usize,
    pub dim_out: usize,
    /// `W` row-major `[dim_out, dim_in]`, then `b` `[dim_out]`: one flat vector for the
    /// optimiser and the clip.
    #[serde(with = "super::classifier::floats")]
    pub params: Vec<f32>,
}

impl Head {
    pub fn new(dim_in: usize, dim_out: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let std = (1.0 / dim_in as f32).sqrt();
        let mut params = Vec::with_capacity(dim_out * dim_in + dim_out);
        while params.len() < dim_out * dim_in {
            // Box-Muller: two normals per two uniforms.
            let (u1, u2) = (rng.unit_f32().max(1e-7), rng.unit_f32());
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = std::f32::consts::TAU * u2;
            params.push(r * a.cos());
            params.push(r * a.sin());
        }
        params.truncate(dim_out * dim_in);
        params.resize(dim_out * dim_in + dim_out, 0.0);
        Self {
            dim_in,
            dim_out,
            params,
        }
    }

    fn w(&self) -> View<'_> {
        View::new(
            &self.params[..self.dim_out * self.dim_in],
            self.dim_out,
            self.dim_in,
        )
    }

    /// `x` row-major `[rows, dim_in]` -> `z` `[rows, dim_out]`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.dim_in;
        let mut z = vec![0.0; rows * self.dim_out];
        if rows == 0 {
            return z;
        }
        matmul(
            &mut z,
            self.dim_out,
            View::new(x, rows, self.dim_in),
            self.w().t(),
            false,
            true,
        );
        let b = &self.params[self.dim_out * self.dim_in..];
        for row in z.chunks_mut(self.dim_out) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
        z
    }

    /// The gradient of the parameters (same layout as `params`) given `dz = dL/dz` for the rows
    /// `x` that `forward` took.
    pub fn backward(&self, x: &[f32], dz: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.dim_in;
        let nw = self.dim_out * self.dim_in;
        let mut g = vec![0.0; nw + self.dim_out];
        if rows == 0 {
            return g;
        }
        let dzv = View::new(dz, rows, self.dim_out);
        matmul(
            &mut g[..nw],
            self.dim_in,
            dzv.t(),
            View::new(x, rows, self.dim_in),
            false,
            true,
        );
        for row in dz.chunks(self.dim_out) {
            g[nw..].iter_mut().zip(row).for_each(|(g, d)| *g += d);
        }
        g
    }
}
