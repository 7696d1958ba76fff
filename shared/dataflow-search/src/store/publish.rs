//! Publishing: the object first, the manifest last, old objects pruned; rebuilding when the
//! corpus changed.

use std::sync::Arc;
use std::time::Instant;

use dataflow_embed::Embed;

use dataflow_store::{Body, ObjectMeta, ObjectStore};
use serde::Serialize;

use super::corpus::listing_signature;
use super::*;
use crate::chunk::ChunkOptions;
use crate::index::{self, BuildStats, Vectors};

/// The current manifest, or `None` when no index was ever published.
pub async fn current_manifest(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
) -> Result<Option<Manifest>, IndexStoreError> {
    let key = loc.manifest_key();
    let Some(bytes) = store.get(&loc.bucket, &key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| IndexStoreError::BadManifest {
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
) -> Result<Manifest, IndexStoreError> {
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
        model: header.vectors.map(|v| v.model),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| IndexStoreError::BadManifest {
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
pub(super) fn prunable(o: &ObjectMeta, manifests: &[Option<&Manifest>], now_ms: i64) -> bool {
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
        /// Passages embedded by this build, and vectors reused from the previous index.
        stats: BuildStats,
    },
}

/// The vectors of the current index, for a rebuild to reuse; none (and a warning) when they
/// cannot be read: the rebuild then embeds every passage.
async fn previous_vectors(store: &dyn ObjectStore, loc: &IndexLocation) -> Option<Vectors> {
    let m = current_manifest(store, loc).await.ok().flatten()?;
    m.model.as_ref()?;
    match store.get(&loc.bucket, &m.key).await {
        Ok(Some(bytes)) => match index::read_vectors(&bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key = %m.key, error = %e, "previous index unreadable; embedding every passage");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(key = %m.key, error = %e, "previous index unreadable; embedding every passage");
            None
        }
    }
}

/// Rebuilds the index from the docs prefix and publishes it, unless the current index was built
/// from the same docs with the same model (`force` rebuilds anyway). With a model, passages whose
/// text the current index already embedded keep their vectors. When the docs change while it
/// builds, it starts over (up to three times), so what it publishes matches the docs at publish
/// time.
pub async fn rebuild(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
    opts: ChunkOptions,
    force: bool,
    embed: Option<Arc<dyn Embed>>,
) -> Result<RebuildOutcome, IndexStoreError> {
    let model = embed.as_ref().map(|e| e.identity().clone());
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
                    && m.model == model
                {
                    tracing::info!(documents = docs.len(), "index is up to date");
                    return Ok(RebuildOutcome::UpToDate { manifest: m });
                }
            }
        }
        let previous = match &embed {
            Some(_) => previous_vectors(store, loc).await,
            None => None,
        };
        let started = Instant::now();
        let model = embed.clone();
        let (bytes, stats) = tokio::task::spawn_blocking(move || {
            index::build_with(
                &docs,
                opts,
                chrono::Utc::now(),
                model.as_deref(),
                previous.as_ref(),
            )
        })
        .await
        .map_err(|e| IndexStoreError::Task(e.to_string()))??;
        let build_ms = started.elapsed().as_millis() as u64;
        let now = listing_signature(&store.list(&loc.bucket, &loc.docs_prefix).await?);
        if now != signature && attempt < 3 {
            tracing::info!(attempt, "docs changed during the build; building again");
            continue;
        }
        let manifest = publish(store, loc, bytes, skipped.clone()).await?;
        tracing::info!(
            passages = stats.passages,
            embedded = stats.embedded,
            reused = stats.reused,
            build_ms,
            "index built"
        );
        return Ok(RebuildOutcome::Published {
            manifest,
            skipped,
            build_ms,
            stats,
        });
    }
}
