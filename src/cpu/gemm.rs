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
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
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
    #[should_panic(expected = "reaches past")]
    fn an_out_of_range_view_is_refused() {
        let a = vec![0.0; 10];
        let _ = product(View::new(&a, 4, 4), View::new(&a, 4, 1));
    }
}
