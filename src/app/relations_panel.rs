//! The page's Relations section: continual few-shot relation learning (ERDA and its baselines,
//! `crate::relation`). A person pastes a stream of tasks of marked sentences, sees it parsed and
//! split, learns it with two methods one after the other in the worker, and watches each
//! method's accuracy on every relation seen so far fall (forgetting) task after task.

use super::chart::{LineChart, Row};
use super::compare_panel::score_tables;
use super::history::{Runs, history_list};
use super::state::{ModelCtx, download, load_preset, persisted};
use super::worker::Backend;
use super::workspace::Workspace;
use crate::compare::Status;
use crate::relation::classifier::Classifier;
use crate::relation::learner::{AfterTask, Config, METHODS, Method};
use crate::relation::paste::{PastedStream, parse};
use crate::relation::record::{Contender, RelationRecord};
use crate::worker::protocol::{Reply, Request, Scores};
use leptos::prelude::*;
use leptos::task::spawn_local;

/// The example stream served beside the page (`metaprompt data presets`).
const PRESET: &str = "presets/relations.txt";

/// A person's relation work: the paste and the settings (localStorage), the runs (IndexedDB).
#[derive(Clone, Copy)]
pub struct RelationsWs {
    pub paste: RwSignal<String>,
    pub methods: RwSignal<[Method; 2]>,
    pub shots: RwSignal<usize>,
    pub seed: RwSignal<u64>,
    pub runs: Runs<RelationRecord>,
}

impl RelationsWs {
    pub fn new() -> Self {
        Self {
            paste: persisted("relations-paste", String::new()),
            methods: persisted("relations-methods", [Method::Erda, Method::Ncm]),
            shots: persisted("relations-shots", Config::default().shots),
            seed: persisted("relations-seed", 100),
            runs: Runs::new("open-relation-run"),
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// What a method does, for its option's tooltip.
fn describe(m: Method) -> &'static str {
    match m {
        Method::Erda => "ERDA: memory, entity-swap regulariser, retrieval from the pool",
        Method::Ncm => "nearest class mean of the frozen encoder's vectors (no training)",
        Method::Sequential => "the head trained task after task, nothing remembered",
        Method::Replay => "one remembered example per relation, replayed",
        Method::ErdaNoAug => "ERDA without the pool's sentences",
        Method::ErdaNoReg => "ERDA without the entity-swap regulariser",
        Method::Joint => "the head retrained on every support set so far (an upper bound)",
    }
}

/// Per task learned, both contenders' accuracy on everything seen so far (`pick`), in percent.
fn curve(r: &Option<RelationRecord>, pick: fn(&AfterTask) -> f64) -> Vec<Row> {
    let Some(r) = r else { return Vec::new() };
    let [a, b] = &r.contenders;
    let n = a.after.len().max(b.after.len());
    let at = |c: &Contender, k: usize| c.after.get(k).map_or(f64::NAN, |t| 100.0 * pick(t));
    (0..n)
        .map(|k| Row {
            step: (k + 1) as f64,
            a: at(a, k),
            b: at(b, k),
        })
        .collect()
}

fn new_run(rel: RelationsWs, stream: PastedStream) -> RelationRecord {
    RelationRecord {
        id: js_sys::Date::now() as u64,
        started: String::from(js_sys::Date::new_0().to_iso_string()),
        stream,
        config: Config {
            shots: rel.shots.get_untracked(),
            ..Config::default()
        },
        seed: rel.seed.get_untracked(),
        contenders: rel.methods.get_untracked().map(Contender::new),
        status: Status::Running,
        engine: "starting…".into(),
        encoding: None,
        calibration: None,
        error: None,
    }
}

#[component]
pub fn RelationsPanel() -> impl IntoView {
    let rel = expect_context::<RelationsWs>();
    let ctx = expect_context::<ModelCtx>();
    let ws = expect_context::<Workspace>();
    let backend = expect_context::<Backend>();
    let runs = rel.runs;
    let parsed = Memo::new(move |_| parse(&rel.paste.get()));
    let error = RwSignal::new(None::<String>);

    let load_preset = move |_| load_preset(PRESET, rel.paste, error);
    let start = move |_| {
        error.set(None);
        if !ctx.ready.get_untracked() {
            error.set(Some("Load the model first (section above).".into()));
            return;
        }
        let p = parsed.get_untracked();
        if let Some(problem) = p.problems.first() {
            error.set(Some(format!("The stream: {problem}.")));
            return;
        }
        if rel.shots.get_untracked() == 0 {
            error.set(Some("Shots: at least one example per relation.".into()));
            return;
        }
        let run = new_run(rel, p);
        let req = Request::Relations {
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
            || rel.methods.get().map(|m| m.name().to_string()),
            |r| r.contenders.clone().map(|c| c.method.name().to_string()),
        )
    });
    let strict = Memo::new(move |_| curve(&run.get(), |t| t.strict));
    let lenient = Memo::new(move |_| curve(&run.get(), |t| t.lenient));

    view! {
        <section aria-labelledby="relations-h">
            <h2 id="relations-h">"4. Relations, task after task (ERDA)"</h2>
            <p>
                "Continual few-shot relation learning: the model meets a stream of tasks, each with new relations "
                "and a few examples of each, and must still tell apart the relations of earlier tasks. "
                <strong>"ERDA"</strong>" keeps one example per relation, regularises the head by swapping the "
                "entities, and borrows sentences from an unlabelled pool; compare it with a baseline on the same stream."
            </p>
            <p class="note">
                "One sentence per line, the head entity marked "<code>"[[…]]"</code>" and the tail "<code>"<<…>>"</code>
                ", then the relation after a tab or "<code>"=>"</code>". A line "<code>"# name"</code>" starts a task; "
                <code>"# pool"</code>" starts unlabelled sentences ERDA may retrieve from. Each relation's examples "
                "are split into training and test by entity pair. Kept in this browser."
            </p>
            <div class="row">
                <button id="relations-preset" class="secondary" on:click=load_preset>"Load the example stream (replaces the text)"</button>
            </div>
            <label for="relations-paste">"Relation stream"</label>
            <super::state::PasteBox id="relations-paste" text=rel.paste/>
            <div id="relations-summary" aria-live="polite">{move || summary(&parsed.get())}</div>
            <div class="row">
                {[0usize, 1].map(|i| view! {
                    <label for=format!("relations-method-{i}")>{if i == 0 { "Method A" } else { "Method B" }}</label>
                    <select id=format!("relations-method-{i}") on:change=move |ev| {
                        if let Ok(m) = Method::parse(&event_target_value(&ev)) {
                            rel.methods.update(|ms| ms[i] = m);
                        }
                    }>
                        {METHODS.map(|m| view! {
                            <option value=m.name() title=describe(m)
                                selected=move || rel.methods.with(|ms| ms[i] == m)>{m.name()}</option>
                        })}
                    </select>
                })}
                <label for="relations-shots">"Examples per relation (tasks 2 on)"</label>
                <input id="relations-shots" type="number" min="1" size="4"
                    prop:value=move || rel.shots.get().to_string()
                    on:change=move |ev| rel.shots.set(event_target_value(&ev).trim().parse().unwrap_or(0))/>
                <label for="relations-seed">"Seed (task order)"</label>
                <input id="relations-seed" type="number" min="0" size="6"
                    prop:value=move || rel.seed.get().to_string()
                    on:change=move |ev| rel.seed.set(event_target_value(&ev).trim().parse().unwrap_or(0))/>
            </div>
            <div class="row">
                <button id="relations-train" on:click=start
                    disabled=move || backend.running() || !ctx.ready.get()>"Learn the stream"</button>
                <button id="relations-stop" class="secondary" on:click=stop
                    disabled=move || !runs.running.get() || runs.stop.get()>"Stop"</button>
                <Show when=move || !ctx.ready.get()>
                    <span class="note">"Load the model first."</span>
                </Show>
            </div>
            {move || error.get().map(|e| view! { <p id="relations-error" class="error" role="alert">{e}</p> })}
            <div id="relations-run" aria-live="polite"
                data-status=move || run.get().map_or("none".into(), |r| format!("{:?}", r.status).to_lowercase())>
                {move || run.get().map(|r| progress(&r))}
            </div>
            <Show when=move || !strict.get().is_empty()>
                <div class="charts" id="relations-charts">
                    <LineChart title="Accuracy on all relations seen, by task (%)" names=names data=strict/>
                    <LineChart title="Lenient accuracy (ERDA's metric, %)" names=names data=lenient/>
                </div>
            </Show>
            {move || run.get().map(|r| tables(&r))}
            {move || over.get().map(|r| view! { <Outcome run=r/> })}
            <h3>"Past relation runs"</h3>
            {history_list("relations-history", runs)}
        </section>
    }
}

/// The parsed stream: its tasks, rejected lines and dropped relations.
fn summary(p: &PastedStream) -> impl IntoView + use<> {
    let head = if p.tasks.is_empty() {
        String::new()
    } else {
        format!(
            "{} tasks, {} relations, {} examples ({} for training, {} for testing), {} pool sentences.",
            p.tasks.len(),
            p.relations(),
            p.examples(),
            p.tasks.iter().map(|t| t.train.len()).sum::<usize>(),
            p.tasks.iter().map(|t| t.test.len()).sum::<usize>(),
            p.pool.len()
        )
    };
    let tasks: Vec<String> = p
        .tasks
        .iter()
        .map(|t| {
            let rels: Vec<String> = t
                .relations
                .iter()
                .map(|(r, _)| {
                    let n =
                        |v: &[crate::tasks::Example]| v.iter().filter(|e| &e.target == r).count();
                    format!("{r} ({}/{})", n(&t.train), n(&t.test))
                })
                .collect();
            format!("{}: {}", t.name, rels.join(", "))
        })
        .collect();
    let (rejected, dropped) = (p.rejected.clone(), p.dropped.clone());
    view! {
        <p>{head}</p>
        <ul id="relations-problems" class="error">
            {p.problems.iter().map(|e| view! { <li>{e.clone()}</li> }).collect_view()}
        </ul>
        <Show when={let n = tasks.len(); move || n > 0}>
            <details id="relations-tasks">
                <summary>"Tasks and relations (training/test examples)"</summary>
                <ul>{tasks.iter().map(|t| view! { <li>{t.clone()}</li> }).collect_view()}</ul>
            </details>
        </Show>
        <Show when={let n = rejected.len(); move || n > 0}>
            <details open id="relations-rejected">
                <summary class="error">{format!("{} rejected lines", rejected.len())}</summary>
                <ul class="error">{rejected.iter().map(|e| view! { <li>{e.to_string()}</li> }).collect_view()}</ul>
            </details>
        </Show>
        <Show when={let n = dropped.len(); move || n > 0}>
            <details open id="relations-dropped">
                <summary class="error">{format!("{} left out", dropped.len())}</summary>
                <ul class="error">{dropped.iter().map(|e| view! { <li>{e.clone()}</li> }).collect_view()}</ul>
            </details>
        </Show>
    }
}

/// Encoding progress, then learning progress; the engine and the error if any.
fn progress(r: &RelationRecord) -> impl IntoView + use<> {
    let tasks = r.stream.tasks.len();
    let learned: usize = r.contenders.iter().map(|c| c.after.len()).sum();
    let status = match (r.status, &r.encoding) {
        (Status::Running, Some(e)) if e.done < e.total => format!(
            "Encoding sentences: {} of {} ({} already encoded), {:.0} s",
            e.done, e.total, e.reused, e.secs
        ),
        (Status::Running, None) => "Starting…".into(),
        (Status::Running, _) => format!("Learning: task {learned} of {}", 2 * tasks),
        (Status::Finished, _) => format!("Finished: {tasks} tasks, both methods"),
        (Status::Stopped, _) => format!("Stopped after {learned} of {} tasks", 2 * tasks),
        (Status::Failed, _) => "Failed".into(),
    };
    let (value, max) = match &r.encoding {
        Some(e) if e.done < e.total => (e.done, e.total),
        _ => (learned, 2 * tasks),
    };
    let enc = r.encoding.as_ref().map(|e| {
        format!(
            " · encoded {} sentences in {:.1} s ({:.0} ms each)",
            e.total,
            e.secs,
            1e3 * e.secs / e.total.max(1) as f64
        )
    });
    let cal = r.calibration.as_ref().map(|c| {
        format!(
            " · retrieval threshold {:.3} (median same-relation cosine on the first task)",
            c.threshold
        )
    });
    view! {
        <label for="relations-progress">{status}</label>
        <progress id="relations-progress" max=max.max(1) as f64 value=value as f64></progress>
        <p class="note">{format!("{} · started {}{}{}", r.engine, r.started, enc.unwrap_or_default(), cal.unwrap_or_default())}</p>
        {r.error.clone().map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
}

/// Per task: both methods' accuracy on everything seen, and their time; then each method's
/// accuracy on each task after the last one (what it forgot); ERDA's retrieved sentences.
fn tables(r: &RelationRecord) -> impl IntoView + use<> {
    let [a, b] = r.contenders.clone();
    let n = a.after.len().max(b.after.len());
    let cell = |c: &Contender, k: usize, f: fn(&AfterTask) -> f64| {
        c.after.get(k).map_or("–".into(), |t| pct(f(t)))
    };
    let ms = |c: &Contender, k: usize| c.task_ms.get(k).map_or("–".into(), |m| format!("{m:.0}"));
    let rows: Vec<_> = (0..n)
        .map(|k| {
            let task = a.after.get(k).or(b.after.get(k));
            (
                k + 1,
                task.map_or(String::new(), |t| t.task.clone()),
                task.map_or(0, |t| t.seen_relations),
                [cell(&a, k, |t| t.strict), cell(&b, k, |t| t.strict)],
                [cell(&a, k, |t| t.lenient), cell(&b, k, |t| t.lenient)],
                [ms(&a, k), ms(&b, k)],
            )
        })
        .collect();
    let (na, nb) = (a.method.name(), b.method.name());
    let forgetting: Vec<_> = [&a, &b]
        .into_iter()
        .filter_map(|c| {
            c.after
                .last()
                .map(|t| (c.method.name(), t.clone(), c.after.clone()))
        })
        .collect();
    let augmented: Vec<_> = [&a, &b]
        .into_iter()
        .flat_map(|c| {
            c.after
                .iter()
                .rev()
                .find(|t| !t.augmented.is_empty())
                .map(|t| (c.method.name(), t.task.clone(), t.augmented.clone()))
        })
        .collect();
    view! {
        <Show when=move || { n > 0 }>
            <div class="scroll">
                <table class="grid" id="relations-table">
                    <thead><tr>
                        <th>"after task"</th><th>"task"</th><th>"relations seen"</th>
                        <th>{format!("{na} accuracy")}</th><th>{format!("{nb} accuracy")}</th>
                        <th>{format!("{na} lenient")}</th><th>{format!("{nb} lenient")}</th>
                        <th>{format!("{na} ms")}</th><th>{format!("{nb} ms")}</th>
                    </tr></thead>
                    <tbody>
                        {rows.clone().into_iter().map(|(k, task, seen, s, l, m)| view! {
                            <tr>
                                <td>{k}</td><td>{task}</td><td>{seen}</td>
                                <td class="acc">{s[0].clone()}</td><td class="acc">{s[1].clone()}</td>
                                <td>{l[0].clone()}</td><td>{l[1].clone()}</td>
                                <td>{m[0].clone()}</td><td>{m[1].clone()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </Show>
        {forgetting.into_iter().map(|(name, last, all)| {
            let first: Vec<f64> = all.iter().filter_map(|t| t.per_task.last().copied()).collect();
            view! {
                <details class="forgetting">
                    <summary>{format!("{name}: accuracy on each task after the last ({})", last.task)}</summary>
                    <table class="grid">
                        <thead><tr><th>"task"</th><th>"just after learning it"</th><th>"after the last task"</th></tr></thead>
                        <tbody>
                            {all.iter().zip(&last.per_task).zip(&first).map(|((t, now), then)| view! {
                                <tr><td>{t.task.clone()}</td><td>{pct(*then)}</td><td>{pct(*now)}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </details>
                {(!last.memory.is_empty()).then(|| view! {
                <details class="memory">
                    <summary>{format!("{name}: the memory after {} ({} sentences, one per relation)", last.task, last.memory.len())}</summary>
                    <table class="grid">
                        <thead><tr><th>"relation"</th><th>"remembered sentence"</th></tr></thead>
                        <tbody>
                            {last.memory.iter().map(|(r, text)| view! { <tr><td>{r.clone()}</td><td>{text.clone()}</td></tr> }).collect_view()}
                        </tbody>
                    </table>
                </details>
                })}
            }
        }).collect_view()}
        {augmented.into_iter().map(|(name, task, aug)| view! {
            <details id="relations-augmented">
                <summary>{format!("{name}: {} sentences retrieved from the pool for task {task}", aug.len())}</summary>
                <div class="scroll">
                    <table class="grid">
                        <thead><tr><th>"support example"</th><th>"retrieved"</th><th>"given relation"</th><th>"cosine"</th><th>"same pair"</th></tr></thead>
                        <tbody>
                            {aug.into_iter().map(|x| view! {
                                <tr>
                                    <td>{x.support}</td><td>{x.retrieved}</td><td>{x.label}</td>
                                    <td>{format!("{:.3}", x.similarity)}</td><td>{if x.same_pair { "yes" } else { "no" }}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </details>
        }).collect_view()}
    }
}

/// Downloads and the try box, once the run is over.
#[component]
fn Outcome(run: RelationRecord) -> impl IntoView {
    let err = RwSignal::new(None::<String>);
    let json = serde_json::to_vec_pretty(&run).unwrap_or_default();
    let id = run.id;
    let heads: Vec<_> = run
        .contenders
        .iter()
        .map(|c| (c.method.name(), c.classifier.clone()))
        .collect();
    let classifiers: Vec<(String, Classifier)> = run
        .contenders
        .iter()
        .filter_map(|c| {
            c.classifier
                .clone()
                .map(|k| (c.method.name().to_string(), k))
        })
        .collect();
    view! {
        <RelationTry classifiers=classifiers/>
        <h3>"Downloads"</h3>
        <div class="row">
            {heads.into_iter().enumerate().map(|(i, (name, c))| view! {
                <button id=format!("relations-download-{i}") class="secondary" disabled=c.is_none()
                    on:click=move |_| if let Some(c) = &c {
                        let sent = c.to_safetensors().map_err(|e| e.to_string()).and_then(|bytes| {
                            download(&format!("{id}-{name}.safetensors"), "application/octet-stream", &bytes)
                        });
                        if let Err(e) = sent {
                            err.set(Some(e));
                        }
                    }>{format!("{name}: head and prototypes (safetensors)")}</button>
            }).collect_view()}
            <button id="relations-download-run" class="secondary" on:click=move |_| {
                if let Err(e) = download(&format!("metaprompt-relations-{id}.json"), "application/json", &json) {
                    err.set(Some(e));
                }
            }>"The run (JSON)"</button>
        </div>
        {move || err.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
}

/// Type a marked sentence, see each method's relation scores.
#[component]
fn RelationTry(classifiers: Vec<(String, Classifier)>) -> impl IntoView {
    let ctx = expect_context::<ModelCtx>();
    let ws = expect_context::<Workspace>();
    let backend = expect_context::<Backend>();
    let (text, set_text) = signal(String::new());
    let result = RwSignal::new(None::<Result<Scores, String>>);
    let classifiers = StoredValue::new(classifiers);
    let go = move |_| {
        if !ctx.ready.get_untracked() {
            result.set(Some(Err("Load the model first.".into())));
            return;
        }
        let classifiers = classifiers.get_value();
        if classifiers.is_empty() {
            result.set(Some(Err(
                "This run ended before either method finished.".into()
            )));
            return;
        }
        let t = text.get_untracked();
        let kernels = ws.kernels.get_untracked();
        spawn_local(async move {
            let reply = backend
                .ask(|id| Request::ScoreRelation {
                    id,
                    text: t,
                    classifiers,
                    kernels,
                })
                .await;
            result.set(Some(match reply {
                Ok(Reply::RelationScored { result, .. }) => result,
                Ok(_) => Err("the worker answered something else".into()),
                Err(e) => Err(e),
            }));
        });
    };
    view! {
        <h3>"Try a sentence"</h3>
        <div class="row">
            <label for="relations-try-input">"Sentence (mark "<code>"[[head]]"</code>" and "<code>"<<tail>>"</code>")"</label>
            <input id="relations-try-input" type="text" size="60" prop:value=text
                placeholder="[[Alan Turing]] was born in <<London>>."
                on:input=move |ev| set_text.set(event_target_value(&ev))/>
            <button id="relations-try-run" on:click=go>"Score the relations"</button>
        </div>
        <div id="relations-try-result" aria-live="polite">
            {move || match result.get() {
                None => ().into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(sides)) => score_tables(sides, ("relation", "cosine"), 8).into_any(),
            }}
        </div>
    }
}
