//! ONNX (flan-t5-small, onnxruntime dynamic int8 quantisation) -> our safetensors checkpoint with
//! Hugging Face tensor names. Native only: the page downloads the converted file.
//!
//! Where the weights are: `MatMulInteger` nodes take the int8 weight `[in, out]` as input 1 and
//! its zero point as input 3, the f32 scale sits beside them as `{base}_scale`; node names carry
//! the HF module path (`/enc/block.0/layer.0/SelfAttention/q/MatMul_quant`). Embeddings and the
//! relative-position tables are uint8 initialisers named `{hf}.weight_quantized`; layer norms f32.

use super::checkpoint::{self, OutData, TensorOut};
use super::config::T5Config;
use onnx_protobuf::{Message, ModelProto, TensorProto};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{file}: not a readable ONNX model: {why}")]
    Onnx { file: String, why: String },
    #[error("{file}: initialiser `{tensor}` {why}")]
    Tensor {
        file: String,
        tensor: String,
        why: String,
    },
    #[error(
        "the converted checkpoint lacks `{tensor}` (expected shape {shape:?}): is this the flan-t5-small export?"
    )]
    Missing { tensor: String, shape: Vec<usize> },
    #[error("`{tensor}` has shape {got:?} after conversion, expected {expected:?}")]
    Shape {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("the decoder's copy of the embedding differs from the encoder's")]
    EmbeddingMismatch,
    #[error("writing the checkpoint: {0}")]
    Write(String),
}

/// ONNX tensor element types we meet.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;

struct Graph {
    file: String,
    inits: HashMap<String, TensorProto>,
    model: ModelProto,
}

impl Graph {
    fn parse(file: &str, bytes: &[u8]) -> Result<Self, ConvertError> {
        let model = ModelProto::parse_from_bytes(bytes).map_err(|e| ConvertError::Onnx {
            file: file.into(),
            why: e.to_string(),
        })?;
        let inits = model
            .graph
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        Ok(Self {
            file: file.into(),
            inits,
            model,
        })
    }

    fn err(&self, tensor: &str, why: impl Into<String>) -> ConvertError {
        ConvertError::Tensor {
            file: self.file.clone(),
            tensor: tensor.into(),
            why: why.into(),
        }
    }

    fn get(&self, name: &str) -> Result<&TensorProto, ConvertError> {
        self.inits
            .get(name)
            .ok_or_else(|| self.err(name, "is missing"))
    }

    fn scalar_f32(&self, name: &str) -> Result<f32, ConvertError> {
        let t = self.get(name)?;
        match (t.data_type, t.float_data.first(), t.raw_data.get(..4)) {
            (FLOAT, Some(v), _) => Ok(*v),
            (FLOAT, None, Some(b)) => Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => Err(self.err(name, "is not an f32 scalar")),
        }
    }

    fn scalar_int(&self, name: &str) -> Result<(i32, i32), ConvertError> {
        let t = self.get(name)?;
        let v = match (t.int32_data.first(), t.raw_data.first()) {
            (Some(v), _) => *v,
            (None, Some(b)) if t.data_type == INT8 => *b as i8 as i32,
            (None, Some(b)) => *b as i32,
            _ => return Err(self.err(name, "has no data")),
        };
        Ok((t.data_type, v))
    }

    fn shape(t: &TensorProto) -> Vec<usize> {
        t.dims.iter().map(|&d| d as usize).collect()
    }

    /// A quantised weight `{base}_quantized` with `{base}_scale` / `{base}_zero_point`,
    /// optionally transposed from ONNX's `[in, out]` to PyTorch's `[out, in]`.
    fn quantized(&self, base: &str, hf: &str, transpose: bool) -> Result<TensorOut, ConvertError> {
        let qname = format!("{base}_quantized");
        let q = self.get(&qname)?;
        let scale = self.scalar_f32(&format!("{base}_scale"))?;
        let (zp_type, zp) = self.scalar_int(&format!("{base}_zero_point"))?;
        let mut shape = Self::shape(q);
        let n: usize = shape.iter().product();
        if q.raw_data.len() != n {
            return Err(self.err(
                &qname,
                format!("has {} bytes for shape {shape:?}", q.raw_data.len()),
            ));
        }
        if zp_type != q.data_type {
            return Err(self.err(&qname, "has a zero point of another type"));
        }
        let mut bytes = q.raw_data.clone();
        if transpose {
            let [rows, cols] = shape[..] else {
                return Err(self.err(&qname, format!("is not 2-D: {shape:?}")));
            };
            bytes = (0..cols)
                .flat_map(|c| (0..rows).map(move |r| (r, c)))
                .map(|(r, c)| q.raw_data[r * cols + c])
                .collect();
            shape = vec![cols, rows];
        }
        let data = match q.data_type {
            INT8 => OutData::I8 {
                q: bytes.iter().map(|&b| b as i8).collect(),
                scale,
                zero_point: zp as i8,
            },
            UINT8 => OutData::U8 {
                q: bytes,
                scale,
                zero_point: zp as u8,
            },
            other => {
                return Err(self.err(
                    &qname,
                    format!("has element type {other}, expected int8/uint8"),
                ));
            }
        };
        Ok(TensorOut {
            name: hf.into(),
            shape,
            data,
        })
    }

    fn float(&self, name: &str, hf: &str) -> Result<TensorOut, ConvertError> {
        let t = self.get(name)?;
        let shape = Self::shape(t);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = if !t.float_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        if v.len() != n {
            return Err(self.err(name, format!("has {} values for shape {shape:?}", v.len())));
        }
        Ok(TensorOut {
            name: hf.into(),
            shape,
            data: OutData::F32(v),
        })
    }

    /// Every weight of this graph under its Hugging Face name.
    fn weights(&self) -> Result<BTreeMap<String, TensorOut>, ConvertError> {
        let mut out = BTreeMap::new();
        for node in &self.model.graph.node {
            if node.op_type == "MatMulInteger" {
                let Some(base) = node.input.get(1).and_then(|w| w.strip_suffix("_quantized"))
                else {
                    continue;
                };
                if !self.inits.contains_key(&format!("{base}_quantized")) {
                    continue; // activation x activation product (none in T5, but be exact)
                }
                let path = node
                    .name
                    .trim_start_matches('/')
                    .trim_end_matches("/MatMul_quant")
                    .replace('/', ".");
                let hf = format!("{}.weight", hf_name(&path));
                out.insert(hf.clone(), self.quantized(base, &hf, true)?);
            }
        }
        for name in self.inits.keys() {
            if let Some(base) = name.strip_suffix(".weight_quantized") {
                let hf = format!("{}.weight", hf_name(base));
                out.insert(
                    hf.clone(),
                    self.quantized(&format!("{base}.weight"), &hf, false)?,
                );
            } else if name.ends_with("layer_norm.weight") {
                out.insert(hf_name(name), self.float(name, &hf_name(name))?);
            }
        }
        Ok(out)
    }
}

/// `enc.` is the encoder, `m.decoder.` the decoder, `m.lm_head` the head; both embedding copies
/// are `shared`.
fn hf_name(onnx: &str) -> String {
    for (from, to) in [
        ("enc.embed_tokens", "shared"),
        ("enc.", "encoder."),
        ("m.decoder.", "decoder."),
        ("m.shared", "shared"),
        ("m.lm_head", "lm_head"),
    ] {
        if let Some(rest) = onnx.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    onnx.to_string()
}

/// Converts the two ONNX files into checkpoint bytes, verified against `config`.
pub fn convert(
    encoder_onnx: &[u8],
    decoder_onnx: &[u8],
    config: &T5Config,
) -> Result<Vec<u8>, ConvertError> {
    let enc = Graph::parse("encoder.onnx", encoder_onnx)?.weights()?;
    let mut dec = Graph::parse("decoder.onnx", decoder_onnx)?.weights()?;
    // The decoder file carries its own copy of the embedding: keep one, after checking they agree.
    if let (Some(a), Some(b)) = (enc.get("shared.weight"), dec.remove("shared.weight"))
        && a.data != b.data
    {
        return Err(ConvertError::EmbeddingMismatch);
    }
    let all: BTreeMap<String, TensorOut> = enc.into_iter().chain(dec).collect();
    let mut tensors = Vec::new();
    for (name, shape) in config.expected_tensors() {
        let t = all.get(&name).ok_or_else(|| ConvertError::Missing {
            tensor: name.clone(),
            shape: shape.clone(),
        })?;
        if t.shape != shape {
            return Err(ConvertError::Shape {
                tensor: name,
                expected: shape,
                got: t.shape.clone(),
            });
        }
        tensors.push(t.clone());
    }
    checkpoint::write(
        &tensors,
        &[
            (
                "source",
                "PyPI traceforge-title-model==0.2.0 (MIT): data/span/{encoder,decoder}.onnx".into(),
            ),
            ("parameters", config.parameter_count().to_string()),
        ],
    )
    .map_err(ConvertError::Write)
}

#[cfg(test)]
mod tests {
    use super::hf_name;

    #[test]
    fn onnx_paths_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("enc.block.0.layer.0.SelfAttention.q"),
            "encoder.block.0.layer.0.SelfAttention.q"
        );
        assert_eq!(
            hf_name("m.decoder.block.7.layer.1.EncDecAttention.k"),
            "decoder.block.7.layer.1.EncDecAttention.k"
        );
        assert_eq!(hf_name("enc.embed_tokens"), "shared");
        assert_eq!(hf_name("m.shared"), "shared");
        assert_eq!(hf_name("m.lm_head"), "lm_head");
    }
}
