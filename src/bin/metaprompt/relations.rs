//! `metaprompt relations`: ERDA and its baselines over the relation stream, for each shot count
//! and seed (the first task fixed, the rest permuted) -> a markdown report and the runs as JSON.
//! The frozen encoder's vectors are kept in a table beside the data and reused.

use crate::tune_cmd::{Runner, write_atomic};
use indicatif::{ProgressBar, ProgressStyle};
use metaprompt::relation::encoder::Vectors;
use metaprompt::relation::learner::{Config, Method, Prepared, RelationRun, run};
use metaprompt::relation::stream::{Stream, TaskSpec};
use metaprompt::tasks::derive::REL_POOL;
use metaprompt::tasks::metrics::mean_std;
use metaprompt::tasks::store;
use std::fmt::Write;
use std::path::PathBuf;

pub struct RelationsArgs {
    pub methods: Vec<Method>,
    pub shots: Vec<usize>,
    pub seeds: Vec<u64>,
    pub config: Config,
    pub suite: String,
    /// Use at most this many pool sentences (the first in the data's order), 0 for all.
    pub pool: usize,
    pub data: PathBuf,
    pub model: PathBuf,
    pub out: PathBuf,
    pub command_line: String,
}

/// What produced the vectors: a table is reused only for the same model file and pooling.
fn model_id(dir: &std::path::Path, r: &Runner) -> String {
    let size = std::fs::metadata(dir.join("model.safetensors")).map_or(0, |m| m.len());
    format!(
        "{} ({size} bytes): encoder states, mean over @head@ and over #tail#, concatenated; {}",
        dir.display(),
        r.name
    )
}

pub fn relations(r: &Runner, a: &RelationsArgs) -> Result<(), String> {
    let manifest = store::read_manifest(&a.data).map_err(|e| e.to_string())?;
    let mut specs = Vec::new();
    for info in manifest.suite(&a.suite).map_err(|e| e.to_string())? {
        let read = |split| store::read_split(&a.data, info, split).map_err(|e| e.to_string());
        specs.push(TaskSpec {
            name: info.name.clone(),
            relations: info
                .labels
                .iter()
                .map(|l| (l.clone(), info.verbalize(l).to_string()))
                .collect(),
            train: read("train")?,
            test: read("test")?,
        });
    }
    let pool_info = manifest.task(REL_POOL).map_err(|e| e.to_string())?;
    let mut pool = store::read_split(&a.data, pool_info, "train").map_err(|e| e.to_string())?;
    if a.pool > 0 {
        pool.truncate(a.pool);
    }
    let stream = Stream::new(specs, &pool).map_err(|e| e.to_string())?;

    // The frozen encoder's vectors, encoded once.
    let cache = a.data.join("cache").join("relation-vectors.safetensors");
    let id = model_id(&a.model, r);
    let d = r.engine().config().d_model;
    let mut vectors = std::fs::read(&cache)
        .ok()
        .and_then(|b| Vectors::from_bytes(&b).ok())
        .filter(|v| v.model == id && v.dim == 2 * d)
        .unwrap_or_else(|| Vectors::new(2 * d, id.clone()));
    let before = vectors.len();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "encoding {bar:30} {pos}/{len} sentences [{elapsed_precise} < {eta_precise}]",
        )
        .expect("template"),
    );
    let started = std::time::Instant::now();
    pollster::block_on(vectors.encode_missing(
        r.engine(),
        &r.model.tokenizer,
        &stream.instances(),
        16,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    ))
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let encoded = vectors.len() - before;
    let encode_secs = started.elapsed().as_secs_f64();
    if encoded > 0 {
        println!(
            "encoded {encoded} sentences in {encode_secs:.1} s ({:.1} ms each) on {}",
            1e3 * encode_secs / encoded as f64,
            r.name
        );
        std::fs::create_dir_all(cache.parent().expect("a folder"))
            .and_then(|()| {
                std::fs::write(
                    &cache,
                    vectors
                        .to_bytes()
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                )
            })
            .map_err(|e| format!("{}: {e}", cache.display()))?;
    }
    let prepared = Prepared::new(&stream, &vectors).map_err(|e| e.to_string())?;
    let cal = &prepared.calibration;
    println!(
        "retrieval threshold {:.3} (median same-relation cosine on the first task; different-relation median {:.3})",
        cal.threshold, cal.different[2]
    );

    let total = a.shots.len() * a.seeds.len() * a.methods.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} runs [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("template"),
    );
    let mut runs: Vec<RelationRun> = Vec::new();
    let started = std::time::Instant::now();
    for &shots in &a.shots {
        let cfg = Config {
            shots,
            ..a.config.clone()
        };
        for &seed in &a.seeds {
            for &m in &a.methods {
                bar.set_message(format!("{} {shots}-shot seed {seed}", m.name()));
                runs.push(
                    run(&prepared, m, &cfg, seed, &mut |_| true)
                        .map_err(|e| e.to_string())?
                        .0,
                );
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let train_secs = started.elapsed().as_secs_f64();
    let report = report(
        a,
        r,
        &stream,
        &prepared,
        &runs,
        pool_info.note.as_str(),
        train_secs / total.max(1) as f64,
    );
    println!("{report}");
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_atomic(&a.out, &report)?;
    println!("wrote {}", a.out.display());
    // The figures go with the table; the sentences (retrieved, remembered: 8 MB) go to a
    // `.runs.json` beside it that is not committed.
    let figures: Vec<_> = runs
        .iter()
        .map(|run| {
            serde_json::json!({
                "method": run.method,
                "shots": run.shots,
                "seed": run.seed,
                "order": run.order,
                "after": run.after.iter().map(|t| serde_json::json!({
                    "task": t.task,
                    "seen_relations": t.seen_relations,
                    "strict": t.strict,
                    "lenient": t.lenient,
                    "per_task": t.per_task,
                    "support": t.support,
                    "augmented": t.augmented.len(),
                    "memory": t.memory.len(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let head = |runs: serde_json::Value| {
        serde_json::json!({
            "command": a.command_line,
            "commit": crate::meta_cmd::git_commit(),
            "engine": r.name,
            "config": a.config,
            "calibration": cal,
            "runs": runs,
        })
    };
    let detail = a.out.with_extension("runs.json");
    for (path, json) in [
        (a.out.with_extension("json"), head(figures.into())),
        (detail, head(serde_json::to_value(&runs).expect("JSON"))),
    ] {
        write_atomic(&path, &serde_json::to_string_pretty(&json).expect("JSON"))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn pm(xs: &[f64]) -> String {
    let (m, s) = mean_std(xs);
    format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &RelationsArgs,
    r: &Runner,
    stream: &Stream,
    p: &Prepared,
    runs: &[RelationRun],
    pool_note: &str,
    secs_per_run: f64,
) -> String {
    let mut o = String::new();
    let cal = &p.calibration;
    let _ = writeln!(
        o,
        "# ERDA: continual few-shot relation learning on flan-t5-small's frozen encoder\n"
    );
    let _ = writeln!(o, "    {}\n", a.command_line);
    let _ = writeln!(
        o,
        "Commit {}, engine {}. {} tasks, {} relations; train/test split by entity pair; {} pool sentences. \
         Accuracy (%) on the test sets of every relation seen so far, mean ± std over {} seeds (first task fixed, \
         the rest permuted). Strict: gold against every seen relation. Lenient (ERDA's metric): gold against up \
         to {} seen relations drawn per example. {:.2} s per run.\n",
        crate::meta_cmd::git_commit(),
        r.name,
        stream.tasks.len(),
        stream.relations.len(),
        stream.pool.len(),
        a.seeds.len(),
        a.config.lenient_negatives,
        secs_per_run
    );
    let _ = writeln!(o, "Data: {pool_note}.\n");
    let _ = writeln!(
        o,
        "Ours, not the authors': the frozen T5 encoder pooled at the marked entities (their GloVe + BiLSTM); a \
         linear head {}->{}; the entity swap edits the pooled vector; the retrieval threshold is calibrated on \
         our encoder: {:.3}, the median cosine between first-task examples of one relation (quantiles 10/25/50/75/90 %: \
         same relation {}, different {}; {} pairs).\n",
        p.dim,
        a.config.head_dim,
        cal.threshold,
        fmt_q(&cal.same),
        fmt_q(&cal.different),
        cal.pairs
    );
    for &shots in &a.shots {
        let of = |m: Method| -> Vec<&RelationRun> {
            runs.iter()
                .filter(|r| r.shots == shots && r.method == m)
                .collect()
        };
        for (metric, pick) in [("strict", 0usize), ("lenient", 1)] {
            let _ = writeln!(o, "## {shots}-shot, {metric}\n");
            let tasks = stream.tasks.len();
            let head: Vec<String> = (1..=tasks).map(|t| format!("after {t}")).collect();
            let _ = writeln!(o, "| method | {} |", head.join(" | "));
            let _ = writeln!(o, "|---|{}", "---|".repeat(tasks));
            for &m in &a.methods {
                let rs = of(m);
                let cells: Vec<String> = (0..tasks)
                    .map(|t| {
                        let xs: Vec<f64> = rs
                            .iter()
                            .filter_map(|r| r.after.get(t))
                            .map(|x| if pick == 0 { x.strict } else { x.lenient })
                            .collect();
                        pm(&xs)
                    })
                    .collect();
                let _ = writeln!(o, "| {} | {} |", m.name(), cells.join(" | "));
            }
            let _ = writeln!(o);
        }
        // Paired differences after the last task.
        if a.methods.contains(&Method::Erda) {
            let last = |r: &RelationRun| r.after.last().map_or(f64::NAN, |x| x.strict);
            let _ = writeln!(
                o,
                "ERDA minus each method after the last task, strict, per seed paired (mean ± std, seeds ERDA is ahead):\n"
            );
            let _ = writeln!(o, "| method | difference | ERDA ahead |");
            let _ = writeln!(o, "|---|---|---|");
            for &m in a.methods.iter().filter(|&&m| m != Method::Erda) {
                let diffs: Vec<f64> = a
                    .seeds
                    .iter()
                    .filter_map(|&s| {
                        let find = |mm| {
                            runs.iter()
                                .find(|r| r.shots == shots && r.seed == s && r.method == mm)
                        };
                        Some(last(find(Method::Erda)?) - last(find(m)?))
                    })
                    .collect();
                let ahead = diffs.iter().filter(|&&d| d > 0.0).count();
                let _ = writeln!(
                    o,
                    "| {} | {} | {ahead}/{} |",
                    m.name(),
                    pm(&diffs),
                    diffs.len()
                );
            }
            let _ = writeln!(o);
            let aug: Vec<_> = of(Method::Erda)
                .iter()
                .flat_map(|r| r.after.iter().skip(1))
                .collect();
            let retrieved: Vec<_> = aug.iter().flat_map(|x| &x.augmented).collect();
            let support: usize = aug.iter().map(|x| x.support).sum();
            let same = retrieved.iter().filter(|x| x.same_pair).count();
            let right = retrieved.iter().filter(|x| x.truth == x.label).count();
            let _ = writeln!(
                o,
                "ERDA's retrieval, tasks 2 onward over all seeds: {} sentences for {support} support examples ({:.1} each); \
                 {:.0} % by the same entity pair, the rest the nearest sentence; {:.0} % carry the pool's own label for the \
                 relation they were given (qa_wikidata sentences have other relation names, so they never count).\n",
                retrieved.len(),
                retrieved.len() as f64 / support.max(1) as f64,
                100.0 * same as f64 / retrieved.len().max(1) as f64,
                100.0 * right as f64 / retrieved.len().max(1) as f64,
            );
        }
    }
    o
}

fn fmt_q(q: &[f32; 5]) -> String {
    q.iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join("/")
}
