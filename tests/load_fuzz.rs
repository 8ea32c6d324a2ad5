//! What the page reads from outside (a model folder, a PEFT prompt file, an adapters file, a
//! relation classifier from the history) never panics, whatever the bytes: random bytes, and
//! valid files with bytes flipped, cut short or grown (issue 29). Each is an error or a value
//! the rest of the code can use: a checkpoint that parses builds our CPU engine, a classifier
//! that decodes scores a vector.
#![cfg(not(target_arch = "wasm32"))]

use metaprompt::cpu::CpuT5;
use metaprompt::graph::Adapters;
use metaprompt::model::T5Config;
use metaprompt::model::checkpoint::Checkpoint;
use metaprompt::model::tiny::random_checkpoint;
use metaprompt::prompt::{SoftPrompt, adapter_file, peft};
use metaprompt::relation::classifier::Classifier;
use proptest::prelude::*;
use std::sync::OnceLock;

fn tiny() -> &'static (T5Config, Vec<u8>) {
    static T: OnceLock<(T5Config, Vec<u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let c = T5Config::tiny();
        let bytes = random_checkpoint(&c, 11);
        (c, bytes)
    })
}

/// `valid` with `edits` applied: (position as a fraction of the length, new byte), then cut to
/// a fraction of its length (1.0 keeps all) or grown by `extra` bytes.
fn damage(valid: &[u8], edits: &[(f64, u8)], keep: f64, extra: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for &(at, v) in edits {
        if !b.is_empty() {
            let i = ((at * b.len() as f64) as usize).min(b.len() - 1);
            b[i] = v;
        }
    }
    b.truncate((keep * b.len() as f64).ceil() as usize);
    b.extend_from_slice(extra);
    b
}

/// Edits biased to the front, where safetensors keeps its JSON header.
fn edits() -> impl Strategy<Value = Vec<(f64, u8)>> {
    proptest::collection::vec((prop_oneof![0.0..0.02, 0.0..1.0f64], any::<u8>()), 0..6)
}

fn keep() -> impl Strategy<Value = f64> {
    prop_oneof![Just(1.0), 0.0..1.0f64]
}

fn extra() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..8)
}

fn classifier_json() -> String {
    let c = Classifier {
        method: metaprompt::relation::learner::Method::Erda,
        labels: vec!["born in".into(), "works for".into()],
        dim: 2,
        prototypes: vec![1.0, 0.0, 0.0, 1.0],
        head: Some(metaprompt::relation::head::Head::new(4, 2, 3)),
    };
    serde_json::to_string(&c).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_damaged_checkpoint_is_an_error_or_a_model(e in edits(), k in keep(), x in extra()) {
        let (c, valid) = tiny();
        let bytes = damage(valid, &e, k, &x);
        if let Ok(ckpt) = Checkpoint::parse(&bytes, c) {
            let _ = CpuT5::from_checkpoint(&ckpt, c);
        }
    }

    #[test]
    fn random_bytes_are_not_a_checkpoint(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(Checkpoint::parse(&bytes, &tiny().0).is_err());
    }

    #[test]
    fn a_damaged_peft_prompt_is_an_error_or_a_whole_prompt(e in edits(), k in keep(), x in extra()) {
        let p = SoftPrompt { len: 3, dim: 16, values: (0..48).map(|i| i as f32 / 7.0).collect() };
        let bytes = damage(&peft::to_safetensors(&p).unwrap(), &e, k, &x);
        if let Ok(q) = peft::from_safetensors(&bytes) {
            prop_assert_eq!(q.values.len(), q.len * q.dim);
        }
    }

    #[test]
    fn a_damaged_adapters_file_is_an_error_or_checked_adapters(e in edits(), k in keep(), x in extra()) {
        let c = &tiny().0;
        let a = Adapters::new(c, 4, 1, 5);
        let bytes = damage(&adapter_file::to_safetensors(&a, c), &e, k, &x);
        if let Ok(b) = adapter_file::from_safetensors(&bytes, c) {
            prop_assert!(b.check(c).is_ok());
        }
    }

    #[test]
    fn a_damaged_config_is_an_error_or_a_checked_config(e in edits(), k in keep(), x in extra()) {
        let valid = serde_json::to_vec(&T5Config::flan_t5_small()).unwrap();
        let bytes = damage(&valid, &e, k, &x);
        if let Ok(c) = T5Config::from_json(&bytes) {
            prop_assert!(c.check().is_ok());
            let _ = c.parameter_count();
        }
    }

    #[test]
    fn a_damaged_classifier_record_is_an_error_or_scores(
        e in edits(),
        k in keep(),
        x in extra(),
        v in proptest::collection::vec(-2.0f32..2.0, 0..6),
    ) {
        let bytes = damage(classifier_json().as_bytes(), &e, k, &x);
        if let Ok(c) = serde_json::from_slice::<Classifier>(&bytes) {
            let _ = c.scores(&v);
        }
    }
}
