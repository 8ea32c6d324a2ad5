// f32 matrix product for trainable modules (adapters): C (+)= op(A) op(B) with strided operands,
// so that one entry point gives the forward product x W, the input gradient dy W^T and the
// weight gradient x^T dy. Element (i, j) of op(A) is a[a_off + i * a_rs + j * a_cs] (a
// transposed operand swaps the strides). `gemm`: 16x16 output tiles staged through workgroup
// memory (GPUs); `gemm_direct`: no workgroup memory or barriers, four outputs of a column per
// invocation (CPU adapters, where a barrier splits the SIMD loop and caches serve the reuse).
// As the Rust twin src/cpu/gemm.rs (`matmul` on `View`s).

struct Params {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_rs: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const T: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // x: output columns, y: output rows.
    let i = wg.y * T + lid.y;
    let j = wg.x * T + lid.x;
    var acc = 0.0;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + T) {
        let ka = k0 + lid.x;
        var va = 0.0;
        if (i < p.m && ka < p.k) {
            va = a[p.a_off + i * p.a_rs + ka * p.a_cs];
        }
        ta[lid.y][lid.x] = va;
        let kb = k0 + lid.y;
        var vb = 0.0;
        if (kb < p.k && j < p.n) {
            vb = b[p.b_off + kb * p.b_rs + j * p.b_cs];
        }
        tb[lid.y][lid.x] = vb;
        workgroupBarrier();
        for (var t = 0u; t < T; t = t + 1u) {
            acc = acc + ta[lid.y][t] * tb[t][lid.x];
        }
        workgroupBarrier();
    }
    if (i < p.m && j < p.n) {
        let at = p.c_off + i * p.c_rs + j;
        if (p.accumulate != 0u) {
            c[at] = c[at] + acc;
        } else {
            c[at] = acc;
        }
    }
}

fn store(i: u32, j: u32, v: f32) {
    let at = p.c_off + i * p.c_rs + j;
    if (p.accumulate != 0u) {
        c[at] = c[at] + v;
    } else {
        c[at] = v;
    }
}

// Invocations run along a row of C (neighbouring lanes read neighbouring columns of B), each
// down four rows.
@compute @workgroup_size(64)
fn gemm_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = (wg.x + wg.y * p.groups_x) * 64u + li;
    let quads = (p.m + 3u) / 4u;
    if (id >= p.n * quads) {
        return;
    }
    let j = id % p.n;
    let i = (id / p.n) * 4u;
    // Rows past m read row m - 1 (in range) and are not stored.
    let last = p.m - 1u;
    let rows = vec4<u32>(i, min(i + 1u, last), min(i + 2u, last), min(i + 3u, last)) * p.a_rs;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k = k + 1u) {
        let col = p.a_off + k * p.a_cs;
        let av = vec4<f32>(a[col + rows.x], a[col + rows.y], a[col + rows.z], a[col + rows.w]);
        acc = acc + av * b[p.b_off + k * p.b_rs + j * p.b_cs];
    }
    for (var t = 0u; t < 4u; t = t + 1u) {
        if (i + t < p.m) {
            store(i + t, j, acc[t]);
        }
    }
}
