//! Step 1 of a comparison: a person pastes labelled examples, sees them parsed into a table with
//! the rejected lines and why, and how they split into training and held-out examples.

use super::state::ModelCtx;
use super::workspace::Workspace;
use crate::browser::download::fetch_plain;
use crate::compare::{Preset, split_per_class};
use crate::tasks::metrics::label_counts;
use crate::text::examples::{Limits, Pasted, parse};
use leptos::prelude::*;
use leptos::task::spawn_local;

/// The parsed paste, re-parsed when the text changes or the tokenizer arrives (then inputs that
/// are too long are caught too).
pub fn parsed(ws: Workspace, ctx: ModelCtx) -> Memo<Pasted> {
    Memo::new(move |_| {
        let text = ws.paste.get();
        // The cut training and scoring make (`Prepared::input`): a longer line is reported here
        // rather than silently shortened there.
        with_token_limit(ctx, ws.settings.with(|s| s.max_input), |l| parse(&text, l))
    })
}

/// Calls `f` with limits of `max` tokens per input, counted by the model's tokenizer once it has
/// arrived (tracked: a memo calling this re-parses then).
pub fn with_token_limit<T>(ctx: ModelCtx, max: usize, f: impl FnOnce(&Limits) -> T) -> T {
    let _ = ctx.has_tokenizer.get();
    let tokenizer = ctx.tokenizer();
    let count = tokenizer
        .as_ref()
        .map(|t| move |s: &str| t.encode(s).map_or(0, |v| v.len()));
    f(&Limits {
        max_input_tokens: max,
        count_tokens: count.as_ref().map(|c| c as &dyn Fn(&str) -> usize),
    })
}

#[component]
pub fn ExamplesPanel(pasted: Memo<Pasted>) -> impl IntoView {
    let ws = expect_context::<Workspace>();
    let split = Memo::new(move |_| {
        let p = pasted.get();
        let s = ws.settings.get();
        split_per_class(&p.examples, &p.labels, s.k_per_class, s.seed)
    });
    view! {
        <section aria-labelledby="examples-h">
            <h2 id="examples-h">"1. Your examples"</h2>
            <p class="note">
                "One example per line: "<code>"input<TAB>label"</code>", "<code>"input => label"</code>
                ", JSON lines "<code>"{\"input\": …, \"target\": …}"</code>" or CSV with a header "
                "(input,label). Kept in this browser. "
                {move || format!("An input may be at most {} tokens long (longer lines are listed below).", ws.settings.with(|s| s.max_input))}
            </p>
            <PresetPicker/>
            <label for="paste">"Labelled examples"</label>
            <super::state::PasteBox id="paste" text=ws.paste/>
            <div id="paste-summary" aria-live="polite">
                {move || {
                    let p = pasted.get();
                    let counts: Vec<String> = label_counts(p.examples.iter().map(|e| e.target.as_str()))
                        .into_iter()
                        .map(|(l, n)| format!("{l} ({n})"))
                        .collect();
                    let s = split.get();
                    view! {
                        <p>
                            {match p.format {
                                Some(f) => format!("{} valid examples ({}); ", p.examples.len(), f.describe()),
                                None => String::new(),
                            }}
                            {if counts.is_empty() { String::new() } else { format!("labels: {}. ", counts.join(", ")) }}
                            {if p.examples.is_empty() { String::new() } else {
                                format!("{} for training ({} per label at most), {} held out.", s.train.len(),
                                    ws.settings.get().k_per_class, s.heldout.len())
                            }}
                        </p>
                        <ul id="paste-problems" class="error">
                            {p.problems.iter().map(|e| view! { <li>{e.to_string()}</li> }).collect_view()}
                        </ul>
                        <Show when={let n = p.rejected.len(); move || n > 0}>
                            <details open id="paste-rejected">
                                <summary class="error">{format!("{} rejected lines", p.rejected.len())}</summary>
                                <ul class="error">
                                    {p.rejected.iter().map(|e| view! { <li>{e.to_string()}</li> }).collect_view()}
                                </ul>
                            </details>
                        </Show>
                    }
                }}
            </div>
            <Show when=move || !pasted.get().examples.is_empty()>
                <details>
                    <summary>"The examples as parsed"</summary>
                    <div class="scroll">
                        <table id="examples-table" class="grid">
                            <thead><tr><th>"line"</th><th>"input"</th><th>"label"</th><th>"used for"</th></tr></thead>
                            <tbody>
                                {move || {
                                    let p = pasted.get();
                                    let s = split.get();
                                    p.examples.iter().zip(&p.lines).map(|(e, line)| {
                                        let train = s.train.contains(e);
                                        view! {
                                            <tr>
                                                <td>{*line}</td><td>{e.input.clone()}</td><td>{e.target.clone()}</td>
                                                <td>{if train { "training" } else { "held out" }}</td>
                                            </tr>
                                        }
                                    }).collect_view()
                                }}
                            </tbody>
                        </table>
                    </div>
                </details>
            </Show>
        </section>
    }
}

/// The presets served beside the page (`metaprompt data presets`, run by scripts/serve.sh); none when the data was not fetched (tests).
async fn presets() -> Vec<Preset> {
    match fetch_plain("presets/index.json").await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            gloo::console::warn!(format!("presets/index.json: {e}"));
            Vec::new()
        }),
        Ok(None) => Vec::new(),
        Err(e) => {
            gloo::console::warn!(e);
            Vec::new()
        }
    }
}

#[component]
fn PresetPicker() -> impl IntoView {
    let ws = expect_context::<Workspace>();
    let list = LocalResource::new(presets);
    let chosen = RwSignal::new(0usize);
    let err = RwSignal::new(None::<String>);
    let load = move |_| {
        let Some(p) = list
            .get()
            .and_then(|l| l.get(chosen.get_untracked()).cloned())
        else {
            return;
        };
        spawn_local(async move {
            match fetch_plain(&format!("presets/{}", p.file)).await {
                Ok(Some(bytes)) => {
                    err.set(None);
                    ws.paste.set(String::from_utf8_lossy(&bytes).into_owned());
                }
                Ok(None) => err.set(Some(format!("presets/{}: not found", p.file))),
                Err(e) => err.set(Some(e)),
            }
        });
    };
    view! {
        <Show when=move || list.get().is_some_and(|l| !l.is_empty())>
            <div class="row">
                <label for="preset">"Or start from a task"</label>
                <select id="preset" on:change=move |ev| {
                    chosen.set(event_target_value(&ev).parse().unwrap_or(0));
                }>
                    {move || list.get().unwrap_or_default().into_iter().enumerate().map(|(i, p)| view! {
                        <option value=i.to_string() title=p.source.clone()>
                            {format!("{} ({} examples: {})", p.name, p.examples, p.labels.join(", "))}
                        </option>
                    }).collect_view()}
                </select>
                <button id="load-preset" class="secondary" on:click=load>"Load (replaces the text)"</button>
            </div>
            {move || err.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </Show>
    }
}
