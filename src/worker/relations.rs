//! The worker's side of the page's Relations section: encode the pasted stream's sentences on
//! our engine (the vectors stay while the model is loaded, so a second run re-encodes nothing),
//! then learn the stream with both contenders, one after the other, posting the record after
//! every chunk of sentences and every task.

use super::host::{Host, Loaded, ended, post};
use super::protocol::{Kernels, Reply, Scores, due};
use crate::clock::now_ms;
use crate::compare::Status;
use crate::relation::classifier::Classifier;
use crate::relation::encoder::Vectors;
use crate::relation::instance::Instance;
use crate::relation::learner::{Prepared, run};
use crate::relation::record::{Encoding, RelationRecord};
use crate::relation::stream::Stream;

/// Sentences encoded between two looks at the message queue (a Stop among them).
const ENCODE_CHUNK: usize = 32;
/// Sentences per encoder batch.
const ENCODE_BATCH: usize = 16;

/// Burn's generic ops have no pooled states: relation encoding runs on the fastest of ours.
fn encoder_kernels(k: Kernels) -> Kernels {
    match k {
        Kernels::Generic => Kernels::Fastest,
        k => k,
    }
}

/// The host's vector table for the loaded model on engine `k`, taken out (the host keeps none
/// while a run holds it, so no borrow lives across an await). A load clears the table.
fn take_vectors(host: &Host, l: &Loaded, k: Kernels) -> Vectors {
    let d = l.engine(k).config().d_model;
    let id = l.engine_name(k);
    host.vectors
        .take()
        .filter(|v| v.model == id && v.dim == 2 * d)
        .unwrap_or_else(|| Vectors::new(2 * d, id))
}

/// Runs `rec`, posting it as it goes and once more at the end with its final status.
pub async fn learn(host: &Host, l: &Loaded, kernels: Kernels, mut rec: RelationRecord) {
    let k = encoder_kernels(kernels);
    rec.engine = l.engine_name(k);
    rec.status = Status::Running;
    let mut vectors = take_vectors(host, l, k);
    let result = learn_stream(host, l, k, &mut vectors, &mut rec).await;
    host.vectors.replace(Some(vectors));
    rec.status = ended(result, &mut rec.error);
    post(&Reply::Relations {
        record: Box::new(rec),
        keep: true,
    });
}

/// Ok(true) when stopped by the person.
async fn learn_stream(
    host: &Host,
    l: &Loaded,
    k: Kernels,
    vectors: &mut Vectors,
    rec: &mut RelationRecord,
) -> Result<bool, String> {
    if let Some(p) = rec.stream.problems.first() {
        return Err(p.clone());
    }
    let stream =
        Stream::new(rec.stream.tasks.clone(), &rec.stream.pool).map_err(|e| e.to_string())?;
    // Each distinct sentence once (so that the counts shown are sentences), split into those
    // still to encode and those the table holds from an earlier run.
    let mut seen = std::collections::HashSet::new();
    let (mut todo, reused): (Vec<&Instance>, Vec<&Instance>) = stream
        .instances()
        .into_iter()
        .filter(|i| seen.insert(&i.text))
        .partition(|i| vectors.get(&i.text).is_none());
    todo.sort_by_key(|i| i.text.len());
    let total = todo.len();
    let mut enc = Encoding {
        done: 0,
        total,
        reused: reused.len(),
        secs: 0.0,
    };
    let started = now_ms();
    let mut last = None;
    for chunk in todo.chunks(ENCODE_CHUNK) {
        vectors
            .encode_missing(
                l.engine(k),
                &l.model.tokenizer,
                chunk,
                ENCODE_BATCH,
                &mut |_, _| {},
            )
            .await
            .map_err(|e| format!("encoding: {e}"))?;
        enc.done += chunk.len();
        enc.secs = (now_ms() - started) / 1e3;
        rec.encoding = Some(enc.clone());
        if due(&mut last, now_ms(), enc.done == total) {
            post(&Reply::Relations {
                record: Box::new(rec.clone()),
                keep: false,
            });
        }
        gloo::timers::future::TimeoutFuture::new(0).await;
        if host.stop.get() {
            return Ok(true);
        }
    }
    rec.encoding = Some(enc);
    let prepared = Prepared::new(&stream, vectors).map_err(|e| e.to_string())?;
    rec.calibration = Some(prepared.calibration.clone());
    let (cfg, seed) = (rec.config.clone(), rec.seed);
    for i in 0..rec.contenders.len() {
        let method = rec.contenders[i].method;
        rec.contenders[i].after.clear();
        rec.contenders[i].task_ms.clear();
        rec.contenders[i].order.clear();
        let mut t = now_ms();
        let mut on_task = |a: &crate::relation::learner::AfterTask| {
            let now = now_ms();
            let c = &mut rec.contenders[i];
            c.after.push(a.clone());
            c.task_ms.push(now - t);
            t = now;
            post(&Reply::Relations {
                record: Box::new(rec.clone()),
                keep: false,
            });
            true
        };
        let (done, classifier) = run(&prepared, method, &cfg, seed, &mut on_task)
            .map_err(|e| format!("{}: {e}", method.name()))?;
        let c = &mut rec.contenders[i];
        c.order = done.order;
        c.classifier = Some(classifier);
        gloo::timers::future::TimeoutFuture::new(0).await;
        if host.stop.get() && i + 1 < rec.contenders.len() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every relation's score for one typed sentence under each classifier.
pub async fn score(
    host: &Host,
    l: &Loaded,
    kernels: Kernels,
    text: &str,
    classifiers: &[(String, Classifier)],
) -> Result<Scores, String> {
    let inst = Instance::parse(text.trim()).map_err(|e| e.to_string())?;
    let k = encoder_kernels(kernels);
    let mut vectors = take_vectors(host, l, k);
    let encoded = vectors
        .encode_missing(l.engine(k), &l.model.tokenizer, &[&inst], 1, &mut |_, _| {})
        .await;
    let x = vectors.get(&inst.text).map(<[f32]>::to_vec);
    host.vectors.replace(Some(vectors));
    encoded.map_err(|e| e.to_string())?;
    let x = x.ok_or("the sentence was not encoded")?;
    classifiers
        .iter()
        .map(|(name, c)| {
            c.scores(&x)
                .map(|s| (name.clone(), s))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect()
}
