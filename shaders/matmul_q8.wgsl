// C = A * B (+ C), A f32 activations [m, k], B an int8-quantised weight read and dequantised in
// the kernel: B[k, n] = W[k, n] (trans = 0, the forward product) or W[n, k] (trans = 1, the input
// gradient of backward, which multiplies by the transposed weight). W is stored as unsigned bytes,
// four to a u32, row-major over its `w_cols` columns, dequantised as (byte - zero) * scale with one
// (scale, zero) pair per W column: one pair per source tensor, repeated over the columns of that
// tensor when several weights are fused side by side.
//
// Tiled in workgroup memory: 64 x 64 outputs per workgroup of 16 x 16 invocations, each owning a
// 4 x 4 block, K in steps of 16. Every weight byte loaded is dequantised once and reused by 64
// rows.
//
// Split-K: products with few output tiles (the decoder's 32 rows, the vocabulary-sized input
// gradient of the LM head: 8 tiles over K = 32,128) would leave most of a GPU idle, so `main`
// can cut K into `splits` chunks of `k_chunk`, one workgroup per (tile, chunk), each writing its
// partial tile to `partial`; `reduce` then sums the chunks into c (in a fixed order, so results
// do not depend on scheduling).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    a_off: u32,
    ldc: u32,
    c_off: u32,
    w_cols: u32,
    trans: u32,
    accumulate: u32,
    groups_x: u32,
    splits: u32,
    k_chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> quant: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// [splits, m, n] partial products (split-K only)
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// [BK][BM / 4] and [BK][BN / 4]: one k-slice of the A and B tiles, as vec4s so an invocation
// reads its 4 rows (4 columns) in one load. Accumulators are 4 vec4 registers, not an indexed
// array: CPU drivers (lavapipe) spill dynamically indexed private arrays to memory.
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

fn weight(row: u32, col: u32) -> f32 {
    let idx = row * p.w_cols + col;
    let byte = (w[idx >> 2u] >> ((idx & 3u) * 8u)) & 0xffu;
    let q = quant[col];
    return (f32(byte) - q.y) * q.x;
}

// Output tiles of the product; `main` and `main8` run one workgroup per (tile, K chunk).
fn tile_count() -> u32 {
    return ((p.n + BN - 1u) / BN) * ((p.m + BM - 1u) / BM);
}

struct Tile {
    split: u32,
    m0: u32,
    n0: u32,
}

// Workgroup `group`'s K chunk and the first row and column of its output tile.
fn tile_of(group: u32) -> Tile {
    let tiles_n = (p.n + BN - 1u) / BN;
    let tile = group % tile_count();
    return Tile(group / tile_count(), (tile / tiles_n) * BM, (tile % tiles_n) * BN);
}

// Element `idx` (of BM x BK and BK x BN) of the A and B tiles at K offset k0 into workgroup memory.
fn load_tiles(idx: u32, m0: u32, n0: u32, k0: u32, k_end: u32) {
    // A: consecutive invocations read consecutive k of one row.
    let ak = idx % BK;
    let am = idx / BK;
    var va = 0.0;
    if (m0 + am < p.m && k0 + ak < k_end) {
        va = a[p.a_off + (m0 + am) * p.lda + k0 + ak];
    }
    ta[ak * 16u + am / 4u][am % 4u] = va;
    // B: consecutive invocations read consecutive bytes of one W row.
    var vb = 0.0;
    var bk = 0u;
    var bn = 0u;
    if (p.trans == 0u) {
        bn = idx % BN;
        bk = idx / BN;
        if (k0 + bk < k_end && n0 + bn < p.n) {
            vb = weight(k0 + bk, n0 + bn);
        }
    } else {
        bk = idx % BK;
        bn = idx / BK;
        if (k0 + bk < k_end && n0 + bn < p.n) {
            vb = weight(n0 + bn, k0 + bk);
        }
    }
    tb[bk * 16u + bn / 4u][bn % 4u] = vb;
}

// Invocation (tx, ty) owns rows 4 ty .. 4 ty + 3 and columns 4 tx .. 4 tx + 3 of the tile.
@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let group = wg.x + wg.y * p.groups_x;
    if (group >= tile_count() * p.splits) {
        return;
    }
    let t = tile_of(group);
    let split = t.split;
    let m0 = t.m0;
    let n0 = t.n0;
    let k_begin = split * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + BK) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            load_tiles(li + e * 256u, m0, n0, k0, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let ra = ta[kk * 16u + lid.y];
            let rb = tb[kk * 16u + lid.x];
            acc0 = fma(vec4<f32>(ra.x), rb, acc0);
            acc1 = fma(vec4<f32>(ra.y), rb, acc1);
            acc2 = fma(vec4<f32>(ra.z), rb, acc2);
            acc3 = fma(vec4<f32>(ra.w), rb, acc3);
        }
        workgroupBarrier();
    }
    store(split, m0 + 4u * lid.y, n0 + 4u * lid.x, acc0);
    store(split, m0 + 4u * lid.y + 1u, n0 + 4u * lid.x, acc1);
    store(split, m0 + 4u * lid.y + 2u, n0 + 4u * lid.x, acc2);
    store(split, m0 + 4u * lid.y + 3u, n0 + 4u * lid.x, acc3);
}

// The same product with an 8 x 8 block per invocation: a workgroup of 8 x 8 invocations covers
// the same 64 x 64 tile, and each K step reads 4 vec4s from workgroup memory for 16 vec4 FMAs
// (2 for 4 in `main`). Invocation (tx, ty) owns rows 4 ty + {0..3} and 32 + 4 ty + {0..3}, and
// the same pattern of columns, so neighbours read neighbouring vec4s. Accumulators are named
// registers, as in `main`.
@compute @workgroup_size(8, 8)
fn main8(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let group = wg.x + wg.y * p.groups_x;
    if (group >= tile_count() * p.splits) {
        return;
    }
    let t = tile_of(group);
    let split = t.split;
    let m0 = t.m0;
    let n0 = t.n0;
    let k_begin = split * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc00 = vec4<f32>(0.0);
    var acc01 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc20 = vec4<f32>(0.0);
    var acc21 = vec4<f32>(0.0);
    var acc30 = vec4<f32>(0.0);
    var acc31 = vec4<f32>(0.0);
    var acc40 = vec4<f32>(0.0);
    var acc41 = vec4<f32>(0.0);
    var acc50 = vec4<f32>(0.0);
    var acc51 = vec4<f32>(0.0);
    var acc60 = vec4<f32>(0.0);
    var acc61 = vec4<f32>(0.0);
    var acc70 = vec4<f32>(0.0);
    var acc71 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + BK) {
        for (var e = 0u; e < 16u; e = e + 1u) {
            let idx = li + e * 64u;
            load_tiles(idx, m0, n0, k0, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let a0 = ta[kk * 16u + lid.y];
            let a1 = ta[kk * 16u + 8u + lid.y];
            let b0 = tb[kk * 16u + lid.x];
            let b1 = tb[kk * 16u + 8u + lid.x];
            acc00 = fma(vec4<f32>(a0.x), b0, acc00);
            acc01 = fma(vec4<f32>(a0.x), b1, acc01);
            acc10 = fma(vec4<f32>(a0.y), b0, acc10);
            acc11 = fma(vec4<f32>(a0.y), b1, acc11);
            acc20 = fma(vec4<f32>(a0.z), b0, acc20);
            acc21 = fma(vec4<f32>(a0.z), b1, acc21);
            acc30 = fma(vec4<f32>(a0.w), b0, acc30);
            acc31 = fma(vec4<f32>(a0.w), b1, acc31);
            acc40 = fma(vec4<f32>(a1.x), b0, acc40);
            acc41 = fma(vec4<f32>(a1.x), b1, acc41);
            acc50 = fma(vec4<f32>(a1.y), b0, acc50);
            acc51 = fma(vec4<f32>(a1.y), b1, acc51);
            acc60 = fma(vec4<f32>(a1.z), b0, acc60);
            acc61 = fma(vec4<f32>(a1.z), b1, acc61);
            acc70 = fma(vec4<f32>(a1.w), b0, acc70);
            acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        }
        workgroupBarrier();
    }
    store(split, m0 + 0u + 4u * lid.y + 0u, n0 + 0u + 4u * lid.x, acc00);
    store(split, m0 + 0u + 4u * lid.y + 0u, n0 + 32u + 4u * lid.x, acc01);
    store(split, m0 + 0u + 4u * lid.y + 1u, n0 + 0u + 4u * lid.x, acc10);
    store(split, m0 + 0u + 4u * lid.y + 1u, n0 + 32u + 4u * lid.x, acc11);
    store(split, m0 + 0u + 4u * lid.y + 2u, n0 + 0u + 4u * lid.x, acc20);
    store(split, m0 + 0u + 4u * lid.y + 2u, n0 + 32u + 4u * lid.x, acc21);
    store(split, m0 + 0u + 4u * lid.y + 3u, n0 + 0u + 4u * lid.x, acc30);
    store(split, m0 + 0u + 4u * lid.y + 3u, n0 + 32u + 4u * lid.x, acc31);
    store(split, m0 + 32u + 4u * lid.y + 0u, n0 + 0u + 4u * lid.x, acc40);
    store(split, m0 + 32u + 4u * lid.y + 0u, n0 + 32u + 4u * lid.x, acc41);
    store(split, m0 + 32u + 4u * lid.y + 1u, n0 + 0u + 4u * lid.x, acc50);
    store(split, m0 + 32u + 4u * lid.y + 1u, n0 + 32u + 4u * lid.x, acc51);
    store(split, m0 + 32u + 4u * lid.y + 2u, n0 + 0u + 4u * lid.x, acc60);
    store(split, m0 + 32u + 4u * lid.y + 2u, n0 + 32u + 4u * lid.x, acc61);
    store(split, m0 + 32u + 4u * lid.y + 3u, n0 + 0u + 4u * lid.x, acc70);
    store(split, m0 + 32u + 4u * lid.y + 3u, n0 + 32u + 4u * lid.x, acc71);

}

fn store(split: u32, gm: u32, gn: u32, v: vec4<f32>) {
    if (gm >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (gn + j < p.n) {
            if (p.splits > 1u) {
                partial[(split * p.m + gm) * p.n + gn + j] = v[j];
            } else {
                write_c(gm, gn + j, v[j]);
            }
        }
    }
}

fn write_c(gm: u32, gn: u32, v: f32) {
    let at = p.c_off + gm * p.ldc + gn;
    var x = v;
    if (p.accumulate != 0u) {
        x = x + c[at];
    }
    c[at] = x;
}

// Split-K's second pass: one invocation per output, summing the chunks in order.
@compute @workgroup_size(256)
fn reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    let mn = p.m * p.n;
    if (i >= mn) {
        return;
    }
    var x = 0.0;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        x = x + partial[s * mn + i];
    }
    write_c(i / p.n, i % p.n, x);
}
