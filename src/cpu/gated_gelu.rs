//! T5 v1.1's gated-GELU feed-forward activation, `gelu_tanh(g) * u`, on the fused `[g | u]`
//! projection. Forward, and the input gradient for both halves.

use super::par;

const C: f32 = 0.797_884_6; // sqrt(2 / pi)
const A: f32 = 0.044_715;

/// tanh by a rational approximation (Eigen's, accurate to a few ulp on [-9, 9] and saturated
/// beyond): branch-free, so the loops vectorise, unlike libm's `tanhf`. Doubles as the clamp
/// the WGSL kernels need, whose `tanh` overflows to NaN for large arguments.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Eigen's published coefficients, kept verbatim
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let p = x2 * -2.760_768_5e-16 + 2.000_187_9e-13;
    let p = x2 * p - 8.604_671_5e-11;
    let p = x2 * p + 5.122_297e-8;
    let p = x2 * p + 1.485_722_4e-5;
    let p = x2 * p + 6.372_619_3e-4;
    let p = x2 * p + 4.893_524_6e-3;
    let p = x * p;
    let q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
    let q = x2 * q + 2.268_434_6e-3;
    let q = x2 * q + 4.893_525_2e-3;
    // The quotient can overshoot 1 by an ulp near the clamp.
    (p / q).clamp(-1.0, 1.0)
}

#[inline(always)]
fn gelu_and_slope(g: f32) -> (f32, f32) {
    let t = tanh(C * (g + A * g * g * g));
    let gelu = 0.5 * g * (1.0 + t);
    let slope = 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * C * (1.0 + 3.0 * A * g * g);
    (gelu, slope)
}

/// `gu` is `[rows, 2 * ff]` (gate then linear half); returns `[rows, ff]`.
pub fn forward(gu: &[f32], ff: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; gu.len() / 2];
    forward_into(gu, ff, &mut out);
    out
}

/// [`forward`] into `out` (`[rows, ff]`).
pub fn forward_into(gu: &[f32], ff: usize, out: &mut [f32]) {
    par::rows_mut(out, ff, |i, o| {
        let (g, u) = gu[i * 2 * ff..(i + 1) * 2 * ff].split_at(ff);
        for j in 0..ff {
            o[j] = gelu_and_slope(g[j]).0 * u[j];
        }
    });
}

/// Gradient with respect to `[g | u]` from the output gradient `d`.
pub fn backward(gu: &[f32], d: &[f32], ff: usize) -> Vec<f32> {
    let mut dgu = vec![0.0f32; gu.len()];
    backward_into(gu, d, ff, &mut dgu);
    dgu
}

/// [`backward`] into `dgu` (`[rows, 2 * ff]`).
pub fn backward_into(gu: &[f32], d: &[f32], ff: usize, dgu: &mut [f32]) {
    par::rows_mut(dgu, 2 * ff, |i, o| {
        let (g, u) = gu[i * 2 * ff..(i + 1) * 2 * ff].split_at(ff);
        let dr = &d[i * ff..(i + 1) * ff];
        let (dg, du) = o.split_at_mut(ff);
        for j in 0..ff {
            let (gelu, slope) = gelu_and_slope(g[j]);
            dg[j] = dr[j] * u[j] * slope;
            du[j] = dr[j] * gelu;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_libm() {
        let mut worst = 0.0f32;
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            worst = worst.max((tanh(x) - x.tanh()).abs());
        }
        // A few ulp of 1.0 (6e-8 each) at most.
        assert!(worst < 5e-7, "worst abs error {worst}");
        assert_eq!(tanh(1e5), 1.0);
        assert_eq!(tanh(-1e30), -1.0);
    }

    #[test]
    fn slope_is_the_derivative() {
        for &g in &[-6.0f32, -2.5, -0.7, 0.0, 0.3, 1.1, 3.0, 8.0] {
            let h = 1e-2;
            let fd = (gelu_and_slope(g + h).0 as f64 - gelu_and_slope(g - h).0 as f64)
                / (2.0 * h as f64);
            let s = gelu_and_slope(g).1 as f64;
            assert!((fd - s).abs() < 1e-3, "g={g}: {fd} vs {s}");
        }
    }
}
