//! ERDA's learner and the baselines that show its effect, all over the same frozen vectors.
//! Per task: pass 1 over the support set (+ retrieved sentences) with Adam (lr 1e-3, batch 5,
//! clip 1.0); then one memory example per new relation (the support example nearest its class
//! mean); then two passes over support + retrieved + all memory, with the entity-swap
//! regulariser on memory. The optimiser is reset each pass; prototypes (mean of the encoded
//! relation name and its memory example, the name alone before it has one) are recomputed
//! before every pass and before evaluation.
//!
//! **Ours**: the entity swap replaces the head (or tail) half of a memory example's *vector* by
//! another memory example's, where the authors re-encode the edited sentence: our encoder is
//! frozen and the halves are pooled per entity, so this is the same edit without re-encoding.

use super::RelationError;
use super::augment::{Calibration, PoolIndex, Retrieved, calibrate, retrieve};
use super::classifier::Classifier;
use super::encoder::Vectors;
use super::head::Head;
use super::loss::{Weights, prototype_loss, swap_loss, unit};
use super::stream::{Item, Stream};
use crate::prompt::optim::{Adam, clip_grad_norm};
use crate::tasks::sampling::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Erda,
    /// Frozen nearest class mean: no training, class means of the raw vectors.
    Ncm,
    /// The head trained task after task, no memory (prototypes: the names alone).
    Sequential,
    /// Memory replay only: no augmentation, no regulariser.
    Replay,
    ErdaNoAug,
    ErdaNoReg,
    /// The head trained afresh on every support set seen so far (upper bound).
    Joint,
}

pub const METHODS: [Method; 7] = [
    Method::Erda,
    Method::Ncm,
    Method::Sequential,
    Method::Replay,
    Method::ErdaNoAug,
    Method::ErdaNoReg,
    Method::Joint,
];

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Erda => "erda",
            Method::Ncm => "ncm",
            Method::Sequential => "sequential",
            Method::Replay => "replay",
            Method::ErdaNoAug => "erda-no-aug",
            Method::ErdaNoReg => "erda-no-reg",
            Method::Joint => "joint",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        METHODS.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let all: Vec<_> = METHODS.iter().map(|m| m.name()).collect();
            format!("unknown relation method {s:?} (one of {})", all.join(", "))
        })
    }

    fn memory(self) -> bool {
        !matches!(self, Method::Ncm | Method::Sequential)
    }

    fn augments(self) -> bool {
        matches!(self, Method::Erda | Method::ErdaNoReg)
    }

    fn regularises(self) -> bool {
        matches!(self, Method::Erda | Method::ErdaNoAug)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Support examples per relation from the second task on.
    pub shots: usize,
    /// The first task's examples per relation (ERDA: 100).
    pub first_cap: usize,
    pub head_dim: usize,
    pub lr: f32,
    pub batch: usize,
    pub clip: f32,
    pub passes: usize,
    /// Same-pair sentences retrieved per support example, at most.
    pub max_same: usize,
    /// Candidate negatives of the lenient metric.
    pub lenient_negatives: usize,
    pub weights: Weights,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shots: 5,
            first_cap: 100,
            head_dim: 256,
            lr: 1e-3,
            batch: 5,
            clip: 1.0,
            passes: 3,
            max_same: 16,
            lenient_negatives: 10,
            weights: Weights::default(),
        }
    }
}

/// A sentence ERDA retrieved for a support example, as shown to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augmented {
    pub support: String,
    pub retrieved: String,
    pub label: String,
    pub similarity: f32,
    pub same_pair: bool,
    /// The pool sentence's own relation, when the data knows it (retrieval quality only).
    pub truth: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AfterTask {
    pub task: String,
    pub seen_relations: usize,
    /// Gold against every seen relation.
    pub strict: f64,
    /// Gold against up to `lenient_negatives` seen relations drawn per example (ERDA's metric).
    pub lenient: f64,
    /// Strict accuracy on each task seen so far, in stream order.
    pub per_task: Vec<f64>,
    pub support: usize,
    pub augmented: Vec<Augmented>,
    /// The memory after this task: (relation, sentence).
    pub memory: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationRun {
    pub method: Method,
    pub shots: usize,
    pub seed: u64,
    pub order: Vec<String>,
    pub after: Vec<AfterTask>,
}

/// The stream with its vectors looked up once, the pool indexed and the threshold calibrated.
pub struct Prepared<'a> {
    pub stream: &'a Stream,
    pub dim: usize,
    names: Vec<Vec<f32>>,
    /// Per task: train and test vectors, in the items' order.
    train: Vec<Vec<Vec<f32>>>,
    test: Vec<Vec<Vec<f32>>>,
    pool: PoolIndex,
    pool_x: Vec<Vec<f32>>,
    pub calibration: Calibration,
}

impl<'a> Prepared<'a> {
    pub fn new(stream: &'a Stream, vectors: &Vectors) -> Result<Self, RelationError> {
        stream.check_encoded(vectors)?;
        let x = |i: &Item| vectors.get(&i.instance.text).expect("checked").to_vec();
        let train: Vec<Vec<Vec<f32>>> = stream
            .tasks
            .iter()
            .map(|t| t.train.iter().map(x).collect())
            .collect();
        let pool_x: Vec<Vec<f32>> = stream.pool.iter().map(x).collect();
        let pool = PoolIndex::new(
            vectors.dim,
            pool_x
                .iter()
                .map(|v| &v[..])
                .zip(stream.pool.iter().map(|i| i.instance.pair())),
        );
        let first = &stream.tasks[0];
        let labelled: Vec<(&[f32], usize)> = train[0]
            .iter()
            .zip(&first.train)
            .map(|(v, i)| (&v[..], i.relation.expect("labelled")))
            .collect();
        let calibration = calibrate(&labelled);
        Ok(Self {
            stream,
            dim: vectors.dim,
            names: stream
                .relations
                .iter()
                .map(|r| vectors.get(&r.name.text).expect("checked").to_vec())
                .collect(),
            test: stream
                .tasks
                .iter()
                .map(|t| t.test.iter().map(x).collect())
                .collect(),
            train,
            pool,
            pool_x,
            calibration,
        })
    }
}

/// The task order for a seed: the first task fixed, the rest permuted (ERDA's protocol).
pub fn order(tasks: usize, seed: u64) -> Vec<usize> {
    let mut rest: Vec<usize> = (1..tasks).collect();
    SplitMix64::new(seed).shuffle(&mut rest);
    std::iter::once(0).chain(rest).collect()
}

/// A training example: its vector, its relation, and whether it is a memory example.
#[derive(Clone)]
struct Sample {
    x: Vec<f32>,
    relation: usize,
    memory: bool,
}

/// Prototypes of `seen` (unit rows): mean of the unit name and unit memory vectors under the
/// head.
fn prototypes(
    head: &Head,
    p: &Prepared,
    seen: &[usize],
    memory: &BTreeMap<usize, Vec<f32>>,
) -> Vec<f32> {
    let names: Vec<f32> = seen.iter().flat_map(|&r| p.names[r].clone()).collect();
    let zn = head.forward(&names);
    let d = head.dim_out;
    seen.iter()
        .enumerate()
        .flat_map(|(k, r)| {
            let mut v = unit(&zn[k * d..(k + 1) * d]);
            if let Some(m) = memory.get(r) {
                let zm = unit(&head.forward(m));
                v.iter_mut().zip(zm).for_each(|(a, b)| *a = (*a + b) / 2.0);
            }
            unit(&v)
        })
        .collect()
}

/// Strict and lenient accuracy of `scores` rows (one per example, over `seen`) with gold index
/// `gold`; lenient draws the candidate negatives from `rng`.
fn accuracy(
    scores: &[Vec<f32>],
    gold: &[usize],
    negatives: usize,
    rng: &mut SplitMix64,
) -> (Vec<bool>, f64) {
    let mut strict = Vec::new();
    let mut lenient = 0usize;
    for (s, &g) in scores.iter().zip(gold) {
        strict.push((0..s.len()).all(|j| j == g || s[j] < s[g]));
        let mut others: Vec<usize> = (0..s.len()).filter(|&j| j != g).collect();
        rng.shuffle(&mut others);
        others.truncate(negatives);
        lenient += others.iter().all(|&j| s[j] < s[g]) as usize;
    }
    (strict, lenient as f64 / gold.len().max(1) as f64)
}

pub(crate) fn cosines(z: &[f32], d: usize, protos: &[f32]) -> Vec<Vec<f32>> {
    z.chunks(d)
        .map(|row| {
            let u = unit(row);
            protos
                .chunks(d)
                .map(|p| u.iter().zip(p).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect()
}

/// One run of `method` over the stream in `seed`'s order, and the classifier it ends with;
/// `on_task` sees each task's results as they come (and may stop the run by returning false).
pub fn run(
    p: &Prepared,
    method: Method,
    cfg: &Config,
    seed: u64,
    on_task: &mut dyn FnMut(&AfterTask) -> bool,
) -> Result<(RelationRun, Classifier), RelationError> {
    let s = p.stream;
    let order = order(s.tasks.len(), seed);
    let mut rng = SplitMix64::new(seed ^ 0x5EED_E4DA);
    let mut head = Head::new(p.dim, cfg.head_dim, seed);
    let mut seen: Vec<usize> = Vec::new();
    let mut memory: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    let mut memory_text: BTreeMap<usize, String> = BTreeMap::new();
    let mut class_means: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    let mut all_support: Vec<Sample> = Vec::new();
    let mut after = Vec::new();
    for (k, &ti) in order.iter().enumerate() {
        let task = &s.tasks[ti];
        seen.extend(&task.relations);
        // The support set: the first task's examples (capped), then K per relation.
        let cap = if k == 0 { cfg.first_cap } else { cfg.shots };
        let mut idx: Vec<usize> = (0..task.train.len()).collect();
        rng.shuffle(&mut idx);
        let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
        let support_idx: Vec<usize> = idx
            .into_iter()
            .filter(|&i| {
                let n = taken
                    .entry(task.train[i].relation.expect("labelled"))
                    .or_default();
                *n += 1;
                *n <= cap
            })
            .collect();
        let support: Vec<Sample> = support_idx
            .iter()
            .map(|&i| Sample {
                x: p.train[ti][i].clone(),
                relation: task.train[i].relation.expect("labelled"),
                memory: false,
            })
            .collect();
        let retrieved: Vec<Retrieved> = if method.augments() && k > 0 {
            let q: Vec<(&[f32], (String, String))> = support_idx
                .iter()
                .map(|&i| (&p.train[ti][i][..], task.train[i].instance.pair()))
                .collect();
            retrieve(&p.pool, &q, p.calibration.threshold, cfg.max_same)
        } else {
            Vec::new()
        };
        let augmented: Vec<Sample> = retrieved
            .iter()
            .map(|r| Sample {
                x: p.pool_x[r.pool].clone(),
                relation: support[r.support].relation,
                memory: false,
            })
            .collect();
        if method == Method::Ncm {
            for &r in &task.relations {
                let mut m = vec![0.0; p.dim];
                let of: Vec<&Sample> = support.iter().filter(|x| x.relation == r).collect();
                for x in &of {
                    m.iter_mut()
                        .zip(unit(&x.x))
                        .for_each(|(a, b)| *a += b / of.len() as f32);
                }
                class_means.insert(r, m);
            }
        } else {
            let data: Vec<Sample> = if method == Method::Joint {
                head = Head::new(p.dim, cfg.head_dim, seed);
                all_support.extend(support.iter().cloned());
                all_support.clone()
            } else {
                support.iter().chain(&augmented).cloned().collect()
            };
            for pass in 0..cfg.passes {
                let mem = if method.memory() {
                    &memory
                } else {
                    &BTreeMap::new()
                };
                let protos = prototypes(&head, p, &seen, mem);
                let mut set = data.clone();
                if pass > 0 && method.memory() && method != Method::Joint {
                    set.extend(memory.iter().map(|(&r, x)| Sample {
                        x: x.clone(),
                        relation: r,
                        memory: true,
                    }));
                }
                rng.shuffle(&mut set);
                let mut adam = Adam::new(head.params.len());
                for batch in set.chunks(cfg.batch.max(1)) {
                    step(
                        &mut head,
                        batch,
                        &seen,
                        &protos,
                        method.regularises() && pass > 0,
                        &memory,
                        cfg,
                        &mut rng,
                        &mut adam,
                    )?;
                }
                if pass == 0 && method.memory() {
                    select_memory(
                        &head,
                        task,
                        &support_idx,
                        &p.train[ti],
                        &mut memory,
                        &mut memory_text,
                    );
                }
            }
        }
        // Evaluation on the test sets of every task seen so far.
        let (protos, d) = if method == Method::Ncm {
            let m: Vec<f32> = seen.iter().flat_map(|r| unit(&class_means[r])).collect();
            (m, p.dim)
        } else {
            let mem = if method.memory() {
                &memory
            } else {
                &BTreeMap::new()
            };
            (prototypes(&head, p, &seen, mem), head.dim_out)
        };
        let mut eval_rng = SplitMix64::new(seed.wrapping_add(k as u64));
        let (mut hits, mut lenient_sum, mut n_all) = (Vec::new(), 0.0, 0usize);
        let mut per_task = Vec::new();
        for &tj in &order[..=k] {
            let t = &s.tasks[tj];
            let x: Vec<f32> = p.test[tj].iter().flatten().copied().collect();
            let z = if method == Method::Ncm {
                x
            } else {
                head.forward(&x)
            };
            let scores = cosines(&z, d, &protos);
            let gold: Vec<usize> = t
                .test
                .iter()
                .map(|i| {
                    seen.iter()
                        .position(|&r| Some(r) == i.relation)
                        .expect("seen")
                })
                .collect();
            let (strict, lenient) = accuracy(&scores, &gold, cfg.lenient_negatives, &mut eval_rng);
            per_task
                .push(strict.iter().filter(|&&b| b).count() as f64 / strict.len().max(1) as f64);
            lenient_sum += lenient * gold.len() as f64;
            n_all += gold.len();
            hits.extend(strict);
        }
        let a = AfterTask {
            task: task.name.clone(),
            seen_relations: seen.len(),
            strict: hits.iter().filter(|&&b| b).count() as f64 / n_all.max(1) as f64,
            lenient: lenient_sum / n_all.max(1) as f64,
            per_task,
            support: support.len(),
            augmented: retrieved
                .iter()
                .map(|r| {
                    let item = &task.train[support_idx[r.support]];
                    Augmented {
                        support: item.marked.clone(),
                        retrieved: s.pool[r.pool].marked.clone(),
                        label: s.relations[support[r.support].relation].label.clone(),
                        similarity: r.similarity,
                        same_pair: r.same_pair,
                        truth: s.pool[r.pool].truth.clone(),
                    }
                })
                .collect(),
            memory: memory_text
                .iter()
                .map(|(&r, t)| (s.relations[r].label.clone(), t.clone()))
                .collect(),
        };
        let go_on = on_task(&a);
        after.push(a);
        if !go_on {
            break;
        }
    }
    let classifier = Classifier {
        method,
        labels: seen.iter().map(|&r| s.relations[r].label.clone()).collect(),
        dim: if method == Method::Ncm {
            p.dim
        } else {
            head.dim_out
        },
        prototypes: if method == Method::Ncm {
            seen.iter().flat_map(|r| unit(&class_means[r])).collect()
        } else {
            let mem = if method.memory() {
                &memory
            } else {
                &BTreeMap::new()
            };
            prototypes(&head, p, &seen, mem)
        },
        head: (method != Method::Ncm).then_some(head),
    };
    Ok((
        RelationRun {
            method,
            shots: cfg.shots,
            seed,
            order: order.iter().map(|&i| s.tasks[i].name.clone()).collect(),
            after,
        },
        classifier,
    ))
}

/// One optimiser step on a batch: the prototype losses, and on its memory examples the
/// entity-swap regulariser against a partner from the memory.
#[allow(clippy::too_many_arguments)]
fn step(
    head: &mut Head,
    batch: &[Sample],
    seen: &[usize],
    protos: &[f32],
    regularise: bool,
    memory: &BTreeMap<usize, Vec<f32>>,
    cfg: &Config,
    rng: &mut SplitMix64,
    adam: &mut Adam,
) -> Result<(), RelationError> {
    let d = head.dim_out;
    let half = head.dim_in / 2;
    let x: Vec<f32> = batch.iter().flat_map(|b| b.x.clone()).collect();
    let labels: Vec<usize> = batch
        .iter()
        .map(|b| seen.iter().position(|&r| r == b.relation).expect("seen"))
        .collect();
    let z = head.forward(&x);
    let (_, dz) = prototype_loss(&z, d, &labels, protos, &cfg.weights);
    let mut g = head.backward(&x, &dz);
    let others: Vec<(&usize, &Vec<f32>)> = memory.iter().collect();
    if regularise && others.len() > 1 {
        let (mut orig, mut swapped, mut own) = (Vec::new(), Vec::new(), Vec::new());
        for (b, &l) in batch.iter().zip(&labels).filter(|(b, _)| b.memory) {
            let partner = loop {
                let o = others[rng.below(others.len())];
                if *o.0 != b.relation {
                    break o.1;
                }
            };
            let head_swap = [&partner[..half], &b.x[half..]].concat();
            let tail_swap = [&b.x[..half], &partner[half..]].concat();
            for s in [head_swap, tail_swap] {
                orig.extend_from_slice(&b.x);
                swapped.extend(s);
                own.push(l);
            }
        }
        if !own.is_empty() {
            let (zo, zs) = (head.forward(&orig), head.forward(&swapped));
            let (_, go, gs) = swap_loss(&zo, &zs, d, &own, protos, &cfg.weights);
            for (a, b) in [(&orig, go), (&swapped, gs)] {
                g.iter_mut()
                    .zip(head.backward(a, &b))
                    .for_each(|(g, v)| *g += v);
            }
        }
    }
    if let Some(bad) = g.iter().find(|v| !v.is_finite()) {
        return Err(RelationError::Data(format!(
            "the head's gradient is not finite ({bad})"
        )));
    }
    clip_grad_norm(&mut g, cfg.clip);
    adam.step(&mut head.params, &g, cfg.lr);
    Ok(())
}

/// One memory example per relation of `task`: the support example nearest its class mean
/// under the head.
fn select_memory(
    head: &Head,
    task: &super::stream::RelationTask,
    support_idx: &[usize],
    xs: &[Vec<f32>],
    memory: &mut BTreeMap<usize, Vec<f32>>,
    memory_text: &mut BTreeMap<usize, String>,
) {
    for &r in &task.relations {
        let of: Vec<usize> = support_idx
            .iter()
            .copied()
            .filter(|&i| task.train[i].relation == Some(r))
            .collect();
        let x: Vec<f32> = of.iter().flat_map(|&i| xs[i].clone()).collect();
        let z: Vec<Vec<f32>> = head.forward(&x).chunks(head.dim_out).map(unit).collect();
        let mut mean = vec![0.0; head.dim_out];
        for u in &z {
            mean.iter_mut().zip(u).for_each(|(m, v)| *m += v);
        }
        let mean = unit(&mean);
        let best = (0..of.len())
            .max_by(|&a, &b| {
                let c = |i: usize| z[i].iter().zip(&mean).map(|(x, y)| x * y).sum::<f32>();
                c(a).total_cmp(&c(b))
            })
            .expect("every relation has a support example");
        memory.insert(r, xs[of[best]].clone());
        memory_text.insert(r, task.train[of[best]].marked.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relation::stream::TaskSpec;
    use crate::tasks::Example;

    /// Three tasks of three relations whose vectors are noisy copies of one centre per
    /// relation (head and tail halves both), well apart in 16 + 16 dimensions.
    fn synthetic() -> (Stream, Vectors) {
        let (half, per) = (16, 12);
        let mut rng = SplitMix64::new(7);
        let mut vectors = Vectors::new(2 * half, "synthetic");
        let mut specs = Vec::new();
        let mut pool = Vec::new();
        for t in 0..3 {
            let mut spec = TaskSpec {
                name: format!("t{t}"),
                relations: Vec::new(),
                train: Vec::new(),
                test: Vec::new(),
            };
            for r in 0..3 {
                let id = 3 * t + r;
                let label = format!("r{id}");
                spec.relations
                    .push((label.clone(), format!("relation {id}")));
                let centre: Vec<f32> = (0..2 * half)
                    .map(|k| if k % half == id { 3.0 } else { 0.0 })
                    .collect();
                let noisy = |rng: &mut SplitMix64| -> Vec<f32> {
                    centre
                        .iter()
                        .map(|c| c + 0.5 * (rng.unit_f32() - 0.5))
                        .collect()
                };
                let name = Instance::for_relation(&format!("relation {id}"));
                vectors.insert(name.text, &noisy(&mut rng));
                for i in 0..per {
                    let line = format!("[[h{id}x{i}]] is r{id} of <<t{id}x{i}>>");
                    vectors.insert(Instance::parse(&line).unwrap().text, &noisy(&mut rng));
                    let e = Example::new(line, label.clone());
                    if i < per / 2 {
                        spec.train.push(e);
                        // The pool holds another sentence of each training example's pair.
                        let line = format!("[[h{id}x{i}]] again r{id} <<t{id}x{i}>>");
                        vectors.insert(Instance::parse(&line).unwrap().text, &noisy(&mut rng));
                        pool.push(Example::new(line, label.clone()));
                    } else {
                        spec.test.push(e);
                    }
                }
            }
            specs.push(spec);
        }
        (Stream::new(specs, &pool).unwrap(), vectors)
    }

    use crate::relation::instance::Instance;

    #[test]
    fn every_method_learns_separable_relations_and_lenient_is_never_below_strict() {
        let (stream, vectors) = synthetic();
        let p = Prepared::new(&stream, &vectors).unwrap();
        let cfg = Config {
            shots: 3,
            head_dim: 8,
            ..Config::default()
        };
        for m in METHODS {
            let (run, classifier) = run(&p, m, &cfg, 100, &mut |_| true).unwrap();
            assert_eq!(classifier.labels.len(), 9);
            assert_eq!(run.after.len(), 3, "{}", m.name());
            assert_eq!(run.order[0], "t0", "the first task is fixed");
            for a in &run.after {
                assert!(a.lenient >= a.strict, "{}: {a:?}", m.name());
            }
            // Chance is 1/3 on the first task and 1/9 after the last; the clusters are far apart.
            let first = run.after[0].strict;
            println!(
                "{}: first task {first:.3}, last {:.3}",
                m.name(),
                run.after[2].strict
            );
            assert!(first > 0.8, "{}: first task strict {first}", m.name());
            let again = super::run(&p, m, &cfg, 100, &mut |_| true).unwrap();
            assert_eq!(
                (run, classifier),
                again,
                "{}: not deterministic for a seed",
                m.name()
            );
        }
        // Augmentation found the pool sentence with each support example's entity pair.
        let (erda, _) = run(&p, Method::Erda, &cfg, 100, &mut |_| true).unwrap();
        let aug = &erda.after[1].augmented;
        assert!(
            aug.iter().any(|a| a.same_pair && a.truth == a.label),
            "{aug:?}"
        );
    }

    #[test]
    fn order_keeps_the_first_task_and_permutes_the_rest() {
        let a = order(8, 100);
        let b = order(8, 110);
        assert_eq!(a[0], 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..8).collect::<Vec<_>>());
        assert_ne!(a, b);
    }
}
