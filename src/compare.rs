//! Two prompt initialisations tuned side by side on the same few-shot examples with the same
//! budget (the page's MPT-vs-PT comparison): the train/held-out split, the run's settings, the
//! interleaved tuning with held-out accuracy measured as it goes, and the record a run leaves
//! (kept in the browser's history, downloadable as JSON).

use crate::model::LoadedModel;
use crate::prompt::engine::Engine;
use crate::prompt::tune::{Pair, StepReport, TuneConfig, TuneError, Tuner, TunerState};
use crate::prompt::{Init, SoftPrompt};
use crate::tasks::Example;
use crate::tasks::sampling::SplitMix64;
use crate::text::tokenizer::TokenizerError;
use serde::{Deserialize, Serialize};

/// Where a contender's prompt starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitChoice {
    Random,
    Vocab,
    /// The label words' embeddings.
    Labels,
    /// A shipped meta-learned initialisation: the folder name under `assets/` (`mpt-fomaml`).
    Shipped(String),
}

impl InitChoice {
    /// Short name shown in the page and stored in run records ("PT random", "MPT fomaml").
    pub fn label(&self) -> String {
        match self {
            Self::Random => "PT random".into(),
            Self::Vocab => "PT vocab".into(),
            Self::Labels => "PT labels".into(),
            Self::Shipped(name) => match name.strip_prefix("mpt-") {
                Some("multitask") => "MTL".into(),
                Some(algo) => format!("MPT {algo}"),
                None => name.clone(),
            },
        }
    }

    /// A stable token for forms and storage (`random`, `vocab`, `labels`, `mpt-fomaml`).
    pub fn key(&self) -> String {
        match self {
            Self::Random => "random".into(),
            Self::Vocab => "vocab".into(),
            Self::Labels => "labels".into(),
            Self::Shipped(name) => name.clone(),
        }
    }

    pub fn from_key(key: &str) -> Self {
        match key {
            "random" => Self::Random,
            "vocab" => Self::Vocab,
            "labels" => Self::Labels,
            other => Self::Shipped(other.into()),
        }
    }

    /// The prompt initialisation, given the shipped prompt when this is one.
    pub fn init(&self, labels: &[String], shipped: Option<SoftPrompt>) -> Result<Init, String> {
        Ok(match self {
            Self::Random => Init::Random,
            Self::Vocab => Init::Vocab,
            Self::Labels => Init::Labels(labels.to_vec()),
            Self::Shipped(name) => Init::Given(
                shipped.ok_or_else(|| format!("the initialisation {name} is not loaded"))?,
            ),
        })
    }
}

/// Everything a comparison run is configured by; the same for both contenders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Training examples per label; the rest are held out.
    pub k_per_class: usize,
    pub prompt_len: usize,
    pub steps: usize,
    pub lr: f32,
    pub batch_size: usize,
    /// Held-out accuracy is measured every this many steps (and after the last).
    pub eval_every: usize,
    /// Seeds the split, the random/vocab initialisations and the minibatch order.
    pub seed: u64,
    /// Inputs longer than this many tokens are cut.
    pub max_input: usize,
}

impl Default for Settings {
    /// The CLI's tuning defaults (Adafactor, lr 0.3, prompt length 20), a budget for the page.
    fn default() -> Self {
        let t = TuneConfig::default();
        Self {
            k_per_class: 8,
            prompt_len: crate::prompt::DEFAULT_LEN,
            steps: 30,
            lr: t.lr,
            batch_size: t.batch_size,
            eval_every: 5,
            seed: 13,
            max_input: 128,
        }
    }
}

impl Settings {
    /// The first setting out of range, named as the page's form names it.
    pub fn check(&self) -> Result<(), String> {
        let bad = |what: &str, why: &str| Err(format!("{what}: {why}"));
        if self.k_per_class == 0 {
            return bad("training examples per label", "at least 1");
        }
        if self.prompt_len == 0 || self.prompt_len > crate::prompt::MAX_LEN {
            return bad(
                "prompt length",
                &format!("between 1 and {}", crate::prompt::MAX_LEN),
            );
        }
        if self.steps == 0 || self.steps > 10_000 {
            return bad("steps", "between 1 and 10000");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("learning rate", "a positive number");
        }
        if self.batch_size == 0 {
            return bad("batch size", "at least 1");
        }
        if self.eval_every == 0 {
            return bad("accuracy every", "at least 1 step");
        }
        if self.max_input < 2 {
            return bad("input tokens", "at least 2");
        }
        Ok(())
    }

    pub fn tune_config(&self) -> TuneConfig {
        TuneConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            ..TuneConfig::default()
        }
    }
}

/// Training and held-out examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<Example>,
    pub heldout: Vec<Example>,
}

/// `k` examples of each label (seeded choice) for training, every other example held out. A
/// label with at most `k` examples keeps one back when it has two or more, so that every label
/// is measured.
pub fn split_per_class(examples: &[Example], labels: &[String], k: usize, seed: u64) -> Split {
    let mut rng = SplitMix64::new(seed);
    let mut train_idx = Vec::new();
    for label in labels {
        let mut idx: Vec<usize> = (0..examples.len())
            .filter(|&i| &examples[i].target == label)
            .collect();
        rng.shuffle(&mut idx);
        let take = if idx.len() > k {
            k
        } else {
            idx.len().saturating_sub(1).max(1)
        };
        train_idx.extend(idx.into_iter().take(take));
    }
    train_idx.sort_unstable();
    let mut split = Split {
        train: Vec::new(),
        heldout: Vec::new(),
    };
    for (i, e) in examples.iter().enumerate() {
        if train_idx.binary_search(&i).is_ok() {
            split.train.push(e.clone());
        } else {
            split.heldout.push(e.clone());
        }
    }
    split
}

/// One entry of `presets/index.json`: a few-shot paste set built from a fetched target task
/// (`metaprompt data presets` writes it, the page reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    /// The JSON-lines file beside the index.
    pub file: String,
    pub examples: usize,
    /// The label words, as they appear in the file.
    pub labels: Vec<String>,
    pub source: String,
}

/// How a run ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Running,
    Finished,
    Stopped,
    Failed,
}

/// One contender's side of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContenderLog {
    pub init: InitChoice,
    /// (step, minibatch loss).
    pub losses: Vec<(usize, f32)>,
    /// (step, held-out accuracy in [0, 1]); step 0 is before training.
    pub accuracy: Vec<(usize, f64)>,
    /// Milliseconds spent in this contender's tuning steps (not in evaluation).
    pub train_ms: f64,
    /// Held-out predictions at the last measurement.
    pub predictions: Vec<String>,
    /// The tuned prompt (for downloads and for trying inputs after a reload).
    pub prompt: Option<SoftPrompt>,
    pub error: Option<String>,
}

impl ContenderLog {
    pub fn new(init: InitChoice) -> Self {
        Self {
            init,
            losses: Vec::new(),
            accuracy: Vec::new(),
            train_ms: 0.0,
            predictions: Vec::new(),
            prompt: None,
            error: None,
        }
    }

    pub fn last_accuracy(&self) -> Option<f64> {
        self.accuracy.last().map(|&(_, a)| a)
    }

    /// Mean milliseconds per tuning step so far.
    pub fn ms_per_step(&self) -> Option<f64> {
        let n = self.losses.len();
        (n > 0).then(|| self.train_ms / n as f64)
    }
}

/// A comparison run: what went in and what came out. Serialised into the page's history and
/// offered as the run's JSON download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique within a browser: the start time in milliseconds since the epoch.
    pub id: u64,
    /// ISO 8601 start time, for people.
    pub started: String,
    pub settings: Settings,
    pub labels: Vec<String>,
    pub split: Split,
    pub contenders: [ContenderLog; 2],
    pub status: Status,
    /// Which engine ran it ("our WGSL kernels on <adapter>").
    pub engine: String,
}

impl RunRecord {
    /// One line for the history list.
    pub fn summary(&self) -> String {
        let side = |c: &ContenderLog| match c.last_accuracy() {
            Some(a) => format!("{} {:.1}%", c.init.label(), a * 100.0),
            None => format!("{} -", c.init.label()),
        };
        format!(
            "{} · {} train / {} held out · {} steps · {} vs {} · {:?}",
            self.started,
            self.split.train.len(),
            self.split.heldout.len(),
            self.contenders[0].losses.len(),
            side(&self.contenders[0]),
            side(&self.contenders[1]),
            self.status
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Run(#[from] TuneError),
    #[error("no training examples after the split")]
    NoTraining,
    #[error("a comparison needs at least two labels, got {0}")]
    TooFewLabels(usize),
    #[error("input tokens: {0}, expected at least 2")]
    MaxInput(usize),
    #[error(
        "held-out example {index} has the label {label:?}, which is not among the run's labels"
    )]
    UnknownLabel { index: usize, label: String },
}

/// Tokenised examples and labels, shared by both contenders.
pub struct Prepared {
    pub train: Vec<Pair>,
    pub heldout_inputs: Vec<Vec<u32>>,
    /// Index into `labels` of each held-out example's gold label.
    pub heldout_gold: Vec<usize>,
    pub labels: Vec<String>,
    pub label_tokens: Vec<Vec<u32>>,
    max_input: usize,
}

impl Prepared {
    pub fn new(
        model: &LoadedModel,
        labels: &[String],
        split: &Split,
        max_input: usize,
    ) -> Result<Self, CompareError> {
        if labels.len() < 2 {
            return Err(CompareError::TooFewLabels(labels.len()));
        }
        if split.train.is_empty() {
            return Err(CompareError::NoTraining);
        }
        // A stored record may carry any value; the form refuses it, and `input` cuts at it.
        if max_input < 2 {
            return Err(CompareError::MaxInput(max_input));
        }
        let label_tokens = labels
            .iter()
            .map(|l| model.tokenizer.encode(l))
            .collect::<Result<Vec<_>, _>>()?;
        let mut p = Self {
            train: Vec::with_capacity(split.train.len()),
            heldout_inputs: Vec::with_capacity(split.heldout.len()),
            heldout_gold: Vec::with_capacity(split.heldout.len()),
            labels: labels.to_vec(),
            label_tokens,
            max_input,
        };
        for e in &split.train {
            let target = match labels.iter().position(|l| l == &e.target) {
                Some(i) => p.label_tokens[i].clone(),
                None => model.tokenizer.encode(&e.target)?,
            };
            p.train.push(Pair {
                input: p.input(model, &e.input)?,
                target,
            });
        }
        for (index, e) in split.heldout.iter().enumerate() {
            // A paste's labels cover its held-out examples; a damaged record may not.
            let gold = labels.iter().position(|l| l == &e.target).ok_or_else(|| {
                CompareError::UnknownLabel {
                    index,
                    label: e.target.clone(),
                }
            })?;
            p.heldout_inputs.push(p.input(model, &e.input)?);
            p.heldout_gold.push(gold);
        }
        Ok(p)
    }

    /// Token ids of one input, cut to `max_input` (keeping the closing EOS).
    pub fn input(&self, model: &LoadedModel, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = model.tokenizer.encode(text)?;
        if ids.len() > self.max_input {
            ids.truncate(self.max_input - 1);
            ids.push(model.t5.config.eos_token_id);
        }
        Ok(ids)
    }

    /// Held-out accuracy of `prompt` and each held-out prediction (a label), in batches of
    /// `batch`. An empty held-out set scores `None`.
    pub async fn heldout_accuracy(
        &self,
        engine: Engine<'_>,
        prompt: &SoftPrompt,
        batch: usize,
    ) -> Result<(Option<f64>, Vec<String>), TuneError> {
        let mut preds = Vec::with_capacity(self.heldout_inputs.len());
        for chunk in self.heldout_inputs.chunks(batch.max(1)) {
            preds.extend(engine.rank(Some(prompt), chunk, &self.label_tokens).await?);
        }
        let right = preds
            .iter()
            .zip(&self.heldout_gold)
            .filter(|(p, g)| p == g)
            .count();
        let acc = (!preds.is_empty()).then(|| right as f64 / preds.len() as f64);
        Ok((
            acc,
            preds.into_iter().map(|i| self.labels[i].clone()).collect(),
        ))
    }

    /// Log-probability of every label for one input under `prompt`, best first.
    pub async fn label_scores(
        &self,
        model: &LoadedModel,
        engine: Engine<'_>,
        prompt: Option<&SoftPrompt>,
        text: &str,
    ) -> Result<Vec<(String, f32)>, CompareError> {
        let ids = self.input(model, text)?;
        let scores = engine
            .label_scores(prompt, &[ids], &self.label_tokens)
            .await?;
        let mut out: Vec<(String, f32)> = self
            .labels
            .iter()
            .cloned()
            .zip(scores.into_iter().next().unwrap_or_default())
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }
}

/// A comparison where it stands after a step: the record so far and both tuners to the bit.
/// The page keeps the newest in IndexedDB, so that a run cut short by a reload, a crash, a lost
/// GPU or the Stop button resumes at the step it reached, on either engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCheckpoint {
    pub record: RunRecord,
    pub tuners: [TunerState; 2],
}

impl RunCheckpoint {
    /// Steps both contenders have taken.
    pub fn step(&self) -> usize {
        self.tuners[0].step
    }

    /// Whether the record and the tuners agree (a stored checkpoint may be damaged or another
    /// version's) and there are steps left to take.
    pub fn check(&self) -> Result<(), String> {
        let steps = self.record.settings.steps;
        for (t, c) in self.tuners.iter().zip(&self.record.contenders) {
            if t.step != self.step() || c.losses.len() != t.step {
                return Err(format!(
                    "the checkpoint's contenders disagree on their step ({} logged, {} taken, {} for the first)",
                    c.losses.len(),
                    t.step,
                    self.step()
                ));
            }
        }
        if self.step() >= steps {
            return Err(format!("the run has taken all of its {steps} steps"));
        }
        Ok(())
    }
}

/// The two contenders' tuners, stepped alternately so that both progress together.
pub struct Duel {
    pub tuners: [Tuner; 2],
}

impl Duel {
    pub fn new(prompts: [SoftPrompt; 2], settings: &Settings) -> Self {
        let cfg = settings.tune_config();
        let [a, b] = prompts;
        Self {
            tuners: [Tuner::new(a, &cfg), Tuner::new(b, &cfg)],
        }
    }

    /// The duel carried on from `states` (a [`RunCheckpoint`]'s) over `data`.
    pub fn resume(
        states: [TunerState; 2],
        settings: &Settings,
        data: &Prepared,
    ) -> Result<Self, TuneError> {
        let cfg = settings.tune_config();
        let [a, b] = states;
        let n = data.train.len();
        Ok(Self {
            tuners: [Tuner::resume(a, &cfg, n)?, Tuner::resume(b, &cfg, n)?],
        })
    }

    /// Where the duel stands, with `record`, the log so far.
    pub fn checkpoint(&self, record: &RunRecord) -> RunCheckpoint {
        RunCheckpoint {
            record: record.clone(),
            tuners: [self.tuners[0].state(), self.tuners[1].state()],
        }
    }

    /// One step of contender `i`, logged (loss, time) into `log`.
    pub async fn step(
        &mut self,
        engine: Engine<'_>,
        data: &Prepared,
        i: usize,
        log: &mut ContenderLog,
    ) -> Result<StepReport, TuneError> {
        let t = crate::clock::now_ms();
        let r = self.tuners[i].step(engine, &data.train).await?;
        log.train_ms += crate::clock::now_ms() - t;
        log.losses.push((r.step, r.loss));
        Ok(r)
    }

    /// Measures contender `i` on the held-out set at its current step and logs it.
    pub async fn measure(
        &self,
        engine: Engine<'_>,
        data: &Prepared,
        i: usize,
        batch: usize,
        log: &mut ContenderLog,
    ) -> Result<(), TuneError> {
        let t = &self.tuners[i];
        let (acc, preds) = data.heldout_accuracy(engine, &t.prompt, batch).await?;
        if let Some(a) = acc {
            log.accuracy.push((t.steps(), a));
        }
        log.predictions = preds;
        log.prompt = Some(t.prompt.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(input: &str, target: &str) -> Example {
        Example {
            input: input.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn split_takes_k_per_label_and_holds_out_the_rest() {
        let mut all = Vec::new();
        for i in 0..10 {
            all.push(ex(&format!("a{i}"), "pos"));
        }
        for i in 0..3 {
            all.push(ex(&format!("b{i}"), "neg"));
        }
        let labels = vec!["pos".to_string(), "neg".to_string()];
        let s = split_per_class(&all, &labels, 4, 7);
        let count = |v: &[Example], l: &str| v.iter().filter(|e| e.target == l).count();
        assert_eq!(count(&s.train, "pos"), 4);
        // Only 3 "neg": one is kept back so the label is measured.
        assert_eq!(count(&s.train, "neg"), 2);
        assert_eq!(s.train.len() + s.heldout.len(), all.len());
        assert_eq!(s, split_per_class(&all, &labels, 4, 7), "seeded");
        assert_ne!(s, split_per_class(&all, &labels, 4, 8));
        // A single example of a label trains.
        let one = split_per_class(&[ex("x", "pos"), ex("y", "neg")], &labels, 4, 1);
        assert_eq!(one.train.len(), 2);
    }

    #[test]
    fn settings_name_the_bad_field() {
        let s = Settings {
            lr: f32::NAN,
            ..Settings::default()
        };
        assert!(s.check().unwrap_err().starts_with("learning rate"));
        assert!(Settings::default().check().is_ok());
    }

    #[test]
    fn init_choice_round_trips_and_names_columns_as_eval() {
        for c in [
            InitChoice::Random,
            InitChoice::Labels,
            InitChoice::Shipped("mpt-reptile".into()),
        ] {
            assert_eq!(InitChoice::from_key(&c.key()), c);
        }
        assert_eq!(
            InitChoice::Shipped("mpt-fomaml".into()).label(),
            "MPT fomaml"
        );
        assert_eq!(InitChoice::Shipped("mpt-multitask".into()).label(), "MTL");
    }
}
