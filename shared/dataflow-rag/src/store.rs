//! The index in object storage: reading the docs prefix, publishing atomically, and loading the
//! current index (with revalidation) for the search API.
//!
//! Layout in the index bucket:
//! - `<docs_prefix>**.md`: the corpus (Markdown files; other files are ignored);
//! - `<index_prefix>objects/<sha256>.dfidx`: packed indexes, named by their content;
//! - `<index_prefix>current.json`: the manifest naming the current object.
//!
//! Publishing writes the object first and the manifest last. A PUT replaces an object
//! atomically, so a reader sees the old manifest or the new one, and the object either names is
//! complete (the previous objects are kept, see [`KEEP_PREVIOUS`]).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dataflow_core::storage::{Body, ObjectMeta, ObjectStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::chunk::ChunkOptions;
use crate::index::{self, IndexError, SearchIndex, SourceDoc};

/// Superseded index objects kept after a publish, for readers that read the manifest just before
/// it moved.
pub const KEEP_PREVIOUS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum RagError {
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
    pub fn from_config(cfg: &dataflow_core::config::Config) -> Self {
        Self {
            bucket: cfg.index_bucket.clone(),
            docs_prefix: cfg.docs_prefix.clone(),
            index_prefix: cfg.index_prefix.clone(),
        }
    }
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
}

pub use crate::formats::is_document;

/// A document file as stored (what `sync_docs` uploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Files converted to the chunker's Markdown; those that cannot be read are reported, never
/// fatal: one bad file must not stop the others from being searchable.
pub fn convert(files: Vec<LocalFile>) -> (Vec<SourceDoc>, Vec<Skipped>) {
    let mut docs = Vec::new();
    let mut skipped = Vec::new();
    for f in files {
        match crate::formats::to_markdown(&f.path, f.bytes) {
            Ok(text) => docs.push(SourceDoc { path: f.path, text }),
            Err(reason) => skipped.push(Skipped {
                path: f.path,
                reason,
            }),
        }
    }
    (docs, skipped)
}

/// The Content-Type a document is stored with.
pub fn content_type(path: &str) -> &'static str {
    use crate::formats::Format;
    match crate::formats::format_of(path) {
        Some(Format::Text) => "text/plain; charset=utf-8",
        Some(Format::Html) => "text/html; charset=utf-8",
        Some(Format::Pdf) => "application/pdf",
        _ => "text/markdown; charset=utf-8",
    }
}

/// A file left out of the corpus, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Reads every document under the docs prefix (Markdown, text, HTML, PDF). Files that cannot be
/// read are skipped and reported.
pub async fn read_docs(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
) -> Result<(Vec<SourceDoc>, Vec<Skipped>, String), RagError> {
    let listing = store.list(&loc.bucket, &loc.docs_prefix).await?;
    let signature = listing_signature(&listing);
    let mut files = Vec::new();
    for meta in listing.iter().filter(|m| is_document(&m.key)) {
        let path = meta.key[loc.docs_prefix.len()..].to_owned();
        // Deleted between list and get: it is gone from the corpus, as it should be.
        let Some(bytes) = store.get(&loc.bucket, &meta.key).await? else {
            continue;
        };
        files.push(LocalFile { path, bytes });
    }
    let (docs, skipped) = convert(files);
    Ok((docs, skipped, signature))
}

fn listing_signature(listing: &[ObjectMeta]) -> String {
    let mut parts: Vec<String> = listing
        .iter()
        .filter(|m| is_document(&m.key))
        .map(|m| {
            format!(
                "{}\u{0}{}\u{0}{}",
                m.key,
                m.etag.as_deref().unwrap_or(""),
                m.size
            )
        })
        .collect();
    parts.sort();
    parts.join("\n")
}

/// Reads and converts every document under a local folder (recursively); paths are relative to
/// it with `/` separators.
pub fn read_local_docs(root: &Path) -> Result<(Vec<SourceDoc>, Vec<Skipped>), RagError> {
    Ok(convert(read_local_files(root)?))
}

/// Every document file under a local folder (recursively), as stored.
pub fn read_local_files(root: &Path) -> Result<Vec<LocalFile>, RagError> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<LocalFile>) -> Result<(), RagError> {
        let local = |e: std::io::Error| RagError::Local {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(local)?
            .collect::<Result<_, _>>()
            .map_err(local)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let ft = e.file_type().map_err(local)?;
            if ft.is_dir() {
                walk(root, &p, files)?;
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if !ft.is_file() || !is_document(&rel) {
                continue;
            }
            let bytes = std::fs::read(&p).map_err(|e| RagError::Local {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            files.push(LocalFile { path: rel, bytes });
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(root, root, &mut files)?;
    Ok(files)
}

/// The current manifest, or `None` when no index was ever published.
pub async fn current_manifest(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
) -> Result<Option<Manifest>, RagError> {
    let key = loc.manifest_key();
    let Some(bytes) = store.get(&loc.bucket, &key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RagError::BadManifest {
            bucket: loc.bucket.clone(),
            key,
            message: e.to_string(),
        })
}

/// Publishes a packed index: object under its content-derived key, then the manifest; then
/// deletes objects older than the [`KEEP_PREVIOUS`] superseded ones.
pub async fn publish(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
    bytes: Vec<u8>,
    skipped: Vec<Skipped>,
) -> Result<Manifest, RagError> {
    let (header, _) = index::read_header(&bytes)?;
    let sha256 = index::content_id(&bytes);
    let key = loc.object_key(&sha256);
    let size = bytes.len() as u64;
    let old = current_manifest(store, loc).await.ok().flatten();
    store
        .put(
            &loc.bucket,
            &key,
            Body::Bytes(bytes),
            "application/octet-stream",
        )
        .await?;
    let mut previous: Vec<String> = Vec::new();
    if let Some(o) = &old {
        for k in std::iter::once(&o.key).chain(o.previous.iter()) {
            if *k != key && !previous.contains(k) {
                previous.push(k.clone());
            }
        }
    }
    previous.truncate(KEEP_PREVIOUS);
    let manifest = Manifest {
        format_version: header.format_version,
        key: key.clone(),
        sha256,
        bytes: size,
        built_at: header.built_at.clone(),
        documents: header.documents.len(),
        passages: header.passages,
        docs_fingerprint: header.docs_fingerprint.clone(),
        previous,
        skipped,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| RagError::BadManifest {
        bucket: loc.bucket.clone(),
        key: loc.manifest_key(),
        message: e.to_string(),
    })?;
    store
        .put(
            &loc.bucket,
            &loc.manifest_key(),
            Body::Bytes(json),
            "application/json",
        )
        .await?;
    // Pruning is housekeeping: a failure leaves extra objects, never a broken index. Another
    // publisher may be between writing its object and its manifest (the CLI and the index
    // builder can run at once): keep what the manifest names now, and anything recent.
    let now = chrono::Utc::now().timestamp_millis();
    let current = current_manifest(store, loc).await.ok().flatten();
    if let Ok(objects) = store.list(&loc.bucket, &loc.objects_prefix()).await {
        for o in objects {
            if prunable(&o, &[Some(&manifest), current.as_ref()], now) {
                if let Err(e) = store.delete(&loc.bucket, &o.key).await {
                    tracing::warn!(key = %o.key, error = %e, "could not delete an old index object");
                }
            }
        }
    }
    tracing::info!(
        key = %manifest.key,
        bytes = manifest.bytes,
        documents = manifest.documents,
        passages = manifest.passages,
        "index published"
    );
    Ok(manifest)
}

/// Index objects younger than this are never pruned: a concurrent publish takes seconds.
const PRUNE_GRACE_MS: i64 = 15 * 60 * 1000;

/// Whether an index object may be deleted: named by none of the manifests (as this publisher
/// wrote it, and as it stands now), and not written within the grace period (stores that report
/// no time, like the in-memory one, are taken at their word that it is old).
fn prunable(o: &ObjectMeta, manifests: &[Option<&Manifest>], now_ms: i64) -> bool {
    let named = manifests
        .iter()
        .flatten()
        .any(|m| m.key == o.key || m.previous.contains(&o.key));
    let recent = o
        .last_modified_ms
        .is_some_and(|t| now_ms - t < PRUNE_GRACE_MS);
    !named && !recent
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RebuildOutcome {
    /// The docs are what the current index was built from: nothing published.
    UpToDate { manifest: Manifest },
    Published {
        manifest: Manifest,
        skipped: Vec<Skipped>,
        build_ms: u64,
    },
}

/// Rebuilds the index from the docs prefix and publishes it, unless the current index was built
/// from the same docs (`force` rebuilds anyway). When the docs change while it builds, it starts
/// over (up to three times), so what it publishes matches the docs at publish time.
pub async fn rebuild(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
    opts: ChunkOptions,
    force: bool,
) -> Result<RebuildOutcome, RagError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (docs, skipped, signature) = read_docs(store, loc).await?;
        let fingerprint = index::fingerprint(&docs);
        if !force {
            if let Some(m) = current_manifest(store, loc).await? {
                // A file that turned unreadable (or readable) changes what /docs reports.
                if m.docs_fingerprint == fingerprint
                    && m.format_version == index::FORMAT_VERSION
                    && m.skipped == skipped
                {
                    tracing::info!(documents = docs.len(), "index is up to date");
                    return Ok(RebuildOutcome::UpToDate { manifest: m });
                }
            }
        }
        let started = Instant::now();
        let bytes =
            tokio::task::spawn_blocking(move || index::build(&docs, opts, chrono::Utc::now()))
                .await
                .map_err(|e| RagError::Task(e.to_string()))??;
        let build_ms = started.elapsed().as_millis() as u64;
        let now = listing_signature(&store.list(&loc.bucket, &loc.docs_prefix).await?);
        if now != signature && attempt < 3 {
            tracing::info!(attempt, "docs changed during the build; building again");
            continue;
        }
        let manifest = publish(store, loc, bytes, skipped.clone()).await?;
        return Ok(RebuildOutcome::Published {
            manifest,
            skipped,
            build_ms,
        });
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub uploaded: Vec<String>,
    pub deleted: Vec<String>,
    pub unchanged: usize,
}

/// Makes the docs prefix hold exactly `docs`: uploads new and changed files, deletes documents
/// that are no longer there. Unchanged files are not rewritten (no spurious rebuilds).
pub async fn sync_docs(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
    docs: &[LocalFile],
) -> Result<SyncReport, RagError> {
    let existing = store.list(&loc.bucket, &loc.docs_prefix).await?;
    let mut report = SyncReport::default();
    for d in docs {
        let key = format!("{}{}", loc.docs_prefix, d.path);
        if existing.iter().any(|m| m.key == key) {
            if let Some(old) = store.get(&loc.bucket, &key).await? {
                if old == d.bytes {
                    report.unchanged += 1;
                    continue;
                }
            }
        }
        store
            .put(
                &loc.bucket,
                &key,
                Body::Bytes(d.bytes.clone()),
                content_type(&d.path),
            )
            .await?;
        report.uploaded.push(d.path.clone());
    }
    for m in existing.iter().filter(|m| is_document(&m.key)) {
        let path = &m.key[loc.docs_prefix.len()..];
        if !docs.iter().any(|d| d.path == path) {
            store.delete(&loc.bucket, &m.key).await?;
            report.deleted.push(path.to_owned());
        }
    }
    Ok(report)
}

/// A loaded index and the manifest it came from.
pub struct LoadedIndex {
    pub manifest: Manifest,
    pub index: SearchIndex,
    pub load_ms: u64,
}

/// Loads the current index once and keeps it; every `refresh` it re-reads the manifest and, when
/// it moved, the request that noticed loads the new index while concurrent requests keep using
/// the old one. Store errors after a successful load keep the old index.
pub struct IndexHolder {
    store: Arc<dyn ObjectStore>,
    loc: IndexLocation,
    refresh: Duration,
    checked: tokio::sync::Mutex<Option<Instant>>,
    current: RwLock<Option<Arc<LoadedIndex>>>,
}

impl IndexHolder {
    pub fn new(store: Arc<dyn ObjectStore>, loc: IndexLocation, refresh: Duration) -> Self {
        Self {
            store,
            loc,
            refresh,
            checked: tokio::sync::Mutex::new(None),
            current: RwLock::new(None),
        }
    }

    pub fn location(&self) -> &IndexLocation {
        &self.loc
    }

    fn loaded(&self) -> Option<Arc<LoadedIndex>> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set(&self, v: Option<Arc<LoadedIndex>>) {
        match self.current.write() {
            Ok(mut c) => *c = v,
            Err(p) => *p.into_inner() = v,
        }
    }

    /// The current index, `None` when none was published.
    pub async fn get(&self) -> Result<Option<Arc<LoadedIndex>>, RagError> {
        let current = self.loaded();
        let mut checked = match self.checked.try_lock() {
            Ok(g) => g,
            // Someone is revalidating: serve what we have rather than wait.
            Err(_) if current.is_some() => return Ok(current),
            Err(_) => self.checked.lock().await,
        };
        if checked.is_some_and(|at| at.elapsed() < self.refresh) {
            return Ok(self.loaded());
        }
        match self.revalidate(self.loaded()).await {
            Ok(v) => {
                *checked = Some(Instant::now());
                Ok(v)
            }
            Err(e) => match self.loaded() {
                Some(old) => {
                    tracing::warn!(error = %e, "index revalidation failed; serving the loaded index");
                    *checked = Some(Instant::now());
                    Ok(Some(old))
                }
                None => Err(e),
            },
        }
    }

    async fn revalidate(
        &self,
        current: Option<Arc<LoadedIndex>>,
    ) -> Result<Option<Arc<LoadedIndex>>, RagError> {
        let Some(m) = current_manifest(&*self.store, &self.loc).await? else {
            self.set(None);
            return Ok(None);
        };
        if let Some(c) = current.filter(|c| c.manifest.key == m.key) {
            return Ok(Some(c));
        }
        let started = Instant::now();
        let bytes = self
            .store
            .get(&self.loc.bucket, &m.key)
            .await?
            .ok_or_else(|| RagError::MissingObject {
                bucket: self.loc.bucket.clone(),
                key: m.key.clone(),
            })?;
        let index = tokio::task::spawn_blocking(move || {
            if index::content_id(&bytes) != m.sha256 {
                return Err(IndexError::ChecksumMismatch);
            }
            SearchIndex::open(&bytes).map(|i| (i, m))
        })
        .await
        .map_err(|e| RagError::Task(e.to_string()))?;
        let (index, manifest) = index?;
        let load_ms = started.elapsed().as_millis() as u64;
        tracing::info!(key = %manifest.key, load_ms, passages = manifest.passages, "index loaded");
        let loaded = Arc::new(LoadedIndex {
            manifest,
            index,
            load_ms,
        });
        self.set(Some(loaded.clone()));
        Ok(Some(loaded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflow_core::storage::MemoryStore;

    fn loc() -> IndexLocation {
        IndexLocation {
            bucket: "idx".into(),
            docs_prefix: "docs/".into(),
            index_prefix: "index/".into(),
        }
    }

    fn put_doc(store: &MemoryStore, path: &str, text: &str) {
        store.insert("idx", &format!("docs/{path}"), text.as_bytes().to_vec());
    }

    #[tokio::test]
    async fn rebuild_publishes_then_is_up_to_date_then_follows_changes() {
        let store = MemoryStore::default();
        let l = loc();
        put_doc(&store, "a.md", "# Alpha\n\nLambda cold starts.\n");
        put_doc(&store, "sub/b.md", "# Beta\n\nParquet partitions.\n");
        store.insert("idx", "docs/image.png", vec![0xff, 0xd8]);
        store.insert("idx", "docs/bad.md", vec![0xff, 0xfe, 0x00]);
        let opts = ChunkOptions::default();
        let RebuildOutcome::Published {
            manifest, skipped, ..
        } = rebuild(&store, &l, opts, false).await.unwrap()
        else {
            panic!("expected a publish")
        };
        assert_eq!((manifest.documents, manifest.passages), (2, 2));
        assert_eq!(
            skipped,
            vec![Skipped {
                path: "bad.md".into(),
                reason: "not UTF-8 text".into()
            }]
        );
        assert!(manifest.key.starts_with("index/objects/") && manifest.key.ends_with(".dfidx"));
        assert!(matches!(
            rebuild(&store, &l, opts, false).await.unwrap(),
            RebuildOutcome::UpToDate { .. }
        ));

        let holder = IndexHolder::new(Arc::new(store), l.clone(), Duration::ZERO);
        let got = holder.get().await.unwrap().unwrap();
        assert_eq!(got.index.search("parquet", 5).unwrap()[0].doc, "sub/b.md");
    }

    #[tokio::test]
    async fn holder_reports_none_then_picks_up_a_publish_after_the_refresh_delay() {
        let store = Arc::new(MemoryStore::default());
        let l = loc();
        let holder = IndexHolder::new(store.clone(), l.clone(), Duration::from_millis(200));
        assert!(holder.get().await.unwrap().is_none());
        put_doc(&store, "a.md", "# Alpha\n\nfirst version about kinesis\n");
        rebuild(&*store, &l, ChunkOptions::default(), false)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v1 = holder.get().await.unwrap().unwrap();
        assert_eq!(v1.index.search("kinesis", 1).unwrap().len(), 1);
        put_doc(&store, "a.md", "# Alpha\n\nsecond version about dynamodb\n");
        rebuild(&*store, &l, ChunkOptions::default(), false)
            .await
            .unwrap();
        // Within the delay the loaded index is kept...
        let same = holder.get().await.unwrap().unwrap();
        assert_eq!(same.manifest.key, v1.manifest.key);
        // ...after it, the new one is served.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v2 = holder.get().await.unwrap().unwrap();
        assert_ne!(v2.manifest.key, v1.manifest.key);
        assert!(v2.index.search("kinesis", 1).unwrap().is_empty());
        assert_eq!(v2.manifest.previous, vec![v1.manifest.key.clone()]);
    }

    /// Two publishers at once (the CLI and the index builder): neither deletes the object the
    /// other is about to name in the manifest.
    #[test]
    fn pruning_spares_what_a_manifest_names_and_what_is_recent() {
        let m = |key: &str, previous: &[&str]| Manifest {
            format_version: 1,
            key: key.into(),
            sha256: String::new(),
            bytes: 0,
            built_at: String::new(),
            documents: 0,
            passages: 0,
            docs_fingerprint: String::new(),
            previous: previous.iter().map(|s| s.to_string()).collect(),
            skipped: Vec::new(),
        };
        let obj = |key: &str, t: Option<i64>| ObjectMeta {
            key: key.into(),
            size: 1,
            etag: None,
            last_modified_ms: t,
        };
        let now = 10_000_000_000;
        let mine = m("a", &["o1", "o2"]);
        let theirs = m("b", &["o1"]);
        let hour_ago = Some(now - 3_600_000);
        // Another publisher's object, written a moment ago, its manifest not yet out.
        assert!(!prunable(
            &obj("c", Some(now - 2_000)),
            &[Some(&mine), None],
            now
        ));
        // Named by the manifest as it stands now.
        assert!(!prunable(
            &obj("b", hour_ago),
            &[Some(&mine), Some(&theirs)],
            now
        ));
        assert!(!prunable(
            &obj("o2", hour_ago),
            &[Some(&mine), Some(&theirs)],
            now
        ));
        assert!(prunable(
            &obj("old", hour_ago),
            &[Some(&mine), Some(&theirs)],
            now
        ));
        assert!(prunable(&obj("old", None), &[Some(&mine)], now));
    }

    #[tokio::test]
    async fn old_objects_are_pruned_beyond_the_kept_ones() {
        let store = MemoryStore::default();
        let l = loc();
        let mut keys = Vec::new();
        for i in 0..5 {
            put_doc(&store, "a.md", &format!("# A\n\nversion {i}\n"));
            match rebuild(&store, &l, ChunkOptions::default(), false)
                .await
                .unwrap()
            {
                RebuildOutcome::Published { manifest, .. } => keys.push(manifest.key),
                other => panic!("{other:?}"),
            }
        }
        let mut left: Vec<String> = store
            .keys("idx")
            .into_iter()
            .filter(|k| k.starts_with("index/objects/"))
            .collect();
        left.sort();
        let mut want = keys[2..].to_vec();
        want.sort();
        assert_eq!(left, want);
    }

    #[tokio::test]
    async fn a_reader_during_publishes_sees_old_or_new_never_neither() {
        let store = Arc::new(MemoryStore::default());
        let l = loc();
        put_doc(&store, "a.md", "# A\n\nversion zero\n");
        rebuild(&*store, &l, ChunkOptions::default(), false)
            .await
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, l, stop) = (store.clone(), l.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A fresh holder each time: a cold start racing the publish.
                    let h = IndexHolder::new(store.clone(), l.clone(), Duration::ZERO);
                    let got = h.get().await.expect("load failed during a publish");
                    assert!(got.is_some(), "no index during a publish");
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        };
        for i in 1..20 {
            put_doc(&store, "a.md", &format!("# A\n\nversion {i}\n"));
            rebuild(&*store, &l, ChunkOptions::default(), false)
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.await.unwrap() > 0);
    }

    #[tokio::test]
    async fn sync_uploads_changes_and_deletes_removed_files() {
        let store = MemoryStore::default();
        let l = loc();
        put_doc(&store, "keep.md", "same");
        put_doc(&store, "edit.md", "old");
        put_doc(&store, "gone.md", "bye");
        store.insert("idx", "docs/diagram.png", b"not a document".to_vec());
        let file = |path: &str, text: &str| LocalFile {
            path: path.into(),
            bytes: text.as_bytes().to_vec(),
        };
        let docs = vec![
            file("keep.md", "same"),
            file("edit.md", "new"),
            file("new/x.md", "x"),
        ];
        let r = sync_docs(&store, &l, &docs).await.unwrap();
        assert_eq!(r.uploaded, vec!["edit.md", "new/x.md"]);
        assert_eq!(r.deleted, vec!["gone.md"]);
        assert_eq!(r.unchanged, 1);
        assert!(store.keys("idx").contains(&"docs/diagram.png".to_string()));
    }

    #[test]
    fn local_docs_are_read_recursively_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ops")).unwrap();
        std::fs::write(dir.path().join("README.md"), "# R\n\nx\n").unwrap();
        std::fs::write(dir.path().join("ops/run.md"), "# Run\n\ny\n").unwrap();
        std::fs::write(dir.path().join("ops/data.json"), "{}").unwrap();
        std::fs::write(dir.path().join("ops/bin.md"), [0xffu8, 0xfe]).unwrap();
        std::fs::write(dir.path().join("ops/notes.txt"), "plain notes").unwrap();
        std::fs::write(dir.path().join("ops/page.html"), "<h1>Page</h1><p>text</p>").unwrap();
        std::fs::write(dir.path().join("ops/broken.pdf"), "%PDF-1.5 cut").unwrap();
        let (docs, skipped) = read_local_docs(dir.path()).unwrap();
        let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["README.md", "ops/notes.txt", "ops/page.html", "ops/run.md"]
        );
        let skipped: Vec<(&str, &str)> = skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0], ("ops/bin.md", "not UTF-8 text"));
        assert_eq!(skipped[1].0, "ops/broken.pdf");
        assert!(
            skipped[1].1.starts_with("not a readable PDF"),
            "{skipped:?}"
        );
    }
}
