// T5 attention for one layer, softmax fused: scores = q k^T (no 1/sqrt(d) scaling in T5) + the
// relative-position bias + key-padding and causal masks (-1e9, as the Rust twin
// src/cpu/attention.rs), softmax, then probs v. Heads are read from and written to the projection
// layouts directly ([tokens, stride] with a head's d_kv columns at `col + h * d_kv`), so no
// split/merge copies are needed: q, k, v sit side by side in a fused qkv buffer, or k, v in the
// cross-attention's kv buffer.
//
// One workgroup of 64 invocations per (batch, head, query row) in forward and in the row pass of
// backward, one per (batch, head, key row) in the key pass. Inside a row the invocations split the
// keys (scores, softmax reductions in workgroup memory) and then the d_kv output columns, so a GPU
// gets batch * heads * len workgroups to spread over its cores instead of that many invocations,
// and reads of k and v rows are coalesced over columns. The probabilities (or score gradients)
// of the row pass through `scores` in storage; storageBarrier makes them visible to the whole
// workgroup.

struct Params {
    batch: u32,
    heads: u32,
    q_len: u32,
    k_len: u32,
    d_kv: u32,
    // queries: q[(b * q_len + i) * q_stride + q_col + h * d_kv + c]
    q_stride: u32,
    q_col: u32,
    // keys and values in the kv buffer
    kv_stride: u32,
    k_col: u32,
    v_col: u32,
    // forward output / upstream gradient of the output, [b * q_len, o_stride]
    o_stride: u32,
    // gradient outputs: dq (row pass), dk and dv (key pass) in `grad`
    g_stride: u32,
    gq_col: u32,
    gk_col: u32,
    gv_col: u32,
    // 1: position bias, 2: key mask, 4: causal
    flags: u32,
}

@group(0) @binding(0) var<storage, read> qs: array<f32>;
@group(0) @binding(1) var<storage, read> kvs: array<f32>;
// position bias [heads, q_len, k_len] in forward; the probabilities in backward
@group(0) @binding(2) var<storage, read> bias_or_probs: array<f32>;
// key mask [batch, k_len] in forward; the output's upstream gradient in backward
@group(0) @binding(3) var<storage, read> mask_or_dout: array<f32>;
// probabilities [batch, heads, q_len, k_len] (forward writes them); score gradients in backward
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
// forward: the output; backward: the gradient of q (row pass) or of k and v (key pass)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

const MASKED: f32 = -1e9;

fn q_at(b: u32, i: u32, h: u32) -> u32 {
    return (b * p.q_len + i) * p.q_stride + p.q_col + h * p.d_kv;
}

fn kv_at(b: u32, j: u32, h: u32, col: u32) -> u32 {
    return (b * p.k_len + j) * p.kv_stride + col + h * p.d_kv;
}

const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;

// Every invocation passes in its partial value and gets the workgroup's max (or sum) back.
fn reduce_max(li: u32, x: f32) -> f32 {
    red[li] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, x: f32) -> f32 {
    red[li] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.x + wg.y * nw.x;
    if (row >= p.batch * p.heads * p.q_len) {
        return;
    }
    let i = row % p.q_len;
    let h = (row / p.q_len) % p.heads;
    let b = row / (p.q_len * p.heads);
    let base = row * p.k_len;
    let qa = q_at(b, i, h);
    var mx = -3.4e38;
    for (var j = li; j < p.k_len; j = j + WG) {
        let ka = kv_at(b, j, h, p.k_col);
        var s = 0.0;
        for (var c = 0u; c < p.d_kv; c = c + 1u) {
            s = fma(qs[qa + c], kvs[ka + c], s);
        }
        if ((p.flags & 1u) != 0u) {
            s = s + bias_or_probs[(h * p.q_len + i) * p.k_len + j];
        }
        if ((p.flags & 2u) != 0u && mask_or_dout[b * p.k_len + j] <= 0.5) {
            s = s + MASKED;
        }
        if ((p.flags & 4u) != 0u && j > i) {
            s = s + MASKED;
        }
        scores[base + j] = s;
        mx = max(mx, s);
    }
    mx = reduce_max(li, mx);
    var sum = 0.0;
    for (var j = li; j < p.k_len; j = j + WG) {
        let e = exp(scores[base + j] - mx);
        scores[base + j] = e;
        sum = sum + e;
    }
    let inv = 1.0 / reduce_sum(li, sum);
    for (var j = li; j < p.k_len; j = j + WG) {
        scores[base + j] = scores[base + j] * inv;
    }
    storageBarrier();
    let oa = (b * p.q_len + i) * p.o_stride + h * p.d_kv;
    for (var c = li; c < p.d_kv; c = c + WG) {
        var acc = 0.0;
        for (var j = 0u; j < p.k_len; j = j + 1u) {
            acc = fma(scores[base + j], kvs[kv_at(b, j, h, p.v_col) + c], acc);
        }
        out[oa + c] = acc;
    }
}

// Row pass: ds = p * (dout v^T - rowsum(p * dout v^T)) into `scores`, and dq = ds k into `out`.
@compute @workgroup_size(64)
fn backward_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.x + wg.y * nw.x;
    if (row >= p.batch * p.heads * p.q_len) {
        return;
    }
    let i = row % p.q_len;
    let h = (row / p.q_len) % p.heads;
    let b = row / (p.q_len * p.heads);
    let base = row * p.k_len;
    let da = (b * p.q_len + i) * p.o_stride + h * p.d_kv;
    var dot = 0.0;
    for (var j = li; j < p.k_len; j = j + WG) {
        let va = kv_at(b, j, h, p.v_col);
        var dp = 0.0;
        for (var c = 0u; c < p.d_kv; c = c + 1u) {
            dp = fma(mask_or_dout[da + c], kvs[va + c], dp);
        }
        scores[base + j] = dp;
        dot = fma(bias_or_probs[base + j], dp, dot);
    }
    dot = reduce_sum(li, dot);
    for (var j = li; j < p.k_len; j = j + WG) {
        scores[base + j] = bias_or_probs[base + j] * (scores[base + j] - dot);
    }
    storageBarrier();
    let ga = (b * p.q_len + i) * p.g_stride + p.gq_col + h * p.d_kv;
    for (var c = li; c < p.d_kv; c = c + WG) {
        var acc = 0.0;
        for (var j = 0u; j < p.k_len; j = j + 1u) {
            acc = fma(scores[base + j], kvs[kv_at(b, j, h, p.k_col) + c], acc);
        }
        out[ga + c] = acc;
    }
}

// Key pass (after the row pass): dk = ds^T q and dv = p^T dout for one key row per workgroup,
// its invocations over the d_kv columns.
@compute @workgroup_size(64)
fn backward_keys(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.x + wg.y * nw.x;
    if (row >= p.batch * p.heads * p.k_len) {
        return;
    }
    let j = row % p.k_len;
    let h = (row / p.k_len) % p.heads;
    let b = row / (p.k_len * p.heads);
    let bh = b * p.heads + h;
    let gk = (b * p.k_len + j) * p.g_stride + h * p.d_kv;
    for (var c = li; c < p.d_kv; c = c + WG) {
        var dk = 0.0;
        var dv = 0.0;
        for (var i = 0u; i < p.q_len; i = i + 1u) {
            let s = (bh * p.q_len + i) * p.k_len + j;
            dk = fma(scores[s], qs[q_at(b, i, h) + c], dk);
            dv = fma(bias_or_probs[s], mask_or_dout[(b * p.q_len + i) * p.o_stride + h * p.d_kv + c], dv);
        }
        out[gk + p.gk_col + c] = dk;
        out[gk + p.gv_col + c] = dv;
    }
}
