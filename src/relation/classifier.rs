//! What a run ends with: the head (none for the frozen nearest-class-mean) and the prototypes
//! of every relation seen, enough to score a new sentence (the page's try box) and to download.

use super::RelationError;
use super::head::Head;
use super::learner::{Method, cosines};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    pub method: Method,
    /// The relations seen, in the order of `prototypes`' rows.
    pub labels: Vec<String>,
    /// Width of a prototype (the head's output, or the encoder vector's for NCM).
    pub dim: usize,
    /// Unit rows `[labels, dim]`.
    #[serde(with = "floats")]
    pub prototypes: Vec<f32>,
    pub head: Option<Head>,
}

impl Classifier {
    /// Cosine score of every relation for one encoded sentence, best first.
    /// Whether the sizes agree with each other (a stored record may have been damaged): the head
    /// maps `dim_in` to `dim` with all its weights, and there is one prototype per label.
    pub fn check(&self) -> Result<(), RelationError> {
        let bad = |why: String| Err(RelationError::Data(format!("the stored classifier: {why}")));
        if let Some(h) = &self.head {
            let want = h
                .dim_out
                .checked_mul(h.dim_in)
                .and_then(|n| n.checked_add(h.dim_out));
            if h.dim_in == 0 || want != Some(h.params.len()) {
                return bad(format!(
                    "its head of {} x {} has {} parameters",
                    h.dim_out,
                    h.dim_in,
                    h.params.len()
                ));
            }
            if h.dim_out != self.dim {
                return bad(format!(
                    "its head gives {} values, its prototypes have {}",
                    h.dim_out, self.dim
                ));
            }
        }
        if self.labels.len().checked_mul(self.dim) != Some(self.prototypes.len()) || self.dim == 0 {
            return bad(format!(
                "{} prototype values for {} relations of width {}",
                self.prototypes.len(),
                self.labels.len(),
                self.dim
            ));
        }
        Ok(())
    }

    pub fn scores(&self, x: &[f32]) -> Result<Vec<(String, f32)>, RelationError> {
        self.check()?;
        let want = self.head.as_ref().map_or(self.dim, |h| h.dim_in);
        if x.len() != want {
            return Err(RelationError::Data(format!(
                "the sentence's vector has {} values; this classifier reads {want}",
                x.len()
            )));
        }
        let z = match &self.head {
            Some(h) => h.forward(x),
            None => x.to_vec(),
        };
        let row = cosines(&z, self.dim, &self.prototypes).remove(0);
        let mut out: Vec<(String, f32)> = self.labels.iter().cloned().zip(row).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }

    /// A safetensors file: `prototypes` `[labels, dim]`, and the head's `weight` `[out, in]` and
    /// `bias` `[out]` (nn.Linear's layout); the method and the labels in the metadata.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, RelationError> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|f| f.to_le_bytes()).collect() };
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![(
            "prototypes".into(),
            vec![self.labels.len(), self.dim],
            bytes(&self.prototypes),
        )];
        if let Some(h) = &self.head {
            let (w, b) = h.params.split_at(h.dim_out * h.dim_in);
            tensors.push(("weight".into(), vec![h.dim_out, h.dim_in], bytes(w)));
            tensors.push(("bias".into(), vec![h.dim_out], bytes(b)));
        }
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, shape, data)| {
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| RelationError::Data(format!("tensor {n}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let labels =
            serde_json::to_string(&self.labels).map_err(|e| RelationError::Data(e.to_string()))?;
        let meta = HashMap::from([
            ("method".to_string(), self.method.name().to_string()),
            ("labels".to_string(), labels),
        ]);
        safetensors::serialize(views, Some(meta))
            .map_err(|e| RelationError::Data(format!("the classifier file: {e}")))
    }
}

/// `Vec<f32>` as base64 of its little-endian bytes in text formats (JSON), as bytes otherwise.
pub mod floats {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            s.serialize_bytes(&bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        use serde::de::Error;
        let bytes: Vec<u8> = if d.is_human_readable() {
            let text = String::deserialize(d)?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(D::Error::custom)?
        } else {
            serde_bytes_vec(d)?
        };
        if !bytes.len().is_multiple_of(4) {
            return Err(D::Error::custom(format!(
                "{} bytes is not a whole number of f32 values",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Vec<u8>, E> {
                Ok(b.to_vec())
            }
            fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(b)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        let head = Head::new(4, 2, 1);
        let protos = [
            head.forward(&[1.0, 0.0, 0.0, 0.0]),
            head.forward(&[0.0, 0.0, 1.0, 0.0]),
        ];
        Classifier {
            method: Method::Erda,
            labels: vec!["a".into(), "b".into()],
            dim: 2,
            prototypes: protos
                .iter()
                .flat_map(|p| super::super::loss::unit(p))
                .collect(),
            head: Some(head),
        }
    }

    #[test]
    fn a_classifier_survives_json_and_cbor_and_scores_its_own_prototype_first() {
        let c = classifier();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Classifier>(&json).unwrap(), c);
        let cbor = crate::worker::protocol::encode(&c).unwrap();
        assert_eq!(
            crate::worker::protocol::decode::<Classifier>(&cbor).unwrap(),
            c
        );
        let s = c.scores(&[0.0, 0.0, 1.0, 0.0]).unwrap();
        assert_eq!(s[0].0, "b");
        assert!((s[0].1 - 1.0).abs() < 1e-5);
        assert!(c.scores(&[1.0]).is_err());
        let file = c.to_safetensors().unwrap();
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert_eq!(st.tensor("weight").unwrap().shape(), &[2, 4]);
        assert_eq!(st.tensor("prototypes").unwrap().shape(), &[2, 2]);
    }

    #[test]
    fn a_damaged_classifier_is_refused_not_a_panic() {
        let mut torn = classifier();
        torn.head.as_mut().unwrap().params.pop();
        let err = torn.scores(&[0.0, 0.0, 1.0, 0.0]).unwrap_err().to_string();
        assert!(err.contains("has 9 parameters"), "{err}");
        let mut short = classifier();
        short.prototypes.pop();
        let err = short.scores(&[0.0, 0.0, 1.0, 0.0]).unwrap_err().to_string();
        assert!(err.contains("3 prototype values for 2 relations"), "{err}");
        let mut wide = classifier();
        wide.dim = 3;
        assert!(wide.scores(&[0.0, 0.0, 1.0, 0.0]).is_err());
    }
}
