//! Entry point of the web app (built by Trunk for wasm32).

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(metaprompt::app::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!(
        "metaprompt-web is the browser app: build and serve it with `trunk serve` (see README)"
    );
    std::process::exit(2);
}
