//! What the page's panels share: the model as the worker reports it (its phase, and the
//! tokenizer the page keeps for counting tokens), and small helpers to keep a person's work in
//! the browser (localStorage) across reloads.

use crate::browser::download::Source;
use crate::text::tokenizer::T5Tokenizer;
use crate::worker::protocol::{Probe, Progress, Timing};
use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use std::rc::Rc;

/// Where the model is, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not loaded; whether the checkpoint is already in the cache (None while asking).
    Idle {
        cached: Option<bool>,
    },
    /// The worker is starting (its module compiling) or about to read the files.
    Starting,
    Downloading {
        file: String,
        progress: Progress,
    },
    /// Parsing the checkpoint and uploading the dequantised weights to the GPU.
    Preparing,
    Ready {
        secs: f64,
        source: Source,
        cached: bool,
        /// Our engines' times for one step of `probe`'s shape.
        timings: Vec<Timing>,
        probe: Probe,
        /// Cached files found damaged and fetched again.
        repaired: Vec<String>,
    },
    Failed(String),
}

/// The model once loaded (in the worker); `ready` changes when it does, so views can react.
#[derive(Clone, Copy)]
pub struct ModelCtx {
    pub phase: RwSignal<Phase>,
    pub ready: Memo<bool>,
    /// The model's tokenizer, read by the page itself once the worker has the model.
    tokenizer: StoredValue<Option<Rc<T5Tokenizer>>, LocalStorage>,
    pub has_tokenizer: RwSignal<bool>,
}

impl ModelCtx {
    pub fn new() -> Self {
        let phase = RwSignal::new(Phase::Idle { cached: None });
        Self {
            phase,
            ready: Memo::new(move |_| phase.with(|p| matches!(p, Phase::Ready { .. }))),
            tokenizer: StoredValue::new_local(None),
            has_tokenizer: RwSignal::new(false),
        }
    }

    pub fn tokenizer(&self) -> Option<Rc<T5Tokenizer>> {
        self.tokenizer.get_value()
    }

    pub fn set_tokenizer(&self, t: T5Tokenizer) {
        self.tokenizer.set_value(Some(Rc::new(t)));
        self.has_tokenizer.set(true);
    }
}

/// Cache API name of the model's files; a new checkpoint format gets a new cache.
pub fn cache_name() -> String {
    format!("metaprompt-{}", crate::model::checkpoint::FORMAT)
}

/// `KEY=value` from the page's address, if there.
fn query(key: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// The step the engines are timed on at load: `?probe=bench` (the page's benchmark,
/// scripts/bench-browser.sh) times the native benchmark's shape, else a quick one.
pub fn probe() -> Probe {
    match query("probe").as_deref() {
        Some("bench") => Probe::BENCH,
        _ => Probe::QUICK,
    }
}

/// The folder the model is read from: `?model=DIR` in the page's address (the end-to-end tests
/// point it at a tiny model) if it is a relative folder on this origin, else the converted
/// flan-t5-small served next to the page.
pub fn model_dir() -> String {
    match query("model")
        .as_deref()
        .map(crate::model::model_dir_from_query)
    {
        Some(Ok(dir)) => dir,
        Some(Err(_)) | None => "models/flan-t5-small/".into(),
    }
}

/// Why the link's `?model=` was refused (another origin, an absolute path...), for the page to
/// say; the default model loads instead.
pub fn model_query_refused() -> Option<String> {
    query("model")
        .as_deref()
        .map(crate::model::model_dir_from_query)?
        .err()
}

/// Fetches the text file `file` served beside the page (`metaprompt data presets`) into `paste`;
/// a missing file or a failed fetch is said in `error`.
pub fn load_preset(file: &'static str, paste: RwSignal<String>, error: RwSignal<Option<String>>) {
    leptos::task::spawn_local(async move {
        match crate::browser::download::fetch_plain(file).await {
            Ok(Some(bytes)) => {
                error.set(None);
                paste.set(String::from_utf8_lossy(&bytes).into_owned());
            }
            Ok(None) => error.set(Some(format!(
                "{file} is not served here (run scripts/serve.sh, which writes the presets)"
            ))),
            Err(e) => error.set(Some(e)),
        }
    });
}

/// A value kept in localStorage under `metaprompt.KEY` (JSON), or `default` when absent or
/// unreadable (an old format is replaced rather than breaking the page).
pub fn load_local<T: DeserializeOwned>(key: &str, default: T) -> T {
    use gloo::storage::{LocalStorage, Storage};
    LocalStorage::get(format!("metaprompt.{key}")).unwrap_or(default)
}

/// Saves to localStorage; a full or disabled storage is reported on the console, not fatal.
pub fn save_local<T: Serialize>(key: &str, value: &T) {
    use gloo::storage::{LocalStorage, Storage};
    if let Err(e) = LocalStorage::set(format!("metaprompt.{key}"), value) {
        gloo::console::warn!(format!("could not keep {key} in localStorage: {e}"));
    }
}

/// A signal initialised from localStorage and written back on every change.
pub fn persisted<T>(key: &'static str, default: T) -> RwSignal<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let s = RwSignal::new(load_local(key, default));
    Effect::new(move |_| s.with(|v| save_local(key, v)));
    s
}

/// Offers `bytes` as a file download named `name`.
pub fn download(name: &str, mime: &str, bytes: &[u8]) -> Result<(), String> {
    use wasm_bindgen::JsCast;
    let err = |e: wasm_bindgen::JsValue| format!("download {name}: {e:?}");
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).map_err(err)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(err)?;
    let doc = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = doc
        .create_element("a")
        .map_err(err)?
        .dyn_into()
        .map_err(|_| "not an anchor".to_string())?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url).map_err(err)?;
    Ok(())
}

/// A paste box bound to `text`. A paste over `text::examples::MAX_PASTE_BYTES` is refused as it
/// lands: the box goes back to what it held and the refusal (size, lines) is said under it. The
/// browser itself takes seconds per keystroke to lay out a 10 MB textarea, so the page stays
/// responsive only if such a text never stays in one.
#[leptos::component]
pub fn PasteBox(id: &'static str, text: RwSignal<String>) -> impl leptos::IntoView {
    use wasm_bindgen::JsCast;
    let refused = RwSignal::new(None::<String>);
    let on_input = move |ev: leptos::ev::Event| {
        let value = event_target_value(&ev);
        match crate::text::examples::check_size(&value) {
            Ok(()) => {
                refused.set(None);
                text.set(value);
            }
            Err(p) => {
                refused.set(Some(format!("{p}. The box keeps what it held before.")));
                if let Some(box_) = ev
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::HtmlTextAreaElement>().ok())
                {
                    box_.set_value(&text.get_untracked());
                }
            }
        }
    };
    view! {
        <textarea id=id rows="10" spellcheck="false"
            prop:value=move || text.get()
            on:input=on_input></textarea>
        {move || refused.get().map(|e| view! { <p class="error paste-refused" role="alert">{e}</p> })}
    }
}
