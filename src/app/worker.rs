//! The page's side of the worker (`crate::worker`): it starts the worker, holds requests until
//! the worker is listening, turns its replies into the page's signals and answers `ask`s. If the
//! worker dies (a panic traps its module), the model and any run in progress are marked failed
//! and the next load starts a fresh worker.

use super::history::{self, Runs, Stored};
use super::lifelong_panel::LifelongWs;
use super::relations_panel::RelationsWs;
use super::state::{ModelCtx, Phase, cache_name};
use super::workspace::Workspace;
use crate::browser::download;
use crate::compare::{RunCheckpoint, Status};
use crate::text::tokenizer::T5Tokenizer;
use crate::worker::protocol::{Reply, Request, decode, encode};
use futures_channel::oneshot;
use leptos::prelude::*;
use std::collections::HashMap;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, MessageEvent, Worker};

/// Trunk's loader for the worker binary (`data-loader-shim` in www/index.html).
const SCRIPT: &str = "./metaprompt-worker_loader.js";

#[derive(Default)]
struct Inner {
    worker: Option<Worker>,
    /// Whether the worker said `Started`: requests wait in `queue` until then.
    started: bool,
    queue: Vec<Request>,
    /// Senders of `ask`s not yet answered, by request id.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    next_id: u64,
    /// The checkpoint job waiting for the one being written (`writing`): only the newest is
    /// worth writing.
    next_checkpoint: Option<CheckpointJob>,
    writing: bool,
}

/// What the history's checkpoint store gets next: a run's newest checkpoint, or its removal once
/// the run has finished.
enum CheckpointJob {
    Save(Box<RunCheckpoint>),
    Drop(u64),
}

#[derive(Clone, Copy)]
pub struct Backend {
    inner: StoredValue<Inner, LocalStorage>,
    ws: Workspace,
    rel: RelationsWs,
    life: LifelongWs,
    ctx: ModelCtx,
}

fn post(worker: &Worker, req: &Request) -> Result<(), String> {
    let bytes = encode(req)?;
    worker
        .post_message(&js_sys::Uint8Array::from(bytes.as_slice()))
        .map_err(|e| format!("post to the worker: {e:?}"))
}

impl Backend {
    pub fn new(ws: Workspace, rel: RelationsWs, life: LifelongWs, ctx: ModelCtx) -> Self {
        Self {
            inner: StoredValue::new_local(Inner::default()),
            ws,
            rel,
            life,
            ctx,
        }
    }

    /// Whether a run of any kind is in progress (the worker takes one at a time); tracked.
    pub fn running(self) -> bool {
        self.ws.runs.running.get() || self.rel.runs.running.get() || self.life.runs.running.get()
    }

    /// Shows `run` as the one in progress and posts `req` to learn it; when the post fails the
    /// run is no longer marked running and the error is returned.
    pub fn launch<T: Stored>(self, runs: Runs<T>, run: T, req: Request) -> Result<(), String> {
        runs.start(run);
        self.send(req).inspect_err(|_| runs.running.set(false))
    }

    /// Asks the run in progress to stop after its current step.
    pub fn stop<T: Stored>(self, runs: Runs<T>) -> Result<(), String> {
        runs.stop.set(true);
        self.send(Request::Stop)
    }

    /// Posts `req`, starting the worker first if there is none.
    pub fn send(self, req: Request) -> Result<(), String> {
        if self.inner.with_value(|i| i.worker.is_none()) {
            self.spawn()?;
        }
        let mut out = Ok(());
        self.inner.update_value(|i| match (&i.worker, i.started) {
            (Some(w), true) => out = post(w, &req),
            _ => i.queue.push(req),
        });
        out
    }

    /// Posts the request `make(id)` builds and waits for the reply that answers it.
    pub async fn ask(self, make: impl FnOnce(u64) -> Request) -> Result<Reply, String> {
        let (tx, rx) = oneshot::channel();
        let mut id = 0;
        self.inner.update_value(|i| {
            i.next_id += 1;
            id = i.next_id;
            i.pending.insert(id, tx);
        });
        if let Err(e) = self.send(make(id)) {
            self.inner.update_value(|i| {
                i.pending.remove(&id);
            });
            return Err(e);
        }
        rx.await
            .map_err(|_| "the worker stopped before it answered".to_string())
    }

    fn spawn(self) -> Result<(), String> {
        let worker =
            Worker::new(SCRIPT).map_err(|e| format!("could not start the worker: {e:?}"))?;
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
            let bytes = js_sys::Uint8Array::new(&ev.data()).to_vec();
            match decode::<Reply>(&bytes) {
                Ok(reply) => self.on_reply(reply),
                Err(e) => gloo::console::error!(format!("unreadable reply from the worker: {e}")),
            }
        });
        let on_error = Closure::<dyn Fn(ErrorEvent)>::new(move |ev: ErrorEvent| {
            self.crashed(format!(
                "the worker stopped: {} ({}:{})",
                ev.message(),
                ev.filename(),
                ev.lineno()
            ));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // Both handlers live as long as the worker (a new worker gets new ones).
        on_message.forget();
        on_error.forget();
        self.inner.update_value(|i| {
            i.worker = Some(worker);
            i.started = false;
        });
        Ok(())
    }

    fn on_reply(self, reply: Reply) {
        if let Some(id) = reply.answers() {
            let mut tx = None;
            self.inner.update_value(|i| tx = i.pending.remove(&id));
            if let Some(tx) = tx {
                // The asker may have gone (its view was replaced): nothing to tell it.
                let _ = tx.send(reply);
            }
            return;
        }
        let (ws, ctx) = (self.ws, self.ctx);
        match reply {
            Reply::Started => {
                let mut failed = None;
                self.inner.update_value(|i| {
                    i.started = true;
                    if let Some(w) = &i.worker {
                        for req in i.queue.drain(..) {
                            if let Err(e) = post(w, &req) {
                                failed = Some(e);
                            }
                        }
                    }
                });
                if let Some(e) = failed {
                    ctx.phase.set(Phase::Failed(e));
                }
            }
            Reply::Downloading { file, progress } => {
                ctx.phase.set(Phase::Downloading { file, progress })
            }
            Reply::Preparing => ctx.phase.set(Phase::Preparing),
            Reply::LoadFailed { error } => ctx.phase.set(Phase::Failed(error)),
            Reply::Ready {
                timings,
                probe,
                source,
                cached,
                secs,
                repaired,
            } => {
                ctx.phase.set(Phase::Ready {
                    secs,
                    source,
                    cached,
                    timings,
                    probe,
                    repaired,
                });
                leptos::task::spawn_local(read_tokenizer(ctx));
            }
            Reply::Run { record, keep } => {
                if record.status == Status::Finished {
                    self.checkpoint(CheckpointJob::Drop(record.id));
                }
                ws.runs.update(*record, keep)
            }
            Reply::RunCheckpoint(c) => self.checkpoint(CheckpointJob::Save(c)),
            Reply::Relations { record, keep } => self.rel.runs.update(*record, keep),
            Reply::Lifelong { record, keep } => self.life.runs.update(*record, keep),
            Reply::Generated { .. } | Reply::Scored { .. } | Reply::RelationScored { .. } => {}
        }
    }

    /// Writes checkpoint jobs one at a time, in order: a job that comes during a write waits, and
    /// a newer one replaces it.
    fn checkpoint(self, job: CheckpointJob) {
        let mut idle = false;
        self.inner.update_value(|i| {
            i.next_checkpoint = Some(job);
            idle = !i.writing;
            i.writing = true;
        });
        if !idle {
            return;
        }
        leptos::task::spawn_local(async move {
            loop {
                let mut next = None;
                self.inner.update_value(|i| {
                    next = i.next_checkpoint.take();
                    i.writing = next.is_some();
                });
                let written = match next {
                    Some(CheckpointJob::Save(c)) => {
                        let saved = history::save_checkpoint(&c).await;
                        if saved.is_ok() {
                            self.ws.runs.saved.set(Some((c.record.id, c.step())));
                        }
                        saved
                    }
                    Some(CheckpointJob::Drop(id)) => history::drop_checkpoint(id).await,
                    None => break,
                };
                if let Err(e) = written {
                    self.ws.runs.error.set(Some(format!(
                        "the run goes on, but could not resume after a reload: {e}"
                    )));
                }
            }
        });
    }

    /// The worker is gone: fail what it was doing; the next request starts a new one.
    fn crashed(self, why: String) {
        gloo::console::error!(why.clone());
        self.inner.update_value(|i| {
            if let Some(w) = i.worker.take() {
                w.terminate();
            }
            i.started = false;
            i.queue.clear();
            // Dropping the senders fails every `ask` in flight.
            i.pending.clear();
        });
        self.ctx.phase.set(Phase::Failed(why.clone()));
        self.ws.runs.crashed(|r| {
            r.contenders[0].error.get_or_insert(why.clone());
        });
        self.rel.runs.crashed(|r| {
            r.error.get_or_insert(why.clone());
        });
        self.life.runs.crashed(|r| {
            r.error.get_or_insert(why.clone());
        });
    }
}

/// The page counts the tokens of pasted inputs itself: it reads the tokenizer the worker has
/// just stored in the cache (a few MB, parsed once).
async fn read_tokenizer(ctx: ModelCtx) {
    let dir = super::state::model_dir();
    let parsed = match download::ModelFiles::open(&dir, &cache_name()).await {
        Ok(folder) => folder.fetch("tokenizer.json", &|_| {}).await.and_then(|f| {
            T5Tokenizer::from_bytes(&f.bytes).map_err(|e| format!("{dir}tokenizer.json: {e}"))
        }),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(t) => ctx.set_tokenizer(t),
        Err(e) => gloo::console::warn!(format!("inputs are not checked for length: {e}")),
    }
}
