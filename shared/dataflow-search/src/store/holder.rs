//! The current index, loaded and revalidated for the search API.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

// The refresh is timed on tokio's clock, which tests pause and advance.
use tokio::time::Instant as RefreshInstant;

use dataflow_store::ObjectStore;

use super::*;
use crate::index::{self, IndexError, SearchIndex};

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
    checked: tokio::sync::Mutex<Option<RefreshInstant>>,
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
    pub async fn get(&self) -> Result<Option<Arc<LoadedIndex>>, IndexStoreError> {
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
                *checked = Some(RefreshInstant::now());
                Ok(v)
            }
            Err(e) => match self.loaded() {
                Some(old) => {
                    tracing::warn!(error = %e, "index revalidation failed; serving the loaded index");
                    *checked = Some(RefreshInstant::now());
                    Ok(Some(old))
                }
                None => Err(e),
            },
        }
    }

    async fn revalidate(
        &self,
        current: Option<Arc<LoadedIndex>>,
    ) -> Result<Option<Arc<LoadedIndex>>, IndexStoreError> {
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
            .ok_or_else(|| IndexStoreError::MissingObject {
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
        .map_err(|e| IndexStoreError::Task(e.to_string()))?;
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
