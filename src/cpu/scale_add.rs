//! `y = a * y + b * x` over whole buffers: mixing encoder states (SUPMER's task mixup), adding
//! one loss's logit gradient to another's. The Rust twin of `shaders/scale_add.wgsl`.

/// `y = a * y + b * x` (mixing encoder states, adding one loss's gradient to another's).
pub fn forward(y: &mut [f32], a: f32, x: &[f32], b: f32) {
    assert_eq!(y.len(), x.len(), "scale_add: lengths differ");
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = a * *y + b * x);
}
