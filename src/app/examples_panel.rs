//! Step 1 of a comparison: a person pastes labelled examples, sees them parsed into a table with
//! the rejected lines and why, and how they split into training and held-out examples.

use super::state::ModelCtx;
use super::workspace::Workspace;
use crate::compare::split_per_class;
use crate::tasks::metrics::label_counts;
use crate::text::examples::{Limits, Pasted, parse};
use leptos::prelude::*;

/// Inputs longer than this are rejected when pasted (flan-t5-small was trained on 512).
const MAX_INPUT_TOKENS: usize = 512;

/// The parsed paste, re-parsed when the text changes or the tokenizer arrives (then inputs that
/// are too long are caught too).
pub fn parsed(ws: Workspace, ctx: ModelCtx) -> Memo<Pasted> {
    Memo::new(move |_| {
        let text = ws.paste.get();
        let _ = ctx.ready.get();
        let loaded = ctx.get();
        let count = loaded
            .as_ref()
            .map(|l| move |s: &str| l.model.tokenizer.encode(s).map_or(0, |v| v.len()));
        let limits = Limits {
            max_input_tokens: MAX_INPUT_TOKENS,
            count_tokens: count.as_ref().map(|f| f as &dyn Fn(&str) -> usize),
        };
        parse(&text, &limits)
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
                "(input,label). Kept in this browser."
            </p>
            <label for="paste">"Labelled examples"</label>
            <textarea id="paste" rows="10" spellcheck="false"
                prop:value=move || ws.paste.get()
                on:input=move |ev| ws.paste.set(event_target_value(&ev))></textarea>
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
