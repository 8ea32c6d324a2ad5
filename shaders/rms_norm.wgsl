// T5 layer norm: RMS norm without mean subtraction and without bias.
//   y = x * r * w,  r = 1 / sqrt(mean(x^2) + eps)
// Input-gradient backward (the weight w is frozen in prompt tuning, so no dw):
//   dx_i = r * w_i * dy_i - x_i * r^3 / n * sum_j(w_j * dy_j * x_j)
// One workgroup per row; 64 invocations stride over the columns and reduce in workgroup memory.
// 64 <= 256 keeps us inside SwiftShader's and WebGPU's default invocation limits.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    // Rows per dispatch column: workgroups are laid out 2-D to stay under 65535 per dimension.
    groups_x: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> partial_a: array<f32, WG>;
var<workgroup> partial_b: array<f32, WG>;

// Tree reduction of both partial arrays; every invocation must call it (it has barriers).
fn reduce_pair(lid: u32) {
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial_a[lid] = partial_a[lid] + partial_a[lid + stride];
            partial_b[lid] = partial_b[lid] + partial_b[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = gid.x + gid.y * p.groups_x;
    // `row` is uniform across the workgroup, so this early exit keeps barriers uniform.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var ss = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        let v = x[base + c];
        ss = ss + v * v;
    }
    partial_a[lid] = ss;
    partial_b[lid] = 0.0;
    workgroupBarrier();
    reduce_pair(lid);
    let r = inverseSqrt(partial_a[0] / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c = c + WG) {
        out[base + c] = x[base + c] * r * w[c];
    }
}

// dx of column c of the row at `base`, given the row's `gradient_terms` / `row_terms`.
fn dx_at(base: u32, c: u32, t: vec2<f32>) -> f32 {
    return t.x * w[c] * dy[base + c] - x[base + c] * t.y;
}

// (1 / rms, the coefficient of x in the input gradient) of `row`, for every invocation.
fn gradient_terms(base: u32, lid: u32) -> vec2<f32> {
    var ss = 0.0;
    var dot = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        let v = x[base + c];
        ss = ss + v * v;
        dot = dot + w[c] * dy[base + c] * v;
    }
    partial_a[lid] = ss;
    partial_b[lid] = dot;
    workgroupBarrier();
    reduce_pair(lid);
    let n = f32(p.cols);
    let r = inverseSqrt(partial_a[0] / n + p.eps);
    return vec2<f32>(r, r * r * r / n * partial_b[0]);
}

@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = gid.x + gid.y * p.groups_x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    let t = gradient_terms(base, lid);
    for (var c = lid; c < p.cols; c = c + WG) {
        out[base + c] = dx_at(base, c, t);
    }
}

// The input gradient added into `out` (the residual stream's gradient in the T5 backward pass).
@compute @workgroup_size(64)
fn backward_add(@builtin(workgroup_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = gid.x + gid.y * p.groups_x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    let t = gradient_terms(base, lid);
    for (var c = lid; c < p.cols; c = c + WG) {
        out[base + c] = out[base + c] + dx_at(base, c, t);
    }
}

// CPU adapters (chosen by `RmsNormKernel::new` where `kernels::cpu_variants`): one row per
// invocation, 8 invocations per workgroup, no workgroup memory and no barriers. On lavapipe a
// barrier is a coroutine switch and a workgroup-memory access a loop over the SIMD lanes, so the
// 64-invocation reductions above cost more than the arithmetic.
fn own_row(wg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * p.groups_x) * 8u + lid;
}

// (1 / rms, the coefficient of x in the input gradient) of the row at `base`, serially.
fn row_terms(base: u32) -> vec2<f32> {
    var ss = 0.0;
    var dot = 0.0;
    for (var c = 0u; c < p.cols; c = c + 1u) {
        let v = x[base + c];
        ss = fma(v, v, ss);
        dot = fma(w[c] * dy[base + c], v, dot);
    }
    let n = f32(p.cols);
    let r = inverseSqrt(ss / n + p.eps);
    return vec2<f32>(r, r * r * r / n * dot);
}

@compute @workgroup_size(8)
fn forward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = own_row(wg, lid);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var ss = 0.0;
    for (var c = 0u; c < p.cols; c = c + 1u) {
        let v = x[base + c];
        ss = fma(v, v, ss);
    }
    let r = inverseSqrt(ss / f32(p.cols) + p.eps);
    for (var c = 0u; c < p.cols; c = c + 1u) {
        out[base + c] = x[base + c] * r * w[c];
    }
}

@compute @workgroup_size(8)
fn backward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = own_row(wg, lid);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    let t = row_terms(base);
    for (var c = 0u; c < p.cols; c = c + 1u) {
        out[base + c] = dx_at(base, c, t);
    }
}

@compute @workgroup_size(8)
fn backward_add_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = own_row(wg, lid);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    let t = row_terms(base);
    for (var c = 0u; c < p.cols; c = c + 1u) {
        out[base + c] = out[base + c] + dx_at(base, c, t);
    }
}
