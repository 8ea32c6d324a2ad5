//! Evaluation with or without a prompt: rank classification for label tasks (score every label's
//! verbalizer tokens, pick the best), greedy generation otherwise; metrics from `tasks::metrics`.

use super::SoftPrompt;
use super::engine::Engine;
use super::tune::{Pair, TuneError};
use crate::model::LoadedModel;
use crate::tasks::metrics;
use crate::tasks::{Example, TaskInfo, TaskKind};
use crate::text::tokenizer::TokenizerError;
use serde::{Deserialize, Serialize};

/// The text T5 should produce for `e`: the verbalised label, or the target itself.
pub fn target_text<'a>(task: &'a TaskInfo, e: &'a Example) -> &'a str {
    if task.kind.has_labels() {
        task.verbalize(&e.target)
    } else {
        &e.target
    }
}

/// Tokenised (input, target + EOS) pairs; inputs longer than `max_input` tokens are cut (the
/// tokens are counted and cut, never silently dropped from the set).
pub fn pairs(
    model: &LoadedModel,
    task: &TaskInfo,
    examples: &[Example],
    max_input: usize,
) -> Result<Vec<Pair>, TokenizerError> {
    examples
        .iter()
        .map(|e| {
            let mut input = model.tokenizer.encode(&e.input)?;
            if input.len() > max_input {
                input.truncate(max_input - 1);
                input.push(model.t5.config.eos_token_id);
            }
            Ok(Pair {
                input,
                target: model.tokenizer.encode(target_text(task, e))?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Name of the headline metric for the task kind.
    pub metric: String,
    pub value: f64,
    /// Macro-F1 for label tasks.
    pub macro_f1: Option<f64>,
    pub predictions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Run(#[from] TuneError),
    #[error("task {0} has no labels to rank")]
    NoLabels(String),
}

/// The headline metric of a task kind, as [`evaluate`] names it.
pub fn metric_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Classification | TaskKind::Nli | TaskKind::Relation => "accuracy",
        TaskKind::Ner => "span F1",
        TaskKind::Qa => "exact match",
        TaskKind::Generation => "ROUGE-L",
    }
}

/// Scores `examples` of `task` with `prompt` (None: zero-shot, the bare model) on `engine`.
pub async fn evaluate(
    model: &LoadedModel,
    engine: Engine<'_>,
    prompt: Option<&SoftPrompt>,
    task: &TaskInfo,
    examples: &[Example],
    batch: usize,
    max_input: usize,
) -> Result<Scores, EvalError> {
    let pairs = pairs(model, task, examples, max_input)?;
    let predictions = if task.kind.has_labels() {
        if task.labels.is_empty() {
            return Err(EvalError::NoLabels(task.name.clone()));
        }
        let label_tokens: Vec<Vec<u32>> = task
            .labels
            .iter()
            .map(|l| model.tokenizer.encode(task.verbalize(l)))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(examples.len());
        for chunk in pairs.chunks(batch.max(1)) {
            let inputs: Vec<Vec<u32>> = chunk.iter().map(|p| p.input.clone()).collect();
            for best in engine.rank(prompt, &inputs, &label_tokens).await? {
                out.push(task.labels[best].clone());
            }
        }
        out
    } else {
        let max_new = pairs
            .iter()
            .map(|p| p.target.len())
            .max()
            .unwrap_or(8)
            .clamp(4, 64);
        let mut out = Vec::with_capacity(examples.len());
        for chunk in pairs.chunks(batch.max(1)) {
            let inputs: Vec<Vec<u32>> = chunk.iter().map(|p| p.input.clone()).collect();
            for ids in engine.generate(prompt, &inputs, max_new).await? {
                out.push(model.tokenizer.decode(&ids)?);
            }
        }
        out
    };
    let preds: Vec<&str> = predictions.iter().map(String::as_str).collect();
    let golds: Vec<&str> = examples.iter().map(|e| e.target.as_str()).collect();
    let (value, macro_f1) = match task.kind {
        TaskKind::Classification | TaskKind::Nli | TaskKind::Relation => (
            metrics::accuracy(&preds, &golds),
            Some(metrics::macro_f1(&preds, &golds, &task.labels)),
        ),
        TaskKind::Ner => (metrics::span_f1(&preds, &golds), None),
        TaskKind::Qa => {
            let em = examples
                .iter()
                .zip(&preds)
                .map(|(e, p)| metrics::exact_match(p, &references(e)))
                .sum::<f64>();
            (em / examples.len().max(1) as f64, None)
        }
        TaskKind::Generation => {
            let r = examples
                .iter()
                .zip(&preds)
                .map(|(e, p)| metrics::rouge_l(p, &references(e)))
                .sum::<f64>();
            (r / examples.len().max(1) as f64, None)
        }
    };
    let metric = metric_name(task.kind);
    Ok(Scores {
        metric: metric.into(),
        value,
        macro_f1,
        predictions,
    })
}

fn references(e: &Example) -> Vec<&str> {
    if e.answers.is_empty() {
        vec![e.target.as_str()]
    } else {
        e.answers.iter().map(String::as_str).collect()
    }
}
