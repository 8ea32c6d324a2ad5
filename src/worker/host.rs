//! The worker's side: it owns the loaded model and answers the page's requests. Long work is
//! async and yields between steps, so a Stop (or a Generate) posted meanwhile is read within one
//! step.

use super::protocol::{
    Kernels, Probe, Progress, Reply, Request, Scores, Source, Timing, due, fastest,
};
use crate::browser::download;
use crate::clock::{now_ms, within};
use crate::compare::{Duel, InitChoice, Prepared, RunCheckpoint, RunRecord, Settings, Status};
use crate::cpu::CpuT5;
use crate::gpu::Gpu;
use crate::kernels::GpuT5;
use crate::model::checkpoint::Checkpoint;
use crate::model::{LoadedModel, T5Config};
use crate::prompt::bench;
use crate::prompt::engine::Engine;
use crate::prompt::tune::{Pair, TunerState};
use crate::prompt::{SoftPrompt, initial_prompt};
use crate::relation::encoder::Vectors;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

/// Held-out examples scored per batch.
const EVAL_BATCH: usize = 16;
/// The model folder's files in download order: the small ones first so that a wrong
/// deployment fails fast.
const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// How long (at least) the load waits for WebGPU to answer (the adapter, then the timed step)
/// before it goes on without it: a headless software adapter has been seen to never answer, and
/// SwiftShader takes over 60 s for the real model's warm-up and step (the CPU engine 1.3 s); a
/// real GPU compiles its pipelines and steps in a few seconds.
const GPU_LIMIT_MS: u32 = 30_000;

/// The frozen T5 thrice over: our CPU engine, our WGSL engine when there is WebGPU, and burn's
/// model (generation, initialisations, the generic engine) on the faster engine's device.
pub(super) struct Loaded {
    pub(super) model: LoadedModel,
    cpu: Box<CpuT5>,
    /// Our WGSL engine and the adapter's name.
    gpu: Option<(Box<GpuT5>, String)>,
    /// Whether the WGSL engine timed faster.
    wgsl_fastest: bool,
    timings: Vec<Timing>,
}

impl Loaded {
    async fn from_bytes(
        gpu: Option<&Gpu>,
        probe: Probe,
        safetensors: &[u8],
        config_json: &[u8],
        tokenizer_json: &[u8],
    ) -> Result<Self, String> {
        let config = T5Config::from_json(config_json)?;
        let ckpt = Checkpoint::parse(safetensors, &config).map_err(|e| e.to_string())?;
        let cpu = Box::new(CpuT5::from_checkpoint(&ckpt, &config).map_err(|e| e.to_string())?);
        let wgsl = match gpu {
            Some(g) => Some((
                Box::new(GpuT5::from_checkpoint(g, &ckpt, &config).map_err(|e| e.to_string())?),
                g.report().name,
            )),
            None => None,
        };
        let (pairs, prompt) = bench::batch(&config, probe.shape);
        let refs: Vec<&Pair> = pairs.iter().collect();
        let reference = time_step(Engine::Ours(&cpu), probe.steps, &prompt, &refs).await;
        let mut timings = vec![Timing {
            engine: cpu_name(),
            wgsl: false,
            ms: reference.as_ref().map(|r| r.0).map_err(Clone::clone),
        }];
        if let Some((g, adapter)) = &wgsl {
            // A software adapter may hang in a step, or take minutes: past the limit (or ten
            // times the CPU engine's time for the same steps) the CPU engine has won.
            let cpu_ms = timings[0]
                .ms
                .as_ref()
                .map_or(0.0, |ms| ms * (probe.steps + 1) as f64);
            let limit = GPU_LIMIT_MS.max((10.0 * cpu_ms) as u32);
            let step = within(
                limit,
                time_step(Engine::Wgpu(g), probe.steps, &prompt, &refs),
            )
            .await
            .unwrap_or_else(|| Err(format!("no answer within {} s", limit / 1000)));
            // The same step as the CPU engine's: the kernels must agree before they train.
            let ms = step.and_then(|(ms, loss, grad)| match &reference {
                Ok((_, l, g)) => bench::agreement((loss, &grad), (*l, g)).map(|()| ms),
                Err(_) => Ok(ms),
            });
            timings.push(Timing {
                engine: wgsl_name(adapter),
                wgsl: true,
                ms,
            });
        }
        let wgsl_fastest = fastest(&timings).is_some_and(|i| timings[i].wgsl);
        let device = match gpu {
            Some(g) if wgsl_fastest => g.device.clone(),
            _ => burn::tensor::Device::flex(),
        };
        let model =
            LoadedModel::from_bytes(safetensors, config_json, tokenizer_json, &device.autodiff())
                .map_err(|e| e.to_string())?;
        Ok(Self {
            model,
            cpu,
            gpu: wgsl,
            wgsl_fastest,
            timings,
        })
    }

    /// Whether `k` trains on the WGSL engine (else the CPU one, or burn's ops for `Generic`).
    fn on_wgsl(&self, k: Kernels) -> bool {
        self.gpu.is_some()
            && match k {
                // A lost GPU is nobody's fastest.
                Kernels::Fastest => self.wgsl_fastest && Gpu::lost().is_none(),
                Kernels::Wgsl => true,
                Kernels::Cpu | Kernels::Generic => false,
            }
    }

    pub(super) fn engine(&self, k: Kernels) -> Engine<'_> {
        match (&self.gpu, k) {
            (_, Kernels::Generic) => Engine::Burn(&self.model.t5),
            (Some((g, _)), _) if self.on_wgsl(k) => Engine::Wgpu(g),
            _ => Engine::Ours(&self.cpu),
        }
    }

    pub(super) fn engine_name(&self, k: Kernels) -> String {
        match (&self.gpu, k) {
            (Some((_, adapter)), Kernels::Generic) if self.wgsl_fastest => {
                format!("burn's generic ops on {adapter}")
            }
            (_, Kernels::Generic) => "burn's generic ops on the CPU (WebAssembly)".into(),
            (Some((_, adapter)), _) if self.on_wgsl(k) => wgsl_name(adapter),
            _ => cpu_name(),
        }
    }
}

fn cpu_name() -> String {
    "our CPU engine on the CPU (WebAssembly, one thread)".into()
}

fn wgsl_name(adapter: &str) -> String {
    format!("our WGSL kernels on {adapter}")
}

/// The median of `steps` tuning steps' times after a warm-up step.
/// The median time of `steps` tuning steps after a warm-up, with the warm-up's loss and prompt
/// gradient (the engines' agreement is checked on them).
async fn time_step(
    e: Engine<'_>,
    steps: usize,
    prompt: &SoftPrompt,
    pairs: &[&Pair],
) -> Result<(f64, f32, Vec<f32>), String> {
    let mut ms = Vec::with_capacity(steps);
    let mut first = None;
    for i in 0..=steps.max(1) {
        let t = now_ms();
        let out = e
            .loss_and_grad(prompt, pairs)
            .await
            .map_err(|err| err.to_string())?;
        if i > 0 {
            ms.push(now_ms() - t);
        }
        first.get_or_insert(out);
    }
    ms.sort_by(f64::total_cmp);
    let (loss, grad) = first.unwrap_or_default();
    Ok((ms[ms.len() / 2], loss, grad))
}

/// The worker's state between messages.
#[derive(Default)]
pub(super) struct Host {
    loaded: RefCell<Option<Rc<Loaded>>>,
    /// A load or a run in progress (the page waits for its end before the next).
    busy: Cell<bool>,
    pub(super) stop: Cell<bool>,
    /// The relation encoder's vectors for the loaded model (`relations`).
    pub(super) vectors: RefCell<Option<Vectors>>,
}

/// Why a run was refused.
const NOT_READY: &str = "the model is not loaded, or still busy";

impl Host {
    /// The loaded model for a new run, the host marked busy and the stop cleared; None when
    /// there is no model or a load or run is in progress.
    fn claim(&self) -> Option<Rc<Loaded>> {
        let l = self.loaded.borrow().clone().filter(|_| !self.busy.get())?;
        self.busy.set(true);
        self.stop.set(false);
        Some(l)
    }
}

pub(super) fn post(reply: &Reply) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let sent = super::protocol::encode(reply).and_then(|bytes| {
        scope
            .post_message(&js_sys::Uint8Array::from(bytes.as_slice()))
            .map_err(|e| format!("{e:?}"))
    });
    if let Err(e) = sent {
        gloo::console::error!(format!("the worker could not post its reply: {e}"));
    }
}

/// Installs the message handler and says so (the page holds its requests until then).
pub fn start() {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let host = Rc::new(Host::default());
    let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
        let bytes = js_sys::Uint8Array::new(&ev.data()).to_vec();
        match super::protocol::decode::<Request>(&bytes) {
            Ok(req) => handle(host.clone(), req),
            Err(e) => {
                gloo::console::error!(format!("the worker got a message it cannot read: {e}"))
            }
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(&Reply::Started);
}

fn handle(host: Rc<Host>, req: Request) {
    use wasm_bindgen_futures::spawn_local;
    match req {
        Request::Stop => host.stop.set(true),
        Request::Load {
            dir,
            cache,
            webgpu,
            probe,
        } => {
            if host.busy.replace(true) {
                return post(&Reply::LoadFailed {
                    error: "the worker is busy (a load or a run is in progress)".into(),
                });
            }
            spawn_local(async move {
                let reply = match load(&dir, &cache, webgpu, probe).await {
                    Ok(LoadReport {
                        model: l,
                        source,
                        cached,
                        secs,
                        repaired,
                    }) => {
                        let reply = Reply::Ready {
                            timings: l.timings.clone(),
                            probe,
                            source,
                            cached,
                            secs,
                            repaired,
                        };
                        *host.loaded.borrow_mut() = Some(Rc::new(l));
                        host.vectors.take();
                        reply
                    }
                    Err(error) => Reply::LoadFailed { error },
                };
                host.busy.set(false);
                post(&reply);
            });
        }
        Request::Train {
            run,
            shipped,
            kernels,
        } => {
            let mut rec = *run;
            let Some(l) = host.claim() else {
                rec.status = Status::Failed;
                rec.contenders[0].error = Some(NOT_READY.into());
                return post(&Reply::Run {
                    record: Box::new(rec),
                    keep: true,
                });
            };
            spawn_local(async move {
                train(&host, &l, kernels, &shipped, rec, None).await;
                host.busy.set(false);
            });
        }
        Request::Resume {
            checkpoint,
            kernels,
        } => {
            let checked = checkpoint.check();
            let RunCheckpoint { mut record, tuners } = *checkpoint;
            let claimed = checked.and_then(|()| host.claim().ok_or_else(|| NOT_READY.to_string()));
            let Ok(l) = claimed else {
                record.status = Status::Failed;
                record.contenders[0].error = claimed.err();
                return post(&Reply::Run {
                    record: Box::new(record),
                    keep: true,
                });
            };
            spawn_local(async move {
                train(&host, &l, kernels, &[], record, Some(tuners)).await;
                host.busy.set(false);
            });
        }
        Request::Relations { run, kernels } => {
            let mut rec = *run;
            let Some(l) = host.claim() else {
                rec.status = Status::Failed;
                rec.error = Some(NOT_READY.into());
                return post(&Reply::Relations {
                    record: Box::new(rec),
                    keep: true,
                });
            };
            spawn_local(async move {
                super::relations::learn(&host, &l, kernels, rec).await;
                host.busy.set(false);
            });
        }
        Request::Lifelong { run, kernels } => {
            let mut rec = *run;
            let Some(l) = host.claim() else {
                rec.status = Status::Failed;
                rec.error = Some(NOT_READY.into());
                return post(&Reply::Lifelong {
                    record: Box::new(rec),
                    keep: true,
                });
            };
            spawn_local(async move {
                super::lifelong::learn(&host, &l, kernels, rec).await;
                host.busy.set(false);
            });
        }
        Request::ScoreRelation {
            id,
            text,
            classifiers,
            kernels,
        } => {
            let loaded = host.loaded.borrow().clone();
            spawn_local(async move {
                let result = match loaded {
                    Some(l) if !host.busy.get() => {
                        super::relations::score(&host, &l, kernels, &text, &classifiers).await
                    }
                    Some(_) => Err("the worker is busy with a run".into()),
                    None => Err("the model is not loaded".into()),
                };
                post(&Reply::RelationScored { id, result });
            });
        }
        Request::Generate { id, text, max_new } => {
            let loaded = host.loaded.borrow().clone();
            spawn_local(async move {
                let result = match loaded {
                    Some(l) => l
                        .model
                        .generate_texts(&[text.as_str()], max_new)
                        .await
                        .map(|g| (g.outputs.into_iter().next().unwrap_or_default(), g.steps))
                        .map_err(|e| e.to_string()),
                    None => Err("the model is not loaded".into()),
                };
                post(&Reply::Generated { id, result });
            });
        }
        Request::Score {
            id,
            run,
            text,
            kernels,
        } => {
            let loaded = host.loaded.borrow().clone();
            spawn_local(async move {
                let result = match loaded {
                    Some(l) => score(&l, kernels, &run, &text).await,
                    None => Err("the model is not loaded".into()),
                };
                post(&Reply::Scored { id, result });
            });
        }
    }
}

struct LoadReport {
    model: Loaded,
    source: Source,
    cached: bool,
    secs: f64,
    /// Damaged cache entries that were fetched again.
    repaired: Vec<String>,
}

/// Reads the model's files (from the Cache API when they are there, checked against the
/// folder's manifest), posting download progress at most every `UPDATE_EVERY_MS`, then builds
/// both engines.
async fn load(dir: &str, cache: &str, webgpu: bool, probe: Probe) -> Result<LoadReport, String> {
    let start = now_ms();
    let folder = download::ModelFiles::open(dir, cache).await?;
    let mut files = Vec::with_capacity(FILES.len());
    let (mut source, mut cached, mut repaired) = (Source::Cache, true, Vec::new());
    for file in FILES {
        let last = Cell::new(None);
        let on_progress = |progress: Progress| {
            let mut l = last.get();
            let done = progress.total == Some(progress.loaded);
            if due(&mut l, now_ms(), done) {
                last.set(l);
                post(&Reply::Downloading {
                    file: file.into(),
                    progress,
                });
            }
        };
        let got = folder.fetch(file, &on_progress).await?;
        repaired.extend(got.repaired);
        if got.source == Source::Network {
            source = Source::Network;
        }
        cached &= got.cached;
        files.push(got.bytes);
    }
    post(&Reply::Preparing);
    // Without WebGPU the model runs on the CPU in WebAssembly (the page's GPU panel says why).
    let gpu = if webgpu {
        within(GPU_LIMIT_MS, Gpu::shared())
            .await
            .and_then(Result::ok)
    } else {
        None
    };
    let model = Loaded::from_bytes(gpu.as_ref(), probe, &files[2], &files[0], &files[1]).await?;
    Ok(LoadReport {
        model,
        source,
        cached,
        secs: (now_ms() - start) / 1e3,
        repaired,
    })
}

/// How a run ended: Ok(true) stopped by the person, Ok(false) finished; an error is kept in
/// `error` (unless one is there already) and the run failed.
pub(super) fn ended(result: Result<bool, String>, error: &mut Option<String>) -> Status {
    match result {
        Ok(true) => Status::Stopped,
        Ok(false) => Status::Finished,
        Err(e) => {
            error.get_or_insert(e);
            Status::Failed
        }
    }
}

/// Starting prompts of both contenders; an error names the contender at fault.
async fn starting_prompts(
    l: &Loaded,
    choices: &[InitChoice; 2],
    shipped: &[(String, SoftPrompt)],
    labels: &[String],
    s: &Settings,
) -> Result<[SoftPrompt; 2], String> {
    let mut out = Vec::with_capacity(2);
    for c in choices {
        let given = match c {
            InitChoice::Shipped(name) => shipped
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone()),
            _ => None,
        };
        if let Some(p) = &given
            && p.len != s.prompt_len
        {
            return Err(format!(
                "{} has {} prompt vectors: set the prompt length to {}",
                c.label(),
                p.len,
                p.len
            ));
        }
        let init = c
            .init(labels, given)
            .map_err(|e| format!("{}: {e}", c.label()))?;
        let p = initial_prompt(&l.model, &init, s.prompt_len, s.seed)
            .await
            .map_err(|e| format!("{}: {e}", c.label()))?;
        out.push(p);
    }
    let [a, b]: [SoftPrompt; 2] = out.try_into().map_err(|_| "two contenders".to_string())?;
    Ok([a, b])
}

/// Trains both contenders of `rec` (from their starts, or on from `resume`, the tuners of a
/// checkpoint whose record `rec` is), posting the record as it goes and once more at the end
/// with its final status, and a checkpoint after every step.
async fn train(
    host: &Host,
    l: &Loaded,
    kernels: Kernels,
    shipped: &[(String, SoftPrompt)],
    mut rec: RunRecord,
    resume: Option<[TunerState; 2]>,
) {
    rec.engine = match &resume {
        Some(t) => format!("{} (resumed at step {})", l.engine_name(kernels), t[0].step),
        None => l.engine_name(kernels),
    };
    rec.status = Status::Running;
    for c in &mut rec.contenders {
        c.error = None;
    }
    let on_wgsl = l.on_wgsl(kernels);
    let result = match run_duel(host, l, kernels, shipped, &mut rec, resume).await {
        Err(e) => Err(explain_loss(e, on_wgsl).await),
        done => done,
    };
    rec.status = ended(result, &mut rec.contenders[0].error);
    post(&Reply::Run {
        record: Box::new(rec),
        keep: true,
    });
}

/// A run's error, said as a lost GPU when that is what it was (the error itself is then only a
/// symptom: a failed read-back).
pub(super) async fn explain_loss(e: String, on_wgsl: bool) -> String {
    // The failed read-back may come before the device's lost promise settles: give it a second.
    for _ in 0..10 {
        if !on_wgsl || Gpu::lost().is_some() {
            break;
        }
        gloo::timers::future::TimeoutFuture::new(100).await;
    }
    match Gpu::lost() {
        Some(why) if on_wgsl => format!(
            "the GPU device was lost ({why}); the run stopped after its last whole step. Resume it on the CPU engine (Kernels: cpu or fastest), or reload the page to get the GPU back and resume there. ({e})"
        ),
        _ => e,
    }
}

/// The interleaved loop; Ok(true) when stopped by the person.
async fn run_duel(
    host: &Host,
    l: &Loaded,
    kernels: Kernels,
    shipped: &[(String, SoftPrompt)],
    rec: &mut RunRecord,
    resume: Option<[TunerState; 2]>,
) -> Result<bool, String> {
    let s = rec.settings.clone();
    let choices = rec.contenders.clone().map(|c| c.init);
    let data =
        Prepared::new(&l.model, &rec.labels, &rec.split, s.max_input).map_err(|e| e.to_string())?;
    let resumed = resume.is_some();
    let mut duel = match resume {
        Some(tuners) => Duel::resume(tuners, &s, &data).map_err(|e| e.to_string())?,
        None => Duel::new(
            starting_prompts(l, &choices, shipped, &rec.labels, &s).await?,
            &s,
        ),
    };
    let first = duel.tuners[0].steps() + 1;
    let e = l.engine(kernels);
    let measure = async |duel: &Duel, rec: &mut RunRecord| -> Result<(), String> {
        for (i, log) in rec.contenders.iter_mut().enumerate() {
            duel.measure(e, &data, i, EVAL_BATCH, log)
                .await
                .map_err(|err| format!("{}: {err}", log.init.label()))?;
        }
        Ok(())
    };
    let mut last = None;
    let publish = |rec: &RunRecord, keep: bool, last: &mut Option<f64>| {
        if due(last, now_ms(), keep) {
            post(&Reply::Run {
                record: Box::new(rec.clone()),
                keep,
            });
        }
    };
    if !resumed {
        measure(&duel, rec).await?;
    }
    publish(rec, false, &mut last);
    for step in first..=s.steps {
        for (i, log) in rec.contenders.iter_mut().enumerate() {
            duel.step(e, &data, i, log)
                .await
                .map_err(|err| format!("{}: {err}", log.init.label()))?;
        }
        // Read the messages that came in during the step (a Stop among them).
        gloo::timers::future::TimeoutFuture::new(0).await;
        let stop = host.stop.get();
        let measured = step % s.eval_every == 0 || step == s.steps || stop;
        if measured {
            measure(&duel, rec).await?;
        }
        // Every step: a reload or a crash loses at most the step in flight. The last step's is
        // not needed (nothing is left to resume), and the page drops the checkpoint then.
        if step < s.steps {
            post(&Reply::RunCheckpoint(Box::new(duel.checkpoint(rec))));
        }
        if stop {
            return Ok(true);
        }
        publish(rec, measured && step < s.steps, &mut last);
    }
    Ok(false)
}

/// Both tuned prompts' label scores for one typed input.
async fn score(l: &Loaded, kernels: Kernels, r: &RunRecord, text: &str) -> Result<Scores, String> {
    let data = Prepared::new(&l.model, &r.labels, &r.split, r.settings.max_input)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for c in &r.contenders {
        let scores = data
            .label_scores(&l.model, l.engine(kernels), c.prompt.as_ref(), text)
            .await
            .map_err(|e| e.to_string())?;
        out.push((c.init.label(), scores));
    }
    Ok(out)
}
