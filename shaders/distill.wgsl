// Soft-target loss (LFPT5's knowledge distillation) fused with its gradient: one workgroup per
// row of logits. With q = softmax(teacher / T) and p = softmax(student / T), row r's loss is
// w * T^2 * KL(q || p) and the teacher's row is overwritten with d loss / d student =
// w * T * (p - q). As the Rust twin src/cpu/distill.rs.

struct Params {
    rows: u32,
    vocab: u32,
    groups_x: u32,
    temperature: f32,
}

@group(0) @binding(0) var<storage, read> student: array<f32>;
@group(0) @binding(1) var<storage, read_write> teacher: array<f32>;
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
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32) -> f32 {
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

// log sum exp(x / T) of the row at `base` of the student (`which` 0) or the teacher (1).
fn log_sum_exp(base: u32, which: u32, li: u32) -> f32 {
    let inv_t = 1.0 / p.temperature;
    var mx = -3.4e38;
    for (var c = li; c < p.vocab; c = c + WG) {
        let v = select(student[base + c], teacher[base + c], which == 1u) * inv_t;
        mx = max(mx, v);
    }
    red[li] = mx;
    workgroupBarrier();
    mx = reduce_max(li);
    var sum = 0.0;
    for (var c = li; c < p.vocab; c = c + WG) {
        let v = select(student[base + c], teacher[base + c], which == 1u) * inv_t;
        sum = sum + exp(v - mx);
    }
    red[li] = sum;
    workgroupBarrier();
    return mx + log(reduce_sum(li));
}

@compute @workgroup_size(256)
fn loss_and_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = wg.x + wg.y * p.groups_x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.vocab;
    let inv_t = 1.0 / p.temperature;
    let ls = log_sum_exp(base, 0u, li);
    let lt = log_sum_exp(base, 1u, li);
    let w = weights[r];
    var kl = 0.0;
    // Each invocation reads and then overwrites only its own columns.
    for (var c = li; c < p.vocab; c = c + WG) {
        let log_p = student[base + c] * inv_t - ls;
        let log_q = teacher[base + c] * inv_t - lt;
        let q = exp(log_q);
        kl = kl + q * (log_q - log_p);
        teacher[base + c] = w * p.temperature * (exp(log_p) - q);
    }
    red[li] = kl;
    workgroupBarrier();
    kl = reduce_sum(li);
    if (li == 0u) {
        out[r] = w * p.temperature * p.temperature * kl;
    }
}
