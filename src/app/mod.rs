//! The Leptos web app (wasm32 only).

mod download;
mod gpu_panel;
mod model_panel;

use leptos::prelude::*;

#[component]
pub fn App() -> impl IntoView {
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
        </main>
    }
}
