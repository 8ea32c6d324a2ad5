//! A person's work in the page: the pasted examples, the comparison's settings and contenders
//! (all kept in localStorage), the run on screen and the history of past runs (IndexedDB).

use super::history::Runs;
use super::state::persisted;
use crate::compare::{RunRecord, Settings};
use crate::worker::protocol::Kernels;
use leptos::prelude::*;

#[derive(Clone, Copy)]
pub struct Workspace {
    pub paste: RwSignal<String>,
    pub settings: RwSignal<Settings>,
    /// The two contenders' initialisation keys (`InitChoice::key`).
    pub contenders: RwSignal<[String; 2]>,
    pub kernels: RwSignal<Kernels>,
    pub runs: Runs<RunRecord>,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            paste: persisted("paste", String::new()),
            settings: persisted("settings", Settings::default()),
            contenders: persisted("contenders", ["mpt-fomaml".into(), "random".into()]),
            kernels: persisted("kernels", Kernels::Fastest),
            runs: Runs::new("open-run"),
        }
    }
}
