// The int8 matmul of `matmul_q8.wgsl` for CPU adapters (lavapipe), where workgroup memory and
// barriers are slow and every load or store whose address differs between invocations is a loop
// over the SIMD lanes. So: no workgroup memory, no barriers, and as few such loads per FMA as
// possible. A workgroup is one SIMD vector of 8 invocations; invocation i owns columns
// n0 + 4 i .. + 3 of 8 rows. Per 4 K steps it loads each row's 4 activations as one vec4 (shared
// by all invocations) and 4 words of weight bytes (4 columns each), then does 128 FMAs.
//
// `main`: c (+)= a W, reading W's bytes. `main_t`: c (+)= dy W^T, reading a transposed copy of
// the bytes (row k of the product is W's column k), so both read 4 consecutive columns per word.
// Preconditions (checked by `matmul::Matmul::record`, which uses `matmul_q8.wgsl` otherwise): a's
// offset, row stride and K, and the byte rows (`w_cols`, the product's n), are multiples of 4.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    a_off: u32,
    ldc: u32,
    c_off: u32,
    w_cols: u32,
    accumulate: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
// (scale, zero) pairs, two per vec4: per product column in `main`, per K row in `main_t`
@group(0) @binding(2) var<storage, read> quant: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const ROWS: u32 = 8u;
const COLS: u32 = 32u;

fn bytes4(word: u32) -> vec4<f32> {
    return vec4<f32>(
        f32(word & 0xffu),
        f32((word >> 8u) & 0xffu),
        f32((word >> 16u) & 0xffu),
        f32(word >> 24u),
    );
}

// Rows past m and columns past n are computed from clamped reads and never stored.
fn store(gm: u32, gn: u32, v: vec4<f32>) {
    if (gm >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (gn + j < p.n) {
            let at = p.c_off + gm * p.ldc + gn + j;
            var x = v[j];
            if (p.accumulate != 0u) {
                x = x + c[at];
            }
            c[at] = x;
        }
    }
}

struct Tile {
    ok: bool,
    m0: u32,
    n: u32,
    col: u32,
}

fn tile_of(group: u32, lane: u32) -> Tile {
    let tiles_n = (p.n + COLS - 1u) / COLS;
    let ok = group < tiles_n * ((p.m + ROWS - 1u) / ROWS);
    let n = (group % tiles_n) * COLS + 4u * lane;
    return Tile(ok, (group / tiles_n) * ROWS, n, min(n, p.w_cols - 4u));
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lid.x);
    if (!t.ok) {
        return;
    }
    let m0 = t.m0;
    let n = t.n;
    let col = t.col;
    let qa = quant[col / 2u];
    let qb = quant[col / 2u + 1u];
    let s = vec4<f32>(qa.x, qa.z, qb.x, qb.z);
    let zs = -vec4<f32>(qa.y, qa.w, qb.y, qb.w) * s;
    let last = p.m - 1u;
    let r0 = (p.a_off + min(m0 + 0u, last) * p.lda) / 4u;
    let r1 = (p.a_off + min(m0 + 1u, last) * p.lda) / 4u;
    let r2 = (p.a_off + min(m0 + 2u, last) * p.lda) / 4u;
    let r3 = (p.a_off + min(m0 + 3u, last) * p.lda) / 4u;
    let r4 = (p.a_off + min(m0 + 4u, last) * p.lda) / 4u;
    let r5 = (p.a_off + min(m0 + 5u, last) * p.lda) / 4u;
    let r6 = (p.a_off + min(m0 + 6u, last) * p.lda) / 4u;
    let r7 = (p.a_off + min(m0 + 7u, last) * p.lda) / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var wi = col / 4u;
    let ws = p.w_cols / 4u;
    for (var k4 = 0u; k4 < p.k / 4u; k4 = k4 + 1u) {
        let w0 = bytes4(w[wi + 0u * ws]);
        let w1 = bytes4(w[wi + 1u * ws]);
        let w2 = bytes4(w[wi + 2u * ws]);
        let w3 = bytes4(w[wi + 3u * ws]);
        wi = wi + 4u * ws;
        let b0 = fma(w0, s, zs);
        let b1 = fma(w1, s, zs);
        let b2 = fma(w2, s, zs);
        let b3 = fma(w3, s, zs);
        let x0 = a[r0 + k4];
        acc0 = fma(vec4<f32>(x0.x), b0, fma(vec4<f32>(x0.y), b1, fma(vec4<f32>(x0.z), b2, fma(vec4<f32>(x0.w), b3, acc0))));
        let x1 = a[r1 + k4];
        acc1 = fma(vec4<f32>(x1.x), b0, fma(vec4<f32>(x1.y), b1, fma(vec4<f32>(x1.z), b2, fma(vec4<f32>(x1.w), b3, acc1))));
        let x2 = a[r2 + k4];
        acc2 = fma(vec4<f32>(x2.x), b0, fma(vec4<f32>(x2.y), b1, fma(vec4<f32>(x2.z), b2, fma(vec4<f32>(x2.w), b3, acc2))));
        let x3 = a[r3 + k4];
        acc3 = fma(vec4<f32>(x3.x), b0, fma(vec4<f32>(x3.y), b1, fma(vec4<f32>(x3.z), b2, fma(vec4<f32>(x3.w), b3, acc3))));
        let x4 = a[r4 + k4];
        acc4 = fma(vec4<f32>(x4.x), b0, fma(vec4<f32>(x4.y), b1, fma(vec4<f32>(x4.z), b2, fma(vec4<f32>(x4.w), b3, acc4))));
        let x5 = a[r5 + k4];
        acc5 = fma(vec4<f32>(x5.x), b0, fma(vec4<f32>(x5.y), b1, fma(vec4<f32>(x5.z), b2, fma(vec4<f32>(x5.w), b3, acc5))));
        let x6 = a[r6 + k4];
        acc6 = fma(vec4<f32>(x6.x), b0, fma(vec4<f32>(x6.y), b1, fma(vec4<f32>(x6.z), b2, fma(vec4<f32>(x6.w), b3, acc6))));
        let x7 = a[r7 + k4];
        acc7 = fma(vec4<f32>(x7.x), b0, fma(vec4<f32>(x7.y), b1, fma(vec4<f32>(x7.z), b2, fma(vec4<f32>(x7.w), b3, acc7))));
    }
    store(m0 + 0u, n, acc0);
    store(m0 + 1u, n, acc1);
    store(m0 + 2u, n, acc2);
    store(m0 + 3u, n, acc3);
    store(m0 + 4u, n, acc4);
    store(m0 + 5u, n, acc5);
    store(m0 + 6u, n, acc6);
    store(m0 + 7u, n, acc7);
}

@compute @workgroup_size(8)
fn main_t(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lid.x);
    if (!t.ok) {
        return;
    }
    let m0 = t.m0;
    let n = t.n;
    let col = t.col;
    let last = p.m - 1u;
    let r0 = (p.a_off + min(m0 + 0u, last) * p.lda) / 4u;
    let r1 = (p.a_off + min(m0 + 1u, last) * p.lda) / 4u;
    let r2 = (p.a_off + min(m0 + 2u, last) * p.lda) / 4u;
    let r3 = (p.a_off + min(m0 + 3u, last) * p.lda) / 4u;
    let r4 = (p.a_off + min(m0 + 4u, last) * p.lda) / 4u;
    let r5 = (p.a_off + min(m0 + 5u, last) * p.lda) / 4u;
    let r6 = (p.a_off + min(m0 + 6u, last) * p.lda) / 4u;
    let r7 = (p.a_off + min(m0 + 7u, last) * p.lda) / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var wi = col / 4u;
    let ws = p.w_cols / 4u;
    for (var k4 = 0u; k4 < p.k / 4u; k4 = k4 + 1u) {
        let w0 = bytes4(w[wi + 0u * ws]);
        let w1 = bytes4(w[wi + 1u * ws]);
        let w2 = bytes4(w[wi + 2u * ws]);
        let w3 = bytes4(w[wi + 3u * ws]);
        wi = wi + 4u * ws;
        // (scale, zero) of K rows 4 k4 .. 4 k4 + 3
        let qa = quant[2u * k4];
        let qb = quant[2u * k4 + 1u];
        let b0 = (w0 - qa.y) * qa.x;
        let b1 = (w1 - qa.w) * qa.z;
        let b2 = (w2 - qb.y) * qb.x;
        let b3 = (w3 - qb.w) * qb.z;
        let x0 = a[r0 + k4];
        acc0 = fma(vec4<f32>(x0.x), b0, fma(vec4<f32>(x0.y), b1, fma(vec4<f32>(x0.z), b2, fma(vec4<f32>(x0.w), b3, acc0))));
        let x1 = a[r1 + k4];
        acc1 = fma(vec4<f32>(x1.x), b0, fma(vec4<f32>(x1.y), b1, fma(vec4<f32>(x1.z), b2, fma(vec4<f32>(x1.w), b3, acc1))));
        let x2 = a[r2 + k4];
        acc2 = fma(vec4<f32>(x2.x), b0, fma(vec4<f32>(x2.y), b1, fma(vec4<f32>(x2.z), b2, fma(vec4<f32>(x2.w), b3, acc2))));
        let x3 = a[r3 + k4];
        acc3 = fma(vec4<f32>(x3.x), b0, fma(vec4<f32>(x3.y), b1, fma(vec4<f32>(x3.z), b2, fma(vec4<f32>(x3.w), b3, acc3))));
        let x4 = a[r4 + k4];
        acc4 = fma(vec4<f32>(x4.x), b0, fma(vec4<f32>(x4.y), b1, fma(vec4<f32>(x4.z), b2, fma(vec4<f32>(x4.w), b3, acc4))));
        let x5 = a[r5 + k4];
        acc5 = fma(vec4<f32>(x5.x), b0, fma(vec4<f32>(x5.y), b1, fma(vec4<f32>(x5.z), b2, fma(vec4<f32>(x5.w), b3, acc5))));
        let x6 = a[r6 + k4];
        acc6 = fma(vec4<f32>(x6.x), b0, fma(vec4<f32>(x6.y), b1, fma(vec4<f32>(x6.z), b2, fma(vec4<f32>(x6.w), b3, acc6))));
        let x7 = a[r7 + k4];
        acc7 = fma(vec4<f32>(x7.x), b0, fma(vec4<f32>(x7.y), b1, fma(vec4<f32>(x7.z), b2, fma(vec4<f32>(x7.w), b3, acc7))));
    }
    store(m0 + 0u, n, acc0);
    store(m0 + 1u, n, acc1);
    store(m0 + 2u, n, acc2);
    store(m0 + 3u, n, acc3);
    store(m0 + 4u, n, acc4);
    store(m0 + 5u, n, acc5);
    store(m0 + 6u, n, acc6);
    store(m0 + 7u, n, acc7);
}
