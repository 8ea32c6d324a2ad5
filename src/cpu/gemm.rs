//! Strided matrix views and one checked entry point to the `gemm` crate: the backward pass
//! multiplies by transposed weights and transposed attention probabilities, which are views here,
//! never copies.

/// A read-only matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Columns `c0..c0 + cols` of every row.
    pub fn cols(self, c0: usize, cols: usize) -> Self {
        assert!(c0 + cols <= self.cols, "column block out of range");
        Self {
            data: &self.data[(c0 * self.cs).min(self.data.len())..],
            cols,
            ..self
        }
    }

    /// Rows `r0..r0 + rows`.
    pub fn rows(self, r0: usize, rows: usize) -> Self {
        assert!(r0 + rows <= self.rows, "row block out of range");
        Self {
            data: &self.data[(r0 * self.rs).min(self.data.len())..],
            rows,
            ..self
        }
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "{what}: a {}x{} view with strides ({}, {}) reaches past {} elements",
                self.rows,
                self.cols,
                self.rs,
                self.cs,
                self.data.len()
            );
        }
    }
}

/// Products at least this large (multiply-adds) are split across threads natively; below it the
/// threads' start-up costs more than they save.
const PARALLEL_WORK: usize = 1 << 21;

/// `out = a @ b` (or `out += a @ b` when `accumulate`), `out` row-major `[a.rows, b.cols]` with
/// row stride `out_rs`. `parallel: false` is for callers that already run on a worker thread.
pub fn matmul(out: &mut [f32], out_rs: usize, a: View, b: View, accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(
        k, b.rows,
        "matmul: inner dimensions {k} and {} differ",
        b.rows
    );
    a.check("matmul lhs");
    b.check("matmul rhs");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        out_rs >= n,
        "matmul: output row stride {out_rs} < {n} columns"
    );
    assert!(
        (m - 1) * out_rs + n <= out.len(),
        "matmul: output of {} elements is too small for {m}x{n} (row stride {out_rs})",
        out.len()
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                out[r * out_rs..r * out_rs + n].fill(0.0);
            }
        }
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    let par = if parallel && m * n * k >= PARALLEL_WORK {
        if m < FEW_ROWS && rayon::current_num_threads() > 1 {
            return few_rows(out, out_rs, a, b, accumulate);
        }
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(target_arch = "wasm32")]
    let par = {
        let _ = (parallel, PARALLEL_WORK);
        gemm::Parallelism::None
    };
    // SAFETY: every index the product touches was bounds-checked above (`check` and the output
    // assertion); the three slices are distinct borrows, so nothing aliases.
    unsafe { gemm_raw(out.as_mut_ptr(), out_rs, a, b, accumulate, par) }
}

/// The gemm crate's product into `out` (row stride `out_rs`).
///
/// # Safety
/// `out` must be valid for writes at every `i * out_rs + j` (`i < a.rows`, `j < b.cols`), and no
/// other reference may touch those elements while it runs; `a` and `b` must be checked views.
unsafe fn gemm_raw(
    out: *mut f32,
    out_rs: usize,
    a: View,
    b: View,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            out_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// Below this many rows the gemm crate's own threading leaves cores idle (it splits over row
/// blocks): the decoder's 32-row products (`bench gemm`: the LM head's input gradient ran at 21
/// GFLOP/s, its forward at 60, against 250 for the encoder's 672 rows).
#[cfg(not(target_arch = "wasm32"))]
const FEW_ROWS: usize = 64;

/// A product with few rows, split by hand: over the inner dimension when it is the longest
/// (partial products summed), else over column blocks of the output.
#[cfg(not(target_arch = "wasm32"))]
fn few_rows(out: &mut [f32], out_rs: usize, a: View, b: View, accumulate: bool) {
    use rayon::prelude::*;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let threads = rayon::current_num_threads();
    if k >= n {
        let chunk = k.div_ceil(threads);
        let partials: Vec<Vec<f32>> = (0..k.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let (k0, len) = (c * chunk, chunk.min(k - c * chunk));
                let mut part = vec![0f32; m * n];
                matmul(&mut part, n, a.cols(k0, len), b.rows(k0, len), false, false);
                part
            })
            .collect();
        for i in 0..m {
            let row = &mut out[i * out_rs..i * out_rs + n];
            if !accumulate {
                row.fill(0.0);
            }
            for part in &partials {
                row.iter_mut()
                    .zip(&part[i * n..(i + 1) * n])
                    .for_each(|(o, p)| *o += p);
            }
        }
    } else {
        // Column blocks of one output: each task writes only its own columns of every row.
        let chunk = n.div_ceil(threads).next_multiple_of(16);
        let base = SendPtr(out.as_mut_ptr());
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let (n0, w) = (c * chunk, chunk.min(n - c * chunk));
            // SAFETY: `matmul` checked that every row of `out` holds `n` columns; the blocks'
            // column ranges are disjoint and `out` is not otherwise used while they run.
            unsafe {
                let at = base.get().add(n0);
                gemm_raw(
                    at,
                    out_rs,
                    a,
                    b.cols(n0, w),
                    accumulate,
                    gemm::Parallelism::None,
                );
            }
        });
    }
}

/// A raw pointer that may cross to rayon's threads (see its one use).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
#[cfg(not(target_arch = "wasm32"))]
unsafe impl Send for SendPtr {}
#[cfg(not(target_arch = "wasm32"))]
unsafe impl Sync for SendPtr {}
#[cfg(not(target_arch = "wasm32"))]
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `a @ b` into a new row-major buffer.
pub fn product(a: View, b: View) -> Vec<f32> {
    let mut out = vec![0.0; a.rows * b.cols];
    matmul(&mut out, b.cols, a, b, false, true);
    out
}

/// The obvious triple loop: the reference the GEMM path is tested against.
pub fn naive(a: View, b: View) -> Vec<f32> {
    let mut out = vec![0.0; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut s = 0.0f64;
            for k in 0..a.cols {
                s += a.data[i * a.rs + k * a.cs] as f64 * b.data[k * b.rs + j * b.cs] as f64;
            }
            out[i * b.cols + j] = s as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfcheck::test_values;

    #[test]
    fn strided_products_match_the_triple_loop() {
        let (m, k, n) = (37, 19, 23);
        let a = test_values(m * k, 1);
        let bt = test_values(n * k, 2); // b stored transposed
        let got = product(View::new(&a, m, k), View::new(&bt, n, k).t());
        let want = naive(View::new(&a, m, k), View::new(&bt, n, k).t());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        // A column block of a wider matrix, accumulated into a strided output.
        let wide = test_values(m * 40, 3);
        let blk = View::new(&wide, m, 40).cols(7, k);
        let mut out = vec![1.0; m * 30];
        matmul(&mut out, 30, blk, View::new(&bt, n, k).t(), true, true);
        let want = naive(blk, View::new(&bt, n, k).t());
        for i in 0..m {
            for j in 0..n {
                assert!((out[i * 30 + j] - 1.0 - want[i * n + j]).abs() < 1e-4);
            }
            assert!(out[i * 30 + n..i * 30 + 30].iter().all(|&x| x == 1.0));
        }
    }

    #[test]
    fn few_row_products_split_by_hand_match_the_triple_loop() {
        // Above the parallel threshold with 8 rows: a long inner dimension (split over k) and a
        // wide output (split over column blocks), accumulated into a strided output.
        for (m, k, n) in [(8, 4100, 70), (8, 60, 4500)] {
            let a = test_values(m * k, 1);
            let b = test_values(k * n, 2);
            let (av, bv) = (View::new(&a, m, k), View::new(&b, k, n));
            let mut out = vec![0.5; m * (n + 3)];
            matmul(&mut out, n + 3, av, bv, true, true);
            let want = naive(av, bv);
            for i in 0..m {
                for j in 0..n {
                    let (g, w) = (out[i * (n + 3) + j] - 0.5, want[i * n + j]);
                    assert!(
                        (g - w).abs() < 1e-3 * w.abs().max(1.0),
                        "{m}x{k}x{n} ({i},{j}): {g} vs {w}"
                    );
                }
                assert!(
                    out[i * (n + 3) + n..(i + 1) * (n + 3)]
                        .iter()
                        .all(|&x| x == 0.5)
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "reaches past")]
    fn an_out_of_range_view_is_refused() {
        let a = vec![0.0; 10];
        let _ = product(View::new(&a, 4, 4), View::new(&a, 4, 1));
    }
}
