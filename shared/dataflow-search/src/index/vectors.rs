//! The index object's vector section: one embedding per passage, in passage order, int8 with a
//! per-row scale, each row tagged with the hash of the text it embeds so a rebuild reuses it.
//!
//! ```text
//! per row: text hash (16 bytes) | scale (f32 LE) | dims x i8
//! ```
//!
//! Rows are unit vectors scaled so their largest component is ±127; a dot product with a unit
//! query, times the scale, is the cosine. On the Lambda guide the int8 rows rank as the f32 ones
//! do (docs/benchmarks.md).

use std::collections::HashMap;

use dataflow_embed::ModelIdentity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::IndexError;

pub const ENCODING: &str = "int8-row-scale";

/// What the header says of the section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorInfo {
    pub model: ModelIdentity,
    pub encoding: String,
    pub rows: usize,
    pub bytes: u64,
}

pub type TextHash = [u8; 16];

/// The text a passage is embedded as: where it sits, then what it says.
pub fn embed_text(title: &str, heading: &str, body: &str) -> String {
    let mut s = String::with_capacity(title.len() + heading.len() + body.len() + 4);
    s.push_str(title);
    if !heading.is_empty() && heading != title {
        s.push_str(" › ");
        s.push_str(heading);
    }
    s.push('\n');
    s.push_str(body);
    s
}

/// The first 16 bytes of the SHA-256 of a text: which rows a rebuild may reuse.
pub fn text_hash(text: &str) -> TextHash {
    let d = Sha256::digest(text.as_bytes());
    let mut h = [0u8; 16];
    h.copy_from_slice(&d[..16]);
    h
}

/// One quantised row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub hash: TextHash,
    pub scale: f32,
    pub values: Vec<i8>,
}

impl Row {
    pub fn quantise(hash: TextHash, v: &[f32]) -> Self {
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            0.0
        };
        let values = v
            .iter()
            .map(|x| {
                if scale > 0.0 {
                    (x / scale).round().clamp(-127.0, 127.0) as i8
                } else {
                    0
                }
            })
            .collect();
        Self {
            hash,
            scale,
            values,
        }
    }
}

/// The vectors of an index, ready to scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub model: ModelIdentity,
    hashes: Vec<TextHash>,
    scales: Vec<f32>,
    data: Vec<i8>,
}

impl Vectors {
    pub fn new(model: ModelIdentity, rows: Vec<Row>) -> Result<Self, IndexError> {
        let dims = model.dims;
        let mut v = Self {
            model,
            hashes: Vec::with_capacity(rows.len()),
            scales: Vec::with_capacity(rows.len()),
            data: Vec::with_capacity(rows.len() * dims),
        };
        for r in rows {
            if r.values.len() != dims {
                return Err(IndexError::BadHeader(format!(
                    "a vector has {} dimensions, the model {dims}",
                    r.values.len()
                )));
            }
            v.hashes.push(r.hash);
            v.scales.push(r.scale);
            v.data.extend_from_slice(&r.values);
        }
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn dims(&self) -> usize {
        self.model.dims
    }

    fn row_bytes(dims: usize) -> usize {
        16 + 4 + dims
    }

    pub fn encode(&self) -> Vec<u8> {
        let dims = self.dims();
        let mut out = Vec::with_capacity(self.len() * Self::row_bytes(dims));
        for (i, h) in self.hashes.iter().enumerate() {
            out.extend_from_slice(h);
            out.extend_from_slice(&self.scales[i].to_le_bytes());
            out.extend(self.data[i * dims..(i + 1) * dims].iter().map(|x| *x as u8));
        }
        out
    }

    pub fn info(&self) -> VectorInfo {
        VectorInfo {
            model: self.model.clone(),
            encoding: ENCODING.into(),
            rows: self.len(),
            bytes: (self.len() * Self::row_bytes(self.dims())) as u64,
        }
    }

    /// Reads a section the header describes; every length is checked before use.
    pub fn decode(info: &VectorInfo, bytes: &[u8]) -> Result<Self, IndexError> {
        if info.encoding != ENCODING {
            return Err(IndexError::BadHeader(format!(
                "vector encoding {:?} is not supported",
                info.encoding
            )));
        }
        let dims = info.model.dims;
        if dims == 0 || dims > 8192 {
            return Err(IndexError::BadHeader(format!("vector dimensions {dims}")));
        }
        let per = Self::row_bytes(dims);
        if info.rows.checked_mul(per) != Some(bytes.len()) {
            return Err(IndexError::BadHeader(
                "the vector section's length does not match its rows".into(),
            ));
        }
        let mut rows = Vec::with_capacity(info.rows);
        for chunk in bytes.chunks_exact(per) {
            let mut hash = [0u8; 16];
            hash.copy_from_slice(&chunk[..16]);
            let scale = f32::from_le_bytes([chunk[16], chunk[17], chunk[18], chunk[19]]);
            if !scale.is_finite() || scale < 0.0 {
                return Err(IndexError::BadHeader("a vector's scale is invalid".into()));
            }
            rows.push(Row {
                hash,
                scale,
                values: chunk[20..].iter().map(|b| *b as i8).collect(),
            });
        }
        Self::new(info.model.clone(), rows)
    }

    /// Rows by the hash of their text, for a rebuild to reuse.
    pub fn by_hash(&self) -> HashMap<TextHash, Row> {
        let dims = self.dims();
        self.hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    *h,
                    Row {
                        hash: *h,
                        scale: self.scales[i],
                        values: self.data[i * dims..(i + 1) * dims].to_vec(),
                    },
                )
            })
            .collect()
    }

    /// The `n` rows nearest a unit query by cosine, best first (ties by row): an exact scan.
    pub fn nearest(&self, query: &[f32], n: usize) -> Vec<(usize, f32)> {
        let dims = self.dims();
        if query.len() != dims || n == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(usize, f32)> = self
            .data
            .chunks_exact(dims)
            .enumerate()
            .map(|(i, row)| (i, dot(row, query) * self.scales[i]))
            .collect();
        let n = n.min(scored.len());
        if n < scored.len() {
            scored.select_nth_unstable_by(n, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(n);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }
}

/// An int8 row against an f32 query. Sixteen partial sums let the compiler use vector registers
/// (one running sum must add in order, one element at a time): the scan of the guide's 2,637
/// rows is several times faster.
fn dot(row: &[i8], query: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let rows = row.chunks_exact(LANES);
    let queries = query.chunks_exact(LANES);
    let tail: f32 = rows
        .remainder()
        .iter()
        .zip(queries.remainder())
        .map(|(a, b)| f32::from(*a) * b)
        .sum();
    for (r, q) in rows.zip(queries) {
        for j in 0..LANES {
            acc[j] += f32::from(r[j]) * q[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model(dims: usize) -> ModelIdentity {
        ModelIdentity {
            name: "m".into(),
            sha256: "00".into(),
            dims,
        }
    }

    #[test]
    fn round_trip_and_nearest() {
        let rows = vec![
            Row::quantise(text_hash("a"), &[1.0, 0.0, 0.0]),
            Row::quantise(text_hash("b"), &[0.0, 0.6, 0.8]),
            Row::quantise(text_hash("c"), &[0.0, 0.0, -1.0]),
        ];
        let v = Vectors::new(model(3), rows).unwrap();
        let bytes = v.encode();
        assert_eq!(bytes.len(), 3 * (16 + 4 + 3));
        let back = Vectors::decode(&v.info(), &bytes).unwrap();
        assert_eq!(back, v);
        let top = back.nearest(&[0.0, 0.0, 1.0], 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 0]);
        assert!((top[0].1 - 0.8).abs() < 0.01, "{top:?}");
        assert_eq!(back.by_hash()[&text_hash("c")].values, vec![0, 0, -127]);
    }

    #[test]
    fn hostile_sections_are_refused() {
        let v = Vectors::new(
            model(3),
            vec![Row::quantise(text_hash("a"), &[1.0, 0.0, 0.0])],
        )
        .unwrap();
        let bytes = v.encode();
        let info = v.info();
        assert!(Vectors::decode(&info, &bytes[..bytes.len() - 1]).is_err());
        let mut bad = info.clone();
        bad.rows = usize::MAX;
        assert!(Vectors::decode(&bad, &bytes).is_err());
        let mut bad = info.clone();
        bad.model.dims = 0;
        assert!(Vectors::decode(&bad, &bytes).is_err());
        let mut nan = bytes.clone();
        nan[16..20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Vectors::decode(&info, &nan).is_err());
        assert!(v.nearest(&[1.0, 0.0], 1).is_empty(), "wrong query length");
    }

    proptest! {
        /// Quantised cosines stay within 0.02 of the exact ones for unit vectors.
        #[test]
        fn int8_keeps_cosines(a in prop::collection::vec(-1f32..1.0, 32), b in prop::collection::vec(-1f32..1.0, 32)) {
            let unit = |v: &[f32]| {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / n).collect::<Vec<f32>>()
            };
            let (a, b) = (unit(&a), unit(&b));
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let v = Vectors::new(model(32), vec![Row::quantise([0; 16], &a)]).unwrap();
            let got = v.nearest(&b, 1)[0].1;
            prop_assert!((got - exact).abs() < 0.02, "{got} vs {exact}");
        }

        /// The lane-wise dot product is the plain one, whatever the length (tails included).
        #[test]
        fn dot_is_the_plain_sum(pairs in prop::collection::vec((any::<i8>(), -1f32..1.0), 0..100)) {
            let (row, query): (Vec<i8>, Vec<f32>) = pairs.into_iter().unzip();
            let plain: f32 = row.iter().zip(&query).map(|(a, b)| f32::from(*a) * b).sum();
            let got = dot(&row, &query);
            prop_assert!((got - plain).abs() < 1e-3, "{got} vs {plain}");
        }
    }
}
