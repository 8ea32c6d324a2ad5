//! A relation stream pasted by a person (the page's Relations section): one sentence per line
//! with the head marked `[[..]]` and the tail `<<..>>`, then the relation after a tab or `=>`.
//! A line `# name` starts a task (lines before the first header form "task 1"); a line `# pool`
//! starts the unlabelled sentences ERDA may retrieve from (a relation after them is optional and
//! only used to report how often retrieval found the right one). Each task's relations are split
//! into train and test by entity pair (`split`). Every rejected line is reported with its
//! number and the reason, every dropped relation or task with why; the rest is kept.

use super::instance::{Instance, MarkError};
use super::split::{Caps, Sides, split_by_pair};
use super::stream::TaskSpec;
use crate::tasks::Example;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Per relation, as in the data (`tasks::derive`).
pub const CAPS: Caps = Caps {
    test: 20,
    train: 100,
};
const SPLIT_SEED: u64 = 0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum LineProblem {
    #[error("no relation: expected `sentence<TAB>relation` or `sentence => relation`")]
    NoRelation,
    #[error("the relation is empty")]
    EmptyRelation,
    #[error("{0}")]
    Mark(String),
    #[error("duplicate of line {0}")]
    Duplicate(usize),
    #[error(
        "relation {relation:?} belongs to task {task:?} (line {line}): a relation is learned in one task"
    )]
    EarlierTask {
        relation: String,
        task: String,
        line: usize,
    },
}

/// A rejected line of a relation stream.
pub type LineError = crate::text::examples::LineError<LineProblem>;

/// The parsed paste: the tasks (split), the pool, and what was rejected or dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastedStream {
    pub tasks: Vec<TaskSpec>,
    pub pool: Vec<Example>,
    pub rejected: Vec<LineError>,
    /// Relations and tasks left out, and why (naming the line they start on).
    pub dropped: Vec<String>,
    /// Problems of the whole paste: nothing to learn.
    pub problems: Vec<String>,
}

impl PastedStream {
    pub fn relations(&self) -> usize {
        self.tasks.iter().map(|t| t.relations.len()).sum()
    }

    pub fn examples(&self) -> usize {
        self.tasks
            .iter()
            .map(|t| t.train.len() + t.test.len())
            .sum()
    }
}

/// A task as written: its header's line and its relations in first-seen order, with each
/// relation's (line, example) list.
struct Written {
    name: String,
    line: usize,
    relations: Vec<(String, Vec<(usize, Example)>)>,
}

fn sentence_and_relation(line: &str) -> Option<(&str, &str)> {
    line.rsplit_once('\t').or_else(|| line.rsplit_once("=>"))
}

fn marked(sentence: &str, relation: &str) -> Result<Example, LineProblem> {
    let inst =
        Instance::parse(sentence).map_err(|e: MarkError| LineProblem::Mark(e.to_string()))?;
    Ok(Example {
        head: Some(inst.head_text),
        tail: Some(inst.tail_text),
        ..Example::new(sentence, relation)
    })
}

/// Parses a pasted stream; never panics, whatever the text.
pub fn parse(text: &str) -> PastedStream {
    let mut out = PastedStream {
        tasks: Vec::new(),
        pool: Vec::new(),
        rejected: Vec::new(),
        dropped: Vec::new(),
        problems: Vec::new(),
    };
    if let Err(p) = crate::text::examples::check_size(text) {
        out.problems.push(p.to_string());
        return out;
    }
    let mut written: Vec<Written> = Vec::new();
    let mut in_pool = false;
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Relation -> (task index, line of its first example).
    let mut owner: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let (no, line) = (i + 1, raw.trim());
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("# ").map(str::trim) {
            in_pool = name.eq_ignore_ascii_case("pool");
            if !in_pool {
                written.push(Written {
                    name: name.to_string(),
                    line: no,
                    relations: Vec::new(),
                });
            }
            continue;
        }
        let parsed = match sentence_and_relation(line) {
            Some((s, r)) => Ok((s.trim(), r.trim())),
            None if in_pool => Ok((line, "")),
            None => Err(LineProblem::NoRelation),
        };
        let checked = parsed.and_then(|(s, r)| {
            if r.is_empty() && !in_pool {
                return Err(LineProblem::EmptyRelation);
            }
            if let Some(&first) = seen.get(s) {
                return Err(LineProblem::Duplicate(first));
            }
            let e = marked(s, r)?;
            Ok((s.to_string(), e))
        });
        let (sentence, e) = match checked {
            Ok(x) => x,
            Err(problem) => {
                out.rejected.push(LineError { line: no, problem });
                continue;
            }
        };
        if in_pool {
            seen.insert(sentence, no);
            out.pool.push(e);
            continue;
        }
        if written.is_empty() {
            written.push(Written {
                name: "task 1".into(),
                line: no,
                relations: Vec::new(),
            });
        }
        let t = written.len() - 1;
        let relation = e.target.clone();
        match owner.get(&relation) {
            Some(&(o, first)) if o != t => {
                out.rejected.push(LineError {
                    line: no,
                    problem: LineProblem::EarlierTask {
                        relation,
                        task: written[o].name.clone(),
                        line: first,
                    },
                });
                continue;
            }
            Some(_) => {}
            None => {
                owner.insert(relation.clone(), (t, no));
            }
        }
        seen.insert(sentence, no);
        let rels = &mut written[t].relations;
        match rels.iter_mut().find(|(r, _)| *r == relation) {
            Some((_, v)) => v.push((no, e)),
            None => rels.push((relation, vec![(no, e)])),
        }
    }

    let mut sides = Sides::new();
    for w in written {
        let mut spec = TaskSpec {
            name: w.name.clone(),
            relations: Vec::new(),
            train: Vec::new(),
            test: Vec::new(),
        };
        for (relation, examples) in w.relations {
            let first = examples[0].0;
            if examples.len() < 2 {
                out.dropped.push(format!(
                    "relation {relation:?} (line {first}) has one example: it needs two or more, one to learn from and one to test on"
                ));
                continue;
            }
            let (train, test, overflow) = split_by_pair(
                examples.into_iter().map(|(_, e)| e).collect(),
                &mut sides,
                CAPS,
                SPLIT_SEED,
            );
            if train.is_empty() || test.is_empty() {
                out.dropped.push(format!(
                    "relation {relation:?} (line {first}): its examples cannot be split into train and test by entity pair (every one has a pair already on one side): give it examples of more entity pairs"
                ));
                continue;
            }
            spec.relations.push((relation.clone(), relation));
            spec.train.extend(train);
            spec.test.extend(test);
            out.pool.extend(overflow);
        }
        match spec.relations.len() {
            0 => out.dropped.push(format!(
                "task {:?} (line {}) has no relation left to learn",
                w.name, w.line
            )),
            1 => out.dropped.push(format!(
                "task {:?} (line {}) has one relation ({:?}): a task needs at least two to tell apart",
                w.name, w.line, spec.relations[0].0
            )),
            _ => out.tasks.push(spec),
        }
    }
    // No sentence of a test pair may be retrieved: retrieval would see the answer.
    let test_pairs: std::collections::HashSet<_> = out
        .tasks
        .iter()
        .flat_map(|t| t.test.iter().map(super::split::pair_of))
        .collect();
    let before = out.pool.len();
    out.pool
        .retain(|e| !test_pairs.contains(&super::split::pair_of(e)));
    if out.pool.len() < before {
        out.dropped.push(format!(
            "{} pool sentences share an entity pair with a test example and are left out of the pool",
            before - out.pool.len()
        ));
    }
    if out.tasks.is_empty() {
        out.problems
            .push("no task with two relations or more, each with two examples or more".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_splits_into_tasks_and_a_pool_with_every_bad_line_named() {
        let text = "\
# people
[[Ann]] was born in <<Rome>>.\tbirth place
[[Bob]] was born in <<Oslo>>.\tbirth place
[[Cy]] was born in <<Kiev>>.\tbirth place
[[Ann]] works for <<Acme>>. => employer
[[Bob]] works for <<Initech>>. => employer
[[Dee]] works for <<Hooli>>. => employer
this line has no relation
[[Eve]] lives in <<Paris\tresidence
[[Ann]] was born in <<Rome>>.\tbirth place
[[Fay]] likes <<tea>>\tlikes

# places
[[Rome]] is in <<Italy>>\tcountry
[[Oslo]] is in <<Norway>>\tcountry
[[Rome]] has <<2.8 million>> people\tpopulation
[[Oslo]] has <<0.7 million>> people\tpopulation
[[Kiev]] is in <<Ukraine>>\tbirth place
# solo
[[A]] x <<B>>\tonly
[[C]] x <<D>>\tonly
# pool
[[Gus]] was born in <<Lima>>.
[[Hal]] joined <<Acme>> in 1990\temployer
no markers here
";
        let p = parse(text);
        let bad: Vec<(usize, String)> = p
            .rejected
            .iter()
            .map(|e| (e.line, e.problem.to_string()))
            .collect();
        assert_eq!(bad.len(), 5, "{bad:?}");
        assert!(bad[0].0 == 8 && bad[0].1.starts_with("no relation"));
        assert!(
            bad[1].0 == 9 && bad[1].1.contains("never closed"),
            "{bad:?}"
        );
        assert_eq!((bad[2].0, bad[2].1.as_str()), (10, "duplicate of line 2"));
        assert!(bad[3].0 == 18 && bad[3].1.contains("belongs to task \"people\" (line 2)"));
        assert!(bad[4].0 == 25 && bad[4].1.contains("no head"), "{bad:?}");
        assert_eq!(p.tasks.len(), 2);
        assert_eq!(p.tasks[0].relations.len(), 2, "likes has one example");
        assert!(
            p.dropped
                .iter()
                .any(|d| d.contains("\"likes\" (line 11) has one example"))
        );
        assert!(
            p.dropped
                .iter()
                .any(|d| d.contains("task \"solo\" (line 19) has one relation"))
        );
        for t in &p.tasks {
            for (r, _) in &t.relations {
                assert!(
                    t.train.iter().any(|e| &e.target == r),
                    "{r} has training examples"
                );
                assert!(
                    t.test.iter().any(|e| &e.target == r),
                    "{r} has test examples"
                );
            }
        }
        assert_eq!(p.pool.len(), 2);
        assert_eq!(p.pool[1].target, "employer");
        assert!(p.problems.is_empty());
        assert_eq!(p.examples(), 10);
    }

    #[test]
    fn nothing_to_learn_is_a_problem_of_the_whole_paste() {
        assert_eq!(parse("").problems.len(), 1);
        let one = parse("[[a]] r <<b>>\tx\n[[c]] r <<d>>\tx\n");
        assert!(one.tasks.is_empty() && !one.dropped.is_empty() && !one.problems.is_empty());
    }

    #[test]
    fn any_bytes_parse_without_panicking() {
        for s in [
            "#",
            "# ",
            "\t",
            "=>",
            "[[",
            "<<>>[[]]\t",
            "# pool\n\t\n[[x]]<<y>>",
            "é\t[[é]]",
        ] {
            let _ = parse(s);
        }
    }
}
