//! `metaprompt data ...`: derive the task suites, list them, show examples.

use clap::Subcommand;
use metaprompt::compare::Preset;
use metaprompt::relation::split::pair_of;
use metaprompt::tasks::derive::REL_POOL;
use metaprompt::tasks::{self, Manifest, store};
use metaprompt::text::tokenizer::T5Tokenizer;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Derive every task from the unpacked packages (scripts/fetch-data.sh runs this).
    Build {
        #[arg(long, default_value = "data/raw")]
        raw: PathBuf,
        #[arg(long, default_value = "data")]
        out: PathBuf,
    },
    /// The manifest as a table: every suite with its tasks, kinds, sizes and sources.
    List {
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Only this suite.
        #[arg(long)]
        suite: Option<String>,
    },
    /// A task's description and its first examples.
    Show {
        task: String,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// How many examples.
        #[arg(short, default_value_t = 5)]
        n: usize,
        #[arg(long, default_value = "train")]
        split: String,
    },
    /// Few-shot presets for the page from the fetched target tasks: `OUT/NAME.jsonl` (labels
    /// verbalised, as a person would paste them) and `OUT/index.json`.
    Presets {
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[arg(long, default_value = "targets-cls")]
        suite: String,
        /// Examples per label (the page trains on k of them and holds out the rest).
        #[arg(long, default_value_t = 24)]
        per_label: usize,
        #[arg(long, default_value = "presets")]
        out: PathBuf,
        /// The model folder whose tokenizer.json measures inputs against the page's token limits.
        #[arg(long, default_value = "models/flan-t5-small")]
        model: PathBuf,
    },
}

pub fn run(cmd: DataCommand) -> Result<(), String> {
    match cmd {
        DataCommand::Build { raw, out } => build(&raw, &out),
        DataCommand::List { data, suite } => list(&data, suite.as_deref()),
        DataCommand::Show {
            task,
            data,
            n,
            split,
        } => show(&data, &task, n, &split),
        DataCommand::Presets {
            data,
            suite,
            per_label,
            out,
            model,
        } => {
            let path = model.join("tokenizer.json");
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "{}: {e} (presets are measured in its tokens: run scripts/fetch-model.sh)",
                    path.display()
                )
            })?;
            let tokenizer =
                T5Tokenizer::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            presets(&data, &suite, per_label, &out, &tokenizer)
        }
    }
}

fn build(raw: &Path, out: &Path) -> Result<(), String> {
    let t = Instant::now();
    let m = tasks::derive::build(raw, out, &mut |line| println!("{line}"))
        .map_err(|e| e.to_string())?;
    println!(
        "derived {} tasks into {} in {:.1} s",
        m.tasks.len(),
        out.display(),
        t.elapsed().as_secs_f64()
    );
    print_suite_counts(&m);
    Ok(())
}

fn print_suite_counts(m: &Manifest) {
    for (name, tasks) in &m.suites {
        println!("  suite {name:<14} {:>3} tasks", tasks.len());
    }
}

fn list(data: &Path, only: Option<&str>) -> Result<(), String> {
    let m = store::read_manifest(data).map_err(|e| e.to_string())?;
    for (name, _) in m
        .suites
        .iter()
        .filter(|(n, _)| only.is_none_or(|o| o == *n))
    {
        let tasks = m.suite(name).map_err(|e| e.to_string())?;
        println!("\n## {name} ({} tasks)\n", tasks.len());
        println!(
            "{:<46} {:<14} {:>6} {:>5} {:>6}  source",
            "task", "kind", "train", "test", "labels"
        );
        for t in tasks {
            println!(
                "{:<46} {:<14} {:>6} {:>5} {:>6}  {} {} ({})",
                t.name,
                t.kind.name(),
                t.counts.train,
                t.counts.test,
                if t.labels.is_empty() {
                    "-".to_string()
                } else {
                    t.labels.len().to_string()
                },
                t.source.package,
                t.source.version,
                t.source.license
            );
        }
    }
    if only.is_none() {
        println!();
        print_suite_counts(&m);
    }
    Ok(())
}

fn show(data: &Path, name: &str, n: usize, split: &str) -> Result<(), String> {
    let m = store::read_manifest(data).map_err(|e| e.to_string())?;
    let t = m.task(name).map_err(|e| e.to_string())?;
    let examples = store::read_split(data, t, split).map_err(|e| e.to_string())?;
    println!(
        "{} ({}), {} train / {} test",
        t.name,
        t.kind.name(),
        t.counts.train,
        t.counts.test
    );
    println!(
        "source: {} {} {} ({})",
        t.source.package, t.source.version, t.source.path, t.source.license
    );
    if !t.note.is_empty() {
        println!("how:    {}", t.note);
    }
    if !t.labels.is_empty() {
        let words: Vec<String> = t
            .labels
            .iter()
            .map(|l| format!("{l} -> {:?}", t.verbalize(l)))
            .collect();
        println!("labels: {}", words.join(", "));
    }
    for e in examples.iter().take(n) {
        println!("\n  input:  {}", e.input.replace('\n', " "));
        println!("  target: {}", e.target);
        if e.answers.len() > 1 {
            println!("  also:   {}", e.answers[1..].join(" | "));
        }
    }
    Ok(())
}

/// The longest run of `text`'s first words, spaces flattened, that the tokenizer makes at most
/// `max` tokens (its `</s>` included): the page refuses a longer input rather than cutting it
/// silently, so a preset cuts it, at a word.
fn fit(tokenizer: &T5Tokenizer, text: &str, max: usize) -> Result<String, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let tokens = |n: usize| {
        tokenizer
            .encode(&words[..n].join(" "))
            .map(|t| t.len())
            .map_err(|e| e.to_string())
    };
    if tokens(words.len())? <= max {
        return Ok(words.join(" "));
    }
    // Tokens grow with words: the largest n that fits, by bisection.
    let (mut lo, mut hi) = (0, words.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if tokens(mid)? <= max {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(words[..lo].join(" "))
}

fn presets(
    data: &Path,
    suite: &str,
    per_label: usize,
    out: &Path,
    tokenizer: &T5Tokenizer,
) -> Result<(), String> {
    let m = store::read_manifest(data).map_err(|e| e.to_string())?;
    let max = metaprompt::compare::Settings::default().max_input;

    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut index = Vec::new();
    for t in m.suite(suite).map_err(|e| e.to_string())? {
        if !t.kind.has_labels() {
            continue;
        }
        let pool = store::read_split(data, t, "train").map_err(|e| e.to_string())?;
        let picked = tasks::sampling::k_shot(&pool, per_label, Some(&t.labels), 13);
        let lines = picked
            .iter()
            .map(|e| {
                Ok(serde_json::json!({
                    "input": fit(tokenizer, &e.input, max)?,
                    "target": t.verbalize(&e.target),
                })
                .to_string())
            })
            .collect::<Result<Vec<String>, String>>()?;
        let file = format!("{}.jsonl", t.dir_name());
        let path = out.join(&file);
        std::fs::write(&path, lines.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
        index.push(Preset {
            name: t.name.clone(),
            file,
            examples: lines.len(),
            labels: t
                .labels
                .iter()
                .map(|l| t.verbalize(l).to_string())
                .collect(),
            source: format!(
                "{} {} ({})",
                t.source.package, t.source.version, t.source.license
            ),
        });
    }
    let path = out.join("index.json");
    let json = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {} presets to {}", index.len(), out.display());
    if m.task(REL_POOL).is_ok() {
        relations_preset(data, &m, out)?;
    }
    if m.suite(LIFELONG).is_ok() {
        lifelong_presets(data, &m, out, tokenizer)?;
    }
    Ok(())
}

const LIFELONG: &str = "lifelong";
/// Examples per class (per task without labels) in the page's lifelong presets: enough for the
/// page's default split (8 training and 8 validation shots) and a test set of the rest.
const LIFELONG_PER_CLASS: usize = 26;

/// `OUT/lifelong.txt` (the `lifelong` suite), `OUT/lifelong-classification.txt` (its
/// classification tasks) and `OUT/generation.txt` (DMEA's `generation` suite): task sequences as
/// a person would paste them in the page's Lifelong section, `# name (type)` headers over
/// `input<TAB>target` lines, in the authors' type order.
fn lifelong_presets(
    data: &Path,
    m: &Manifest,
    out: &Path,
    tokenizer: &T5Tokenizer,
) -> Result<(), String> {
    use metaprompt::lifelong::TaskType;
    let blocks = |suite: &str| -> Result<Vec<(TaskType, String)>, String> {
        let mut infos = m.suite(suite).map_err(|e| e.to_string())?;
        infos.sort_by_key(|t| TaskType::of(t.kind));
        infos
            .into_iter()
            .map(|t| Ok((TaskType::of(t.kind), sequence_block(data, t, tokenizer)?)))
            .collect()
    };
    let write = |name: &str, blocks: Vec<&str>| -> Result<(), String> {
        let path = out.join(name);
        std::fs::write(&path, blocks.concat()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} ({} tasks)", path.display(), blocks.len());
        Ok(())
    };
    let lifelong = blocks(LIFELONG)?;
    write(
        "lifelong.txt",
        lifelong.iter().map(|(_, t)| t.as_str()).collect(),
    )?;
    write(
        "lifelong-classification.txt",
        lifelong
            .iter()
            .filter(|(ty, _)| *ty == TaskType::Classification)
            .map(|(_, t)| t.as_str())
            .collect(),
    )?;
    let generation = blocks("generation")?;
    write(
        "generation.txt",
        generation.iter().map(|(_, t)| t.as_str()).collect(),
    )
}

/// One task of a preset sequence: its header and `LIFELONG_PER_CLASS` examples per class, inputs
/// (news articles, documents to summarise) cut to the learner's token limit at a word. A NER
/// sentence is never cut (its spans must stay in it): one over the limit is left out, and said.
fn sequence_block(
    data: &Path,
    t: &metaprompt::tasks::TaskInfo,
    tokenizer: &T5Tokenizer,
) -> Result<String, String> {
    use metaprompt::lifelong::TaskType;
    let max = metaprompt::lifelong::LifelongConfig::default().max_input;
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let ty = TaskType::of(t.kind);
    let mut text = format!("# {} ({})\n", t.name, ty.name().to_lowercase());
    let pool = store::read_split(data, t, "train").map_err(|e| e.to_string())?;
    let labels = t.kind.has_labels().then_some(t.labels.as_slice());
    let mut left_out = 0;
    for e in tasks::sampling::k_shot(&pool, LIFELONG_PER_CLASS, labels, 17) {
        let target = metaprompt::prompt::eval::target_text(t, &e);
        let input = fit(tokenizer, &e.input, max)?;
        if ty == TaskType::Ner && input != flat(&e.input) {
            left_out += 1;
            continue;
        }
        text.push_str(&format!("{input}\t{}\n", flat(target)));
    }
    if left_out > 0 {
        println!(
            "{}: {left_out} sentences over {max} tokens left out",
            t.name
        );
    }
    Ok(text)
}

/// Examples per relation in the page's relation preset: the first task's (ERDA learns it from
/// many), the later tasks' (few-shot), and the pool's sentences: 1,224 sentences to encode,
/// 99 s on the page's CPU engine in WebAssembly (81 ms each on a 2-core Xeon).
const PRESET_FIRST: usize = 45;
const PRESET_LATER: usize = 20;
const PRESET_POOL: usize = 300;

/// `OUT/relations.txt`: the relation stream as a person would paste it (the page's Relations
/// section): `# task` headers, `sentence<TAB>relation` lines (train and test together: the page
/// splits them by entity pair), then `# pool`.
fn relations_preset(data: &Path, m: &Manifest, out: &Path) -> Result<(), String> {
    let read =
        |t: &tasks::TaskInfo, split| store::read_split(data, t, split).map_err(|e| e.to_string());
    let mut text = String::new();
    let mut lines = 0;
    // A sentence marked for two relations (a pair holding both) is written once, as the page
    // rejects a repeated sentence.
    let mut written = std::collections::HashSet::new();
    for (i, t) in m
        .suite("relations")
        .map_err(|e| e.to_string())?
        .into_iter()
        .enumerate()
    {
        let cap = if i == 0 { PRESET_FIRST } else { PRESET_LATER };
        text.push_str(&format!("# {}\n", t.name));
        let all = [read(t, "train")?, read(t, "test")?].concat();
        for label in &t.labels {
            // One example per entity pair in turn, so that the page's split by pair has pairs
            // for both sides.
            let mut by_pair: std::collections::BTreeMap<_, Vec<_>> = Default::default();
            for e in all.iter().filter(|e| &e.target == label) {
                by_pair.entry(pair_of(e)).or_default().push(e);
            }
            let mut picked: Vec<&tasks::Example> = Vec::new();
            for round in 0.. {
                let before = picked.len();
                picked.extend(by_pair.values().filter_map(|v| v.get(round)));
                if picked.len() == before || picked.len() >= cap {
                    break;
                }
            }
            for e in picked.into_iter().take(cap) {
                if written.insert(e.input.clone()) {
                    text.push_str(&format!("{}\t{}\n", e.input, t.verbalize(label)));
                    lines += 1;
                }
            }
        }
    }
    text.push_str("# pool\n");
    let pool = read(m.task(REL_POOL).map_err(|e| e.to_string())?, "train")?;
    for e in pool
        .iter()
        .filter(|e| written.insert(e.input.clone()))
        .take(PRESET_POOL)
    {
        text.push_str(&format!("{}\n", e.input));
    }
    let path = out.join("relations.txt");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} ({lines} relation examples, {} pool sentences)",
        path.display(),
        pool.len().min(PRESET_POOL)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preset's input is the longest whole-word start within the limit; a short one is kept
    /// whole (spaces flattened).
    #[test]
    fn a_preset_input_is_cut_at_a_word_to_the_token_limit() {
        let bytes = std::fs::read("models/flan-t5-small/tokenizer.json").unwrap();
        let t = T5Tokenizer::from_bytes(&bytes).unwrap();
        let count = |s: &str| t.encode(s).unwrap().len();
        assert_eq!(fit(&t, "a  short\n input", 16).unwrap(), "a short input");
        let long = "the quick brown fox jumps over the lazy dog ".repeat(30);
        for max in [8, 20, 128] {
            let cut = fit(&t, &long, max).unwrap();
            assert!(count(&cut) <= max, "{max}: {cut}");
            let words = cut.split(' ').count();
            let one_more: Vec<&str> = long.split_whitespace().take(words + 1).collect();
            assert!(
                count(&one_more.join(" ")) > max,
                "{max}: a word more still fits"
            );
            assert!(long.starts_with(&cut));
        }
    }
}
