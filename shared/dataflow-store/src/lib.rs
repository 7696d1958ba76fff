//! The object storage port. `dataflow-aws` implements it for S3; [`MemoryStore`] serves unit
//! tests and [`FsStore`] local runs over folders. Kept apart from the ETL's crate so the search
//! functions reach storage without building polars.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

pub mod conformance;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object s3://{bucket}/{key} not found")]
    NotFound { bucket: String, key: String },
    #[error("object s3://{bucket}/{key} changed since it was announced (ETag mismatch)")]
    Changed { bucket: String, key: String },
    /// A request failed; `context` names the operation and object (with the cause's full text,
    /// since SDK errors' own messages say only "service error").
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: BoxError,
    },
    /// A request this store refuses or cannot serve, with no underlying error.
    #[error("{0}")]
    Other(String),
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
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
    /// Up to `len` bytes from `offset` (fewer at the object's end, none past it); `None` when
    /// the object is missing. Stores without ranged reads fetch the whole object.
    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(bucket, key).await?.map(|b| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            b[start..end.min(b.len())].to_vec()
        }))
    }
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        content_type: &str,
    ) -> Result<(), StoreError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError>;
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// The keys under `prefix` that sort after `start_after`, in key order: S3 skips the rest on
    /// its side (`StartAfter`), so a reader of a time-ordered log pays for what is new only.
    async fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut all = self.list(bucket, prefix).await?;
        all.retain(|m| m.key.as_str() > start_after);
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }
    /// A cheap reachability check of a bucket (health endpoints).
    async fn ping(&self, bucket: &str) -> Result<(), StoreError> {
        self.list(bucket, "\u{10FFFF}").await.map(|_| ())
    }
}

/// Bytes and ETag (computed once, at write: listings return ETags without reading bodies, as
/// S3's do).
type Objects = BTreeMap<(String, String), (Vec<u8>, String)>;

/// In-memory store for unit tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
}

impl MemoryStore {
    pub fn insert(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        if let Ok(mut m) = self.objects.lock() {
            let etag = Self::etag_of(&bytes);
            m.insert((bucket.into(), key.into()), (bytes, etag));
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
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Objects>, StoreError> {
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
            .map(|(b, etag)| ObjectMeta {
                key: key.into(),
                size: b.len() as u64,
                etag: Some(etag.clone()),
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
        Ok(self
            .lock()?
            .get(&(bucket.into(), key.into()))
            .map(|(b, _)| b.clone()))
    }
    async fn put(&self, bucket: &str, key: &str, body: Body, _: &str) -> Result<(), StoreError> {
        let bytes = match body {
            Body::Bytes(b) => b,
            Body::File(p) => std::fs::read(&p)
                .map_err(|e| StoreError::failed(format!("reading {}: {e}", p.display()), e))?,
        };
        let etag = Self::etag_of(&bytes);
        self.lock()?
            .insert((bucket.into(), key.into()), (bytes, etag));
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
            .map(|((_, k), (v, etag))| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
                etag: Some(etag.clone()),
                last_modified_ms: None,
            })
            .collect())
    }
}

/// Object store over local directories: each bucket name maps to a folder. Lets the command line
/// run the same orchestration on files (benchmarks, debugging, backfills from disk).
#[derive(Debug, Default)]
pub struct FsStore {
    buckets: BTreeMap<String, PathBuf>,
}

impl FsStore {
    pub fn with_bucket(mut self, name: &str, dir: impl Into<PathBuf>) -> Self {
        self.buckets.insert(name.to_owned(), dir.into());
        self
    }

    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        let root = self
            .buckets
            .get(bucket)
            .ok_or_else(|| StoreError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            })?;
        if key.split('/').any(|part| part == "..") {
            return Err(StoreError::Other(format!("key {key:?} escapes its folder")));
        }
        Ok(root.join(key))
    }

    /// Files have no ETag: size and modification time stand in for a version.
    fn etag(meta: &std::fs::Metadata) -> String {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", meta.len(), mtime)
    }
}

fn io_err(e: std::io::Error, bucket: &str, key: &str) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        }
    } else {
        StoreError::failed(format!("{bucket}/{key}: {e}"), e)
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match std::fs::metadata(self.path(bucket, key)?) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.into(),
                size: m.len(),
                etag: Some(Self::etag(&m)),
                last_modified_ms: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e, bucket, key)),
        }
    }
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ObjectReader, StoreError> {
        let path = self.path(bucket, key)?;
        let file = std::fs::File::open(&path).map_err(|e| io_err(e, bucket, key))?;
        if let Some(want) = etag {
            let meta = file.metadata().map_err(|e| io_err(e, bucket, key))?;
            if Self::etag(&meta) != want {
                return Err(StoreError::Changed {
                    bucket: bucket.into(),
                    key: key.into(),
                });
            }
        }
        Ok(Box::new(file))
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(bucket, key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e, bucket, key)),
        }
    }
    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match std::fs::File::open(self.path(bucket, key)?) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e, bucket, key)),
        };
        let size = file.metadata().map_err(|e| io_err(e, bucket, key))?.len();
        let mut out = Vec::new();
        if offset >= size {
            return Ok(Some(out));
        }
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.take(len).read_to_end(&mut out))
            .map_err(|e| io_err(e, bucket, key))?;
        Ok(Some(out))
    }
    async fn put(&self, bucket: &str, key: &str, body: Body, _: &str) -> Result<(), StoreError> {
        let path = self.path(bucket, key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(e, bucket, key))?;
        }
        // Write beside, then rename: readers never see a partial file.
        let tmp = path.with_extension("partial");
        match body {
            Body::Bytes(b) => std::fs::write(&tmp, b),
            Body::File(src) => std::fs::copy(src, &tmp).map(|_| ()),
        }
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| io_err(e, bucket, key))
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(bucket, key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(e, bucket, key)),
            _ => Ok(()),
        }
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.path(bucket, "")?;
        let mut out = Vec::new();
        // Walk only the folders the prefix can reach: from the deepest one it names whole, and
        // into a subfolder only if its path and the prefix agree (a listing of one date does not
        // stat the whole lake).
        let start = match prefix.rsplit_once('/') {
            Some((dirs, _)) if !dirs.is_empty() => root.join(dirs),
            _ => root.clone(),
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(e, bucket, prefix)),
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let Ok(rel) = p.strip_prefix(&root) else {
                    continue;
                };
                let key = rel
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    let folder = format!("{key}/");
                    if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                        stack.push(p);
                    }
                    continue;
                }
                if key.starts_with(prefix) && !key.ends_with(".partial") {
                    out.push(ObjectMeta {
                        key,
                        size: meta.len(),
                        etag: Some(Self::etag(&meta)),
                        last_modified_ms: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_conforms() {
        let store = MemoryStore::default();
        conformance::object_store(&store, "b", "").await.unwrap();
        conformance::object_store(&store, "b", "nested/prefix/")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn folder_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::default().with_bucket("b", dir.path());
        conformance::object_store(&store, "b", "").await.unwrap();
        conformance::object_store(&store, "b", "nested/prefix/")
            .await
            .unwrap();
    }
}
