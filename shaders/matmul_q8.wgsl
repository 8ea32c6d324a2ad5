// C = A * B (+ C), A f32 activations [m, k], B an int8-quantised weight read and dequantised in
// the kernel: B[k, n] = W[k, n] (trans = 0, the forward product) or W[n, k] (trans = 1, the input
// gradient of backward, which multiplies by the transposed weight). W is stored as unsigned bytes,
// four to a u32, row-major over its `w_cols` columns, dequantised as (byte - zero) * scale with one
// (scale, zero) pair per W column: one pair per source tensor, repeated over the columns of that
// tensor when several weights are fused side by side.
//
// Tiled in workgroup memory: 64 x 64 outputs per workgroup of 16 x 16 invocations, each owning a
// 4 x 4 block strided by 16 (so neighbouring invocations read neighbouring words), K in steps of
// 16. Every weight byte loaded is dequantised once and reused by 64 rows.

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
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> quant: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// [BK][BM] and [BK][BN]: one k-slice of the A and B tiles.
var<workgroup> ta: array<f32, 1024>;
var<workgroup> tb: array<f32, 1024>;

fn weight(row: u32, col: u32) -> f32 {
    let idx = row * p.w_cols + col;
    let byte = (w[idx >> 2u] >> ((idx & 3u) * 8u)) & 0xffu;
    let q = quant[col];
    return (f32(byte) - q.y) * q.x;
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tiles_n = (p.n + BN - 1u) / BN;
    let tile = wg.x + wg.y * p.groups_x;
    let tiles = tiles_n * ((p.m + BM - 1u) / BM);
    if (tile >= tiles) {
        return;
    }
    let m0 = (tile / tiles_n) * BM;
    let n0 = (tile % tiles_n) * BN;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + e * 256u;
            // A: consecutive invocations read consecutive k of one row.
            let ak = idx % BK;
            let am = idx / BK;
            var va = 0.0;
            if (m0 + am < p.m && k0 + ak < p.k) {
                va = a[p.a_off + (m0 + am) * p.lda + k0 + ak];
            }
            ta[ak * BM + am] = va;
            // B: consecutive invocations read consecutive bytes of one W row.
            var vb = 0.0;
            if (p.trans == 0u) {
                let bn = idx % BN;
                let bk = idx / BN;
                if (k0 + bk < p.k && n0 + bn < p.n) {
                    vb = weight(k0 + bk, n0 + bn);
                }
                tb[bk * BN + bn] = vb;
            } else {
                let bk = idx % BK;
                let bn = idx / BK;
                if (k0 + bk < p.k && n0 + bn < p.n) {
                    vb = weight(n0 + bn, k0 + bk);
                }
                tb[bk * BN + bn] = vb;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var ra: array<f32, 4>;
            var rb: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                ra[i] = ta[kk * BM + lid.y + 16u * i];
                rb[i] = tb[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = fma(ra[i], rb[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let gm = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let gn = n0 + lid.x + 16u * j;
            if (gm < p.m && gn < p.n) {
                let at = p.c_off + gm * p.ldc + gn;
                var v = acc[i * 4u + j];
                if (p.accumulate != 0u) {
                    v = v + c[at];
                }
                c[at] = v;
            }
        }
    }
}
