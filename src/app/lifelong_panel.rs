//! The page's Lifelong section: lifelong few-shot learning (LFPT5 and its baselines,
//! `crate::lifelong`). A person pastes (or loads) a sequence of tasks, learns it with two
//! methods one after the other in the worker, and watches each method's score on every task seen
//! so far: the matrix, what it forgets, and the pseudo examples LFPT5 writes for its replay.

use super::chart::{LineChart, Row};
use super::history::{Runs, history_list};
use super::state::{ModelCtx, download, load_preset, persisted};
use super::worker::Backend;
use super::workspace::Workspace;
use crate::compare::Status;
use crate::graph::Adapters;
use crate::lifelong::dmea::{Choice, ModuleConfig};
use crate::lifelong::lfpt5::Verdict;
use crate::lifelong::paste::{PastedSequence, parse};
use crate::lifelong::record::{Contender, LifelongRecord};
use crate::lifelong::{LifelongConfig, Method, TaskType};
use crate::prompt::eval::metric_name;
use crate::prompt::peft;
use crate::worker::protocol::Request;
use leptos::prelude::*;

/// The sequences served beside the page (`metaprompt data presets`): (file, button label).
const PRESETS: [(&str, &str); 3] = [
    (
        "presets/lifelong-classification.txt",
        "Load three classification tasks",
    ),
    (
        "presets/lifelong.txt",
        "Load the whole lifelong suite (classification, NER, summaries)",
    ),
    (
        "presets/generation.txt",
        "Load DMEA's generation tasks (data-to-text, summaries)",
    ),
];

/// A person's lifelong work: the paste and the settings (localStorage), the runs (IndexedDB).
#[derive(Clone, Copy)]
pub struct LifelongWs {
    pub paste: RwSignal<String>,
    pub methods: RwSignal<[Method; 2]>,
    pub shots: RwSignal<usize>,
    pub steps: RwSignal<usize>,
    pub max_test: RwSignal<usize>,
    pub seed: RwSignal<u64>,
    pub runs: Runs<LifelongRecord>,
}

impl LifelongWs {
    pub fn new() -> Self {
        Self {
            paste: persisted("lifelong-paste", String::new()),
            methods: persisted("lifelong-methods", [Method::Lfpt5, Method::Sequential]),
            shots: persisted("lifelong-shots", 8),
            steps: persisted("lifelong-steps", 30),
            max_test: persisted("lifelong-test", 20),
            seed: persisted("lifelong-seed", 42),
            runs: Runs::new("open-lifelong-run"),
        }
    }
}

/// What a method does, for its option's tooltip.
fn describe(m: Method) -> &'static str {
    match m {
        Method::Lfpt5 => {
            "LFPT5: the prompt also learns to write examples; before each task it writes pseudo examples of the earlier ones and replays them"
        }
        Method::Sequential => "one prompt trained task after task, nothing replayed",
        Method::Replay => "real examples of earlier tasks replayed, as many as LFPT5 generates",
        Method::Multitask => "the prompt trained on every task so far (an upper bound)",
        Method::Dmea => {
            "DMEA: adapters; each task searches, layer by layer, whether to reuse an earlier module or add its own (coefficients started from task similarity), then replays the most similar earlier tasks"
        }
        Method::Acm => {
            "ACM: DMEA's search from fixed coefficients, replay of every task sharing a module"
        }
        Method::Expand => {
            "adapters: a new module at every layer for every task (no forgetting, the most parameters)"
        }
        Method::Reuse => {
            "adapters: one module set for every task, pseudo examples of every earlier task replayed"
        }
        Method::SequentialAdapters => {
            "adapters: one module set trained task after task, nothing replayed"
        }
        Method::MultitaskAdapters => {
            "adapters: one module set trained on every task so far (an upper bound)"
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn duration(secs: f64) -> String {
    if secs >= 90.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.0} s")
    }
}

/// Per task learned, both contenders' value of `pick(scores row)` in percent.
fn curve(r: &Option<LifelongRecord>, pick: fn(&[f64]) -> Option<f64>) -> Vec<Row> {
    let Some(r) = r else { return Vec::new() };
    let [a, b] = &r.contenders;
    let n = a.run.scores.len().max(b.run.scores.len());
    let at = |c: &Contender, k: usize| {
        c.run
            .scores
            .get(k)
            .and_then(|row| pick(row))
            .map_or(f64::NAN, |v| 100.0 * v)
    };
    (0..n)
        .map(|k| Row {
            step: (k + 1) as f64,
            a: at(a, k),
            b: at(b, k),
        })
        .collect()
}

fn mean(row: &[f64]) -> Option<f64> {
    (!row.is_empty()).then(|| row.iter().sum::<f64>() / row.len() as f64)
}

fn new_run(life: LifelongWs, paste: PastedSequence) -> LifelongRecord {
    let steps = life.steps.get_untracked();
    let config = LifelongConfig {
        steps,
        valid_every: (steps / 3).max(1),
        seed: life.seed.get_untracked(),
        // DMEA and ACM search for half a task's steps before them.
        modules: ModuleConfig {
            search_steps: (steps / 2).max(2),
            ..ModuleConfig::default()
        },
        ..LifelongConfig::default()
    };
    LifelongRecord::new(
        js_sys::Date::now() as u64,
        String::from(js_sys::Date::new_0().to_iso_string()),
        paste,
        life.methods.get_untracked(),
        life.shots.get_untracked(),
        life.max_test.get_untracked(),
        config,
    )
}

/// A number input kept in `signal` (0 when not a number, which the start refuses).
fn number<T>(id: &'static str, label: &'static str, signal: RwSignal<T>) -> impl IntoView
where
    T: std::str::FromStr + std::fmt::Display + Default + Clone + Send + Sync + 'static,
{
    view! {
        <label for=id>{label}</label>
        <input id=id type="number" min="0" size="5"
            prop:value=move || signal.get().to_string()
            on:change=move |ev| signal.set(event_target_value(&ev).trim().parse().unwrap_or_default())/>
    }
}

#[component]
pub fn LifelongPanel() -> impl IntoView {
    let life = expect_context::<LifelongWs>();
    let ctx = expect_context::<ModelCtx>();
    let ws = expect_context::<Workspace>();
    let backend = expect_context::<Backend>();
    let runs = life.runs;
    // Inputs are cut to the learner's `max_input` tokens: a longer line is reported instead.
    let max_input = LifelongConfig::default().max_input;
    let parsed = Memo::new(move |_| {
        let text = life.paste.get();
        super::examples_panel::with_token_limit(ctx, max_input, |l| parse(&text, l))
    });
    let error = RwSignal::new(None::<String>);

    let start = move |_| {
        error.set(None);
        if !ctx.ready.get_untracked() {
            error.set(Some("Load the model first (section above).".into()));
            return;
        }
        let p = parsed.get_untracked();
        let checks = [
            (
                life.shots.get_untracked() == 0,
                "Shots: at least one per class.",
            ),
            (
                life.steps.get_untracked() == 0,
                "Steps: at least one per task.",
            ),
            (
                life.max_test.get_untracked() == 0,
                "Test examples: at least one per task.",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(bad, _)| *bad) {
            error.set(Some((*why).into()));
            return;
        }
        let run = new_run(life, p);
        // Every task's split is checked here, so that a task too small fails before any work.
        if let Err(e) = run.stream() {
            error.set(Some(format!("The sequence: {e}.")));
            return;
        }
        let req = Request::Lifelong {
            run: Box::new(run.clone()),
            kernels: ws.kernels.get_untracked(),
        };
        if let Err(e) = backend.launch(runs, run, req) {
            error.set(Some(e));
        }
    };
    let stop = move |_| {
        if let Err(e) = backend.stop(runs) {
            error.set(Some(e));
        }
    };

    let run = Memo::new(move |_| runs.run.get());
    let over = Memo::new(move |_| run.get().filter(|r| r.status != Status::Running));
    let names = Memo::new(move |_| {
        run.get().map_or_else(
            || life.methods.get().map(|m| m.name().to_string()),
            |r| r.contenders.clone().map(|c| c.method.name().to_string()),
        )
    });
    let average = Memo::new(move |_| curve(&run.get(), mean));
    let first = Memo::new(move |_| curve(&run.get(), |row| row.first().copied()));

    view! {
        <section aria-labelledby="lifelong-h">
            <h2 id="lifelong-h">"5. Lifelong: one prompt, task after task (LFPT5)"</h2>
            <p>
                "Lifelong few-shot learning: the prompt learns a sequence of few-shot tasks one after the other and "
                "should still do the earlier ones at the end. Trained on its own, it forgets. "
                <strong>"LFPT5"</strong>" teaches the same prompt to write examples of each task; before a new task it "
                "writes pseudo examples of the earlier tasks of the same type and replays them, distilled from the prompt "
                "as it was. Compare it with a baseline on the same sequence."
            </p>
            <p class="note">
                "A line "<code>"# name"</code>" starts a task (classification), "<code>"# name (ner)"</code>" or "
                <code>"# name (summarisation)"</code>" one of another type; under it one example per line as "
                <code>"input<TAB>target"</code>", "<code>"input => target"</code>", JSON lines or CSV. NER targets are "
                <code>"span [type]; span [type]"</code>" or "<code>"none"</code>". Each task keeps its shots per class "
                "for training, as many for validation (the prompt kept is the one with the lowest validation loss), and "
                "tests on the rest. Inputs are cut to 128 tokens. Kept in this browser."
            </p>
            <div class="row">
                {PRESETS.map(|(file, label)| view! {
                    <button class="secondary lifelong-preset" data-file=file
                        on:click=move |_| load_preset(file, life.paste, error)>{format!("{label} (replaces the text)")}</button>
                })}
            </div>
            <label for="lifelong-paste">"Task sequence"</label>
            <super::state::PasteBox id="lifelong-paste" text=life.paste/>
            <div id="lifelong-summary" aria-live="polite">{move || summary(&parsed.get())}</div>
            <div class="row">
                {[0usize, 1].map(|i| view! {
                    <label for=format!("lifelong-method-{i}")>{if i == 0 { "Method A" } else { "Method B" }}</label>
                    <select id=format!("lifelong-method-{i}") on:change=move |ev| {
                        if let Ok(m) = Method::parse(&event_target_value(&ev)) {
                            life.methods.update(|ms| ms[i] = m);
                        }
                    }>
                        {Method::ALL.into_iter().chain(Method::ADAPTERS).map(|m| view! {
                            <option value=m.name() title=describe(m)
                                selected=move || life.methods.with(|ms| ms[i] == m)>{m.name()}</option>
                        }).collect_view()}
                    </select>
                })}
            </div>
            <div class="row">
                {number("lifelong-shots", "Shots per class", life.shots)}
                {number("lifelong-steps", "Steps per task", life.steps)}
                {number("lifelong-test", "Test examples per task (at most)", life.max_test)}
                {number("lifelong-seed", "Seed", life.seed)}
            </div>
            <div class="row">
                <button id="lifelong-train" on:click=start
                    disabled=move || backend.running() || !ctx.ready.get()>"Learn the sequence"</button>
                <button id="lifelong-stop" class="secondary" on:click=stop
                    disabled=move || !runs.running.get() || runs.stop.get()>"Stop"</button>
                <Show when=move || !ctx.ready.get()>
                    <span class="note">"Load the model first."</span>
                </Show>
            </div>
            {move || error.get().map(|e| view! { <p id="lifelong-error" class="error" role="alert">{e}</p> })}
            <div id="lifelong-run" aria-live="polite"
                data-status=move || run.get().map_or("none".into(), |r| format!("{:?}", r.status).to_lowercase())>
                {move || run.get().map(|r| progress(&r))}
            </div>
            <Show when=move || !average.get().is_empty()>
                <div class="charts" id="lifelong-charts">
                    <LineChart title="Average score on the tasks seen so far (%)" names=names data=average/>
                    <LineChart title="Score on the first task, task after task (%)" names=names data=first/>
                </div>
            </Show>
            {move || run.get().map(|r| matrices(&r))}
            {move || run.get().map(|r| module_maps(&r))}
            {move || run.get().map(|r| pseudo_tables(&r))}
            {move || over.get().map(|r| outcome(&r))}
            <h3>"Past lifelong runs"</h3>
            {history_list("lifelong-history", runs)}
        </section>
    }
}

/// The parsed sequence: its tasks, problems and rejected lines.
fn summary(p: &PastedSequence) -> impl IntoView + use<> {
    let tasks: Vec<String> = p
        .tasks
        .iter()
        .map(|t| {
            let labels = if t.labels.is_empty() {
                String::new()
            } else {
                format!(", labels {}", t.labels.join(" / "))
            };
            format!(
                "{} ({}, {} examples{labels})",
                t.name,
                TaskType::of(t.kind).name(),
                t.examples.len()
            )
        })
        .collect();
    let head = (!tasks.is_empty()).then(|| {
        format!(
            "{} tasks, {} examples: {}",
            tasks.len(),
            p.examples(),
            tasks.join("; ")
        )
    });
    let rejected = p.rejected.clone();
    view! {
        <p id="lifelong-tasks">{head}</p>
        <ul id="lifelong-problems" class="error">
            {p.problems.iter().map(|e| view! { <li>{e.clone()}</li> }).collect_view()}
        </ul>
        <Show when={let n = rejected.len(); move || n > 0}>
            <details open id="lifelong-rejected">
                <summary class="error">{format!("{} rejected lines", rejected.len())}</summary>
                <ul class="error">{rejected.iter().map(|e| view! { <li>{e.to_string()}</li> }).collect_view()}</ul>
            </details>
        </Show>
    }
}

/// The bar over the whole run (both contenders, every task) with the time left at the pace so
/// far; where each contender is; the engine and the error if any.
fn progress(r: &LifelongRecord) -> impl IntoView + use<> {
    let (done, total) = (r.steps_done(), r.total_steps());
    let tasks = r.paste.tasks.len();
    let doing = r.contenders.iter().rev().find(|c| c.at.is_some()).map(|c| {
        let at = c.at.expect("found");
        format!(
            "{}: task {} of {tasks} ({}), step {} of {} · loss {:.3}",
            c.method.name(),
            at.task + 1,
            c.run.order.get(at.task).cloned().unwrap_or_default(),
            at.step,
            r.config.steps,
            at.loss
        )
    });
    let status = match r.status {
        Status::Running => match (doing, r.eta_secs()) {
            (Some(d), Some(eta)) => format!("Learning {d} · about {} left", duration(eta)),
            (Some(d), None) => format!("Learning {d}"),
            (None, _) => "Starting…".into(),
        },
        Status::Finished => format!(
            "Finished: {tasks} tasks, both methods, in {}",
            duration(r.secs)
        ),
        Status::Stopped => format!("Stopped after {done} of {total} steps"),
        Status::Failed => "Failed".into(),
    };
    view! {
        <label for="lifelong-progress">{status}</label>
        <progress id="lifelong-progress" max=total.max(1) as f64 value=done as f64></progress>
        <p class="note">{format!(
            "{} · started {} · {}-shot, {} steps per task, at most {} test examples per task, seed {}",
            r.engine, r.started, r.shots, r.config.steps, r.max_test, r.config.seed
        )}</p>
        {r.error.clone().map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
}

/// Each contender's score matrix: row j after learning task j, column i task i.
fn matrices(r: &LifelongRecord) -> impl IntoView + use<> {
    let order: Vec<String> = r.paste.tasks.iter().map(|t| t.name.clone()).collect();
    let metrics: Vec<&'static str> = r.paste.tasks.iter().map(|t| metric_name(t.kind)).collect();
    let started = r.contenders.iter().any(|c| !c.run.scores.is_empty());
    started.then(|| {
        view! {
            <h3>"Score matrices"</h3>
            <p class="note">"Row: after learning that task; column: the task scored (its metric × 100). Below the diagonal is what was kept."</p>
            <div class="matrices">
                {r.contenders.iter().enumerate().map(|(i, c)| {
                    let seconds: Vec<String> = c.run.train_seconds.iter().zip(&c.run.eval_seconds)
                        .map(|(t, e)| format!("{t:.0}+{e:.0}")).collect();
                    view! {
                        <div class="scroll">
                            <table class="grid matrix" id=format!("lifelong-matrix-{i}")>
                                <caption>{c.method.name()}</caption>
                                <thead><tr>
                                    <th>"after \\ task"</th>
                                    {order.iter().zip(&metrics).map(|(n, m)| view! { <th title=*m>{n.clone()}</th> }).collect_view()}
                                    <th>"average"</th>
                                </tr></thead>
                                <tbody>
                                    {order.iter().enumerate().map(|(j, name)| {
                                        let row = c.run.scores.get(j).cloned().unwrap_or_default();
                                        let avg = (row.len() == j + 1).then(|| mean(&row)).flatten();
                                        view! {
                                            <tr>
                                                <th>{name.clone()}</th>
                                                {(0..order.len()).map(|k| view! {
                                                    <td class=if k < j { "kept" } else { "" }>
                                                        {row.get(k).map_or(String::new(), |v| pct(*v))}
                                                    </td>
                                                }).collect_view()}
                                                <td class="acc">{avg.map_or(String::new(), pct)}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                            <p class="note">{(!seconds.is_empty()).then(|| format!(
                                "Seconds per task (training + scoring): {}", seconds.join(", ")))}</p>
                        </div>
                    }
                }).collect_view()}
            </div>
        }
    })
}

/// The adapter methods' module map, drawn as each task decides: a row per adapter site (layer
/// and sub-layer), a column per task; a cell is the task's own new module or the earlier task
/// whose module it reuses.
fn module_maps(r: &LifelongRecord) -> impl IntoView + use<> {
    let order: Vec<String> = r.paste.tasks.iter().map(|t| t.name.clone()).collect();
    r.contenders
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.run.modules.is_empty())
        .map(|(i, c)| {
            let sites = c.run.modules[0].len();
            let params: Vec<String> = c.run.parameters.iter().map(|p| format!("{:.1}k", *p as f64 / 1e3)).collect();
            let sims: Vec<String> = c.run.similarity.iter().enumerate().skip(1).map(|(j, s)| {
                let s: Vec<String> = s.iter().zip(&order).map(|(x, t)| format!("{t} {x:.3}")).collect();
                format!("{}: {}", order[j], s.join(", "))
            }).collect();
            let modules = c.run.modules.clone();
            view! {
                <details open class="module-map" id=format!("lifelong-modules-{i}")>
                    <summary>{format!("{}: which module each task uses, layer by layer", c.method.name())}</summary>
                    <p class="note">{format!(
                        "Parameters added per task: {}. Task similarity (cosine of mean encoder states): {}",
                        params.join(", "),
                        if sims.is_empty() { "–".to_string() } else { sims.join("; ") }
                    )}</p>
                    <div class="scroll">
                        <table class="grid modules">
                            <thead><tr><th>"site"</th>
                                {order.iter().take(modules.len()).map(|n| view! { <th>{n.clone()}</th> }).collect_view()}
                            </tr></thead>
                            <tbody>
                                {(0..sites).map(|s| view! {
                                    <tr><th>{Adapters::site_label(s, sites)}</th>
                                        {modules.iter().map(|m| match m[s] {
                                            Choice::New => view! { <td class="new">"new"</td> }.into_any(),
                                            Choice::Reused { from } => view! {
                                                <td class="reused" title=format!("reuses the module {} added", order.get(from).cloned().unwrap_or_default())>
                                                    {format!("↺ {}", order.get(from).cloned().unwrap_or_default())}
                                                </td>
                                            }.into_any(),
                                        }).collect_view()}
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                </details>
            }
        })
        .collect_view()
}

/// LFPT5's pseudo examples: every generated text, what was read from it, kept or why not.
fn pseudo_tables(r: &LifelongRecord) -> impl IntoView + use<> {
    r.contenders
        .iter()
        .filter(|c| !c.run.pseudo.is_empty())
        .map(|c| {
            let kept: usize = c.run.pseudo.iter().map(|s| s.train.len() + s.valid.len()).sum();
            let all: usize = c.run.pseudo.iter().map(|s| s.samples.len()).sum();
            view! {
                <details open id="lifelong-pseudo">
                    <summary>{format!(
                        "{}: pseudo examples generated before each task ({kept} kept of {all})",
                        c.method.name()
                    )}</summary>
                    {c.run.pseudo.iter().map(|set| {
                        let n = set.train.len() + set.valid.len();
                        view! {
                            <p class="note">{format!(
                                "Imitating {}: {} generated in {:.1} s, {n} kept ({} to train on, {} to validate){}",
                                set.task, set.samples.len(), set.seconds, set.train.len(), set.valid.len(),
                                if n == 0 { " — none passed the filters: this task is learned without its replay" } else { "" }
                            )}</p>
                            <div class="scroll">
                                <table class="grid pseudo">
                                    <thead><tr><th>"generated input"</th><th>"generated label"</th><th>"verdict"</th></tr></thead>
                                    <tbody>
                                        {set.samples.iter().map(|s| {
                                            let ok = s.verdict == Verdict::Kept;
                                            let (input, target) = if s.input.is_empty() {
                                                (s.text.clone(), String::new())
                                            } else {
                                                (s.input.clone(), s.target.clone())
                                            };
                                            view! {
                                                <tr class=if ok { "kept" } else { "rejected" }>
                                                    <td>{input}</td><td>{target}</td>
                                                    <td>{s.verdict.describe()}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        }
                    }).collect_view()}
                </details>
            }
        })
        .collect_view()
}

/// The run's outcome: average after the last task and forgetting per task, and the downloads.
fn outcome(r: &LifelongRecord) -> impl IntoView + use<> {
    let err = RwSignal::new(None::<String>);
    let json = serde_json::to_vec_pretty(r).unwrap_or_default();
    let (id, tasks) = (r.id, r.paste.tasks.len());
    let rows: Vec<_> = r
        .contenders
        .iter()
        .map(|c| {
            let full = c.run.scores.len() == tasks;
            let f = c.run.forgetting();
            let mean_f = (!f.is_empty()).then(|| f.iter().sum::<f64>() / f.len() as f64);
            (
                c.method.name(),
                full.then(|| pct(c.run.final_average())),
                mean_f.filter(|_| full).map(pct),
                f.iter()
                    .zip(&c.run.order)
                    .map(|(v, t)| format!("{t} {}", pct(*v)))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
        .collect();
    let prompts: Vec<(String, crate::prompt::SoftPrompt)> = r
        .contenders
        .iter()
        .flat_map(|c| {
            c.run.prompts.iter().map(move |(what, p)| {
                (
                    format!("{}-{}", c.method.name(), what.replace(' ', "-")),
                    p.clone(),
                )
            })
        })
        .collect();
    view! {
        <h3>"After the last task"</h3>
        <table class="grid" id="lifelong-final">
            <thead><tr><th>"method"</th><th>"average score"</th><th>"mean forgetting"</th><th>"forgetting per task (best on the way − final)"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|(m, avg, f, per)| view! {
                    <tr><td>{m}</td><td class="acc">{avg.unwrap_or("–".into())}</td><td>{f.unwrap_or("–".into())}</td><td>{per}</td></tr>
                }).collect_view()}
            </tbody>
        </table>
        <h3>"Downloads"</h3>
        <div class="row">
            {prompts.into_iter().enumerate().map(|(i, (name, p))| view! {
                <button id=format!("lifelong-download-{i}") class="secondary" on:click=move |_| {
                    let file = peft::to_safetensors(&p).map_err(|e| e.to_string());
                    if let Err(e) = file.and_then(|f| download(&format!("{id}-{name}.safetensors"), "application/octet-stream", &f)) {
                        err.set(Some(e));
                    }
                }>{format!("{name} prompt (PEFT safetensors)")}</button>
            }).collect_view()}
            <button id="lifelong-download-run" class="secondary" on:click=move |_| {
                if let Err(e) = download(&format!("metaprompt-lifelong-{id}.json"), "application/json", &json) {
                    err.set(Some(e));
                }
            }>"The run (JSON)"</button>
        </div>
        {move || err.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
}
