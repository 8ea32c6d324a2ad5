//! The methods over a stream, written once: each task is learned for a step budget from the
//! prompt the last one left (model selection on validation loss), then every task seen so far
//! is scored on its test set. The methods differ only in what a task's data holds and which
//! loss parts a batch has.

use super::lfpt5::{self, PseudoConfig, PseudoSet, SEPARATOR, coefficients, generation_input};
use super::stream::{StreamTask, TaskType};
use super::{LifelongError, LifelongRun};
use crate::graph::{Loss, Objective, Part, Row, Teacher};
use crate::model::LoadedModel;
use crate::prompt::engine::Engine;
use crate::prompt::eval::{self, target_text};
use crate::prompt::optim::{Optimizer, OptimizerKind, clip_grad_norm};
use crate::prompt::tune::{Pair, TuneError, support_loss};
use crate::prompt::{Init, SoftPrompt, initial_prompt};
use crate::tasks::Example;
use crate::tasks::sampling::{SplitMix64, k_shot};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// LFPT5: solver + generator prompt, pseudo-example replay with distillation, a prompt per
    /// task type.
    Lfpt5,
    /// Sequential PT: one prompt carried over, no replay (what forgetting looks like).
    Sequential,
    /// PT with real examples of earlier tasks replayed, at LFPT5's per-class budget.
    Replay,
    /// PT on the union of every task so far (the upper bound).
    Multitask,
    /// DMEA ([`super::dmea`]): adapters, a module per layer searched for each task (reuse or
    /// expand, coefficients started from task similarity), replay of the most similar tasks.
    Dmea,
    /// ACM: DMEA's search with fixed coefficient starts, replay of the tasks sharing a module.
    Acm,
    /// A new adapter at every site for every task (no forgetting, the most parameters).
    Expand,
    /// One adapter set for every task, with pseudo-example replay of all earlier tasks.
    Reuse,
    /// One adapter set fine-tuned task after task, no replay.
    #[serde(rename = "sequential-adapters")]
    SequentialAdapters,
    /// One adapter set on the union of every task so far.
    #[serde(rename = "multitask-adapters")]
    MultitaskAdapters,
}

impl Method {
    /// The prompt methods (LFPT5 and its baselines).
    pub const ALL: [Method; 4] = [
        Method::Lfpt5,
        Method::Sequential,
        Method::Replay,
        Method::Multitask,
    ];

    /// The adapter methods (DMEA and its baselines).
    pub const ADAPTERS: [Method; 6] = [
        Method::Dmea,
        Method::Acm,
        Method::Expand,
        Method::Reuse,
        Method::SequentialAdapters,
        Method::MultitaskAdapters,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lfpt5 => "lfpt5",
            Self::Sequential => "sequential",
            Self::Replay => "replay",
            Self::Multitask => "multitask",
            Self::Dmea => "dmea",
            Self::Acm => "acm",
            Self::Expand => "expand",
            Self::Reuse => "reuse",
            Self::SequentialAdapters => "sequential-adapters",
            Self::MultitaskAdapters => "multitask-adapters",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .chain(Self::ADAPTERS)
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown method {s:?} (lfpt5, sequential, replay, multitask; dmea, acm, \
                     expand, reuse, sequential-adapters, multitask-adapters)"
                )
            })
    }

    /// As `parse`, where the stream is DMEA's (`adapters`): there "sequential" and "multitask"
    /// are the adapter baselines.
    pub fn parse_in(s: &str, adapters: bool) -> Result<Self, String> {
        match (s, adapters) {
            ("sequential", true) => Ok(Self::SequentialAdapters),
            ("multitask", true) => Ok(Self::MultitaskAdapters),
            _ => Self::parse(s),
        }
    }

    /// Whether it trains adapters ([`super::dmea`]) rather than a prompt.
    pub fn trains_adapters(self) -> bool {
        Self::ADAPTERS.contains(&self)
    }

    /// Optimiser steps it takes on task `task` (the search methods search before adapting).
    pub fn task_steps(self, task: usize, cfg: &LifelongConfig) -> usize {
        let search = matches!(self, Self::Dmea | Self::Acm) && task > 0;
        cfg.steps + if search { cfg.modules.search_steps } else { 0 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LifelongConfig {
    /// Optimiser steps per task.
    pub steps: usize,
    /// Examples per step (LFPT5 adds a generator row per example, and a distillation row per
    /// pseudo example).
    pub batch: usize,
    pub lr: f32,
    pub optimizer: OptimizerKind,
    pub max_grad_norm: f32,
    /// Prompt length.
    pub len: usize,
    /// Inputs are cut to this many tokens.
    pub max_input: usize,
    /// Validation loss every this many steps (and at the start and the end).
    pub valid_every: usize,
    pub eval_batch: usize,
    /// Pseudo examples (LFPT5), and the replay budget per class (half train, half validation).
    pub pseudo: PseudoConfig,
    pub seed: u64,
    /// The adapter methods' settings (DMEA and its baselines).
    #[serde(default)]
    pub modules: super::dmea::ModuleConfig,
}

impl Default for LifelongConfig {
    /// The authors' optimiser (Adafactor 0.5, clip 1), effective batch 8.
    fn default() -> Self {
        Self {
            steps: 40,
            batch: 8,
            lr: 0.5,
            optimizer: OptimizerKind::Adafactor,
            max_grad_norm: 1.0,
            len: crate::prompt::DEFAULT_LEN,
            max_input: 128,
            valid_every: 10,
            eval_batch: 16,
            pseudo: PseudoConfig::default(),
            seed: 42,
            modules: Default::default(),
        }
    }
}

/// What the callback hears; returning `Break` stops the run after the current step.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress<'a> {
    /// Generation of pseudo examples of `task` is done.
    Generated {
        before: usize,
        set: &'a PseudoSet,
    },
    Step {
        task: usize,
        step: usize,
        steps: usize,
        loss: f32,
    },
    Validated {
        task: usize,
        step: usize,
        loss: f32,
    },
    /// DMEA / ACM decided, per site, which module task `task` uses (every method with
    /// adapters says it, once per task, before training).
    Decided {
        task: usize,
        choices: &'a [super::dmea::Choice],
    },
    /// Task `task` scored `score` after learning task `after`.
    Scored {
        after: usize,
        task: usize,
        score: f64,
    },
}

/// The name of the one prompt a method other than LFPT5 keeps.
pub const ALL_TASKS: &str = "all tasks";

/// One training example of a task's data, and where it came from.
#[derive(Clone, Debug)]
struct Item {
    /// Index of its task in the stream.
    task: usize,
    example: Example,
    /// Generated by LFPT5 (distilled from the task's starting prompt).
    pseudo: bool,
}

/// Token rows of an item: the solver's, and LFPT5's generator's (only LFPT5 trains one).
struct Tokens {
    solver: Pair,
    generator: Option<Pair>,
    pseudo: bool,
}

/// Runs `method` over `stream` in its order.
pub async fn run(
    engine: Engine<'_>,
    model: &LoadedModel,
    stream: &[StreamTask],
    method: Method,
    cfg: &LifelongConfig,
    on: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<LifelongRun, LifelongError> {
    if stream.is_empty() {
        return Err(LifelongError::Empty);
    }
    if method.trains_adapters() {
        return super::dmea::run(engine, model, stream, method, cfg, on).await;
    }
    let start = initial_prompt(model, &Init::Vocab, cfg.len, cfg.seed).await?;
    // LFPT5 keeps a prompt per task type; the others one prompt throughout.
    let mut prompts: Vec<(TaskType, SoftPrompt)> = Vec::new();
    let mut current = start;
    let order = stream.iter().map(|t| t.info.name.clone()).collect();
    let mut out = LifelongRun::empty(method, cfg.seed, order);
    let mut rng = SplitMix64::new(cfg.seed ^ 0x11f7);
    for (j, task) in stream.iter().enumerate() {
        let t0 = crate::clock::now_ms();
        let ty = task.ty();
        if method == Method::Lfpt5 {
            // A type seen before continues from its own prompt; a new type starts from the
            // prompt the last task ended with (`current` as it is).
            if let Some((_, p)) = prompts.iter().find(|(t, _)| *t == ty) {
                current = p.clone();
            }
        }
        let (mut train, mut valid) = own_items(j, task);
        match method {
            Method::Sequential | Method::Dmea | Method::Acm | Method::Expand | Method::Reuse => {}
            Method::SequentialAdapters | Method::MultitaskAdapters => {}
            Method::Multitask => {
                for (i, t) in stream[..j].iter().enumerate() {
                    let (tr, va) = own_items(i, t);
                    train.extend(tr);
                    valid.extend(va);
                }
            }
            Method::Replay => {
                let half = cfg.pseudo.per_class.div_ceil(2);
                for (i, t) in stream[..j].iter().enumerate() {
                    let labels = t.info.kind.has_labels().then_some(t.info.labels.as_slice());
                    let seed = rng.next_u64();
                    let keep =
                        |from: &[Example]| items(i, &k_shot(from, half, labels, seed), false);
                    train.extend(keep(&t.train));
                    valid.extend(keep(&t.valid));
                }
            }
            Method::Lfpt5 => {
                for (i, t) in stream[..j].iter().enumerate().filter(|(_, t)| t.ty() == ty) {
                    let set = lfpt5::generate(
                        engine,
                        model,
                        Some(&current),
                        t,
                        &cfg.pseudo,
                        rng.next_u64(),
                    )
                    .await?;
                    train.extend(items(i, &set.train, true));
                    valid.extend(items(i, &set.valid, true));
                    if on(Progress::Generated {
                        before: j,
                        set: &set,
                    })
                    .is_break()
                    {
                        return Ok(out);
                    }
                    out.pseudo.push(set);
                }
            }
        }
        let tokens = tokenize(model, stream, &train, method == Method::Lfpt5, cfg)?;
        let valid: Vec<Pair> = valid
            .iter()
            .map(|it| solver_pair(model, stream, it, cfg))
            .collect::<Result<_, _>>()?;
        let teacher = current.clone();
        let learned = learn(
            engine,
            method,
            ty,
            current,
            &teacher,
            &tokens,
            &valid,
            j,
            cfg,
            rng.next_u64(),
            on,
        )
        .await?;
        current = learned.prompt;
        out.best_step.push(learned.best_step);
        out.train_seconds.push((crate::clock::now_ms() - t0) / 1e3);
        if method == Method::Lfpt5 {
            match prompts.iter_mut().find(|(t, _)| *t == ty) {
                Some((_, p)) => *p = current.clone(),
                None => prompts.push((ty, current.clone())),
            }
            out.prompts = prompts
                .iter()
                .map(|(t, p)| (t.name().to_string(), p.clone()))
                .collect();
        } else {
            out.prompts = vec![(ALL_TASKS.to_string(), current.clone())];
        }
        if learned.stopped {
            return Ok(out);
        }
        let prompt_of = |i: usize| match method {
            Method::Lfpt5 => prompts
                .iter()
                .find(|(ty, _)| *ty == stream[i].ty())
                .map_or(&current, |(_, p)| p),
            _ => &current,
        };
        if !score_seen(
            engine,
            model,
            &stream[..=j],
            cfg,
            |i| Ok(Some(prompt_of(i))),
            &mut out,
            on,
        )
        .await?
        {
            return Ok(out);
        }
    }
    Ok(out)
}

/// Scores every task learned so far (`seen`, the last one just learned) on its test examples,
/// each through what it learned: `prepare(i)` gives task i's prompt, or sets its adapters and gives None. The row
/// goes into `out`, with Scored for each task; Ok(false) when the listener asked to stop.
pub(super) async fn score_seen<'p>(
    engine: Engine<'_>,
    model: &LoadedModel,
    seen: &[StreamTask],
    cfg: &LifelongConfig,
    mut prepare: impl FnMut(usize) -> Result<Option<&'p SoftPrompt>, LifelongError>,
    out: &mut LifelongRun,
    on: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<bool, LifelongError> {
    let t1 = crate::clock::now_ms();
    let after = seen.len() - 1;
    let mut row = Vec::with_capacity(seen.len());
    for (i, t) in seen.iter().enumerate() {
        let prompt = prepare(i)?;
        let s = eval::evaluate(
            model,
            engine,
            prompt,
            &t.info,
            &t.test,
            cfg.eval_batch,
            cfg.max_input,
        )
        .await?;
        if i == after {
            out.metrics.push(s.metric.clone());
        }
        row.push(s.value);
        if on(Progress::Scored {
            after,
            task: i,
            score: s.value,
        })
        .is_break()
        {
            out.scores.push(row);
            return Ok(false);
        }
    }
    out.scores.push(row);
    out.eval_seconds.push((crate::clock::now_ms() - t1) / 1e3);
    Ok(true)
}

fn own_items(task: usize, t: &StreamTask) -> (Vec<Item>, Vec<Item>) {
    (items(task, &t.train, false), items(task, &t.valid, false))
}

fn items(task: usize, examples: &[Example], pseudo: bool) -> Vec<Item> {
    examples
        .iter()
        .map(|e| Item {
            task,
            example: e.clone(),
            pseudo,
        })
        .collect()
}

fn solver_pair(
    model: &LoadedModel,
    stream: &[StreamTask],
    it: &Item,
    cfg: &LifelongConfig,
) -> Result<Pair, LifelongError> {
    let info = &stream[it.task].info;
    let one = std::slice::from_ref(&it.example);
    Ok(eval::pairs(model, info, one, cfg.max_input)?.remove(0))
}

/// The solver's tokens of every item, and with `generator` LFPT5's generator rows too.
fn tokenize(
    model: &LoadedModel,
    stream: &[StreamTask],
    items: &[Item],
    generator: bool,
    cfg: &LifelongConfig,
) -> Result<Vec<Tokens>, LifelongError> {
    items
        .iter()
        .map(|it| {
            Ok(Tokens {
                solver: solver_pair(model, stream, it, cfg)?,
                generator: generator
                    .then(|| {
                        let info = &stream[it.task].info;
                        generator_pair(model, info, &it.example, cfg.pseudo.max_tokens)
                    })
                    .transpose()?,
                pseudo: it.pseudo,
            })
        })
        .collect()
}

/// The generator's row of an example: "generate <task>:" -> "input | target", within
/// `max_tokens`. The target keeps its separator and label whole: the input part is what gets
/// cut to fit the cap.
pub(super) fn generator_pair(
    model: &LoadedModel,
    info: &crate::tasks::TaskInfo,
    e: &Example,
    max_tokens: usize,
) -> Result<Pair, LifelongError> {
    let tok = &model.tokenizer;
    let eos = model.t5.config.eos_token_id;
    let tail = tok.encode(&format!("{SEPARATOR} {}", target_text(info, e)))?;
    let mut target: Vec<u32> = tok.encode(&e.input)?;
    target.retain(|&t| t != eos);
    target.truncate(max_tokens.saturating_sub(tail.len()));
    target.extend(tail);
    Ok(Pair {
        input: tok.encode(&generation_input(info))?,
        target,
    })
}

struct Learned {
    prompt: SoftPrompt,
    best_step: usize,
    /// The callback asked to stop.
    stopped: bool,
}

/// One task's steps from `prompt`, the prompt with the lowest validation loss kept.
#[allow(clippy::too_many_arguments)]
async fn learn(
    engine: Engine<'_>,
    method: Method,
    ty: TaskType,
    mut prompt: SoftPrompt,
    teacher: &SoftPrompt,
    data: &[Tokens],
    valid: &[Pair],
    task: usize,
    cfg: &LifelongConfig,
    seed: u64,
    on: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<Learned, LifelongError> {
    let mut opt = Optimizer::new(cfg.optimizer, prompt.len, prompt.dim);
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = Vec::new();
    let bs = cfg.batch.clamp(1, data.len().max(1));
    let mut best = (
        valid_loss(engine, &prompt, valid, cfg).await?,
        0,
        prompt.clone(),
    );
    let coef = coefficients(ty);
    for step in 1..=cfg.steps {
        if order.len() < bs {
            order = (0..data.len()).collect();
            rng.shuffle(&mut order);
        }
        let picked: Vec<&Tokens> = order.drain(..bs).map(|i| &data[i]).collect();
        let any_pseudo = picked.iter().any(|t| t.pseudo);
        // Each loss part is a mean over its own tokens, so parts in separate passes add up to
        // the one batch's loss; the generator's rows (long targets) go in a pass of their own
        // so that the solver's short targets are not padded to their length.
        let mut g = (0f32, vec![0f32; prompt.values.len()]);
        for (rows, parts) in batches(method, coef, &picked, any_pseudo) {
            let distils = parts.iter().any(|p| p.loss == Loss::Distil);
            let objective = Objective {
                prompt: &prompt.values,
                injected: &[],
                parts: &parts,
                rows: &rows,
                teacher: distils.then_some(Teacher {
                    prompt: &teacher.values,
                    temperature: 1.0,
                }),
            };
            let part = engine.loss_and_grads(&objective, method.name()).await?;
            g.0 += part.loss;
            g.1.iter_mut().zip(part.prompt).for_each(|(a, b)| *a += b);
        }
        let g = Gradients {
            loss: g.0,
            prompt: g.1,
        };
        let mut grad = g.prompt;
        let norm = clip_grad_norm(&mut grad, cfg.max_grad_norm);
        for (what, value) in [("loss", g.loss), ("gradient norm", norm)] {
            if !value.is_finite() {
                return Err(TuneError::NonFinite { step, what, value }.into());
            }
        }
        opt.step(&mut prompt.values, &grad, cfg.lr);
        // In the page's worker, lets a Stop posted during the step be read.
        crate::clock::pause().await;
        let report = Progress::Step {
            task,
            step,
            steps: cfg.steps,
            loss: g.loss,
        };
        let stop = on(report).is_break();
        if step % cfg.valid_every.max(1) == 0 || step == cfg.steps || stop {
            let loss = valid_loss(engine, &prompt, valid, cfg).await?;
            if loss < best.0 || !best.0.is_finite() {
                best = (loss, step, prompt.clone());
            }
            if on(Progress::Validated { task, step, loss }).is_break() || stop {
                return Ok(Learned {
                    prompt: best.2,
                    best_step: best.1,
                    stopped: true,
                });
            }
        }
    }
    Ok(Learned {
        prompt: best.2,
        best_step: best.1,
        stopped: false,
    })
}

/// Validation loss of `prompt`; without validation data infinite, so that the last prompt is
/// kept.
async fn valid_loss(
    engine: Engine<'_>,
    prompt: &SoftPrompt,
    valid: &[Pair],
    cfg: &LifelongConfig,
) -> Result<f32, TuneError> {
    if valid.is_empty() {
        return Ok(f32::INFINITY);
    }
    support_loss(engine, prompt, valid, cfg.eval_batch).await
}

/// A step's loss and prompt gradient, summed over its passes.
struct Gradients {
    loss: f32,
    prompt: Vec<f32>,
}

/// A step's passes, each its rows and loss parts. PT: one target part. LFPT5: task rows
/// (`1 - k`) with, when the batch holds pseudo examples, their distillation (`k`); then the
/// generator rows (`(1 - k) lm`).
fn batches(
    method: Method,
    coef: lfpt5::Coefficients,
    picked: &[&Tokens],
    any_pseudo: bool,
) -> Vec<(Vec<Row>, Vec<Part>)> {
    let part = |weight| Part {
        weight,
        loss: Loss::Target,
    };
    let solver = |t: &Tokens, p| Row::new(&t.solver.input, t.solver.target.clone(), p);
    let tasks: Vec<Row> = picked.iter().map(|t| solver(t, 0)).collect();
    if method != Method::Lfpt5 {
        return vec![(tasks, vec![part(1.0)])];
    }
    let k = if any_pseudo { coef.kd } else { 0.0 };
    let mut first = (tasks, vec![part(1.0 - k)]);
    if any_pseudo {
        first.1.push(Part {
            weight: k,
            loss: Loss::Distil,
        });
        first
            .0
            .extend(picked.iter().filter(|t| t.pseudo).map(|t| solver(t, 1)));
    }
    let generator: Vec<Row> = picked
        .iter()
        .filter_map(|t| t.generator.as_ref())
        .map(|g| Row::new(&g.input, g.target.clone(), 0))
        .collect();
    vec![first, (generator, vec![part((1.0 - k) * coef.lm)])]
}
