//! T5's layer norm: RMS only, no mean subtraction, no bias. Forward, and the input gradient (the
//! gain is frozen).

use super::par;

/// `y = x / rms(x) * w` per `w.len()`-wide row; also returns each row's `1 / rms` for backward.
pub fn forward(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0.0f32; x.len()];
    let inv = forward_into(x, w, eps, &mut y);
    (y, inv)
}

/// [`forward`] into `y` (the length of `x`); returns each row's `1 / rms`.
pub fn forward_into(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> Vec<f32> {
    let d = w.len();
    let inv = inv_rms(x, d, eps);
    par::rows_mut(y, d, |i, row| {
        let s = inv[i];
        for ((v, x), g) in row.iter_mut().zip(&x[i * d..(i + 1) * d]).zip(w) {
            *v = x * (s * g);
        }
    });
    inv
}

/// Each `d`-wide row's `1 / rms` (backward recomputes it rather than keeping it).
pub fn inv_rms(x: &[f32], d: usize, eps: f32) -> Vec<f32> {
    x.chunks_exact(d)
        .map(|r| {
            let ms = r.iter().map(|v| v * v).sum::<f32>() / d as f32;
            1.0 / (ms + eps).sqrt()
        })
        .collect()
}

/// `dx` from `dy`: with `g = w * dy` and `r = 1 / rms`, `dx = r * g - x * r^3 * mean(g * x)`.
/// Adds into `dx` (the residual stream's gradient already there).
pub fn backward_add(x: &[f32], w: &[f32], inv: &[f32], dy: &[f32], dx: &mut [f32]) {
    let d = w.len();
    par::rows_mut(dx, d, |i, out| {
        let (xr, dyr, r) = (&x[i * d..(i + 1) * d], &dy[i * d..(i + 1) * d], inv[i]);
        let dot: f32 = xr.iter().zip(dyr).zip(w).map(|((a, b), g)| a * b * g).sum();
        let c = r * r * r * dot / d as f32;
        for j in 0..d {
            out[j] += r * w[j] * dyr[j] - xr[j] * c;
        }
    });
}
