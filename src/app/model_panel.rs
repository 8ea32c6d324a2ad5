//! Loads the frozen T5 in the worker (progress bar, Cache API so a reload reads it from disk)
//! and offers a box to try greedy generation on it.

use super::state::{ModelCtx, Phase, cache_name, model_dir};
use super::worker::Backend;
use crate::browser::download::{self, Progress, Source};
use crate::clock::now_ms;
use crate::prompt::bench::Shape;
use crate::worker::protocol::{Probe, Reply, Request, Timing, fastest};
use leptos::prelude::*;
use leptos::task::spawn_local;

const DEFAULT_INPUT: &str = "translate English to German: The house is wonderful.";
/// The largest file, whose presence in the cache means the model loads without a download.
const WEIGHTS: &str = "model.safetensors";

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[component]
pub fn ModelPanel() -> impl IntoView {
    let ctx = expect_context::<ModelCtx>();
    let backend = expect_context::<Backend>();
    let phase = ctx.phase;
    let set_phase = phase.write_only();

    let start_load = move || {
        set_phase.set(Phase::Starting);
        let load = Request::Load {
            dir: model_dir(),
            cache: cache_name(),
            webgpu: crate::gpu::webgpu_present(),
            probe: super::state::probe(),
        };
        if let Err(e) = backend.send(load) {
            set_phase.set(Phase::Failed(e));
        }
    };
    // A model already in the cache loads by itself; a first download waits for a click.
    spawn_local(async move {
        let cached = match download::ModelFiles::open(&model_dir(), &cache_name()).await {
            Ok(folder) => folder.is_cached(WEIGHTS).await,
            Err(e) => {
                gloo::console::warn!(e);
                false
            }
        };
        set_phase.set(Phase::Idle {
            cached: Some(cached),
        });
        if cached {
            start_load();
        }
    });
    let forget = move |_| {
        spawn_local(async move {
            match download::forget(&cache_name()).await {
                Ok(()) => set_phase.update(|p| {
                    if let Phase::Ready { cached, .. } = p {
                        *cached = false;
                    }
                }),
                Err(e) => set_phase.set(Phase::Failed(e)),
            }
        })
    };

    view! {
        <section aria-labelledby="model-h">
            <h2 id="model-h">"The model"</h2>
            <p class="note">
                "flan-t5-small (77 M parameters), stored as int8 with one scale per tensor: 77 MB to download once, "
                "then kept in this browser's cache. The weights are dequantised to float32 on your GPU."
            </p>
            {super::state::model_query_refused().map(|why| view! {
                <p id="model-refused" class="error" role="alert">
                    {format!("The link's model was refused: {why}. This page loads its own model instead.")}
                </p>
            })}
            <div id="model-status" aria-live="polite" data-phase=move || phase_tag(&phase.get())>
                {move || match phase.get() {
                    Phase::Idle { cached: None } => view! { <p class="pending">"Checking the cache…"</p> }.into_any(),
                    Phase::Idle { cached: Some(_) } => view! {
                        <button id="model-load" on:click=move |_| start_load()>"Download the model (77 MB)"</button>
                    }.into_any(),
                    Phase::Starting => view! { <p class="pending">"Starting the worker…"</p> }.into_any(),
                    Phase::Downloading { file, progress } => progress_view(file, progress).into_any(),
                    Phase::Preparing => view! {
                        <p class="pending">"Checking the checkpoint and uploading the weights to the GPU…"</p>
                    }.into_any(),
                    Phase::Ready { secs, source, cached, timings, probe, repaired } => view! {
                        <p class="ok" id="model-ready" data-source=source_tag(source)>
                            {format!("Loaded in {secs:.1} s from {}{}, in a worker.", match source {
                                Source::Cache => "this browser's cache",
                                Source::Network => "the network",
                            }, if cached { "" } else { " (not cached: the browser refused to store it)" })}
                        </p>
                        {repaired.into_iter().map(|why| view! { <p class="warning model-repaired">{why}</p> }).collect_view()}
                        {engine_choice(&timings, probe)}
                        <button id="model-forget" class="secondary" on:click=forget>"Remove the model from the cache"</button>
                    }.into_any(),
                    Phase::Failed(e) => view! {
                        <div id="model-error" class="error" role="alert">
                            <p><strong>"The model could not be loaded."</strong></p>
                            <p>{e}</p>
                            <button on:click=move |_| start_load()>"Try again"</button>
                        </div>
                    }.into_any(),
                }}
            </div>
            <Show when=move || ctx.ready.get()>
                <GenerateBox/>
            </Show>
        </section>
    }
}

/// Both engines' step times and which one trains (unless the person picks another below).
fn engine_choice(timings: &[Timing], probe: Probe) -> impl IntoView + use<> {
    let Shape {
        batch: b,
        input: s,
        prompt: l,
        target: t,
    } = probe.shape;
    let n = probe.steps;
    // The one the worker trains on for `Kernels::Fastest`; none when both failed their step.
    let chosen = fastest(timings).map(|i| &timings[i]);
    let wgsl = chosen.is_some_and(|c| c.wgsl).to_string();
    let says = match chosen {
        Some(c) if timings.len() > 1 => format!(
            "Training uses the faster: {} (change it under Kernels below).",
            c.engine
        ),
        Some(c) => format!("Training uses {}.", c.engine),
        None => "Neither engine could run a step.".to_string(),
    };
    view! {
        <table class="grid" id="engine-timings">
            <caption>{format!("A tuning step (batch {b}, {s} input + {l} prompt tokens, {t} target tokens) timed at load: median of {n} after a warm-up")}</caption>
            <thead><tr><th>"engine"</th><th>"ms per step"</th></tr></thead>
            <tbody>
                {timings.iter().map(|t| view! {
                    <tr data-wgsl=t.wgsl.to_string()>
                        <td>{t.engine.clone()}</td>
                        <td>{match &t.ms { Ok(ms) => format!("{ms:.0}"), Err(e) => format!("failed: {e}") }}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <p id="engine-chosen" class="note" data-wgsl=wgsl>{says}</p>
    }
}

fn phase_tag(p: &Phase) -> &'static str {
    match p {
        Phase::Idle { .. } => "idle",
        Phase::Starting => "starting",
        Phase::Downloading { .. } => "downloading",
        Phase::Preparing => "preparing",
        Phase::Ready { .. } => "ready",
        Phase::Failed(_) => "failed",
    }
}

fn source_tag(s: Source) -> &'static str {
    match s {
        Source::Cache => "cache",
        Source::Network => "network",
    }
}

fn progress_view(file: String, p: Progress) -> impl IntoView {
    let text = match p.total {
        Some(t) => format!("{file}: {} / {}", mb(p.loaded), mb(t)),
        None => format!("{file}: {}", mb(p.loaded)),
    };
    let max = p.total.unwrap_or(0).max(1) as f64;
    view! {
        <label for="model-progress">{text}</label>
        <progress id="model-progress" max=max value=p.loaded as f64></progress>
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Run {
    Idle,
    Running,
    Done {
        output: String,
        steps: usize,
        ms: f64,
    },
    Failed(String),
}

#[component]
fn GenerateBox() -> impl IntoView {
    let backend = expect_context::<Backend>();
    let (input, set_input) = signal(DEFAULT_INPUT.to_string());
    let (max_new, set_max_new) = signal(24usize);
    let (run, set_run) = signal(Run::Idle);
    let generate = move |_| {
        let text = input.get_untracked();
        if text.trim().is_empty() {
            set_run.set(Run::Failed("Type an input first.".into()));
            return;
        }
        let max_new = max_new.get_untracked();
        set_run.set(Run::Running);
        spawn_local(async move {
            let t = now_ms();
            let reply = backend
                .ask(|id| Request::Generate { id, text, max_new })
                .await;
            set_run.set(match reply {
                Ok(Reply::Generated {
                    result: Ok((output, steps)),
                    ..
                }) => Run::Done {
                    output,
                    steps,
                    ms: now_ms() - t,
                },
                Ok(Reply::Generated { result: Err(e), .. }) | Err(e) => Run::Failed(e),
                Ok(other) => Run::Failed(format!("unexpected reply {other:?}")),
            });
        });
    };
    view! {
        <div class="generate">
            <h3>"Try it: greedy generation"</h3>
            <label for="generate-input">{format!("Input (at most {} tokens)", crate::model::MAX_GENERATE_TOKENS)}</label>
            <textarea id="generate-input" rows="2"
                prop:value=input
                on:input=move |ev| set_input.set(event_target_value(&ev))></textarea>
            <div class="row">
                <label for="generate-max-new">"At most"</label>
                <input id="generate-max-new" type="number" min="1" max="128"
                    prop:value=move || max_new.get().to_string()
                    on:change=move |ev| {
                        let v = event_target_value(&ev).parse::<usize>().unwrap_or(24).clamp(1, 128);
                        set_max_new.set(v);
                    }/>
                <span>"new tokens"</span>
                <button id="generate-run" on:click=generate
                    disabled=move || run.get() == Run::Running>"Generate"</button>
            </div>
            <div id="generate-result" aria-live="polite" data-state=move || match run.get() {
                Run::Idle => "idle", Run::Running => "running", Run::Done { .. } => "done", Run::Failed(_) => "failed",
            }>
                {move || match run.get() {
                    Run::Idle => ().into_any(),
                    Run::Running => view! { <p class="pending">"Generating…"</p> }.into_any(),
                    Run::Done { output, steps, ms } => view! {
                        <p id="generate-output" class="output">{output}</p>
                        <p id="generate-timing" class="note">
                            {format!("{steps} decoding steps in {ms:.0} ms: {:.0} ms per token", ms / steps.max(1) as f64)}
                        </p>
                    }.into_any(),
                    Run::Failed(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                }}
            </div>
        </div>
    }
}
