//! A task sequence pasted by a person (the page's Lifelong section): a line `# name` starts a
//! task, `# name (ner)` or `# name (summarisation)` one of another type (classification when
//! unsaid); the lines under a header are that task's examples in any format the comparison's
//! paste takes (`text::examples`: tab, `=>`, JSON lines, CSV), each block detected on its own.
//! Lines before the first header form "task 1". Every rejected line keeps its number in the
//! whole paste; every problem of a task names it and its header's line.

use super::LifelongError;
use super::stream::StreamTask;
use crate::tasks::{Example, TaskInfo, TaskKind};
use crate::text::examples::{self, Limits, LineError, SetProblem};
use serde::{Deserialize, Serialize};

/// One pasted task, its examples valid and de-duplicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastedTask {
    pub name: String,
    pub kind: TaskKind,
    /// 1-based line of its header (of its first example without one).
    pub line: usize,
    pub examples: Vec<Example>,
    /// Classification: the labels in first-seen order (each its own label word).
    pub labels: Vec<String>,
}

impl PastedTask {
    pub fn info(&self) -> TaskInfo {
        let labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        TaskInfo::pasted(&self.name, self.kind, &labels)
    }
}

/// The parsed paste: its tasks in order, the rejected lines, and what keeps it from running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastedSequence {
    pub tasks: Vec<PastedTask>,
    pub rejected: Vec<LineError>,
    /// Problems of a task or of the whole paste (nothing to learn); any one stops a run.
    pub problems: Vec<String>,
}

/// The task types a header may name, and the kind each is learned as.
const KINDS: [(&str, TaskKind); 6] = [
    ("classification", TaskKind::Classification),
    ("ner", TaskKind::Ner),
    ("summarisation", TaskKind::Generation),
    ("summarization", TaskKind::Generation),
    ("summary", TaskKind::Generation),
    ("generation", TaskKind::Generation),
];

/// The name and kind a header line names (`name (kind)`), or why not.
fn header(text: &str) -> Result<(String, TaskKind), String> {
    let (name, kind) = match text.strip_suffix(')').and_then(|t| t.rsplit_once('(')) {
        Some((name, kind)) => {
            let kind = kind.trim().to_lowercase();
            let found = KINDS.iter().find(|(k, _)| *k == kind).map(|&(_, k)| k);
            let Some(k) = found else {
                return Err(format!(
                    "unknown task type {kind:?} (classification, ner or summarisation)"
                ));
            };
            (name.trim(), k)
        }
        None => (text.trim(), TaskKind::Classification),
    };
    if name.is_empty() {
        return Err("the task has no name".into());
    }
    Ok((name.to_string(), kind))
}

/// A block of lines under one header.
struct Block {
    name: String,
    kind: Result<TaskKind, String>,
    line: usize,
    /// The block's text with the lines above it blank, so that line numbers are the paste's.
    text: String,
}

/// Parses a pasted sequence; never panics, whatever the text. `limits` checks each input's
/// length in tokens when the tokenizer is there.
pub fn parse(text: &str, limits: &Limits) -> PastedSequence {
    if let Err(p) = examples::check_size(text) {
        return PastedSequence {
            tasks: Vec::new(),
            rejected: Vec::new(),
            problems: vec![p.to_string()],
        };
    }
    let mut blocks: Vec<Block> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("# ") {
            let (name, kind) = match header(h) {
                Ok((n, k)) => (n, Ok(k)),
                Err(e) => (h.trim().to_string(), Err(e)),
            };
            blocks.push(Block {
                name,
                kind,
                line: i + 1,
                text: "\n".repeat(i + 1),
            });
            continue;
        }
        if blocks.is_empty() {
            if line.is_empty() {
                continue;
            }
            blocks.push(Block {
                name: "task 1".into(),
                kind: Ok(TaskKind::Classification),
                line: i + 1,
                text: "\n".repeat(i),
            });
        }
        let b = blocks.last_mut().expect("a block");
        b.text.push_str(raw);
        b.text.push('\n');
    }
    let mut out = PastedSequence {
        tasks: Vec::new(),
        rejected: Vec::new(),
        problems: Vec::new(),
    };
    for b in blocks {
        let at = format!("task {:?} (line {})", b.name, b.line);
        let kind = match b.kind {
            Ok(k) => k,
            Err(e) => {
                out.problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if out.tasks.iter().any(|t| t.name == b.name) {
            out.problems
                .push(format!("{at}: a task of this name comes earlier"));
            continue;
        }
        let p = examples::parse(&b.text, limits);
        out.rejected.extend(p.rejected);
        for problem in &p.problems {
            // Generated targets are all different: one "label" is no problem there.
            let labelled = kind.has_labels();
            if labelled || !matches!(problem, SetProblem::OneLabelOnly(_)) {
                out.problems.push(format!("{at}: {problem}"));
            }
        }
        out.tasks.push(PastedTask {
            name: b.name,
            kind,
            line: b.line,
            examples: p.examples,
            labels: if kind.has_labels() {
                p.labels
            } else {
                Vec::new()
            },
        });
    }
    if out.tasks.is_empty() && out.problems.is_empty() {
        out.problems.push(LifelongError::Empty.to_string());
    }
    out.rejected.sort_by_key(|e| e.line);
    out
}

impl PastedSequence {
    /// The tasks as a stream in the pasted order: `shots` per class (per task without labels)
    /// for training, as many for validation, the rest the test set (at most `max_test`).
    pub fn stream(
        &self,
        shots: usize,
        max_test: usize,
        seed: u64,
    ) -> Result<Vec<StreamTask>, LifelongError> {
        if let Some(p) = self.problems.first() {
            return Err(LifelongError::Paste(p.clone()));
        }
        if self.tasks.is_empty() {
            return Err(LifelongError::Empty);
        }
        self.tasks
            .iter()
            .map(|t| StreamTask::split(t.info(), &t.examples, shots, max_test, seed))
            .collect()
    }

    pub fn examples(&self) -> usize {
        self.tasks.iter().map(|t| t.examples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> PastedSequence {
        parse(text, &Limits::default())
    }

    #[test]
    fn headers_start_tasks_of_their_type() {
        let s = p(
            "a => x\nb => y\n# ner task (NER)\nI saw Paris => paris [location]\n\
                   # sums (summarisation)\n{\"input\": \"long text\", \"target\": \"short\"}\n",
        );
        let got: Vec<(&str, TaskKind, usize, usize)> = s
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.kind, t.line, t.examples.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("task 1", TaskKind::Classification, 1, 2),
                ("ner task", TaskKind::Ner, 3, 1),
                ("sums", TaskKind::Generation, 5, 1)
            ]
        );
        assert_eq!(s.tasks[0].labels, ["x", "y"]);
        assert!(s.tasks[1].labels.is_empty());
        assert!(s.problems.is_empty() && s.rejected.is_empty(), "{s:?}");
    }

    #[test]
    fn problems_name_the_task_and_the_line() {
        let s =
            p("# a\nx => 1\nno arrow\ny => 2\n# b (poetry)\nz => 3\n# a\nw => 4\n# c\nq => 5\n");
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].line, 3, "{:?}", s.rejected);
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
        assert!(s.problems[0].contains("task \"b (poetry)\" (line 5): unknown task type"));
        assert!(s.problems[1].contains("task \"a\" (line 7): a task of this name"));
        assert!(s.problems[2].contains("task \"c\" (line 9)") && s.problems[2].contains("\"5\""));
        assert_eq!(p("").problems, ["the task sequence is empty"]);
        assert_eq!(p("# (ner)").problems.len(), 1);
    }

    #[test]
    fn the_stream_splits_each_task_into_train_valid_and_test() {
        let mut text = String::from("# pos\n");
        for i in 0..24 {
            text.push_str(&format!("text {i} => {}\n", ["yes", "no"][i % 2]));
        }
        text.push_str("# gen (summary)\n");
        for i in 0..9 {
            text.push_str(&format!("doc {i} => sum {i}\n"));
        }
        let s = p(&text);
        let tasks = s.stream(3, 5, 1).unwrap();
        let sizes: Vec<_> = tasks
            .iter()
            .map(|t| (t.train.len(), t.valid.len(), t.test.len()))
            .collect();
        assert_eq!(sizes, [(6, 6, 5), (3, 3, 3)]);
        let t = &tasks[0];
        assert!(
            t.test
                .iter()
                .all(|e| !t.train.contains(e) && !t.valid.contains(e))
        );
        let err = s.stream(5, 5, 1).unwrap_err().to_string();
        assert!(err.contains("gen has 0 test"), "{err}");
    }
}
