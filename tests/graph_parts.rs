//! The graph's parts for the continual-learning and meta-learning methods, held to burn's
//! autodiff on the tiny random model, on both our backends (CPU kernels and WGSL kernels on the
//! native adapter): loss parts with per-row weights, distillation with a temperature, injected
//! input vectors, the gradient through mixed encoder states, pooled states; and sampling that
//! draws the same tokens on both backends.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use metaprompt::cpu::CpuT5;
use metaprompt::graph::{
    Adapters, Loss, Objective, Ops, Part, Piece, Row, Sampler, T5Graph, Teacher,
};
use metaprompt::kernels::GpuT5;
use metaprompt::model::checkpoint::Checkpoint;
use metaprompt::model::tiny::random_checkpoint;
use metaprompt::model::{Batch, T5, T5Config};
use metaprompt::selfcheck::test_values;

struct Models {
    c: T5Config,
    burn: T5,
    cpu: CpuT5,
    gpu: GpuT5,
}

fn models() -> Models {
    let c = T5Config::tiny();
    let bytes = random_checkpoint(&c, 3);
    let ckpt = Checkpoint::parse(&bytes, &c).unwrap();
    let gpu = pollster::block_on(metaprompt::gpu::Gpu::shared()).expect("a wgpu adapter");
    Models {
        burn: T5::load(&ckpt, &c, &Device::flex().autodiff()).unwrap(),
        cpu: CpuT5::from_checkpoint(&ckpt, &c).unwrap(),
        gpu: GpuT5::from_checkpoint(&gpu, &ckpt, &c).unwrap(),
        c,
    }
}

fn tiny_rows() -> Vec<(Vec<Piece>, Vec<u32>)> {
    let tok = Piece::tokens;
    vec![
        (tok(&[5, 9, 14, 1]), vec![7, 1]),
        (tok(&[8, 1]), vec![11, 12, 1]),
        (tok(&[20, 21, 22, 23, 24, 25, 26, 1]), vec![40, 1]),
        (tok(&[30, 31, 1]), vec![41, 42, 43, 1]),
    ]
}

/// Loss, prompt gradient and injected gradient from burn.
fn burn_grads(m: &Models, batch: &Objective) -> (f32, Vec<f32>, Vec<f32>) {
    let d = m.c.d_model;
    let dev = &m.burn.device;
    let p = tensor2(batch.prompt, batch.prompt.len() / d, d, dev).require_grad();
    let inj = (!batch.injected.is_empty())
        .then(|| tensor2(batch.injected, batch.injected.len() / d, d, dev).require_grad());
    let loss = burn_objective_loss(&m.burn, p.clone(), inj.clone(), None, batch);
    let grads = loss.backward();
    let gp = values(p.grad(&grads).unwrap());
    let gi = inj.map_or(vec![], |i| values(i.grad(&grads).unwrap()));
    (loss.into_data().try_to_vec::<f32>().unwrap()[0], gp, gi)
}

fn check_objective(m: &Models, batch: &Objective, tol: f32) {
    let (loss, gp, gi) = burn_grads(m, batch);
    for (name, g) in [
        (
            "cpu",
            pollster::block_on(m.cpu.loss_and_grads(batch)).unwrap(),
        ),
        (
            "wgsl",
            pollster::block_on(m.gpu.loss_and_grads(batch)).unwrap(),
        ),
    ] {
        eprintln!(
            "{name}: loss {} vs burn {loss}; parts {:?}",
            g.loss, g.parts
        );
        assert!(
            (g.loss - loss).abs() <= tol * loss.abs(),
            "{name}: loss {} vs {loss}",
            g.loss
        );
        let total: f32 = g
            .parts
            .iter()
            .zip(batch.parts)
            .map(|(l, p)| l * p.weight)
            .sum();
        assert!(
            (total - g.loss).abs() <= 1e-5 * g.loss.abs(),
            "{name}: parts do not add up"
        );
        close(&format!("{name} prompt gradient"), &g.prompt, &gp, tol);
        if !gi.is_empty() {
            close(&format!("{name} injected gradient"), &g.injected, &gi, tol);
        }
    }
}

fn prompt(m: &Models, len: usize, seed: u64) -> Vec<f32> {
    test_values(len * m.c.d_model, seed)
        .iter()
        .map(|x| x * 0.5)
        .collect()
}

fn rows(parts: &[usize], weights: &[f32]) -> Vec<Row> {
    tiny_rows()
        .into_iter()
        .zip(parts.iter().zip(weights))
        .map(|((input, target), (&part, &weight))| Row {
            input,
            target,
            part,
            weight,
        })
        .collect()
}

#[test]
fn loss_parts_with_row_weights_match_burn() {
    let m = models();
    let p = prompt(&m, 3, 5);
    let parts = [
        Part {
            weight: 0.75,
            loss: Loss::Target,
        },
        Part {
            weight: 0.25,
            loss: Loss::Target,
        },
    ];
    let rows = rows(&[0, 1, 0, 1], &[1.0, 2.0, 0.5, 1.0]);
    let batch = Objective {
        parts: &parts,
        rows: &rows,
        ..Objective::single(&p, &rows)
    };
    check_objective(&m, &batch, 1e-4);
}

#[test]
fn distillation_with_a_temperature_matches_burn() {
    let m = models();
    let (p, tp) = (prompt(&m, 3, 5), prompt(&m, 2, 9));
    let parts = [
        Part {
            weight: 0.9,
            loss: Loss::Target,
        },
        Part {
            weight: 0.1,
            loss: Loss::Distil,
        },
    ];
    let rows = rows(&[0, 1, 1, 0], &[1.0; 4]);
    let batch = Objective {
        parts: &parts,
        rows: &rows,
        teacher: Some(Teacher {
            prompt: &tp,
            temperature: 2.0,
        }),
        ..Objective::single(&p, &rows)
    };
    check_objective(&m, &batch, 1e-4);
    // Without a teacher the distillation part is an error, not a silent zero.
    let no_teacher = Objective {
        teacher: None,
        ..batch
    };
    assert!(pollster::block_on(m.cpu.loss_and_grads(&no_teacher)).is_err());
}

#[test]
fn injected_vectors_get_their_gradient_as_burn_does() {
    let m = models();
    let p = prompt(&m, 2, 5);
    let injected = prompt(&m, 3, 13);
    let mut rows = rows(&[0; 4], &[1.0; 4]);
    // Centroid-like options: vector 1 read twice in one row, vector 2 in two rows.
    rows[0].input.splice(
        1..1,
        [Piece::Injected(1), Piece::Injected(0), Piece::Injected(1)],
    );
    rows[2].input.insert(0, Piece::Injected(2));
    rows[3].input.push(Piece::Injected(2));
    let batch = Objective {
        injected: &injected,
        ..Objective::single(&p, &rows)
    };
    check_objective(&m, &batch, 1e-4);
    let bad = [Row {
        input: vec![Piece::Injected(3)],
        ..rows[0].clone()
    }];
    let err = pollster::block_on(m.cpu.loss_and_grads(&Objective {
        rows: &bad,
        ..batch
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("injected vector 3 of 3"), "{err}");
}

/// Cross-entropy of `targets` on the mixture `la * enc(x1) + lb * enc(x2)` (both under the
/// prompt, padded to one length), and the prompt's gradient through both encodings.
async fn mixed_loss_and_grad<O: Ops>(
    t5: &T5Graph<O>,
    prompt: &[f32],
    x: [&[Vec<Piece>]; 2],
    lambda: [f32; 2],
    targets: &[Vec<u32>],
) -> (f32, Vec<f32>) {
    let c = &t5.config;
    let (o, d) = (&t5.ops, c.d_model);
    let len = x.iter().flat_map(|b| b.iter().map(Vec::len)).max().unwrap();
    let e1 = t5.encode_pieces(prompt, x[0], &[], len).unwrap();
    let e2 = t5.encode_pieces(prompt, x[1], &[], len).unwrap();
    let mixed = t5
        .mix(&e1.memory, lambda[0], &e2.memory, lambda[1])
        .unwrap();
    let dec_in = teacher_forced(c, targets);
    let (logits, tape) = t5.decode(&mixed, &dec_in).unwrap();
    let (b, s, t) = (mixed.batch, mixed.len, tape.len);
    let n_tok: usize = targets.iter().map(Vec::len).sum();
    let (mut ids, mut w) = (vec![c.pad_token_id; b * t], vec![0f32; b * t]);
    for (i, tg) in targets.iter().enumerate() {
        ids[i * t..i * t + tg.len()].copy_from_slice(tg);
        w[i * t..i * t + tg.len()].fill(1.0 / n_tok as f32);
    }
    let (idb, wb) = (o.upload_ids("t", &ids).unwrap(), o.upload("w", &w).unwrap());
    let losses = o.zeros("losses", b * t);
    o.loss_and_grad(&logits, &idb, &wb, &losses, b * t, c.vocab_size);
    let d_states = t5.decoder_backward(&mixed, &tape, &logits);
    let n = b * s * d;
    let mut grad = vec![0f32; prompt.len()];
    for (e, l) in [(&e1, lambda[0]), (&e2, lambda[1])] {
        let dh = t5.encoder_backward(e, &t5.scaled(&d_states, l, n));
        let dh = o.read(dh, n).await.unwrap();
        for bi in 0..b {
            let rows = &dh[bi * s * d..(bi * s + e.prompt_len) * d];
            grad.iter_mut().zip(rows).for_each(|(g, x)| *g += x);
        }
    }
    (o.read(losses, b * t).await.unwrap().iter().sum(), grad)
}

#[test]
fn the_gradient_through_mixed_encoder_states_matches_burn() {
    let m = models();
    let c = &m.c;
    let p = prompt(&m, 3, 5);
    let all: Vec<_> = tiny_rows().into_iter().map(|r| r.0).collect();
    let (x1, x2) = (&all[..2], &all[2..]);
    let targets = vec![vec![7, 1], vec![11, 12, 1]];
    let lambda = [0.3, 0.7];
    let dev = &m.burn.device;
    let pt = tensor2(&p, 3, c.d_model, dev).require_grad();
    let s = 3 + all.iter().map(Vec::len).max().unwrap();
    let (emb1, mask1) = burn_embeds(&m.burn, pt.clone(), None, x1, s);
    let (emb2, mask2) = burn_embeds(&m.burn, pt.clone(), None, x2, s);
    let h = m.burn.encode_embeds(emb1, &mask1).mul_scalar(lambda[0])
        + m.burn.encode_embeds(emb2, &mask2).mul_scalar(lambda[1]);
    let mask: Vec<f32> = mask1.iter().zip(&mask2).map(|(a, b)| a.max(*b)).collect();
    let dec = Batch::new(&teacher_forced(c, &targets));
    let logits = m.burn.decode(&dec, h, &mask);
    let (w, idx) = burn_targets(&m.burn, &targets, dec.len);
    let n_tok = w.iter().sum::<f32>();
    let wt = Tensor::<2>::from_data(TensorData::new(w, [2, dec.len]), dev);
    let loss = (log_softmax(logits, 2).gather(2, idx).reshape([2, dec.len]) * wt)
        .sum()
        .div_scalar(-n_tok);
    let grads = loss.backward();
    let want = values(pt.grad(&grads).unwrap());
    let want_loss = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    for (name, (l, g)) in [
        (
            "cpu",
            pollster::block_on(mixed_loss_and_grad(&m.cpu, &p, [x1, x2], lambda, &targets)),
        ),
        (
            "wgsl",
            pollster::block_on(mixed_loss_and_grad(&m.gpu, &p, [x1, x2], lambda, &targets)),
        ),
    ] {
        assert!(
            (l - want_loss).abs() <= 1e-4 * want_loss,
            "{name}: loss {l} vs {want_loss}"
        );
        close(
            &format!("{name} prompt gradient through the mixture"),
            &g,
            &want,
            1e-4,
        );
    }
}

#[test]
fn pooled_states_are_the_encoder_states_at_the_positions() {
    let m = models();
    let c = &m.c;
    let p = prompt(&m, 2, 5);
    let inputs: Vec<Vec<u32>> = vec![vec![5, 9, 14, 1], vec![8, 1], vec![20, 21, 22, 23, 1]];
    let positions = vec![vec![1, 3], vec![0, 1], vec![4, 2]];
    let pieces: Vec<Vec<Piece>> = inputs.iter().map(|v| Piece::tokens(v)).collect();
    let s = 2 + 5;
    let pt = tensor2(&p, 2, c.d_model, &m.burn.device);
    let (emb, mask) = burn_embeds(&m.burn, pt, None, &pieces, s);
    let states = m
        .burn
        .encode_embeds(emb, &mask)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let d = c.d_model;
    let want: Vec<f32> = positions
        .iter()
        .enumerate()
        .flat_map(|(i, at)| {
            at.iter()
                .flat_map(|&j| states[(i * s + 2 + j) * d..(i * s + 3 + j) * d].to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, got) in [
        (
            "cpu",
            pollster::block_on(m.cpu.pooled_states(&p, &inputs, &positions)),
        ),
        (
            "wgsl",
            pollster::block_on(m.gpu.pooled_states(&p, &inputs, &positions)),
        ),
    ] {
        let got: Vec<f32> = got.unwrap().concat();
        close(&format!("{name} pooled states"), &got, &want, 1e-4);
    }
    let past = vec![vec![0], vec![2], vec![0]];
    let err = pollster::block_on(m.cpu.pooled_states(&p, &inputs, &past)).unwrap_err();
    assert!(err.to_string().contains("input 1 has 2 tokens"), "{err}");
}

#[test]
fn both_backends_sample_the_same_tokens_from_one_seed() {
    let m = models();
    let p = prompt(&m, 3, 5);
    let inputs: Vec<Vec<u32>> = tiny_rows()
        .iter()
        .map(|(x, _)| {
            x.iter()
                .map(|p| match p {
                    Piece::Token(t) => *t,
                    _ => 0,
                })
                .collect()
        })
        .collect();
    // All tokens kept (no top-k cut where two logits could swap ranks by a rounding), so the two
    // backends' draws can part only if a uniform falls within ~1e-6 of a class boundary.
    let sample = |seed| {
        let mut s1 = Sampler::new(0, 1.0, 2.5, seed);
        let mut s2 = Sampler::new(0, 1.0, 2.5, seed);
        let e1 = m.cpu.encode(&p, &inputs).unwrap();
        let e2 = m.gpu.encode(&p, &inputs).unwrap();
        let a = pollster::block_on(m.cpu.generate_with(&e1.memory, 12, |l, s| s1.pick(l, s)));
        let b = pollster::block_on(m.gpu.generate_with(&e2.memory, 12, |l, s| s2.pick(l, s)));
        (a.unwrap(), b.unwrap())
    };
    let (a, b) = sample(42);
    assert_eq!(a, b, "CPU and WGSL drew different tokens");
    // The draws are not the greedy path: some sequence differs under another seed.
    let (c, _) = sample(43);
    assert_ne!(a, c, "two seeds drew the same {a:?}");
    // Softmax check of the draw: the distribution the sampler draws from is the logits'.
    let logits = [0.0f32, 1.0];
    let probs = softmax(Tensor::<1>::from_floats(logits, &m.burn.device), 0);
    let want = probs.into_data().try_to_vec::<f32>().unwrap()[1];
    let mut s = Sampler::new(0, 1.0, 1.0, 5);
    let hits = (0..10_000).filter(|_| s.pick(&logits, &[]) == 1).count() as f32 / 1e4;
    assert!((hits - want).abs() < 0.02, "p(1) {hits} vs softmax {want}");
}

/// Each step's next-token logits from incremental decoding (the decoder cache) and, for the
/// same teacher-forced tokens, the full decoder's logits at every position, both `[b, n, v]`.
async fn stepwise_and_full<O: Ops>(
    t5: &T5Graph<O>,
    p: &[f32],
    forced: &[u32],
) -> (Vec<f32>, Vec<f32>) {
    let (v, n) = (t5.config.vocab_size, forced.len());
    let inputs = vec![vec![5, 9, 14, 1], vec![8, 1], vec![20, 21, 22, 23, 24, 1]];
    let b = inputs.len();
    let enc = t5.encode(p, &inputs).unwrap();
    let mut steps = vec![0f32; b * n * v];
    let mut calls = 0;
    let out = t5
        .generate_with(&enc.memory, n, |row, seq| {
            let (bi, pos) = (calls % b, seq.len() - 1);
            steps[(bi * n + pos) * v..(bi * n + pos + 1) * v].copy_from_slice(row);
            calls += 1;
            forced[pos]
        })
        .await
        .unwrap();
    assert_eq!(out, vec![forced.to_vec(); b]);
    let dec = vec![[&[t5.config.decoder_start_token_id][..], &forced[..n - 1]].concat(); b];
    let (logits, _) = t5.decode(&enc.memory, &dec).unwrap();
    (steps, t5.ops.read(logits, b * n * v).await.unwrap())
}

#[test]
fn incremental_decoding_gives_the_full_decoders_logits() {
    let m = models();
    let p = prompt(&m, 3, 9);
    let forced = [17, 4, 58, 4, 30, 61, 2, 9];
    let (a, b) = pollster::block_on(stepwise_and_full(&m.cpu, &p, &forced));
    close("CPU: cached vs full decoder logits", &a, &b, 1e-5);
    let (c, d) = pollster::block_on(stepwise_and_full(&m.gpu, &p, &forced));
    close("WGSL: cached vs full decoder logits", &c, &d, 1e-4);
    close("WGSL vs CPU cached logits", &c, &a, 1e-3);
}

/// Adapters with two modules at every site, every tensor non-zero (so that every gradient is),
/// unequal coefficients.
fn test_adapters(c: &T5Config) -> Adapters {
    let mut a = Adapters::new(c, 4, 2, 17);
    for (s, m) in a.sites.iter_mut().enumerate() {
        m.coefs = vec![0.3 * (s % 3) as f32 - 0.2, 0.1];
        for (i, ad) in m.modules.iter_mut().enumerate() {
            let seed = (s * 2 + i) as u64 * 4;
            ad.up = test_values(ad.up.len(), seed)
                .iter()
                .map(|x| x * 0.3)
                .collect();
            ad.down_bias = test_values(ad.down_bias.len(), seed + 1);
            ad.up_bias = test_values(ad.up_bias.len(), seed + 2)
                .iter()
                .map(|x| x * 0.1)
                .collect();
        }
    }
    a
}

#[test]
fn adapters_get_weight_and_coefficient_gradients_as_burn_does() {
    let m = models();
    let (c, d) = (&m.c, m.c.d_model);
    let p = prompt(&m, 2, 5);
    // With a distillation part: the teacher runs with the adapters too, without gradient.
    let tp = prompt(&m, 2, 9);
    let parts = [
        Part {
            weight: 0.8,
            loss: Loss::Target,
        },
        Part {
            weight: 0.2,
            loss: Loss::Distil,
        },
    ];
    let rows = rows(&[0, 1, 0, 1], &[1.0; 4]);
    let batch = Objective {
        parts: &parts,
        rows: &rows,
        teacher: Some(Teacher {
            prompt: &tp,
            temperature: 2.0,
        }),
        ..Objective::single(&p, &rows)
    };
    let adapters = test_adapters(c);
    let r = adapters.bottleneck;
    // burn: every adapter tensor tracked.
    let dev = &m.burn.device;
    let burn_adapters = burn_adapters(&adapters, dev);
    let pt = tensor2(&p, 2, d, dev).require_grad();
    let loss = burn_objective_loss(&m.burn, pt.clone(), None, Some(&burn_adapters), &batch);
    let grads = loss.backward();
    let want_loss = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    let want_prompt = values(pt.grad(&grads).unwrap());
    for (name, got) in [
        ("cpu", {
            m.cpu.set_adapters(Some(&adapters)).unwrap();
            pollster::block_on(m.cpu.loss_and_grads(&batch)).unwrap()
        }),
        ("wgsl", {
            m.gpu.set_adapters(Some(&adapters)).unwrap();
            pollster::block_on(m.gpu.loss_and_grads(&batch)).unwrap()
        }),
    ] {
        assert!(
            (got.loss - want_loss).abs() <= 1e-4 * want_loss,
            "{name}: loss {} vs {want_loss}",
            got.loss
        );
        close(
            &format!("{name} prompt gradient with adapters"),
            &got.prompt,
            &want_prompt,
            1e-4,
        );
        let ga = got.adapters.expect("adapter gradients");
        let (mut worst, mut coef_got, mut coef_want) = (0f32, vec![], vec![]);
        for (s, (gm, (bm, bc))) in ga.sites.iter().zip(&burn_adapters.sites).enumerate() {
            for (i, (g, b)) in gm.modules.iter().zip(bm).enumerate() {
                for ((what, gv, _), bt) in g.tensors(d, r).into_iter().zip(b) {
                    let want = values(bt.grad(&grads).unwrap());
                    let e = rel_err(gv, &want);
                    assert!(e <= 1e-4, "{name}: site {s} module {i} {what}: rel err {e}");
                    worst = worst.max(e);
                }
            }
            coef_got.extend(&gm.coefs);
            coef_want.extend(
                bc.grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
        eprintln!("{name}: worst adapter tensor rel err {worst:.2e}");
        close(
            &format!("{name} coefficient gradients"),
            &coef_got,
            &coef_want,
            1e-4,
        );
    }
    // A shape that is not the model's is refused with its name.
    let mut bad = adapters.clone();
    bad.sites[3].modules[1].up.pop();
    let err = m.cpu.set_adapters(Some(&bad)).unwrap_err().to_string();
    assert!(err.contains("site 3, module 1: up.weight"), "{err}");
}
