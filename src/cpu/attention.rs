//! Multi-head attention with T5's additive biases (relative position, key padding, causal), the
//! softmax fused in; forward, and the gradients with respect to q, k and v. T5 does not scale
//! scores by 1/sqrt(d_kv) (folded into its weights). Heads are read in place from the
//! projections' rows ([`HeadRows`]); results are head-major: out `[B, H, Sq, dk]`, probabilities
//! `[B, H, Sq, Sk]`.

use super::gemm::{View, matmul};
use super::par;

/// Added to masked scores: exp underflows to exactly 0 (as in the burn model).
pub const MASKED: f32 = -1e9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub d_kv: usize,
}

/// What is added to the scores before the softmax (see [`crate::graph::Bias`]).
pub type Bias<'a> = crate::graph::Bias<'a, [f32]>;

/// Heads inside activation rows `[B * S, stride]`: head h of sequence b is rows `b * S..`,
/// columns `col + h * dk..`.
#[derive(Clone, Copy, Debug)]
pub struct HeadRows<'a> {
    pub data: &'a [f32],
    pub stride: usize,
    pub col: usize,
}

impl<'a> HeadRows<'a> {
    fn head(self, b: usize, h: usize, len: usize, dk: usize) -> View<'a> {
        let start = b * len * self.stride + self.col + h * dk;
        View {
            data: &self.data[start.min(self.data.len())..],
            rows: len,
            cols: dk,
            rs: self.stride,
            cs: 1,
        }
    }
}

pub struct Forward {
    /// `[B, H, Sq, dk]`
    pub out: Vec<f32>,
    /// `[B, H, Sq, Sk]`, kept for backward.
    pub probs: Vec<f32>,
}

/// softmax(q k^T + bias) v for every (batch, head).
pub fn forward(q: HeadRows, k: HeadRows, v: HeadRows, dims: Dims, bias: Bias) -> Forward {
    let Dims {
        batch,
        heads,
        q_len: sq,
        k_len: sk,
        d_kv: dk,
    } = dims;
    let parts = par::map(batch * heads, |bh| {
        let (b, h) = (bh / heads, bh % heads);
        let (qh, kh, vh) = (
            q.head(b, h, sq, dk),
            k.head(b, h, sk, dk),
            v.head(b, h, sk, dk),
        );
        let mut p = vec![0.0f32; sq * sk];
        matmul(&mut p, sk, qh, kh.t(), false, false);
        for i in 0..sq {
            let row = &mut p[i * sk..(i + 1) * sk];
            if let Some(pos) = bias.position {
                let pr = &pos[(h * sq + i) * sk..(h * sq + i + 1) * sk];
                row.iter_mut().zip(pr).for_each(|(s, b)| *s += b);
            }
            if let Some(m) = bias.key_mask {
                let mr = &m[b * sk..(b + 1) * sk];
                row.iter_mut()
                    .zip(mr)
                    .for_each(|(s, &m)| *s += if m > 0.5 { 0.0 } else { MASKED });
            }
            if bias.causal {
                row.iter_mut().skip(i + 1).for_each(|s| *s += MASKED);
            }
            softmax_in_place(row);
        }
        let mut o = vec![0.0f32; sq * dk];
        matmul(&mut o, dk, View::new(&p, sq, sk), vh, false, false);
        (o, p)
    });
    let mut out = Vec::with_capacity(batch * heads * sq * dk);
    let mut probs = Vec::with_capacity(batch * heads * sq * sk);
    for (o, p) in parts {
        out.extend_from_slice(&o);
        probs.extend_from_slice(&p);
    }
    Forward { out, probs }
}

fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
}

/// Head-major gradients `(dq, dk, dv)` from the output gradient `dout`.
pub fn backward(
    q: HeadRows,
    k: HeadRows,
    v: HeadRows,
    probs: &[f32],
    dout: HeadRows,
    dims: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        q_len: sq,
        k_len: sk,
        d_kv: dk,
    } = dims;
    assert_eq!(
        probs.len(),
        batch * heads * sq * sk,
        "attention backward: probs has the wrong size"
    );
    let parts = par::map(batch * heads, |bh| {
        let (b, h) = (bh / heads, bh % heads);
        let (qh, kh, vh) = (
            q.head(b, h, sq, dk),
            k.head(b, h, sk, dk),
            v.head(b, h, sk, dk),
        );
        let ph = View::new(&probs[bh * sq * sk..(bh + 1) * sq * sk], sq, sk);
        let doh = dout.head(b, h, sq, dk);
        // dP = dO v^T; dS = P * (dP - rowsum(P * dP)).
        let mut ds = vec![0.0f32; sq * sk];
        matmul(&mut ds, sk, doh, vh.t(), false, false);
        for i in 0..sq {
            let (p, d) = (
                &ph.data[i * sk..(i + 1) * sk],
                &mut ds[i * sk..(i + 1) * sk],
            );
            let dot: f32 = p.iter().zip(d.iter()).map(|(a, b)| a * b).sum();
            d.iter_mut().zip(p).for_each(|(d, p)| *d = p * (*d - dot));
        }
        let dsv = View::new(&ds, sq, sk);
        let mut dq = vec![0.0f32; sq * dk];
        matmul(&mut dq, dk, dsv, kh, false, false);
        let mut dkh = vec![0.0f32; sk * dk];
        matmul(&mut dkh, dk, dsv.t(), qh, false, false);
        let mut dvh = vec![0.0f32; sk * dk];
        matmul(&mut dvh, dk, ph.t(), doh, false, false);
        (dq, dkh, dvh)
    });
    let (mut dq, mut dkk, mut dv) = (
        Vec::with_capacity(batch * heads * sq * dk),
        Vec::with_capacity(batch * heads * sk * dk),
        Vec::with_capacity(batch * heads * sk * dk),
    );
    for (a, b, c) in parts {
        dq.extend_from_slice(&a);
        dkk.extend_from_slice(&b);
        dv.extend_from_slice(&c);
    }
    (dq, dkk, dv)
}

/// How `[B * S, stride]` activation rows hold H heads of `dk` values from column `col` on.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub d_kv: usize,
    pub stride: usize,
    pub col: usize,
}

/// Writes head-major `x` into the activation rows `out` (the inverse of [`HeadRows`]).
pub fn merge_heads(x: &[f32], out: &mut [f32], l: Heads) {
    let Heads {
        batch: b,
        len: s,
        heads: h,
        d_kv: dk,
        stride,
        col,
    } = l;
    for bi in 0..b {
        for hi in 0..h {
            for si in 0..s {
                let dst = (bi * s + si) * stride + col + hi * dk;
                let src = ((bi * h + hi) * s + si) * dk;
                out[dst..dst + dk].copy_from_slice(&x[src..src + dk]);
            }
        }
    }
}
