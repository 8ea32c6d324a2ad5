//! Milliseconds since an arbitrary start, on both platforms (std's Instant panics in wasm32),
//! and a pause that lets the worker's event loop run.

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
