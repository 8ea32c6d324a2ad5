//! The converted checkpoint: safetensors with Hugging Face T5 tensor names, weights kept as the
//! source ships them (int8/uint8 with one scale and zero point per tensor, ~77 MB), layer norms in
//! f32. `{name}` holds the integers, `{name}.scale` (f32) and `{name}.zero_point` (the weight's
//! dtype) the quantisation; dequantise as `(q - zero_point) * scale`.

use super::config::T5Config;
use safetensors::{Dtype, SafeTensors};

/// Written into the safetensors metadata so a foreign file is told apart from ours.
pub const FORMAT: &str = "metaprompt-t5-int8-v1";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a readable safetensors file (truncated or corrupt download?): {0}")]
    Unreadable(String),
    #[error("not a metaprompt T5 checkpoint: metadata `format` is {found:?}, expected {FORMAT:?}")]
    Foreign { found: Option<String> },
    #[error("tensor `{tensor}` is missing from the checkpoint")]
    Missing { tensor: String },
    #[error("tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    Shape {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor `{tensor}` has dtype {got}, expected {expected}")]
    Dtype {
        tensor: String,
        expected: String,
        got: String,
    },
    #[error("tensor `{tensor}` is {value}, expected a finite quantisation scale")]
    Scale { tensor: String, value: f32 },
    #[error("tensor `{tensor}` has {got} bytes of data, expected {expected}")]
    Size {
        tensor: String,
        expected: usize,
        got: usize,
    },
}

/// One weight as stored: integers (or f32) plus the per-tensor quantisation.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    F32(Vec<f32>),
    Quantized {
        q: Vec<i32>,
        scale: f32,
        zero_point: i32,
    },
}

impl Stored {
    pub fn dequantize(&self) -> Vec<f32> {
        match self {
            Stored::F32(v) => v.clone(),
            Stored::Quantized {
                q,
                scale,
                zero_point,
            } => q.iter().map(|&v| (v - zero_point) as f32 * scale).collect(),
        }
    }
}

/// A parsed, verified checkpoint borrowing the file's bytes.
pub struct Checkpoint<'a> {
    st: SafeTensors<'a>,
}

impl<'a> Checkpoint<'a> {
    /// Parses and verifies every tensor `config` needs: presence, shape, dtype, data size.
    pub fn parse(bytes: &'a [u8], config: &T5Config) -> Result<Self, CheckpointError> {
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
        let found = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("format").cloned());
        if found.as_deref() != Some(FORMAT) {
            return Err(CheckpointError::Foreign { found });
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
        let ckpt = Self { st };
        for (name, shape) in config.expected_tensors() {
            ckpt.check(&name, &shape)?;
        }
        Ok(ckpt)
    }

    fn check(&self, name: &str, shape: &[usize]) -> Result<(), CheckpointError> {
        let t = self.view(name)?;
        if t.shape() != shape {
            return Err(CheckpointError::Shape {
                tensor: name.into(),
                expected: shape.to_vec(),
                got: t.shape().to_vec(),
            });
        }
        let n: usize = shape.iter().product();
        match t.dtype() {
            Dtype::F32 => {}
            Dtype::I8 | Dtype::U8 => {
                // One scale and one zero point per tensor (`stored` reads element 0).
                let (scale_name, zp_name) = (format!("{name}.scale"), format!("{name}.zero_point"));
                let scale = self.view(&scale_name)?;
                expect_dtype(&scale_name, scale.dtype(), Dtype::F32)?;
                expect_size(&scale_name, scale.data().len(), 4)?;
                let value = f32s(scale.data())[0];
                if !value.is_finite() {
                    return Err(CheckpointError::Scale {
                        tensor: scale_name,
                        value,
                    });
                }
                let zp = self.view(&zp_name)?;
                expect_dtype(&zp_name, zp.dtype(), t.dtype())?;
                expect_size(&zp_name, zp.data().len(), 1)?;
            }
            other => {
                return Err(CheckpointError::Dtype {
                    tensor: name.into(),
                    expected: "F32, I8 or U8".into(),
                    got: format!("{other:?}"),
                });
            }
        }
        expect_size(name, t.data().len(), n * t.dtype().bitsize() / 8)
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>, CheckpointError> {
        self.st.tensor(name).map_err(|_| CheckpointError::Missing {
            tensor: name.into(),
        })
    }

    /// The tensor as stored (verified by [`Self::parse`]).
    pub fn stored(&self, name: &str) -> Result<Stored, CheckpointError> {
        let t = self.view(name)?;
        let ints = |data: &[u8], dtype: Dtype| -> Vec<i32> {
            match dtype {
                Dtype::I8 => data.iter().map(|&b| b as i8 as i32).collect(),
                _ => data.iter().map(|&b| b as i32).collect(),
            }
        };
        Ok(match t.dtype() {
            Dtype::F32 => Stored::F32(f32s(t.data())),
            dtype => {
                let scale = f32s(self.view(&format!("{name}.scale"))?.data());
                let zp = ints(self.view(&format!("{name}.zero_point"))?.data(), dtype);
                Stored::Quantized {
                    q: ints(t.data(), dtype),
                    scale: scale[0],
                    zero_point: zp[0],
                }
            }
        })
    }

    /// The tensor as f32 (dequantised if stored as integers).
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, CheckpointError> {
        Ok(self.stored(name)?.dequantize())
    }
}

fn expect_dtype(name: &str, got: Dtype, want: Dtype) -> Result<(), CheckpointError> {
    if got == want {
        Ok(())
    } else {
        Err(CheckpointError::Dtype {
            tensor: name.into(),
            expected: format!("{want:?}"),
            got: format!("{got:?}"),
        })
    }
}

fn expect_size(tensor: &str, got: usize, expected: usize) -> Result<(), CheckpointError> {
    if got == expected {
        Ok(())
    } else {
        Err(CheckpointError::Size {
            tensor: tensor.into(),
            expected,
            got,
        })
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// What a writer needs for one tensor: name, shape, and the stored form.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorOut {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: OutData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutData {
    F32(Vec<f32>),
    I8 {
        q: Vec<i8>,
        scale: f32,
        zero_point: i8,
    },
    U8 {
        q: Vec<u8>,
        scale: f32,
        zero_point: u8,
    },
}

/// Serialises tensors into our checkpoint format (used by the converter and by tests that build
/// random tiny checkpoints).
pub fn write(tensors: &[TensorOut], extra_meta: &[(&str, String)]) -> Result<Vec<u8>, String> {
    use safetensors::tensor::TensorView;
    let mut owned: Owned = Vec::new();
    for t in tensors {
        match &t.data {
            OutData::F32(v) => owned.push((
                t.name.clone(),
                Dtype::F32,
                t.shape.clone(),
                bytemuck::cast_slice(v).to_vec(),
            )),
            OutData::I8 {
                q,
                scale,
                zero_point,
            } => {
                let (q, zp) = (bytemuck::cast_slice(q).to_vec(), *zero_point as u8);
                push_quantized(&mut owned, t, Dtype::I8, q, *scale, zp);
            }
            OutData::U8 {
                q,
                scale,
                zero_point,
            } => push_quantized(&mut owned, t, Dtype::U8, q.clone(), *scale, *zero_point),
        }
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(*d, s.clone(), b).map_err(|e| format!("{n}: {e}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let mut meta: std::collections::HashMap<String, String> = extra_meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert("format".into(), FORMAT.into());
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

type Owned = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// The three stored tensors of one quantised weight: integers, `.scale`, `.zero_point`.
fn push_quantized(
    owned: &mut Owned,
    t: &TensorOut,
    dtype: Dtype,
    q: Vec<u8>,
    scale: f32,
    zero_point: u8,
) {
    owned.push((t.name.clone(), dtype, t.shape.clone(), q));
    owned.push((
        format!("{}.scale", t.name),
        Dtype::F32,
        vec![],
        scale.to_le_bytes().to_vec(),
    ));
    owned.push((
        format!("{}.zero_point", t.name),
        dtype,
        vec![],
        vec![zero_point],
    ));
}
