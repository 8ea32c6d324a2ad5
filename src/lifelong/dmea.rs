//! DMEA (Qin, Chen & Joty, EMNLP 2023): lifelong sequence generation by dynamic module expansion
//! and adaptation, over bottleneck adapters in the frozen T5 (no prompt). For each new task:
//! 1. **search**: a new module at every adapter site beside the modules kept so far, mixed by
//!    softmax coefficients started from task similarity; only the new modules and, after the
//!    first half of the steps, the coefficients train, with an entropy term;
//! 2. **decide**: per site the module with the largest coefficient (an old one: reuse; the new
//!    one: expand); the rest are discarded;
//! 3. **adapt**: the task's path (one module per site) trains on the task with pseudo examples
//!    of the most similar earlier tasks that share a module with it, the replay loss rescaled.
//!
//! Every task also learns to write its examples ("generate <task>:" -> "input | target", as
//! LAMOL and ACM train their model), so that later tasks can replay it through its own path.
//! The baselines ([`Method::ADAPTERS`]) share every part of this: ACM is the search with fixed
//! starts (+m old, -m new) and replay of every sharing task; expand always adds; reuse, sequential
//! and multi-task keep one module set.
//!
//! DMEA has no public code. **Ours** where the paper is not followed or not known: the similarity
//! (cosine of the mean encoder states of the tasks' inputs, frozen model), how it starts the
//! coefficients (`+margin(s)` for an old module, `s` its best similarity with a task using it,
//! and `-margin(max s)` for the new one, `margin` from 0.03 to 0.15 with `s`: ACM's margins
//! for dissimilar and similar sequences), the replay set (the `replay_tasks` most similar sharing
//! tasks), the gradient scaling (the replay part weighted by `L_current / L_replay` of the step
//! before, clamped to 0.1-10), a step budget for few-shot tasks in place of epochs, Adam at 1e-3
//! without weight decay (ACM: AdamW 1.75e-4 on full data), no adapter after cross-attention.

use super::learner::{LifelongConfig, Method, Progress, generator_pair, score_seen};
use super::lfpt5::{self, PseudoConfig, PseudoSet};
use super::stream::StreamTask;
use super::{LifelongError, LifelongRun};
use crate::graph::{Adapter, Adapters, Loss, Mixture, Objective, Part, Row};
use crate::model::LoadedModel;
use crate::prompt::SoftPrompt;
use crate::prompt::engine::Engine;
use crate::prompt::eval;
use crate::prompt::optim::{Adam, clip_grad_norm};
use crate::prompt::tune::{Pair, TuneError, support_loss};
use crate::tasks::sampling::SplitMix64;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// What a task uses at one adapter site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Choice {
    /// A module of its own, added to the pool.
    New,
    /// The module that task `from` added.
    Reused { from: usize },
}

/// The adapter methods' settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleConfig {
    /// Bottleneck width (ACM: d / 16).
    pub bottleneck: usize,
    /// Search steps before the adaptation's `LifelongConfig::steps` (DMEA and ACM, from the
    /// second task on); the coefficients are frozen for the first half.
    pub search_steps: usize,
    /// Adam's rate for the modules.
    pub lr: f32,
    /// Adam's rate for the mixing coefficients (ours: 0.1, so that the search's unfrozen half,
    /// a few steps, can move a coefficient past the widest start gap, 2 x 0.15).
    pub coef_lr: f32,
    /// Weight of the coefficients' softmax entropy in the search loss (ACM: 0.01).
    pub entropy: f32,
    /// ACM's fixed start: +m for old modules, -m for the new one.
    pub acm_margin: f32,
    /// DMEA's start: the margin for similarity 0 and 1 (ACM's dissimilar and similar margins).
    pub margins: (f32, f32),
    /// DMEA replays at most this many earlier tasks (the most similar that share a module).
    pub replay_tasks: usize,
    /// Pseudo examples per replayed task, as a share of the task's own examples (ACM: 0.2).
    pub replay_share: f32,
    /// Weight of the generator rows (LAMOL's lm coefficient).
    pub lm: f32,
    /// Top-k of the pseudo-example sampler (ACM: 20).
    pub top_k: usize,
}

impl Default for ModuleConfig {
    fn default() -> Self {
        Self {
            bottleneck: 32,
            search_steps: 12,
            lr: 1e-3,
            coef_lr: 0.1,
            entropy: 0.01,
            acm_margin: 0.05,
            margins: (0.03, 0.15),
            replay_tasks: 2,
            replay_share: 0.2,
            lm: 0.25,
            top_k: 20,
        }
    }
}

impl ModuleConfig {
    /// DMEA's margin for a similarity `s` (a cosine).
    pub fn margin(&self, s: f64) -> f32 {
        let (lo, hi) = self.margins;
        lo + (hi - lo) * s.clamp(0.0, 1.0) as f32
    }
}

/// Cosine of two vectors (0 where either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// `d H / d c` for `H` the entropy of `softmax(c)`: `-p_j (ln p_j + H)`.
pub fn entropy_grad(coefs: &[f32]) -> (f32, Vec<f32>) {
    let p = Mixture {
        modules: vec![],
        coefs: coefs.to_vec(),
    }
    .weights();
    let h: f32 = -p.iter().map(|&q| q * q.max(1e-30).ln()).sum::<f32>();
    let g = p.iter().map(|&q| -q * (q.max(1e-30).ln() + h)).collect();
    (h, g)
}

/// Every module kept so far, per site, with the task that added it.
struct Pool {
    d: usize,
    r: usize,
    sites: Vec<Vec<(Adapter, usize)>>,
}

impl Pool {
    /// The model of one path: its module at every site, weight 1.
    fn path(&self, path: &[usize]) -> Adapters {
        Adapters {
            d: self.d,
            bottleneck: self.r,
            sites: path
                .iter()
                .zip(&self.sites)
                .map(|(&m, site)| Mixture {
                    modules: vec![site[m].0.clone()],
                    coefs: vec![0.0],
                })
                .collect(),
        }
    }

    /// A fresh module at every site for `task`: the path to them.
    fn expand(&mut self, task: usize, rng: &mut SplitMix64) -> Vec<usize> {
        let (d, r) = (self.d, self.r);
        self.sites
            .iter_mut()
            .map(|site| {
                site.push((Adapter::new(d, r, rng), task));
                site.len() - 1
            })
            .collect()
    }
}

/// One task's token rows: the solver's and (for methods that replay) the generator's.
#[derive(Default, Clone)]
struct Rows {
    solver: Vec<Pair>,
    generator: Vec<Pair>,
}

impl Rows {
    fn of(
        model: &LoadedModel,
        task: &StreamTask,
        examples: &[crate::tasks::Example],
        generator: bool,
        cfg: &LifelongConfig,
    ) -> Result<Self, LifelongError> {
        let solver = eval::pairs(model, &task.info, examples, cfg.max_input)?;
        let generator = if generator {
            examples
                .iter()
                .map(|e| generator_pair(model, &task.info, e, cfg.pseudo.max_tokens))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Self { solver, generator })
    }

    fn extend(&mut self, other: Rows) {
        self.solver.extend(other.solver);
        self.generator.extend(other.generator);
    }
}

/// How a phase trains: which modules, the coefficients from which step, the replay weight.
struct Phase<'a> {
    /// Per site, per module of the mixture: whether it trains.
    trainable: Vec<Vec<bool>>,
    /// The coefficients train from this step on (`None`: never).
    coefs_from: Option<usize>,
    /// Replay rows' part weighted by `L_current / L_replay` (DMEA) or 1.
    scaled: bool,
    current: &'a Rows,
    replay: &'a Rows,
    /// Validation pairs: the lowest validation loss's modules are kept (empty: the last).
    valid: &'a [Pair],
    steps: usize,
    /// Step number of the phase's first step within the task (search, then adaptation).
    first_step: usize,
    task_steps: usize,
}

struct Trained {
    model: Adapters,
    best_step: usize,
    stopped: bool,
}

/// Every trainable value of `a` under `mask`, in site, module, tensor order.
fn gather(a: &Adapters, mask: &[Vec<bool>]) -> Vec<f32> {
    let mut out = Vec::new();
    for (site, m) in a.sites.iter().zip(mask) {
        for (ad, _) in site.modules.iter().zip(m).filter(|(_, t)| **t) {
            for (_, v, _) in ad.tensors(a.d, a.bottleneck) {
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// The inverse of [`gather`].
fn scatter(a: &mut Adapters, mask: &[Vec<bool>], values: &[f32]) {
    let mut at = 0;
    for (site, m) in a.sites.iter_mut().zip(mask) {
        for (ad, _) in site.modules.iter_mut().zip(m).filter(|(_, t)| **t) {
            for v in ad.tensors_mut() {
                let n = v.len();
                v.copy_from_slice(&values[at..at + n]);
                at += n;
            }
        }
    }
}

fn add_into(acc: &mut Adapters, g: &Adapters) {
    for (a, b) in acc.sites.iter_mut().zip(&g.sites) {
        for (x, y) in a.modules.iter_mut().zip(&b.modules) {
            for (u, v) in x
                .tensors_mut()
                .into_iter()
                .zip(y.tensors(g.d, g.bottleneck))
            {
                u.iter_mut().zip(v.1).for_each(|(p, q)| *p += q);
            }
        }
        a.coefs.iter_mut().zip(&b.coefs).for_each(|(p, q)| *p += q);
    }
}

fn empty_prompt(d: usize) -> SoftPrompt {
    SoftPrompt {
        len: 0,
        dim: d,
        values: Vec::new(),
    }
}

/// Trains `model` for one phase (search or adaptation) of task `task`.
#[allow(clippy::too_many_arguments)]
async fn train(
    engine: Engine<'_>,
    mut model: Adapters,
    phase: &Phase<'_>,
    task: usize,
    cfg: &LifelongConfig,
    seed: u64,
    on: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<Trained, LifelongError> {
    let mc = &cfg.modules;
    let d = model.d;
    let no_prompt = empty_prompt(d);
    let mut rng = SplitMix64::new(seed);
    let mut params = gather(&model, &phase.trainable);
    let mut adam = Adam::new(params.len());
    let n_coefs: usize = model.sites.iter().map(|m| m.coefs.len()).sum();
    let mut coef_adam = Adam::new(n_coefs);
    // (solver item?, index): the current task's items, then the replayed ones.
    let items: Vec<(bool, usize)> = (0..phase.current.solver.len())
        .map(|i| (false, i))
        .chain((0..phase.replay.solver.len()).map(|i| (true, i)))
        .collect();
    let bs = cfg.batch.clamp(1, items.len().max(1));
    let mut order: Vec<usize> = Vec::new();
    let mut replay_weight = 1f32;
    engine.set_adapters(Some(&model))?;
    let valid_loss = async |model: &Adapters| -> Result<f32, LifelongError> {
        if phase.valid.is_empty() {
            return Ok(f32::INFINITY);
        }
        engine.set_adapters(Some(model))?;
        Ok(support_loss(engine, &no_prompt, phase.valid, cfg.eval_batch).await?)
    };
    let mut best = (valid_loss(&model).await?, 0, model.clone());
    for s in 1..=phase.steps {
        let step = phase.first_step + s - 1;
        if order.len() < bs {
            order = (0..items.len()).collect();
            rng.shuffle(&mut order);
        }
        let picked: Vec<(bool, usize)> = order.drain(..bs).map(|i| items[i]).collect();
        let rows_of = |replay: bool| if replay { phase.replay } else { phase.current };
        let solver: Vec<Row> = picked
            .iter()
            .map(|&(r, i)| {
                let p = &rows_of(r).solver[i];
                Row::new(&p.input, p.target.clone(), r as usize)
            })
            .collect();
        let generator: Vec<Row> = picked
            .iter()
            .filter_map(|&(r, i)| rows_of(r).generator.get(i))
            .map(|p| Row::new(&p.input, p.target.clone(), 0))
            .collect();
        let target = |weight| Part {
            weight,
            loss: Loss::Target,
        };
        let solver_parts = [target(1.0), target(replay_weight)];
        let generator_parts = [target(mc.lm)];
        let mut passes = vec![(&solver, &solver_parts[..])];
        if !generator.is_empty() {
            passes.push((&generator, &generator_parts[..]));
        }
        let (mut loss, mut grads, mut part_losses) = (0f32, None::<Adapters>, [0f32; 2]);
        for (rows, parts) in passes {
            let objective = Objective {
                prompt: &[],
                injected: &[],
                parts,
                rows,
                teacher: None,
            };
            let g = engine.loss_and_grads(&objective, "adapters").await?;
            loss += g.loss;
            if parts.len() == 2 {
                part_losses = [g.parts[0], g.parts[1]];
            }
            let a = g
                .adapters
                .ok_or_else(|| TuneError::ReadBack("the adapters received no gradient".into()))?;
            match &mut grads {
                Some(acc) => add_into(acc, &a),
                None => grads = Some(a),
            }
        }
        let grads = grads.expect("one pass at least");
        // The replay part balanced against the current task's (ours), from this step's losses
        // for the next.
        if phase.scaled && part_losses[1] > 0.0 && part_losses[0].is_finite() {
            replay_weight = (part_losses[0] / part_losses[1]).clamp(0.1, 10.0);
        }
        let mut g = gather(&grads, &phase.trainable);
        let norm = clip_grad_norm(&mut g, cfg.max_grad_norm);
        for (what, value) in [("loss", loss), ("gradient norm", norm)] {
            if !value.is_finite() {
                return Err(TuneError::NonFinite { step, what, value }.into());
            }
        }
        adam.step(&mut params, &g, mc.lr);
        scatter(&mut model, &phase.trainable, &params);
        if phase.coefs_from.is_some_and(|from| s > from) {
            let mut coefs: Vec<f32> = model.sites.iter().flat_map(|m| m.coefs.clone()).collect();
            let mut cg = Vec::with_capacity(n_coefs);
            for (m, gm) in model.sites.iter().zip(&grads.sites) {
                let (h, dh) = entropy_grad(&m.coefs);
                loss += mc.entropy * h;
                cg.extend(gm.coefs.iter().zip(dh).map(|(a, b)| a + mc.entropy * b));
            }
            coef_adam.step(&mut coefs, &cg, mc.coef_lr);
            let mut at = 0;
            for m in &mut model.sites {
                let n = m.coefs.len();
                m.coefs.copy_from_slice(&coefs[at..at + n]);
                at += n;
            }
        }
        engine.set_adapters(Some(&model))?;
        crate::clock::pause().await;
        let stop = on(Progress::Step {
            task,
            step,
            steps: phase.task_steps,
            loss,
        })
        .is_break();
        let last = s == phase.steps;
        if !phase.valid.is_empty() && (s % cfg.valid_every.max(1) == 0 || last || stop) {
            let loss = valid_loss(&model).await?;
            if loss < best.0 || !best.0.is_finite() {
                best = (loss, step, model.clone());
            }
            if on(Progress::Validated { task, step, loss }).is_break() || stop {
                return Ok(Trained {
                    model: best.2,
                    best_step: best.1,
                    stopped: true,
                });
            }
        } else if stop {
            return Ok(Trained {
                model,
                best_step: step,
                stopped: true,
            });
        }
    }
    Ok(if phase.valid.is_empty() {
        Trained {
            model,
            best_step: phase.first_step + phase.steps - 1,
            stopped: false,
        }
    } else {
        Trained {
            model: best.2,
            best_step: best.1,
            stopped: false,
        }
    })
}

/// A task's representation: the mean encoder state (frozen model, no adapters) over every
/// token of its training inputs.
async fn representation(
    engine: Engine<'_>,
    model: &LoadedModel,
    task: &StreamTask,
    cfg: &LifelongConfig,
) -> Result<Vec<f32>, LifelongError> {
    engine.set_adapters(None)?;
    let d = engine.config().d_model;
    let pairs = eval::pairs(model, &task.info, &task.train, cfg.max_input)?;
    let (mut sum, mut n) = (vec![0f64; d], 0usize);
    for chunk in pairs.chunks(cfg.eval_batch.max(1)) {
        let inputs: Vec<Vec<u32>> = chunk.iter().map(|p| p.input.clone()).collect();
        let positions: Vec<Vec<usize>> = inputs.iter().map(|i| (0..i.len()).collect()).collect();
        for states in engine.pooled_states(&inputs, &positions).await? {
            for row in states.chunks(d) {
                sum.iter_mut().zip(row).for_each(|(s, x)| *s += *x as f64);
                n += 1;
            }
        }
    }
    Ok(sum.iter().map(|s| (*s / n.max(1) as f64) as f32).collect())
}

/// Runs one adapter method over `stream` (see the module's notes); the engine is left without
/// adapters, whatever the outcome.
pub async fn run(
    engine: Engine<'_>,
    model: &LoadedModel,
    stream: &[StreamTask],
    method: Method,
    cfg: &LifelongConfig,
    on: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<LifelongRun, LifelongError> {
    let out = run_adapters(engine, model, stream, method, cfg, on).await;
    engine.set_adapters(None)?;
    out
}

async fn run_adapters(
    engine: Engine<'_>,
    model: &LoadedModel,
    stream: &[StreamTask],
    method: Method,
    cfg: &LifelongConfig,
    on: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<LifelongRun, LifelongError> {
    let mc = &cfg.modules;
    let c = engine.config().clone();
    let sites = Adapters::site_count(&c);
    let mut pool = Pool {
        d: c.d_model,
        r: mc.bottleneck.max(1),
        sites: vec![Vec::new(); sites],
    };
    let per_module = Adapter::zeros(pool.d, pool.r).parameters();
    let mut rng = SplitMix64::new(cfg.seed ^ 0xd3ea);
    let order = stream.iter().map(|t| t.info.name.clone()).collect();
    let mut out = LifelongRun::empty(method, cfg.seed, order);
    let mut paths: Vec<Vec<usize>> = Vec::new();
    let mut reps: Vec<Vec<f32>> = Vec::new();
    // Methods whose later tasks replay an earlier task learn to write its examples.
    let writes = matches!(method, Method::Dmea | Method::Acm | Method::Reuse);
    for (j, task) in stream.iter().enumerate() {
        let t0 = crate::clock::now_ms();
        let rep = representation(engine, model, task, cfg).await?;
        let sims: Vec<f64> = reps.iter().map(|r| cosine(&rep, r)).collect();
        reps.push(rep);
        out.similarity.push(sims.clone());
        let own = Rows::of(model, task, &task.train, writes, cfg)?;
        let valid = eval::pairs(model, &task.info, &task.valid, cfg.max_input)?;
        let task_steps = method.task_steps(j, cfg);
        let single = matches!(
            method,
            Method::Reuse | Method::SequentialAdapters | Method::MultitaskAdapters
        );
        // 1-2. The path: new modules, the one set, or the search's decision.
        let (path, choices) = if j == 0 || method == Method::Expand {
            (pool.expand(j, &mut rng), vec![Choice::New; sites])
        } else if single {
            (paths[0].clone(), vec![Choice::Reused { from: 0 }; sites])
        } else {
            let mut mixture = Adapters {
                d: pool.d,
                bottleneck: pool.r,
                sites: Vec::with_capacity(sites),
            };
            let mut trainable = Vec::with_capacity(sites);
            for (s, site) in pool.sites.iter().enumerate() {
                // Each old module's best similarity with a task whose path uses it.
                let sim: Vec<f64> = (0..site.len())
                    .map(|m| {
                        (0..j)
                            .filter(|&i| paths[i][s] == m)
                            .map(|i| sims[i])
                            .fold(f64::NEG_INFINITY, f64::max)
                    })
                    .collect();
                let best = sim.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (old, new) = match method {
                    Method::Dmea => (
                        sim.iter().map(|&x| mc.margin(x)).collect(),
                        -mc.margin(best),
                    ),
                    _ => (vec![mc.acm_margin; site.len()], -mc.acm_margin),
                };
                let mut modules: Vec<Adapter> = site.iter().map(|(a, _)| a.clone()).collect();
                modules.push(Adapter::new(pool.d, pool.r, &mut rng));
                let mut coefs: Vec<f32> = old;
                coefs.push(new);
                trainable.push((0..modules.len()).map(|m| m == site.len()).collect());
                mixture.sites.push(Mixture { modules, coefs });
            }
            let none = Rows::default();
            let phase = Phase {
                trainable,
                coefs_from: Some(mc.search_steps / 2),
                scaled: false,
                current: &own,
                replay: &none,
                valid: &[],
                steps: mc.search_steps,
                first_step: 1,
                task_steps,
            };
            let searched = train(engine, mixture, &phase, j, cfg, rng.next_u64(), on).await?;
            if searched.stopped {
                return Ok(out);
            }
            let mut path = Vec::with_capacity(sites);
            let mut choices = Vec::with_capacity(sites);
            for (s, mut m) in searched.model.sites.into_iter().enumerate() {
                let w = m.weights();
                let pick = (0..w.len()).fold(0, |b, i| if w[i] > w[b] { i } else { b });
                if pick + 1 == w.len() {
                    let new = m.modules.pop().expect("the new module");
                    pool.sites[s].push((new, j));
                    path.push(pool.sites[s].len() - 1);
                    choices.push(Choice::New);
                } else {
                    path.push(pick);
                    choices.push(Choice::Reused {
                        from: pool.sites[s][pick].1,
                    });
                }
            }
            (path, choices)
        };
        if on(Progress::Decided {
            task: j,
            choices: &choices,
        })
        .is_break()
        {
            return Ok(out);
        }
        let added = choices.iter().filter(|c| **c == Choice::New).count() * per_module;
        // 3. Replay: pseudo examples of earlier tasks, each written through its own path.
        let sharing = |i: usize| paths[i].iter().zip(&path).any(|(a, b)| a == b);
        let mut replayed: Vec<usize> = match method {
            Method::Dmea | Method::Acm => (0..j).filter(|&i| sharing(i)).collect(),
            Method::Reuse => (0..j).collect(),
            _ => Vec::new(),
        };
        if method == Method::Dmea {
            replayed.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]));
            replayed.truncate(mc.replay_tasks);
        }
        let mut replay = Rows::default();
        let quota = ((mc.replay_share * (task.train.len() + task.valid.len()) as f32).ceil()
            as usize)
            .max(2);
        let pseudo = PseudoConfig {
            per_class: quota,
            top_k: mc.top_k,
            ..cfg.pseudo.clone()
        };
        for &i in &replayed {
            engine.set_adapters(Some(&pool.path(&paths[i])))?;
            let set: PseudoSet =
                lfpt5::generate(engine, model, None, &stream[i], &pseudo, rng.next_u64()).await?;
            // Kept pseudo examples all train here (the validation set is the current task's).
            let mut examples = set.train.clone();
            examples.extend(set.valid.iter().cloned());
            replay.extend(Rows::of(model, &stream[i], &examples, writes, cfg)?);
            let stop = on(Progress::Generated {
                before: j,
                set: &set,
            })
            .is_break();
            out.pseudo.push(set);
            if stop {
                return Ok(out);
            }
        }
        let mut current = own;
        let mut valid = valid;
        if method == Method::MultitaskAdapters {
            for t in &stream[..j] {
                current.extend(Rows::of(model, t, &t.train, false, cfg)?);
                valid.extend(eval::pairs(model, &t.info, &t.valid, cfg.max_input)?);
            }
        }
        // 4. Adaptation of the path.
        let phase = Phase {
            trainable: vec![vec![true]; sites],
            coefs_from: None,
            scaled: method == Method::Dmea,
            current: &current,
            replay: &replay,
            valid: &valid,
            steps: cfg.steps,
            first_step: task_steps - cfg.steps + 1,
            task_steps,
        };
        let adapted = train(engine, pool.path(&path), &phase, j, cfg, rng.next_u64(), on).await?;
        for ((site, &m), mixture) in pool.sites.iter_mut().zip(&path).zip(adapted.model.sites) {
            site[m].0 = mixture.modules.into_iter().next().expect("one module");
        }
        paths.push(path);
        out.modules.push(choices);
        out.parameters.push(added);
        out.best_step.push(adapted.best_step);
        out.train_seconds.push((crate::clock::now_ms() - t0) / 1e3);
        if adapted.stopped {
            return Ok(out);
        }
        // 5. Every task so far, scored through its own path.
        let prepare = |i: usize| {
            engine.set_adapters(Some(&pool.path(&paths[i])))?;
            Ok(None)
        };
        if !score_seen(engine, model, &stream[..=j], cfg, prepare, &mut out, on).await? {
            return Ok(out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_gradient_matches_finite_differences() {
        let c = [0.3f32, -0.2, 0.05];
        let (_, g) = entropy_grad(&c);
        for j in 0..3 {
            let h = |x: f32| {
                let mut c = c;
                c[j] += x;
                entropy_grad(&c).0
            };
            let fd = (h(1e-3) - h(-1e-3)) / 2e-3;
            assert!((fd - g[j]).abs() < 1e-3, "{j}: {fd} vs {}", g[j]);
        }
        // Equal coefficients: the entropy's maximum, ln 3, and a zero gradient.
        let (h, g) = entropy_grad(&[0.1; 3]);
        assert!((h - 3f32.ln()).abs() < 1e-6 && g.iter().all(|x| x.abs() < 1e-6));
    }

    #[test]
    fn margins_follow_similarity() {
        let m = ModuleConfig::default();
        assert_eq!((m.margin(0.0), m.margin(1.0)), (0.03, 0.15));
        assert_eq!(m.margin(-0.5), 0.03);
        assert!((m.margin(0.5) - 0.09).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn gather_and_scatter_are_inverse_over_the_mask() {
        let mut rng = SplitMix64::new(3);
        let mut a = Adapters {
            d: 4,
            bottleneck: 2,
            sites: (0..2)
                .map(|_| Mixture {
                    modules: vec![Adapter::new(4, 2, &mut rng), Adapter::new(4, 2, &mut rng)],
                    coefs: vec![0.0; 2],
                })
                .collect(),
        };
        let mask = vec![vec![false, true], vec![true, false]];
        let v = gather(&a, &mask);
        assert_eq!(v.len(), 2 * a.sites[0].modules[0].parameters());
        let before = a.clone();
        scatter(&mut a, &mask, &vec![1.0; v.len()]);
        assert_eq!(a.sites[0].modules[0], before.sites[0].modules[0]);
        assert!(a.sites[0].modules[1].down.iter().all(|&x| x == 1.0));
        assert!(a.sites[1].modules[0].up_bias.iter().all(|&x| x == 1.0));
        assert_eq!(a.sites[1].modules[1], before.sites[1].modules[1]);
    }
}
