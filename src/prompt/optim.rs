//! The optimisers of the prompt-tuning literature, on the prompt's host copy (L x d_model floats:
//! tiny next to the model, so the update costs nothing and needs no GPU round trip).
//!
//! Adafactor follows Hugging Face's implementation with the settings Lester et al. used through
//! T5X (`scale_parameter=False, relative_step=False, warmup_init=False`): factored second moments
//! for the [L, d] prompt matrix, decay rate -0.8, update clipping at RMS 1, no first moment.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OptimizerKind {
    Adafactor,
    Adam,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    Adafactor(Adafactor),
    Adam(Adam),
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, rows: usize, cols: usize) -> Self {
        match kind {
            OptimizerKind::Adafactor => Self::Adafactor(Adafactor::new(rows, cols)),
            OptimizerKind::Adam => Self::Adam(Adam::new(rows * cols)),
        }
    }

    /// Whether this state is `kind`'s for a [rows, cols] parameter (a saved state read back
    /// from storage may be another's); the error says what differs.
    pub fn fits(&self, kind: OptimizerKind, rows: usize, cols: usize) -> Result<(), String> {
        let (mine, sizes) = match self {
            Self::Adafactor(a) => (
                OptimizerKind::Adafactor,
                a.row_sq.len() == rows
                    && a.col_sq.len() == cols
                    && a.rows == rows
                    && a.cols == cols,
            ),
            Self::Adam(a) => (
                OptimizerKind::Adam,
                a.m.len() == rows * cols && a.v.len() == rows * cols,
            ),
        };
        if mine != kind {
            return Err(format!("it is {mine:?}'s state and this run uses {kind:?}"));
        }
        if !sizes {
            return Err(format!(
                "its {mine:?} moments are not for a {rows} x {cols} prompt"
            ));
        }
        Ok(())
    }

    /// One update of `params` (row-major [rows, cols]) against `grad` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32) {
        match self {
            Self::Adafactor(a) => a.step(params, grad, lr),
            Self::Adam(a) => a.step(params, grad, lr),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adafactor {
    rows: usize,
    cols: usize,
    row_sq: Vec<f32>,
    col_sq: Vec<f32>,
    t: u32,
    pub eps1: f32,
    pub clip_threshold: f32,
    pub decay_rate: f32,
    pub weight_decay: f32,
}

impl Adafactor {
    pub fn new(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            row_sq: vec![0.0; rows],
            col_sq: vec![0.0; cols],
            t: 0,
            eps1: 1e-30,
            clip_threshold: 1.0,
            decay_rate: -0.8,
            // Lester et al.'s T5X config: 1e-5.
            weight_decay: 1e-5,
        }
    }

    pub fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32) {
        let (r, c) = (self.rows, self.cols);
        self.t += 1;
        let beta2 = 1.0 - (self.t as f32).powf(self.decay_rate);
        let sq = |x: f32| x * x + self.eps1;
        for i in 0..r {
            let mean = g[i * c..(i + 1) * c].iter().map(|&x| sq(x)).sum::<f32>() / c as f32;
            self.row_sq[i] = beta2 * self.row_sq[i] + (1.0 - beta2) * mean;
        }
        for j in 0..c {
            let mean = (0..r).map(|i| sq(g[i * c + j])).sum::<f32>() / r as f32;
            self.col_sq[j] = beta2 * self.col_sq[j] + (1.0 - beta2) * mean;
        }
        let row_mean = self.row_sq.iter().sum::<f32>() / r as f32;
        let mut update: Vec<f32> = (0..r * c)
            .map(|k| {
                let (i, j) = (k / c, k % c);
                let r_factor = (self.row_sq[i] / row_mean).sqrt().recip();
                let c_factor = self.col_sq[j].sqrt().recip();
                g[k] * r_factor * c_factor
            })
            .collect();
        let rms = (update.iter().map(|u| u * u).sum::<f32>() / update.len() as f32).sqrt();
        let scale = lr / (rms / self.clip_threshold).max(1.0);
        for (k, u) in update.iter_mut().enumerate() {
            p[k] -= p[k] * self.weight_decay * lr + *u * scale;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Adam {
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    pub fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        for k in 0..p.len() {
            self.m[k] = self.beta1 * self.m[k] + (1.0 - self.beta1) * g[k];
            self.v[k] = self.beta2 * self.v[k] + (1.0 - self.beta2) * g[k] * g[k];
            let mhat = self.m[k] / bc1;
            let vhat = self.v[k] / bc2;
            p[k] -= lr * mhat / (vhat.sqrt() + self.eps);
        }
    }
}

/// Scales `g` so its L2 norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(g: &mut [f32], max_norm: f32) -> f32 {
    let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > max_norm && norm > 0.0 {
        let s = max_norm / norm;
        g.iter_mut().for_each(|x| *x *= s);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both optimisers minimise a quadratic bowl.
    #[test]
    fn optimisers_descend_a_quadratic() {
        for kind in [OptimizerKind::Adafactor, OptimizerKind::Adam] {
            let target: Vec<f32> = (0..12).map(|i| i as f32 / 6.0 - 1.0).collect();
            let mut p = vec![0.0f32; 12];
            let mut opt = Optimizer::new(kind, 3, 4);
            let loss = |p: &[f32]| {
                p.iter()
                    .zip(&target)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>()
            };
            let start = loss(&p);
            for _ in 0..300 {
                let g: Vec<f32> = p.iter().zip(&target).map(|(a, b)| 2.0 * (a - b)).collect();
                opt.step(&mut p, &g, 0.05);
            }
            assert!(
                loss(&p) < start * 0.01,
                "{kind:?}: {} -> {}",
                start,
                loss(&p)
            );
        }
    }

    #[test]
    fn adafactor_first_step_matches_hand_computation() {
        // t=1: beta2 = 0, so the factored second moment is exactly the row/col means of g^2;
        // for a rank-one |g| the factored estimate is exact and update = sign(g) before clipping,
        // RMS 1 -> no clipping; p -= lr * sign(g) (+ negligible weight decay on p = 0).
        let g = vec![1.0, -2.0, 2.0, -4.0];
        let mut p = vec![0.0; 4];
        let mut a = Adafactor::new(2, 2);
        a.step(&mut p, &g, 0.3);
        for (pk, gk) in p.iter().zip(&g) {
            assert!((pk + 0.3 * gk.signum()).abs() < 1e-5, "{p:?}");
        }
    }

    #[test]
    fn clipping_caps_the_norm() {
        let mut g = vec![3.0, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut small = vec![0.1, 0.1];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, [0.1, 0.1]);
    }
}
