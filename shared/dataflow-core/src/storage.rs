//! Object storage port. `dataflow-aws` implements it for S3; [`MemoryStore`] serves unit tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object s3://{bucket}/{key} not found")]
    NotFound { bucket: String, key: String },
    #[error("object s3://{bucket}/{key} changed since it was announced (ETag mismatch)")]
    Changed { bucket: String, key: String },
    #[error("storage request failed: {0}")]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified_ms: Option<i64>,
}

/// What to upload.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// A streaming reader over an object's bytes. It is blocking `Read` so the CPU-bound core can
/// run on a blocking thread; adapters bridge their async bodies into it.
pub type ObjectReader = Box<dyn Read + Send>;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// Opens the object for reading; with `etag`, fails with [`StoreError::Changed`] when the
    /// object is no longer that version.
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ObjectReader, StoreError>;
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        content_type: &str,
    ) -> Result<(), StoreError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError>;
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
}

/// In-memory store for unit tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryStore {
    pub fn insert(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        if let Ok(mut m) = self.objects.lock() {
            m.insert((bucket.into(), key.into()), bytes);
        }
    }
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.objects
            .lock()
            .map(|m| {
                m.keys()
                    .filter(|(b, _)| b == bucket)
                    .map(|(_, k)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn etag_of(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(bytes)[..16])
    }
    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, BTreeMap<(String, String), Vec<u8>>>, StoreError> {
        self.objects
            .lock()
            .map_err(|_| StoreError::Other("store lock poisoned".into()))
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self
            .lock()?
            .get(&(bucket.into(), key.into()))
            .map(|b| ObjectMeta {
                key: key.into(),
                size: b.len() as u64,
                etag: Some(Self::etag_of(b)),
                last_modified_ms: None,
            }))
    }
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ObjectReader, StoreError> {
        let bytes = self
            .get(bucket, key)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            })?;
        if etag.is_some_and(|e| e != Self::etag_of(&bytes)) {
            return Err(StoreError::Changed {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.get(&(bucket.into(), key.into())).cloned())
    }
    async fn put(&self, bucket: &str, key: &str, body: Body, _: &str) -> Result<(), StoreError> {
        let bytes = match body {
            Body::Bytes(b) => b,
            Body::File(p) => std::fs::read(&p).map_err(|e| StoreError::Other(e.to_string()))?,
        };
        self.lock()?.insert((bucket.into(), key.into()), bytes);
        Ok(())
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.lock()?.remove(&(bucket.into(), key.into()));
        Ok(())
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        Ok(self
            .lock()?
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), v)| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
                etag: Some(Self::etag_of(v)),
                last_modified_ms: None,
            })
            .collect())
    }
}
