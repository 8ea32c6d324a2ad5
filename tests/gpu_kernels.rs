//! Parity of our WGSL kernels with their Rust references on the native wgpu adapter (lavapipe on
//! a machine without a GPU). Ragged shapes: columns not a multiple of the 64-wide workgroup, a
//! single row, a single column.

#![cfg(not(target_arch = "wasm32"))]
use metaprompt::gpu::Gpu;
use metaprompt::kernels::{KernelError, rms_norm};
use metaprompt::selfcheck::{TOLERANCE, rms_norm_check, test_values};

fn gpu() -> Gpu {
    pollster::block_on(Gpu::shared())
        .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
}

#[test]
fn rms_norm_forward_and_backward_match_reference_on_ragged_shapes() {
    let gpu = gpu();
    for (rows, cols) in [(1, 1), (1, 512), (3, 63), (17, 65), (96, 512), (5, 1000)] {
        let c = pollster::block_on(rms_norm_check(
            &gpu,
            rows,
            cols,
            rows as u64 * 31 + cols as u64,
        ))
        .unwrap();
        assert!(c.passed(), "{rows}x{cols}: {c:?} (tolerance {TOLERANCE})");
    }
}

#[test]
fn rms_norm_of_a_zero_row_is_zero_not_nan() {
    let gpu = gpu();
    let k = rms_norm::RmsNormKernel::new(&gpu);
    let y = pollster::block_on(k.forward(&gpu, &[0.0; 8], &[1.0; 8], rms_norm::EPS)).unwrap();
    assert_eq!(y, vec![0.0; 8]);
    let dx = pollster::block_on(k.backward(&gpu, &[0.0; 8], &[1.0; 8], &[1.0; 8], rms_norm::EPS))
        .unwrap();
    assert!(dx.iter().all(|v| v.is_finite()), "{dx:?}");
}

#[test]
fn rms_norm_rejects_mismatched_shapes_with_the_tensor_name() {
    let gpu = gpu();
    let k = rms_norm::RmsNormKernel::new(&gpu);
    let x = test_values(10, 1);
    let err = pollster::block_on(k.forward(&gpu, &x, &[1.0; 4], rms_norm::EPS)).unwrap_err();
    assert!(
        matches!(err, KernelError::Shape { tensor: "x", .. }),
        "{err}"
    );
    let err = pollster::block_on(k.backward(&gpu, &x[..8], &[1.0; 4], &x[..4], rms_norm::EPS))
        .unwrap_err();
    assert!(
        matches!(err, KernelError::Shape { tensor: "dy", .. }),
        "{err}"
    );
}

#[test]
fn adapter_report_names_the_adapter() {
    let r = gpu().report();
    assert!(!r.backend.is_empty());
    assert!(r.max_invocations_per_workgroup >= 64, "{r:?}");
}
