//! One run of the page's Relations section: the pasted stream, two contenders (methods), and
//! what each learned task by task. The worker fills it in and posts it as it goes; the page
//! keeps it in its history (IndexedDB) so that a reload finds it.

use super::augment::Calibration;
use super::classifier::Classifier;
use super::learner::{AfterTask, Config, Method};
use super::paste::PastedStream;
use crate::compare::Status;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contender {
    pub method: Method,
    /// Task names in the order learned (the first fixed, the rest in the seed's order).
    pub order: Vec<String>,
    pub after: Vec<AfterTask>,
    /// Milliseconds of training and evaluation per task (the encoder's time is not in it).
    pub task_ms: Vec<f64>,
    /// Once the run is over.
    pub classifier: Option<Classifier>,
}

impl Contender {
    pub fn new(method: Method) -> Self {
        Self {
            method,
            order: Vec::new(),
            after: Vec::new(),
            task_ms: Vec::new(),
            classifier: None,
        }
    }
}

/// Where a run is: encoding the sentences, then learning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub done: usize,
    pub total: usize,
    /// Sentences the worker had encoded already (in an earlier run since the model loaded).
    pub reused: usize,
    pub secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationRecord {
    pub id: u64,
    pub started: String,
    pub stream: PastedStream,
    pub config: Config,
    pub seed: u64,
    pub contenders: [Contender; 2],
    pub status: Status,
    pub engine: String,
    pub encoding: Option<Encoding>,
    pub calibration: Option<Calibration>,
    pub error: Option<String>,
}

impl RelationRecord {
    /// One line for the history list.
    pub fn summary(&self) -> String {
        let last = |c: &Contender| {
            c.after
                .last()
                .map_or("–".into(), |a| format!("{:.1}%", a.strict * 100.0))
        };
        let [a, b] = &self.contenders;
        format!(
            "{} · {} tasks, {} relations, {}-shot · {} {} vs {} {} after the last task · {:?}",
            self.started
                .get(..16)
                .unwrap_or(&self.started)
                .replace('T', " "),
            self.stream.tasks.len(),
            self.stream.relations(),
            self.config.shots,
            a.method.name(),
            last(a),
            b.method.name(),
            last(b),
            self.status
        )
    }
}
