// The element-wise and reduction parts of a bottleneck adapter (the products are
// matmul_f32.wgsl): bias add, ReLU and its backward, column sums (bias gradients) and a dot
// product (a mixture coefficient's gradient). As the Rust twin src/cpu/adapter.rs.

struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    // add_bias, relu, relu_backward: unused; column_sums, dot: where in `y` the result goes.
    extra: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
// The second operand of `dot` (the other entry points bind x here again).
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

fn flat(wg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * p.groups_x) * WG + li;
}

// y[r, c] += x[c] over `rows` rows of `cols`.
@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat(wg, li);
    if (i < p.rows * p.cols) {
        y[i] = y[i] + x[i % p.cols];
    }
}

// y = max(x, 0)
@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat(wg, li);
    if (i < p.rows * p.cols) {
        y[i] = max(x[i], 0.0);
    }
}

// y *= (x > 0): the gradient through ReLU, x being its input.
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat(wg, li);
    if (i < p.rows * p.cols) {
        y[i] = select(0.0, y[i], x[i] > 0.0);
    }
}

// y[extra + c] = sum over rows of x[r, c]: one invocation per column.
@compute @workgroup_size(256)
fn column_sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let c = flat(wg, li);
    if (c >= p.cols) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r = r + 1u) {
        s = s + x[r * p.cols + c];
    }
    y[p.extra + c] = s;
}

// y[extra] = sum of x[i] * z[i] over rows * cols: one workgroup.
@compute @workgroup_size(256)
fn dot(@builtin(local_invocation_index) li: u32) {
    let n = p.rows * p.cols;
    var s = 0.0;
    for (var i = li; i < n; i = i + WG) {
        s = s + x[i] * z[i];
    }
    red[li] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (li < h) {
            red[li] = red[li] + red[li + h];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        y[p.extra] = red[0];
    }
}
