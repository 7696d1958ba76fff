//! The index in object storage: reading the docs prefix, publishing atomically, and loading the
//! current index (with revalidation) for the search API.
//!
//! Layout in the index bucket:
//! - `<docs_prefix>**`: the corpus (Markdown, text, HTML and PDF documents; other files are
//!   ignored);
//! - `<index_prefix>objects/<sha256>.dfidx`: packed indexes, named by their content;
//! - `<index_prefix>current.json`: the manifest naming the current object.
//!
//! Publishing writes the object first and the manifest last. A PUT replaces an object
//! atomically, so a reader sees the old manifest or the new one, and the object either names is
//! complete (the previous objects are kept, see [`KEEP_PREVIOUS`]).

use dataflow_store::StoreError;
use serde::{Deserialize, Serialize};

use crate::index::IndexError;

mod corpus;
mod holder;
mod publish;
#[cfg(test)]
mod tests;

pub use corpus::{
    content_type, convert, is_document, read_docs, read_local_docs, read_local_files, sync_docs,
    LocalFile, Skipped, SyncReport,
};
pub use holder::{IndexHolder, LoadedIndex};
pub use publish::{current_manifest, publish, rebuild, RebuildOutcome};

/// Superseded index objects kept after a publish, for readers that read the manifest just before
/// it moved.
pub const KEEP_PREVIOUS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum IndexStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("index manifest s3://{bucket}/{key} is invalid: {message}")]
    BadManifest {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("index object s3://{bucket}/{key} named by the manifest is missing")]
    MissingObject { bucket: String, key: String },
    #[error("reading {path}: {message}")]
    Local { path: String, message: String },
    #[error("background task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLocation {
    pub bucket: String,
    /// Folder of the Markdown corpus, e.g. `docs/`.
    pub docs_prefix: String,
    /// Folder of index objects and the manifest, e.g. `index/`.
    pub index_prefix: String,
}

impl IndexLocation {
    pub fn manifest_key(&self) -> String {
        format!("{}current.json", self.index_prefix)
    }
    pub fn object_key(&self, content_id: &str) -> String {
        format!("{}objects/{content_id}.dfidx", self.index_prefix)
    }
    fn objects_prefix(&self) -> String {
        format!("{}objects/", self.index_prefix)
    }
}

/// The pointer readers follow. Small, rewritten on every publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
    pub built_at: String,
    pub documents: usize,
    pub passages: usize,
    pub docs_fingerprint: String,
    /// Objects of earlier publishes still kept, newest first.
    #[serde(default)]
    pub previous: Vec<String>,
    /// Documents under the docs prefix that could not be read when this index was built.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// The model the passages' vectors come from; none when the index has no vectors.
    #[serde(default)]
    pub model: Option<dataflow_embed::ModelIdentity>,
}
