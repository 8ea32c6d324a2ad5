//! What the page and its worker share of the browser (wasm32 only). A page's global object is a
//! `Window`, a worker's a `WorkerGlobalScope`: both have fetch, the Cache API, `performance` and
//! `navigator`, under different web-sys types, so everything reaches them through here.

pub mod download;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CacheStorage, Performance, Window, WorkerGlobalScope};

enum Scope {
    Window(Window),
    Worker(WorkerGlobalScope),
}

fn scope() -> Result<Scope, String> {
    let global = js_sys::global();
    if let Some(w) = global.dyn_ref::<Window>() {
        return Ok(Scope::Window(w.clone()));
    }
    global
        .dyn_into::<WorkerGlobalScope>()
        .map(Scope::Worker)
        .map_err(|_| "neither a window nor a worker: no fetch here".to_string())
}

/// `fetch(url)` in this scope.
pub fn fetch(url: &str) -> Result<js_sys::Promise, String> {
    Ok(match scope()? {
        Scope::Window(w) => w.fetch_with_str(url),
        Scope::Worker(w) => w.fetch_with_str(url),
    })
}

/// The Cache API (absent on insecure origins and in some private modes).
pub fn caches() -> Result<CacheStorage, String> {
    match scope()? {
        Scope::Window(w) => w.caches(),
        Scope::Worker(w) => w.caches(),
    }
    .map_err(|e| format!("the Cache API is not available here: {e:?}"))
}

pub fn performance() -> Option<Performance> {
    match scope().ok()? {
        Scope::Window(w) => w.performance(),
        Scope::Worker(w) => w.performance(),
    }
}

/// `navigator.gpu`, when the browser has WebGPU (in a window or a worker).
pub fn navigator_gpu() -> Option<JsValue> {
    let nav = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = js_sys::Reflect::get(&nav, &"gpu".into()).ok()?;
    (!gpu.is_undefined() && !gpu.is_null()).then_some(gpu)
}
