//! The comparison's line charts: two series over the steps, drawn as one SVG whose paths are
//! recomputed when the data changes. leptos-chartistry took the page's thread 200-400 ms per
//! update of a run (and about a second to mount) on a 2-core machine, against a 50 ms budget for
//! the page's tasks while a run trains; this costs a few milliseconds.

use leptos::prelude::*;

/// One step's values of both series (NaN where a series has none).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub step: f64,
    pub a: f64,
    pub b: f64,
}

const W: f64 = 480.0;
const H: f64 = 220.0;
/// Plot area inside the axes' labels.
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 26.0;
const TICKS: usize = 4;

/// The finite range of `values`, widened when flat so that a constant line sits mid-plot.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo {
        0.0
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

fn label(v: f64, span: f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// Where the x axis is labelled: `TICKS` even steps, or every whole number when the range holds
/// fewer (the steps are counts: a tick at 1.5 would read "2" twice).
fn x_ticks(x0: f64, x1: f64) -> Vec<f64> {
    if x1 - x0 < TICKS as f64 {
        let (a, b) = (x0.ceil() as i64, x1.floor() as i64);
        return (a..=b).map(|v| v as f64).collect();
    }
    (0..=TICKS)
        .map(|i| x0 + i as f64 / TICKS as f64 * (x1 - x0))
        .collect()
}

/// SVG path of one series: a move at the first point and after every gap (NaN), lines between.
fn path(
    rows: &[Row],
    pick: fn(&Row) -> f64,
    x: impl Fn(f64) -> f64,
    y: impl Fn(f64) -> f64,
) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for r in rows {
        let v = pick(r);
        if !v.is_finite() {
            pen_down = false;
            continue;
        }
        d.push_str(&format!(
            "{}{:.1},{:.1} ",
            if pen_down { 'L' } else { 'M' },
            x(r.step),
            y(v)
        ));
        pen_down = true;
    }
    d
}

/// A chart of both series of `data`, titled, with the contenders' names as its legend.
#[component]
pub fn LineChart(
    title: &'static str,
    names: Memo<[String; 2]>,
    data: Memo<Vec<Row>>,
) -> impl IntoView {
    let plot = move || {
        let rows = data.get();
        let xs = range(rows.iter().map(|r| r.step));
        let ys = range(rows.iter().flat_map(|r| [r.a, r.b]));
        let (Some((x0, x1)), Some((y0, y1))) = (xs, ys) else {
            return ().into_any();
        };
        let (xspan, yspan) = ((x1 - x0).max(1e-9), (y1 - y0).max(1e-9));
        let x = move |v: f64| LEFT + (v - x0) / xspan * (W - LEFT - RIGHT);
        let y = move |v: f64| H - BOTTOM - (v - y0) / yspan * (H - TOP - BOTTOM);
        let ticks = (0..=TICKS).map(|i| i as f64 / TICKS as f64);
        view! {
            {ticks.map(|t| {
                let v = y0 + t * yspan;
                view! {
                    <line class="grid" x1=LEFT x2=W - RIGHT y1=y(v) y2=y(v)/>
                    <text class="tick" x=LEFT - 4.0 y=y(v) + 4.0 text-anchor="end">{label(v, yspan)}</text>
                }
            }).collect_view()}
            {x_ticks(x0, x1).into_iter().map(|v| {
                view! { <text class="tick" x=x(v) y=H - 8.0 text-anchor="middle">{label(v, xspan.max(20.0))}</text> }
            }).collect_view()}
            <path class="series-a" d=path(&rows, |r| r.a, x, y)/>
            <path class="series-b" d=path(&rows, |r| r.b, x, y)/>
        }
        .into_any()
    };
    view! {
        <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img" aria-label=title>
            <text class="title" x=LEFT y=16.0>{title}</text>
            <line class="axis" x1=LEFT x2=LEFT y1=TOP y2=H - BOTTOM/>
            <line class="axis" x1=LEFT x2=W - RIGHT y1=H - BOTTOM y2=H - BOTTOM/>
            {[0usize, 1].map(|i| view! {
                <rect class=if i == 0 { "swatch series-a" } else { "swatch series-b" }
                    x=W - RIGHT - 150.0 y=8.0 + 12.0 * i as f64 width=10.0 height=3.0/>
                <text class="legend" x=W - RIGHT - 136.0 y=12.0 + 12.0 * i as f64>{move || names.get()[i].clone()}</text>
            })}
            {plot}
        </svg>
    }
}
