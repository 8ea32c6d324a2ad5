//! The native CLI: the same library the page runs.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {
    panic!("the metaprompt CLI is native only; the web app is the metaprompt-web binary");
}

#[cfg(not(target_arch = "wasm32"))]
#[path = "metaprompt/data.rs"]
mod data;

#[cfg(not(target_arch = "wasm32"))]
#[path = "metaprompt/tune.rs"]
mod tune_cmd;

#[cfg(not(target_arch = "wasm32"))]
#[path = "metaprompt/meta.rs"]
mod meta_cmd;

#[cfg(not(target_arch = "wasm32"))]
#[path = "metaprompt/lifelong.rs"]
mod lifelong_cmd;

#[cfg(not(target_arch = "wasm32"))]
#[path = "metaprompt/relations.rs"]
mod relations_cmd;

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use crate::data;
    use crate::lifelong_cmd;
    use crate::meta_cmd;
    use crate::relations_cmd;
    use crate::tune_cmd;
    use clap::{Parser, Subcommand, ValueEnum};
    use metaprompt::gpu::Gpu;
    use metaprompt::lifelong::dmea::ModuleConfig;
    use metaprompt::lifelong::lfpt5::PseudoConfig;
    use metaprompt::lifelong::{LifelongConfig, Method};
    use metaprompt::meta::{Algo, MetaConfig};
    use metaprompt::model::checkpoint::Checkpoint;
    use metaprompt::model::{LoadedModel, T5Config};
    use metaprompt::prompt::tune::TuneConfig;
    use metaprompt::relation::learner::{Config, Method as RelationMethod};
    use metaprompt::selfcheck;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::Instant;

    #[derive(Parser)]
    #[command(
        name = "metaprompt",
        version,
        about = "Few-shot soft-prompt learning on a frozen T5"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Convert the shipped ONNX files into our checkpoint (safetensors, int8 kept as is).
        Convert {
            /// Folder with encoder.onnx, decoder.onnx and tokenizer.json (scripts/fetch-model.sh).
            #[arg(long, default_value = "models/flan-t5-small-onnx")]
            onnx: PathBuf,
            /// Output folder: model.safetensors, config.json, tokenizer.json.
            #[arg(long, default_value = "models/flan-t5-small")]
            out: PathBuf,
        },
        /// Write a tiny random-weight T5 with flan-t5-small's tokenizer (the page's end-to-end
        /// tests load it instead of the real model).
        TinyModel {
            /// The real model's folder, for its tokenizer.json.
            #[arg(long, default_value = "models/flan-t5-small")]
            model: PathBuf,
            #[arg(long, default_value = "models/tiny")]
            out: PathBuf,
        },
        /// Greedy generation with the frozen T5; prints the output and the time per token.
        Generate {
            /// Input text (several are decoded as one batch).
            #[arg(required = true)]
            text: Vec<String>,
            #[arg(long, default_value = "models/flan-t5-small")]
            model: PathBuf,
            /// At most this many new tokens.
            #[arg(long, default_value_t = 32)]
            max_new: usize,
            #[arg(long, value_enum, default_value_t = Backend::Cpu)]
            device: Backend,
        },
        /// Prompt tuning (PT) on one task: k-shot over seeds, a per-seed and mean/std table.
        Tune {
            #[arg(long)]
            task: String,
            /// random | vocab | labels | a PEFT prompt folder or .safetensors file.
            #[arg(long, default_value = "random")]
            init: String,
            /// Write the tuned prompts here (PEFT layout, one folder per seed).
            #[arg(long)]
            out: Option<PathBuf>,
            #[command(flatten)]
            run: RunArgs,
        },
        /// A whole suite: zero-shot and PT from each initialisation over seeds -> markdown table.
        Eval {
            #[arg(long, default_value = "targets-cls")]
            suite: String,
            #[arg(long, value_delimiter = ',', default_value = "random,vocab,labels")]
            inits: Vec<String>,
            #[arg(long, default_value = "results/pt-baselines.md")]
            out: PathBuf,
            #[command(flatten)]
            run: RunArgs,
        },
        /// Meta Prompt Tuning: learn a prompt initialisation over the source tasks (MAML, FoMAML,
        /// Reptile) or the multi-task baseline; checkpoints and resumes.
        MetaTrain(MetaTrainArgs),
        /// Lifelong few-shot learning: LFPT5 and its baselines over a task stream, for each
        /// seed -> a markdown report (score matrices, forgetting) and the runs as JSON.
        Lifelong(LifelongArgs),
        /// Continual few-shot relation learning: ERDA and its baselines over the relation stream
        /// on the frozen encoder's vectors, for each shot count and seed -> a markdown report.
        Relations(RelationsArgs),
        /// Benchmarks: `bench tune` times prompt-tuning steps on flan-t5-small; `bench kernels`
        /// splits one step's GPU time by kernel (our WGSL kernels, timestamp queries); `bench
        /// gemm` times our CPU matmul at each of the step's shapes; `bench generate` times
        /// decoding with the decoder cache beside recomputing the prefix.
        Bench {
            /// What to time: tune | kernels | gemm | generate.
            what: String,
            #[arg(long, default_value_t = 5)]
            steps: usize,
            /// `tune`: also write the benchmark's prompt as a PEFT folder and its batch as
            /// `batch.json` there, for the PyTorch anchor (`scripts/bench-cpu.sh`).
            #[arg(long)]
            save: Option<PathBuf>,
            /// `tune`: also time the step with one bottleneck adapter of this width at every
            /// site (our engines), beside the prompt-only step; `kernels`: profile the step with
            /// them.
            #[arg(long)]
            adapters: Option<usize>,
            #[command(flatten)]
            engine: EngineArgs,
        },
        /// Few-shot task suites: derive them, list them, show examples.
        Data {
            #[command(subcommand)]
            command: data::DataCommand,
        },
        /// Show the GPU adapter wgpu picks and check our WGSL kernels against the Rust reference.
        Gpu {
            /// Rows of the self-check input.
            #[arg(long, default_value_t = 96)]
            rows: usize,
            /// Columns of the self-check input (T5-small's d_model is 512).
            #[arg(long, default_value_t = 512)]
            cols: usize,
        },
    }

    /// `meta-train`'s settings.
    #[derive(clap::Args)]
    struct MetaTrainArgs {
        /// maml | fomaml | reptile | multitask
        #[arg(long, default_value = "fomaml")]
        algo: String,
        #[arg(long, default_value = "meta-train")]
        suite: String,
        /// Only these tasks of the suite (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
        #[arg(long, default_value_t = 150)]
        meta_steps: usize,
        /// Episodes (distinct source tasks) per meta-step.
        #[arg(long, default_value_t = 4)]
        task_batch: usize,
        #[arg(long, default_value_t = 3)]
        inner_steps: usize,
        /// Inner-loop gradient-descent rate (full batch, no clipping).
        #[arg(long, default_value_t = MetaConfig::default().inner_lr)]
        inner_lr: f32,
        #[arg(long, default_value_t = MetaConfig::default().outer_lr)]
        outer_lr: f32,
        /// adafactor | adam
        #[arg(long, default_value = "adafactor")]
        outer_optimizer: String,
        #[arg(long, default_value_t = 8)]
        support: usize,
        #[arg(long, default_value_t = 8)]
        query: usize,
        /// MAML's finite-difference radius for Hessian-vector products.
        #[arg(long, default_value_t = MetaConfig::default().fd_eps)]
        fd_eps: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Prompt length.
        #[arg(long, default_value_t = 20)]
        len: usize,
        /// Where meta-training starts: random | vocab.
        #[arg(long, default_value = "vocab")]
        start: String,
        /// Source inputs are cut to this many tokens.
        #[arg(long, default_value_t = 128)]
        max_input: usize,
        /// Output folder (PEFT prompt, provenance.json, curve.csv, checkpoint.json);
        /// default assets/mpt-ALGO.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        checkpoint_every: usize,
        /// Ignore an existing checkpoint and start over.
        #[arg(long)]
        fresh: bool,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    }

    /// `lifelong`'s settings.
    #[derive(clap::Args)]
    struct LifelongArgs {
        /// The prompt methods over `--suite`: lfpt5 | sequential | replay | multitask
        /// (default all). With `--stream generation` the adapter methods: dmea | acm | expand |
        /// reuse | sequential | multitask (default all). Comma-separated.
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// `generation`: DMEA's stream (the `generation` suite, adapter methods, results/dmea.md,
        /// 32 shots per task).
        #[arg(long)]
        stream: Option<String>,
        /// The authors' seeds; each draws the shots and the order within each task type.
        #[arg(long, value_delimiter = ',', default_value = "42,142,242")]
        seeds: Vec<u64>,
        /// Default `lifelong`; `generation` with `--stream generation`.
        #[arg(long)]
        suite: Option<String>,
        /// These tasks instead of the suite (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
        /// Per class (per task without labels), for training and again for validation
        /// (default 16; 32 with `--stream generation`).
        #[arg(long)]
        shots: Option<usize>,
        /// Adapter methods: bottleneck width.
        #[arg(long, default_value_t = ModuleConfig::default().bottleneck)]
        bottleneck: usize,
        /// DMEA and ACM: search steps before the adaptation's `--steps`.
        #[arg(long, default_value_t = ModuleConfig::default().search_steps)]
        search_steps: usize,
        /// Adapter methods: Adam's rate for the modules.
        #[arg(long, default_value_t = ModuleConfig::default().lr)]
        module_lr: f32,
        /// Optimiser steps per task.
        #[arg(long, default_value_t = LifelongConfig::default().steps)]
        steps: usize,
        #[arg(long, default_value_t = LifelongConfig::default().batch)]
        batch: usize,
        #[arg(long, default_value_t = LifelongConfig::default().lr)]
        lr: f32,
        /// adafactor | adam
        #[arg(long, default_value = "adafactor")]
        optimizer: String,
        /// Prompt length.
        #[arg(long, default_value_t = 20)]
        len: usize,
        #[arg(long, default_value_t = LifelongConfig::default().max_input)]
        max_input: usize,
        #[arg(long, default_value_t = LifelongConfig::default().valid_every)]
        valid_every: usize,
        /// Longest pseudo example LFPT5 generates, in tokens.
        #[arg(long, default_value_t = PseudoConfig::default().max_tokens)]
        max_tokens: usize,
        /// LFPT5's sampling: the top-k cut (0: none).
        #[arg(long, default_value_t = PseudoConfig::default().top_k)]
        top_k: usize,
        /// LFPT5's sampling: CTRL's penalty on tokens already written (1: none).
        #[arg(long, default_value_t = PseudoConfig::default().repetition_penalty)]
        repetition_penalty: f32,
        /// Score at most this many test examples per task.
        #[arg(long, default_value_t = 100)]
        max_test: usize,
        /// Default results/lfpt5.md; results/dmea.md with `--stream generation`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Recompute every run (otherwise finished runs with the same settings are reused).
        #[arg(long)]
        fresh: bool,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    }

    /// `relations`' settings (ERDA's protocol: 6 seeds 100 + 10i, the first task fixed).
    #[derive(clap::Args)]
    struct RelationsArgs {
        /// erda | ncm | sequential | replay | erda-no-aug | erda-no-reg | joint (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "erda,ncm,sequential,replay,erda-no-aug,erda-no-reg,joint"
        )]
        methods: Vec<String>,
        /// Support examples per relation from the second task on (comma-separated: one report
        /// section each).
        #[arg(long, value_delimiter = ',', default_value = "5,10")]
        shots: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "100,110,120,130,140,150")]
        seeds: Vec<u64>,
        #[arg(long, default_value = "relations")]
        suite: String,
        /// Use only the first N sentences of the unlabelled pool (0: all).
        #[arg(long, default_value_t = 0)]
        pool: usize,
        #[arg(long, default_value_t = Config::default().head_dim)]
        head_dim: usize,
        #[arg(long, default_value_t = Config::default().lr)]
        lr: f32,
        #[arg(long, default_value = "results/erda.md")]
        out: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    }

    impl RelationsArgs {
        fn args(&self) -> Result<relations_cmd::RelationsArgs, String> {
            Ok(relations_cmd::RelationsArgs {
                methods: self
                    .methods
                    .iter()
                    .map(|m| RelationMethod::parse(m))
                    .collect::<Result<_, _>>()?,
                shots: self.shots.clone(),
                seeds: self.seeds.clone(),
                config: Config {
                    head_dim: self.head_dim,
                    lr: self.lr,
                    ..Config::default()
                },
                suite: self.suite.clone(),
                pool: self.pool,
                data: self.data.clone(),
                model: self.engine.model.clone(),
                out: self.out.clone(),
                command_line: command_line(),
            })
        }
    }

    impl LifelongArgs {
        fn args(&self) -> Result<lifelong_cmd::LifelongArgs, String> {
            let generation = match self.stream.as_deref() {
                None => false,
                Some("generation") => true,
                Some(other) => {
                    return Err(format!(
                        "unknown stream {other:?} (the one there is: generation)"
                    ));
                }
            };
            let methods = if self.methods.is_empty() {
                if generation {
                    Method::ADAPTERS.to_vec()
                } else {
                    Method::ALL.to_vec()
                }
            } else {
                self.methods
                    .iter()
                    .map(|m| Method::parse_in(m, generation))
                    .collect::<Result<_, _>>()?
            };
            let config = LifelongConfig {
                steps: self.steps,
                batch: self.batch,
                lr: self.lr,
                optimizer: tune_cmd::parse_optimizer(&self.optimizer)?,
                len: self.len,
                max_input: self.max_input,
                valid_every: self.valid_every,
                pseudo: PseudoConfig {
                    max_tokens: self.max_tokens,
                    top_k: self.top_k,
                    repetition_penalty: self.repetition_penalty,
                    ..PseudoConfig::default()
                },
                modules: ModuleConfig {
                    bottleneck: self.bottleneck,
                    search_steps: self.search_steps,
                    lr: self.module_lr,
                    ..ModuleConfig::default()
                },
                ..LifelongConfig::default()
            };
            let (suite, shots, out) = if generation {
                ("generation", 32, "results/dmea.md")
            } else {
                ("lifelong", 16, "results/lfpt5.md")
            };
            Ok(lifelong_cmd::LifelongArgs {
                methods,
                seeds: self.seeds.clone(),
                suite: self.suite.clone().unwrap_or_else(|| suite.into()),
                tasks: self.tasks.clone(),
                shots: self.shots.unwrap_or(shots),
                max_test: self.max_test,
                config,
                data: self.data.clone(),
                out: self.out.clone().unwrap_or_else(|| out.into()),
                fresh: self.fresh,
                command_line: command_line(),
            })
        }
    }

    impl MetaTrainArgs {
        fn config(&self) -> Result<MetaConfig, String> {
            Ok(MetaConfig {
                algo: Algo::parse(&self.algo).map_err(|e| e.to_string())?,
                meta_steps: self.meta_steps,
                task_batch: self.task_batch,
                inner_steps: self.inner_steps,
                inner_lr: self.inner_lr,
                outer_lr: self.outer_lr,
                outer_optimizer: tune_cmd::parse_optimizer(&self.outer_optimizer)?,
                support: self.support,
                query: self.query,
                fd_eps: self.fd_eps,
                seed: self.seed,
                ..MetaConfig::default()
            })
        }
    }

    /// The model and what runs it: shared by `tune`, `eval`, `meta-train` and `bench`.
    #[derive(clap::Args)]
    struct EngineArgs {
        #[arg(long, default_value = "models/flan-t5-small")]
        model: PathBuf,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        device: Backend,
        #[arg(long, value_enum, default_value_t = Kernels::Ours)]
        kernels: Kernels,
    }

    impl EngineArgs {
        fn load(&self) -> Result<tune_cmd::Runner, String> {
            runner(&self.model, self.device, self.kernels)
        }
    }

    /// What `tune` and `eval` share: the few-shot setting, the tuning loop, data, model, device.
    #[derive(clap::Args)]
    struct RunArgs {
        #[arg(long, default_value_t = 16)]
        shots: usize,
        #[arg(long, value_delimiter = ',', default_value = "13,21,42,87,100")]
        seeds: Vec<u64>,
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Prompt length.
        #[arg(long, default_value_t = 20)]
        len: usize,
        #[arg(long, default_value_t = 0.3)]
        lr: f32,
        /// adafactor | adam
        #[arg(long, default_value = "adafactor")]
        optimizer: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Evaluate on at most this many test examples per task.
        #[arg(long, default_value_t = 200)]
        max_test: usize,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    }

    impl RunArgs {
        fn config(&self) -> Result<TuneConfig, String> {
            Ok(TuneConfig {
                steps: self.steps,
                lr: self.lr,
                batch_size: self.batch,
                optimizer: tune_cmd::parse_optimizer(&self.optimizer)?,
                ..TuneConfig::default()
            })
        }
    }

    /// Which implementation of the model's ops runs tuning and evaluation.
    #[derive(Clone, Copy, PartialEq, ValueEnum)]
    enum Kernels {
        /// Ours: on the CPU the hand-written forward/backward (crate::cpu), on wgpu our WGSL kernels
        /// (crate::kernels).
        Ours,
        /// burn's generic tensor ops with autodiff.
        Generic,
    }

    fn runner(
        model: &Path,
        backend: Backend,
        kernels: Kernels,
    ) -> Result<tune_cmd::Runner, String> {
        let name = match (backend, kernels) {
            (Backend::Cpu, Kernels::Ours) => "cpu (ours)",
            (Backend::Cpu, Kernels::Generic) => "cpu (burn flex, generic ops)",
            (Backend::Wgpu, Kernels::Generic) => "wgpu (burn, generic ops)",
            (Backend::Wgpu, Kernels::Ours) => "wgpu (ours, WGSL kernels)",
        };
        let kind = match (backend, kernels) {
            (_, Kernels::Generic) => tune_cmd::Kind::Generic(device(backend)?),
            (Backend::Cpu, Kernels::Ours) => tune_cmd::Kind::OursCpu,
            (Backend::Wgpu, Kernels::Ours) => tune_cmd::Kind::OursGpu,
        };
        tune_cmd::load_for_tuning(model, kind, name)
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum Backend {
        /// burn's CPU backend (flex).
        Cpu,
        /// burn's wgpu backend on the native adapter.
        Wgpu,
    }

    pub fn main() -> ExitCode {
        let result = match Cli::parse().command {
            Command::Gpu { rows, cols } => return gpu(rows, cols),
            Command::Convert { onnx, out } => convert(&onnx, &out),
            Command::TinyModel { model, out } => tiny_model(&model, &out),
            Command::Data { command } => data::run(command),
            Command::Tune {
                task,
                init,
                out,
                run,
            } => (|| {
                let config = run.config()?;
                let m = run.engine.load()?;
                tune_cmd::tune_task(
                    &m,
                    &tune_cmd::TuneArgs {
                        task,
                        init,
                        shots: run.shots,
                        seeds: run.seeds.clone(),
                        len: run.len,
                        config,
                        max_test: run.max_test,
                        data: run.data.clone(),
                        out,
                    },
                )
            })(),
            Command::Eval {
                suite,
                inits,
                out,
                run,
            } => (|| {
                let config = run.config()?;
                let m = run.engine.load()?;
                let command_line = command_line();
                tune_cmd::eval_suite(
                    &m,
                    &tune_cmd::EvalArgs {
                        suite,
                        inits,
                        shots: run.shots,
                        seeds: run.seeds.clone(),
                        len: run.len,
                        config,
                        max_test: run.max_test,
                        data: run.data.clone(),
                        out,
                        command_line,
                        device: m.name.clone(),
                    },
                )
            })(),
            Command::MetaTrain(args) => (|| {
                let config = args.config()?;
                let out = args
                    .out
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("assets/mpt-{}", config.algo.name())));
                let m = args.engine.load()?;
                meta_cmd::meta_train_cmd(
                    &m,
                    &meta_cmd::MetaArgs {
                        config,
                        suite: args.suite,
                        tasks: args.tasks,
                        data: args.data,
                        len: args.len,
                        start: args.start,
                        max_input: args.max_input,
                        out,
                        checkpoint_every: args.checkpoint_every,
                        fresh: args.fresh,
                        command_line: command_line(),
                    },
                )
            })(),
            Command::Relations(args) => (|| {
                let a = args.args()?;
                relations_cmd::relations(&args.engine.load()?, &a)
            })(),
            Command::Lifelong(args) => (|| {
                let a = args.args()?;
                lifelong_cmd::lifelong(&args.engine.load()?, &a)
            })(),
            Command::Bench {
                what,
                steps,
                save,
                adapters,
                engine,
            } => (|| match what.as_str() {
                "tune" => tune_cmd::bench_tune(&engine.load()?, steps, save.as_deref(), adapters),
                "kernels" => tune_cmd::bench_kernels(&engine.load()?, steps, adapters),
                "gemm" => {
                    tune_cmd::bench_gemm(steps);
                    Ok(())
                }
                "generate" => tune_cmd::bench_generate(&engine.load()?, steps, 8, 64),
                _ => Err(format!(
                    "bench {what:?}: expected `tune` (ms per tuning step), `kernels` (GPU \
                         time per kernel in one step), `gemm` (our CPU matmul per step shape) \
                         or `generate` (decoding 64 tokens for 8 inputs, cached and not)"
                )),
            })(),
            Command::Generate {
                text,
                model,
                max_new,
                device,
            } => generate(&text, &model, max_new, device),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    type CliResult = Result<(), String>;

    /// This invocation, for the provenance of what it writes.
    fn command_line() -> String {
        std::iter::once("metaprompt".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn read(path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn convert(onnx: &Path, out: &Path) -> CliResult {
        let t = Instant::now();
        let config = T5Config::flan_t5_small();
        let bytes = metaprompt::model::convert::convert(
            &read(&onnx.join("encoder.onnx"))?,
            &read(&onnx.join("decoder.onnx"))?,
            &config,
        )
        .map_err(|e| e.to_string())?;
        write_model(
            out,
            &config,
            &bytes,
            &read(&onnx.join("tokenizer.json"))?,
            t,
        )
    }

    fn tiny_model(model: &Path, out: &Path) -> CliResult {
        let config = T5Config::tiny_full_vocab();
        let bytes = metaprompt::model::tiny::random_checkpoint(&config, 7);
        let tokenizer = read(&model.join("tokenizer.json"))?;
        write_model(out, &config, &bytes, &tokenizer, Instant::now())
    }

    /// A model folder as every loader reads it: model.safetensors, config.json, tokenizer.json.
    fn write_model(
        out: &Path,
        config: &T5Config,
        bytes: &[u8],
        tokenizer: &[u8],
        t: Instant,
    ) -> CliResult {
        // Verify what we wrote the way every loader will.
        Checkpoint::parse(bytes, config).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let write = |name: &str, data: &[u8]| {
            std::fs::write(out.join(name), data)
                .map_err(|e| format!("{}: {e}", out.join(name).display()))
        };
        write("model.safetensors", bytes)?;
        write(
            "config.json",
            serde_json::to_string_pretty(config)
                .expect("config as JSON")
                .as_bytes(),
        )?;
        write("tokenizer.json", tokenizer)?;
        let config_json = std::fs::read(out.join("config.json"))
            .map_err(|e| format!("{}: {e}", out.join("config.json").display()))?;
        let manifest = metaprompt::model::manifest::Manifest::of(&[
            ("config.json", &config_json),
            ("tokenizer.json", tokenizer),
            ("model.safetensors", bytes),
        ]);
        write(
            metaprompt::model::manifest::FILE,
            serde_json::to_string_pretty(&manifest)
                .expect("manifest as JSON")
                .as_bytes(),
        )?;
        println!(
            "wrote {} ({:.1} MB, {} parameters) in {:.1} s",
            out.join("model.safetensors").display(),
            bytes.len() as f64 / 1e6,
            config.parameter_count(),
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn device(backend: Backend) -> Result<burn::tensor::Device, String> {
        Ok(match backend {
            Backend::Cpu => burn::tensor::Device::flex(),
            Backend::Wgpu => {
                pollster::block_on(Gpu::shared())
                    .map_err(|e| e.to_string())?
                    .device
            }
        })
    }

    fn generate(texts: &[String], dir: &Path, max_new: usize, backend: Backend) -> CliResult {
        let t = Instant::now();
        let model = LoadedModel::from_dir(dir, &device(backend)?).map_err(|e| e.to_string())?;
        println!(
            "loaded {} in {:.2} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let t = Instant::now();
        let generation = pollster::block_on(model.generate_texts(&inputs, max_new))
            .map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        let tokens = generation.steps;
        for (text, out) in texts.iter().zip(&generation.outputs) {
            println!("{text}\n  -> {out}");
        }
        println!(
            "{tokens} decoding steps in {:.0} ms: {:.1} ms per token (batch {})",
            secs * 1e3,
            secs * 1e3 / tokens as f64,
            texts.len()
        );
        Ok(())
    }

    fn gpu(rows: usize, cols: usize) -> ExitCode {
        let gpu = match pollster::block_on(Gpu::shared()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!(
                    "hint: without a GPU, install a Vulkan CPU driver (Debian: mesa-vulkan-drivers)"
                );
                return ExitCode::FAILURE;
            }
        };
        println!("{}", gpu.report());
        let start = std::time::Instant::now();
        match pollster::block_on(selfcheck::rms_norm_check(&gpu, rows, cols, 42)) {
            Ok(c) => {
                println!(
                    "self-check     {} {}x{}: forward err {:.2e}, backward err {:.2e}, burn err {:.2e} (tolerance {:.0e}) in {:.0} ms: {}",
                    c.kernel,
                    c.rows,
                    c.cols,
                    c.forward_err,
                    c.backward_err,
                    c.burn_err,
                    selfcheck::TOLERANCE,
                    start.elapsed().as_secs_f64() * 1e3,
                    if c.passed() { "ok" } else { "FAILED" }
                );
                if c.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: self-check failed: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
