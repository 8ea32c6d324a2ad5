//! Entry point of the page's worker (built by Trunk for wasm32 as a Web Worker, loaded by the
//! page from `metaprompt-worker_loader.js`): the model, training and generation run here.

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    metaprompt::worker::host::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("metaprompt-worker is the web app's worker: `trunk serve` builds it (see README)");
    std::process::exit(2);
}
