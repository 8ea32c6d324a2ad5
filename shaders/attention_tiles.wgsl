// The attention of `attention.wgsl` for CPU adapters (lavapipe), where workgroup memory and
// barriers are slow and every storage load whose address is not a constant is a loop over the
// SIMD lanes. There a workgroup per query row spends two such loads per FMA. Here attention is
// cut into small dense products per (batch, head), each invocation owning a register tile, as the
// int8 matmul of `matmul_q8_rows.wgsl` does, and a workgroup is one subgroup of 8 lanes (checked
// by `kernels::lanes8`) that shares the rows all lanes need with `subgroupBroadcast`:
//
// - `scores`: s = a b^T over d_kv (q k^T plus bias and masks in forward; dout v^T in backward).
//   32 rows x 4 keys per lane: per 4 columns, lane i loads the vec4s of rows i, i + 8, i + 16,
//   i + 24 and of its 4 keys, 32 loaded components for 512 FMAs.
// - `softmax` (forward) and `score_grads` (backward: ds = p (dp - rowsum(p dp))): one row per
//   lane, in place in `out`.
// - `mix`: o = P v with P read at any row and column stride, so one entry serves out = p v,
//   dq = ds k, dk = ds^T q and dv = p^T dout. 32 rows x 8 columns per lane: per summed index,
//   lane i loads the elements of P of rows i, i + 8, i + 16, i + 24 and its 8 columns of v, 12
//   components for 256 FMAs.
//
// On lavapipe (the encoder's [84x84]·[84x64] x 48 heads of `mix`): 8 rows x 4 columns per lane
// took 590 ms per step, every lane loading all 8 rows itself (no subgroups) 1426 ms.
//
// No workgroup memory and no barriers. Preconditions (checked by `attention::AttentionKernel`,
// which uses `attention.wgsl` otherwise): d_kv and every row stride and column offset of a vec4
// operand are multiples of 4. Browsers need `enable subgroups;` first, which naga does not parse:
// `kernels::subgroup_source` adds it in wasm builds.

struct Params {
    batch: u32,
    heads: u32,
    // output rows and columns per (batch, head): scores [q_len, k_len]; mix [rows, d_kv]
    m: u32,
    n: u32,
    // summed length of `mix`
    t: u32,
    d_kv: u32,
    // `x` (scores' left operand): row r of batch b, head h at (b * x_len + r) * x_stride + x_col
    // + h * d_kv; `y` (scores' right operand, mix's v) alike
    x_len: u32,
    x_stride: u32,
    x_col: u32,
    y_len: u32,
    y_stride: u32,
    y_col: u32,
    // mix's output: (b * m + r) * o_stride + o_col + h * d_kv + c
    o_stride: u32,
    o_col: u32,
    // mix's P: element (r, t) of (batch, head) bh at bh * p_size + r * p_rs + t * p_ts
    p_size: u32,
    p_rs: u32,
    p_ts: u32,
    // scores: 1: position bias, 2: key mask, 4: causal
    flags: u32,
    tiles_m: u32,
    tiles_n: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;
// scores: position bias [heads, q_len, k_len]; mix: P; score_grads: the probabilities
@group(0) @binding(2) var<storage, read> f: array<f32>;
// scores: key mask [batch, k_len]
@group(0) @binding(3) var<storage, read> g: array<f32>;
// scores [batch, heads, m, n] (softmax and score_grads work on it in place); mix's output
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const MASKED: f32 = -1e9;
const ROWS: u32 = 32u;
// columns per workgroup: 8 lanes x 4 keys in `scores`, 8 lanes x 8 columns in `mix`
const SCORE_COLS: u32 = 32u;
const MIX_COLS: u32 = 64u;

struct Tile {
    ok: bool,
    b: u32,
    h: u32,
    bh: u32,
    r0: u32,
    c0: u32,
}

fn tile_of(group: u32, lane: u32, cols: u32) -> Tile {
    let per_bh = p.tiles_m * p.tiles_n;
    let bh = group / per_bh;
    let t = group % per_bh;
    return Tile(
        bh < p.batch * p.heads,
        bh / p.heads,
        bh % p.heads,
        bh,
        (t / p.tiles_n) * ROWS,
        (t % p.tiles_n) * cols + (cols / 8u) * lane,
    );
}

// vec4 index of row r (clamped to the last) of a head in x or y.
fn x_row(b: u32, h: u32, r: u32) -> u32 {
    return ((b * p.x_len + min(r, p.m - 1u)) * p.x_stride + p.x_col + h * p.d_kv) / 4u;
}

fn y_row(b: u32, h: u32, r: u32, last: u32) -> u32 {
    return ((b * p.y_len + min(r, last)) * p.y_stride + p.y_col + h * p.d_kv) / 4u;
}

fn store_scores(t: Tile, i: u32, v: vec4<f32>) {
    if (i >= p.m) {
        return;
    }
    for (var jj = 0u; jj < 4u; jj = jj + 1u) {
        let j = t.c0 + jj;
        if (j < p.n) {
            var s = v[jj];
            if ((p.flags & 1u) != 0u) {
                s = s + f[(t.h * p.m + i) * p.n + j];
            }
            if ((p.flags & 2u) != 0u && g[t.b * p.n + j] <= 0.5) {
                s = s + MASKED;
            }
            if ((p.flags & 4u) != 0u && j > i) {
                s = s + MASKED;
            }
            out[(t.bh * p.m + i) * p.n + j] = s;
        }
    }
}

// acc + sum over the 4 columns of x . (column k of 4 y rows, transposed in bx..bw)
fn dot4(acc: vec4<f32>, a: vec4<f32>, bx: vec4<f32>, by: vec4<f32>, bz: vec4<f32>, bw: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(a.x), bx, fma(vec4<f32>(a.y), by, fma(vec4<f32>(a.z), bz, fma(vec4<f32>(a.w), bw, acc))));
}

// A lane's 4 keys of 8 rows, one row per lane of the subgroup.
struct Scores8 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
    r4: vec4<f32>,
    r5: vec4<f32>,
    r6: vec4<f32>,
    r7: vec4<f32>,
}

// `a` is lane i's vec4 of row i: every lane takes each row's in turn.
fn dot8(acc: Scores8, a: vec4<f32>, bx: vec4<f32>, by: vec4<f32>, bz: vec4<f32>, bw: vec4<f32>) -> Scores8 {
    return Scores8(
        dot4(acc.r0, subgroupBroadcast(a, 0u), bx, by, bz, bw),
        dot4(acc.r1, subgroupBroadcast(a, 1u), bx, by, bz, bw),
        dot4(acc.r2, subgroupBroadcast(a, 2u), bx, by, bz, bw),
        dot4(acc.r3, subgroupBroadcast(a, 3u), bx, by, bz, bw),
        dot4(acc.r4, subgroupBroadcast(a, 4u), bx, by, bz, bw),
        dot4(acc.r5, subgroupBroadcast(a, 5u), bx, by, bz, bw),
        dot4(acc.r6, subgroupBroadcast(a, 6u), bx, by, bz, bw),
        dot4(acc.r7, subgroupBroadcast(a, 7u), bx, by, bz, bw),
    );
}

fn store_scores8(t: Tile, i0: u32, acc: Scores8) {
    store_scores(t, i0, acc.r0);
    store_scores(t, i0 + 1u, acc.r1);
    store_scores(t, i0 + 2u, acc.r2);
    store_scores(t, i0 + 3u, acc.r3);
    store_scores(t, i0 + 4u, acc.r4);
    store_scores(t, i0 + 5u, acc.r5);
    store_scores(t, i0 + 6u, acc.r6);
    store_scores(t, i0 + 7u, acc.r7);
}

@compute @workgroup_size(8)
fn scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lane, SCORE_COLS);
    if (!t.ok) {
        return;
    }
    let a0 = x_row(t.b, t.h, t.r0 + lane);
    let a1 = x_row(t.b, t.h, t.r0 + lane + 8u);
    let a2 = x_row(t.b, t.h, t.r0 + lane + 16u);
    let a3 = x_row(t.b, t.h, t.r0 + lane + 24u);
    let last = p.n - 1u;
    let k0 = y_row(t.b, t.h, t.c0 + 0u, last);
    let k1 = y_row(t.b, t.h, t.c0 + 1u, last);
    let k2 = y_row(t.b, t.h, t.c0 + 2u, last);
    let k3 = y_row(t.b, t.h, t.c0 + 3u, last);
    let z = vec4<f32>(0.0);
    var acc0 = Scores8(z, z, z, z, z, z, z, z);
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    for (var c = 0u; c < p.d_kv / 4u; c = c + 1u) {
        let y0 = y[k0 + c];
        let y1 = y[k1 + c];
        let y2 = y[k2 + c];
        let y3 = y[k3 + c];
        let bx = vec4<f32>(y0.x, y1.x, y2.x, y3.x);
        let by = vec4<f32>(y0.y, y1.y, y2.y, y3.y);
        let bz = vec4<f32>(y0.z, y1.z, y2.z, y3.z);
        let bw = vec4<f32>(y0.w, y1.w, y2.w, y3.w);
        acc0 = dot8(acc0, x[a0 + c], bx, by, bz, bw);
        acc1 = dot8(acc1, x[a1 + c], bx, by, bz, bw);
        acc2 = dot8(acc2, x[a2 + c], bx, by, bz, bw);
        acc3 = dot8(acc3, x[a3 + c], bx, by, bz, bw);
    }
    store_scores8(t, t.r0, acc0);
    store_scores8(t, t.r0 + 8u, acc1);
    store_scores8(t, t.r0 + 16u, acc2);
    store_scores8(t, t.r0 + 24u, acc3);
}

// The row of `out` an invocation owns in the row passes, or none past the last.
fn own_row(wg: vec3<u32>, lane: u32) -> u32 {
    return ((wg.x + wg.y * p.groups_x) * 8u + lane);
}

@compute @workgroup_size(8)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = own_row(wg, lid.x);
    if (row >= p.batch * p.heads * p.m) {
        return;
    }
    let base = row * p.n;
    var mx = -3.4e38;
    for (var j = 0u; j < p.n; j = j + 1u) {
        mx = max(mx, out[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.n; j = j + 1u) {
        let e = exp(out[base + j] - mx);
        out[base + j] = e;
        sum = sum + e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < p.n; j = j + 1u) {
        out[base + j] = out[base + j] * inv;
    }
}

// `out` holds dp = dout v^T; the probabilities are in `f`.
@compute @workgroup_size(8)
fn score_grads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = own_row(wg, lid.x);
    if (row >= p.batch * p.heads * p.m) {
        return;
    }
    let base = row * p.n;
    var dot = 0.0;
    for (var j = 0u; j < p.n; j = j + 1u) {
        dot = fma(f[base + j], out[base + j], dot);
    }
    for (var j = 0u; j < p.n; j = j + 1u) {
        out[base + j] = f[base + j] * (out[base + j] - dot);
    }
}

fn store_mix(t: Tile, r: u32, v: vec4<f32>, c0: u32) {
    if (r >= p.m) {
        return;
    }
    let at = (t.b * p.m + r) * p.o_stride + p.o_col + t.h * p.d_kv;
    for (var cc = 0u; cc < 4u; cc = cc + 1u) {
        if (c0 + cc < p.d_kv) {
            out[at + c0 + cc] = v[cc];
        }
    }
}

// 8 columns of one row: `lo` columns 0..3, `hi` 4..7.
struct Acc {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// A lane's 8 columns of 8 rows, one row per lane of the subgroup.
struct Mix8 {
    r0: Acc,
    r1: Acc,
    r2: Acc,
    r3: Acc,
    r4: Acc,
    r5: Acc,
    r6: Acc,
    r7: Acc,
}

fn mac(acc: Acc, e: f32, v: Acc) -> Acc {
    return Acc(fma(vec4<f32>(e), v.lo, acc.lo), fma(vec4<f32>(e), v.hi, acc.hi));
}

// `e` is lane i's element of P in row i: every lane takes each row's in turn.
fn mix8(acc: Mix8, e: f32, v: Acc) -> Mix8 {
    return Mix8(
        mac(acc.r0, subgroupBroadcast(e, 0u), v),
        mac(acc.r1, subgroupBroadcast(e, 1u), v),
        mac(acc.r2, subgroupBroadcast(e, 2u), v),
        mac(acc.r3, subgroupBroadcast(e, 3u), v),
        mac(acc.r4, subgroupBroadcast(e, 4u), v),
        mac(acc.r5, subgroupBroadcast(e, 5u), v),
        mac(acc.r6, subgroupBroadcast(e, 6u), v),
        mac(acc.r7, subgroupBroadcast(e, 7u), v),
    );
}

fn store_row(t: Tile, r: u32, acc: Acc) {
    store_mix(t, r, acc.lo, t.c0);
    store_mix(t, r, acc.hi, t.c0 + 4u);
}

fn store_mix8(t: Tile, r0: u32, acc: Mix8) {
    store_row(t, r0, acc.r0);
    store_row(t, r0 + 1u, acc.r1);
    store_row(t, r0 + 2u, acc.r2);
    store_row(t, r0 + 3u, acc.r3);
    store_row(t, r0 + 4u, acc.r4);
    store_row(t, r0 + 5u, acc.r5);
    store_row(t, r0 + 6u, acc.r6);
    store_row(t, r0 + 7u, acc.r7);
}

// Index in P of row r0 + r (clamped to the last) of (batch, head) bh.
fn p_row(bh: u32, r: u32) -> u32 {
    return bh * p.p_size + min(r, p.m - 1u) * p.p_rs;
}

@compute @workgroup_size(8)
fn mix(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lane, MIX_COLS);
    if (!t.ok) {
        return;
    }
    var p0 = p_row(t.bh, t.r0 + lane);
    var p1 = p_row(t.bh, t.r0 + lane + 8u);
    var p2 = p_row(t.bh, t.r0 + lane + 16u);
    var p3 = p_row(t.bh, t.r0 + lane + 24u);
    // columns past d_kv read the head's last 4 and are never stored
    let head = (t.b * p.y_len) * p.y_stride + p.y_col + t.h * p.d_kv;
    var vlo = (head + min(t.c0, p.d_kv - 4u)) / 4u;
    var vhi = (head + min(t.c0 + 4u, p.d_kv - 4u)) / 4u;
    let vs = p.y_stride / 4u;
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0));
    var acc0 = Mix8(z, z, z, z, z, z, z, z);
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    for (var s = 0u; s < p.t; s = s + 1u) {
        let v = Acc(y[vlo], y[vhi]);
        vlo = vlo + vs;
        vhi = vhi + vs;
        acc0 = mix8(acc0, f[p0], v);
        acc1 = mix8(acc1, f[p1], v);
        acc2 = mix8(acc2, f[p2], v);
        acc3 = mix8(acc3, f[p3], v);
        p0 = p0 + p.p_ts;
        p1 = p1 + p.p_ts;
        p2 = p2 + p.p_ts;
        p3 = p3 + p.p_ts;
    }
    store_mix8(t, t.r0, acc0);
    store_mix8(t, t.r0 + 8u, acc1);
    store_mix8(t, t.r0 + 16u, acc2);
    store_mix8(t, t.r0 + 24u, acc3);
}
