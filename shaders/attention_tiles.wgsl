// The attention of `attention.wgsl` for CPU adapters (lavapipe), where workgroup memory and
// barriers are slow and every storage load whose address is not a constant is a loop over the
// SIMD lanes. There a workgroup per query row spends two such loads per FMA. Here attention is
// cut into small dense products per (batch, head), each invocation owning a register tile, as the
// int8 matmul of `matmul_q8_rows.wgsl` does, and a workgroup is one subgroup of 8 lanes (checked
// by `kernels::lanes8`) that shares the rows all lanes need with `subgroupBroadcast`:
//
// - `scores`: s = a b^T over d_kv (q k^T plus bias and masks in forward; dout v^T in backward).
//   8 rows x 4 keys per lane: per 4 columns, lane i loads row i's vec4 and its 4 keys' vec4s,
//   20 loaded components for 128 FMAs.
// - `softmax` (forward) and `score_grads` (backward: ds = p (dp - rowsum(p dp))): one row per
//   lane, in place in `out`.
// - `mix`: o = P v with P read at any row and column stride, so one entry serves out = p v,
//   dq = ds k, dk = ds^T q and dv = p^T dout. 8 rows x 4 columns per lane: per summed index,
//   lane i loads row i's element of P and its 4 columns of v, 5 components for 32 FMAs.
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
const ROWS: u32 = 8u;
// columns per workgroup: 8 invocations x 4
const COLS: u32 = 32u;

struct Tile {
    ok: bool,
    b: u32,
    h: u32,
    bh: u32,
    r0: u32,
    c0: u32,
}

fn tile_of(group: u32, lane: u32) -> Tile {
    let per_bh = p.tiles_m * p.tiles_n;
    let bh = group / per_bh;
    let t = group % per_bh;
    return Tile(
        bh < p.batch * p.heads,
        bh / p.heads,
        bh % p.heads,
        bh,
        (t / p.tiles_n) * ROWS,
        (t % p.tiles_n) * COLS + 4u * lane,
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

@compute @workgroup_size(8)
fn scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lane);
    if (!t.ok) {
        return;
    }
    let mine = x_row(t.b, t.h, t.r0 + lane);
    let last = p.n - 1u;
    let k0 = y_row(t.b, t.h, t.c0 + 0u, last);
    let k1 = y_row(t.b, t.h, t.c0 + 1u, last);
    let k2 = y_row(t.b, t.h, t.c0 + 2u, last);
    let k3 = y_row(t.b, t.h, t.c0 + 3u, last);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var c = 0u; c < p.d_kv / 4u; c = c + 1u) {
        let y0 = y[k0 + c];
        let y1 = y[k1 + c];
        let y2 = y[k2 + c];
        let y3 = y[k3 + c];
        let bx = vec4<f32>(y0.x, y1.x, y2.x, y3.x);
        let by = vec4<f32>(y0.y, y1.y, y2.y, y3.y);
        let bz = vec4<f32>(y0.z, y1.z, y2.z, y3.z);
        let bw = vec4<f32>(y0.w, y1.w, y2.w, y3.w);
        let a = x[mine + c];
        acc0 = dot4(acc0, subgroupBroadcast(a, 0u), bx, by, bz, bw);
        acc1 = dot4(acc1, subgroupBroadcast(a, 1u), bx, by, bz, bw);
        acc2 = dot4(acc2, subgroupBroadcast(a, 2u), bx, by, bz, bw);
        acc3 = dot4(acc3, subgroupBroadcast(a, 3u), bx, by, bz, bw);
        acc4 = dot4(acc4, subgroupBroadcast(a, 4u), bx, by, bz, bw);
        acc5 = dot4(acc5, subgroupBroadcast(a, 5u), bx, by, bz, bw);
        acc6 = dot4(acc6, subgroupBroadcast(a, 6u), bx, by, bz, bw);
        acc7 = dot4(acc7, subgroupBroadcast(a, 7u), bx, by, bz, bw);
    }
    store_scores(t, t.r0 + 0u, acc0);
    store_scores(t, t.r0 + 1u, acc1);
    store_scores(t, t.r0 + 2u, acc2);
    store_scores(t, t.r0 + 3u, acc3);
    store_scores(t, t.r0 + 4u, acc4);
    store_scores(t, t.r0 + 5u, acc5);
    store_scores(t, t.r0 + 6u, acc6);
    store_scores(t, t.r0 + 7u, acc7);
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

fn store_mix(t: Tile, r: u32, v: vec4<f32>) {
    if (r >= p.m) {
        return;
    }
    let at = (t.b * p.m + r) * p.o_stride + p.o_col + t.h * p.d_kv;
    for (var cc = 0u; cc < 4u; cc = cc + 1u) {
        if (t.c0 + cc < p.d_kv) {
            out[at + t.c0 + cc] = v[cc];
        }
    }
}

@compute @workgroup_size(8)
fn mix(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let t = tile_of(wg.x + wg.y * p.groups_x, lane);
    if (!t.ok) {
        return;
    }
    // this lane's row of P (clamped to the last)
    let mine = t.bh * p.p_size + min(t.r0 + lane, p.m - 1u) * p.p_rs;
    // columns past d_kv read the head's last 4 and are never stored
    var vi = ((t.b * p.y_len) * p.y_stride + p.y_col + t.h * p.d_kv + min(t.c0, p.d_kv - 4u)) / 4u;
    let vs = p.y_stride / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var pt = mine;
    for (var s = 0u; s < p.t; s = s + 1u) {
        let v = y[vi];
        vi = vi + vs;
        let e = f[pt];
        pt = pt + p.p_ts;
        acc0 = fma(vec4<f32>(subgroupBroadcast(e, 0u)), v, acc0);
        acc1 = fma(vec4<f32>(subgroupBroadcast(e, 1u)), v, acc1);
        acc2 = fma(vec4<f32>(subgroupBroadcast(e, 2u)), v, acc2);
        acc3 = fma(vec4<f32>(subgroupBroadcast(e, 3u)), v, acc3);
        acc4 = fma(vec4<f32>(subgroupBroadcast(e, 4u)), v, acc4);
        acc5 = fma(vec4<f32>(subgroupBroadcast(e, 5u)), v, acc5);
        acc6 = fma(vec4<f32>(subgroupBroadcast(e, 6u)), v, acc6);
        acc7 = fma(vec4<f32>(subgroupBroadcast(e, 7u)), v, acc7);
    }
    store_mix(t, t.r0 + 0u, acc0);
    store_mix(t, t.r0 + 1u, acc1);
    store_mix(t, t.r0 + 2u, acc2);
    store_mix(t, t.r0 + 3u, acc3);
    store_mix(t, t.r0 + 4u, acc4);
    store_mix(t, t.r0 + 5u, acc5);
    store_mix(t, t.r0 + 6u, acc6);
    store_mix(t, t.r0 + 7u, acc7);
}
