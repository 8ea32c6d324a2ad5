// T5's gated-GELU: act = gelu(g) * u over `gu` = [rows, 2 * ff] (gate half, then linear half), and
// its backward. GELU is the tanh approximation (as flan-t5's "gelu_new"), tanh as Eigen's rational
// approximation: branch-free and saturating at exactly +-1, the same formula as the Rust twin
// (src/cpu/gated_gelu.rs).

struct Params {
    rows: u32,
    ff: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read> dact: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const C: f32 = 0.7978846;
const A: f32 = 0.044715;

fn tanh_rational(x0: f32) -> f32 {
    let x = clamp(x0, -9.0, 9.0);
    let x2 = x * x;
    var q = x2 * -2.7607685e-16 + 2.0001879e-13;
    q = x2 * q - 8.6046715e-11;
    q = x2 * q + 5.122297e-8;
    q = x2 * q + 1.4857224e-5;
    q = x2 * q + 6.3726193e-4;
    q = x2 * q + 4.8935246e-3;
    let num = x * q;
    var d = x2 * 1.1982584e-6 + 1.185347e-4;
    d = x2 * d + 2.2684346e-3;
    d = x2 * d + 4.8935252e-3;
    return clamp(num / d, -1.0, 1.0);
}

// (gelu(g), d gelu / d g)
fn gelu_and_slope(g: f32) -> vec2<f32> {
    let t = tanh_rational(C * (g + A * g * g * g));
    let gelu = 0.5 * g * (1.0 + t);
    let slope = 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * C * (1.0 + 3.0 * A * g * g);
    return vec2<f32>(gelu, slope);
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (i >= p.rows * p.ff) {
        return;
    }
    let r = i / p.ff;
    let j = i % p.ff;
    let g = gu[r * 2u * p.ff + j];
    let u = gu[r * 2u * p.ff + p.ff + j];
    out[i] = gelu_and_slope(g).x * u;
}

// out = d gu: [rows, 2 * ff].
@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (i >= p.rows * p.ff) {
        return;
    }
    let r = i / p.ff;
    let j = i % p.ff;
    let g = gu[r * 2u * p.ff + j];
    let u = gu[r * 2u * p.ff + p.ff + j];
    let d = dact[i];
    let gs = gelu_and_slope(g);
    out[r * 2u * p.ff + j] = d * u * gs.y;
    out[r * 2u * p.ff + p.ff + j] = d * gs.x;
}
