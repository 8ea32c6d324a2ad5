//! Adapters as one safetensors file. PEFT has no bottleneck-adapter type to share a layout with,
//! so the names follow the T5 module each site sits in, in PyTorch's `nn.Linear` layout
//! (`[out, in]`, as adapter-transformers stores Houlsby modules):
//! `{encoder|decoder}.block.{i}.layer.{j}.adapters.{m}.{down|up}.{weight|bias}` and
//! `...layer.{j}.adapters.coefs` (`j` is the sub-layer's index in Hugging Face's T5: 0 for
//! self-attention; 1 for the encoder's feed-forward, 2 for the decoder's). The bottleneck width
//! rides in the file's metadata.

use crate::graph::{Adapter, Adapters, Mixture, Sublayer};
use crate::model::T5Config;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;

const FORMAT: &str = "metaprompt-adapters";

/// The module path of site `s`.
fn site_name(c: &T5Config, s: usize) -> String {
    let decoder = s >= 2 * c.num_layers;
    let rel = if decoder { s - 2 * c.num_layers } else { s };
    let (layer, sub) = (
        rel / 2,
        if rel % 2 == 0 {
            Sublayer::SelfAttention
        } else {
            Sublayer::FeedForward
        },
    );
    let j = match (sub, decoder) {
        (Sublayer::SelfAttention, _) => 0,
        (Sublayer::FeedForward, false) => 1,
        (Sublayer::FeedForward, true) => 2,
    };
    let stack = if decoder { "decoder" } else { "encoder" };
    format!("{stack}.block.{layer}.layer.{j}.adapters")
}

/// `[rows, cols]` row-major as `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = v[i * cols + j];
        }
    }
    t
}

pub fn to_safetensors(a: &Adapters, c: &T5Config) -> Vec<u8> {
    let (d, r) = (a.d, a.bottleneck);
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = Vec::new();
    for (s, m) in a.sites.iter().enumerate() {
        let base = site_name(c, s);
        if m.modules.is_empty() {
            continue;
        }
        tensors.push((
            format!("{base}.coefs"),
            m.coefs.clone(),
            vec![m.coefs.len()],
        ));
        for (i, ad) in m.modules.iter().enumerate() {
            let p = format!("{base}.{i}");
            tensors.push((
                format!("{p}.down.weight"),
                transpose(&ad.down, d, r),
                vec![r, d],
            ));
            tensors.push((format!("{p}.down.bias"), ad.down_bias.clone(), vec![r]));
            tensors.push((
                format!("{p}.up.weight"),
                transpose(&ad.up, r, d),
                vec![d, r],
            ));
            tensors.push((format!("{p}.up.bias"), ad.up_bias.clone(), vec![d]));
        }
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, v, shape)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(v))
                .expect("shape matches data");
            (n.clone(), view)
        })
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("bottleneck".to_string(), r.to_string()),
    ]);
    safetensors::serialize(views, Some(meta)).expect("adapters serialise")
}

/// Reads adapters for the model `c`; a missing or misshapen tensor is named.
pub fn from_safetensors(bytes: &[u8], c: &T5Config) -> Result<Adapters, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(format!(
            "not a {FORMAT} file (metadata format: {:?})",
            meta.get("format")
        ));
    }
    let r: usize = meta
        .get("bottleneck")
        .and_then(|b| b.parse().ok())
        .ok_or("the metadata has no bottleneck width")?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let d = c.d_model;
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
        let t = st
            .tensor(name)
            .map_err(|_| format!("tensor {name} is missing"))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(format!(
                "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    let sites = (0..Adapters::site_count(c))
        .map(|s| {
            let base = site_name(c, s);
            let coefs_name = format!("{base}.coefs");
            if !names.contains(&coefs_name) {
                return Ok(Mixture {
                    modules: vec![],
                    coefs: vec![],
                });
            }
            let n = st
                .tensor(&coefs_name)
                .map_err(|e| e.to_string())?
                .shape()
                .iter()
                .product();
            let coefs = read(&coefs_name, &[n])?;
            let modules = (0..n)
                .map(|i| {
                    let p = format!("{base}.{i}");
                    Ok(Adapter {
                        down: transpose(&read(&format!("{p}.down.weight"), &[r, d])?, r, d),
                        down_bias: read(&format!("{p}.down.bias"), &[r])?,
                        up: transpose(&read(&format!("{p}.up.weight"), &[d, r])?, d, r),
                        up_bias: read(&format!("{p}.up.bias"), &[d])?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Mixture { modules, coefs })
        })
        .collect::<Result<_, String>>()?;
    Ok(Adapters {
        d,
        bottleneck: r,
        sites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_tensor_and_errors_name_the_tensor() {
        let c = T5Config::tiny();
        let mut a = Adapters::new(&c, 3, 2, 5);
        a.sites[1].modules.clear();
        a.sites[1].coefs.clear();
        a.sites[2].coefs = vec![0.5, -0.25];
        a.sites[2].modules[1].up[4] = 1.5;
        let bytes = to_safetensors(&a, &c);
        assert_eq!(from_safetensors(&bytes, &c).unwrap(), a);
        let err = from_safetensors(
            &bytes,
            &T5Config {
                d_model: 8,
                ..c.clone()
            },
        )
        .unwrap_err();
        assert!(
            err.contains("encoder.block.0.layer.0.adapters.0.down.weight"),
            "{err}"
        );
        assert!(from_safetensors(b"junk", &c).is_err());
        let other = crate::prompt::peft::to_safetensors(&crate::prompt::SoftPrompt {
            len: 1,
            dim: 2,
            values: vec![0.0; 2],
        })
        .unwrap();
        assert!(
            from_safetensors(&other, &c)
                .unwrap_err()
                .contains("not a metaprompt-adapters file")
        );
    }
}
