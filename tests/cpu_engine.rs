//! Our CPU engine (the hand-written forward/backward in `metaprompt::cpu`) against burn's generic
//! ops with autodiff, on the tiny random model and on the real flan-t5-small: same loss, same
//! prompt gradient, same label ranking and greedy outputs. burn's path is itself checked against
//! finite differences (tests/prompt_tiny.rs) and the numpy reference (tests/t5_real.rs).
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::Device;
use metaprompt::cpu::CpuT5;
use metaprompt::model::checkpoint::Checkpoint;
use metaprompt::model::tiny::random_checkpoint;
use metaprompt::model::{T5, T5Config};
use metaprompt::prompt::SoftPrompt;
use metaprompt::prompt::engine::Engine;
use metaprompt::prompt::tune::Pair;
use metaprompt::selfcheck::test_values;
use std::path::Path;

fn both(bytes: &[u8], c: &T5Config) -> (T5, CpuT5) {
    let ckpt = Checkpoint::parse(bytes, c).unwrap();
    (
        T5::load(&ckpt, c, &Device::flex().autodiff()).unwrap(),
        CpuT5::from_checkpoint(&ckpt, c).unwrap(),
    )
}

fn prompt(len: usize, dim: usize, scale: f32) -> SoftPrompt {
    SoftPrompt {
        len,
        dim,
        values: test_values(len * dim, 5)
            .iter()
            .map(|x| x * scale)
            .collect(),
    }
}

/// max |a - b| / max |b|: the error relative to the tensor's scale.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

pub fn compare(burn: Engine, ours: Engine, p: &SoftPrompt, pairs: &[Pair], tol: f32) {
    let refs: Vec<&Pair> = pairs.iter().collect();
    let (lb, gb) = pollster::block_on(burn.loss_and_grad(p, &refs)).unwrap();
    let (lo, go) = pollster::block_on(ours.loss_and_grad(p, &refs)).unwrap();
    assert!(
        (lb - lo).abs() <= tol * lb.abs(),
        "loss: burn {lb}, ours {lo}"
    );
    let e = rel_err(&go, &gb);
    eprintln!(
        "loss {lb} vs {lo} (rel {:.2e}); prompt gradient rel err {e:.2e}",
        (lb - lo).abs() / lb.abs()
    );
    assert!(e <= tol, "prompt gradient relative error {e}");
    assert!(gb.iter().any(|x| x.abs() > 0.0), "gradient is zero");
    let l_no_grad = pollster::block_on(ours.loss(p, &refs)).unwrap();
    assert!((l_no_grad - lo).abs() <= 1e-6 * lo.abs().max(1.0));

    let inputs: Vec<Vec<u32>> = pairs.iter().map(|p| p.input.clone()).collect();
    let labels: Vec<Vec<u32>> = pairs.iter().map(|p| p.target.clone()).collect();
    for prompt in [Some(p), None] {
        assert_eq!(
            pollster::block_on(burn.rank(prompt, &inputs, &labels)).unwrap(),
            pollster::block_on(ours.rank(prompt, &inputs, &labels)).unwrap()
        );
        assert_eq!(
            pollster::block_on(burn.generate(prompt, &inputs, 5)).unwrap(),
            pollster::block_on(ours.generate(prompt, &inputs, 5)).unwrap()
        );
    }
}

#[test]
fn tiny_model_loss_gradient_ranking_and_generation_match_burn() {
    let c = T5Config::tiny();
    let (burn, ours) = both(&random_checkpoint(&c, 3), &c);
    // Ragged inputs and targets: padding in the encoder and in the decoder.
    let pairs = tiny_pairs();
    compare(
        Engine::Burn(&burn),
        Engine::Ours(&ours),
        &prompt(3, c.d_model, 0.5),
        &pairs,
        1e-4,
    );
}

#[test]
fn real_model_loss_and_gradient_match_burn() {
    let bytes = real_bytes();
    let c = T5Config::flan_t5_small();
    let (burn, ours) = both(&bytes, &c);
    let pairs = real_pairs();
    compare(
        Engine::Burn(&burn),
        Engine::Ours(&ours),
        &prompt(5, c.d_model, 0.25),
        &pairs,
        1e-3,
    );
}

/// Our WGSL kernels (the whole step on the native wgpu adapter, lavapipe here) against our CPU
/// engine: same loss, prompt gradient, ranking and greedy outputs on the tiny model and on the
/// real flan-t5-small. Tolerance: 1e-4 (tiny) and 1e-3 (real) relative, as the CPU engine
/// against burn.
fn gpu_engine(bytes: &[u8], c: &T5Config) -> (CpuT5, metaprompt::kernels::GpuT5) {
    let gpu = pollster::block_on(metaprompt::gpu::Gpu::shared()).expect("a wgpu adapter");
    let ckpt = Checkpoint::parse(bytes, c).unwrap();
    (
        CpuT5::from_checkpoint(&ckpt, c).unwrap(),
        metaprompt::kernels::GpuT5::from_checkpoint(&gpu, &ckpt, c).unwrap(),
    )
}

#[test]
fn wgsl_engine_matches_cpu_engine_on_the_tiny_model() {
    let c = T5Config::tiny();
    let (cpu, gpu) = gpu_engine(&random_checkpoint(&c, 3), &c);
    compare(
        Engine::Ours(&cpu),
        Engine::Wgpu(&gpu),
        &prompt(3, c.d_model, 0.5),
        &tiny_pairs(),
        1e-4,
    );
}

#[test]
fn wgsl_engine_matches_cpu_engine_on_the_real_model() {
    let c = T5Config::flan_t5_small();
    let (cpu, gpu) = gpu_engine(&real_bytes(), &c);
    compare(
        Engine::Ours(&cpu),
        Engine::Wgpu(&gpu),
        &prompt(5, c.d_model, 0.25),
        &real_pairs(),
        1e-3,
    );
}

/// Ragged inputs and targets: padding in the encoder and in the decoder.
fn tiny_pairs() -> Vec<Pair> {
    vec![
        Pair {
            input: vec![5, 9, 14, 1],
            target: vec![7, 1],
        },
        Pair {
            input: vec![8, 1],
            target: vec![11, 12, 1],
        },
        Pair {
            input: vec![20, 21, 22, 23, 24, 25, 26, 1],
            target: vec![40, 1],
        },
    ]
}

fn real_bytes() -> Vec<u8> {
    let dir = Path::new("models/flan-t5-small");
    std::fs::read(dir.join("model.safetensors")).unwrap_or_else(|e| {
        panic!("{e}: fetch and convert first: scripts/fetch-model.sh && cargo run -- convert")
    })
}

fn real_pairs() -> Vec<Pair> {
    (0..3)
        .map(|i| Pair {
            input: (0..12 + 5 * i)
                .map(|j| 100 + (j * 37 + i * 11) as u32)
                .collect(),
            target: vec![1000 + i as u32, 2000, 1],
        })
        .collect()
}
