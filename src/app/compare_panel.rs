//! Steps 2-4 of a comparison: choose the two contenders and the budget, train both on the same
//! examples step for step (interleaved, in the worker, so the page stays responsive), watch the loss curves and held-out accuracy, stop at any time, read the
//! predictions side by side, try new inputs, download the prompts and the run.

use super::chart::{LineChart, Row};
use super::state::{ModelCtx, download};
use super::worker::Backend;
use super::workspace::Workspace;
use crate::browser::download::fetch_plain;
use crate::compare::{ContenderLog, InitChoice, RunRecord, Settings, Status, split_per_class};
use crate::prompt::{SoftPrompt, peft};
use crate::text::examples::Pasted;
use crate::worker::protocol::{Kernels, Reply, Request, Scores};
use leptos::prelude::*;
use leptos::task::spawn_local;

/// Meta-learned initialisations the page looks for under `assets/` (see `metaprompt
/// meta-train`); those present are offered.
const SHIPPED: [&str; 4] = ["mpt-fomaml", "mpt-maml", "mpt-reptile", "mpt-multitask"];

async fn shipped_prompt(name: &str) -> Result<Option<SoftPrompt>, String> {
    let url = format!("assets/{name}/adapter_model.safetensors");
    match fetch_plain(&url).await? {
        Some(bytes) => peft::from_safetensors(&bytes)
            .map(Some)
            .map_err(|e| format!("{url}: {e}")),
        None => Ok(None),
    }
}

/// The shipped initialisations that exist, in `SHIPPED` order.
async fn find_shipped() -> Vec<(String, SoftPrompt)> {
    let mut out = Vec::new();
    for name in SHIPPED {
        match shipped_prompt(name).await {
            Ok(Some(p)) => out.push((name.to_string(), p)),
            Ok(None) => {}
            Err(e) => gloo::console::warn!(e),
        }
    }
    out
}

/// The run record a new comparison starts from (the worker fills in the engine and the rest).
fn new_run(ws: Workspace, pasted: &Pasted) -> RunRecord {
    let s = ws.settings.get_untracked();
    let choices = ws
        .contenders
        .get_untracked()
        .map(|k| InitChoice::from_key(&k));
    let split = split_per_class(&pasted.examples, &pasted.labels, s.k_per_class, s.seed);
    RunRecord {
        id: js_sys::Date::now() as u64,
        started: String::from(js_sys::Date::new_0().to_iso_string()),
        settings: s,
        labels: pasted.labels.clone(),
        split,
        contenders: choices.map(ContenderLog::new),
        status: Status::Running,
        engine: "starting…".into(),
    }
}

/// Rows of (step, contender A, contender B); both contenders log the same steps.
fn rows(run: &Option<RunRecord>, pick: impl Fn(&ContenderLog) -> Vec<(f64, f64)>) -> Vec<Row> {
    let Some(r) = run else { return Vec::new() };
    let (a, b) = (pick(&r.contenders[0]), pick(&r.contenders[1]));
    a.iter()
        .zip(b.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(&(step, a), b)| Row {
            step,
            a,
            b: b.map_or(f64::NAN, |x| x.1),
        })
        .collect()
}

fn pct(a: Option<f64>) -> String {
    a.map_or("–".into(), |a| format!("{:.1}%", a * 100.0))
}

#[component]
pub fn ComparePanel(pasted: Memo<Pasted>) -> impl IntoView {
    let ws = expect_context::<Workspace>();
    let ctx = expect_context::<ModelCtx>();
    let backend = expect_context::<Backend>();
    let shipped = LocalResource::new(find_shipped);
    let error = RwSignal::new(None::<String>);

    let options = move || {
        let mut v: Vec<(String, String)> = shipped
            .get()
            .unwrap_or_default()
            .iter()
            .map(|(n, _)| {
                let c = InitChoice::Shipped(n.clone());
                (c.key(), format!("{} (meta-learned)", c.label()))
            })
            .collect();
        for c in [InitChoice::Random, InitChoice::Vocab, InitChoice::Labels] {
            v.push((c.key(), c.label()));
        }
        v
    };
    let start = move |_| {
        error.set(None);
        if !ctx.ready.get_untracked() {
            error.set(Some("Load the model first (section above).".into()));
            return;
        }
        let p = pasted.get_untracked();
        if let Some(problem) = p.problems.first() {
            error.set(Some(format!("The examples: {problem}.")));
            return;
        }
        if let Err(e) = ws.settings.get_untracked().check() {
            error.set(Some(format!("Settings: {e}.")));
            return;
        }
        let run = new_run(ws, &p);
        // Only the initialisations the contenders start from travel to the worker.
        let wanted: Vec<String> = run.contenders.iter().map(|c| c.init.key()).collect();
        let found: Vec<(String, SoftPrompt)> = shipped
            .get_untracked()
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, _)| wanted.contains(&InitChoice::Shipped(n.clone()).key()))
            .collect();
        let train = Request::Train {
            run: Box::new(run.clone()),
            shipped: found,
            kernels: ws.kernels.get_untracked(),
        };
        if let Err(e) = backend.launch(ws.runs, run, train) {
            error.set(Some(e));
        }
    };
    let stop = move |_| {
        if let Err(e) = backend.stop(ws.runs) {
            error.set(Some(e));
        }
    };

    // The open run's checkpoint when it ended before its last step (stopped, failed, or cut by
    // a reload): Resume carries it on from there, on the kernels chosen now.
    let cut = Memo::new(move |_| {
        ws.runs.run.with(|r| {
            r.as_ref()
                .filter(|r| !matches!(r.status, Status::Running | Status::Finished))
                .map(|r| r.id)
        })
    });
    let resumable = LocalResource::new(move || {
        let id = cut.get();
        async move {
            match id {
                Some(id) => super::history::checkpoint(id).await,
                None => Ok(None),
            }
        }
    });
    let resume = move |_| {
        error.set(None);
        let Some(Ok(Some(c))) = resumable.get_untracked() else {
            return;
        };
        if !ctx.ready.get_untracked() {
            error.set(Some("Load the model first (section above).".into()));
            return;
        }
        let mut rec = c.record.clone();
        rec.status = Status::Running;
        let req = Request::Resume {
            checkpoint: Box::new(c),
            kernels: ws.kernels.get_untracked(),
        };
        if let Err(e) = backend.launch(ws.runs, rec, req) {
            error.set(Some(e));
        }
    };

    let setting = move |id: &'static str,
                        label: &'static str,
                        get: fn(&Settings) -> String,
                        set: fn(&mut Settings, &str) -> bool| {
        let bad = RwSignal::new(false);
        view! {
            <label for=id>{label}</label>
            <input id=id type="text" inputmode="decimal" size="6" class:bad=move || bad.get()
                aria-invalid=move || bad.get().to_string()
                prop:value=move || ws.settings.with(get)
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    let mut ok = false;
                    ws.settings.update(|s| ok = set(s, v.trim()));
                    bad.set(!ok);
                }/>
        }
    };
    fn num<T: std::str::FromStr>(v: &str, slot: &mut T) -> bool {
        v.parse().map(|x| *slot = x).is_ok()
    }

    let run = Memo::new(move |_| ws.runs.run.get());
    // The step of the open run's newest checkpoint written this visit.
    let saved_step = move || {
        let id = ws.runs.run.with(|r| r.as_ref().map(|r| r.id))?;
        ws.runs.saved.get().filter(|s| s.0 == id).map(|s| s.1)
    };
    // Predictions, the try box and the downloads once the run is over: redrawn at every update,
    // they would drop what a person types into the try box.
    let over = Memo::new(move |_| run.get().filter(|r| r.status != Status::Running));
    let names = Memo::new(move |_| {
        run.get().map_or_else(
            || {
                ws.contenders
                    .get()
                    .map(|k| InitChoice::from_key(&k).label())
            },
            |r| r.contenders.clone().map(|c| c.init.label()),
        )
    });
    let losses = Memo::new(move |_| {
        rows(&run.get(), |c| {
            c.losses
                .iter()
                .map(|&(s, l)| (s as f64, l as f64))
                .collect()
        })
    });
    let accuracy = Memo::new(move |_| {
        rows(&run.get(), |c| {
            c.accuracy
                .iter()
                .map(|&(s, a)| (s as f64, a * 100.0))
                .collect()
        })
    });

    view! {
        <section aria-labelledby="compare-h">
            <h2 id="compare-h">"2. Train both side by side"</h2>
            <div class="row">
                {[0usize, 1].map(|i| view! {
                    <label for=format!("contender-{i}")>{if i == 0 { "Contender A" } else { "Contender B" }}</label>
                    <select id=format!("contender-{i}")
                        on:change=move |ev| {
                            let v = event_target_value(&ev);
                            ws.contenders.update(|c| c[i] = v);
                        }>
                        {move || options().into_iter().map(|(key, label)| {
                            let selected = ws.contenders.with(|c| c[i] == key);
                            view! { <option value=key.clone() selected=selected>{label}</option> }
                        }).collect_view()}
                    </select>
                })}
            </div>
            <div class="row">
                {setting("set-k", "Training examples per label", |s| s.k_per_class.to_string(), |s, v| num(v, &mut s.k_per_class))}
                {setting("set-len", "Prompt length", |s| s.prompt_len.to_string(), |s, v| num(v, &mut s.prompt_len))}
                {setting("set-steps", "Steps", |s| s.steps.to_string(), |s, v| num(v, &mut s.steps))}
                {setting("set-lr", "Learning rate", |s| s.lr.to_string(), |s, v| num(v, &mut s.lr))}
            </div>
            <div class="row">
                {setting("set-eval", "Accuracy every", |s| s.eval_every.to_string(), |s, v| num(v, &mut s.eval_every))}
                {setting("set-seed", "Seed", |s| s.seed.to_string(), |s, v| num(v, &mut s.seed))}
                <label for="set-kernels">"Kernels"</label>
                <select id="set-kernels" on:change=move |ev| ws.kernels.set(match event_target_value(&ev).as_str() {
                    "wgsl" => Kernels::Wgsl,
                    "cpu" => Kernels::Cpu,
                    "generic" => Kernels::Generic,
                    _ => Kernels::Fastest,
                })>
                    {[(Kernels::Fastest, "fastest", "ours, the faster as timed"), (Kernels::Wgsl, "wgsl", "our WGSL kernels (int8)"),
                      (Kernels::Cpu, "cpu", "our CPU engine (int8)"), (Kernels::Generic, "generic", "burn generic")]
                        .map(|(k, value, label)| view! { <option value=value selected=move || ws.kernels.get() == k>{label}</option> })}
                </select>
            </div>
            <div class="row">
                <button id="train" on:click=start
                    disabled=move || backend.running() || !ctx.ready.get()>"Train both"</button>
                <button id="stop" class="secondary" on:click=stop
                    disabled=move || !ws.runs.running.get() || ws.runs.stop.get()>"Stop"</button>
                {move || match resumable.get() {
                    Some(Ok(Some(c))) if cut.get().is_some() => Some(view! {
                        <button id="resume" on:click=resume
                            disabled=move || backend.running() || !ctx.ready.get()>
                            {format!("Resume from step {} of {}", c.step(), c.record.settings.steps)}
                        </button>
                    }.into_any()),
                    Some(Err(e)) => Some(view! { <span class="error" id="resume-error">{format!("This run cannot resume: {e}")}</span> }.into_any()),
                    _ => None,
                }}
                <Show when=move || !ctx.ready.get()>
                    <span class="note">"Load the model first."</span>
                </Show>
            </div>
            {move || error.get().map(|e| view! { <p id="compare-error" class="error" role="alert">{e}</p> })}
            <div id="run" aria-live="polite" data-status=move || run.get().map_or("none".into(), |r| format!("{:?}", r.status).to_lowercase())
                data-saved-step=move || saved_step().map(|k| k.to_string())>
                {move || run.get().map(|r| progress(&r))}
                {move || saved_step().filter(|_| ws.runs.running.get()).map(|k| view! {
                    <p class="note">{format!("Saved after step {k}: a reload or a crash resumes from there.")}</p>
                })}
            </div>
            <Show when=move || run.get().is_some_and(|r| !r.contenders[0].losses.is_empty())>
                <div class="charts" id="charts">
                    <LineChart title="Training loss (minibatch)" names=names data=losses/>
                    <LineChart title="Held-out accuracy (%)" names=names data=accuracy/>
                </div>
            </Show>
            {move || over.get().map(|r| view! { <Outcome run=r/> })}
        </section>
    }
}

/// Progress bar, ETA, and each contender's speed and accuracy.
fn progress(r: &RunRecord) -> impl IntoView + use<> {
    let done = r.contenders[0].losses.len();
    let total = r.settings.steps;
    let ms: f64 = r
        .contenders
        .iter()
        .filter_map(ContenderLog::ms_per_step)
        .sum();
    let eta = (total - done.min(total)) as f64 * ms / 1e3;
    let status = match r.status {
        Status::Running => format!("Step {done} of {total}, about {eta:.0} s left"),
        Status::Finished => format!("Finished {done} steps"),
        Status::Stopped => format!("Stopped after {done} of {total} steps"),
        Status::Failed => "Failed".into(),
    };
    view! {
        <label for="run-progress">{status}</label>
        <progress id="run-progress" max=total as f64 value=done as f64></progress>
        <p class="note">{format!("{} · started {}", r.engine, r.started)}</p>
        <table class="grid" id="scoreboard">
            <thead><tr><th>"contender"</th><th>"held-out accuracy"</th><th>"ms per step"</th><th>"steps per second"</th><th>"last loss"</th></tr></thead>
            <tbody>
                {r.contenders.iter().map(|c| {
                    let ms = c.ms_per_step();
                    view! {
                        <tr>
                            <td>{c.init.label()}</td>
                            <td class="acc">{pct(c.last_accuracy())}</td>
                            <td>{ms.map_or("–".into(), |m| format!("{m:.0}"))}</td>
                            <td>{ms.map_or("–".into(), |m| format!("{:.2}", 1e3 / m))}</td>
                            <td>{c.losses.last().map_or("–".into(), |l| format!("{:.3}", l.1))}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {r.contenders.iter().filter_map(|c| c.error.clone()).map(|e| view! { <p class="error" role="alert">{e}</p> }).collect_view()}
    }
}

/// Predictions side by side, the try box and the downloads.
#[component]
fn Outcome(run: RunRecord) -> impl IntoView {
    let [a, b] = &run.contenders;
    let rows: Vec<_> = run
        .split
        .heldout
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let pa = a.predictions.get(i).cloned().unwrap_or_default();
            let pb = b.predictions.get(i).cloned().unwrap_or_default();
            (e.input.clone(), e.target.clone(), pa, pb)
        })
        .collect();
    let disagree = rows.iter().filter(|r| r.2 != r.3).count();
    let (na, nb) = (a.init.label(), b.init.label());
    let file = |c: &ContenderLog| format!("{}-{}.safetensors", run.id, c.init.key());
    let prompts = [a, b].map(|c| (c.prompt.clone(), file(c), c.init.label()));
    let json = serde_json::to_vec_pretty(&run).unwrap_or_default();
    let id = run.id;
    let err = RwSignal::new(None::<String>);
    view! {
        <h3>"Predictions on the held-out examples"</h3>
        <p class="note">{format!("{disagree} of {} disagree (highlighted).", rows.len())}</p>
        <div class="scroll">
            <table class="grid" id="predictions">
                <thead><tr><th>"input"</th><th>"gold"</th><th>{na.clone()}</th><th>{nb.clone()}</th></tr></thead>
                <tbody>
                    {rows.into_iter().map(|(input, gold, pa, pb)| {
                        let differ = pa != pb;
                        let (ra, rb) = (pa == gold, pb == gold);
                        view! {
                            <tr class:disagree=differ>
                                <td>{input}</td><td>{gold}</td>
                                <td class:right=ra class:wrong=!ra>{pa}</td>
                                <td class:right=rb class:wrong=!rb>{pb}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        <TryBox run=run.clone()/>
        <h3>"Downloads"</h3>
        <div class="row">
            {prompts.into_iter().enumerate().map(|(i, (p, name, label))| view! {
                <button id=format!("download-prompt-{i}") class="secondary" disabled=p.is_none()
                    on:click=move |_| if let Some(p) = &p
                        && let Err(e) = peft::to_safetensors(p).map_err(|e| e.to_string())
                            .and_then(|f| download(&name, "application/octet-stream", &f)) {
                        err.set(Some(e));
                    }>{format!("{label} prompt (PEFT safetensors)")}</button>
            }).collect_view()}
            <button id="download-run" class="secondary" on:click=move |_| {
                if let Err(e) = download(&format!("metaprompt-run-{id}.json"), "application/json", &json) {
                    err.set(Some(e));
                }
            }>"The run (JSON)"</button>
        </div>
        {move || err.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
}

/// Type an input, see both tuned prompts' label scores.
#[component]
fn TryBox(run: RunRecord) -> impl IntoView {
    let ctx = expect_context::<ModelCtx>();
    let ws = expect_context::<Workspace>();
    let backend = expect_context::<Backend>();
    let (text, set_text) = signal(String::new());
    let result = RwSignal::new(None::<Result<Scores, String>>);
    let run = StoredValue::new(run);
    let go = move |_| {
        if !ctx.ready.get_untracked() {
            result.set(Some(Err("Load the model first.".into())));
            return;
        }
        let t = text.get_untracked();
        if t.trim().is_empty() {
            result.set(Some(Err("Type an input first.".into())));
            return;
        }
        let r = run.get_value();
        let kernels = ws.kernels.get_untracked();
        spawn_local(async move {
            let reply = backend
                .ask(|id| Request::Score {
                    id,
                    run: Box::new(r),
                    text: t,
                    kernels,
                })
                .await;
            result.set(Some(match reply {
                Ok(Reply::Scored { result, .. }) => result,
                Ok(_) => Err("the worker answered something else".into()),
                Err(e) => Err(e),
            }));
        });
    };
    view! {
        <h3>"Try an input"</h3>
        <div class="row">
            <label for="try-input">"Input"</label>
            <input id="try-input" type="text" size="50" prop:value=text
                on:input=move |ev| set_text.set(event_target_value(&ev))/>
            <button id="try-run" on:click=go>"Score the labels"</button>
        </div>
        <div id="try-result" aria-live="polite">
            {move || match result.get() {
                None => ().into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(sides)) => score_tables(sides, ("label", "log-probability"), usize::MAX).into_any(),
            }}
        </div>
    }
}

/// Each contender's scores, best first (at most `top` rows), captioned with its choice;
/// `columns` names the two columns.
pub(super) fn score_tables(
    sides: Scores,
    columns: (&'static str, &'static str),
    top: usize,
) -> impl IntoView {
    view! {
        <div class="row">
            {sides.into_iter().map(|(name, scores)| view! {
                <table class="grid">
                    <caption>{format!("{name}: {}", scores.first().map_or("", |s| s.0.as_str()))}</caption>
                    <thead><tr><th>{columns.0}</th><th>{columns.1}</th></tr></thead>
                    <tbody>
                        {scores.into_iter().take(top).map(|(l, s)| view! { <tr><td>{l}</td><td>{format!("{s:.3}")}</td></tr> }).collect_view()}
                    </tbody>
                </table>
            }).collect_view()}
        </div>
    }
}
