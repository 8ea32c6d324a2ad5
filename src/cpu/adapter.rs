//! The element-wise and reduction parts of a bottleneck adapter on the CPU (the products are
//! `gemm::matmul` on strided views). The Rust twin of `shaders/adapter.wgsl`.

/// `y[r, c] += bias[c]`.
pub fn add_bias(y: &mut [f32], bias: &[f32]) {
    y.chunks_exact_mut(bias.len().max(1))
        .for_each(|row| row.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
}

/// `y = max(x, 0)`.
pub fn relu(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.max(0.0));
}

/// `dy *= (x > 0)`, `x` being ReLU's input.
pub fn relu_backward(x: &[f32], dy: &mut [f32]) {
    dy.iter_mut().zip(x).for_each(|(d, &x)| {
        if x <= 0.0 {
            *d = 0.0
        }
    });
}

/// `out[c] = sum_r x[r, c]` over `[rows, out.len()]`.
pub fn column_sums(x: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    x.chunks_exact(out.len().max(1))
        .for_each(|row| out.iter_mut().zip(row).for_each(|(o, v)| *o += v));
}

/// `sum x[i] * z[i]`, summed in f64 (a reference whose own rounding stays out of the parity).
pub fn dot(x: &[f32], z: &[f32]) -> f32 {
    x.iter().zip(z).map(|(a, b)| (a * b) as f64).sum::<f64>() as f32
}
