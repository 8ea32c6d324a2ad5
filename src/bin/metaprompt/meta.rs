//! `metaprompt meta-train`: learns a prompt initialisation over a suite of source tasks (MAML,
//! FoMAML, Reptile, or the multi-task baseline), with a progress bar, a checkpoint every few
//! steps that a rerun resumes from, and on completion a PEFT prompt folder with its provenance and
//! the meta-training curve.

use crate::tune_cmd::{Runner, write_atomic};
use indicatif::{ProgressBar, ProgressStyle};
use metaprompt::meta::episode::SourceTask;
use metaprompt::meta::{Algo, MetaConfig, MetaReport, MetaState, Provenance, meta_train};
use metaprompt::prompt::{Init, SoftPrompt, eval, initial_prompt, peft};
use metaprompt::tasks::store;
use std::ops::ControlFlow;
use std::path::PathBuf;

pub struct MetaArgs {
    pub config: MetaConfig,
    pub suite: String,
    /// Only these tasks of the suite (all when empty).
    pub tasks: Vec<String>,
    pub data: PathBuf,
    pub len: usize,
    /// Where meta-training starts: random | vocab.
    pub start: String,
    /// Source inputs are cut to this many tokens (episodes cost in proportion).
    pub max_input: usize,
    pub out: PathBuf,
    pub checkpoint_every: usize,
    pub fresh: bool,
    pub command_line: String,
}

pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// Tokenised train pools of the suite's tasks.
fn source_tasks(r: &Runner, args: &MetaArgs) -> Result<Vec<SourceTask>, String> {
    let manifest = store::read_manifest(&args.data).map_err(|e| e.to_string())?;
    let suite = manifest.suite(&args.suite).map_err(|e| e.to_string())?;
    for t in &args.tasks {
        if !suite.iter().any(|s| &s.name == t) {
            return Err(format!("--tasks: {t:?} is not in suite {:?}", args.suite));
        }
    }
    let picked: Vec<_> = suite
        .into_iter()
        .filter(|t| args.tasks.is_empty() || args.tasks.contains(&t.name))
        .collect();
    let bar = ProgressBar::new(picked.len() as u64).with_style(
        ProgressStyle::with_template("tokenising source tasks {bar:30} {pos}/{len} {msg}")
            .expect("template"),
    );
    let mut tasks = Vec::new();
    for t in picked {
        bar.set_message(t.name.clone());
        let pool = store::read_split(&args.data, t, "train").map_err(|e| e.to_string())?;
        let pool = eval::pairs(&r.model, t, &pool, args.max_input)
            .map_err(|e| format!("{}: {e}", t.name))?;
        tasks.push(SourceTask {
            name: t.name.clone(),
            pool,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(tasks)
}

fn curve_csv(curve: &[MetaReport]) -> String {
    let mut s = String::from("step,query_loss_before,query_loss_after,grad_norm,elapsed_s,tasks\n");
    for r in curve {
        s.push_str(&format!(
            "{},{:.5},{:.5},{:.5},{:.1},{}\n",
            r.step,
            r.before,
            r.after,
            r.grad_norm,
            r.elapsed_s,
            r.tasks.join(" ")
        ));
    }
    s
}

/// Mean of `f` over the first and the last `n` reports.
fn ends(curve: &[MetaReport], n: usize, f: impl Fn(&MetaReport) -> f32) -> (f32, f32) {
    let n = n.min(curve.len()).max(1);
    let mean = |c: &[MetaReport]| c.iter().map(&f).sum::<f32>() / c.len().max(1) as f32;
    (mean(&curve[..n]), mean(&curve[curve.len() - n..]))
}

pub fn meta_train_cmd(r: &Runner, args: &MetaArgs) -> Result<(), String> {
    args.config.check().map_err(|e| e.to_string())?;
    let tasks = source_tasks(r, args)?;
    let examples: usize = tasks.iter().map(|t| t.pool.len()).sum();
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let ckpt = args.out.join("checkpoint.json");
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let saved = match (args.fresh, std::fs::read_to_string(&ckpt)) {
        (false, Ok(text)) => {
            let s: MetaState = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}: unreadable checkpoint ({e}); rerun with --fresh",
                    ckpt.display()
                )
            })?;
            if s.config != args.config || s.tasks != names || s.prompt.len != args.len {
                return Err(format!(
                    "{} is from a run with other settings or tasks; rerun with --fresh to start \
                     over, or pick another --out",
                    ckpt.display()
                ));
            }
            Some(s)
        }
        _ => None,
    };
    let mut state = match saved {
        Some(s) => {
            eprintln!("{}: resuming at meta-step {}", ckpt.display(), s.step() + 1);
            s
        }
        None => {
            let init = match args.start.as_str() {
                "random" => Init::Random,
                "vocab" => Init::Vocab,
                s => return Err(format!("--start {s:?}: expected random or vocab")),
            };
            let p0 =
                pollster::block_on(initial_prompt(&r.model, &init, args.len, args.config.seed))
                    .map_err(|e| e.to_string())?;
            MetaState::new(args.config.clone(), &tasks, p0)
        }
    };
    let cfg = &args.config;
    eprintln!(
        "meta-train {} on {} source tasks of suite {} ({examples} examples, inputs cut to {} \
         tokens), {} meta-steps of {} episodes ({} support + {} query, {} inner steps at lr {}), \
         outer {:?} lr {}, prompt {} x {}, engine {}",
        cfg.algo.name(),
        tasks.len(),
        args.suite,
        args.max_input,
        cfg.meta_steps,
        cfg.task_batch,
        cfg.support,
        cfg.query,
        cfg.inner_steps,
        cfg.inner_lr,
        cfg.outer_optimizer,
        cfg.outer_lr,
        args.len,
        r.model.t5.config.d_model,
        r.name
    );
    let bar = ProgressBar::new(cfg.meta_steps as u64).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} meta-steps [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("template"),
    );
    bar.set_position(state.step() as u64);
    let mut io_error = None;
    let result = pollster::block_on(meta_train(r.engine(), &mut state, &tasks, &mut |rep, s| {
        bar.set_position(rep.step as u64);
        bar.set_message(format!(
            "query loss {:.3} -> {:.3} after adapting, |g| {:.3}",
            rep.before, rep.after, rep.grad_norm
        ));
        if rep.step % 10 == 0 {
            // Without a terminal (a log file) the bar is hidden, and so is its println.
            let line = format!(
                "step {:>4}: query loss {:.4} -> {:.4}, |g| {:.3}, {:.1} s/step",
                rep.step,
                rep.before,
                rep.after,
                rep.grad_norm,
                rep.elapsed_s / rep.step as f64
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
        if (rep.step % args.checkpoint_every.max(1) == 0 || s.finished())
            && let Err(e) = write_atomic(&ckpt, &serde_json::to_string(s).expect("state"))
        {
            io_error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }));
    bar.finish_and_clear();
    if let Some(e) = io_error {
        return Err(format!("writing the checkpoint: {e}"));
    }
    result.map_err(|e| {
        format!(
            "{e} (progress up to the last checkpoint is kept in {})",
            ckpt.display()
        )
    })?;
    write_outputs(r, args, &state, tasks.len())
}

fn write_outputs(
    r: &Runner,
    args: &MetaArgs,
    state: &MetaState,
    n_tasks: usize,
) -> Result<(), String> {
    let cfg = &state.config;
    let method = if cfg.algo == Algo::MultiTask {
        "MTL"
    } else {
        "MPT"
    };
    let p: &SoftPrompt = &state.prompt;
    let adapter = peft::AdapterConfig::for_prompt(p, &Init::Given(p.clone()), &r.model.t5.config);
    peft::save(&args.out, p, &adapter).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let prov = Provenance {
        method: method.into(),
        algorithm: cfg.algo.name().into(),
        suite: args.suite.clone(),
        source_tasks: n_tasks,
        meta_steps: state.step(),
        seed: cfg.seed,
        config: cfg.clone(),
        start: args.start.clone(),
        max_input: args.max_input,
        engine: r.name.clone(),
        minutes: state.elapsed_s() / 60.0,
        git_commit: git_commit(),
        date: now_utc(),
        command_line: args.command_line.clone(),
    };
    write_atomic(
        &args.out.join("provenance.json"),
        &(serde_json::to_string_pretty(&prov).expect("provenance") + "\n"),
    )?;
    write_atomic(&args.out.join("curve.csv"), &curve_csv(&state.curve))?;
    let (b0, b1) = ends(&state.curve, 10, |r| r.before);
    let (a0, a1) = ends(&state.curve, 10, |r| r.after);
    println!(
        "{method} ({}) initialisation: {} meta-steps in {:.1} min ({:.1} s/step). Query loss at \
         the initialisation {b0:.3} -> {b1:.3}, after adapting {a0:.3} -> {a1:.3} (first vs last \
         10 steps).\nWrote {}/adapter_model.safetensors (PEFT layout), provenance.json, curve.csv.",
        cfg.algo.name(),
        state.step(),
        state.elapsed_s() / 60.0,
        state.elapsed_s() / state.step().max(1) as f64,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_log_has_a_row_per_step() {
        let rep = |step| MetaReport {
            step,
            before: 2.0,
            after: 1.5,
            grad_norm: 0.5,
            elapsed_s: step as f64,
            tasks: vec!["a".into(), "b".into()],
        };
        let csv = curve_csv(&[rep(1), rep(2)]);
        assert_eq!(csv.lines().count(), 3);
        assert_eq!(
            csv.lines().nth(2),
            Some("2,2.00000,1.50000,0.50000,2.0,a b")
        );
        assert_eq!(ends(&[rep(1), rep(2)], 1, |r| r.step as f32), (1.0, 2.0));
    }
}
