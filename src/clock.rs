//! Milliseconds since an arbitrary start, on both platforms (std's Instant panics in wasm32),
//! a pause that lets the worker's event loop run, and a time limit on a future.

#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    crate::browser::performance()
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Hands the event loop a turn in the page's worker (a timer task, so that messages posted
/// meanwhile, a Stop among them, are read); nothing natively.
pub async fn pause() {
    #[cfg(target_arch = "wasm32")]
    gloo::timers::future::TimeoutFuture::new(0).await;
}

/// `fut`'s output, or None when `ms` milliseconds pass first (the future is dropped). For
/// browser work that may never answer, such as a software WebGPU adapter that hangs.
#[cfg(target_arch = "wasm32")]
pub async fn within<T>(ms: u32, fut: impl std::future::Future<Output = T>) -> Option<T> {
    use futures_util::future::{Either, select};
    let (fut, timer) = (
        std::pin::pin!(fut),
        gloo::timers::future::TimeoutFuture::new(ms),
    );
    match select(fut, timer).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}
