//! Downloads with byte-level progress, kept in the browser's Cache API so a reload (or the next
//! visit) reads the 77 MB checkpoint from disk instead of the network.

use crate::model::manifest::{self, FileEntry, Manifest};
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
    /// What was wrong with the cached copy that was replaced, if one was.
    pub repaired: Option<String>,
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

/// `url` from cache `cache_name` (under `key`) if it is there, else from the network (then
/// stored under `key`). With `expect` (the manifest's entry) the bytes are checked: a damaged
/// cache entry is dropped and fetched again, a download that is not the named file is an error.
/// Calls `on_progress` after every chunk.
pub async fn fetch_cached(
    url: &str,
    key: &str,
    expect: Option<&FileEntry>,
    cache_name: &str,
    on_progress: &dyn Fn(Progress),
) -> Result<Fetched, String> {
    let cache = open_cache(cache_name).await;
    let mut repaired = None;
    if let Some(cache) = &cache {
        let hit = wait(cache.match_with_str(key), url).await?;
        if let Ok(resp) = hit.dyn_into::<Response>() {
            let bytes = read_body(&resp, url, on_progress).await?;
            match expect.map_or(Ok(()), |e| e.verify(&bytes)) {
                Ok(()) => {
                    return Ok(Fetched {
                        bytes,
                        source: Source::Cache,
                        cached: true,
                        repaired: None,
                    });
                }
                Err(why) => {
                    wait(cache.delete_with_str(key), "cache delete").await?;
                    repaired = Some(format!(
                        "{url}: the cached copy was damaged ({why}): fetched again"
                    ));
                }
            }
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
    if let Some(e) = expect {
        e.verify(&bytes).map_err(|why| {
            format!("{url}: the server's file is not the one its manifest names ({why}): the model folder is inconsistent or the download was damaged")
        })?;
    }
    let cached = match &cache {
        Some(cache) => {
            let stored = store(cache, key, &mut bytes).await.is_ok();
            if stored && key != url {
                drop_other_versions(cache, url, key).await;
            }
            stored
        }
        None => false,
    };
    Ok(Fetched {
        bytes,
        source: Source::Network,
        cached,
        repaired,
    })
}

/// Deletes the entries of `url` under keys other than `key` (a file's earlier versions: 77 MB
/// each for the weights). Best effort: a leftover entry costs space, not correctness.
async fn drop_other_versions(cache: &Cache, url: &str, key: &str) {
    let Ok(keys) = wait(cache.keys(), "cache keys").await else {
        return;
    };
    let keys: js_sys::Array = keys.unchecked_into();
    for req in keys.iter() {
        let Ok(req) = req.dyn_into::<web_sys::Request>() else {
            continue;
        };
        // Keys are absolute; `url` and `key` are relative to the page.
        let full = req.url();
        let path = full.split('?').next().unwrap_or(&full);
        if path.ends_with(url) && !full.ends_with(key) {
            let _ = wait(cache.delete_with_str(&full), "cache delete").await;
        }
    }
}

async fn store(cache: &Cache, key: &str, bytes: &mut [u8]) -> Result<(), String> {
    let resp = Response::new_with_opt_u8_array(Some(bytes)).map_err(|e| js_err(key, e))?;
    wait(cache.put_with_str(key, &resp), "cache put").await?;
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

/// A model folder's files as the page and its worker read them: through the Cache API, keyed by
/// the SHA-256 that the folder's manifest.json names (an older folder without one: by URL, and
/// unchecked).
pub struct ModelFiles {
    dir: String,
    cache: String,
    manifest: Option<Manifest>,
}

impl ModelFiles {
    /// Reads `dir`'s manifest (never from a cache: it says what the files are now).
    pub async fn open(dir: &str, cache: &str) -> Result<Self, String> {
        let url = format!("{dir}{}", manifest::FILE);
        let manifest = match fetch_plain(&url).await? {
            Some(bytes) => Some(Manifest::from_json(&bytes).map_err(|e| format!("{url}: {e}"))?),
            None => {
                gloo::console::warn!(format!(
                    "{url}: none (a folder written before manifests): the cache is keyed by URL and unchecked"
                ));
                None
            }
        };
        Ok(Self {
            dir: dir.into(),
            cache: cache.into(),
            manifest,
        })
    }

    fn entry(&self, file: &str) -> Result<Option<&FileEntry>, String> {
        self.manifest
            .as_ref()
            .map(|m| m.entry(file).map_err(|e| format!("{}{e}", self.dir)))
            .transpose()
    }

    /// The URL and the cache key of `file`.
    fn key(&self, file: &str) -> Result<(String, String), String> {
        let url = format!("{}{file}", self.dir);
        let key = match self.entry(file)? {
            Some(e) => format!("{url}?sha256={}", e.sha256),
            None => url.clone(),
        };
        Ok((url, key))
    }

    pub async fn fetch(
        &self,
        file: &str,
        on_progress: &dyn Fn(Progress),
    ) -> Result<Fetched, String> {
        let (url, key) = self.key(file)?;
        fetch_cached(&url, &key, self.entry(file)?, &self.cache, on_progress).await
    }

    /// Whether this version of `file` is in the cache (without reading it).
    pub async fn is_cached(&self, file: &str) -> bool {
        let (Ok((url, key)), Some(cache)) = (self.key(file), open_cache(&self.cache).await) else {
            return false;
        };
        matches!(wait(cache.match_with_str(&key), &url).await, Ok(v) if v.is_instance_of::<Response>())
    }
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
