//! A person's work in the page: the pasted examples, the comparison's settings and contenders
//! (all kept in localStorage), the run on screen and the history of past runs (IndexedDB).

use super::state::persisted;
use crate::compare::{RunRecord, Settings, Status};
use crate::worker::protocol::Kernels;
use leptos::prelude::*;

#[derive(Clone, Copy)]
pub struct Workspace {
    pub paste: RwSignal<String>,
    pub settings: RwSignal<Settings>,
    /// The two contenders' initialisation keys (`InitChoice::key`).
    pub contenders: RwSignal<[String; 2]>,
    pub kernels: RwSignal<Kernels>,
    /// The run on screen: the one training, or one reopened from the history.
    pub run: RwSignal<Option<RunRecord>>,
    /// Id of the run on screen, so that a reload reopens it.
    pub open_id: RwSignal<Option<u64>>,
    pub history: RwSignal<Vec<RunRecord>>,
    pub history_error: RwSignal<Option<String>>,
    pub running: RwSignal<bool>,
    pub stop: RwSignal<bool>,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            paste: persisted("paste", String::new()),
            settings: persisted("settings", Settings::default()),
            contenders: persisted("contenders", ["mpt-fomaml".into(), "random".into()]),
            kernels: persisted("kernels", Kernels::Fastest),
            run: RwSignal::new(None),
            open_id: persisted("open-run", None),
            history: RwSignal::new(Vec::new()),
            history_error: RwSignal::new(None),
            running: RwSignal::new(false),
            stop: RwSignal::new(false),
        }
    }

    /// Reads the history; reopens the run that was on screen before the reload. A run still
    /// marked running was interrupted by the reload: it is shown as stopped where it got to.
    pub async fn load_history(self) {
        match super::history::list().await {
            Ok((mut runs, bad)) => {
                for r in runs.iter_mut().filter(|r| r.status == Status::Running) {
                    r.status = Status::Stopped;
                }
                if let Some(id) = self.open_id.get_untracked()
                    && self.run.get_untracked().is_none()
                {
                    self.run.set(runs.iter().find(|r| r.id == id).cloned());
                }
                self.history.set(runs);
                self.history_error
                    .set((!bad.is_empty()).then(|| bad.join("; ")));
            }
            Err(e) => self.history_error.set(Some(e)),
        }
    }

    /// Keeps `run` in the history (IndexedDB and the list on screen).
    pub async fn keep(self, run: RunRecord) {
        if let Err(e) = super::history::save(&run).await {
            self.history_error.set(Some(e));
        }
        self.history
            .update(|h| match h.iter_mut().find(|r| r.id == run.id) {
                Some(r) => *r = run,
                None => h.insert(0, run),
            });
    }
}
