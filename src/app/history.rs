//! Past runs (comparisons, relation streams, lifelong sequences) in the browser's IndexedDB (one JSON record per
//! run, keyed by its id, a store per kind), so that a reload, or the next visit, finds them;
//! listed with buttons to reopen or delete.

use crate::compare::{RunRecord, Status};
use crate::lifelong::record::LifelongRecord;
use crate::relation::record::RelationRecord;
use leptos::prelude::*;
use rexie::{ObjectStore, Rexie, Store, Transaction, TransactionMode};
use serde::{Serialize, de::DeserializeOwned};
use wasm_bindgen::JsValue;

const DB: &str = "metaprompt";
/// Version 2 added the relation runs' store, 3 the lifelong runs'.
const VERSION: u32 = 3;

/// A kind of run the page keeps: its store, id and status.
pub trait Stored: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {
    const STORE: &'static str;
    fn id(&self) -> u64;
    fn status(&self) -> Status;
    fn set_status(&mut self, s: Status);
    /// One line for the list.
    fn summary(&self) -> String;
}

/// Every kind holds `id`, `status` and a `summary()` of their own.
macro_rules! stored {
    ($ty:ty, $store:literal) => {
        impl Stored for $ty {
            const STORE: &'static str = $store;
            fn id(&self) -> u64 {
                self.id
            }
            fn status(&self) -> Status {
                self.status
            }
            fn set_status(&mut self, s: Status) {
                self.status = s;
            }
            fn summary(&self) -> String {
                <$ty>::summary(self)
            }
        }
    };
}

stored!(RunRecord, "runs");
stored!(RelationRecord, "relation-runs");
stored!(LifelongRecord, "lifelong-runs");

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("run history (IndexedDB) {what}: {e}")
}

async fn open() -> Result<Rexie, String> {
    Rexie::builder(DB)
        .version(VERSION)
        .add_object_store(ObjectStore::new(RunRecord::STORE))
        .add_object_store(ObjectStore::new(RelationRecord::STORE))
        .add_object_store(ObjectStore::new(LifelongRecord::STORE))
        .build()
        .await
        .map_err(|e| err("open", e))
}

/// A transaction on `T`'s store and the store itself.
async fn store<T: Stored>(
    mode: TransactionMode,
    what: &str,
) -> Result<(Transaction, Store), String> {
    let db = open().await?;
    let tx = db
        .transaction(&[T::STORE], mode)
        .map_err(|e| err(what, e))?;
    let store = tx.store(T::STORE).map_err(|e| err(what, e))?;
    Ok((tx, store))
}

/// Stores (or replaces) `run`.
pub async fn save<T: Stored>(run: &T) -> Result<(), String> {
    let json = serde_json::to_string(run).map_err(|e| err("serialise", e))?;
    let (tx, store) = store::<T>(TransactionMode::ReadWrite, "write").await?;
    store
        .put(
            &JsValue::from_str(&json),
            Some(&JsValue::from_f64(run.id() as f64)),
        )
        .await
        .map_err(|e| err("write", e))?;
    tx.done().await.map_err(|e| err("write", e))?;
    Ok(())
}

/// Every stored run, newest first. A record this version cannot read is reported, not dropped
/// from the database.
pub async fn list<T: Stored>() -> Result<(Vec<T>, Vec<String>), String> {
    // Held until the read is done.
    let (_tx, store) = store::<T>(TransactionMode::ReadOnly, "read").await?;
    let values = store
        .get_all(None, None)
        .await
        .map_err(|e| err("read", e))?;
    let (mut runs, mut bad) = (Vec::new(), Vec::new());
    for v in values {
        match v.as_string().map(|s| serde_json::from_str::<T>(&s)) {
            Some(Ok(r)) => runs.push(r),
            Some(Err(e)) => bad.push(format!("a stored run could not be read: {e}")),
            None => bad.push("a stored run is not JSON text".into()),
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.id()));
    Ok((runs, bad))
}

pub async fn delete<T: Stored>(id: u64) -> Result<(), String> {
    let (tx, store) = store::<T>(TransactionMode::ReadWrite, "delete").await?;
    store
        .delete(JsValue::from_f64(id as f64))
        .await
        .map_err(|e| err("delete", e))?;
    tx.done().await.map_err(|e| err("delete", e))?;
    Ok(())
}

/// The run on screen (training, or reopened from the history) and the history of one kind.
pub struct Runs<T: Stored> {
    pub run: RwSignal<Option<T>>,
    /// Id of the run on screen, so that a reload reopens it.
    pub open_id: RwSignal<Option<u64>>,
    pub history: RwSignal<Vec<T>>,
    pub error: RwSignal<Option<String>>,
    pub running: RwSignal<bool>,
    pub stop: RwSignal<bool>,
}

impl<T: Stored> Clone for Runs<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Stored> Copy for Runs<T> {}

impl<T: Stored> Runs<T> {
    /// `open_key`: the localStorage key of the open run's id.
    pub fn new(open_key: &'static str) -> Self {
        Self {
            run: RwSignal::new(None),
            open_id: super::state::persisted(open_key, None),
            history: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            running: RwSignal::new(false),
            stop: RwSignal::new(false),
        }
    }

    /// Reads the history; reopens the run that was on screen before the reload. A run still
    /// marked running was interrupted by the reload: it is shown as stopped where it got to.
    pub async fn load(self) {
        match list::<T>().await {
            Ok((mut runs, bad)) => {
                for r in runs.iter_mut().filter(|r| r.status() == Status::Running) {
                    r.set_status(Status::Stopped);
                }
                if let Some(id) = self.open_id.get_untracked()
                    && self.run.get_untracked().is_none()
                {
                    self.run.set(runs.iter().find(|r| r.id() == id).cloned());
                }
                self.history.set(runs);
                self.error.set((!bad.is_empty()).then(|| bad.join("; ")));
            }
            Err(e) => self.error.set(Some(e)),
        }
    }

    /// Keeps `run` in the history (IndexedDB and the list on screen).
    pub async fn keep(self, run: T) {
        if let Err(e) = save(&run).await {
            self.error.set(Some(e));
        }
        self.history
            .update(|h| match h.iter_mut().find(|r| r.id() == run.id()) {
                Some(r) => *r = run,
                None => h.insert(0, run),
            });
    }

    /// Starts showing the new run `run`, marked running.
    pub fn start(self, run: T) {
        self.stop.set(false);
        self.open_id.set(Some(run.id()));
        self.run.set(Some(run));
        self.running.set(true);
    }

    /// A reply from the worker: the run so far; kept in the history when `keep`.
    pub fn update(self, run: T, keep: bool) {
        let over = run.status() != Status::Running;
        if keep {
            leptos::task::spawn_local(self.keep(run.clone()));
        }
        self.run.set(Some(run));
        if over {
            self.running.set(false);
        }
    }

    /// The worker died: the run in progress fails where it got to (`fail` notes why).
    pub fn crashed(self, fail: impl FnOnce(&mut T)) {
        if self.running.get_untracked()
            && let Some(mut rec) = self.run.get_untracked()
        {
            rec.set_status(Status::Failed);
            fail(&mut rec);
            self.run.set(Some(rec.clone()));
            leptos::task::spawn_local(self.keep(rec));
        }
        self.running.set(false);
    }
}

/// The list of past runs of one kind, newest first, each with Open and Delete.
pub fn history_list<T: Stored>(list_id: &'static str, runs: Runs<T>) -> impl IntoView {
    use leptos::task::spawn_local;
    view! {
        {move || runs.error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <Show when=move || runs.history.with(Vec::is_empty)>
            <p class="pending">"No runs yet."</p>
        </Show>
        <ul id=list_id class="history">
            {move || runs.history.get().into_iter().map(|r| {
                let id = r.id();
                let summary = r.summary();
                let open = move |_| {
                    let found = runs.history.with(|h| h.iter().find(|r| r.id() == id).cloned());
                    runs.open_id.set(Some(id));
                    runs.run.set(found);
                };
                let remove = move |_| spawn_local(async move {
                    match delete::<T>(id).await {
                        Ok(()) => runs.history.update(|h| h.retain(|r| r.id() != id)),
                        Err(e) => runs.error.set(Some(e)),
                    }
                });
                view! {
                    <li data-id=id.to_string()>
                        <span>{summary}</span>" "
                        <button class="secondary open-run" on:click=open
                            disabled=move || runs.running.get()>"Open"</button>" "
                        <button class="secondary delete-run" on:click=remove
                            disabled=move || runs.running.get() && runs.run.with(|r| r.as_ref().is_some_and(|r| r.id() == id))>"Delete"</button>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// The comparisons' history.
#[leptos::component]
pub fn HistoryPanel() -> impl leptos::IntoView {
    use super::workspace::Workspace;
    let ws = expect_context::<Workspace>();
    view! {
        <section aria-labelledby="history-h">
            <h2 id="history-h">"3. Past runs"</h2>
            <p class="note">"Kept in this browser (IndexedDB); open one to see its curves, predictions and downloads again."</p>
            {history_list("history", ws.runs)}
        </section>
    }
}
