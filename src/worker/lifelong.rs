//! The worker's side of the page's Lifelong section: learn the pasted sequence with both
//! contenders, one after the other, posting the record as the run goes (at most every
//! `UPDATE_EVERY_MS`, and whenever a task is scored or pseudo examples are generated, which the
//! history keeps).

use super::host::{Host, Loaded, ended, post};
use super::protocol::{Kernels, Reply, due};
use crate::clock::now_ms;
use crate::compare::Status;
use crate::lifelong::record::LifelongRecord;
use crate::lifelong::{Progress, run};
use std::ops::ControlFlow;

/// Runs `rec`, posting it as it goes and once more at the end with its final status.
pub async fn learn(host: &Host, l: &Loaded, kernels: Kernels, mut rec: LifelongRecord) {
    rec.engine = l.engine_name(kernels);
    rec.status = Status::Running;
    let result = learn_sequence(host, l, kernels, &mut rec).await;
    rec.status = ended(result, &mut rec.error);
    post(&Reply::Lifelong {
        record: Box::new(rec),
        keep: true,
    });
}

/// Ok(true) when stopped by the person.
async fn learn_sequence(
    host: &Host,
    l: &Loaded,
    kernels: Kernels,
    rec: &mut LifelongRecord,
) -> Result<bool, String> {
    let stream = rec.stream().map_err(|e| e.to_string())?;
    let cfg = rec.config.clone();
    let started = now_ms();
    let mut last = None;
    for i in 0..rec.contenders.len() {
        let method = rec.contenders[i].method;
        let mut on = |p: Progress| {
            rec.contenders[i].hear(&p);
            rec.secs = (now_ms() - started) / 1e3;
            // A scored task, a pseudo set or a module decision changes what the history should
            // keep (and the module map is drawn as each task decides).
            let keep = matches!(
                p,
                Progress::Scored { .. } | Progress::Generated { .. } | Progress::Decided { .. }
            );
            if due(&mut last, now_ms(), keep) {
                post(&Reply::Lifelong {
                    record: Box::new(rec.clone()),
                    keep,
                });
            }
            if host.stop.get() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let done = run(l.engine(kernels), &l.model, &stream, method, &cfg, &mut on)
            .await
            .map_err(|e| format!("{}: {e}", method.name()))?;
        rec.contenders[i].run = done;
        rec.secs = (now_ms() - started) / 1e3;
        if host.stop.get() {
            return Ok(true);
        }
    }
    Ok(false)
}
