//! Data parallelism over rows and independent items: rayon natively, a plain loop in wasm (no
//! threads there without cross-origin isolation).

/// Calls `f(row_index, row)` for every `width`-long row of `data`.
pub fn rows_mut<F>(data: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    if width == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(width)
            .with_min_len(16)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
    #[cfg(target_arch = "wasm32")]
    data.chunks_mut(width)
        .enumerate()
        .for_each(|(i, r)| f(i, r));
}

/// `(0..n).map(f).collect()`, in parallel natively.
pub fn map<T: Send, F>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> T + Send + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).map(f).collect()
}
