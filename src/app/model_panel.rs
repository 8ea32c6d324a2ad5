//! Loads the frozen T5 into the page (progress bar, Cache API so a reload reads it from disk) and
//! offers a box to try greedy generation on it.

use super::download::{self, Progress, Source};
use super::state::{Loaded, ModelCtx, model_dir};
use crate::gpu::Gpu;
use crate::model::checkpoint::FORMAT;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::rc::Rc;

/// Files in download order: the small ones first so a wrong deployment fails fast.
const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
const DEFAULT_INPUT: &str = "translate English to German: The house is wonderful.";

fn cache_name() -> String {
    format!("metaprompt-{FORMAT}")
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not loaded; whether the checkpoint is already in the cache (None while asking).
    Idle {
        cached: Option<bool>,
    },
    Downloading {
        file: &'static str,
        progress: Progress,
    },
    /// Parsing the checkpoint and uploading the dequantised weights to the GPU.
    Preparing,
    Ready {
        secs: f64,
        source: Source,
        cached: bool,
    },
    Failed(String),
}

fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

async fn load(set_phase: WriteSignal<Phase>) -> Result<(Loaded, Source, bool, f64), String> {
    let start = now_ms();
    let name = cache_name();
    let dir = model_dir();
    let mut files = Vec::with_capacity(FILES.len());
    let (mut source, mut cached) = (Source::Cache, true);
    for file in FILES {
        let url = format!("{dir}{file}");
        let on_progress = move |progress: Progress| {
            set_phase.set(Phase::Downloading { file, progress });
        };
        let got = download::fetch_cached(&url, &name, &on_progress).await?;
        if got.source == Source::Network {
            source = Source::Network;
        }
        cached &= got.cached;
        files.push(got.bytes);
    }
    set_phase.set(Phase::Preparing);
    // Let the page paint "Preparing" before the long synchronous parse.
    gloo::timers::future::TimeoutFuture::new(0).await;
    // Without WebGPU the model runs on the CPU in WebAssembly (the GPU panel says why).
    let gpu = Gpu::shared().await.ok();
    let model = Loaded::from_bytes(gpu.as_ref(), &files[2], &files[0], &files[1])?;
    Ok((model, source, cached, (now_ms() - start) / 1e3))
}

#[component]
pub fn ModelPanel() -> impl IntoView {
    let (phase, set_phase) = signal(Phase::Idle { cached: None });
    let ctx = expect_context::<ModelCtx>();

    let start_load = move || {
        spawn_local(async move {
            match load(set_phase).await {
                Ok((m, source, cached, secs)) => {
                    ctx.set(Rc::new(m));
                    set_phase.set(Phase::Ready {
                        secs,
                        source,
                        cached,
                    });
                }
                Err(e) => set_phase.set(Phase::Failed(e)),
            }
        })
    };
    // A model already in the cache loads by itself; a first download waits for a click.
    spawn_local(async move {
        let url = format!("{}{}", model_dir(), FILES[2]);
        let cached = download::is_cached(&url, &cache_name()).await;
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
            <div id="model-status" aria-live="polite" data-phase=move || phase_tag(&phase.get())>
                {move || match phase.get() {
                    Phase::Idle { cached: None } => view! { <p class="pending">"Checking the cache…"</p> }.into_any(),
                    Phase::Idle { cached: Some(_) } => view! {
                        <button id="model-load" on:click=move |_| start_load()>"Download the model (77 MB)"</button>
                    }.into_any(),
                    Phase::Downloading { file, progress } => progress_view(file, progress).into_any(),
                    Phase::Preparing => view! {
                        <p class="pending">"Checking the checkpoint and uploading the weights to the GPU…"</p>
                    }.into_any(),
                    Phase::Ready { secs, source, cached } => view! {
                        <p class="ok" id="model-ready" data-source=source_tag(source)>
                            {format!("Loaded in {secs:.1} s from {}{}.", match source {
                                Source::Cache => "this browser's cache",
                                Source::Network => "the network",
                            }, if cached { "" } else { " (not cached: the browser refused to store it)" })}
                        </p>
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
            <Show when=move || matches!(phase.get(), Phase::Ready { .. })>
                <GenerateBox ctx=ctx/>
            </Show>
        </section>
    }
}

fn phase_tag(p: &Phase) -> &'static str {
    match p {
        Phase::Idle { .. } => "idle",
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

fn progress_view(file: &'static str, p: Progress) -> impl IntoView {
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
fn GenerateBox(ctx: ModelCtx) -> impl IntoView {
    let (input, set_input) = signal(DEFAULT_INPUT.to_string());
    let (max_new, set_max_new) = signal(24usize);
    let (run, set_run) = signal(Run::Idle);
    let generate = move |_| {
        let Some(m) = ctx.get() else { return };
        let text = input.get_untracked();
        if text.trim().is_empty() {
            set_run.set(Run::Failed("Type an input first.".into()));
            return;
        }
        let max_new = max_new.get_untracked();
        set_run.set(Run::Running);
        spawn_local(async move {
            let t = now_ms();
            let result = m.model.generate_texts(&[text.as_str()], max_new).await;
            set_run.set(match result {
                Ok(g) => Run::Done {
                    output: g.outputs.into_iter().next().unwrap_or_default(),
                    steps: g.steps,
                    ms: now_ms() - t,
                },
                Err(e) => Run::Failed(e.to_string()),
            });
        });
    };
    view! {
        <div class="generate">
            <h3>"Try it: greedy generation"</h3>
            <label for="generate-input">"Input"</label>
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
