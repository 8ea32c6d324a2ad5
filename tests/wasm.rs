//! Browser tests: run in headless Chromium with WebGPU (SwiftShader) through
//! wasm-bindgen-test-runner; see scripts/test.sh.
#![cfg(target_arch = "wasm32")]

mod common;

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

/// The T5 forward pass on WebGPU agrees with the same code on the CPU backend, in the browser:
/// random weights, a padded batch, encoder states and decoder logits. Once at tiny sizes, once
/// at flan-t5-small's real widths (one layer each), where the GPU picks other matmul tilings.
#[wasm_bindgen_test]
async fn t5_on_webgpu_matches_cpu_backend() {
    use metaprompt::model::T5Config;
    t5_parity(T5Config::tiny()).await;
    let real_widths = T5Config {
        num_layers: 1,
        num_decoder_layers: 1,
        ..T5Config::flan_t5_small()
    };
    t5_parity(real_widths).await;
}

async fn t5_parity(c: metaprompt::model::T5Config) {
    use burn::tensor::{Device, Tensor};
    use metaprompt::model::checkpoint::Checkpoint;
    use metaprompt::model::tiny::random_checkpoint;
    use metaprompt::model::{Batch, T5};

    async fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data_async()
            .await
            .unwrap()
            .try_to_vec::<f32>()
            .unwrap()
    }
    let bytes = random_checkpoint(&c, 11);
    let ckpt = Checkpoint::parse(&bytes, &c).unwrap();
    let gpu = Gpu::shared().await.unwrap();
    let on_gpu = T5::load(&ckpt, &c, &gpu.device).unwrap();
    let on_cpu = T5::load(&ckpt, &c, &Device::flex()).unwrap();
    let enc_in = Batch::new(&[vec![5, 9, 14, 3, 1], vec![7, 2, 1]]);
    let dec_in = Batch::new(&[vec![0, 4, 8], vec![0, 6]]);
    let mut worst = Vec::new();
    for (stage, model) in [("gpu", &on_gpu), ("cpu", &on_cpu)] {
        let enc = model.encode(&enc_in);
        let logits = model.decode(&dec_in, enc.clone(), &enc_in.mask());
        worst.push((stage, values(enc).await, values(logits).await));
    }
    let (_, enc_g, log_g) = &worst[0];
    let (_, enc_c, log_c) = &worst[1];
    for (what, g, r) in [("encoder states", enc_g, enc_c), ("logits", log_g, log_c)] {
        let bad = g.iter().filter(|x| !x.is_finite()).count();
        assert_eq!(
            bad, 0,
            "d_model {}: {what}: non-finite values on WebGPU",
            c.d_model
        );
        let scale = r.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let err = g
            .iter()
            .zip(r.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err / scale < 1e-4,
            "d_model {}: {what}: WebGPU differs from CPU by {err} (scale {scale})",
            c.d_model
        );
    }
}

/// The tokenizer compiled to wasm (tokenizers' `unstable_wasm` build) gives the same ids as the
/// native one and the reference. Needs the fetched model (scripts/fetch-model.sh runs first).
#[wasm_bindgen_test]
fn tokenizer_in_wasm_matches_reference_ids() {
    use metaprompt::text::tokenizer::T5Tokenizer;
    let tok = T5Tokenizer::from_bytes(include_bytes!(
        "../models/flan-t5-small-onnx/tokenizer.json"
    ))
    .unwrap();
    let ids = tok
        .encode("translate English to German: The house is wonderful.")
        .unwrap();
    assert_eq!(ids, [13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1]);
    assert_eq!(
        tok.decode(&ids).unwrap(),
        "translate English to German: The house is wonderful."
    );
}

/// GELU (tanh form) stays finite and exact for the huge activations real T5 weights produce
/// (flan-t5's feed-forward reaches 1e5): WebGPU's tanh alone returns NaN there.
#[wasm_bindgen_test]
async fn gelu_is_finite_for_large_activations_on_webgpu() {
    use burn::tensor::{Tensor, TensorData};
    use metaprompt::model::t5::gelu_tanh;
    let xs = [
        -1e5f32, -300.0, -20.0, -3.0, -0.5, 0.0, 0.5, 3.0, 20.0, 300.0, 1e5,
    ];
    let gpu = Gpu::shared().await.unwrap();
    let t = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), &gpu.device);
    let got: Vec<f32> = gelu_tanh(t)
        .into_data_async()
        .await
        .unwrap()
        .try_to_vec()
        .unwrap();
    for (x, g) in xs.iter().zip(got) {
        let u = 0.797_884_6 * (x + 0.044715 * x * x * x);
        let want = 0.5 * x * (1.0 + (u as f64).tanh() as f32);
        assert!(
            (g - want).abs() <= 1e-4 * want.abs().max(1.0),
            "gelu({x}) = {g}, want {want}"
        );
    }
}

/// Our prompt-tuning kernels against their Rust twins in the browser (SwiftShader): int8 matmul
/// (forward and transposed, ragged; the adapter's block and the CPU-adapter `Rows`), attention
/// forward/backward with position bias, masks and a fully masked row (both variants; the
/// CPU-adapter ones need 8-lane subgroups and otherwise run the GPU kernels), gated-GELU
/// and the fused cross-entropy. Same tolerances as the native tests
/// (tests/gpu_kernels.rs).
#[wasm_bindgen_test]
async fn prompt_tuning_kernels_match_their_rust_twins_in_the_browser() {
    use metaprompt::cpu::attention::{Bias, Dims};
    use metaprompt::kernels::matmul::{self, Block, Matmul, QuantMatrix};
    use metaprompt::kernels::{
        attention as attn, cross_entropy::CrossEntropy, gated_gelu::GatedGelu, max_abs_diff,
    };
    use metaprompt::model::checkpoint::Stored;
    use metaprompt::selfcheck::test_values;
    let rel =
        |g: &[f32], w: &[f32]| max_abs_diff(g, w) / w.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let gpu = Gpu::shared().await.unwrap();

    let weight = |outs: usize, inp: usize| {
        let q: Vec<i32> = test_values(outs * inp, 1)
            .iter()
            .map(|x| (x * 63.0) as i32)
            .collect();
        let stored = Stored::Quantized {
            q,
            scale: 0.02,
            zero_point: 0,
        };
        QuantMatrix::fuse(&[("w", stored)], inp, 1.0).unwrap()
    };
    let (w, w4) = (weight(67, 65), weight(40, 36));
    // The adapter's block and the CPU-adapter one (`Rows`: K and n multiples of 4).
    for (block, w) in [(Block::for_adapter(&gpu), &w), (Block::Rows, &w4)] {
        let k = Matmul::with_block(&gpu, block);
        for trans in [false, true] {
            let kd = if trans { w.cols } else { w.rows };
            let a = test_values(68 * kd, 2);
            let got = k.run(&gpu, &a, 68, w, trans, None).await.unwrap();
            let e = rel(&got, &matmul::reference(&a, 68, w, trans, None));
            assert!(e <= 2e-6, "matmul {block:?} trans={trans}: {e}");
        }
    }

    let dims = Dims {
        batch: 2,
        heads: 3,
        q_len: 5,
        k_len: 7,
        d_kv: 4,
    };
    let (qv, kv, dout) = (
        test_values(2 * 5 * 12, 3),
        test_values(2 * 7 * 24, 4),
        test_values(2 * 5 * 12, 5),
    );
    let position = test_values(3 * 5 * 7, 6);
    let mask: Vec<f32> = (0..14)
        .map(|i| if i < 7 || i == 13 { 0.0 } else { 1.0 })
        .collect();
    let case = attn::Case {
        dims,
        q: &qv,
        kv: &kv,
        dout: &dout,
        bias: Bias {
            position: Some(&position),
            key_mask: Some(&mask),
            causal: false,
        },
    };
    let want = attn::reference(&case);
    for variant in [attn::Variant::Workgroups, attn::Variant::Tiles] {
        let got = attn::run_variant(&gpu, &case, variant).await.unwrap();
        for (what, g, w) in [
            ("out", &got.out, &want.out),
            ("dq", &got.dq, &want.dq),
            ("dkv", &got.dkv, &want.dkv),
        ] {
            assert!(
                rel(g, w) <= 1e-5,
                "attention {variant:?} {what}: {}",
                rel(g, w)
            );
        }
    }

    let gu: Vec<f32> = test_values(3 * 74, 7).iter().map(|x| x * 3.0).collect();
    let dact = test_values(3 * 37, 8);
    let (act, dgu) = GatedGelu::new(&gpu)
        .run(&gpu, &gu, &dact, 37)
        .await
        .unwrap();
    assert!(rel(&act, &metaprompt::cpu::gated_gelu::forward(&gu, 37)) <= 1e-6);
    assert!(rel(&dgu, &metaprompt::cpu::gated_gelu::backward(&gu, &dact, 37)) <= 1e-6);

    let logits: Vec<f32> = test_values(3 * 1000, 9).iter().map(|x| x * 5.0).collect();
    let (targets, weights) = ([3u32, 500, 999], [0.25f32, 0.0, 0.5]);
    let (lp, _, grad) = CrossEntropy::new(&gpu)
        .run(&gpu, &logits, 1000, &targets, &weights)
        .await
        .unwrap();
    let want_lp = metaprompt::cpu::cross_entropy::target_log_probs(&logits, 1000, &targets);
    let mut want_grad = logits.clone();
    metaprompt::cpu::cross_entropy::loss_and_grad_in_place(
        &mut want_grad,
        1000,
        &targets,
        &weights,
    );
    assert!(rel(&lp, &want_lp) <= 1e-5, "log p {lp:?} vs {want_lp:?}");
    assert!(
        max_abs_diff(&grad, &want_grad) <= 1e-6,
        "cross-entropy gradient"
    );
}

/// The graph's method parts on our WGSL kernels in the browser against our CPU backend (held to
/// burn's autodiff natively, tests/graph_parts.rs): loss parts with row weights, distillation
/// with a temperature, injected vectors, adapters' weight and coefficient gradients; the
/// distillation, scale-add, f32 product and adapter kernels against their twins; and sampling
/// that draws the same tokens on both backends from one seed.
#[wasm_bindgen_test]
async fn method_parts_on_webgpu_match_the_cpu_backend() {
    use metaprompt::cpu::CpuT5;
    use metaprompt::cpu::gemm::{View, matmul};
    use metaprompt::graph::{Objective, Row, Sampler};
    use metaprompt::kernels::adapter::AdapterKernels;
    use metaprompt::kernels::{GpuT5, distill::Distill, max_abs_diff, scale_add::ScaleAdd};
    use metaprompt::model::T5Config;
    use metaprompt::model::checkpoint::Checkpoint;
    use metaprompt::model::tiny::random_checkpoint;
    use metaprompt::selfcheck::test_values;
    let rel =
        |g: &[f32], w: &[f32]| max_abs_diff(g, w) / w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let gpu = Gpu::shared().await.unwrap();

    let (s, t) = (test_values(3 * 1000, 1), test_values(3 * 1000, 2));
    let w = [0.5f32, 0.0, 1.0];
    let (loss, grad) = Distill::new(&gpu).run(&gpu, &s, &t, &w, 2.0).await.unwrap();
    let mut want = t.clone();
    let want_loss =
        metaprompt::cpu::distill::losses_and_grad_into_teacher(&s, &mut want, 1000, &w, 2.0);
    assert!(
        rel(&loss, &want_loss) <= 1e-5,
        "distill loss {loss:?} vs {want_loss:?}"
    );
    assert!(max_abs_diff(&grad, &want) <= 1e-6, "distill gradient");
    let got = ScaleAdd::new(&gpu)
        .run(&gpu, &s, 0.3, &t, -1.5)
        .await
        .unwrap();
    let mut want = s.clone();
    metaprompt::cpu::scale_add::forward(&mut want, 0.3, &t, -1.5);
    assert!(max_abs_diff(&got, &want) <= 1e-6, "scale_add");

    let c = T5Config::tiny();
    let ckpt_bytes = random_checkpoint(&c, 3);
    let ckpt = Checkpoint::parse(&ckpt_bytes, &c).unwrap();
    let cpu = CpuT5::from_checkpoint(&ckpt, &c).unwrap();
    let wgsl = GpuT5::from_checkpoint(&gpu, &ckpt, &c).unwrap();
    let d = c.d_model;
    let case = MethodCase::new(&c);
    let (prompt, adapters) = (&case.prompt, &case.adapters);
    let batch = case.objective();
    let want = cpu.loss_and_grads(&batch).await.unwrap();
    let got = wgsl.loss_and_grads(&batch).await.unwrap();
    assert!(
        (got.loss - want.loss).abs() <= 1e-4 * want.loss,
        "{} vs {}",
        got.loss,
        want.loss
    );
    assert!(
        rel(&got.parts, &want.parts) <= 1e-4,
        "{:?} vs {:?}",
        got.parts,
        want.parts
    );
    assert!(rel(&got.prompt, &want.prompt) <= 1e-4, "prompt gradient");
    assert!(
        rel(&got.injected, &want.injected) <= 1e-4,
        "injected gradient"
    );

    // Adapters (two per site, every tensor non-zero): module weights' and coefficients'
    // gradients, and the f32 product and adapter parts against their twins.
    cpu.set_adapters(Some(adapters)).unwrap();
    wgsl.set_adapters(Some(adapters)).unwrap();
    let plain_rows = [
        Row::new(&[5, 9, 14, 1], vec![7, 1], 0),
        Row::new(&[8, 1], vec![11, 12, 1], 0),
    ];
    let plain = Objective::single(prompt, &plain_rows);
    let want = cpu.loss_and_grads(&plain).await.unwrap();
    let got = wgsl.loss_and_grads(&plain).await.unwrap();
    assert!(
        rel(&got.prompt, &want.prompt) <= 1e-4,
        "prompt gradient with adapters"
    );
    let (ga, wa) = (got.adapters.unwrap(), want.adapters.unwrap());
    for (s, (g, w)) in ga.sites.iter().zip(&wa.sites).enumerate() {
        assert!(rel(&g.coefs, &w.coefs) <= 1e-4, "site {s} coefficients");
        for (gm, wm) in g.modules.iter().zip(&w.modules) {
            for ((name, gv, _), (_, wv, _)) in gm.tensors(d, 4).into_iter().zip(wm.tensors(d, 4)) {
                assert!(rel(gv, wv) <= 1e-4, "site {s} {name}: {}", rel(gv, wv));
            }
        }
    }
    cpu.set_adapters(None).unwrap();
    wgsl.set_adapters(None).unwrap();
    let k = AdapterKernels::new(&gpu);
    let (a, b) = (test_values(19 * 23, 3), test_values(23 * 21, 4));
    for (ta, tb) in [(false, false), (true, true)] {
        let got = k
            .run_gemm(
                &gpu,
                (&a, if ta { 19 } else { 23 }, ta),
                (&b, if tb { 23 } else { 21 }, tb),
                &vec![0.0; 19 * 21],
                (19, 23, 21),
                false,
            )
            .await
            .unwrap();
        let view = |data, rows, cols, t: bool| {
            let v = View::new(
                data,
                if t { cols } else { rows },
                if t { rows } else { cols },
            );
            if t { v.t() } else { v }
        };
        let mut want = vec![0.0; 19 * 21];
        matmul(
            &mut want,
            21,
            view(&a, 19, 23, ta),
            view(&b, 23, 21, tb),
            false,
            false,
        );
        assert!(rel(&got, &want) <= 1e-5, "f32 gemm ta={ta} tb={tb}");
    }
    let x = test_values(7 * 9, 5);
    let mut want = vec![0.0; 9];
    metaprompt::cpu::adapter::column_sums(&x, &mut want);
    let got = k
        .run_part(&gpu, "column_sums", &x, &x, &[0.0; 9], (7, 9), 0)
        .await
        .unwrap();
    assert!(max_abs_diff(&got, &want) <= 1e-5, "column sums");
    let got = k
        .run_part(&gpu, "dot", &x, &x, &[0.0], (7, 9), 0)
        .await
        .unwrap();
    assert!(
        (got[0] - metaprompt::cpu::adapter::dot(&x, &x)).abs() <= 1e-4,
        "dot"
    );

    let inputs = vec![vec![5, 9, 14, 1], vec![8, 1]];
    // Pooled states (ERDA), and the gradient through mixed encoder states (SUPMER).
    let at = vec![vec![0, 3], vec![1, 0]];
    let want = cpu
        .pooled_states(prompt, &inputs, &at)
        .await
        .unwrap()
        .concat();
    let got = wgsl
        .pooled_states(prompt, &inputs, &at)
        .await
        .unwrap()
        .concat();
    assert!(rel(&got, &want) <= 1e-4, "pooled states");
    let mixed = [
        mixed_grad(&cpu, prompt).await,
        mixed_grad(&wgsl, prompt).await,
    ];
    assert!(
        rel(&mixed[1], &mixed[0]) <= 1e-4,
        "gradient through mixed states"
    );
    let (mut s1, mut s2) = (Sampler::new(0, 1.0, 2.5, 42), Sampler::new(0, 1.0, 2.5, 42));
    let e1 = cpu.encode(prompt, &inputs).unwrap();
    let e2 = wgsl.encode(prompt, &inputs).unwrap();
    let a = cpu
        .generate_with(&e1.memory, 8, |l, s| s1.pick(l, s))
        .await
        .unwrap();
    let b = wgsl
        .generate_with(&e2.memory, 8, |l, s| s2.pick(l, s))
        .await
        .unwrap();
    assert_eq!(a, b, "CPU and WebGPU drew different tokens");
}

/// The prompt's gradient of the logits' sum through `0.3 enc(x1) + 0.7 enc(x2)`.
async fn mixed_grad<O: metaprompt::graph::Ops>(
    t5: &metaprompt::graph::T5Graph<O>,
    prompt: &[f32],
) -> Vec<f32> {
    use metaprompt::graph::Piece;
    let tok = Piece::tokens;
    let (o, c) = (&t5.ops, &t5.config);
    let e1 = t5
        .encode_pieces(prompt, &[tok(&[5, 9, 1])], &[], 4)
        .unwrap();
    let e2 = t5
        .encode_pieces(prompt, &[tok(&[8, 7, 6, 1])], &[], 4)
        .unwrap();
    let m = t5.mix(&e1.memory, 0.3, &e2.memory, 0.7).unwrap();
    let (_, tape) = t5.decode(&m, &[vec![0, 4]]).unwrap();
    let n = 2 * c.vocab_size;
    let ones = o.upload("d logits", &vec![1.0; n]).unwrap();
    let ds = t5.decoder_backward(&m, &tape, &ones);
    let len = m.len * c.d_model;
    let mut g = vec![0f32; prompt.len()];
    for (e, l) in [(&e1, 0.3), (&e2, 0.7)] {
        let dh = o
            .read(t5.encoder_backward(e, &t5.scaled(&ds, l, len)), len)
            .await
            .unwrap();
        g.iter_mut().zip(&dh).for_each(|(a, b)| *a += b);
    }
    g
}

/// The graph's method parts on WebGPU in the browser against burn's autodiff (on burn's CPU
/// backend in the same page): one batch with two target parts of different row weights, a
/// distillation part (temperature 2), injected vectors and two adapters at every site (the
/// loss and the prompt's, injected vectors', adapters' and coefficients' gradients); pooled
/// states; the prompt's gradient through mixed encoder states.
#[wasm_bindgen_test]
async fn method_parts_on_webgpu_match_burn() {
    use burn::tensor::Device;
    use common::{burn_adapters, burn_objective_loss, rel_err, tensor2, values};
    use metaprompt::graph::Piece;
    use metaprompt::kernels::GpuT5;
    use metaprompt::model::checkpoint::Checkpoint;
    use metaprompt::model::tiny::random_checkpoint;
    use metaprompt::model::{T5, T5Config};
    let c = T5Config::tiny();
    let bytes = random_checkpoint(&c, 3);
    let ckpt = Checkpoint::parse(&bytes, &c).unwrap();
    let gpu = Gpu::shared().await.unwrap();
    let wgsl = GpuT5::from_checkpoint(&gpu, &ckpt, &c).unwrap();
    let burn = T5::load(&ckpt, &c, &Device::flex().autodiff()).unwrap();
    let d = c.d_model;
    let case = MethodCase::new(&c);
    let (prompt, injected, adapters) = (&case.prompt, &case.injected, &case.adapters);
    let batch = case.objective();
    let dev = &burn.device;
    let pt = tensor2(prompt, 3, d, dev).require_grad();
    let it = tensor2(injected, 2, d, dev).require_grad();
    let ba = burn_adapters(adapters, dev);
    let loss = burn_objective_loss(&burn, pt.clone(), Some(it.clone()), Some(&ba), &batch);
    let grads = loss.backward();
    let want_loss = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    wgsl.set_adapters(Some(adapters)).unwrap();
    let got = wgsl.loss_and_grads(&batch).await.unwrap();
    assert!(
        (got.loss - want_loss).abs() <= 1e-4 * want_loss,
        "loss {} vs {want_loss}",
        got.loss
    );
    let e = rel_err(&got.prompt, &values(pt.grad(&grads).unwrap()));
    assert!(e <= 1e-4, "prompt gradient: {e}");
    let e = rel_err(&got.injected, &values(it.grad(&grads).unwrap()));
    assert!(e <= 1e-4, "injected gradient: {e}");
    let ga = got.adapters.unwrap();
    for (s, (g, (bm, bc))) in ga.sites.iter().zip(&ba.sites).enumerate() {
        let want = bc
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(rel_err(&g.coefs, &want) <= 1e-4, "site {s} coefficients");
        for (gm, bt) in g.modules.iter().zip(bm) {
            for ((name, gv, _), t) in gm.tensors(d, 4).into_iter().zip(bt) {
                let e = rel_err(gv, &values(t.grad(&grads).unwrap()));
                assert!(e <= 1e-4, "site {s} {name}: {e}");
            }
        }
    }
    wgsl.set_adapters(None).unwrap();

    // Pooled states, and the prompt's gradient (of the logits' sum) through mixed states.
    let inputs = vec![vec![5, 9, 14, 1], vec![8, 1]];
    let at = vec![vec![0, 3], vec![1, 0]];
    let pieces: Vec<Vec<Piece>> = inputs.iter().map(|v| Piece::tokens(v)).collect();
    let (emb, mask) = common::burn_embeds(&burn, tensor2(prompt, 3, d, dev), None, &pieces, 7);
    let states = burn
        .encode_embeds(emb, &mask)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = at
        .iter()
        .enumerate()
        .flat_map(|(i, ps)| ps.iter().flat_map(move |&j| (0..d).map(move |k| (i, j, k))))
        .map(|(i, j, k)| states[(i * 7 + 3 + j) * d + k])
        .collect();
    let got = wgsl
        .pooled_states(prompt, &inputs, &at)
        .await
        .unwrap()
        .concat();
    assert!(rel_err(&got, &want) <= 1e-4, "pooled states");
    let pt = tensor2(prompt, 3, d, dev).require_grad();
    let (e1, m1) = common::burn_embeds(&burn, pt.clone(), None, &[Piece::tokens(&[5, 9, 1])], 7);
    let (e2, m2) = common::burn_embeds(&burn, pt.clone(), None, &[Piece::tokens(&[8, 7, 6, 1])], 7);
    let h =
        burn.encode_embeds(e1, &m1).mul_scalar(0.3) + burn.encode_embeds(e2, &m2).mul_scalar(0.7);
    let mask: Vec<f32> = m1.iter().zip(&m2).map(|(a, b)| a.max(*b)).collect();
    let dec = metaprompt::model::Batch::new(&[vec![0, 4]]);
    let grads = burn.decode(&dec, h, &mask).sum().backward();
    let want = values(pt.grad(&grads).unwrap());
    let got = mixed_grad(&wgsl, prompt).await;
    assert!(
        rel_err(&got, &want) <= 1e-4,
        "gradient through mixed states: {}",
        rel_err(&got, &want)
    );
}

/// The batch both browser method tests run: two target parts of different row weights, a
/// distillation part (temperature 2), an injected vector, and two adapters at every site with
/// every tensor non-zero.
struct MethodCase {
    prompt: Vec<f32>,
    teacher: Vec<f32>,
    injected: Vec<f32>,
    rows: Vec<metaprompt::graph::Row>,
    parts: [metaprompt::graph::Part; 3],
    adapters: metaprompt::graph::Adapters,
}

impl MethodCase {
    fn new(c: &metaprompt::model::T5Config) -> Self {
        use metaprompt::graph::{Adapters, Loss, Part, Piece, Row};
        use metaprompt::selfcheck::test_values;
        let d = c.d_model;
        let tok = Piece::tokens;
        let mut first = tok(&[5, 9, 14, 1]);
        first.insert(1, Piece::Injected(1));
        let row = |input, target, part, weight| Row {
            input,
            target,
            part,
            weight,
        };
        let part = |weight, loss| Part { weight, loss };
        let mut adapters = Adapters::new(c, 4, 2, 17);
        for (s, m) in adapters.sites.iter_mut().enumerate() {
            m.coefs = vec![0.2 * s as f32 - 1.0, 0.1];
            for ad in &mut m.modules {
                ad.up = test_values(ad.up.len(), s as u64)
                    .iter()
                    .map(|x| x * 0.3)
                    .collect();
            }
        }
        Self {
            prompt: test_values(3 * d, 5),
            teacher: test_values(2 * d, 9),
            injected: test_values(2 * d, 13),
            rows: vec![
                row(first, vec![7, 1], 0, 1.0),
                row(tok(&[8, 1]), vec![11, 12, 1], 1, 2.0),
                row(tok(&[20, 21, 1]), vec![40, 1], 2, 1.0),
            ],
            parts: [
                part(0.6, Loss::Target),
                part(0.3, Loss::Target),
                part(0.1, Loss::Distil),
            ],
            adapters,
        }
    }

    fn objective(&self) -> metaprompt::graph::Objective<'_> {
        metaprompt::graph::Objective {
            prompt: &self.prompt,
            injected: &self.injected,
            parts: &self.parts,
            rows: &self.rows,
            teacher: Some(metaprompt::graph::Teacher {
                prompt: &self.teacher,
                temperature: 2.0,
            }),
        }
    }
}
