//! `metaprompt tune` (few-shot PT on one task over seeds) and `metaprompt bench tune`.

use burn::tensor::Device;
use metaprompt::cpu::CpuT5;
use metaprompt::gpu::Gpu;
use metaprompt::graph::host::argmax;
use metaprompt::graph::{Adapters, Ops, T5Graph};
use metaprompt::kernels::GpuT5;
use metaprompt::kernels::profile;
use metaprompt::meta::Provenance;
use metaprompt::model::LoadedModel;
use metaprompt::model::checkpoint::Checkpoint;
use metaprompt::prompt::engine::Engine;
use metaprompt::prompt::eval::{self, Scores};
use metaprompt::prompt::optim::OptimizerKind;
use metaprompt::prompt::tune::{self, Pair, TuneConfig};
use metaprompt::prompt::{Init, SoftPrompt, initial_prompt, peft};
use metaprompt::tasks::metrics::mean_std;
use metaprompt::tasks::sampling::k_shot;
use metaprompt::tasks::{Example, Manifest, TaskInfo, store};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Inputs are cut to this many tokens (prompt + input stay within T5's trained lengths).
const MAX_INPUT: usize = 256;

pub struct TuneArgs {
    pub task: String,
    pub data: PathBuf,
    pub shots: usize,
    pub init: String,
    pub seeds: Vec<u64>,
    pub len: usize,
    pub config: TuneConfig,
    pub max_test: usize,
    pub out: Option<PathBuf>,
}

fn parse_init(s: &str, labels: &[String]) -> Result<Init, String> {
    Ok(match s {
        "random" => Init::Random,
        "vocab" => Init::Vocab,
        "labels" => Init::Labels(labels.to_vec()),
        path => Init::Given(peft::load(Path::new(path)).map_err(|e| {
            format!("--init {path:?}: not random|vocab|labels and not a prompt file: {e}")
        })?),
    })
}

fn row(name: &str, s: &Scores) -> String {
    match s.macro_f1 {
        Some(f) => format!(
            "{name:<10} {} {:>6.1}  macro-F1 {:>5.1}",
            s.metric,
            s.value * 100.0,
            f * 100.0
        ),
        None => format!("{name:<10} {} {:>6.1}", s.metric, s.value * 100.0),
    }
}

/// One task's data for few-shot runs: the k-shot pool and the (capped) test set.
pub struct TaskData<'a> {
    pub task: &'a TaskInfo,
    pub pool: Vec<Example>,
    pub test: Vec<Example>,
}

pub fn task_data<'a>(
    manifest: &'a Manifest,
    data: &Path,
    name: &str,
    max_test: usize,
) -> Result<TaskData<'a>, String> {
    let task = manifest.task(name).map_err(|e| e.to_string())?;
    let pool = store::read_split(data, task, "train").map_err(|e| e.to_string())?;
    let mut test = store::read_split(data, task, "test").map_err(|e| e.to_string())?;
    test.truncate(max_test);
    Ok(TaskData { task, pool, test })
}

/// Label words of a task, for the label initialisation.
fn label_words(task: &TaskInfo) -> Vec<String> {
    task.labels
        .iter()
        .map(|l| task.verbalize(l).to_string())
        .collect()
}

pub fn zero_shot(r: &Runner, d: &TaskData) -> Result<Scores, String> {
    pollster::block_on(eval::evaluate(
        &r.model,
        r.engine(),
        None,
        d.task,
        &d.test,
        16,
        MAX_INPUT,
    ))
    .map_err(|e| e.to_string())
}

/// PT from `init` on a k-shot sample for `seed`, then the test score; the tuned prompt too.
pub fn run_seed(
    r: &Runner,
    d: &TaskData,
    init: &Init,
    shots: usize,
    len: usize,
    config: &TuneConfig,
    seed: u64,
) -> Result<(Scores, SoftPrompt, String), String> {
    let model = &r.model;
    let labels = d.task.kind.has_labels().then_some(d.task.labels.as_slice());
    let sample = k_shot(&d.pool, shots, labels, seed);
    let pairs: Vec<Pair> =
        eval::pairs(model, d.task, &sample, MAX_INPUT).map_err(|e| e.to_string())?;
    let p0 =
        pollster::block_on(initial_prompt(model, init, len, seed)).map_err(|e| e.to_string())?;
    let cfg = TuneConfig {
        seed,
        ..config.clone()
    };
    let t = Instant::now();
    let tuned = pollster::block_on(tune::tune(r.engine(), p0, &pairs, &cfg, &mut |r| {
        if r.step % 25 == 0 || r.step == 1 {
            eprintln!(
                "  {} {} seed {seed} step {:>4} loss {:.4} |g| {:.3} ({:.0} ms/step)",
                d.task.name,
                init.name(),
                r.step,
                r.loss,
                r.grad_norm,
                r.elapsed_ms / r.step as f64
            );
        }
        ControlFlow::Continue(())
    }))
    .map_err(|e| format!("{} seed {seed}: {e}", d.task.name))?;
    let secs = t.elapsed().as_secs_f64();
    let s = pollster::block_on(eval::evaluate(
        model,
        r.engine(),
        Some(&tuned.prompt),
        d.task,
        &d.test,
        16,
        MAX_INPUT,
    ))
    .map_err(|e| e.to_string())?;
    let info = format!(
        "{} examples, {} steps in {secs:.0} s, final loss {:.3}",
        sample.len(),
        tuned.history.len(),
        tuned.history.last().map_or(f32::NAN, |r| r.loss)
    );
    Ok((s, tuned.prompt, info))
}

pub fn tune_task(r: &Runner, args: &TuneArgs) -> Result<(), String> {
    let model = &r.model;
    let manifest = store::read_manifest(&args.data).map_err(|e| e.to_string())?;
    let d = task_data(&manifest, &args.data, &args.task, args.max_test)?;
    let init = parse_init(&args.init, &label_words(d.task))?;
    println!(
        "task {} ({}), {}-shot{}, {} test examples, prompt {} x {}, init {}, {:?} lr {} for {} steps",
        d.task.name,
        d.task.kind.name(),
        args.shots,
        if d.task.kind.has_labels() {
            " per class"
        } else {
            ""
        },
        d.test.len(),
        args.len,
        model.t5.config.d_model,
        init.name(),
        args.config.optimizer,
        args.config.lr,
        args.config.steps
    );
    let zero = zero_shot(r, &d)?;
    println!("{}", row("zero-shot", &zero));
    let mut values = Vec::new();
    for &seed in &args.seeds {
        let (s, prompt, info) = run_seed(r, &d, &init, args.shots, args.len, &args.config, seed)?;
        println!("{}   ({info})", row(&format!("seed {seed}"), &s));
        values.push(s.value);
        if let Some(out) = &args.out {
            let dir = out.join(format!("seed-{seed}"));
            let cfg = peft::AdapterConfig::for_prompt(&prompt, &init, &model.t5.config);
            peft::save(&dir, &prompt, &cfg).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let (m, sd) = mean_std(&values);
    println!(
        "{:<10} {} {:>6.1} ± {:.1} over {} seeds (zero-shot {:.1})",
        "mean",
        zero.metric,
        m * 100.0,
        sd * 100.0,
        values.len(),
        zero.value * 100.0
    );
    if let Some(out) = &args.out {
        println!("tuned prompts (PEFT layout) in {}/seed-*/", out.display());
    }
    Ok(())
}

pub struct EvalArgs {
    pub suite: String,
    pub data: PathBuf,
    pub inits: Vec<String>,
    pub shots: usize,
    pub seeds: Vec<u64>,
    pub len: usize,
    pub config: TuneConfig,
    pub max_test: usize,
    pub out: PathBuf,
    pub command_line: String,
    pub device: String,
}

/// How a table names an initialisation: "PT random" for the built-in ones, "MPT fomaml" / "MTL"
/// for a meta-learned file (from its provenance), else "PT from FILE".
fn column(init: &str) -> String {
    match init {
        "random" | "vocab" | "labels" => format!("PT {init}"),
        path => Provenance::beside(Path::new(path))
            .map_or_else(|| format!("PT from {path}"), |p| p.label()),
    }
}

/// A whole suite: zero-shot and PT from each initialisation over the seeds, as a markdown table
/// (mean ± std of the headline metric, x100) with the command line that produced it, plus the
/// per-seed values as JSON next to it.
pub fn eval_suite(r: &Runner, args: &EvalArgs) -> Result<(), String> {
    let manifest = store::read_manifest(&args.data).map_err(|e| e.to_string())?;
    let names = manifest.suites.get(&args.suite).ok_or_else(|| {
        format!(
            "no suite {:?} (have: {})",
            args.suite,
            manifest
                .suites
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut progress = RunCache::open(args);
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    // Per column (zero-shot, then each init) and seed: the sum over tasks, for the average row.
    let mut sums = vec![vec![0.0f64; args.seeds.len()]; args.inits.len() + 1];
    // Per init: tasks it does not apply to (label words on a task without labels).
    let mut not_applicable = vec![0usize; args.inits.len()];
    for name in names {
        let d = task_data(&manifest, &args.data, name, args.max_test)?;
        let (metric, zero) = match progress.get(&format!("{name}/zero-shot")) {
            Some(done) => done,
            None => {
                let t = Instant::now();
                let z = zero_shot(r, &d)?;
                let secs = t.elapsed().as_secs_f64();
                progress.put(&format!("{name}/zero-shot"), &z.metric, z.value, secs)?
            }
        };
        eprintln!("{name}: zero-shot {metric} {:.1}", zero * 100.0);
        let mut cells = vec![format!("{:.1}", zero * 100.0)];
        let mut per_init = serde_json::Map::new();
        per_init.insert("zero-shot".into(), serde_json::json!(zero));
        sums[0].iter_mut().for_each(|s| *s += zero);
        let mut wins = 0;
        let words = label_words(d.task);
        for (col, init_name) in args.inits.iter().enumerate() {
            if init_name == "labels" && words.is_empty() {
                eprintln!("{name}: no label words, so no `labels` initialisation (n/a)");
                not_applicable[col] += 1;
                cells.push("n/a".into());
                per_init.insert(init_name.clone(), serde_json::Value::Null);
                continue;
            }
            let init = parse_init(init_name, &words)?;
            let id = init_key(init_name, &init);
            let mut values = Vec::new();
            for &seed in &args.seeds {
                let key = format!("{name}/{id}/{seed}");
                let (_, value) = match progress.get(&key) {
                    Some(done) => {
                        eprintln!("{name} {init_name} seed {seed}: done in an earlier run");
                        done
                    }
                    None => {
                        let t = Instant::now();
                        let (s, _, info) =
                            run_seed(r, &d, &init, args.shots, args.len, &args.config, seed)?;
                        let secs = t.elapsed().as_secs_f64();
                        eprintln!(
                            "{name} {init_name} seed {seed}: {} {:.1} ({info})",
                            s.metric,
                            s.value * 100.0
                        );
                        progress.put(&key, &s.metric, s.value, secs)?
                    }
                };
                values.push(value);
            }
            sums[col + 1]
                .iter_mut()
                .zip(&values)
                .for_each(|(s, v)| *s += v);
            let (m, sd) = mean_std(&values);
            wins += usize::from(m > zero);
            cells.push(format!("{:.1} ± {:.1}", m * 100.0, sd * 100.0));
            per_init.insert(init_name.clone(), serde_json::json!(values));
        }
        raw.insert(name.clone(), serde_json::Value::Object(per_init));
        rows.push((name.clone(), metric, cells, wins));
    }
    let meta = args.inits.iter().any(|i| column(i).starts_with('M'));
    let mut md = format!(
        "# {}: suite `{}`\n\nGenerated by:\n\n    {}\n\n\
         {}-shot ({} per class for label tasks), seeds {:?}, prompt length {}, {:?} lr {} for {} steps, batch {}, \
         at most {} test examples per task, device {}; {:.0} min in all. Cells: mean ± sample std over seeds of the \
         headline metric, x100.\n\n| task | metric | zero-shot |",
        if meta {
            "Meta Prompt Tuning against Prompt Tuning"
        } else {
            "Prompt tuning baselines"
        },
        args.suite,
        args.command_line,
        args.shots,
        args.shots,
        args.seeds,
        args.len,
        args.config.optimizer,
        args.config.lr,
        args.config.steps,
        args.config.batch_size,
        args.max_test,
        args.device,
        progress.seconds() / 60.0
    );
    for i in &args.inits {
        md.push_str(&format!(" {} |", column(i)));
    }
    md.push_str("\n|---|---|---|");
    md.push_str(&"---|".repeat(args.inits.len()));
    md.push('\n');
    for (name, metric, cells, _) in &rows {
        md.push_str(&format!("| {name} | {metric} | {} |\n", cells.join(" | ")));
    }
    // The average over tasks per seed, then mean ± std over seeds.
    let n = rows.len().max(1) as f64;
    let avg: Vec<String> = sums
        .iter()
        .enumerate()
        .map(|(col, per_seed)| {
            let per_seed: Vec<f64> = per_seed.iter().map(|s| s / n).collect();
            let (m, sd) = mean_std(&per_seed);
            if col == 0 {
                format!("**{:.1}**", m * 100.0)
            } else if not_applicable[col - 1] > 0 {
                "n/a".into()
            } else {
                format!("**{:.1} ± {:.1}**", m * 100.0, sd * 100.0)
            }
        })
        .collect();
    md.push_str(&format!("| **average** | | {} |\n", avg.join(" | ")));
    let beat: usize = rows.iter().map(|r| r.3).sum();
    let pairs = rows.len() * args.inits.len() - not_applicable.iter().sum::<usize>();
    md.push_str(&format!(
        "\nPT beats zero-shot in {beat} of {pairs} (task, initialisation) pairs.\n"
    ));
    if not_applicable.iter().any(|&n| n > 0) {
        md.push_str(
            "\nn/a: the `labels` initialisation embeds the task's label words; generation and \
             question-answering tasks have none.\n",
        );
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&args.out, &md).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let json = args.out.with_extension("json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&raw).expect("json") + "\n",
    )
    .map_err(|e| format!("{}: {e}", json.display()))?;
    print!("{md}");
    println!("wrote {} and {}", args.out.display(), json.display());
    Ok(())
}

/// Every finished evaluation run, saved as it completes in `results/eval-cache.json`
/// (gitignored), keyed by the settings and (task, initialisation, seed). A stopped `eval` resumes
/// where it was, a table can be regenerated, and a table with more columns (MPT next to PT) reuses
/// the runs it shares with an earlier one. Only runs with the very same settings are reused.
struct RunCache {
    path: PathBuf,
    settings: String,
    /// settings -> key -> {metric, value, seconds}
    all: serde_json::Map<String, serde_json::Value>,
    /// Compute seconds of the runs this table used.
    used: f64,
}

impl RunCache {
    fn open(args: &EvalArgs) -> Self {
        let settings = format!(
            "suite={} shots={} len={} config={:?} max_test={} device={}",
            args.suite, args.shots, args.len, args.config, args.max_test, args.device
        );
        let path = args
            .out
            .parent()
            .unwrap_or(Path::new("."))
            .join("eval-cache.json");
        let all = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                eprintln!("{}: unreadable ({e}); starting a new cache", path.display());
                Default::default()
            }),
            Err(_) => Default::default(),
        };
        let mut c = Self {
            path,
            settings,
            all,
            used: 0.0,
        };
        c.import_progress_file(&args.out.with_extension("progress.json"));
        let n = c.runs().map_or(0, |r| r.len());
        if n > 0 {
            eprintln!(
                "{}: {n} runs with these settings already done",
                c.path.display()
            );
        }
        c
    }

    /// Earlier versions kept `<out>.progress.json` per table: {settings, seconds, runs}. Its runs
    /// come in with the mean time per run, since only the total was recorded.
    fn import_progress_file(&mut self, old: &Path) {
        let Some(saved) = std::fs::read_to_string(old)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            return;
        };
        let (Some(settings), Some(runs)) = (saved["settings"].as_str(), saved["runs"].as_object())
        else {
            return;
        };
        let each = saved["seconds"].as_f64().unwrap_or(0.0) / runs.len().max(1) as f64;
        let entry = self
            .all
            .entry(settings.to_string())
            .or_insert_with(|| serde_json::json!({}));
        for (k, v) in runs {
            if entry.get(k).is_none() {
                entry[k] = serde_json::json!({"metric": v["metric"], "value": v["value"], "seconds": each});
            }
        }
        if self.save().is_ok() {
            eprintln!("imported {} runs from {}", runs.len(), old.display());
            let _ = std::fs::remove_file(old);
        }
    }

    fn runs(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.all.get(&self.settings)?.as_object()
    }

    fn get(&mut self, key: &str) -> Option<(String, f64)> {
        let run = self.runs()?.get(key)?;
        let found = (run["metric"].as_str()?.to_string(), run["value"].as_f64()?);
        self.used += run["seconds"].as_f64().unwrap_or(0.0);
        Some(found)
    }

    fn seconds(&self) -> f64 {
        self.used
    }

    fn save(&self) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        write_atomic(&self.path, &serde_json::to_string(&self.all).expect("json"))
    }

    fn put(
        &mut self,
        key: &str,
        metric: &str,
        value: f64,
        seconds: f64,
    ) -> Result<(String, f64), String> {
        self.used += seconds;
        let entry = self
            .all
            .entry(self.settings.clone())
            .or_insert_with(|| serde_json::json!({}));
        entry[key] = serde_json::json!({"metric": metric, "value": value, "seconds": seconds});
        self.save()?;
        Ok((metric.to_string(), value))
    }
}

/// Writes `text` to `path` through a temporary file, so a stop mid-write never leaves a torn file.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The cache key of an initialisation: its name, or for a file the hash of the prompt's values
/// (a retrained initialisation at the same path is a different one).
fn init_key(name: &str, init: &Init) -> String {
    use sha2::Digest;
    match init {
        Init::Given(p) => {
            let digest = sha2::Sha256::digest(bytemuck::cast_slice::<f32, u8>(&p.values));
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("file-{hex}")
        }
        _ => name.to_string(),
    }
}

/// Forward FLOPs of one tuning step's matmuls (multiply-add = 2 FLOPs): encoder over `s`
/// tokens, decoder over `t`, lm_head.
fn forward_flops(c: &metaprompt::model::T5Config, b: usize, s: usize, t: usize) -> (f64, f64) {
    let (d, hd, ff, h, dk, v) = (
        c.d_model,
        c.num_heads * c.d_kv,
        c.d_ff,
        c.num_heads,
        c.d_kv,
        c.vocab_size,
    );
    let (n, m) = ((b * s) as f64, (b * t) as f64);
    let (d, hd, ff, v) = (d as f64, hd as f64, ff as f64, v as f64);
    let attn = |q: f64, k: f64| 2.0 * 2.0 * b as f64 * h as f64 * q * k * dk as f64;
    let enc = 4.0 * 2.0 * n * d * hd + 3.0 * 2.0 * n * d * ff;
    let dec = 4.0 * 2.0 * m * d * hd
        + 2.0 * 2.0 * m * d * hd
        + 2.0 * 2.0 * n * d * hd
        + 3.0 * 2.0 * m * d * ff;
    let attn_total = c.num_layers as f64 * attn(s as f64, s as f64)
        + c.num_decoder_layers as f64 * (attn(t as f64, t as f64) + attn(t as f64, s as f64));
    let fwd = c.num_layers as f64 * enc
        + c.num_decoder_layers as f64 * dec
        + attn_total
        + 2.0 * m * d * v;
    (fwd, attn_total)
}

/// Times prompt-tuning steps at the shape: batch 8, 64 input tokens + 20 prompt tokens,
/// 4 target tokens (3 + EOS).
pub fn bench_tune(
    r: &Runner,
    steps: usize,
    save: Option<&Path>,
    adapters: Option<usize>,
) -> Result<(), String> {
    let (b, s_in, l, t) = BENCH_SHAPE;
    let c = r.model.t5.config.clone();
    let device_name = &r.name;
    let (pairs, prompt) = bench_batch(r);
    let refs: Vec<&Pair> = pairs.iter().collect();
    let (fwd, attn) = forward_flops(&c, b, s_in + l, t);
    // Input-gradient backward: one matmul per forward matmul, two for attention scores/values
    // (both operands depend on the prompt).
    let total = 2.0 * fwd + attn;
    if let Some(dir) = save {
        save_bench(dir, &prompt, &pairs, &c)?;
    }
    let warm = Instant::now();
    let (loss, grad) = bench_step(r, &prompt, &refs)?;
    let norm = grad.iter().map(|g| g * g).sum::<f32>().sqrt();
    println!(
        "warm-up step {:.0} ms: loss {loss:.6}, |prompt gradient| {norm:.6}",
        warm.elapsed().as_secs_f64() * 1e3
    );
    let time_steps = || -> Result<Vec<f64>, String> {
        let mut ms = Vec::new();
        for _ in 0..steps.max(1) {
            let t0 = Instant::now();
            bench_step(r, &prompt, &refs)?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        Ok(ms)
    };
    let ms = time_steps()?;
    let median = ms[ms.len() / 2];
    if let Some(bottleneck) = adapters {
        // The same step with one adapter per site: the adapters' forward, their backward
        // (weight and coefficient gradients) and reading those gradients back.
        let a = Adapters::new(&c, bottleneck, 1, 7);
        let set = |a: Option<&Adapters>| match &r.ours {
            Some(Ours::Cpu(t5)) => t5.set_adapters(a),
            Some(Ours::Gpu(t5)) => t5.set_adapters(a),
            None => Ok(()),
        };
        if r.ours.is_none() {
            return Err("--adapters times our engines only (--kernels cpu or wgsl)".into());
        }
        set(Some(&a)).map_err(|e| e.to_string())?;
        bench_step(r, &prompt, &refs)?;
        let with = time_steps();
        set(None).map_err(|e| e.to_string())?;
        let with = with?;
        let wm = with[with.len() / 2];
        println!(
            "bench tune --adapters {bottleneck} [{device_name}]: {} sites x 1 adapter, {} trainable \
             parameters (+ prompt {}): median {wm:.0} ms/step (min {:.0}, max {:.0}) against \
             {median:.0} ms/step prompt only: x{:.3}",
            a.sites.len(),
            a.parameters(),
            prompt.values.len(),
            with[0],
            with[with.len() - 1],
            wm / median
        );
    }
    if let Some(Ours::Gpu(t5)) = &r.ours {
        t5.ops.reset_step_bytes();
        bench_step(r, &prompt, &refs)?;
        println!(
            "GPU memory (ours): weights {:.1} MiB (int8; CPU adapters add a transposed copy), one step's buffers {:.1} MiB; the \
             same matrices as f32 (burn's generic path) take {:.1} MiB before any activation",
            t5.ops.weight_bytes() as f64 / 1048576.0,
            t5.ops.step_bytes() as f64 / 1048576.0,
            t5.ops.weight_elements() as f64 * 4.0 / 1048576.0
        );
    }
    println!(
        "bench tune [{device_name}] batch {b}, {s_in} input + {l} prompt tokens, {t} target tokens: \
         median {median:.0} ms/step (min {:.0}, max {:.0}, {steps} steps), {:.0} tokens/s, \
         {:.1} GFLOP/step ({:.1} forward), {:.1} GFLOP/s",
        ms[0],
        ms[ms.len() - 1],
        (b * (s_in + l + t)) as f64 / (median / 1e3),
        total / 1e9,
        fwd / 1e9,
        total / 1e9 / (median / 1e3)
    );
    if r.name.starts_with("wgpu") {
        allocator_report();
    }
    if let Some(peak) = peak_rss_mib() {
        println!(
            "process peak memory {peak:.0} MiB (host RAM: on a CPU adapter it holds the adapter's \
             buffers too; with our kernels it also holds burn's f32 copy of the model on the CPU)"
        );
    }
    Ok(())
}

/// What the wgpu device's memory allocator holds after the steps: burn's generic path keeps the
/// pool it grew to (its peak), ours drops a step's buffers when the step ends (its peak is the
/// weights plus one step's buffers, printed above).
fn allocator_report() {
    let Ok(gpu) = pollster::block_on(Gpu::shared()) else {
        return;
    };
    if let Some(a) = gpu.wgpu_device().generate_allocator_report() {
        println!(
            "wgpu allocator after the steps: {:.1} MiB of device memory in {} blocks, {:.1} MiB \
             in live buffers",
            a.total_reserved_bytes as f64 / 1048576.0,
            a.blocks.len(),
            a.total_allocated_bytes as f64 / 1048576.0
        );
    }
}

/// The process's peak resident memory (Linux `VmHWM`), if the system reports it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The benchmarks' shape as a tuple: (batch, input tokens, prompt tokens, target tokens).
const BENCH_SHAPE: (usize, usize, usize, usize) = {
    let s = metaprompt::prompt::bench::SHAPE;
    (s.batch, s.input, s.prompt, s.target)
};

fn bench_batch(r: &Runner) -> (Vec<Pair>, SoftPrompt) {
    metaprompt::prompt::bench::batch(&r.model.t5.config, metaprompt::prompt::bench::SHAPE)
}

/// One tuning step (loss and prompt gradient) on the benchmark batch.
fn bench_step(r: &Runner, prompt: &SoftPrompt, refs: &[&Pair]) -> Result<(f32, Vec<f32>), String> {
    pollster::block_on(tune::loss_and_grad(r.engine(), prompt, refs)).map_err(|e| e.to_string())
}

/// The benchmark's prompt as a PEFT folder, and its batch (`batch.json`: token ids of inputs and
/// targets), so another framework can time the same step and check it gets the same loss.
fn save_bench(
    dir: &Path,
    prompt: &SoftPrompt,
    pairs: &[Pair],
    c: &metaprompt::model::T5Config,
) -> Result<(), String> {
    let cfg = peft::AdapterConfig::for_prompt(prompt, &Init::Given(prompt.clone()), c);
    peft::save(dir, prompt, &cfg).map_err(|e| format!("{}: {e}", dir.display()))?;
    let batch = serde_json::json!({
        "inputs": pairs.iter().map(|p| &p.input).collect::<Vec<_>>(),
        "targets": pairs.iter().map(|p| &p.target).collect::<Vec<_>>(),
    });
    let path = dir.join("batch.json");
    std::fs::write(&path, batch.to_string()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Our CPU matmul (`metaprompt::cpu::gemm`, the CPU backend's only product) at every weight shape
/// of the tuning step, forward (`x W`) and input gradient (`dy W^T`, W read transposed in place),
/// on the encoder's rows and the decoder's: where the CPU step's time goes, against the machine's
/// sgemm peak (`scripts/bench-cpu.sh` prints it).
pub fn bench_gemm(reps: usize) {
    use metaprompt::cpu::gemm::{View, matmul};
    let c = metaprompt::model::T5Config::flan_t5_small();
    let (b, s_in, l, t) = BENCH_SHAPE;
    let (d, inner, ff) = (c.d_model, c.inner_dim(), c.d_ff);
    let (enc, dec) = (("encoder", b * (s_in + l)), ("decoder", b * t));
    let weights = [
        ("self qkv", d, 3 * inner, &[enc, dec][..]),
        ("attention o", inner, d, &[enc, dec]),
        ("ff wi", d, 2 * ff, &[enc, dec]),
        ("ff wo", ff, d, &[enc, dec]),
        ("cross q", d, inner, &[dec]),
        ("cross kv", d, 2 * inner, &[enc]),
        ("lm head", d, c.vocab_size, &[dec]),
    ];
    println!("bench gemm: our CPU matmul, median of {reps} runs, rows as in bench tune");
    println!(
        "  {:<12} {:<8} {:<18} {:>8} {:>9}",
        "weight", "rows", "product", "ms", "GFLOP/s"
    );
    let reps = reps.max(1);
    for (name, inp, out, stacks) in weights {
        let w = metaprompt::selfcheck::test_values(inp * out, 3);
        for &(stack, m) in stacks {
            for trans in [false, true] {
                let (k, n) = if trans { (out, inp) } else { (inp, out) };
                let x = metaprompt::selfcheck::test_values(m * k, 4);
                let mut y = vec![0f32; m * n];
                let wv = View::new(&w, inp, out);
                let wv = if trans { wv.t() } else { wv };
                let mut ms: Vec<f64> = (0..reps + 1)
                    .map(|_| {
                        let t0 = Instant::now();
                        matmul(&mut y, n, View::new(&x, m, k), wv, false, true);
                        t0.elapsed().as_secs_f64() * 1e3
                    })
                    .skip(1)
                    .collect();
                ms.sort_by(f64::total_cmp);
                let med = ms[ms.len() / 2];
                let op = if trans { "dy W^T" } else { "x W" };
                println!(
                    "  {name:<12} {stack:<8} {:<18} {med:>8.3} {:>9.1}",
                    format!("{op} [{m}x{k}]·[{k}x{n}]"),
                    2.0 * (m * n * k) as f64 / med / 1e6
                );
            }
        }
    }
}

/// Decoding time on our engine, the cached step ([`T5Graph::generate_with`]: the newest token
/// through the decoder) beside recomputing the whole prefix every step (what generation did
/// before the cache), on the same inputs in one run; both must produce the same tokens.
pub fn bench_generate(r: &Runner, reps: usize, batch: usize, max_new: usize) -> Result<(), String> {
    let text = "summarize: The council approved the plan for a new bridge over the river on \
                Tuesday, after two years of debate about its cost and the traffic it would bring.";
    let input = r.model.tokenizer.encode(text).map_err(|e| e.to_string())?;
    let inputs = vec![input; batch.max(1)];
    match &r.ours {
        Some(Ours::Cpu(t5)) => bench_generate_on(t5, &r.name, &inputs, reps, max_new),
        Some(Ours::Gpu(t5)) => bench_generate_on(t5, &r.name, &inputs, reps, max_new),
        None => Err("bench generate times our engines: use --kernels ours".into()),
    }
}

fn bench_generate_on<O: Ops>(
    t5: &T5Graph<O>,
    name: &str,
    inputs: &[Vec<u32>],
    reps: usize,
    max_new: usize,
) -> Result<(), String> {
    let c = &t5.config;
    let err = |e: metaprompt::kernels::KernelError| e.to_string();
    // Greedy but never EOS, so that every run decodes exactly `max_new` tokens.
    let pick = |row: &[f32]| -> u32 {
        let mut row = row.to_vec();
        row[c.eos_token_id as usize] = f32::NEG_INFINITY;
        argmax(&row)
    };
    let enc = t5.encode(&[], inputs).map_err(err)?;
    let m = &enc.memory;
    let cached =
        || pollster::block_on(t5.generate_with(m, max_new, |row, _| pick(row))).map_err(err);
    let full = || -> Result<Vec<Vec<u32>>, String> {
        let v = c.vocab_size;
        let mut seqs = vec![vec![c.decoder_start_token_id]; m.batch];
        for _ in 0..max_new {
            let (logits, tape) = t5.decode(m, &seqs).map_err(err)?;
            let t = tape.len;
            let logits = pollster::block_on(t5.ops.read(logits, m.batch * t * v)).map_err(err)?;
            for (bi, seq) in seqs.iter_mut().enumerate() {
                seq.push(pick(&logits[(bi * t + t - 1) * v..(bi * t + t) * v]));
            }
        }
        Ok(seqs.into_iter().map(|s| s[1..].to_vec()).collect())
    };
    let time =
        |f: &dyn Fn() -> Result<Vec<Vec<u32>>, String>| -> Result<(f64, Vec<Vec<u32>>), String> {
            let mut out = f()?; // warm-up
            let mut ms = Vec::new();
            for _ in 0..reps.max(1) {
                let t0 = Instant::now();
                out = f()?;
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            Ok((ms[ms.len() / 2], out))
        };
    let (a, ta) = time(&cached)?;
    let (b, tb) = time(&full)?;
    if ta != tb {
        return Err("the cached and the full-prefix decoders chose different tokens".into());
    }
    let tokens = (m.batch * max_new) as f64;
    println!(
        "bench generate [{name}] batch {}, {} input tokens, {max_new} new tokens, median of {} runs:",
        m.batch,
        m.len,
        reps.max(1)
    );
    for (what, ms) in [("cached decoder", a), ("full prefix each step", b)] {
        println!(
            "  {what:<22} {ms:>9.0} ms  {:>7.2} ms/token step  {:>8.1} tokens/s",
            ms / max_new as f64,
            tokens / ms * 1e3
        );
    }
    println!("  same tokens; the cache is {:.1}x faster", b / a);
    Ok(())
}

/// GPU time per kernel in one tuning step with our WGSL kernels, from timestamp queries: which
/// kernel (and which matmul shape) the step spends its time in.
pub fn bench_kernels(r: &Runner, steps: usize, adapters: Option<usize>) -> Result<(), String> {
    let Some(Ours::Gpu(t5)) = &r.ours else {
        return Err(format!(
            "bench kernels times our WGSL kernels; run it with --device wgpu --kernels ours (this \
             engine is {})",
            r.name
        ));
    };
    let gpu = pollster::block_on(Gpu::shared()).map_err(|e| e.to_string())?;
    let (pairs, prompt) = bench_batch(r);
    let refs: Vec<&Pair> = pairs.iter().collect();
    if let Some(bottleneck) = adapters {
        let a = Adapters::new(&t5.config, bottleneck, 1, 7);
        t5.set_adapters(Some(&a)).map_err(|e| e.to_string())?;
        println!(
            "with one bottleneck-{bottleneck} adapter at each of {} sites",
            a.sites.len()
        );
    }
    let step = || bench_step(r, &prompt, &refs);
    step()?;
    let t0 = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    let wall = t0.elapsed().as_secs_f64() * 1e3 / steps as f64;
    profile::start(&gpu)?;
    for _ in 0..steps {
        step()?;
    }
    let times = pollster::block_on(profile::finish(&gpu)).map_err(|e| e.to_string())?;
    let n = steps as f64;
    let gpu_ms: f64 = times.iter().map(|k| k.ms).sum::<f64>() / n;
    let calls: usize = times.iter().map(|k| k.calls).sum();
    let (b, s_in, l, t) = BENCH_SHAPE;
    println!(
        "bench kernels [{}] batch {b}, {s_in} input + {l} prompt tokens, {t} target tokens, {steps} \
         steps profiled",
        r.name
    );
    println!(
        "{:>9} {:>6} {:>6} {:>8}  kernel",
        "ms/step", "share", "calls", "GFLOP/s"
    );
    for k in &times {
        let rate = if k.flops > 0.0 && k.ms > 0.0 {
            format!("{:.0}", k.flops / 1e9 / (k.ms / 1e3))
        } else {
            "-".into()
        };
        println!(
            "{:>9.3} {:>5.1}% {:>6} {rate:>8}  {}",
            k.ms / n,
            100.0 * k.ms / n / gpu_ms,
            k.calls / steps,
            k.name
        );
    }
    println!(
        "kernels: {gpu_ms:.1} ms of GPU time per step in {} dispatches; the step takes {wall:.1} ms \
         wall-clock unprofiled ({:.0}% of it inside kernels)",
        calls / steps,
        100.0 * gpu_ms / wall
    );
    Ok(())
}

pub fn parse_optimizer(s: &str) -> Result<OptimizerKind, String> {
    match s {
        "adafactor" => Ok(OptimizerKind::Adafactor),
        "adam" => Ok(OptimizerKind::Adam),
        _ => Err(format!("--optimizer {s:?}: expected adafactor or adam")),
    }
}

/// The model and the engine that runs it: our kernels (the hand-written CPU step) or burn's
/// generic ops on the chosen device with autodiff.
pub struct Runner {
    pub model: LoadedModel,
    pub ours: Option<Ours>,
    /// "cpu (ours)", "cpu (burn flex)", "wgpu (burn)" ...: printed with every figure.
    pub name: String,
}

/// Our engines: the hand-written CPU step, or our WGSL kernels on the GPU.
#[allow(clippy::large_enum_variant)] // one per process
pub enum Ours {
    Cpu(CpuT5),
    Gpu(GpuT5),
}

impl Runner {
    pub fn engine(&self) -> Engine<'_> {
        match &self.ours {
            Some(Ours::Cpu(t5)) => Engine::Ours(t5),
            Some(Ours::Gpu(t5)) => Engine::Wgpu(t5),
            None => Engine::Burn(&self.model.t5),
        }
    }
}

/// What runs the model: burn's generic ops on a device, or one of our engines.
pub enum Kind {
    Generic(Device),
    OursCpu,
    OursGpu,
}

/// Loads the model from `dir` for `kind` (burn's model on an autodiff device; ours beside it).
/// Our GPU engine keeps burn's copy on the CPU (tokenizer and config only), so GPU memory holds
/// only our int8 weights.
pub fn load_for_tuning(dir: &Path, kind: Kind, name: &str) -> Result<Runner, String> {
    let device = match &kind {
        Kind::Generic(d) => d.clone(),
        Kind::OursCpu | Kind::OursGpu => Device::flex(),
    };
    let model = LoadedModel::from_dir(dir, &device.autodiff()).map_err(|e| e.to_string())?;
    let ours = match kind {
        Kind::Generic(_) => None,
        Kind::OursCpu | Kind::OursGpu => {
            let path = dir.join("model.safetensors");
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let c = &model.t5.config;
            let ckpt = Checkpoint::parse(&bytes, c).map_err(|e| e.to_string())?;
            Some(if matches!(kind, Kind::OursCpu) {
                Ours::Cpu(CpuT5::from_checkpoint(&ckpt, c).map_err(|e| e.to_string())?)
            } else {
                let gpu = pollster::block_on(Gpu::shared()).map_err(|e| e.to_string())?;
                Ours::Gpu(GpuT5::from_checkpoint(&gpu, &ckpt, c).map_err(|e| e.to_string())?)
            })
        }
    };
    Ok(Runner {
        model,
        ours,
        name: name.into(),
    })
}
