//! Past comparison runs in the browser's IndexedDB (one JSON record per run, keyed by its id), so
//! that a reload, or the next visit, finds them; listed with buttons to reopen or delete.

use crate::compare::RunRecord;
use rexie::{ObjectStore, Rexie, Store, Transaction, TransactionMode};
use wasm_bindgen::JsValue;

const DB: &str = "metaprompt";
const STORE: &str = "runs";

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("run history (IndexedDB) {what}: {e}")
}

async fn open() -> Result<Rexie, String> {
    Rexie::builder(DB)
        .version(1)
        .add_object_store(ObjectStore::new(STORE))
        .build()
        .await
        .map_err(|e| err("open", e))
}

/// A transaction on the runs store and the store itself.
async fn runs(mode: TransactionMode, what: &str) -> Result<(Transaction, Store), String> {
    let db = open().await?;
    let tx = db.transaction(&[STORE], mode).map_err(|e| err(what, e))?;
    let store = tx.store(STORE).map_err(|e| err(what, e))?;
    Ok((tx, store))
}

/// Stores (or replaces) `run`.
pub async fn save(run: &RunRecord) -> Result<(), String> {
    let json = serde_json::to_string(run).map_err(|e| err("serialise", e))?;
    let (tx, store) = runs(TransactionMode::ReadWrite, "write").await?;
    store
        .put(
            &JsValue::from_str(&json),
            Some(&JsValue::from_f64(run.id as f64)),
        )
        .await
        .map_err(|e| err("write", e))?;
    tx.done().await.map_err(|e| err("write", e))?;
    Ok(())
}

/// Every stored run, newest first. A record this version cannot read is reported, not dropped
/// from the database.
pub async fn list() -> Result<(Vec<RunRecord>, Vec<String>), String> {
    // Held until the read is done.
    let (_tx, store) = runs(TransactionMode::ReadOnly, "read").await?;
    let values = store
        .get_all(None, None)
        .await
        .map_err(|e| err("read", e))?;
    let (mut runs, mut bad) = (Vec::new(), Vec::new());
    for v in values {
        match v.as_string().map(|s| serde_json::from_str::<RunRecord>(&s)) {
            Some(Ok(r)) => runs.push(r),
            Some(Err(e)) => bad.push(format!("a stored run could not be read: {e}")),
            None => bad.push("a stored run is not JSON text".into()),
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.id));
    Ok((runs, bad))
}

pub async fn delete(id: u64) -> Result<(), String> {
    let (tx, store) = runs(TransactionMode::ReadWrite, "delete").await?;
    store
        .delete(JsValue::from_f64(id as f64))
        .await
        .map_err(|e| err("delete", e))?;
    tx.done().await.map_err(|e| err("delete", e))?;
    Ok(())
}

/// The list of past runs, newest first, each with Open and Delete.
#[leptos::component]
pub fn HistoryPanel() -> impl leptos::IntoView {
    use super::workspace::Workspace;
    use leptos::prelude::*;
    use leptos::task::spawn_local;
    let ws = expect_context::<Workspace>();
    view! {
        <section aria-labelledby="history-h">
            <h2 id="history-h">"3. Past runs"</h2>
            <p class="note">"Kept in this browser (IndexedDB); open one to see its curves, predictions and downloads again."</p>
            {move || ws.history_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <Show when=move || ws.history.with(Vec::is_empty)>
                <p class="pending">"No runs yet."</p>
            </Show>
            <ul id="history">
                {move || ws.history.get().into_iter().map(|r| {
                    let id = r.id;
                    let summary = r.summary();
                    let open = move |_| {
                        let found = ws.history.with(|h| h.iter().find(|r| r.id == id).cloned());
                        ws.open_id.set(Some(id));
                        ws.run.set(found);
                    };
                    let remove = move |_| spawn_local(async move {
                        match delete(id).await {
                            Ok(()) => ws.history.update(|h| h.retain(|r| r.id != id)),
                            Err(e) => ws.history_error.set(Some(e)),
                        }
                    });
                    view! {
                        <li data-id=id.to_string()>
                            <span>{summary}</span>" "
                            <button class="secondary open-run" on:click=open
                                disabled=move || ws.running.get()>"Open"</button>" "
                            <button class="secondary delete-run" on:click=remove
                                disabled=move || ws.running.get() && ws.run.with(|r| r.as_ref().is_some_and(|r| r.id == id))>"Delete"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}
