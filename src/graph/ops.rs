//! The ops the T5 graph is written over, with the operand layouts both backends share: an
//! activation is a buffer of f32 rows, a matrix inside it is a column offset and a row stride,
//! and attention reads its heads from the projections' columns in place.

use crate::cpu::attention::Dims;
use crate::kernels::KernelError;
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use std::future::Future;

/// An f32 matrix inside a buffer: element (i, j) at `offset + i * stride + j`.
pub struct Mat<'a, B: ?Sized> {
    pub buf: &'a B,
    pub offset: usize,
    pub stride: usize,
}

impl<'a, B: ?Sized> Mat<'a, B> {
    pub fn new(buf: &'a B, stride: usize) -> Self {
        Self {
            buf,
            offset: 0,
            stride,
        }
    }

    /// Columns from `col` on.
    pub fn col(self, col: usize) -> Self {
        Self {
            offset: self.offset + col,
            ..self
        }
    }
}

impl<B: ?Sized> Clone for Mat<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for Mat<'_, B> {}

/// Keys and values side by side in one buffer: `[batch * k_len, stride]`, a head's columns at
/// `k_col + h * d_kv` and `v_col + h * d_kv`.
pub struct KeyValues<'a, B: ?Sized> {
    pub buf: &'a B,
    pub stride: usize,
    pub k_col: usize,
    pub v_col: usize,
}

impl<B: ?Sized> Clone for KeyValues<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for KeyValues<'_, B> {}

/// What is added to the attention scores before the softmax.
pub struct Bias<'a, B: ?Sized> {
    /// `[H, Sq, Sk]` relative-position bias, shared by the batch.
    pub position: Option<&'a B>,
    /// `[B, Sk]`: 1 where a key is a real token, 0 at padding.
    pub key_mask: Option<&'a B>,
    /// Query i sees keys j <= i only.
    pub causal: bool,
}

impl<B: ?Sized> Clone for Bias<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for Bias<'_, B> {}

impl<B: ?Sized> Default for Bias<'_, B> {
    fn default() -> Self {
        Self {
            position: None,
            key_mask: None,
            causal: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// One backend: our CPU kernels (`crate::cpu::ops`) or our WGSL kernels (`crate::kernels::ops`).
/// Ops record work in order; results are only ever observed through [`Ops::read`], so a GPU
/// backend may queue them and a CPU backend runs them on the spot.
pub trait Ops {
    /// f32 activations.
    type Buf;
    /// Token ids (cross-entropy targets).
    type Ids;
    /// A frozen linear layer, `[in, out]`.
    type Weight;

    /// The PyTorch `[out, in]` weights `names`, side by side as one `[inp, sum(out)]` matrix
    /// (fused q/k/v, gate/linear); `scale` multiplies every element (a tied head's d^-0.5).
    fn weight(
        &self,
        ckpt: &Checkpoint,
        names: &[String],
        inp: usize,
        scale: f32,
    ) -> Result<Self::Weight, LoadError>;
    fn zeros(&self, label: &'static str, len: usize) -> Self::Buf;
    fn upload(&self, label: &'static str, data: &[f32]) -> Result<Self::Buf, KernelError>;
    fn upload_ids(&self, label: &'static str, data: &[u32]) -> Result<Self::Ids, KernelError>;
    /// A copy of the first `len` floats of `x` (the residual stream a sub-layer adds into).
    fn copy(&self, x: &Self::Buf, len: usize) -> Self::Buf;

    /// `c (+)= a W` (`trans` false: `a` is `[m, W.in]`) or `c (+)= a W^T` (`a` is `[m, W.out]`).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        a: Mat<Self::Buf>,
        m: usize,
        w: &Self::Weight,
        trans: bool,
        c: Mat<Self::Buf>,
        accumulate: bool,
    );
    /// `out = x / rms(x) * w` over `rows` rows of `d`.
    #[allow(clippy::too_many_arguments)]
    fn rms_norm(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        d: usize,
        eps: f32,
    );
    /// `dx += ` the norm's input gradient for output gradient `dy` (the gain is frozen).
    #[allow(clippy::too_many_arguments)]
    fn rms_norm_backward_add(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: &Self::Buf,
        rows: usize,
        d: usize,
        eps: f32,
    );
    /// `act` `[rows, ff]` = gelu(gate) * linear, from `gu` `[rows, 2 * ff]`.
    fn gated_gelu(&self, gu: &Self::Buf, act: &Self::Buf, rows: usize, ff: usize);
    /// `dgu` `[rows, 2 * ff]` from `dact` `[rows, ff]`.
    fn gated_gelu_backward(
        &self,
        gu: &Self::Buf,
        dact: &Self::Buf,
        dgu: &Self::Buf,
        rows: usize,
        ff: usize,
    );
    /// softmax(q k^T + bias) v: `probs` `[batch, heads, q_len, k_len]` and the output into `out`
    /// (`[batch * q_len, ..]`, head h at columns `h * d_kv`).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        dims: Dims,
        q: Mat<Self::Buf>,
        kv: KeyValues<Self::Buf>,
        bias: Bias<Self::Buf>,
        probs: &Self::Buf,
        out: Mat<Self::Buf>,
    );
    /// From `dout`: `dq` into `dq`, and `dk`, `dv` into `dkv`'s key and value columns (which
    /// may be `dq`'s buffer). `ds` is scratch of the probabilities' size.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        dims: Dims,
        q: Mat<Self::Buf>,
        kv: KeyValues<Self::Buf>,
        probs: &Self::Buf,
        dout: Mat<Self::Buf>,
        ds: &Self::Buf,
        dq: Mat<Self::Buf>,
        dkv: KeyValues<Self::Buf>,
    );
    /// `out[r]` = log p(targets[r]) under row r of `logits` `[rows, vocab]`.
    fn log_probs(
        &self,
        logits: &Self::Buf,
        targets: &Self::Ids,
        out: &Self::Buf,
        rows: usize,
        vocab: usize,
    );
    /// `out[r]` = `-weights[r] * log p(targets[r])`, and `logits` := d sum(out) / d logits.
    #[allow(clippy::too_many_arguments)]
    fn loss_and_grad(
        &self,
        logits: &Self::Buf,
        targets: &Self::Ids,
        weights: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        vocab: usize,
    );
    /// `out[r]` = `weights[r] * T^2 * KL(softmax(teacher_r / T) || softmax(student_r / T))`, and
    /// `teacher` := d sum(out) / d student (`[rows, vocab]` logits; distillation).
    #[allow(clippy::too_many_arguments)]
    fn distill(
        &self,
        student: &Self::Buf,
        teacher: &Self::Buf,
        weights: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        vocab: usize,
        temperature: f32,
    );
    /// `y[..len] = a * y + b * x`; `x` is another buffer than `y`.
    fn scale_add(&self, y: &Self::Buf, a: f32, x: &Self::Buf, b: f32, len: usize);
    /// `c (+)= op(a) op(b)` on f32 matrices (trainable modules: forward, input and weight
    /// gradients): `op(a)` is `[m, k]` (`a` read transposed when `ta`), `op(b)` `[k, n]`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        a: Mat<Self::Buf>,
        ta: bool,
        b: Mat<Self::Buf>,
        tb: bool,
        c: Mat<Self::Buf>,
        mkn: (usize, usize, usize),
        accumulate: bool,
    );
    /// `y[r, c] += bias[c]` over `rows` rows of `cols`.
    fn add_bias(&self, y: &Self::Buf, bias: &Self::Buf, rows: usize, cols: usize);
    /// `y[..len] = max(x, 0)`.
    fn relu(&self, x: &Self::Buf, y: &Self::Buf, len: usize);
    /// `dy[..len] *= (x > 0)`, `x` being ReLU's input.
    fn relu_backward(&self, x: &Self::Buf, dy: &Self::Buf, len: usize);
    /// `out[c] = sum_r x[r, c]` (bias gradients) for `c < cols`, at `out`'s offset.
    fn column_sums(&self, x: &Self::Buf, out: Mat<Self::Buf>, rows: usize, cols: usize);
    /// `out[slot] = x[..len] . z[..len]`.
    fn dot(&self, x: &Self::Buf, z: &Self::Buf, len: usize, out: &Self::Buf, slot: usize);
    /// Starts what has been recorded so far (a GPU runs one layer while the next is recorded).
    fn flush(&self);
    /// The first `len` floats of `buf`, once everything recorded before has run.
    fn read(
        &self,
        buf: Self::Buf,
        len: usize,
    ) -> impl Future<Output = Result<Vec<f32>, KernelError>>;
}
