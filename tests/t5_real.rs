//! The real flan-t5-small on the CPU backend: known greedy answers, and logits against the
//! independent numpy reference (tools/t5_reference.py -> tests/golden/). Needs the converted
//! model: `scripts/fetch-model.sh && cargo run -- convert` (scripts/test.sh does both).
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::Device;
use metaprompt::model::{Batch, LoadedModel};
use std::path::Path;
use std::sync::OnceLock;

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        LoadedModel::from_dir(Path::new("models/flan-t5-small"), &Device::flex()).unwrap_or_else(
            |e| {
                panic!(
                    "{e}\nfetch and convert first: scripts/fetch-model.sh && cargo run -- convert"
                )
            },
        )
    })
}

fn generate(texts: &[&str]) -> Vec<String> {
    let m = model();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| m.tokenizer.encode(t).unwrap())
        .collect();
    let batch = Batch::new(&ids);
    let out = pollster::block_on(m.t5.generate(m.t5.encode(&batch), &batch.mask(), 12)).unwrap();
    out.iter()
        .map(|ids| m.tokenizer.decode(ids).unwrap())
        .collect()
}

#[test]
fn tokenizer_matches_the_known_encoding() {
    let ids = model()
        .tokenizer
        .encode("translate English to German: The house is wonderful.")
        .unwrap();
    assert_eq!(
        ids,
        vec![13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1]
    );
    // Truncation (48 in the shipped file) is off: a long input keeps all its tokens.
    let long = "word ".repeat(100);
    assert!(model().tokenizer.encode(&long).unwrap().len() > 100);
}

#[test]
fn greedy_answers_match_the_known_outputs_in_one_padded_batch() {
    let out = generate(&[
        "translate English to German: The house is wonderful.",
        "Is the following review positive or negative? Review: I loved this movie, it was fantastic.",
    ]);
    assert_eq!(out, vec!["Das Haus ist wunderbar.", "positive"]);
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    encoder_ids: Vec<u32>,
    decoder_ids: Vec<u32>,
    probe_ids: Vec<usize>,
    probe_logits: Vec<Vec<f32>>,
    top5_ids: Vec<Vec<usize>>,
    top5_logits: Vec<Vec<f32>>,
}

#[test]
fn logits_match_the_numpy_reference_within_1e_3_relative() {
    let golden: Golden =
        serde_json::from_str(include_str!("golden/flan_t5_small_logits.json")).unwrap();
    let m = model();
    let v = m.t5.config.vocab_size;
    for case in &golden.cases {
        let enc_b = Batch::new(std::slice::from_ref(&case.encoder_ids));
        let dec_b = Batch::new(std::slice::from_ref(&case.decoder_ids));
        let logits: Vec<f32> =
            m.t5.decode(&dec_b, m.t5.encode(&enc_b), &enc_b.mask())
                .into_data()
                .try_to_vec()
                .unwrap();
        let mut worst = 0.0f32;
        for (pos, (ids, want)) in case.probe_ids_per_pos().enumerate() {
            for (&id, w) in ids.iter().zip(want) {
                let got = logits[pos * v + id];
                // Relative to the position's logit scale (max |top-5 logit|), so near-zero logits
                // do not blow the ratio up.
                let scale = case.top5_logits[pos]
                    .iter()
                    .fold(1.0f32, |a, b| a.max(b.abs()));
                worst = worst.max((got - w).abs() / scale);
            }
        }
        println!(
            "{} decoder positions: worst relative logit error {worst:.2e}",
            case.top5_ids.len()
        );
        assert!(worst < 1e-3, "worst relative logit error {worst:.2e}");
        for (pos, top) in case.top5_ids.iter().enumerate() {
            let row = &logits[pos * v..(pos + 1) * v];
            let best = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(best, top[0], "argmax at decoder position {pos}");
        }
    }
}

impl Case {
    /// (ids, reference logits) for each decoder position: the fixed probe ids and the top 5.
    fn probe_ids_per_pos(&self) -> impl Iterator<Item = (Vec<usize>, Vec<f32>)> + '_ {
        self.probe_logits
            .iter()
            .zip(&self.top5_ids)
            .zip(&self.top5_logits)
            .map(|((pl, ti), tl)| {
                let ids: Vec<usize> = self.probe_ids.iter().chain(ti).copied().collect();
                let vals: Vec<f32> = pl.iter().chain(tl).copied().collect();
                (ids, vals)
            })
    }
}
