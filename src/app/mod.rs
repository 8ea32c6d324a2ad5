//! The Leptos web app (wasm32 only).

mod chart;
mod compare_panel;
mod examples_panel;
mod gpu_panel;
mod history;
mod lifelong_panel;
mod model_panel;
mod relations_panel;
mod state;
mod worker;
mod workspace;

use leptos::prelude::*;

#[component]
pub fn App() -> impl IntoView {
    let ctx = state::ModelCtx::new();
    let ws = workspace::Workspace::new();
    let rel = relations_panel::RelationsWs::new();
    let life = lifelong_panel::LifelongWs::new();
    provide_context(ctx);
    provide_context(ws);
    provide_context(rel);
    provide_context(life);
    provide_context(worker::Backend::new(ws, rel, life, ctx));
    leptos::task::spawn_local(ws.runs.load());
    leptos::task::spawn_local(rel.runs.load());
    leptos::task::spawn_local(life.runs.load());
    let pasted = examples_panel::parsed(ws, ctx);
    view! {
        <header>
            <h1>"metaprompt"</h1>
            <p class="tagline">"Few-shot soft-prompt learning on a frozen T5, trained on your GPU in this page."</p>
        </header>
        <main>
            <section aria-labelledby="about-h">
                <h2 id="about-h">"What it does"</h2>
                <p>
                    "Prompt tuning keeps a pretrained T5 frozen and learns only a few dozen input vectors, a soft "
                    "prompt, from a handful of labelled examples. With so few examples the result depends heavily "
                    "on where the prompt starts. "<strong>"Meta Prompt Tuning (MPT)"</strong>" starts it from an "
                    "initialisation meta-learned on many source tasks; plain "<strong>"Prompt Tuning (PT)"</strong>
                    " starts from random or vocabulary vectors. Paste your examples and watch both train side by side."
                </p>
                <p class="note">
                    "Everything runs locally through WebGPU with our own WGSL kernels: your examples never leave this page."
                </p>
            </section>
            <gpu_panel::GpuPanel/>
            <model_panel::ModelPanel/>
            <examples_panel::ExamplesPanel pasted=pasted/>
            <compare_panel::ComparePanel pasted=pasted/>
            <history::HistoryPanel/>
            <relations_panel::RelationsPanel/>
            <lifelong_panel::LifelongPanel/>
        </main>
    }
}
