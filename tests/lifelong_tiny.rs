//! The lifelong methods end to end on the tiny random T5 (flan-t5-small's tokenizer) with our
//! CPU engine: a stream of two classification tasks and a generation task. What must hold
//! whatever the weights: the score matrix fills in task by task, LFPT5 generates and judges
//! pseudo examples of the earlier task of the same type (and none across types), a new task
//! type leaves the earlier type's prompt and scores untouched, a run is reproducible from its
//! seed, Stop stops, and the training loss falls.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use metaprompt::cpu::CpuT5;
use metaprompt::graph::Adapters;
use metaprompt::lifelong::dmea::{Choice, ModuleConfig};
use metaprompt::lifelong::lfpt5::{PseudoConfig, SEPARATOR, Verdict};
use metaprompt::lifelong::{LifelongConfig, LifelongRun, Method, Progress, StreamTask, run};
use metaprompt::model::LoadedModel;
use metaprompt::prompt::engine::Engine;
use metaprompt::tasks::{Example, TaskInfo, TaskKind};
use std::ops::ControlFlow;

/// `n` examples alternating between the two word lists' labels.
fn examples(words: [&[&str]; 2], labels: [&str; 2], n: usize, from: usize) -> Vec<Example> {
    (from..from + n)
        .map(|i| {
            let c = i % 2;
            let w = words[c][i / 2 % words[c].len()];
            Example::new(format!("i saw a {w} near the house"), labels[c])
        })
        .collect()
}

fn task(name: &str, words: [&[&str]; 2], labels: [&str; 2]) -> StreamTask {
    StreamTask::new(
        TaskInfo::pasted(name, TaskKind::Classification, &labels),
        examples(words, labels, 6, 0),
        examples(words, labels, 4, 6),
        examples(words, labels, 4, 10),
    )
    .unwrap()
}

fn stream() -> Vec<StreamTask> {
    let echo = |i: usize| {
        let w = ["river", "stone", "cloud", "field", "bread", "glass"][i % 6];
        Example::new(format!("repeat: {w} and more"), w)
    };
    let gen_examples = |r: std::ops::Range<usize>| r.map(echo).collect::<Vec<_>>();
    vec![
        task(
            "food",
            [&["apple", "pear", "plum"], &["car", "bus", "train"]],
            ["fruit", "vehicle"],
        ),
        task(
            "animals",
            [&["dog", "cat", "hamster"], &["lion", "tiger", "wolf"]],
            ["pet", "wild"],
        ),
        StreamTask::new(
            TaskInfo::pasted("echo", TaskKind::Generation, &[]),
            gen_examples(0..6),
            gen_examples(6..9),
            gen_examples(9..12),
        )
        .unwrap(),
    ]
}

fn config() -> LifelongConfig {
    LifelongConfig {
        steps: 12,
        batch: 4,
        len: 4,
        max_input: 32,
        valid_every: 4,
        eval_batch: 8,
        pseudo: PseudoConfig {
            max_tokens: 24,
            per_class: 2,
            rounds: 1,
            ..PseudoConfig::default()
        },
        seed: 3,
        ..LifelongConfig::default()
    }
}

struct Tiny {
    model: LoadedModel,
    cpu: CpuT5,
}

fn tiny() -> Tiny {
    let (model, cpu) = common::tiny_with_tokenizer();
    Tiny { model, cpu }
}

/// A run and the training losses it reported, per task.
fn go(t: &Tiny, method: Method) -> (LifelongRun, Vec<Vec<f32>>) {
    let tasks = stream();
    let mut losses = vec![Vec::new(); tasks.len()];
    let mut on = |p: Progress| {
        if let Progress::Step { task, loss, .. } = p {
            losses[task].push(loss);
        }
        ControlFlow::Continue(())
    };
    let engine = Engine::Ours(&t.cpu);
    let r = pollster::block_on(run(engine, &t.model, &tasks, method, &config(), &mut on)).unwrap();
    (r, losses)
}

#[test]
fn every_method_fills_the_score_matrix_and_lfpt5_replays_within_a_type() {
    let t = tiny();
    for method in Method::ALL {
        let (r, losses) = go(&t, method);
        let name = method.name();
        assert_eq!(r.order, ["food", "animals", "echo"], "{name}");
        assert_eq!(r.metrics, ["accuracy", "accuracy", "ROUGE-L"], "{name}");
        let shape: Vec<usize> = r.scores.iter().map(Vec::len).collect();
        assert_eq!(shape, [1, 2, 3], "{name}");
        assert!(r.scores.iter().flatten().all(|s| (0.0..=1.0).contains(s)));
        assert_eq!(r.forgetting().len(), 2);
        assert!(
            r.best_step.iter().all(|&s| s <= 12),
            "{name}: {:?}",
            r.best_step
        );
        assert!(losses.iter().all(|l| l.len() == 12), "{name}");
        // Loss falls on the first task (every method trains it from the same start the same
        // way but LFPT5, which adds its generator rows): the last four steps against the first
        // four, each a full pass over the six examples' minibatches.
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let (early, late) = (mean(&losses[0][..4]), mean(&losses[0][8..]));
        println!("margin: {name} task-0 training loss {early:.3} -> {late:.3}");
        assert!(late < 0.9 * early, "{name}: {early} -> {late}");
        if method == Method::Lfpt5 {
            // Before `animals`, pseudo examples of `food` (same type), none of the others.
            assert_eq!(r.pseudo.len(), 1);
            let set = &r.pseudo[0];
            assert_eq!(set.task, "food");
            assert_eq!(
                set.samples.len(),
                2 * 2 * 2,
                "2 classes x quota 2, twice over"
            );
            let kept = set.samples.iter().filter(|s| s.verdict == Verdict::Kept);
            assert_eq!(kept.count(), set.train.len() + set.valid.len());
            assert!(
                set.train
                    .iter()
                    .all(|e| ["fruit", "vehicle"].contains(&e.target.as_str()))
            );
            // `echo` is a new type with its own prompt: the classification prompt and so its
            // scores are what they were after `animals`.
            assert_eq!(r.scores[2][..2], r.scores[1][..2]);
            let kept: Vec<&str> = r.prompts.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(kept, ["classification", "summarisation"]);
            assert_ne!(r.prompts[0].1, r.prompts[1].1);
        } else {
            assert!(r.pseudo.is_empty());
            assert_eq!(r.prompts.len(), 1, "{name}: one prompt for every task");
        }
    }
}

#[test]
fn a_run_is_reproducible_and_stops_when_told() {
    let t = tiny();
    let (a, _) = go(&t, Method::Lfpt5);
    let (b, _) = go(&t, Method::Lfpt5);
    assert_eq!(a.scores, b.scores);
    assert_eq!(a.pseudo[0].samples, b.pseudo[0].samples);

    let tasks = stream();
    let mut steps = 0;
    let mut stop = |p: Progress| {
        if matches!(p, Progress::Step { .. }) {
            steps += 1;
        }
        if steps == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let engine = Engine::Ours(&t.cpu);
    let r = pollster::block_on(run(
        engine,
        &t.model,
        &tasks,
        Method::Sequential,
        &config(),
        &mut stop,
    ))
    .unwrap();
    assert_eq!(steps, 3);
    assert_eq!(r.best_step.len(), 1);

    // burn's generic ops have no multi-part step: a clear error, not a panic.
    let e = pollster::block_on(run(
        Engine::Burn(&t.model.t5),
        &t.model,
        &tasks,
        Method::Sequential,
        &config(),
        &mut |_| ControlFlow::Continue(()),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("runs on our engines only"), "{e}");
}

#[test]
fn the_separator_survives_the_repetition_penalty() {
    // The generator must write the separator between input and label while LFPT5's repetition
    // penalty (2.5) divides the logit of every token already written: a separator spelt with a
    // repeated token (the authors' `__ans__` is "_" four times in T5's pieces) is all but
    // forbidden; ours is one token.
    let t = tiny();
    let eos = t.model.t5.config.eos_token_id;
    let pieces = |s: &str| -> Vec<u32> {
        let mut ids = t.model.tokenizer.encode(s).unwrap();
        ids.retain(|&i| i != eos);
        ids
    };
    let ours = pieces(&format!("a fine film {SEPARATOR} positive"));
    let sep = pieces(&format!(" {SEPARATOR}"));
    assert_eq!(sep.len(), 1, "{sep:?}");
    assert!(ours.windows(1).any(|w| w == sep.as_slice()));
    let theirs = pieces(" __ans__");
    let mut sorted = theirs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert!(
        sorted.len() < theirs.len(),
        "{theirs:?} has no repeated piece"
    );
    let text = t.model.tokenizer.decode(&ours).unwrap();
    assert_eq!(text.split(SEPARATOR).count(), 2, "{text}");
}

/// The adapter methods' settings on the tiny model: a narrow bottleneck, a short search, and
/// Adam at 1e-2 (the real model's 1e-3 moves the tiny model's random logits, an order of
/// magnitude larger, by under 1% in 12 steps).
fn adapter_config() -> LifelongConfig {
    LifelongConfig {
        modules: ModuleConfig {
            bottleneck: 4,
            search_steps: 6,
            lr: 1e-2,
            ..ModuleConfig::default()
        },
        ..config()
    }
}

/// A run, its training losses per task, and the pseudo sets generated: (before task, of task).
#[allow(clippy::type_complexity)]
fn go_adapters(t: &Tiny, method: Method) -> (LifelongRun, Vec<Vec<f32>>, Vec<(usize, String)>) {
    let tasks = stream();
    let mut losses = vec![Vec::new(); tasks.len()];
    let mut generated = Vec::new();
    let mut on = |p: Progress| {
        match p {
            Progress::Step { task, loss, .. } => losses[task].push(loss),
            Progress::Generated { before, set } => generated.push((before, set.task.clone())),
            _ => {}
        }
        ControlFlow::Continue(())
    };
    let engine = Engine::Ours(&t.cpu);
    let cfg = adapter_config();
    let r = pollster::block_on(run(engine, &t.model, &tasks, method, &cfg, &mut on)).unwrap();
    (r, losses, generated)
}

#[test]
fn the_adapter_methods_grow_share_and_replay_as_they_say() {
    let t = tiny();
    let cfg = adapter_config();
    let c = &t.model.t5.config;
    let sites = Adapters::site_count(c);
    let per_module = metaprompt::graph::Adapter::zeros(c.d_model, 4).parameters();
    // A prompt's loss before and after: every run leaves the engine without adapters.
    let pair = metaprompt::prompt::eval::pairs(&t.model, &stream()[0].info, &stream()[0].test, 32)
        .unwrap();
    let refs: Vec<_> = pair.iter().collect();
    let prompt = metaprompt::prompt::SoftPrompt {
        len: 0,
        dim: c.d_model,
        values: vec![],
    };
    let engine = Engine::Ours(&t.cpu);
    let before = pollster::block_on(engine.loss(&prompt, &refs)).unwrap();
    for method in Method::ADAPTERS {
        let (r, losses, generated) = go_adapters(&t, method);
        let name = method.name();
        assert_eq!(r.order, ["food", "animals", "echo"], "{name}");
        let shape: Vec<usize> = r.scores.iter().map(Vec::len).collect();
        assert_eq!(shape, [1, 2, 3], "{name}");
        assert!(r.scores.iter().flatten().all(|s| (0.0..=1.0).contains(s)));
        assert!(r.prompts.is_empty(), "{name}");
        assert_eq!(r.modules.len(), 3, "{name}");
        assert!(r.modules.iter().all(|m| m.len() == sites), "{name}");
        assert!(r.modules[0].iter().all(|c| *c == Choice::New), "{name}");
        for (j, m) in r.modules.iter().enumerate() {
            let new = m.iter().filter(|c| **c == Choice::New).count();
            assert_eq!(r.parameters[j], new * per_module, "{name} task {j}");
            assert_eq!(
                losses[j].len(),
                method.task_steps(j, &cfg),
                "{name} task {j}"
            );
            assert!(
                m.iter().all(|c| matches!(c, Choice::New)
                    || matches!(c, Choice::Reused { from } if *from < j)),
                "{name}: {m:?}"
            );
        }
        assert_eq!(
            r.similarity.iter().map(Vec::len).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(
            r.similarity
                .iter()
                .flatten()
                .all(|s| (-1.0..=1.0 + 1e-9).contains(s))
        );
        // Loss falls on the first task: last four steps against the first four.
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let (early, late) = (mean(&losses[0][..4]), mean(&losses[0][8..]));
        println!("margin: {name} task-0 training loss {early:.3} -> {late:.3}");
        assert!(late < 0.9 * early, "{name}: {early} -> {late}");
        let replayed: Vec<&str> = generated.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(r.pseudo.len(), generated.len(), "{name}");
        match method {
            Method::Expand => {
                assert!(r.modules.iter().flatten().all(|c| *c == Choice::New));
                // Task 0's modules are never trained again: its score cannot move.
                assert_eq!(r.scores[1][0], r.scores[0][0]);
                assert_eq!(r.scores[2][0], r.scores[0][0]);
                assert!(replayed.is_empty());
            }
            Method::SequentialAdapters | Method::MultitaskAdapters | Method::Reuse => {
                for m in &r.modules[1..] {
                    assert!(m.iter().all(|c| *c == Choice::Reused { from: 0 }), "{name}");
                }
                assert_eq!(r.parameters[1..], [0, 0], "{name}");
                let want: &[&str] = if method == Method::Reuse {
                    &["food", "food", "animals"]
                } else {
                    &[]
                };
                assert_eq!(replayed, want, "{name}");
            }
            Method::Dmea | Method::Acm => {
                // Each replayed task shares a module with the task's path: at some site both
                // use the module the same task added.
                let creator = |i: usize, s: usize| match r.modules[i][s] {
                    Choice::New => i,
                    Choice::Reused { from } => from,
                };
                for (before, task) in &generated {
                    let i = r.order.iter().position(|o| o == task).unwrap();
                    assert!(i < *before, "{name}: {task} replayed before task {before}");
                    assert!(
                        (0..sites).any(|s| creator(i, s) == creator(*before, s)),
                        "{name}: {task} shares no module with task {before}"
                    );
                }
            }
            _ => unreachable!(),
        }
    }
    let after = pollster::block_on(engine.loss(&prompt, &refs)).unwrap();
    assert_eq!(before, after, "a run left adapters in the engine");
    // Reproducible from the seed.
    let (a, ..) = go_adapters(&t, Method::Dmea);
    let (b, ..) = go_adapters(&t, Method::Dmea);
    assert_eq!((a.scores, a.modules), (b.scores, b.modules));
    // burn's generic ops have no adapters: a clear error, not a panic.
    let e = pollster::block_on(run(
        Engine::Burn(&t.model.t5),
        &t.model,
        &stream(),
        Method::Dmea,
        &cfg,
        &mut |_| ControlFlow::Continue(()),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("runs on our engines only"), "{e}");
}
