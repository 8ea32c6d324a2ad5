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

/// What a stored record can carry that the loaded model cannot take (issue 29): a prompt trained
/// under another model, a cut of 0 input tokens, a held-out label the run does not have, token
/// ids past the vocabulary. Each is refused with what is wrong, never a panic.
#[test]
fn a_record_the_model_cannot_take_is_refused_by_name() {
    use metaprompt::compare::CompareError;
    use metaprompt::prompt::SoftPrompt;
    use metaprompt::prompt::tune::TuneError;
    let (model, cpu) = common::tiny_with_tokenizer();
    let engine = Engine::Ours(&cpu);
    let pasted = parse(PASTE, &Limits::default());
    let split = split_per_class(&pasted.examples, &pasted.labels, 3, 13);
    let data = Prepared::new(&model, &pasted.labels, &split, 128).unwrap();

    // A prompt 512 wide (the real model's) on the tiny one, 16 wide.
    let foreign = SoftPrompt {
        len: 4,
        dim: 512,
        values: vec![0.0; 4 * 512],
    };
    let err = pollster::block_on(data.label_scores(&model, engine, Some(&foreign), "a fine film"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CompareError::Run(TuneError::PromptShape {
                dim: 512,
                d_model: 16,
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("trained under another model"),
        "{err}"
    );
    // Values that do not fill len x dim.
    let short = SoftPrompt {
        len: 4,
        dim: 16,
        values: vec![0.0; 60],
    };
    let err = pollster::block_on(data.label_scores(&model, engine, Some(&short), "a fine film"))
        .unwrap_err();
    assert!(err.to_string().contains("(60 values)"), "{err}");

    let err = Prepared::new(&model, &pasted.labels, &split, 0)
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "input tokens: 0, expected at least 2");
    let mut damaged = split.clone();
    damaged.heldout[1].target = "neutral".into();
    let err = Prepared::new(&model, &pasted.labels, &damaged, 128)
        .err()
        .unwrap();
    assert!(
        matches!(&err, CompareError::UnknownLabel { index: 1, label } if label == "neutral"),
        "{err}"
    );

    let vocab = cpu.config.vocab_size as u32;
    let err = pollster::block_on(engine.label_scores(None, &[vec![5, vocab, 1]], &[vec![7, 1]]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TuneError::TokenOutOfVocab {
                what: "input",
                row: 0,
                position: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// The page's Generate box (issue 29): 8,000 words trapped the module; now a text past the limit
/// is refused by its token count before anything is allocated, and so is a huge `max_new`.
#[test]
fn generation_refuses_a_text_past_its_limit() {
    use metaprompt::model::{GenerateError, MAX_GENERATE_TOKENS};
    let (model, _) = common::tiny_with_tokenizer();
    let long = "word ".repeat(8_000);
    let err = pollster::block_on(model.generate_texts(&["a short one", &long], 4)).unwrap_err();
    assert!(
        matches!(err, GenerateError::TooLong { input: 1, tokens } if tokens > 8_000),
        "{err}"
    );
    let err =
        pollster::block_on(model.generate_texts(&["hi"], MAX_GENERATE_TOKENS + 1)).unwrap_err();
    assert!(matches!(err, GenerateError::TooMany(_)), "{err}");
    let ok = pollster::block_on(model.generate_texts(&["a short one"], 3)).unwrap();
    assert_eq!(ok.outputs.len(), 1);
}

/// A model folder whose tokenizer gives ids past the model's embeddings (the tiny 64-token T5
/// beside flan-t5-small's tokenizer) is refused at load, not at the first out-of-range id.
#[test]
fn a_tokenizer_larger_than_the_model_is_refused_at_load() {
    use metaprompt::model::{LoadError, LoadedModel, T5Config};
    let tokenizer = std::fs::read("models/flan-t5-small/tokenizer.json").unwrap();
    let c = T5Config::tiny();
    let bytes = metaprompt::model::tiny::random_checkpoint(&c, 7);
    let config = serde_json::to_vec(&c).unwrap();
    let err = LoadedModel::from_bytes(&bytes, &config, &tokenizer, &burn::tensor::Device::flex())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            LoadError::Vocabulary {
                tokenizer: 32100,
                model: 64
            }
        ),
        "{err}"
    );
}
