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

/// Both variants (a 64-invocation workgroup per row; a row per invocation, for CPU adapters) on
/// ragged shapes, including a row count that leaves the last workgroup of 8 rows partial.
#[test]
fn rms_norm_both_variants_match_reference() {
    let gpu = gpu();
    for row_per_lane in [false, true] {
        let k = rms_norm::RmsNormKernel::with_row_per_lane(&gpu, row_per_lane);
        for (rows, cols) in [(1, 1), (3, 63), (17, 512)] {
            let x = test_values(rows * cols, 5);
            let w = test_values(cols, 6);
            let dy = test_values(rows * cols, 7);
            let eps = rms_norm::EPS;
            let y = pollster::block_on(k.forward(&gpu, &x, &w, eps)).unwrap();
            let dx = pollster::block_on(k.backward(&gpu, &x, &w, &dy, eps)).unwrap();
            let e = max_abs_diff(&y, &rms_norm::forward_ref(&x, &w, eps));
            let de = max_abs_diff(&dx, &rms_norm::backward_ref(&x, &w, &dy, eps));
            let what = format!("row_per_lane {row_per_lane}, {rows}x{cols}");
            assert!(e <= TOLERANCE, "{what}: forward err {e}");
            assert!(de <= TOLERANCE, "{what}: backward err {de}");
        }
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

use metaprompt::cpu::attention::{Bias, Dims};
use metaprompt::kernels::matmul::{self, Block, Matmul, QuantMatrix};
use metaprompt::kernels::{attention as attn, cross_entropy::CrossEntropy, gated_gelu::GatedGelu};
use metaprompt::model::checkpoint::Stored;

/// Largest error relative to the reference's largest magnitude (at least 1).
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    max_abs_diff(got, want) / scale
}

use metaprompt::kernels::max_abs_diff;

/// A random `[out, in]` weight as the checkpoint stores it (int8 or uint8 with a zero point).
fn stored(out: usize, inp: usize, seed: u64, signed: bool) -> Stored {
    let v = test_values(out * inp, seed);
    let q = v
        .iter()
        .map(|x| {
            if signed {
                (x * 63.0) as i32
            } else {
                ((x + 2.0) * 63.0) as i32
            }
        })
        .collect();
    Stored::Quantized {
        q,
        scale: 0.02,
        zero_point: if signed { 0 } else { 120 },
    }
}

/// Tolerance: relative to the largest output, f32 sums of up to 512 terms in different orders.
const MATMUL_TOL: f32 = 2e-6;

#[test]
fn int8_matmul_matches_reference_forward_and_transposed_on_ragged_shapes() {
    let gpu = gpu();
    for block in [Block::B4, Block::B8, Block::Rows] {
        int8_matmul_matches_reference_with(&gpu, block);
    }
}

fn int8_matmul_matches_reference_with(gpu: &Gpu, block: Block) {
    let k = Matmul::with_block(gpu, block);
    for (i, &(m, inp, outs)) in [
        (1, 1, &[1][..]),
        (3, 17, &[5, 2][..]),
        (70, 65, &[130][..]),
        (129, 512, &[67, 64, 3][..]),
        // Block::Rows (shaders/matmul_q8_rows.wgsl) takes products whose K and n are multiples
        // of 4 (the others run main8): 9 and 5 rows, 40, 36 and 1500 columns leave its 32-row and
        // 64-column tiles ragged.
        (9, 36, &[40][..]),
        // Split-K: few output tiles over a long K, forward (K = 1000) and transposed (K = 1500,
        // a ragged last chunk).
        (33, 1000, &[70][..]),
        (5, 40, &[1500][..]),
    ]
    .iter()
    .enumerate()
    {
        let parts: Vec<(&str, Stored)> = outs
            .iter()
            .enumerate()
            .map(|(j, &o)| ("w", stored(o, inp, (i * 10 + j) as u64, j % 2 == 0)))
            .collect();
        let w = QuantMatrix::fuse(&parts, inp, 1.0).unwrap();
        for trans in [false, true] {
            let kdim = if trans { w.cols } else { w.rows };
            let ndim = if trans { w.rows } else { w.cols };
            let a = test_values(m * kdim, i as u64 + 7);
            let c = test_values(m * ndim, i as u64 + 9);
            for acc in [None, Some(&c[..])] {
                let got = pollster::block_on(k.run(gpu, &a, m, &w, trans, acc)).unwrap();
                let want = matmul::reference(&a, m, &w, trans, acc);
                let e = rel_err(&got, &want);
                assert!(
                    e <= MATMUL_TOL,
                    "{block:?} m={m} in={inp} outs={outs:?} trans={trans} acc={}: rel err {e}",
                    acc.is_some()
                );
            }
        }
    }
}

#[test]
fn int8_matmul_rejects_a_wrong_activation_shape() {
    let gpu = gpu();
    let w = QuantMatrix::fuse(&[("w", stored(4, 3, 1, true))], 3, 1.0).unwrap();
    let err =
        pollster::block_on(Matmul::new(&gpu).run(&gpu, &[0.0; 5], 2, &w, false, None)).unwrap_err();
    assert!(
        matches!(err, KernelError::Shape { tensor: "a", .. }),
        "{err}"
    );
}

/// Tolerance for attention outputs and gradients (values O(1), sums over <= 64 terms).
const ATTN_TOL: f32 = 1e-5;

/// Both variants: `Workgroups` (GPUs) and `Tiles` (CPU adapters; its tiles are 32 rows by 32
/// keys in `scores` and by 64 columns in `mix`, so the shapes below leave partial tiles, and
/// d_kv = 1 takes the `Workgroups` path).
#[test]
fn attention_matches_reference_with_biases_masks_and_fully_masked_rows() {
    let gpu = gpu();
    for variant in [attn::Variant::Workgroups, attn::Variant::Tiles] {
        attention_cases(&gpu, variant);
    }
}

fn attention_cases(gpu: &Gpu, variant: attn::Variant) {
    // (batch, heads, q_len, k_len, d_kv, position, mask, causal)
    let cases = [
        (1, 1, 1, 1, 1, false, false, false),
        (2, 3, 5, 7, 4, true, true, false),
        (3, 2, 9, 9, 8, true, false, true),
        (2, 6, 4, 67, 64, false, true, false),
        // More keys than two workgroup strides and more columns than invocations per row.
        (1, 2, 70, 130, 80, true, true, true),
    ];
    for (n, &(batch, heads, q_len, k_len, d_kv, pos, msk, causal)) in cases.iter().enumerate() {
        let dims = Dims {
            batch,
            heads,
            q_len,
            k_len,
            d_kv,
        };
        let inner = heads * d_kv;
        let s = n as u64 * 100;
        let q = test_values(batch * q_len * inner, s + 1);
        let kv = test_values(batch * k_len * 2 * inner, s + 2);
        let dout = test_values(q.len(), s + 3);
        let position = test_values(heads * q_len * k_len, s + 4);
        // Batch 0 masks every key (a fully masked row); the others mask their last key.
        let mask: Vec<f32> = (0..batch * k_len)
            .map(|i| {
                if i < k_len || i % k_len == k_len - 1 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let case = attn::Case {
            dims,
            q: &q,
            kv: &kv,
            dout: &dout,
            bias: Bias {
                position: pos.then_some(&position[..]),
                key_mask: msk.then_some(&mask[..]),
                causal,
            },
        };
        let got = pollster::block_on(attn::run_variant(gpu, &case, variant)).unwrap();
        let want = attn::reference(&case);
        for (what, g, w) in [
            ("out", &got.out, &want.out),
            ("probs", &got.probs, &want.probs),
            ("dq", &got.dq, &want.dq),
            ("dk,dv", &got.dkv, &want.dkv),
        ] {
            let e = rel_err(g, w);
            assert!(
                e <= ATTN_TOL,
                "{variant:?} case {n} {dims:?}: {what} rel err {e}"
            );
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{variant:?} case {n}: {what} not finite"
            );
        }
    }
}

#[test]
fn gated_gelu_matches_reference_forward_and_backward() {
    let gpu = gpu();
    for (rows, ff) in [(1, 1), (3, 37), (65, 1024)] {
        let gu: Vec<f32> = test_values(rows * 2 * ff, ff as u64)
            .iter()
            .map(|x| x * 3.0)
            .collect();
        let dact = test_values(rows * ff, ff as u64 + 1);
        let (act, dgu) =
            pollster::block_on(GatedGelu::new(&gpu).run(&gpu, &gu, &dact, ff)).unwrap();
        let want_act = metaprompt::cpu::gated_gelu::forward(&gu, ff);
        let want_dgu = metaprompt::cpu::gated_gelu::backward(&gu, &dact, ff);
        // Same formula both sides; only fma contraction and exp/division rounding differ.
        assert!(rel_err(&act, &want_act) <= 1e-6, "{rows}x{ff}: act");
        assert!(rel_err(&dgu, &want_dgu) <= 1e-6, "{rows}x{ff}: dgu");
    }
}

#[test]
fn cross_entropy_matches_reference_over_the_real_vocabulary() {
    let gpu = gpu();
    for (rows, vocab) in [(1, 1), (3, 1000), (5, 32128)] {
        let logits: Vec<f32> = test_values(rows * vocab, vocab as u64)
            .iter()
            .map(|x| x * 5.0)
            .collect();
        let targets: Vec<u32> = (0..rows).map(|r| ((r * 7919) % vocab) as u32).collect();
        let weights: Vec<f32> = (0..rows).map(|r| if r == 1 { 0.0 } else { 0.25 }).collect();
        let (lp, loss, grad) = pollster::block_on(
            CrossEntropy::new(&gpu).run(&gpu, &logits, vocab, &targets, &weights),
        )
        .unwrap();
        let want_lp = metaprompt::cpu::cross_entropy::target_log_probs(&logits, vocab, &targets);
        let mut want_grad = logits.clone();
        let want_loss = metaprompt::cpu::cross_entropy::loss_and_grad_in_place(
            &mut want_grad,
            vocab,
            &targets,
            &weights,
        );
        // log-sum-exp over 32k terms summed in different orders: 1e-5 relative.
        assert!(
            rel_err(&lp, &want_lp) <= 1e-5,
            "{rows}x{vocab}: log p {lp:?} vs {want_lp:?}"
        );
        let total: f32 = loss.iter().sum();
        assert!(
            (total - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0),
            "{total} vs {want_loss}"
        );
        assert!(
            max_abs_diff(&grad, &want_grad) <= 1e-6,
            "{rows}x{vocab}: grad"
        );
    }
}

#[test]
fn cross_entropy_names_a_target_outside_the_vocabulary() {
    let gpu = gpu();
    let err =
        pollster::block_on(CrossEntropy::new(&gpu).run(&gpu, &[0.0; 8], 4, &[1, 9], &[1.0, 1.0]))
            .unwrap_err();
    assert!(err.to_string().contains("target 1"), "{err}");
}

#[test]
fn distillation_matches_reference_over_the_real_vocabulary() {
    use metaprompt::kernels::distill::Distill;
    let gpu = gpu();
    for (rows, vocab, temp) in [(1, 1, 1.0), (3, 1000, 2.0), (4, 32128, 1.0)] {
        let logits = |seed| -> Vec<f32> {
            test_values(rows * vocab, seed)
                .iter()
                .map(|x| x * 5.0)
                .collect()
        };
        let (student, teacher) = (logits(vocab as u64), logits(vocab as u64 + 1));
        let weights: Vec<f32> = (0..rows).map(|r| if r == 1 { 0.0 } else { 0.3 }).collect();
        let (loss, grad) =
            pollster::block_on(Distill::new(&gpu).run(&gpu, &student, &teacher, &weights, temp))
                .unwrap();
        let mut want_grad = teacher.clone();
        let want_loss = metaprompt::cpu::distill::losses_and_grad_into_teacher(
            &student,
            &mut want_grad,
            vocab,
            &weights,
            temp,
        );
        // Sums of 32k terms in different orders: 1e-5 relative to the largest row's loss.
        let scale = want_loss.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        assert!(
            max_abs_diff(&loss, &want_loss) <= 1e-5 * scale,
            "{rows}x{vocab}: loss {loss:?} vs {want_loss:?}"
        );
        assert!(
            max_abs_diff(&grad, &want_grad) <= 1e-6,
            "{rows}x{vocab}: grad"
        );
    }
}

#[test]
fn scale_add_matches_reference_on_a_ragged_length() {
    use metaprompt::kernels::scale_add::ScaleAdd;
    let gpu = gpu();
    // Longer than 65,535 workgroups of 256 would allow in one row of the grid.
    for n in [1, 1000, 65_535 * 256 + 3] {
        let (y, x) = (test_values(n, 1), test_values(n, 2));
        let got = pollster::block_on(ScaleAdd::new(&gpu).run(&gpu, &y, 0.3, &x, -1.5)).unwrap();
        let mut want = y.clone();
        metaprompt::cpu::scale_add::forward(&mut want, 0.3, &x, -1.5);
        assert!(max_abs_diff(&got, &want) <= 1e-6, "n = {n}");
    }
}

/// The adapters' f32 product (both variants) in all four transpose combinations, on ragged shapes inside larger
/// strided buffers (offsets, row strides), with and without accumulation, against the CPU
/// backend's `gemm::matmul` on the same views.
#[test]
fn f32_gemm_matches_reference_in_every_transpose_on_ragged_strided_operands() {
    use metaprompt::cpu::gemm::{View, matmul};
    use metaprompt::kernels::adapter::{AdapterKernels, GemmVariant};
    let gpu = gpu();
    for (variant, (m, kk, n)) in [GemmVariant::Tiles, GemmVariant::Direct]
        .into_iter()
        .flat_map(|v| [(1, 1, 1), (17, 33, 5), (40, 70, 33), (3, 5, 2)].map(|s| (v, s)))
    {
        let k = AdapterKernels::with_variant(&gpu, variant);
        for (ta, tb, acc) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            // Stored shapes and strides wider than the operands: columns past them are not read.
            let (ar, ac) = if ta { (kk, m) } else { (m, kk) };
            let (br, bc) = if tb { (n, kk) } else { (kk, n) };
            let (a_stride, b_stride) = (ac + 3, bc + 2);
            let a = test_values(ar * a_stride, 1);
            let b = test_values(br * b_stride, 2);
            let c0 = test_values(m * n, 3);
            let got = pollster::block_on(k.run_gemm(
                &gpu,
                (&a, a_stride, ta),
                (&b, b_stride, tb),
                &c0,
                (m, kk, n),
                acc,
            ))
            .unwrap();
            let view = |data, stride, (rows, cols), t: bool| {
                let v = View {
                    data,
                    rows,
                    cols,
                    rs: stride,
                    cs: 1,
                };
                if t {
                    View {
                        rows,
                        cols,
                        rs: 1,
                        cs: stride,
                        ..v
                    }
                } else {
                    v
                }
            };
            let mut want = c0.clone();
            matmul(
                &mut want,
                n,
                view(&a, a_stride, (m, kk), ta),
                view(&b, b_stride, (kk, n), tb),
                acc,
                false,
            );
            let e = rel_err(&got, &want);
            assert!(
                e <= 1e-5,
                "{m}x{kk}x{n} ta={ta} tb={tb} acc={acc}: rel err {e}"
            );
        }
    }
}

#[test]
fn adapter_parts_match_reference() {
    use metaprompt::cpu::adapter as reference;
    use metaprompt::kernels::adapter::AdapterKernels;
    let gpu = gpu();
    let k = AdapterKernels::new(&gpu);
    let (rows, cols) = (37, 70);
    let x = test_values(rows * cols, 1);
    let z = test_values(rows * cols, 2);
    let bias = test_values(cols, 3);
    let run = |entry, x: &[f32], z: &[f32], y: &[f32], extra| {
        pollster::block_on(k.run_part(&gpu, entry, x, z, y, (rows, cols), extra)).unwrap()
    };
    let mut want = z.clone();
    reference::add_bias(&mut want, &bias);
    assert!(max_abs_diff(&run("add_bias", &bias, &bias, &z, 0), &want) <= 1e-6);
    let mut want = vec![0.0; x.len()];
    reference::relu(&x, &mut want);
    assert_eq!(run("relu", &x, &x, &vec![0.0; x.len()], 0), want);
    let mut want = z.clone();
    reference::relu_backward(&x, &mut want);
    assert_eq!(run("relu_backward", &x, &x, &z, 0), want);
    // At an offset inside a larger buffer, the rest untouched.
    let mut want = vec![7.0; cols + 5];
    reference::column_sums(&x, &mut want[5..]);
    let got = run("column_sums", &x, &x, &vec![7.0; cols + 5], 5);
    assert!(max_abs_diff(&got, &want) <= 1e-5, "column sums");
    let got = run("dot", &x, &z, &[0.0, 0.0, 0.0], 2);
    let want = reference::dot(&x, &z);
    assert!(
        (got[2] - want).abs() <= 1e-5 * want.abs().max(1.0),
        "dot {got:?} vs {want}"
    );
    assert_eq!(&got[..2], &[0.0, 0.0], "dot wrote outside its slot");
}
