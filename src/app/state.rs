//! What the page's panels share: the loaded model (with our GPU engine beside it), and small
//! helpers to keep a person's work in the browser (localStorage) across reloads.

use crate::cpu::CpuT5;
use crate::gpu::Gpu;
use crate::kernels::GpuT5;
use crate::model::LoadedModel;
use crate::model::checkpoint::Checkpoint;
use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use std::rc::Rc;

/// Our engine for tuning: the WGSL kernels when there is WebGPU, else our CPU step compiled to
/// WebAssembly (one thread; much slower, but the page still works).
pub enum Ours {
    Gpu(Box<GpuT5>),
    Cpu(Box<CpuT5>),
}

/// The frozen T5 twice over: burn's model (generation, initialisations, the generic engine, on
/// an autodiff device: the GPU, or burn's CPU backend without WebGPU) and our engine.
pub struct Loaded {
    pub model: LoadedModel,
    pub ours: Ours,
    /// Where it runs, for run records: the adapter's name, or the CPU.
    pub adapter: String,
}

impl Loaded {
    pub fn from_bytes(
        gpu: Option<&Gpu>,
        safetensors: &[u8],
        config_json: &[u8],
        tokenizer_json: &[u8],
    ) -> Result<Self, String> {
        let device = gpu.map_or_else(burn::tensor::Device::flex, |g| g.device.clone());
        let model =
            LoadedModel::from_bytes(safetensors, config_json, tokenizer_json, &device.autodiff())
                .map_err(|e| e.to_string())?;
        let c = &model.t5.config;
        let ckpt = Checkpoint::parse(safetensors, c).map_err(|e| e.to_string())?;
        let (ours, adapter) = match gpu {
            Some(g) => (
                Ours::Gpu(Box::new(
                    GpuT5::from_checkpoint(g, &ckpt, c).map_err(|e| e.to_string())?,
                )),
                g.report().name,
            ),
            None => (
                Ours::Cpu(Box::new(
                    CpuT5::from_checkpoint(&ckpt, c).map_err(|e| e.to_string())?,
                )),
                "the CPU (WebAssembly, no WebGPU)".into(),
            ),
        };
        Ok(Self {
            model,
            ours,
            adapter,
        })
    }
}

/// The model once loaded; `ready` changes when it does, so views can react.
#[derive(Clone, Copy)]
pub struct ModelCtx {
    pub loaded: StoredValue<Option<Rc<Loaded>>, LocalStorage>,
    pub ready: RwSignal<bool>,
}

impl ModelCtx {
    pub fn new() -> Self {
        Self {
            loaded: StoredValue::new_local(None),
            ready: RwSignal::new(false),
        }
    }

    pub fn get(&self) -> Option<Rc<Loaded>> {
        self.loaded.get_value()
    }

    pub fn set(&self, l: Rc<Loaded>) {
        self.loaded.set_value(Some(l));
        self.ready.set(true);
    }
}

/// The folder the model is read from: `?model=DIR` in the page's address (the end-to-end tests
/// point it at a tiny model) if it is a relative folder on this origin, else the converted
/// flan-t5-small served next to the page.
pub fn model_dir() -> String {
    let query = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let asked = query
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("model="));
    match asked.map(crate::model::model_dir_from_query) {
        Some(Ok(dir)) => dir,
        Some(Err(why)) => {
            gloo::console::warn!(format!("{why}; loading the default model"));
            "models/flan-t5-small/".into()
        }
        None => "models/flan-t5-small/".into(),
    }
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
