//! Browser tests: run in headless Chromium with WebGPU (SwiftShader) through
//! wasm-bindgen-test-runner; see scripts/test.sh.
#![cfg(target_arch = "wasm32")]

use metaprompt::gpu::Gpu;
use metaprompt::selfcheck::{TOLERANCE, rms_norm_check};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn webgpu_adapter_is_found_and_respects_webgpu_limits() {
    let gpu = Gpu::shared()
        .await
        .expect("WebGPU adapter (is --enable-unsafe-webgpu set?)");
    let r = gpu.report();
    assert_eq!(r.backend, "BrowserWebGpu", "{r:?}");
    // Our kernels are written for WebGPU's defaults: 256 invocations, 8 storage buffers.
    assert!(r.max_invocations_per_workgroup >= 256, "{r:?}");
    assert!(r.max_storage_buffers_per_stage >= 8, "{r:?}");
}

#[wasm_bindgen_test]
async fn rms_norm_kernel_matches_cpu_reference_in_the_browser() {
    let gpu = Gpu::shared().await.unwrap();
    for (rows, cols) in [(1, 1), (3, 63), (17, 65), (96, 512)] {
        let c = rms_norm_check(&gpu, rows, cols, rows as u64 * 31 + cols as u64)
            .await
            .unwrap();
        assert!(c.passed(), "{rows}x{cols}: {c:?} (tolerance {TOLERANCE})");
    }
}
