//! A deterministic stand-in for the model: a bag of hashed lower-cased words, unit length. It
//! knows nothing of meaning, which is the point: tests of storage, fallbacks and fusion use it
//! where the model's answers do not matter, and run without the model folder.

use sha2::{Digest, Sha256};

use crate::{Embed, EmbedError, ModelIdentity};

pub struct HashEmbedder {
    identity: ModelIdentity,
}

impl HashEmbedder {
    /// `name` sets the identity, so tests can make two "different models".
    pub fn new(name: &str, dims: usize) -> Self {
        Self {
            identity: ModelIdentity {
                name: name.to_owned(),
                sha256: hex::encode(Sha256::digest(name.as_bytes())),
                dims: dims.max(1),
            },
        }
    }

    fn one(&self, text: &str) -> Vec<f32> {
        let dims = self.identity.dims;
        let mut v = vec![0f32; dims];
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let h = Sha256::digest(w.to_lowercase().as_bytes());
            let i = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize % dims;
            v[i] += if h[4] & 1 == 0 { 1.0 } else { -1.0 };
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

impl Embed for HashEmbedder {
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.one(t)).collect())
    }
}
