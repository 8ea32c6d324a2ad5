//! The T5 code path on a tiny random-weight model (CPU backend): loading errors that name the
//! tensor, masks (padding must not change results), scoring and generation shapes.
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::Device;
use metaprompt::model::checkpoint::{self, Checkpoint, CheckpointError, OutData, TensorOut};
use metaprompt::model::tiny::random_checkpoint;
use metaprompt::model::{Batch, T5, T5Config};

fn tiny() -> (T5Config, Vec<u8>) {
    let c = T5Config::tiny();
    let bytes = random_checkpoint(&c, 7);
    (c, bytes)
}

fn model() -> T5 {
    let (c, bytes) = tiny();
    let ckpt = Checkpoint::parse(&bytes, &c).unwrap();
    T5::load(&ckpt, &c, &Device::flex()).unwrap()
}

fn to_vec(t: burn::tensor::Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn truncated_checkpoint_is_reported_not_a_panic() {
    let (c, bytes) = tiny();
    let err = Checkpoint::parse(&bytes[..bytes.len() - 10], &c)
        .err()
        .unwrap();
    assert!(matches!(err, CheckpointError::Unreadable(_)), "{err}");
    let err = Checkpoint::parse(&bytes[..5], &c).err().unwrap();
    assert!(matches!(err, CheckpointError::Unreadable(_)), "{err}");
}

#[test]
fn foreign_safetensors_file_is_refused() {
    let (c, _) = tiny();
    let views = vec![(
        "x",
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
    )];
    let foreign = safetensors::serialize(views, None).unwrap();
    let err = Checkpoint::parse(&foreign, &c).err().unwrap();
    assert_eq!(err, CheckpointError::Foreign { found: None });
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let c = T5Config::tiny();
    let mut tensors: Vec<TensorOut> = c
        .expected_tensors()
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            TensorOut {
                name,
                shape,
                data: OutData::F32(vec![0.0; n]),
            }
        })
        .collect();
    tensors.retain(|t| t.name != "lm_head.weight");
    let bytes = checkpoint::write(&tensors, &[]).unwrap();
    let err = Checkpoint::parse(&bytes, &c).err().unwrap();
    assert_eq!(
        err,
        CheckpointError::Missing {
            tensor: "lm_head.weight".into()
        }
    );

    let q = tensors
        .iter_mut()
        .find(|t| t.name == "encoder.block.1.layer.0.SelfAttention.q.weight")
        .unwrap();
    q.shape = vec![c.d_model, c.inner_dim() + 1];
    q.data = OutData::F32(vec![0.0; c.d_model * (c.inner_dim() + 1)]);
    let bytes = checkpoint::write(&tensors, &[]).unwrap();
    let err = Checkpoint::parse(&bytes, &c).err().unwrap();
    assert!(
        matches!(&err, CheckpointError::Shape { tensor, .. } if tensor == "encoder.block.1.layer.0.SelfAttention.q.weight"),
        "{err}"
    );
}

#[test]
fn a_quantised_tensor_with_a_broken_scale_is_named() {
    let c = T5Config::tiny();
    let name = "decoder.block.0.layer.1.EncDecAttention.k.weight";
    let tensors: Vec<TensorOut> = c
        .expected_tensors()
        .into_iter()
        .map(|(n, shape)| {
            let size = shape.iter().product();
            let data = if n == name {
                OutData::I8 {
                    q: vec![1; size],
                    scale: f32::NAN,
                    zero_point: 0,
                }
            } else {
                OutData::F32(vec![0.0; size])
            };
            TensorOut {
                name: n,
                shape,
                data,
            }
        })
        .collect();
    let bytes = checkpoint::write(&tensors, &[]).unwrap();
    let err = Checkpoint::parse(&bytes, &c).err().unwrap();
    assert!(
        matches!(&err, CheckpointError::Scale { tensor, .. } if *tensor == format!("{name}.scale")),
        "{err}"
    );
}

#[test]
fn padding_does_not_change_the_logits_of_a_sequence() {
    let m = model();
    let short = vec![5, 9, 13, 1];
    let long = vec![3, 4, 5, 6, 7, 8, 1];
    let dec = Batch::new(&[vec![0, 11, 12]]);
    let alone = Batch::new(std::slice::from_ref(&short));
    let alone_logits = to_vec(m.decode(&dec, m.encode(&alone), &alone.mask()));
    let both = Batch::new(&[short, long]);
    let dec2 = Batch::new(&[vec![0, 11, 12], vec![0, 11, 12]]);
    let both_logits = to_vec(m.decode(&dec2, m.encode(&both), &both.mask()));
    let first = &both_logits[..alone_logits.len()];
    let err = alone_logits
        .iter()
        .zip(first)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-4, "padded batch changed logits by {err}");
}

#[test]
fn decoder_is_causal() {
    let m = model();
    let enc_b = Batch::new(&[vec![5, 9, 13, 1]]);
    let enc = m.encode(&enc_b);
    let a = to_vec(m.decode(&Batch::new(&[vec![0, 11, 12]]), enc.clone(), &enc_b.mask()));
    let b = to_vec(m.decode(&Batch::new(&[vec![0, 11, 40]]), enc, &enc_b.mask()));
    let v = T5Config::tiny().vocab_size;
    // Positions 0 and 1 cannot see token 2.
    let err = a[..2 * v]
        .iter()
        .zip(&b[..2 * v])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-5, "future token leaked: {err}");
    assert!(
        a[2 * v..] != b[2 * v..],
        "the changed token must change its own position"
    );
}

#[test]
fn scores_are_log_probabilities_and_generation_stops() {
    let m = model();
    let enc_b = Batch::new(&[vec![5, 9, 13, 1]]);
    let enc = m.encode(&enc_b);
    // One target of one token: its score is a log-probability; all vocab scores sum to 1.
    let targets: Vec<Vec<u32>> = (0..T5Config::tiny().vocab_size as u32)
        .map(|t| vec![t])
        .collect();
    let enc_rep = enc.clone().repeat_dim(0, targets.len());
    let mask: Vec<f32> = enc_b.mask().repeat(targets.len());
    let s: Vec<f32> = m
        .score_tensor(enc_rep, &mask, &targets)
        .into_data()
        .try_to_vec()
        .unwrap();
    let total: f32 = s.iter().map(|x| x.exp()).sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
    let out = pollster::block_on(m.generate(enc, &enc_b.mask(), 5)).unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].len() <= 5);
}
