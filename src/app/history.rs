//! Past runs (comparisons, relation streams, lifelong sequences) in the browser's IndexedDB (one
//! CBOR record per run, keyed by its id, a store per kind), so that a reload, or the next visit,
//! finds them; listed with buttons to reopen or delete. At most `CAP` runs of each kind are kept,
//! oldest out first, said on the page; a full disk drops old runs or says this one is not kept,
//! and never stops a run. A comparison's newest checkpoint (`RunCheckpoint`) sits beside it, so
//! that it can resume.

use crate::compare::{RunCheckpoint, RunRecord, Status};
use crate::lifelong::record::LifelongRecord;
use crate::relation::record::RelationRecord;
use crate::worker::protocol::{decode, encode};
use leptos::prelude::*;
use rexie::{ObjectStore, Rexie, Store, Transaction, TransactionMode};
use serde::{Serialize, de::DeserializeOwned};
use wasm_bindgen::{JsCast, JsValue};

const DB: &str = "metaprompt";
/// Version 2 added the relation runs' store, 3 the lifelong runs', 4 the comparisons'
/// checkpoints.
const VERSION: u32 = 4;
const CHECKPOINTS: &str = "checkpoints";
/// Runs kept of each kind: a comparison of the real model's 100-token prompts is about 1 MB.
pub const CAP: usize = 40;

/// A kind of run the page keeps: its store, id and status.
pub trait Stored: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {
    const STORE: &'static str;
    fn id(&self) -> u64;
    fn status(&self) -> Status;
    fn set_status(&mut self, s: Status);
    /// One line for the list.
    fn summary(&self) -> String;
    /// Whether runs of this kind keep a checkpoint to resume from.
    const RESUMABLE: bool = false;
}

/// Every kind holds `id`, `status` and a `summary()` of their own.
macro_rules! stored {
    ($ty:ty, $store:literal $(, $resumable:literal)?) => {
        impl Stored for $ty {
            const STORE: &'static str = $store;
            $(const RESUMABLE: bool = $resumable;)?
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

stored!(RunRecord, "runs", true);
stored!(RelationRecord, "relation-runs");
stored!(LifelongRecord, "lifelong-runs");

/// rexie's errors display as "idb error": the browser's reason (a `DOMException`'s name and
/// message) is in their debug form.
fn err(what: &str, e: impl std::fmt::Debug) -> String {
    format!("run history (IndexedDB) {what}: {e:?}")
}

/// Whether `e` (from [`err`]) says the browser's storage for this page is full.
fn quota(e: &str) -> bool {
    e.contains("QuotaExceeded")
}

/// The database, opened once per page (a checkpoint is written after every step).
async fn open() -> Result<std::rc::Rc<Rexie>, String> {
    thread_local! {
        static OPEN: std::cell::RefCell<Option<std::rc::Rc<Rexie>>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(db) = OPEN.with(|o| o.borrow().clone()) {
        return Ok(db);
    }
    let db = std::rc::Rc::new(build().await?);
    OPEN.with(|o| *o.borrow_mut() = Some(db.clone()));
    Ok(db)
}

async fn build() -> Result<Rexie, String> {
    Rexie::builder(DB)
        .version(VERSION)
        .add_object_store(ObjectStore::new(RunRecord::STORE))
        .add_object_store(ObjectStore::new(RelationRecord::STORE))
        .add_object_store(ObjectStore::new(LifelongRecord::STORE))
        .add_object_store(ObjectStore::new(CHECKPOINTS))
        .build()
        .await
        .map_err(|e| err("open", e))
}

/// A transaction on store `name` and the store itself.
async fn store(
    name: &str,
    mode: TransactionMode,
    what: &str,
) -> Result<(Transaction, Store), String> {
    let db = open().await?;
    let tx = db.transaction(&[name], mode).map_err(|e| err(what, e))?;
    let store = tx.store(name).map_err(|e| err(what, e))?;
    Ok((tx, store))
}

/// Puts `value` as CBOR bytes (floats as 4 bytes each, NaN kept: JSON made them 10 characters
/// and null) under `id` in store `name`.
async fn put<V: Serialize>(name: &str, id: u64, value: &V) -> Result<(), String> {
    let bytes = encode(value).map_err(|e| err("serialise", e))?;
    let (tx, store) = store(name, TransactionMode::ReadWrite, "write").await?;
    store
        .put(
            &js_sys::Uint8Array::from(bytes.as_slice()).into(),
            Some(&JsValue::from_f64(id as f64)),
        )
        .await
        .map_err(|e| err("write", e))?;
    tx.done().await.map_err(|e| err("write", e))?;
    Ok(())
}

/// A stored value: CBOR bytes, or the JSON text versions before 4 wrote.
fn read<V: DeserializeOwned>(v: &JsValue) -> Result<V, String> {
    if let Some(text) = v.as_string() {
        return serde_json::from_str(&text).map_err(|e| e.to_string());
    }
    match v.dyn_ref::<js_sys::Uint8Array>() {
        Some(bytes) => decode(&bytes.to_vec()),
        None => Err("it is neither CBOR bytes nor JSON text".into()),
    }
}

async fn remove(name: &str, id: u64) -> Result<(), String> {
    let (tx, store) = store(name, TransactionMode::ReadWrite, "delete").await?;
    store
        .delete(JsValue::from_f64(id as f64))
        .await
        .map_err(|e| err("delete", e))?;
    tx.done().await.map_err(|e| err("delete", e))?;
    Ok(())
}

/// Stores (or replaces) `run`.
pub async fn save<T: Stored>(run: &T) -> Result<(), String> {
    put(T::STORE, run.id(), run).await
}

/// Every stored run, newest first. A record this version cannot read is reported, not dropped
/// from the database.
pub async fn list<T: Stored>() -> Result<(Vec<T>, Vec<String>), String> {
    // Held until the read is done.
    let (_tx, store) = store(T::STORE, TransactionMode::ReadOnly, "read").await?;
    let values = store
        .get_all(None, None)
        .await
        .map_err(|e| err("read", e))?;
    let (mut runs, mut bad) = (Vec::new(), Vec::new());
    for v in values {
        match read::<T>(&v) {
            Ok(r) => runs.push(r),
            Err(e) => bad.push(format!("a stored run could not be read: {e}")),
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.id()));
    Ok((runs, bad))
}

/// Deletes run `id` (and its checkpoint).
pub async fn delete<T: Stored>(id: u64) -> Result<(), String> {
    remove(T::STORE, id).await?;
    if T::RESUMABLE {
        remove(CHECKPOINTS, id).await?;
    }
    Ok(())
}

/// Keeps `c` as its run's checkpoint (replacing the one before).
pub async fn save_checkpoint(c: &RunCheckpoint) -> Result<(), String> {
    put(CHECKPOINTS, c.record.id, c).await
}

/// Run `id`'s checkpoint, if it has one; an unreadable or inconsistent one is an error.
pub async fn checkpoint(id: u64) -> Result<Option<RunCheckpoint>, String> {
    let (_tx, store) = store(CHECKPOINTS, TransactionMode::ReadOnly, "read").await?;
    let v = store
        .get(JsValue::from_f64(id as f64))
        .await
        .map_err(|e| err("read", e))?;
    match v {
        Some(v) if !v.is_undefined() => {
            let c: RunCheckpoint =
                read(&v).map_err(|e| format!("the run's checkpoint could not be read: {e}"))?;
            c.check()?;
            Ok(Some(c))
        }
        _ => Ok(None),
    }
}

pub async fn drop_checkpoint(id: u64) -> Result<(), String> {
    remove(CHECKPOINTS, id).await
}

/// The run on screen (training, or reopened from the history) and the history of one kind.
pub struct Runs<T: Stored> {
    pub run: RwSignal<Option<T>>,
    /// Id of the run on screen, so that a reload reopens it.
    pub open_id: RwSignal<Option<u64>>,
    pub history: RwSignal<Vec<T>>,
    pub error: RwSignal<Option<String>>,
    /// Runs the history let go (over `CAP`, or for room on a full disk), said once.
    pub evicted: RwSignal<Option<String>>,
    /// (run id, step) of the newest checkpoint written (resumable kinds).
    pub saved: RwSignal<Option<(u64, usize)>>,
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
            evicted: RwSignal::new(None),
            saved: RwSignal::new(None),
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

    /// The oldest run but `keep` and the one on screen, taken off the list.
    fn take_oldest(self, keep: u64) -> Option<T> {
        let open = self.open_id.get_untracked();
        let mut out = None;
        self.history.update(|h| {
            if let Some(i) = h
                .iter()
                .rposition(|r| r.id() != keep && Some(r.id()) != open)
            {
                out = Some(h.remove(i));
            }
        });
        out
    }

    /// Keeps `run` in the history (IndexedDB and the list on screen): past `CAP` runs the oldest
    /// goes, and while the browser's storage is full the oldest goes to make room. A run that
    /// cannot be kept is said, and goes on.
    pub async fn keep(self, run: T) {
        let id = run.id();
        let mut gone = Vec::new();
        self.history
            .update(|h| match h.iter_mut().find(|r| r.id() == id) {
                Some(r) => *r = run.clone(),
                None => h.insert(0, run.clone()),
            });
        while self.history.with_untracked(Vec::len) > CAP {
            let Some(old) = self.take_oldest(id) else {
                break;
            };
            if let Err(e) = delete::<T>(old.id()).await {
                self.error.set(Some(e));
            }
            gone.push(old);
        }
        let mut saved = save(&run).await;
        let mut full = false;
        while let Err(e) = &saved
            && quota(e)
        {
            full = true;
            let Some(old) = self.take_oldest(id) else {
                break;
            };
            if let Err(e) = delete::<T>(old.id()).await {
                self.error.set(Some(e));
            }
            gone.push(old);
            saved = save(&run).await;
        }
        if !gone.is_empty() {
            let why = if full {
                "the browser's storage for this page is full".to_string()
            } else {
                format!("the history keeps the {CAP} newest runs")
            };
            let names: Vec<String> = gone.iter().map(|r| r.summary()).collect();
            self.evicted.set(Some(format!(
                "Removed from the history ({why}): {}",
                names.join("; ")
            )));
        }
        if let Err(e) = saved {
            self.error.set(Some(if quota(&e) {
                format!("This run is not kept in the history: the browser's storage for this page is full ({e}). The run goes on; download it, or delete runs from other kinds' history.")
            } else {
                e
            }));
        }
    }

    /// Starts showing the new run `run`, marked running, and keeps it in the history at once: a
    /// reload before its first measurement still finds it (and a comparison's checkpoint).
    pub fn start(self, run: T) {
        self.stop.set(false);
        self.open_id.set(Some(run.id()));
        self.run.set(Some(run.clone()));
        self.running.set(true);
        leptos::task::spawn_local(self.keep(run));
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
        {move || runs.evicted.get().map(|e| view! { <p class="note evicted">{e}</p> })}
        <p class="note">{format!("The history keeps the {CAP} newest runs of each kind.")}</p>
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
