//! ERDA's instance encoder, ours: the frozen T5 encoder over the marked sentence, its states
//! averaged over the head's tokens and over the tail's (markers included), concatenated
//! (2 x d_model). The encoder is frozen, so every sentence is encoded once and kept in a table
//! that can be saved: the head trains on these vectors.

use super::RelationError;
use super::instance::Instance;
use crate::prompt::engine::Engine;
use crate::text::tokenizer::T5Tokenizer;
use std::collections::HashMap;

/// Encoded sentences, by the text the encoder read.
#[derive(Debug, Clone, Default)]
pub struct Vectors {
    pub dim: usize,
    /// What produced them (model and pooling); a saved table is reused only under the same.
    pub model: String,
    texts: Vec<String>,
    index: HashMap<String, usize>,
    data: Vec<f32>,
}

impl Vectors {
    pub fn new(dim: usize, model: impl Into<String>) -> Self {
        Self {
            dim,
            model: model.into(),
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.index
            .get(text)
            .map(|&i| &self.data[i * self.dim..(i + 1) * self.dim])
    }

    /// Adds a vector (the first for a text is kept).
    pub fn insert(&mut self, text: String, v: &[f32]) {
        if self.index.contains_key(&text) {
            return;
        }
        self.index.insert(text.clone(), self.texts.len());
        self.texts.push(text);
        self.data.extend_from_slice(v);
    }

    /// The table as a safetensors file: tensor `vectors` `[n, dim]`, the texts and model in its
    /// metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RelationError> {
        let bytes: &[u8] = bytemuck::cast_slice(&self.data);
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![self.len(), self.dim],
            bytes,
        )
        .map_err(|e| RelationError::Cache(e.to_string()))?;
        let meta = HashMap::from([
            ("model".to_string(), self.model.clone()),
            (
                "texts".to_string(),
                serde_json::to_string(&self.texts).expect("texts as JSON"),
            ),
        ]);
        safetensors::serialize([("vectors", view)], Some(meta))
            .map_err(|e| RelationError::Cache(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RelationError> {
        let bad = |e: String| RelationError::Cache(e);
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let texts: Vec<String> = serde_json::from_str(meta.get("texts").map_or("", |s| s))
            .map_err(|e| bad(format!("metadata 'texts': {e}")))?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let t = st
            .tensor("vectors")
            .map_err(|e| bad(format!("tensor 'vectors': {e}")))?;
        let shape = t.shape();
        if shape.len() != 2 || shape[0] != texts.len() || t.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!(
                "tensor 'vectors' is {:?} {shape:?}, expected F32 [{}, dim]",
                t.dtype(),
                texts.len()
            )));
        }
        let data: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let index = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        Ok(Self {
            dim: shape[1],
            model: meta.get("model").cloned().unwrap_or_default(),
            texts,
            index,
            data,
        })
    }

    /// Encodes every instance not in the table yet, `batch` sentences at a time (sorted by
    /// length, so a batch pads little); `progress(done, total)` after each batch.
    pub async fn encode_missing(
        &mut self,
        engine: Engine<'_>,
        tokenizer: &T5Tokenizer,
        instances: &[&Instance],
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(), RelationError> {
        let d = engine.config().d_model;
        if self.dim != 2 * d {
            return Err(RelationError::Cache(format!(
                "the table holds {}-d vectors; this model's are {}",
                self.dim,
                2 * d
            )));
        }
        let mut todo: Vec<(&Instance, Vec<u32>, Vec<usize>, usize)> = Vec::new();
        let mut queued = std::collections::HashSet::new();
        for inst in instances {
            if self.index.contains_key(&inst.text) || !queued.insert(&inst.text) {
                continue;
            }
            let spans = tokenizer
                .encode_with_offsets(&inst.text)
                .map_err(|e| RelationError::Tokenizer(inst.text.clone(), e.to_string()))?;
            let (h, t) = inst.positions(&spans.offsets);
            if h.is_empty() || t.is_empty() {
                return Err(RelationError::NoTokens(inst.text.clone()));
            }
            let nh = h.len();
            todo.push((inst, spans.ids, [h, t].concat(), nh));
        }
        todo.sort_by_key(|t| t.1.len());
        let total = todo.len();
        for (done, chunk) in todo.chunks(batch.max(1)).enumerate() {
            let inputs: Vec<Vec<u32>> = chunk.iter().map(|c| c.1.clone()).collect();
            let positions: Vec<Vec<usize>> = chunk.iter().map(|c| c.2.clone()).collect();
            let states = engine.pooled_states(&inputs, &positions).await?;
            for ((inst, _, at, nh), s) in chunk.iter().zip(states) {
                let mean = |rows: std::ops::Range<usize>| -> Vec<f32> {
                    let mut m = vec![0.0; d];
                    for r in rows.clone() {
                        m.iter_mut()
                            .zip(&s[r * d..(r + 1) * d])
                            .for_each(|(m, v)| *m += v);
                    }
                    m.iter_mut().for_each(|m| *m /= rows.len() as f32);
                    m
                };
                let v = [mean(0..*nh), mean(*nh..at.len())].concat();
                if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                    return Err(RelationError::NotFinite(inst.text.clone(), *bad));
                }
                self.insert(inst.text.clone(), &v);
            }
            progress(((done + 1) * batch).min(total), total);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_survives_its_bytes() {
        let mut v = Vectors::new(3, "m");
        v.insert("a".into(), &[1.0, 2.0, 3.0]);
        v.insert("b".into(), &[4.0, 5.0, f32::MIN_POSITIVE]);
        v.insert("a".into(), &[9.0, 9.0, 9.0]); // first kept
        let back = Vectors::from_bytes(&v.to_bytes().unwrap()).unwrap();
        assert_eq!(back.model, "m");
        assert_eq!(back.get("a"), Some(&[1.0, 2.0, 3.0][..]));
        assert_eq!(back.get("b"), v.get("b"));
        assert_eq!(back.len(), 2);
        assert!(Vectors::from_bytes(b"not a table").is_err());
    }
}
