//! Messages between the page and its worker: plain data (serde), posted as CBOR bytes. A JS
//! object graph (serde-wasm-bindgen) costs one call across the wasm boundary per field and
//! number, which took the page's thread 200-300 ms per run update on a busy 2-core machine;
//! bytes cost one copy. CBOR keeps NaN and infinite floats (JSON turns them into null).

use crate::compare::{RunCheckpoint, RunRecord};
use crate::lifelong::record::LifelongRecord;
use crate::prompt::SoftPrompt;
use crate::prompt::bench::Shape;
use crate::relation::classifier::Classifier;
use crate::relation::record::RelationRecord;
use serde::{Deserialize, Serialize};

/// Which engine trains: the faster of ours as timed at load, one of ours by name, or burn's
/// generic ops on the device burn's model went to (the faster one's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kernels {
    /// What an older page kept as "Ours" means the same now.
    #[serde(alias = "Ours")]
    Fastest,
    Wgsl,
    Cpu,
    Generic,
}

/// The tuning step each of our engines is timed on at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub shape: Shape,
    /// Timed steps after the warm-up; the median is reported.
    pub steps: usize,
}

impl Probe {
    /// A quarter of the benchmark batch's tokens: a second or so on the CPU engine with
    /// flan-t5-small, so that loading stays quick.
    pub const QUICK: Probe = Probe {
        shape: Shape {
            batch: 2,
            input: 32,
            prompt: 8,
            target: 4,
        },
        steps: 1,
    };
    /// The native benchmark's shape (`metaprompt bench tune`), for the page's benchmark.
    pub const BENCH: Probe = Probe {
        shape: crate::prompt::bench::SHAPE,
        steps: 3,
    };
}

/// One of our engines' time for the load-time tuning step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// "our WGSL kernels on <adapter>" or "our CPU engine on ...".
    pub engine: String,
    /// Whether it is the WGSL one.
    pub wgsl: bool,
    /// The median step after a warm-up (shaders compiled, buffers made), in milliseconds; the
    /// error when the engine failed a step.
    pub ms: Result<f64, String>,
}

/// Bytes read so far of one file, and its size when the server said it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub loaded: u64,
    pub total: Option<u64>,
}

/// Where the bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Cache,
    Network,
}

/// The page asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Load the converted model in folder `dir` (relative to the page), through Cache `cache`;
    /// on WebGPU if `webgpu` (the page found it: a worker's navigator may differ from the page's,
    /// and the page's finding is the one the person sees), else on the CPU engine.
    Load {
        dir: String,
        cache: String,
        webgpu: bool,
        probe: Probe,
    },
    /// Train both contenders of `run` (its id, split and settings set by the page); `shipped`
    /// holds the meta-learned initialisations it names.
    Train {
        run: Box<RunRecord>,
        shipped: Vec<(String, SoftPrompt)>,
        kernels: Kernels,
    },
    /// Carry a comparison on from `checkpoint` (one the worker posted) on `kernels`, which may
    /// be another engine than the one it started on.
    Resume {
        checkpoint: Box<RunCheckpoint>,
        kernels: Kernels,
    },
    /// Stop the run in progress after its current step.
    Stop,
    /// Greedy generation on the frozen model.
    Generate {
        id: u64,
        text: String,
        max_new: usize,
    },
    /// Every label's log-probability for `text` under both of `run`'s tuned prompts.
    Score {
        id: u64,
        run: Box<RunRecord>,
        text: String,
        kernels: Kernels,
    },
    /// Encode `run`'s sentences on our engine (`kernels`; burn's generic ops have no pooled
    /// states, so `Generic` means the fastest of ours) and learn its stream with both
    /// contenders, one after the other.
    Relations {
        run: Box<RelationRecord>,
        kernels: Kernels,
    },
    /// Learn `run`'s pasted task sequence with both contenders, one after the other.
    Lifelong {
        run: Box<LifelongRecord>,
        kernels: Kernels,
    },
    /// Every relation's score for one marked sentence under each named classifier.
    ScoreRelation {
        id: u64,
        text: String,
        classifiers: Vec<(String, Classifier)>,
        kernels: Kernels,
    },
}

/// Label scores of one contender, best first.
pub type Scores = Vec<(String, Vec<(String, f32)>)>;

/// The worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The worker's handler is installed: requests posted before this would have been lost.
    Started,
    Downloading {
        file: String,
        progress: Progress,
    },
    /// Parsing the checkpoint and uploading the weights.
    Preparing,
    Ready {
        /// Our engines' times for one tuning step of `probe`'s shape; `Kernels::Fastest` trains
        /// on the one `fastest` picks.
        timings: Vec<Timing>,
        probe: Probe,
        source: Source,
        cached: bool,
        secs: f64,
        /// Cached files that failed their manifest check and were fetched again, and why.
        repaired: Vec<String>,
    },
    LoadFailed {
        error: String,
    },
    /// The run so far; `keep` when it is worth writing to the history (after a measurement and
    /// at the end). Its status says when it is over.
    Run {
        record: Box<RunRecord>,
        keep: bool,
    },
    /// Where the comparison in progress stands after its latest step (and measurement): what
    /// the page keeps so that the run can resume there.
    RunCheckpoint(Box<RunCheckpoint>),
    Generated {
        id: u64,
        result: Result<(String, usize), String>,
    },
    Scored {
        id: u64,
        result: Result<Scores, String>,
    },
    /// A relation run so far, as `Run` is for a comparison.
    Relations {
        record: Box<RelationRecord>,
        keep: bool,
    },
    RelationScored {
        id: u64,
        result: Result<Scores, String>,
    },
    /// A lifelong run so far, as `Run` is for a comparison.
    Lifelong {
        record: Box<LifelongRecord>,
        keep: bool,
    },
}

impl Reply {
    /// The request this answers, for replies that answer one.
    pub fn answers(&self) -> Option<u64> {
        match self {
            Reply::Generated { id, .. }
            | Reply::Scored { id, .. }
            | Reply::RelationScored { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// A message as bytes.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(message, &mut out).map_err(|e| format!("encode a message: {e}"))?;
    Ok(out)
}

/// A message from bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("decode a message: {e}"))
}

/// How often a stream of updates (download progress, training steps) is posted at most: the page
/// redraws on each, and a fast engine would otherwise flood its thread.
pub const UPDATE_EVERY_MS: f64 = 100.0;

/// Whether an update is due: the first, the last (`force`), or `UPDATE_EVERY_MS` after the
/// previous one posted (whose time `last` holds, updated when due).
pub fn due(last: &mut Option<f64>, now: f64, force: bool) -> bool {
    let due = force || last.is_none_or(|t| now - t >= UPDATE_EVERY_MS);
    if due {
        *last = Some(now);
    }
    due
}

/// Index of the fastest engine that passed its step.
pub fn fastest(timings: &[Timing]) -> Option<usize> {
    let ms = |i: usize| timings[i].ms.clone().unwrap_or(f64::INFINITY);
    (0..timings.len())
        .filter(|&i| timings[i].ms.is_ok())
        .min_by(|&a, &b| ms(a).total_cmp(&ms(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_engine_is_the_quickest_that_passed() {
        let t = |ms: Result<f64, String>, wgsl| Timing {
            engine: String::new(),
            wgsl,
            ms,
        };
        let cpu_wins = [t(Ok(900.0), false), t(Ok(7000.0), true)];
        assert_eq!(fastest(&cpu_wins), Some(0));
        let gpu_wins = [t(Ok(900.0), false), t(Ok(40.0), true)];
        assert_eq!(fastest(&gpu_wins), Some(1));
        let gpu_failed = [t(Ok(900.0), false), t(Err("lost".into()), true)];
        assert_eq!(fastest(&gpu_failed), Some(0));
        assert_eq!(fastest(&[t(Err("x".into()), false)]), None);
    }

    #[test]
    fn updates_are_spaced_but_the_first_and_the_last_always_go() {
        let mut last = None;
        let sent: Vec<bool> = [(0.0, false), (50.0, false), (99.0, false), (100.0, false)]
            .iter()
            .map(|&(t, f)| due(&mut last, t, f))
            .collect();
        assert_eq!(sent, [true, false, false, true]);
        assert!(due(&mut last, 101.0, true));
        assert!(!due(&mut last, 150.0, false));
    }

    #[test]
    fn a_reply_survives_the_bytes_with_its_non_finite_floats() {
        let scores = Reply::Scored {
            id: 3,
            result: Ok(vec![(
                "A".into(),
                vec![("yes".into(), f32::NEG_INFINITY), ("no".into(), -0.25)],
            )]),
        };
        assert_eq!(decode::<Reply>(&encode(&scores).unwrap()).unwrap(), scores);
        let nan = Reply::Generated {
            id: 1,
            result: Ok((f32::NAN.to_string(), 2)),
        };
        assert_eq!(decode::<Reply>(&encode(&nan).unwrap()).unwrap(), nan);
        let err = decode::<Reply>(&[0xff, 0x00]).unwrap_err();
        assert!(err.starts_with("decode a message"), "{err}");
    }

    #[test]
    fn replies_name_the_request_they_answer() {
        let g = Reply::Generated {
            id: 7,
            result: Err("x".into()),
        };
        assert_eq!(g.answers(), Some(7));
        assert_eq!(Reply::Preparing.answers(), None);
    }
}
