//! Downloads with byte-level progress, kept in the browser's Cache API so a reload (or the next
//! visit) reads the 77 MB checkpoint from disk instead of the network.

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, ReadableStreamDefaultReader, Response};

pub use crate::worker::protocol::{Progress, Source};

pub struct Fetched {
    pub bytes: Vec<u8>,
    pub source: Source,
    /// Whether the bytes are now in the cache (false when the browser refused: no Cache API in
    /// this context, or the storage quota is exhausted).
    pub cached: bool,
}

fn js_err(what: &str, e: JsValue) -> String {
    let msg = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {msg}")
}

async fn wait(p: Promise, what: &str) -> Result<JsValue, String> {
    JsFuture::from(p).await.map_err(|e| js_err(what, e))
}

async fn open_cache(name: &str) -> Option<Cache> {
    let storage = super::caches().ok()?;
    wait(storage.open(name), "open cache")
        .await
        .ok()?
        .dyn_into()
        .ok()
}

/// `url` from cache `cache_name` if it is there, else from the network (then stored). Calls
/// `on_progress` after every chunk.
pub async fn fetch_cached(
    url: &str,
    cache_name: &str,
    on_progress: &dyn Fn(Progress),
) -> Result<Fetched, String> {
    let cache = open_cache(cache_name).await;
    if let Some(cache) = &cache {
        let hit = wait(cache.match_with_str(url), url).await?;
        if let Ok(resp) = hit.dyn_into::<Response>() {
            let bytes = read_body(&resp, url, on_progress).await?;
            return Ok(Fetched {
                bytes,
                source: Source::Cache,
                cached: true,
            });
        }
    }
    let resp: Response = wait(super::fetch(url)?, url)
        .await?
        .dyn_into()
        .map_err(|_| format!("{url}: fetch did not return a Response"))?;
    if !resp.ok() {
        return Err(format!(
            "{url}: the server answered HTTP {} {}",
            resp.status(),
            resp.status_text()
        ));
    }
    let mut bytes = read_body(&resp, url, on_progress).await?;
    let cached = match &cache {
        Some(cache) => store(cache, url, &mut bytes).await.is_ok(),
        None => false,
    };
    Ok(Fetched {
        bytes,
        source: Source::Network,
        cached,
    })
}

async fn store(cache: &Cache, url: &str, bytes: &mut [u8]) -> Result<(), String> {
    let resp = Response::new_with_opt_u8_array(Some(bytes)).map_err(|e| js_err(url, e))?;
    wait(cache.put_with_str(url, &resp), "cache put").await?;
    Ok(())
}

/// Reads a response body chunk by chunk, reporting progress; checks the length the server
/// announced, so a cut connection is an error rather than a truncated model.
async fn read_body(
    resp: &Response,
    url: &str,
    on_progress: &dyn Fn(Progress),
) -> Result<Vec<u8>, String> {
    let header = |name: &str| resp.headers().get(name).ok().flatten();
    // With a content encoding the announced length is the compressed size: not comparable.
    let encoded = header("content-encoding").is_some_and(|e| e != "identity");
    let total = header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| !encoded);
    let body = resp.body().ok_or_else(|| format!("{url}: empty body"))?;
    let reader: ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| format!("{url}: body has no default reader"))?;
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    on_progress(Progress { loaded: 0, total });
    loop {
        let chunk = wait(reader.read(), url).await?;
        let done = Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(|e| js_err(url, e))?
            .dyn_into()
            .map_err(|_| format!("{url}: a body chunk is not bytes"))?;
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        on_progress(Progress {
            loaded: bytes.len() as u64,
            total,
        });
    }
    if let Some(total) = total
        && total != bytes.len() as u64
    {
        return Err(format!(
            "{url}: got {} bytes but the server announced {total}: the download was cut",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Whether `url` is in cache `cache_name` (without reading it).
pub async fn is_cached(url: &str, cache_name: &str) -> bool {
    let Some(cache) = open_cache(cache_name).await else {
        return false;
    };
    matches!(wait(cache.match_with_str(url), url).await, Ok(v) if v.is_instance_of::<Response>())
}

/// Drops the whole cache `cache_name`.
pub async fn forget(cache_name: &str) -> Result<(), String> {
    let storage = super::caches()?;
    wait(storage.delete(cache_name), "delete cache").await?;
    Ok(())
}

/// `url` from the network without caching (small files that may change between deployments);
/// `None` when the server has no such file (404).
pub async fn fetch_plain(url: &str) -> Result<Option<Vec<u8>>, String> {
    let resp: Response = wait(super::fetch(url)?, url)
        .await?
        .dyn_into()
        .map_err(|_| format!("{url}: fetch did not return a Response"))?;
    if resp.status() == 404 {
        return Ok(None);
    }
    if !resp.ok() {
        return Err(format!(
            "{url}: the server answered HTTP {} {}",
            resp.status(),
            resp.status_text()
        ));
    }
    read_body(&resp, url, &|_| {}).await.map(Some)
}
