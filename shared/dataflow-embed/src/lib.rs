//! Sentence embeddings, offline: the all-MiniLM-L6-v2 model (a 6-layer BERT, 384 dimensions) run
//! with candle on the CPU, mean-pooled over the real tokens and L2-normalised, as
//! sentence-transformers computes it. The model is read from a local folder (`model.safetensors`,
//! `tokenizer.json`, `config.json`, as `infra/model/install.sh` extracts them); nothing is ever
//! fetched.
//!
//! [`Embed`] is the port the search code uses, so its tests can run a small deterministic
//! stand-in ([`HashEmbedder`]) where the model's answers do not matter.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams, TruncationStrategy};

mod encoder;
mod gelu;
mod hash;

pub use encoder::{Config, Encoder};
pub use hash::HashEmbedder;

/// The model this product ships and its tokens per text (sentence-transformers' `max_seq_length`
/// for it: longer texts are cut, as the reference does).
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass when embedding many: long enough to keep the matrix kernels busy,
/// short enough that padding to the batch's longest text wastes little (texts are sorted).
pub const BATCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model folder {path}: {message}")]
    Missing { path: String, message: String },
    #[error("the model could not be loaded: {0}")]
    Model(String),
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("the model failed on its input: {0}")]
    Forward(String),
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Forward(e.to_string())
    }
}

/// Which model made a vector: vectors of different models are not comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub name: String,
    /// SHA-256 of the weights file.
    pub sha256: String,
    pub dims: usize,
}

/// The embedding port: unit vectors, one per text, in order.
pub trait Embed: Send + Sync {
    fn identity(&self) -> &ModelIdentity;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// all-MiniLM-L6-v2 on the CPU.
pub struct Embedder {
    model: Encoder,
    tokenizer: Tokenizer,
    device: Device,
    identity: ModelIdentity,
}

impl Embedder {
    /// Loads the model from a folder holding `model.safetensors`, `tokenizer.json` and
    /// `config.json`. The weights are hashed for [`ModelIdentity`].
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let file = |name: &str| -> Result<PathBuf, EmbedError> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(EmbedError::Missing {
                    path: dir.display().to_string(),
                    message: format!("no {name} (install the model with infra/model/install.sh)"),
                })
            }
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| EmbedError::Missing {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let config: Config = serde_json::from_slice(&read(&file("config.json")?)?)
            .map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
        let weights = read(&file("model.safetensors")?)?;
        let sha256 = hex::encode(Sha256::digest(&weights));
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        let model = Encoder::load(vb, &config).map_err(|e| EmbedError::Model(e.to_string()))?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        // The shipped tokenizer pads every text to 128 tokens and cuts at 128; the reference
        // cuts at 256 and pools over real tokens only. Batches are padded here, to their longest.
        tokenizer.with_padding(None::<PaddingParams>);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            identity: ModelIdentity {
                name: MODEL_NAME.to_owned(),
                sha256,
                dims: config.hidden_size,
            },
        })
    }

    /// Token ids of a text as the model sees them (special tokens included, cut at
    /// [`MAX_TOKENS`]).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One forward pass over texts of similar length.
    fn forward(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let n = ids.len();
        let mut flat = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for row in ids {
            flat.extend_from_slice(row);
            flat.extend(std::iter::repeat_n(0u32, len - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, len - row.len()));
        }
        let input = Tensor::from_vec(flat, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let out = self.model.forward(&input, &mask)?;
        // Mean over the real tokens, then unit length.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let sum = out.broadcast_mul(&m)?.sum(1)?;
        let count = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = sum.broadcast_div(&count)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl Embed for Embedder {
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_batched(texts, BATCH)
    }
}

impl Embedder {
    /// Texts are tokenised, sorted by length and run `batch` at a time (the matrix kernels use
    /// every core); the answer is in the callers' order.
    pub fn embed_batched(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut ids = Vec::with_capacity(texts.len());
        for t in texts {
            ids.push(self.token_ids(t)?);
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let batches: Vec<Vec<usize>> = order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect();
        // One worker per core, each taking every n-th batch: the matrix products use every core
        // on their own, but the element-wise steps between them (GELU, softmax, layer norm) run
        // on one, so two batches in flight keep both cores busy.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(batches.len())
            .max(1);
        let ids = &ids;
        let run = |w: usize| -> Result<Indexed, EmbedError> {
            let mut out = Vec::new();
            for chunk in batches.iter().skip(w).step_by(workers) {
                let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
                for (v, &i) in self.forward(&rows)?.into_iter().zip(chunk) {
                    out.push((i, v));
                }
            }
            Ok(out)
        };
        // A query is one batch: no thread for it.
        let done: Vec<Result<Indexed, EmbedError>> = if workers == 1 {
            vec![run(0)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..workers).map(|w| s.spawn(move || run(w))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(EmbedError::Forward("an embedding worker panicked".into()))
                        })
                    })
                    .collect()
            })
        };
        let mut out = vec![Vec::new(); texts.len()];
        for part in done {
            for (i, v) in part? {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// Vectors with the place of their text in the input.
type Indexed = Vec<(usize, Vec<f32>)>;

/// Cosine similarity of two vectors (of any length; 0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Where the model is: `EMBED_MODEL_DIR`, else the folder `infra/model/install.sh` fills in the
/// repository (for tests and the local stack).
pub fn default_model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EMBED_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join(".local/models").join(MODEL_NAME)
}
