//! Milliseconds since an arbitrary start, on both platforms (std's Instant panics in wasm32).

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
