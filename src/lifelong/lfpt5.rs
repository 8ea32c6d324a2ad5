//! LFPT5 (Qin & Joty, ICLR 2022; qcwthu/Lifelong-Fewshot-Language-Learning): one soft prompt is
//! both the **solver** (input -> target) and the **generator** (a task's generation token ->
//! a whole example `"{input} | {target}"`). Before each new task the generator writes
//! pseudo examples of the earlier tasks of the same type; they are filtered, mixed into the new
//! task's data and distilled from the prompt as it was when the task began:
//! `L = (1 - k) (L_task + lm L_lm) + k L_KD`.
//!
//! Where ours departs from their code:
//! - the prompt is a prefix (theirs: a suffix after the input), 20 vectors (theirs: 300);
//! - the generation token is existing words, "generate {task}:" (theirs: a new vocabulary id),
//!   and the separator is " | ", one existing token (theirs: `__ans__`, an added token; spelt
//!   in T5's words it is six pieces with "_" four times, which their repetition penalty of 2.5
//!   all but forbids to repeat: no sample passed the filter);
//! - L_KD is a mean per pseudo target token (theirs: a sum over the vocabulary and positions
//!   per row, 7-48 against a task loss near 2), with the paper's k;
//! - summaries: the generator writes "{document} | {summary}" like every other type,
//!   within the 128-token cap (theirs: documents of >= 256 words, lead-3 as the summary);
//! - NER: a generated label is kept when every entity is of a known type and appears in the
//!   generated sentence ("none" included; theirs: exactly one entity).

use super::LifelongError;
use super::stream::{StreamTask, TaskType};
use crate::graph::Sampler;
use crate::model::LoadedModel;
use crate::prompt::SoftPrompt;
use crate::prompt::engine::Engine;
use crate::prompt::eval::target_text;
use crate::tasks::metrics::parse_entities;
use crate::tasks::{Example, TaskInfo, TaskKind};
use serde::{Deserialize, Serialize};

/// Splits a generated example into input and target: one token of T5's vocabulary ("▁|"), so
/// the repetition penalty cannot break it up.
pub const SEPARATOR: &str = "|";

/// The loss coefficients of a task type (the paper's, per type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficients {
    /// `lm`: weight of the generator loss.
    pub lm: f32,
    /// `k`: weight of distillation on pseudo rows.
    pub kd: f32,
}

pub fn coefficients(ty: TaskType) -> Coefficients {
    match ty {
        TaskType::Classification => Coefficients { lm: 0.25, kd: 0.01 },
        TaskType::Ner => Coefficients { lm: 0.10, kd: 0.03 },
        TaskType::Summarisation => Coefficients { lm: 0.10, kd: 0.04 },
    }
}

/// The generator's input for a task (ours: words, not a new token).
pub fn generation_input(task: &TaskInfo) -> String {
    format!("generate {}:", task.name.replace(['_', '.', '/'], " "))
}

/// What the generator learns to write for `e`: its input, the separator, its target text.
pub fn generator_target(task: &TaskInfo, e: &Example) -> String {
    format!("{} {SEPARATOR} {}", e.input, target_text(task, e))
}

/// LFPT5's sampling settings (the authors': top-k 64, repetition penalty 2.5, 128 tokens, 4
/// kept per class of which half validate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PseudoConfig {
    pub top_k: usize,
    pub repetition_penalty: f32,
    pub max_tokens: usize,
    /// Kept per class (per task without labels).
    pub per_class: usize,
    /// Generation rounds before giving up on a task's quota.
    pub rounds: usize,
}

impl Default for PseudoConfig {
    fn default() -> Self {
        Self {
            top_k: 64,
            repetition_penalty: 2.5,
            max_tokens: 128,
            per_class: 4,
            rounds: 3,
        }
    }
}

/// Why a generated example was kept or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Kept,
    /// Full quota for its class already.
    QuotaFull,
    /// The text does not split on the separator into exactly two parts.
    NotTwoParts(usize),
    EmptyPart,
    /// A classification target that names no label.
    UnknownLabel,
    /// NER: an entity whose type the task does not have, or whose span is not in the input.
    BadEntity(String),
    /// The same input was generated before.
    Duplicate,
}

impl Verdict {
    pub fn describe(&self) -> String {
        match self {
            Self::Kept => "kept".into(),
            Self::QuotaFull => "class quota full".into(),
            Self::NotTwoParts(n) => format!("{n} parts around the separator (need 2)"),
            Self::EmptyPart => "empty input or target".into(),
            Self::UnknownLabel => "not one of the task's labels".into(),
            Self::BadEntity(e) => format!("entity {e:?} unknown or not in the sentence"),
            Self::Duplicate => "duplicate input".into(),
        }
    }
}

/// One generated example, as the page's table shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PseudoSample {
    /// The earlier task it imitates.
    pub task: String,
    pub text: String,
    pub input: String,
    /// The raw label for classification (what [`Example::target`] holds), else the text.
    pub target: String,
    pub verdict: Verdict,
}

impl PseudoSample {
    pub fn example(&self) -> Example {
        Example::new(&self.input, &self.target)
    }
}

/// Judges one generated text for `task`; `entity_types` are the NER task's types (lowercase).
pub fn judge(task: &TaskInfo, entity_types: &[String], text: &str) -> PseudoSample {
    let parts: Vec<&str> = text.split(SEPARATOR).map(str::trim).collect();
    let sample = |input: &str, target: &str, verdict| PseudoSample {
        task: task.name.clone(),
        text: text.to_string(),
        input: input.to_string(),
        target: target.to_string(),
        verdict,
    };
    let [input, target] = parts[..] else {
        return sample("", "", Verdict::NotTwoParts(parts.len()));
    };
    if input.is_empty() || target.is_empty() {
        return sample(input, target, Verdict::EmptyPart);
    }
    if task.kind.has_labels() {
        let label = task
            .labels
            .iter()
            .find(|l| task.verbalize(l).trim().eq_ignore_ascii_case(target));
        return match label {
            Some(l) => sample(input, l, Verdict::Kept),
            None => sample(input, target, Verdict::UnknownLabel),
        };
    }
    if task.kind == TaskKind::Ner && !target.eq_ignore_ascii_case("none") {
        let entities = parse_entities(target);
        let lower = input.to_lowercase();
        let bad = entities
            .iter()
            .find(|(span, ty)| !entity_types.contains(ty) || !lower.contains(span.as_str()));
        if let Some((span, ty)) = bad {
            return sample(input, target, Verdict::BadEntity(format!("{span} [{ty}]")));
        }
        if entities.is_empty() {
            return sample(input, target, Verdict::BadEntity(target.to_string()));
        }
    }
    sample(input, target, Verdict::Kept)
}

/// The entity types a NER task's examples use (lowercase), for [`judge`].
pub fn entity_types(examples: &[Example]) -> Vec<String> {
    let mut types: Vec<String> = examples
        .iter()
        .flat_map(|e| parse_entities(&e.target))
        .map(|(_, ty)| ty)
        .collect();
    types.sort();
    types.dedup();
    types
}

/// What one task's generation produced: every sample with its verdict; the kept ones split
/// into training and validation rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PseudoSet {
    pub task: String,
    pub samples: Vec<PseudoSample>,
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub seconds: f64,
}

/// Generates pseudo examples of `task` with `prompt` (DMEA: none, the task's adapters are set)
/// until `cfg.per_class` are kept for each
/// class or `cfg.rounds` batches are spent; never fails for want of good samples (the set is
/// then short, or empty, and says why sample by sample).
pub async fn generate(
    engine: Engine<'_>,
    model: &LoadedModel,
    prompt: Option<&SoftPrompt>,
    task: &StreamTask,
    cfg: &PseudoConfig,
    seed: u64,
) -> Result<PseudoSet, LifelongError> {
    let t0 = crate::clock::now_ms();
    let info = &task.info;
    let classes: Vec<Option<&String>> = if info.kind.has_labels() {
        info.labels.iter().map(Some).collect()
    } else {
        vec![None]
    };
    let types = entity_types(&task.train);
    let quota = cfg.per_class.max(1);
    let input = model.tokenizer.encode(&generation_input(info))?;
    let batch = classes.len() * quota * 2;
    let mut sampler = Sampler::new(cfg.top_k, 1.0, cfg.repetition_penalty, seed);
    let mut kept: Vec<Vec<Example>> = vec![Vec::new(); classes.len()];
    let mut samples = Vec::new();
    for _ in 0..cfg.rounds {
        let inputs = vec![input.clone(); batch];
        let out = engine
            .sample(prompt, &inputs, cfg.max_tokens, &mut sampler)
            .await?;
        for ids in out {
            let text = model.tokenizer.decode(&ids)?;
            let mut s = judge(info, &types, &text);
            if s.verdict == Verdict::Kept {
                let class = classes
                    .iter()
                    .position(|c| c.is_none_or(|l| *l == s.target))
                    .unwrap_or(0);
                if samples
                    .iter()
                    .any(|o: &PseudoSample| o.verdict == Verdict::Kept && o.input == s.input)
                {
                    s.verdict = Verdict::Duplicate;
                } else if kept[class].len() >= quota {
                    s.verdict = Verdict::QuotaFull;
                } else {
                    kept[class].push(s.example());
                }
            }
            samples.push(s);
        }
        if kept.iter().all(|k| k.len() >= quota) {
            break;
        }
    }
    // Half of each class validates, as the authors keep 2 + 2 of 4.
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for k in kept {
        let half = k.len().div_ceil(2);
        let (t, v) = k.split_at(half);
        train.extend_from_slice(t);
        valid.extend_from_slice(v);
    }
    Ok(PseudoSet {
        task: info.name.clone(),
        samples,
        train,
        valid,
        seconds: (crate::clock::now_ms() - t0) / 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: TaskKind, labels: &[&str]) -> TaskInfo {
        let mut t = TaskInfo::pasted("rotten_tomatoes", kind, labels);
        t.verbalizer = [("fresh".to_string(), "good".to_string())].into();
        t
    }

    #[test]
    fn the_generator_writes_what_the_judge_reads() {
        let t = info(TaskKind::Classification, &["fresh", "rotten"]);
        assert_eq!(generation_input(&t), "generate rotten tomatoes:");
        let text = generator_target(&t, &Example::new("a fine film", "fresh"));
        assert_eq!(text, "a fine film | good");
        let s = judge(&t, &[], &text);
        assert_eq!(
            (s.verdict, s.input.as_str(), s.target.as_str()),
            (Verdict::Kept, "a fine film", "fresh")
        );
        assert_eq!(judge(&t, &[], "x | Rotten").target, "rotten");
    }

    #[test]
    fn the_filters_say_why() {
        let t = info(TaskKind::Classification, &["fresh", "rotten"]);
        assert_eq!(
            judge(&t, &[], "no separator").verdict,
            Verdict::NotTwoParts(1)
        );
        assert_eq!(judge(&t, &[], "a | b | c").verdict, Verdict::NotTwoParts(3));
        assert_eq!(judge(&t, &[], " | good").verdict, Verdict::EmptyPart);
        assert_eq!(
            judge(&t, &[], "film | great").verdict,
            Verdict::UnknownLabel
        );
        let ner = info(TaskKind::Ner, &[]);
        let types = entity_types(&[Example::new("Paris", "paris [location]")]);
        assert_eq!(types, ["location"]);
        let ok = judge(&ner, &types, "I saw Paris | Paris [location]");
        assert_eq!(ok.verdict, Verdict::Kept);
        assert_eq!(judge(&ner, &types, "I slept | none").verdict, Verdict::Kept);
        let absent = judge(&ner, &types, "I saw Rome | Paris [location]");
        assert_eq!(
            absent.verdict,
            Verdict::BadEntity("paris [location]".into())
        );
        let unknown = judge(&ner, &types, "I saw Paris | Paris [city]");
        assert!(matches!(unknown.verdict, Verdict::BadEntity(_)));
        assert!(matches!(
            judge(&ner, &types, "x | junk").verdict,
            Verdict::BadEntity(_)
        ));
        let summary = info(TaskKind::Generation, &[]);
        assert_eq!(judge(&summary, &[], "doc | sum").verdict, Verdict::Kept);
    }
}
