//! ERDA (Qin & Joty, ACL 2022): continual few-shot relation learning on the frozen T5's
//! encoder states. Each part is named after the paper's concept: `instance` (marked sentences),
//! `encoder` (pooled, cached vectors), `head` (the trainable projection), `loss` (prototype
//! losses and the entity-swap regulariser), `augment` (retrieval from an unlabelled pool),
//! `learner` (memory, the 3-pass schedule, the baselines), `stream` (the task stream from data).
//! Where ours departs from the authors' code, the item says **ours**.

pub mod augment;
pub mod classifier;
pub mod encoder;
pub mod head;
pub mod instance;
pub mod learner;
pub mod loss;
pub mod paste;
pub mod record;
pub mod split;
pub mod stream;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RelationError {
    #[error("{0}")]
    Data(String),
    #[error("the relation vector table: {0}")]
    Cache(String),
    #[error("tokenizing {0:?}: {1}")]
    Tokenizer(String, String),
    #[error("{0:?}: the head or the tail has no token of its own")]
    NoTokens(String),
    #[error("{0:?}: the encoder gave a non-finite state ({1})")]
    NotFinite(String, f32),
    #[error(transparent)]
    Tune(#[from] crate::prompt::tune::TuneError),
}
