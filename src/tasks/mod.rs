//! Few-shot task suites: the task file format, the manifest, reproducible k-shot sampling and the
//! metrics. Task files are derived from registry packages by `metaprompt data build` (native,
//! [`derive`]) into the ignored `data/` folder.

#[cfg(not(target_arch = "wasm32"))]
pub mod derive;
pub mod metrics;
pub mod sampling;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version tag of `data/manifest.json`.
pub const MANIFEST_FORMAT: &str = "metaprompt-tasks-v1";

/// One example: T5 reads `input` and should produce `target`. For classification `target` is
/// the raw label (the task's verbalizer gives the words T5 generates for it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub input: String,
    pub target: String,
    /// Every acceptable answer, when there are several (QA, references of a summary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
    /// Relation examples: the head and tail entity mentions, as marked in `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
}

impl Example {
    pub fn new(input: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            target: target.into(),
            answers: Vec::new(),
            head: None,
            tail: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Classification,
    Nli,
    Qa,
    Relation,
    Ner,
    Generation,
}

impl TaskKind {
    /// Whether examples are scored by ranking a fixed label set (rather than generated).
    pub fn has_labels(self) -> bool {
        matches!(self, Self::Classification | Self::Nli | Self::Relation)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Nli => "nli",
            Self::Qa => "qa",
            Self::Relation => "relation",
            Self::Ner => "ner",
            Self::Generation => "generation",
        }
    }
}

/// Where a task's examples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Registry and package, e.g. "pypi:bigbench".
    pub package: String,
    pub version: String,
    /// File inside the package.
    pub path: String,
    /// The licence as the package states it.
    pub license: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Pool the k-shot training sets are drawn from.
    pub train: usize,
    /// Held-out evaluation examples.
    pub test: usize,
}

/// A task as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub kind: TaskKind,
    pub source: Provenance,
    /// Label set (classification, NLI, relation), in a fixed order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Label -> the words T5 generates for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verbalizer: BTreeMap<String, String>,
    pub counts: Counts,
    /// How the examples were derived (filters, truncation, how mentions were found).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl TaskInfo {
    /// A task given by the user (pasted examples) rather than derived from a package: its
    /// labels are their own words, no counts yet.
    pub fn pasted(name: &str, kind: TaskKind, labels: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind,
            source: Provenance {
                package: "pasted".into(),
                version: String::new(),
                path: String::new(),
                license: String::new(),
            },
            labels: labels.iter().map(|s| s.to_string()).collect(),
            verbalizer: BTreeMap::new(),
            counts: Counts { train: 0, test: 0 },
            note: String::new(),
        }
    }

    /// The words T5 should generate for `label` (the label itself when unmapped).
    pub fn verbalize<'a>(&'a self, label: &'a str) -> &'a str {
        self.verbalizer.get(label).map_or(label, String::as_str)
    }

    /// File-system name of the task's folder under `data/tasks/`.
    pub fn dir_name(&self) -> String {
        self.name.replace('/', ".")
    }
}

/// `data/manifest.json`: every task, and the named suites (ordered task lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tasks: Vec<TaskInfo>,
    pub suites: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("{path}:{line}: {why}")]
    Line {
        path: String,
        line: usize,
        why: String,
    },
    #[error("no task named {0:?} in the manifest (`metaprompt data list` shows them)")]
    UnknownTask(String),
    #[error("no suite named {name:?} (the manifest has: {known})")]
    UnknownSuite { name: String, known: String },
}

impl Manifest {
    pub fn task(&self, name: &str) -> Result<&TaskInfo, DataError> {
        self.tasks
            .iter()
            .find(|t| t.name == name || t.dir_name() == name)
            .ok_or_else(|| DataError::UnknownTask(name.to_string()))
    }

    pub fn suite(&self, name: &str) -> Result<Vec<&TaskInfo>, DataError> {
        let names = self
            .suites
            .get(name)
            .ok_or_else(|| DataError::UnknownSuite {
                name: name.to_string(),
                known: self.suites.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        names.iter().map(|n| self.task(n)).collect()
    }
}

/// One example per line, as JSON.
pub fn to_jsonl(examples: &[Example]) -> String {
    let mut out = String::new();
    for e in examples {
        out.push_str(&serde_json::to_string(e).expect("examples serialise"));
        out.push('\n');
    }
    out
}

/// Parses JSONL task data; `path` names the file in errors.
pub fn from_jsonl(text: &str, path: &str) -> Result<Vec<Example>, DataError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| DataError::Line {
                path: path.to_string(),
                line: i + 1,
                why: e.to_string(),
            })
        })
        .collect()
}

/// The task files on disk (native).
#[cfg(not(target_arch = "wasm32"))]
pub mod store {
    use super::*;
    use std::path::{Path, PathBuf};

    fn io(path: &Path, e: impl std::fmt::Display) -> DataError {
        DataError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        }
    }

    pub fn manifest_path(data: &Path) -> PathBuf {
        data.join("manifest.json")
    }

    pub fn read_manifest(data: &Path) -> Result<Manifest, DataError> {
        let path = manifest_path(data);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| io(&path, format!("{e} (run scripts/fetch-data.sh)")))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
        if m.format != MANIFEST_FORMAT {
            return Err(io(
                &path,
                format!("format {:?}, expected {MANIFEST_FORMAT:?}", m.format),
            ));
        }
        Ok(m)
    }

    /// `split` is "train" or "test".
    pub fn read_split(
        data: &Path,
        task: &TaskInfo,
        split: &str,
    ) -> Result<Vec<Example>, DataError> {
        let path = data
            .join("tasks")
            .join(task.dir_name())
            .join(format!("{split}.jsonl"));
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        from_jsonl(&text, &path.display().to_string())
    }

    pub fn write_split(
        data: &Path,
        task: &TaskInfo,
        split: &str,
        examples: &[Example],
    ) -> Result<(), DataError> {
        let dir = data.join("tasks").join(task.dir_name());
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join(format!("{split}.jsonl"));
        std::fs::write(&path, to_jsonl(examples)).map_err(|e| io(&path, e))
    }

    pub fn write_manifest(data: &Path, m: &Manifest) -> Result<(), DataError> {
        let path = manifest_path(data);
        let text = serde_json::to_string_pretty(m).expect("manifest serialises");
        std::fs::write(&path, text + "\n").map_err(|e| io(&path, e))
    }
}
