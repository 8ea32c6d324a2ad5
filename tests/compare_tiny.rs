//! The page's side-by-side comparison, natively on the tiny random T5 (flan-t5-small's tokenizer,
//! so pasted text works as in the page) with our CPU engine: pasted examples are split k per
//! label, both contenders train step for step on the same examples and both losses fall, held-out
//! accuracy and predictions are recorded, the tuned prompt is kept, and the run record survives
//! a JSON round trip (what the page's history stores).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use metaprompt::compare::{
    ContenderLog, Duel, InitChoice, Prepared, RunRecord, Settings, Status, split_per_class,
};
use metaprompt::prompt::engine::Engine;
use metaprompt::prompt::initial_prompt;
use metaprompt::text::examples::{Limits, parse};

const PASTE: &str = "the film was a delight\tpositive
a dull, lifeless mess\tnegative
wonderful acting and a clever script\tpositive
i want those two hours back\tnegative
this line has no separator
an instant classic\tpositive
boring from start to finish\tnegative
sharp, funny and moving\tpositive
a tedious slog\tnegative
great fun for the whole family\tpositive
clumsy and predictable\tnegative
";

#[test]
fn two_contenders_train_side_by_side_on_pasted_examples() {
    let (model, cpu) = common::tiny_with_tokenizer();
    let engine = Engine::Ours(&cpu);

    let pasted = parse(PASTE, &Limits::default());
    assert_eq!(pasted.rejected.len(), 1, "{:?}", pasted.rejected);
    assert_eq!(pasted.rejected[0].line, 5);
    assert_eq!(pasted.labels, ["positive", "negative"]);

    // The page's optimiser and learning rate (Adafactor, 0.3).
    let settings = Settings {
        k_per_class: 3,
        prompt_len: 4,
        steps: 40,
        batch_size: 4,
        eval_every: 20,
        ..Settings::default()
    };
    settings.check().unwrap();
    let split = split_per_class(&pasted.examples, &pasted.labels, 3, settings.seed);
    assert_eq!((split.train.len(), split.heldout.len()), (6, 4));
    let data = Prepared::new(&model, &pasted.labels, &split, settings.max_input).unwrap();

    let inits = [InitChoice::Vocab, InitChoice::Random];
    let mut logs = inits.clone().map(ContenderLog::new);
    let mut prompts = Vec::new();
    for choice in &inits {
        let init = choice.init(&pasted.labels, None).unwrap();
        let p = initial_prompt(&model, &init, settings.prompt_len, settings.seed);
        prompts.push(pollster::block_on(p).unwrap());
    }
    let mut duel = Duel::new([prompts[0].clone(), prompts[1].clone()], &settings);
    pollster::block_on(async {
        for (i, log) in logs.iter_mut().enumerate() {
            duel.measure(engine, &data, i, 8, log).await.unwrap();
        }
        for step in 1..=settings.steps {
            for (i, log) in logs.iter_mut().enumerate() {
                duel.step(engine, &data, i, log).await.unwrap();
                if step % settings.eval_every == 0 {
                    duel.measure(engine, &data, i, 8, log).await.unwrap();
                }
            }
        }
    });
    for log in &logs {
        assert_eq!(log.losses.len(), settings.steps);
        let mean = |s: &[(usize, f32)]| s.iter().map(|x| x.1).sum::<f32>() / s.len() as f32;
        let (first, last) = (
            mean(&log.losses[..4]),
            mean(&log.losses[settings.steps - 4..]),
        );
        // At least half a nat lower.
        eprintln!(
            "margin: {}: mean loss of the first 4 steps {first:.3}, of the last 4 {last:.3}; \
             fell {:.3} nat, bound 0.5",
            log.init.label(),
            first - last
        );
        assert!(
            last < first - 0.5,
            "{}: loss {first} -> {last} {:?}",
            log.init.label(),
            log.losses
        );
        let steps: Vec<usize> = log.accuracy.iter().map(|a| a.0).collect();
        assert_eq!(steps, [0, settings.eval_every, settings.steps]);
        assert_eq!(log.predictions.len(), 4);
        assert!(log.predictions.iter().all(|p| pasted.labels.contains(p)));
        assert!(log.ms_per_step().unwrap() > 0.0);
    }
    // The contenders started apart and were tuned separately.
    assert_ne!(logs[0].prompt, logs[1].prompt);
    assert_eq!(logs[0].prompt.as_ref().unwrap(), &duel.tuners[0].prompt);

    // Label scores for a typed input: every label, best first.
    let scores = pollster::block_on(data.label_scores(
        &model,
        engine,
        logs[0].prompt.as_ref(),
        "a joy to watch",
    ))
    .unwrap();
    assert_eq!(scores.len(), 2);
    assert!(scores[0].1 >= scores[1].1 && scores[0].1.is_finite());

    let record = RunRecord {
        id: 1,
        started: "2026-11-22T12:00:00Z".into(),
        settings,
        labels: pasted.labels.clone(),
        split,
        contenders: [logs[0].clone(), logs[1].clone()],
        status: Status::Finished,
        engine: "cpu".into(),
    };
    let json = serde_json::to_string(&record).unwrap();
    assert_eq!(serde_json::from_str::<RunRecord>(&json).unwrap(), record);
    assert!(
        record.summary().contains("PT vocab"),
        "{}",
        record.summary()
    );
}
