//! burn's autodiff as the oracle of the graph's method parts, shared by the native tests
//! (tests/graph_parts.rs) and the browser tests (tests/wasm.rs).
#![allow(dead_code)]

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use metaprompt::graph::{Adapters, Loss, Objective, Piece};
use metaprompt::model::t5::BurnAdapters;
use metaprompt::model::{Batch, T5, T5Config};

/// max |a - b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

pub fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let e = rel_err(got, want);
    eprintln!("{what}: rel err {e:.2e}");
    assert!(
        e <= tol,
        "{what}: relative error {e} > {tol}\n got {got:?}\nwant {want:?}"
    );
    assert!(
        want.iter().any(|x| x.abs() > 1e-6),
        "{what}: the reference is zero"
    );
}

pub fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

pub fn tensor2(v: &[f32], rows: usize, d: usize, dev: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [rows, d]), dev)
}

/// burn's encoder input for `inputs` after `prompt`, padded to `s`: `[b, s, d]` and the mask.
pub fn burn_embeds(
    t5: &T5,
    prompt: Tensor<2>,
    injected: Option<Tensor<2>>,
    inputs: &[Vec<Piece>],
    s: usize,
) -> (Tensor<3>, Vec<f32>) {
    let c = &t5.config;
    let l = prompt.dims()[0];
    let mut seqs = Vec::new();
    let mut mask = Vec::new();
    for seq in inputs {
        let mut rows = vec![prompt.clone()];
        for j in 0..s - l {
            rows.push(match seq.get(j) {
                Some(Piece::Token(t)) => t5.embedding_rows(&[*t]),
                Some(Piece::Injected(i)) => injected.clone().unwrap().narrow(0, *i, 1),
                None => t5.embedding_rows(&[c.pad_token_id]),
            });
        }
        seqs.push(Tensor::cat(rows, 0).unsqueeze::<3>());
        mask.extend((0..s).map(|j| if j < l + seq.len() { 1.0 } else { 0.0 }));
    }
    (Tensor::cat(seqs, 0), mask)
}

pub fn teacher_forced(c: &T5Config, targets: &[Vec<u32>]) -> Vec<Vec<u32>> {
    targets
        .iter()
        .map(|t| {
            std::iter::once(c.decoder_start_token_id)
                .chain(t[..t.len() - 1].iter().copied())
                .collect()
        })
        .collect()
}

/// `[b, t]` weights of 1 at real target tokens, and the padded targets as `[b, t, 1]` ids.
pub fn burn_targets(t5: &T5, targets: &[Vec<u32>], t: usize) -> (Vec<f32>, Tensor<3, Int>) {
    let b = targets.len();
    let mut ids = vec![t5.config.pad_token_id as i64; b * t];
    let mut w = vec![0f32; b * t];
    for (i, tg) in targets.iter().enumerate() {
        for (j, &x) in tg.iter().enumerate() {
            ids[i * t + j] = x as i64;
            w[i * t + j] = 1.0;
        }
    }
    let idx = Tensor::<3, Int>::from_data(TensorData::new(ids, [b, t, 1]), &t5.device);
    (w, idx)
}

/// burn's loss of an objective: parts are means over their target tokens of per-row weighted
/// cross-entropy or `T^2 KL(teacher || student)`, weighted and summed.
pub fn burn_objective_loss(
    t5: &T5,
    prompt: Tensor<2>,
    injected: Option<Tensor<2>>,
    adapters: Option<&BurnAdapters>,
    batch: &Objective,
) -> Tensor<1> {
    let c = &t5.config;
    let inputs: Vec<Vec<Piece>> = batch.rows.iter().map(|r| r.input.clone()).collect();
    let targets: Vec<Vec<u32>> = batch.rows.iter().map(|r| r.target.clone()).collect();
    let s = prompt.dims()[0] + inputs.iter().map(Vec::len).max().unwrap();
    let dec = Batch::new(&teacher_forced(c, &targets));
    let t = dec.len;
    let (emb, mask) = burn_embeds(t5, prompt, injected.clone(), &inputs, s);
    let enc = t5.encode_embeds_with(emb, &mask, adapters);
    let logits = t5.decode_with(&dec, enc, &mask, adapters);
    let (real, idx) = burn_targets(t5, &targets, t);
    let mut tokens = vec![0f32; batch.parts.len()];
    for r in batch.rows {
        tokens[r.part] += r.target.len() as f32;
    }
    let (mut hard, mut soft) = (vec![0f32; real.len()], vec![0f32; real.len()]);
    for (i, r) in batch.rows.iter().enumerate() {
        let p = batch.parts[r.part];
        let w = p.weight * r.weight / tokens[r.part];
        let out = if p.loss == Loss::Distil {
            &mut soft
        } else {
            &mut hard
        };
        for j in 0..t {
            out[i * t + j] = w * real[i * t + j];
        }
    }
    let b = targets.len();
    let weights = |w: Vec<f32>| Tensor::<2>::from_data(TensorData::new(w, [b, t]), &t5.device);
    let picked = log_softmax(logits.clone(), 2)
        .gather(2, idx)
        .reshape([b, t]);
    let mut loss = (picked * weights(hard)).sum().neg();
    if let Some(tch) = batch.teacher {
        let tp = tensor2(
            tch.prompt,
            tch.prompt.len() / c.d_model,
            c.d_model,
            &t5.device,
        );
        let s_t = tp.dims()[0] + inputs.iter().map(Vec::len).max().unwrap();
        // The teacher is the same model (adapters included) under its prompt; no gradient.
        let (emb, mask) = burn_embeds(t5, tp, injected, &inputs, s_t);
        let enc = t5.encode_embeds_with(emb, &mask, adapters);
        let teacher = t5.decode_with(&dec, enc, &mask, adapters).detach();
        let temp = tch.temperature;
        let log_q = log_softmax(teacher.div_scalar(temp), 2);
        let log_p = log_softmax(logits.div_scalar(temp), 2);
        let kl = (log_q.clone().exp() * (log_q - log_p))
            .sum_dim(2)
            .reshape([b, t]);
        loss = loss + (kl * weights(soft)).sum().mul_scalar(temp * temp);
    }
    loss
}

/// `adapters` as burn tensors, every one tracked for gradients.
pub fn burn_adapters(adapters: &Adapters, dev: &Device) -> BurnAdapters {
    let (d, r) = (adapters.d, adapters.bottleneck);
    BurnAdapters {
        sites: adapters
            .sites
            .iter()
            .map(|mix| {
                let modules = mix
                    .modules
                    .iter()
                    .map(|a| {
                        a.tensors(d, r)
                            .map(|(_, v, [x, y])| tensor2(v, x, y, dev).require_grad())
                    })
                    .collect();
                let coefs = Tensor::<1>::from_floats(mix.coefs.as_slice(), dev).require_grad();
                (modules, coefs)
            })
            .collect(),
    }
}

/// The tiny random T5 (seed 7) with flan-t5-small's vocabulary and tokenizer, so that real text
/// works as on the real model: loaded for burn (CPU) and for our CPU engine.
#[cfg(not(target_arch = "wasm32"))]
pub fn tiny_with_tokenizer() -> (metaprompt::model::LoadedModel, metaprompt::cpu::CpuT5) {
    use metaprompt::model::checkpoint::Checkpoint;
    let path = std::path::Path::new("models/flan-t5-small/tokenizer.json");
    let tokenizer = std::fs::read(path).expect("run scripts/fetch-model.sh first");
    let c = T5Config::tiny_full_vocab();
    let bytes = metaprompt::model::tiny::random_checkpoint(&c, 7);
    let config = serde_json::to_vec(&c).unwrap();
    let model =
        metaprompt::model::LoadedModel::from_bytes(&bytes, &config, &tokenizer, &Device::flex())
            .unwrap();
    let ckpt = Checkpoint::parse(&bytes, &c).unwrap();
    let cpu = metaprompt::cpu::CpuT5::from_checkpoint(&ckpt, &c).unwrap();
    (model, cpu)
}
