// Log-softmax and cross-entropy over the vocabulary, fused with the gradient: one workgroup per
// row of logits. `loss_and_grad` overwrites the logits with d loss / d logits =
// w * (softmax - onehot(target)) and writes each row's weighted loss -w * log p(target);
// `log_probs` only writes log p(target) (rank classification). As the Rust twin
// src/cpu/cross_entropy.rs.

struct Params {
    rows: u32,
    vocab: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

fn reduce_max(li: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    return red[0];
}

fn reduce_sum(li: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

// log p(target) of row `r`; every invocation gets it.
fn target_log_prob(r: u32, li: u32) -> f32 {
    let base = r * p.vocab;
    var mx = -3.4e38;
    for (var c = li; c < p.vocab; c = c + WG) {
        mx = max(mx, logits[base + c]);
    }
    red[li] = mx;
    workgroupBarrier();
    mx = reduce_max(li);
    workgroupBarrier();
    var sum = 0.0;
    for (var c = li; c < p.vocab; c = c + WG) {
        sum = sum + exp(logits[base + c] - mx);
    }
    red[li] = sum;
    workgroupBarrier();
    sum = reduce_sum(li);
    return logits[base + targets[r]] - (mx + log(sum));
}

@compute @workgroup_size(256)
fn log_probs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = wg.x + wg.y * p.groups_x;
    if (r >= p.rows) {
        return;
    }
    let lp = target_log_prob(r, li);
    if (li == 0u) {
        out[r] = lp;
    }
}

@compute @workgroup_size(256)
fn loss_and_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = wg.x + wg.y * p.groups_x;
    if (r >= p.rows) {
        return;
    }
    let t = targets[r];
    let base = r * p.vocab;
    let lp = target_log_prob(r, li);
    let lse = logits[base + t] - lp;
    // Everyone has read logits[t] before anyone overwrites it.
    workgroupBarrier();
    let w = weights[r];
    for (var c = li; c < p.vocab; c = c + WG) {
        var g = w * exp(logits[base + c] - lse);
        if (c == t) {
            g = g - w;
        }
        logits[base + c] = g;
    }
    if (li == 0u) {
        out[r] = -lp * w;
    }
}
