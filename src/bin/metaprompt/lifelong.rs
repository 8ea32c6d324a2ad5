//! `metaprompt lifelong`: LFPT5 and its baselines over a task stream for several seeds (a random
//! order within each task type per seed) -> a markdown report and the runs as JSON. Finished
//! (method, seed) runs are kept beside the report and reused when the command is run again
//! with the same settings on the same commit.

use crate::tune_cmd::{Runner, write_atomic};
use indicatif::{ProgressBar, ProgressStyle};
use metaprompt::graph::Adapters;
use metaprompt::lifelong::LifelongRun;
use metaprompt::lifelong::dmea::Choice;
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
    let steps: usize = todo
        .iter()
        .map(|(m, _)| {
            (0..infos.len())
                .map(|t| m.task_steps(t, &args.config))
                .sum::<usize>()
        })
        .sum();
    let steps = steps as u64;
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
                                "  {} seed {seed}: after {}: {:.1}",
                                method.name(),
                                names[after],
                                100.0 * score
                            ),
                        );
                    }
                }
                Progress::Decided { task, choices } => {
                    let new = choices.iter().filter(|c| **c == Choice::New).count();
                    say(
                        &bar,
                        format!(
                            "  {} seed {seed}: {}: new modules at {new} of {} sites",
                            method.name(),
                            names[task],
                            choices.len()
                        ),
                    );
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
    let adapters = methods.iter().all(|m| m.trains_adapters());
    let title = if adapters {
        "DMEA against its baselines"
    } else {
        "LFPT5 against its baselines"
    };
    let _ = writeln!(md, "# {title}: {stream}\n");
    let _ = writeln!(md, "Command: `{}`\n", args.command_line);
    if adapters {
        let mc = &c.modules;
        let _ = writeln!(
            md,
            "Commit {}, engine {engine}. {} shots per task for training and as many for \
             validation; bottleneck adapters of width {} at every self-attention and \
             feed-forward of the frozen T5 (no prompt), Adam lr {} (coefficients {}), batch {}, \
             {} adaptation steps per task, and for DMEA and ACM {} search steps before them \
             from the second task on (coefficients frozen for the first half, entropy weight {}); \
             validation loss every {} steps picks the modules kept; inputs cut to {} tokens, at \
             most {} test examples per task. Pseudo examples: {:.0}% of a task's examples per \
             replayed task, top-k {}, at most {} tokens. Seeds {:?}: each draws the shots and the \
             order of the tasks. Scores are ROUGE-L x 100 (the task's metric).\n",
            s.key["commit"].as_str().unwrap_or("?"),
            args.shots,
            mc.bottleneck,
            mc.lr,
            mc.coef_lr,
            c.batch,
            c.steps,
            mc.search_steps,
            mc.entropy,
            c.valid_every,
            c.max_input,
            args.max_test,
            100.0 * mc.replay_share,
            mc.top_k,
            c.pseudo.max_tokens,
            args.seeds
        );
        let _ = writeln!(
            md,
            "DMEA has no public code: ours (see src/lifelong/dmea.rs) are the task similarity \
             (cosine of mean encoder states of the tasks' inputs), the coefficient start from it \
             (old module +margin(s), new -margin(max s), margin {:.2}-{:.2} with s), replay of \
             the {} most similar earlier tasks sharing a module, the replay loss weighted by \
             L_current / L_replay, steps instead of epochs, Adam without weight decay. ACM: \
             start +{m}/-{m}, replay of every task sharing a module, unscaled. reuse: one \
             module set with replay of every earlier task; sequential: one set, no replay; \
             multitask: one set on every task's data so far; expand: a new set per task.\n",
            mc.margins.0,
            mc.margins.1,
            mc.replay_tasks,
            m = mc.acm_margin
        );
    } else {
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
    }
    let _ = writeln!(md, "## After the last task\n");
    let _ = writeln!(
        md,
        "| method | average score | mean forgetting |{} per seed (average) |\n|---|---|---|{}---|",
        if adapters {
            " parameters added (mean over seeds) |"
        } else {
            ""
        },
        if adapters { "---|" } else { "" }
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
        let params = if adapters {
            let total: Vec<f64> = runs
                .iter()
                .map(|r| r.parameters.iter().sum::<usize>() as f64)
                .collect();
            format!(" {:.0} |", mean_std(&total).0)
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} |{params} {} |",
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
    if adapters {
        modules_section(&mut md, &methods, &runs_of);
    }
    let lfpt5: Vec<&LifelongRun> = methods
        .iter()
        .flat_map(|&m| runs_of(m))
        .filter(|r| !r.pseudo.is_empty())
        .collect();
    if !lfpt5.is_empty() {
        let _ = writeln!(
            md,
            "## Pseudo examples\n\n| method | seed | task | generated | kept | why the rest were not | seconds |\n|---|---|---|---|---|---|---|"
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
                    "| {} | {} | {} | {} | {kept} | {} | {:.0} |",
                    r.method.name(),
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

/// The adapter methods' growth and sharing: parameters added per task, and which tasks' modules
/// each task reused (a map of sites x tasks for the first seed).
fn modules_section<'a>(
    md: &mut String,
    methods: &[Method],
    runs_of: &dyn Fn(Method) -> Vec<&'a LifelongRun>,
) {
    let _ = writeln!(
        md,
        "\n## Modules: parameters added and reuse\n\nPer run and task: parameters its new \
         modules added, and at how many of the sites it added a module (the rest reuse the \
         module of the task named).\n\n| method | seed | task | parameters added | new sites | reused from |\n|---|---|---|---|---|---|"
    );
    for &m in methods {
        for r in runs_of(m) {
            for (j, choices) in r.modules.iter().enumerate() {
                let new = choices.iter().filter(|c| **c == Choice::New).count();
                let mut from: BTreeMap<&str, usize> = BTreeMap::new();
                for c in choices {
                    if let Choice::Reused { from: t } = c {
                        *from.entry(r.order[*t].as_str()).or_default() += 1;
                    }
                }
                let from: Vec<String> = from.iter().map(|(t, n)| format!("{t}: {n}")).collect();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {new}/{} | {} |",
                    m.name(),
                    r.seed,
                    r.order[j],
                    r.parameters.get(j).copied().unwrap_or(0),
                    choices.len(),
                    from.join(", ")
                );
            }
        }
    }
    for m in [Method::Dmea, Method::Acm] {
        let Some(r) = runs_of(m)
            .into_iter()
            .next()
            .filter(|r| !r.modules.is_empty())
        else {
            continue;
        };
        let _ = writeln!(
            md,
            "\n### {} seed {}: the module map\n\nSite (encoder/decoder layer, sub-layer) x \
             task: `new`, or the index of the task whose module it reuses. Cosine of each task \
             with the earlier ones: {}.\n",
            m.name(),
            r.seed,
            r.similarity
                .iter()
                .enumerate()
                .skip(1)
                .map(|(j, s)| {
                    let s: Vec<String> = s.iter().map(|x| format!("{x:.3}")).collect();
                    format!("{}: [{}]", j, s.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
        let tasks: Vec<String> = (0..r.modules.len())
            .map(|j| format!("{j} {}", r.order[j]))
            .collect();
        let _ = writeln!(
            md,
            "| site | {} |\n|---|{}",
            tasks.join(" | "),
            "---|".repeat(tasks.len())
        );
        let sites = r.modules[0].len();
        for s in 0..sites {
            let cells: Vec<String> = r
                .modules
                .iter()
                .map(|c| match c[s] {
                    Choice::New => "new".to_string(),
                    Choice::Reused { from } => from.to_string(),
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} |",
                Adapters::site_label(s, sites),
                cells.join(" | ")
            );
        }
    }
}
