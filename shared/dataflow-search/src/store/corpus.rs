//! The corpus: documents under the docs prefix or a local folder, converted for the index, and
//! a local folder synced to the prefix.

use std::path::Path;

use dataflow_store::{Body, ObjectMeta, ObjectStore};
use serde::{Deserialize, Serialize};

use super::*;
use crate::index::SourceDoc;

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
        Some(Format::Docx) => {
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        }
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
) -> Result<(Vec<SourceDoc>, Vec<Skipped>, String), IndexStoreError> {
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

pub(super) fn listing_signature(listing: &[ObjectMeta]) -> String {
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
pub fn read_local_docs(root: &Path) -> Result<(Vec<SourceDoc>, Vec<Skipped>), IndexStoreError> {
    Ok(convert(read_local_files(root)?))
}

/// Every document file under a local folder (recursively), as stored.
pub fn read_local_files(root: &Path) -> Result<Vec<LocalFile>, IndexStoreError> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<LocalFile>) -> Result<(), IndexStoreError> {
        let local = |e: std::io::Error| IndexStoreError::Local {
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
            let bytes = std::fs::read(&p).map_err(|e| IndexStoreError::Local {
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
) -> Result<SyncReport, IndexStoreError> {
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
