//! Shows the WebGPU adapter the page runs on, or says plainly why there is none, and runs the
//! kernel self-check so a person sees our WGSL actually works on their GPU.

use crate::gpu::{AdapterReport, Gpu, GpuError, yes_no};
use crate::selfcheck::{self, SelfCheck, TOLERANCE};
use leptos::prelude::*;

#[derive(Clone)]
struct Probe {
    report: AdapterReport,
    check: Result<SelfCheck, String>,
}

async fn probe() -> Result<Probe, GpuError> {
    let gpu = Gpu::shared().await?;
    let report = gpu.report();
    // 96 rows of T5-small's width: a real layer-norm shape, quick even on SwiftShader.
    let check = selfcheck::rms_norm_check(&gpu, 96, 512, 42)
        .await
        .map_err(|e| e.to_string());
    Ok(Probe { report, check })
}

#[component]
pub fn GpuPanel() -> impl IntoView {
    let probe = LocalResource::new(probe);
    view! {
        <section aria-labelledby="gpu-h" aria-live="polite">
            <h2 id="gpu-h">"Your GPU"</h2>
            {move || match probe.get() {
                None => view! { <p id="gpu-status" class="pending">"Looking for a WebGPU adapter…"</p> }.into_any(),
                Some(Err(e)) => no_gpu(e).into_any(),
                Some(Ok(p)) => view! {
                    <AdapterTable report=p.report/>
                    <KernelCheck check=p.check/>
                }.into_any(),
            }}
        </section>
    }
}

fn no_gpu(e: GpuError) -> impl IntoView {
    let detail = match &e {
        GpuError::WebGpuMissing => {
            "This browser does not expose WebGPU. Use a recent Chrome or Edge (113 or newer), \
            Safari 26, or Firefox 141 or newer on Windows; on Linux Chrome may need the \
            chrome://flags/#enable-unsafe-webgpu flag."
        }
        GpuError::Init(_) => {
            "WebGPU exists here but no adapter could be opened: the GPU may be blocklisted \
            or busy. Check chrome://gpu (or your browser's equivalent)."
        }
    };
    view! {
        <div id="webgpu-missing" class="error" role="alert">
            <p><strong>{e.to_string()}</strong></p>
            <p>{detail}</p>
            <p>"The page still works without it: the model and our tuning step run on the CPU in "
               "WebAssembly, on one thread, many times slower than on a GPU."</p>
        </div>
    }
}

#[component]
fn AdapterTable(report: AdapterReport) -> impl IntoView {
    let name = if report.name.is_empty() {
        "(the browser gave no description)".to_string()
    } else {
        report.name.clone()
    };
    let fallback = if report.is_fallback {
        "yes: a software adapter, correct but slow"
    } else {
        "no"
    };
    let rows = [
        (
            "Backend",
            format!("{} ({})", report.backend, report.device_type),
        ),
        (
            "Invocations per workgroup",
            report.max_invocations_per_workgroup.to_string(),
        ),
        (
            "Storage buffers per stage",
            report.max_storage_buffers_per_stage.to_string(),
        ),
        (
            "Storage binding size",
            format!("{} MiB", report.max_storage_buffer_binding_size >> 20),
        ),
        (
            "Workgroup memory",
            format!("{} KiB", report.max_workgroup_storage_size >> 10),
        ),
        ("shader-f16", yes_no(report.shader_f16).into()),
        ("Subgroups", yes_no(report.subgroups).into()),
    ];
    view! {
        <table class="kv" id="adapter">
            <tbody>
                <tr><th scope="row">"Adapter"</th><td id="adapter-name">{name}</td></tr>
                <tr><th scope="row">"Fallback adapter"</th>
                    <td id="adapter-fallback" data-fallback=report.is_fallback.to_string()>{fallback}</td></tr>
                {rows.into_iter().map(|(k, v)| view! { <tr><th scope="row">{k}</th><td>{v}</td></tr> }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn KernelCheck(check: Result<SelfCheck, String>) -> impl IntoView {
    match check {
        Ok(c) => {
            let ok = c.passed();
            view! {
                <p id="kernel-check" class=if ok { "ok" } else { "error" } data-passed=ok.to_string()>
                    {format!(
                        "Kernel self-check ({} {}x{}): forward error {:.1e}, backward error {:.1e}, burn error {:.1e}, tolerance {:.0e}: {}",
                        c.kernel, c.rows, c.cols, c.forward_err, c.backward_err, c.burn_err, TOLERANCE,
                        if ok { "passed" } else { "FAILED" }
                    )}
                </p>
            }
            .into_any()
        }
        Err(e) => view! {
            <p id="kernel-check" class="error" data-passed="false">{format!("Kernel self-check could not run: {e}")}</p>
        }
        .into_any(),
    }
}
