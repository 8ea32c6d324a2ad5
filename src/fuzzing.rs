//! The fuzz targets' bodies (`fuzz/`, cargo-fuzz with libFuzzer; `scripts/fuzz.sh`): what the
//! page and the CLI read from outside, fed arbitrary bytes. Each returns normally for any input:
//! an error is fine, a panic is the bug, and so is a value that breaks its own round trip. They
//! live in the library so that `tests/fuzz_corpus.rs` replays the committed corpus through the
//! same code in the test command without a nightly toolchain or a second build.

use crate::compare::{RunCheckpoint, RunRecord};
use crate::lifelong::record::LifelongRecord;
use crate::model::T5Config;
use crate::model::checkpoint::Checkpoint;
use crate::prompt::peft;
use crate::relation::record::RelationRecord;
use crate::text::examples::{self, Limits};
use crate::worker::protocol::{decode, encode};

/// A fuzz target's body: returns for every input, or panics on a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` name them.
pub const TARGETS: [(&str, Target); 5] = [
    ("paste", paste),
    ("checkpoint", checkpoint),
    ("peft", peft_prompt),
    ("config", config),
    ("record", record),
];

/// The three paste parsers (comparison, lifelong sequence, relation stream) on any text: every
/// example they keep comes from a line of it, and no line is both kept and rejected.
pub fn paste(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let count = |s: &str| s.split_whitespace().count() + 1;
    let limits = Limits {
        max_input_tokens: 16,
        count_tokens: Some(&count),
    };
    let p = examples::parse(&text, &limits);
    assert_eq!(p.examples.len(), p.lines.len());
    assert!(p.lines.iter().all(|&l| (1..=lines).contains(&l)));
    assert!(p.rejected.iter().all(|r| !p.lines.contains(&r.line)));
    let seq = crate::lifelong::paste::parse(&text, &limits);
    let kept: usize = seq.tasks.iter().map(|t| t.examples.len()).sum();
    assert!(kept + seq.rejected.len() <= lines);
    let _ = crate::relation::paste::parse(&text);
}

/// A checkpoint for the tiny T5; one that parses dequantises every tensor it holds.
pub fn checkpoint(data: &[u8]) {
    let c = T5Config::tiny();
    if let Ok(ck) = Checkpoint::parse(data, &c) {
        let _ = crate::cpu::CpuT5::from_checkpoint(&ck, &c);
    }
}

/// A PEFT prompt file; one that reads writes back to the same prompt.
pub fn peft_prompt(data: &[u8]) {
    if let Ok(p) = peft::from_safetensors(data) {
        assert_eq!(p.values.len(), p.len * p.dim);
        let again = peft::to_safetensors(&p).expect("a prompt that was read writes");
        let back = peft::from_safetensors(&again).expect("what was written reads");
        assert_eq!(bits(&back.values), bits(&p.values));
    }
}

/// A model folder's `config.json`; one that passes its check is usable (non-zero sizes).
pub fn config(data: &[u8]) {
    if let Ok(c) = T5Config::from_json(data) {
        assert!(c.d_model > 0 && c.vocab_size > 0 && c.num_heads > 0);
    }
}

/// A history record (CBOR as written since version 4, JSON before) of every kind, and a
/// comparison's checkpoint; whatever decodes encodes and decodes to itself.
pub fn record(data: &[u8]) {
    fn both<T>(data: &[u8])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if let Ok(v) = decode::<T>(data) {
            let again: T = decode(&encode(&v).expect("encode")).expect("decode what was encoded");
            assert_eq!(format!("{again:?}"), format!("{v:?}"));
        }
        let _ = serde_json::from_slice::<T>(data);
    }
    both::<RunRecord>(data);
    both::<RelationRecord>(data);
    both::<LifelongRecord>(data);
    both::<RunCheckpoint>(data);
    if let Ok(c) = decode::<RunCheckpoint>(data) {
        let _ = c.check();
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
