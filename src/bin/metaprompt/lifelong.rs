//! `metaprompt lifelong`: LFPT5 and its baselines over a task stream for several seeds (a random
//! order within each task type per seed) -> a markdown report and the runs as JSON. Finished
//! (method, seed) runs are kept beside the report and reused when the command is run again
//! with the same settings on the same commit.

use crate::tune_cmd::{Runner, write_atomic};
use indicatif::{ProgressBar, ProgressStyle};
use metaprompt::lifelong::LifelongRun;
use metaprompt::lifelong::lfpt5::Verdict;
use metaprompt::lifelong::{LifelongConfig, Method, Progress, StreamTask, run, stream};
use metaprompt::prompt::eval;
use metaprompt::tasks::metrics::mean_std;
use metaprompt::tasks::store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

pub struct LifelongArgs {
    pub methods: Vec<Method>,
    pub seeds: Vec<u64>,
    pub suite: String,
    pub tasks: Vec<String>,
    pub shots: usize,
    pub max_test: usize,
    pub config: LifelongConfig,
    pub data: PathBuf,
    pub out: PathBuf,
    pub fresh: bool,
    pub command_line: String,
}

/// What a finished run was computed under: a run is reused only when all of it matches.
#[derive(Serialize, Deserialize, PartialEq, Clone)]
struct Key {
    commit: String,
    engine: String,
    tasks: Vec<String>,
    shots: usize,
    max_test: usize,
    config: LifelongConfig,
}

#[derive(Serialize, Deserialize)]
struct Store {
    key: serde_json::Value,
    zero_shot: BTreeMap<String, f64>,
    runs: Vec<LifelongRun>,
}

pub fn lifelong(r: &Runner, args: &LifelongArgs) -> Result<(), String> {
    let manifest = store::read_manifest(&args.data).map_err(|e| e.to_string())?;
    let infos = if args.tasks.is_empty() {
        manifest.suite(&args.suite).map_err(|e| e.to_string())?
    } else {
        args.tasks
            .iter()
            .map(|t| manifest.task(t))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?
    };
    if infos.is_empty() {
        return Err("the task sequence is empty".into());
    }
    let key = Key {
        commit: crate::meta_cmd::git_commit(),
        engine: r.name.clone(),
        tasks: infos.iter().map(|t| t.name.clone()).collect(),
        shots: args.shots,
        max_test: args.max_test,
        config: LifelongConfig {
            seed: 0,
            ..args.config.clone()
        },
    };
    let key = serde_json::to_value(&key).expect("key as JSON");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let store_path = args.out.with_extension("runs.json");
    let mut saved = std::fs::read_to_string(&store_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Store>(&t).ok())
        .filter(|s| s.key == key && !args.fresh)
        .unwrap_or(Store {
            key,
            zero_shot: BTreeMap::new(),
            runs: Vec::new(),
        });
    if !saved.runs.is_empty() {
        println!(
            "reusing {} finished runs from {}",
            saved.runs.len(),
            store_path.display()
        );
    }
    let save = |s: &Store| {
        write_atomic(
            &store_path,
            &serde_json::to_string_pretty(s).expect("runs as JSON"),
        )
    };
    let todo: Vec<(Method, u64)> = args
        .seeds
        .iter()
        .flat_map(|&s| args.methods.iter().map(move |&m| (m, s)))
        .filter(|&(m, s)| !saved.runs.iter().any(|r| r.method == m && r.seed == s))
        .collect();
    let steps = (todo.len() * infos.len() * args.config.steps) as u64;
    let bar = ProgressBar::new(steps).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("template"),
    );
    // Each task's pool and test set, read once for every run and the zero-shot column.
    let mut splits = Vec::new();
    for info in &infos {
        let read = |split| store::read_split(&args.data, info, split).map_err(|e| e.to_string());
        let mut test = read("test")?;
        test.truncate(args.max_test);
        splits.push((read("train")?, test));
    }
    for &(method, seed) in &todo {
        let mut tasks = Vec::new();
        for (info, (pool, test)) in infos.iter().zip(&splits) {
            tasks.push(
                StreamTask::few_shot(
                    (*info).clone(),
                    pool,
                    test.clone(),
                    args.shots,
                    args.max_test,
                    seed,
                )
                .map_err(|e| e.to_string())?,
            );
        }
        let tasks = stream::order(tasks, seed);
        let names: Vec<&str> = tasks.iter().map(|t| t.info.name.as_str()).collect();
        let cfg = LifelongConfig {
            seed,
            ..args.config.clone()
        };
        let mut on = |p: Progress| {
            match p {
                Progress::Step {
                    task, step, loss, ..
                } => {
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} seed {seed} task {}/{} {} step {step} loss {loss:.3}",
                        method.name(),
                        task + 1,
                        names.len(),
                        names[task]
                    ));
                }
                Progress::Generated { before, set } => {
                    let kept = set
                        .samples
                        .iter()
                        .filter(|s| s.verdict == Verdict::Kept)
                        .count();
                    say(
                        &bar,
                        format!(
                            "  before {}: {kept}/{} pseudo examples of {} kept ({:.0} s)",
                            names[before],
                            set.samples.len(),
                            set.task,
                            set.seconds
                        ),
                    );
                }
                Progress::Scored { after, task, score } => {
                    if task == after {
                        say(
                            &bar,
                            format!(
                                "  {} seed {seed}: after {}: {}",
                                method.name(),
                                names[after],
                                score
                            ),
                        );
                    }
                }
                Progress::Validated { .. } => {}
            }
            ControlFlow::Continue(())
        };
        let out = pollster::block_on(run(r.engine(), &r.model, &tasks, method, &cfg, &mut on))
            .map_err(|e| format!("{} seed {seed}: {e}", method.name()))?;
        saved.runs.push(out);
        save(&saved)?;
    }
    bar.finish_and_clear();
    // Zero-shot flan-t5-small on the same test sets (the authors report it: it saw many public
    // tasks).
    for (info, (_, test)) in infos.iter().zip(&splits) {
        if saved.zero_shot.contains_key(&info.name) {
            continue;
        }
        let s = pollster::block_on(eval::evaluate(
            &r.model,
            r.engine(),
            None,
            info,
            test,
            args.config.eval_batch,
            args.config.max_input,
        ))
        .map_err(|e| e.to_string())?;
        saved.zero_shot.insert(info.name.clone(), s.value);
        save(&saved)?;
    }
    let report = report(args, &r.name, &saved);
    write_atomic(&args.out, &report)?;
    write_atomic(
        &args.out.with_extension("json"),
        &serde_json::to_string_pretty(&saved).expect("runs as JSON"),
    )?;
    println!("{report}");
    println!("wrote {}", args.out.display());
    Ok(())
}

/// A line above the bar, or on stdout when the bar is hidden (not a terminal: a log).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn pm(xs: &[f64]) -> String {
    let (m, s) = mean_std(xs);
    format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
}

fn report(args: &LifelongArgs, engine: &str, s: &Store) -> String {
    let mut md = String::new();
    let c = &args.config;
    let methods: Vec<Method> = args.methods.clone();
    let runs_of = |m: Method| -> Vec<&LifelongRun> {
        s.runs
            .iter()
            .filter(|r| r.method == m && args.seeds.contains(&r.seed))
            .collect()
    };
    let stream = if args.tasks.is_empty() {
        format!("the `{}` suite", args.suite)
    } else {
        args.tasks.join(", ")
    };
    let _ = writeln!(md, "# LFPT5 against its baselines: {stream}\n");
    let _ = writeln!(md, "Command: `{}`\n", args.command_line);
    let _ = writeln!(
        md,
        "Commit {}, engine {engine}. {} shots per class (per task without labels) for training and \
         as many for validation; {} steps per task, batch {}, {:?} lr {}, prompt {} vectors, \
         inputs cut to {} tokens, at most {} test examples per task; validation loss every {} \
         steps picks the prompt kept. Seeds {:?}: each draws the shots and the order of the tasks \
         within each type (types in the authors' order: classification, NER, summarisation). \
         Scores are the task's metric x 100 (accuracy, span F1, ROUGE-L).\n",
        s.key["commit"].as_str().unwrap_or("?"),
        args.shots,
        c.steps,
        c.batch,
        c.optimizer,
        c.lr,
        c.len,
        c.max_input,
        args.max_test,
        c.valid_every,
        args.seeds
    );
    let _ = writeln!(
        md,
        "Ours, not the authors' code: prefix prompt of {} vectors (theirs 300, a suffix), the \
         generation token is the words \"generate <task>:\" and the separator \" | \" (theirs \
         __ans__, an added token), distillation is a mean per pseudo \
         target token with the paper's k, model selection on validation loss (theirs: score), \
         summaries are generated as \"document | summary\" within {} tokens, NER pseudo \
         labels are kept when every entity is of a known type and in the sentence.\n",
        c.len, c.pseudo.max_tokens
    );
    let _ = writeln!(md, "## After the last task\n");
    let _ = writeln!(
        md,
        "| method | average score | mean forgetting | per seed (average) |\n|---|---|---|---|"
    );
    for &m in &methods {
        let runs = runs_of(m);
        let avg: Vec<f64> = runs.iter().map(|r| r.final_average()).collect();
        let forget: Vec<f64> = runs
            .iter()
            .map(|r| {
                let f = r.forgetting();
                f.iter().sum::<f64>() / f.len().max(1) as f64
            })
            .collect();
        let per: Vec<String> = runs
            .iter()
            .map(|r| format!("{}: {:.1}", r.seed, 100.0 * r.final_average()))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            m.name(),
            pm(&avg),
            pm(&forget),
            per.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\n## Each task after the last task (mean ± std over seeds)\n"
    );
    let mut head = "| task | zero-shot |".to_string();
    let mut rule = "|---|---|".to_string();
    for m in &methods {
        let _ = write!(head, " {} |", m.name());
        rule.push_str("---|");
    }
    let _ = writeln!(md, "{head}\n{rule}");
    let tasks: Vec<String> = s.key["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for t in &tasks {
        let zs = s
            .zero_shot
            .get(t)
            .map_or("-".into(), |v| format!("{:.1}", 100.0 * v));
        let mut line = format!("| {t} | {zs} |");
        for &m in &methods {
            let finals: Vec<f64> = runs_of(m)
                .iter()
                .filter_map(|r| {
                    let i = r.order.iter().position(|n| n == t)?;
                    Some(r.scores.last()?[i])
                })
                .collect();
            let _ = write!(line, " {} |", pm(&finals));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(
        md,
        "\n## Score matrices\n\nRow j: after learning task j; column i: task i.\n"
    );
    for &seed in &args.seeds {
        for &m in &methods {
            let Some(r) = runs_of(m).into_iter().find(|r| r.seed == seed) else {
                continue;
            };
            let _ = writeln!(md, "### {} seed {seed}\n", m.name());
            let _ = writeln!(
                md,
                "| after \\ task | {} |\n|---|{}",
                r.order.join(" | "),
                "---|".repeat(r.order.len())
            );
            for (j, row) in r.scores.iter().enumerate() {
                let mut cells: Vec<String> =
                    row.iter().map(|v| format!("{:.1}", 100.0 * v)).collect();
                cells.resize(r.order.len(), String::new());
                let _ = writeln!(md, "| {} | {} |", r.order[j], cells.join(" | "));
            }
            let secs: Vec<String> = r
                .train_seconds
                .iter()
                .zip(&r.eval_seconds)
                .map(|(t, e)| format!("{t:.0}+{e:.0}"))
                .collect();
            let _ = writeln!(
                md,
                "\nSeconds per task (training + scoring): {}; validation kept step {:?}.\n",
                secs.join(", "),
                r.best_step
            );
        }
    }
    let lfpt5 = runs_of(Method::Lfpt5);
    if !lfpt5.is_empty() {
        let _ = writeln!(
            md,
            "## LFPT5's pseudo examples\n\n| seed | task | generated | kept | why the rest were not | seconds |\n|---|---|---|---|---|---|"
        );
        for r in &lfpt5 {
            for set in &r.pseudo {
                let mut why: BTreeMap<String, usize> = BTreeMap::new();
                for smp in set.samples.iter().filter(|x| x.verdict != Verdict::Kept) {
                    let reason = match &smp.verdict {
                        Verdict::BadEntity(_) => "entity unknown or not in the sentence".into(),
                        v => v.describe(),
                    };
                    *why.entry(reason).or_default() += 1;
                }
                // Table cells: a `|` in a reason would split the cell.
                let why: Vec<String> = why
                    .iter()
                    .map(|(k, v)| format!("{}: {v}", k.replace('|', "\\|")))
                    .collect();
                let kept = set
                    .samples
                    .iter()
                    .filter(|x| x.verdict == Verdict::Kept)
                    .count();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {kept} | {} | {:.0} |",
                    r.seed,
                    set.task,
                    set.samples.len(),
                    why.join("; "),
                    set.seconds
                );
            }
        }
        let examples: Vec<_> = lfpt5
            .iter()
            .flat_map(|r| &r.pseudo)
            .flat_map(|s| &s.samples)
            .filter(|x| x.verdict == Verdict::Kept)
            .take(6)
            .collect();
        if !examples.is_empty() {
            let _ = writeln!(
                md,
                "\nSome kept examples:\n\n| task | input | label |\n|---|---|---|"
            );
            for x in examples {
                let cut: String = x.input.chars().take(120).collect();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    x.task,
                    cut.replace('|', "\\|"),
                    x.target
                );
            }
        }
    }
    md
}
