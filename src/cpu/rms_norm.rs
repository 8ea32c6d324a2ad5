//! T5's layer norm: RMS only, no mean subtraction, no bias. Forward, and the input gradient (the
//! gain is frozen).

use super::par;

/// `y = x / rms(x) * w` per `w.len()`-wide row; also returns each row's `1 / rms` for backward.
pub fn forward(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let rows = x.len() / d;
    let mut inv = vec![0.0f32; rows];
    for (r, i) in x.chunks_exact(d).zip(inv.iter_mut()) {
        let ms = r.iter().map(|v| v * v).sum::<f32>() / d as f32;
        *i = 1.0 / (ms + eps).sqrt();
    }
    let mut y = x.to_vec();
    par::rows_mut(&mut y, d, |i, row| {
        let s = inv[i];
        for (v, g) in row.iter_mut().zip(w) {
            *v *= s * g;
        }
    });
    (y, inv)
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
