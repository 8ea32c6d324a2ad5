// y = a * y + b * x over n floats: mixing encoder states, adding one loss's logit gradient to
// another's. As the Rust twin src/cpu/scale_add.rs.

struct Params {
    n: u32,
    groups_x: u32,
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn scale_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (i >= p.n) {
        return;
    }
    y[i] = p.a * y[i] + p.b * x[i];
}
