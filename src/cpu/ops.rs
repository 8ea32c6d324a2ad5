//! [`Ops`] on the CPU: the reference ops beside this file, on f32 weights laid out `[in, out]`
//! (the `gemm` crate and rayon natively). Every op runs when it is called, so
//! [`Ops::read`] hands the buffer back as it is.

use super::attention::{self, Dims, HeadRows, Heads, merge_heads};
use super::gemm::{View, matmul};
use super::{adapter, cross_entropy, distill, gated_gelu, rms_norm, scale_add};
use crate::graph::{Bias, KeyValues, LoadError, Mat, Ops, T5Graph};
use crate::kernels::KernelError;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::T5Config;
use std::cell::RefCell;

/// flan-t5 on the CPU.
pub type CpuT5 = T5Graph<CpuOps>;

impl CpuT5 {
    pub fn from_checkpoint(ckpt: &Checkpoint, c: &T5Config) -> Result<Self, LoadError> {
        Self::load(CpuOps, ckpt, c)
    }
}

pub struct CpuOps;

/// A linear layer dequantised to f32, `[rows, cols]` = `[in, out]`.
pub struct CpuWeight {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl CpuWeight {
    fn view(&self, trans: bool) -> View<'_> {
        let v = View::new(&self.data, self.rows, self.cols);
        if trans { v.t() } else { v }
    }
}

type Buf = RefCell<Vec<f32>>;

/// `[len, stride]` rows of a buffer from column `col` on, as the attention op reads them.
/// `[rows, cols]` as read from a row-major matrix of row stride `stride`, or from its transpose.
fn strided(data: &[f32], stride: usize, (rows, cols): (usize, usize), trans: bool) -> View<'_> {
    let (rs, cs) = if trans { (1, stride) } else { (stride, 1) };
    View {
        data,
        rows,
        cols,
        rs,
        cs,
    }
}

fn rows(data: &[f32], stride: usize, col: usize) -> HeadRows<'_> {
    HeadRows { data, stride, col }
}

fn heads(d: Dims, len: usize, stride: usize, col: usize) -> Heads {
    Heads {
        batch: d.batch,
        len,
        heads: d.heads,
        d_kv: d.d_kv,
        stride,
        col,
    }
}

impl Ops for CpuOps {
    type Buf = Buf;
    type Ids = Vec<u32>;
    type Weight = CpuWeight;

    fn weight(
        &self,
        ckpt: &Checkpoint,
        names: &[String],
        inp: usize,
        scale: f32,
    ) -> Result<CpuWeight, LoadError> {
        let ws = names
            .iter()
            .map(|n| ckpt.f32(n))
            .collect::<Result<Vec<_>, _>>()?;
        let total: usize = ws.iter().map(|w| w.len() / inp).sum();
        let mut t = vec![0f32; inp * total];
        let mut col = 0;
        for w in &ws {
            for (o, row) in w.chunks_exact(inp).enumerate() {
                for (i, &x) in row.iter().enumerate() {
                    t[i * total + col + o] = if scale == 1.0 { x } else { x * scale };
                }
            }
            col += w.len() / inp;
        }
        Ok(CpuWeight {
            data: t,
            rows: inp,
            cols: total,
        })
    }

    fn zeros(&self, _: &'static str, len: usize) -> Buf {
        RefCell::new(vec![0.0; len])
    }

    fn upload(&self, _: &'static str, data: &[f32]) -> Result<Buf, KernelError> {
        Ok(RefCell::new(data.to_vec()))
    }

    fn upload_ids(&self, _: &'static str, data: &[u32]) -> Result<Vec<u32>, KernelError> {
        Ok(data.to_vec())
    }

    fn copy(&self, x: &Buf, len: usize) -> Buf {
        RefCell::new(x.borrow()[..len].to_vec())
    }

    fn matmul(&self, a: Mat<Buf>, m: usize, w: &CpuWeight, trans: bool, c: Mat<Buf>, acc: bool) {
        let wv = w.view(trans);
        if m == 0 || wv.cols == 0 {
            return;
        }
        let a_data = a.buf.borrow();
        let av = View {
            data: &a_data[a.offset..],
            rows: m,
            cols: wv.rows,
            rs: a.stride,
            cs: 1,
        };
        matmul(
            &mut c.buf.borrow_mut()[c.offset..],
            c.stride,
            av,
            wv,
            acc,
            true,
        );
    }

    fn rms_norm(&self, x: &Buf, w: &Buf, out: &Buf, rows: usize, d: usize, eps: f32) {
        let n = rows * d;
        let y = &mut out.borrow_mut()[..n];
        rms_norm::forward_into(&x.borrow()[..n], &w.borrow(), eps, y);
    }

    fn rms_norm_backward_add(
        &self,
        x: &Buf,
        w: &Buf,
        dy: &Buf,
        dx: &Buf,
        rows: usize,
        d: usize,
        eps: f32,
    ) {
        let x = &x.borrow()[..rows * d];
        let inv = rms_norm::inv_rms(x, d, eps);
        let dx = &mut dx.borrow_mut()[..rows * d];
        rms_norm::backward_add(x, &w.borrow(), &inv, &dy.borrow(), dx);
    }

    fn gated_gelu(&self, gu: &Buf, act: &Buf, rows: usize, ff: usize) {
        let out = &mut act.borrow_mut()[..rows * ff];
        gated_gelu::forward_into(&gu.borrow()[..rows * 2 * ff], ff, out);
    }

    fn gated_gelu_backward(&self, gu: &Buf, dact: &Buf, dgu: &Buf, rows: usize, ff: usize) {
        let out = &mut dgu.borrow_mut()[..rows * 2 * ff];
        gated_gelu::backward_into(&gu.borrow()[..rows * 2 * ff], &dact.borrow(), ff, out);
    }

    fn attention(
        &self,
        dims: Dims,
        q: Mat<Buf>,
        kv: KeyValues<Buf>,
        bias: Bias<Buf>,
        probs: &Buf,
        out: Mat<Buf>,
    ) {
        if dims.batch * dims.heads * dims.q_len == 0 || dims.k_len == 0 {
            return;
        }
        let f = {
            let (qd, kvd) = (q.buf.borrow(), kv.buf.borrow());
            let position = bias.position.map(|p| p.borrow());
            let key_mask = bias.key_mask.map(|m| m.borrow());
            let bias = attention::Bias {
                position: position.as_deref().map(Vec::as_slice),
                key_mask: key_mask.as_deref().map(Vec::as_slice),
                causal: bias.causal,
            };
            let (k, v) = (
                rows(&kvd, kv.stride, kv.k_col),
                rows(&kvd, kv.stride, kv.v_col),
            );
            attention::forward(rows(&qd, q.stride, q.offset), k, v, dims, bias)
        };
        *probs.borrow_mut() = f.probs;
        let layout = heads(dims, dims.q_len, out.stride, out.offset);
        merge_heads(&f.out, &mut out.buf.borrow_mut(), layout);
    }

    fn attention_backward(
        &self,
        dims: Dims,
        q: Mat<Buf>,
        kv: KeyValues<Buf>,
        probs: &Buf,
        dout: Mat<Buf>,
        _ds: &Buf,
        dq: Mat<Buf>,
        dkv: KeyValues<Buf>,
    ) {
        if dims.batch * dims.heads * dims.q_len == 0 || dims.k_len == 0 {
            return;
        }
        let (gq, gk, gv) = {
            let (qd, kvd, dod) = (q.buf.borrow(), kv.buf.borrow(), dout.buf.borrow());
            let (k, v) = (
                rows(&kvd, kv.stride, kv.k_col),
                rows(&kvd, kv.stride, kv.v_col),
            );
            let (q, dout) = (
                rows(&qd, q.stride, q.offset),
                rows(&dod, dout.stride, dout.offset),
            );
            attention::backward(q, k, v, &probs.borrow(), dout, dims)
        };
        // One write at a time: `dq` and `dkv` may be one buffer (self-attention's fused dqkv).
        let (sq, sk) = (dims.q_len, dims.k_len);
        merge_heads(
            &gq,
            &mut dq.buf.borrow_mut(),
            heads(dims, sq, dq.stride, dq.offset),
        );
        let key = heads(dims, sk, dkv.stride, dkv.k_col);
        merge_heads(&gk, &mut dkv.buf.borrow_mut(), key);
        let value = heads(dims, sk, dkv.stride, dkv.v_col);
        merge_heads(&gv, &mut dkv.buf.borrow_mut(), value);
    }

    fn log_probs(&self, logits: &Buf, targets: &Vec<u32>, out: &Buf, rows: usize, vocab: usize) {
        let logits = &logits.borrow()[..rows * vocab];
        let lp = cross_entropy::target_log_probs(logits, vocab, &targets[..rows]);
        out.borrow_mut()[..rows].copy_from_slice(&lp);
    }

    fn loss_and_grad(
        &self,
        logits: &Buf,
        targets: &Vec<u32>,
        weights: &Buf,
        out: &Buf,
        rows: usize,
        vocab: usize,
    ) {
        let logits = &mut logits.borrow_mut()[..rows * vocab];
        let (t, w) = (&targets[..rows], &weights.borrow()[..rows]);
        let losses = cross_entropy::losses_and_grad_in_place(logits, vocab, t, w);
        out.borrow_mut()[..rows].copy_from_slice(&losses);
    }

    #[allow(clippy::too_many_arguments)]
    fn distill(
        &self,
        student: &Buf,
        teacher: &Buf,
        weights: &Buf,
        out: &Buf,
        rows: usize,
        vocab: usize,
        temperature: f32,
    ) {
        let n = rows * vocab;
        let (s, t) = (&student.borrow()[..n], &mut teacher.borrow_mut()[..n]);
        let w = &weights.borrow()[..rows];
        let losses = distill::losses_and_grad_into_teacher(s, t, vocab, w, temperature);
        out.borrow_mut()[..rows].copy_from_slice(&losses);
    }

    fn scale_add(&self, y: &Buf, a: f32, x: &Buf, b: f32, len: usize) {
        scale_add::forward(&mut y.borrow_mut()[..len], a, &x.borrow()[..len], b);
    }

    fn gemm(
        &self,
        a: Mat<Buf>,
        ta: bool,
        b: Mat<Buf>,
        tb: bool,
        c: Mat<Buf>,
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) {
        let (ad, bd) = (a.buf.borrow(), b.buf.borrow());
        let av = strided(&ad[a.offset..], a.stride, (m, k), ta);
        let bv = strided(&bd[b.offset..], b.stride, (k, n), tb);
        matmul(
            &mut c.buf.borrow_mut()[c.offset..],
            c.stride,
            av,
            bv,
            accumulate,
            true,
        );
    }

    fn add_bias(&self, y: &Buf, bias: &Buf, rows: usize, cols: usize) {
        adapter::add_bias(&mut y.borrow_mut()[..rows * cols], &bias.borrow()[..cols]);
    }

    fn relu(&self, x: &Buf, y: &Buf, len: usize) {
        adapter::relu(&x.borrow()[..len], &mut y.borrow_mut()[..len]);
    }

    fn relu_backward(&self, x: &Buf, dy: &Buf, len: usize) {
        adapter::relu_backward(&x.borrow()[..len], &mut dy.borrow_mut()[..len]);
    }

    fn column_sums(&self, x: &Buf, out: Mat<Buf>, rows: usize, cols: usize) {
        let x = &x.borrow()[..rows * cols];
        let at = out.offset;
        adapter::column_sums(x, &mut out.buf.borrow_mut()[at..at + cols]);
    }

    fn dot(&self, x: &Buf, z: &Buf, len: usize, out: &Buf, slot: usize) {
        out.borrow_mut()[slot] = adapter::dot(&x.borrow()[..len], &z.borrow()[..len]);
    }

    fn flush(&self) {}

    fn read(
        &self,
        buf: Buf,
        len: usize,
    ) -> impl std::future::Future<Output = Result<Vec<f32>, KernelError>> {
        let mut v = buf.into_inner();
        v.truncate(len);
        std::future::ready(Ok(v))
    }
}
