// The int8 matmul of `matmul_q8.wgsl` for CPU adapters (lavapipe), where workgroup memory and
// barriers are slow and every storage load whose address is not a constant is a loop over the
// SIMD lanes, even when every lane reads the same address. So: no workgroup memory, no barriers,
// and as few such loaded components per FMA as possible.
//
// A workgroup is one subgroup of 8 lanes (checked by `kernels::lanes8`). Lane i owns columns
// n0 + 8 i .. + 7 of 32 rows. Per 4 K steps, lane i loads the 4 activations of rows i, i + 8,
// i + 16 and i + 24 as vec4s and hands them to every lane with `subgroupBroadcast` (a register
// shuffle on a CPU), loads 8 words of weight bytes (4 columns each), then does 1024 FMAs: 24
// loaded components per 1024 FMAs. On lavapipe (the [672x512]·[512x2048] product): 8 rows per
// lane took 1443 ms, 16 rows 985 ms, 32 rows 756 ms; every lane loading all 8 rows itself
// (no subgroups), 4174 ms. `main_t` also needs the K rows' (scale, zero): one vec4 per lane every
// 4 steps.
//
// `main`: c (+)= a W, reading W's bytes. `main_t`: c (+)= dy W^T, reading a transposed copy of
// the bytes (row k of the product is W's column k), so both read 4 consecutive columns per word.
// Preconditions (checked by `matmul::Matmul::record`, which uses `matmul_q8.wgsl` otherwise): a's
// offset, row stride and K, and the byte rows (`w_cols`, the product's n), are multiples of 4.
// Browsers need `enable subgroups;` first, which naga does not parse: `kernels::subgroup_source`
// adds it in wasm builds.

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

const ROWS: u32 = 32u;
const COLS: u32 = 64u;

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

// 8 columns of one row: `lo` columns 0..3, `hi` 4..7.
struct Acc {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// 4 K rows of dequantised weights for 8 columns: row k in (lo[k], hi[k]).
struct Weights {
    lo0: vec4<f32>,
    lo1: vec4<f32>,
    lo2: vec4<f32>,
    lo3: vec4<f32>,
    hi0: vec4<f32>,
    hi1: vec4<f32>,
    hi2: vec4<f32>,
    hi3: vec4<f32>,
}

// acc + x . (4 K rows of w)
fn mac(acc: Acc, x: vec4<f32>, w: Weights) -> Acc {
    return Acc(
        fma(vec4<f32>(x.x), w.lo0, fma(vec4<f32>(x.y), w.lo1, fma(vec4<f32>(x.z), w.lo2, fma(vec4<f32>(x.w), w.lo3, acc.lo)))),
        fma(vec4<f32>(x.x), w.hi0, fma(vec4<f32>(x.y), w.hi1, fma(vec4<f32>(x.z), w.hi2, fma(vec4<f32>(x.w), w.hi3, acc.hi)))),
    );
}

// A lane's 8 columns of 8 rows r0 + lane', one row per lane of the subgroup.
struct Acc8 {
    r0: Acc,
    r1: Acc,
    r2: Acc,
    r3: Acc,
    r4: Acc,
    r5: Acc,
    r6: Acc,
    r7: Acc,
}

// `x` is lane i's vec4 of row i: every lane takes each row's in turn.
fn mac8(acc: Acc8, x: vec4<f32>, w: Weights) -> Acc8 {
    return Acc8(
        mac(acc.r0, subgroupBroadcast(x, 0u), w),
        mac(acc.r1, subgroupBroadcast(x, 1u), w),
        mac(acc.r2, subgroupBroadcast(x, 2u), w),
        mac(acc.r3, subgroupBroadcast(x, 3u), w),
        mac(acc.r4, subgroupBroadcast(x, 4u), w),
        mac(acc.r5, subgroupBroadcast(x, 5u), w),
        mac(acc.r6, subgroupBroadcast(x, 6u), w),
        mac(acc.r7, subgroupBroadcast(x, 7u), w),
    );
}

fn store_row(gm: u32, gn: u32, acc: Acc) {
    store(gm, gn, acc.lo);
    store(gm, gn + 4u, acc.hi);
}

fn store8(m0: u32, gn: u32, acc: Acc8) {
    store_row(m0, gn, acc.r0);
    store_row(m0 + 1u, gn, acc.r1);
    store_row(m0 + 2u, gn, acc.r2);
    store_row(m0 + 3u, gn, acc.r3);
    store_row(m0 + 4u, gn, acc.r4);
    store_row(m0 + 5u, gn, acc.r5);
    store_row(m0 + 6u, gn, acc.r6);
    store_row(m0 + 7u, gn, acc.r7);
}

fn zero8() -> Acc8 {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0));
    return Acc8(z, z, z, z, z, z, z, z);
}

// A lane's 32 rows in four groups of 8; in group g, lane i loads row m0 + 8 g + i for all.
struct Acc32 {
    g0: Acc8,
    g1: Acc8,
    g2: Acc8,
    g3: Acc8,
}

// `rows`: the vec4 indices in `a` of the lane's own row in each group (`lane_rows`).
fn mac32(acc: Acc32, rows: vec4<u32>, k4: u32, w: Weights) -> Acc32 {
    return Acc32(
        mac8(acc.g0, a[rows.x + k4], w),
        mac8(acc.g1, a[rows.y + k4], w),
        mac8(acc.g2, a[rows.z + k4], w),
        mac8(acc.g3, a[rows.w + k4], w),
    );
}

fn store32(m0: u32, gn: u32, acc: Acc32) {
    store8(m0, gn, acc.g0);
    store8(m0 + 8u, gn, acc.g1);
    store8(m0 + 16u, gn, acc.g2);
    store8(m0 + 24u, gn, acc.g3);
}

fn zero32() -> Acc32 {
    return Acc32(zero8(), zero8(), zero8(), zero8());
}

struct Tile {
    ok: bool,
    m0: u32,
    n: u32,
    // word columns of the two halves, clamped to the last word of a byte row
    lo: u32,
    hi: u32,
}

fn tile_of(group: u32, lane: u32) -> Tile {
    let tiles_n = (p.n + COLS - 1u) / COLS;
    let ok = group < tiles_n * ((p.m + ROWS - 1u) / ROWS);
    let n = (group % tiles_n) * COLS + 8u * lane;
    let last = p.w_cols - 4u;
    return Tile(ok, (group / tiles_n) * ROWS, n, min(n, last), min(n + 4u, last));
}

// vec4 index of row m0 + r (clamped to the last row) of a
fn a_row(m0: u32, r: u32) -> u32 {
    return (p.a_off + min(m0 + r, p.m - 1u) * p.lda) / 4u;
}

fn lane_rows(m0: u32, lane: u32) -> vec4<u32> {
    return vec4<u32>(a_row(m0, lane), a_row(m0, lane + 8u), a_row(m0, lane + 16u), a_row(m0, lane + 24u));
}

// The bytes of 4 K rows from word `wl` (columns 0..3) and `wh` (4..7) on, not yet dequantised.
fn raw_weights(wl: u32, wh: u32) -> Weights {
    let ws = p.w_cols / 4u;
    return Weights(
        bytes4(w[wl]),
        bytes4(w[wl + ws]),
        bytes4(w[wl + 2u * ws]),
        bytes4(w[wl + 3u * ws]),
        bytes4(w[wh]),
        bytes4(w[wh + ws]),
        bytes4(w[wh + 2u * ws]),
        bytes4(w[wh + 3u * ws]),
    );
}

// (scale, -zero * scale) of 4 product columns from `col` on, in `main`
fn column_quant(col: u32) -> array<vec4<f32>, 2> {
    let qa = quant[col / 2u];
    let qb = quant[col / 2u + 1u];
    let s = vec4<f32>(qa.x, qa.z, qb.x, qb.z);
    return array<vec4<f32>, 2>(s, -vec4<f32>(qa.y, qa.w, qb.y, qb.w) * s);
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lane);
    if (!t.ok) {
        return;
    }
    let ql = column_quant(t.lo);
    let qh = column_quant(t.hi);
    let rows = lane_rows(t.m0, lane);
    var acc = zero32();
    // 4 K rows of w_cols / 4 words each
    let step = p.w_cols;
    var wl = t.lo / 4u;
    var wh = t.hi / 4u;
    for (var k4 = 0u; k4 < p.k / 4u; k4 = k4 + 1u) {
        let b = raw_weights(wl, wh);
        wl = wl + step;
        wh = wh + step;
        let wk = Weights(
            fma(b.lo0, ql[0], ql[1]),
            fma(b.lo1, ql[0], ql[1]),
            fma(b.lo2, ql[0], ql[1]),
            fma(b.lo3, ql[0], ql[1]),
            fma(b.hi0, qh[0], qh[1]),
            fma(b.hi1, qh[0], qh[1]),
            fma(b.hi2, qh[0], qh[1]),
            fma(b.hi3, qh[0], qh[1]),
        );
        acc = mac32(acc, rows, k4, wk);
    }
    store32(t.m0, t.n, acc);
}

@compute @workgroup_size(8)
fn main_t(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lane);
    if (!t.ok) {
        return;
    }
    let rows = lane_rows(t.m0, lane);
    var acc = zero32();
    // 4 K rows of w_cols / 4 words each
    let step = p.w_cols;
    var wl = t.lo / 4u;
    var wh = t.hi / 4u;
    // (scale, zero) pairs of 16 K rows, loaded every 4 steps: lane l holds rows 4 k4 + 2 l, + 1
    var q = vec4<f32>(0.0);
    let q_last = p.k / 2u - 1u;
    for (var k4 = 0u; k4 < p.k / 4u; k4 = k4 + 1u) {
        let j = k4 & 3u;
        if (j == 0u) {
            q = quant[min(2u * k4 + lane, q_last)];
        }
        // this step's rows 4 k4 .. + 3 are in lanes 2 j and 2 j + 1
        let qa = select(
            select(subgroupBroadcast(q, 0u), subgroupBroadcast(q, 2u), j == 1u),
            select(subgroupBroadcast(q, 4u), subgroupBroadcast(q, 6u), j == 3u),
            j >= 2u,
        );
        let qb = select(
            select(subgroupBroadcast(q, 1u), subgroupBroadcast(q, 3u), j == 1u),
            select(subgroupBroadcast(q, 5u), subgroupBroadcast(q, 7u), j == 3u),
            j >= 2u,
        );
        let b = raw_weights(wl, wh);
        wl = wl + step;
        wh = wh + step;
        let wk = Weights(
            (b.lo0 - qa.y) * qa.x,
            (b.lo1 - qa.w) * qa.z,
            (b.lo2 - qb.y) * qb.x,
            (b.lo3 - qb.w) * qb.z,
            (b.hi0 - qa.y) * qa.x,
            (b.hi1 - qa.w) * qa.z,
            (b.hi2 - qb.y) * qb.x,
            (b.hi3 - qb.w) * qb.z,
        );
        acc = mac32(acc, rows, k4, wk);
    }
    store32(t.m0, t.n, acc);
}
