//! Loading the view: the daily files' listing and the rollup catalog, each month from its rollup,
//! a patched rollup or its daily files, again after the refresh delay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::view::{built_entry, DetailCache, Loader, MonthEntry, Source};
use super::{LakeError, View, DETAIL_CACHE_BYTES};
use crate::event::parse_date;
use crate::layout::Layout;
use crate::rollup::{month_label, Catalog, FileCache, Patch};
use dataflow_store::{ObjectMeta, ObjectStore};

struct Loaded {
    view: Arc<View>,
    /// Decoded daily files of the months built from them.
    files: FileCache,
    catalog: Option<(Option<String>, Arc<Catalog>)>,
    checked: Instant,
    generation: u64,
}

/// Reads the lake through an [`ObjectStore`], keeping the view across warm invocations. After
/// `refresh` it lists the daily files and checks the rollup catalog again, and reloads only the
/// months that changed, so new data shows up within `refresh`.
pub struct LakeReader {
    loader: Arc<Loader>,
    refresh: Duration,
    state: Mutex<Option<Loaded>>,
}

impl LakeReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        bucket: String,
        layout: Layout,
        refresh: Duration,
    ) -> Self {
        Self::with_cache_budget(store, bucket, layout, refresh, DETAIL_CACHE_BYTES)
    }

    pub fn with_cache_budget(
        store: Arc<dyn ObjectStore>,
        bucket: String,
        layout: Layout,
        refresh: Duration,
        budget: usize,
    ) -> Self {
        Self {
            loader: Arc::new(Loader {
                store,
                bucket,
                layout,
                cache: DetailCache::new(budget),
            }),
            refresh,
            state: Mutex::new(None),
        }
    }

    /// The current view and its generation (changes whenever the data does).
    pub async fn snapshot(&self) -> Result<(Arc<View>, u64), LakeError> {
        // One refresher at a time; readers of a fresh view pass straight through.
        let mut state = self.state.lock().await;
        if let Some(l) = state.as_ref() {
            if l.checked.elapsed() < self.refresh {
                return Ok((l.view.clone(), l.generation));
            }
        }
        let ld = &self.loader;
        let (store, bucket, layout) = (&ld.store, ld.bucket.as_str(), &ld.layout);
        let catalog_key = crate::rollup::catalog_key(layout);
        let partitions = layout.partitions_prefix();
        let (listed, catalog_meta) = tokio::join!(
            store.list(bucket, &partitions),
            store.head(bucket, &catalog_key)
        );
        let (listed, catalog_meta) = (listed?, catalog_meta?);
        let old = state.take();
        let catalog: Option<(Option<String>, Arc<Catalog>)> = match catalog_meta {
            None => None,
            Some(meta) => match old.as_ref().and_then(|o| o.catalog.clone()) {
                Some((etag, c)) if etag.is_some() && etag == meta.etag => Some((etag, c)),
                _ => crate::rollup::read_catalog(store.as_ref(), bucket, layout)
                    .await?
                    .map(|c| (meta.etag, Arc::new(c))),
            },
        };
        let empty = FileCache::new();
        let old_files = old.as_ref().map_or(&empty, |o| &o.files);
        let mut files = FileCache::new();
        let mut months = BTreeMap::new();
        let mut changed = old.is_none();
        for (month, metas) in crate::rollup::by_month(layout, listed) {
            let previous = old.as_ref().and_then(|o| o.view.months.get(&month));
            let rollup = catalog.as_ref().and_then(|(_, c)| {
                let cm = c.months.get(&month_label(month))?;
                Some((cm, cm.changed_dates(&metas, layout)?))
            });
            let from_rollup = match rollup {
                Some((cm, dates)) => {
                    let changed_metas: Vec<ObjectMeta> = metas
                        .iter()
                        .filter(|m| {
                            layout
                                .date_of_aggregate_key(&m.key)
                                .and_then(parse_date)
                                .is_some_and(|d| dates.contains(&d))
                        })
                        .cloned()
                        .collect();
                    let signature = if dates.is_empty() {
                        cm.prefix.clone()
                    } else {
                        format!("{}+{}", cm.prefix, files_signature(&changed_metas))
                    };
                    match previous.filter(|p| p.signature == signature) {
                        Some(p) => Some(p.clone()),
                        None => {
                            self.rollup_entry(cm, &metas, (dates, changed_metas), signature)
                                .await?
                        }
                    }
                }
                None => None,
            };
            let entry = match from_rollup {
                Some(e) => e,
                None => {
                    let signature = files_signature(&metas);
                    match previous.filter(|p| p.signature == signature) {
                        Some(p) => {
                            keep_files(&metas, old_files, &mut files);
                            p.clone()
                        }
                        None => {
                            let (b, used) = crate::rollup::build_month(
                                store, bucket, layout, month, &metas, old_files,
                            )
                            .await?;
                            for (m, f) in used {
                                files.insert(m.key, (m.etag, f));
                            }
                            built_entry(Arc::new(b), signature)
                        }
                    }
                }
            };
            changed |= previous.is_none_or(|p| p.signature != entry.signature);
            months.insert(month, entry);
        }
        if let Some(o) = &old {
            changed |= o.view.months.keys().any(|m| !months.contains_key(m));
        }
        let generation = match &old {
            Some(o) if !changed => o.generation,
            Some(o) => o.generation + 1,
            None => 1,
        };
        let view = match old {
            Some(o) if !changed => o.view,
            _ => {
                let years = catalog
                    .as_ref()
                    .map(|(_, c)| {
                        c.years
                            .iter()
                            .filter_map(|(y, e)| Some((y.parse().ok()?, Arc::new(e.clone()))))
                            .collect()
                    })
                    .unwrap_or_default();
                Arc::new(View::new(months, years, Some(self.loader.clone())))
            }
        };
        *state = Some(Loaded {
            view: view.clone(),
            files,
            catalog,
            checked: Instant::now(),
            generation,
        });
        Ok((view, generation))
    }
}

/// Carries decoded daily files over to the next look.
fn keep_files(metas: &[ObjectMeta], old: &FileCache, into: &mut FileCache) {
    for m in metas {
        if let Some(f) = old.get(&m.key) {
            into.insert(m.key.clone(), f.clone());
        }
    }
}

impl LakeReader {
    /// A month served from its rollup, with the dates whose files changed since built fresh;
    /// `None` when the rollup cannot be read (the caller builds the month from its files).
    /// The changed dates' decoded files are not kept: fetching a few files again on the next
    /// change costs less than holding every row's sketch decoded.
    async fn rollup_entry(
        &self,
        cm: &crate::rollup::CatalogMonth,
        metas: &[ObjectMeta],
        (dates, changed_metas): (BTreeSet<i32>, Vec<ObjectMeta>),
        signature: String,
    ) -> Result<Option<MonthEntry>, LakeError> {
        let head = match cm.head() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, prefix = cm.prefix, "rollup head unreadable; reading the month's daily files");
                return Ok(None);
            }
        };
        let source = |patch| Source::Rollup {
            prefix: cm.prefix.clone(),
            listed: Arc::new(metas.to_vec()),
            patch,
            edges: cm.edges,
        };
        if dates.is_empty() {
            return Ok(Some(MonthEntry {
                head: Arc::new(head),
                source: source(None),
                signature,
            }));
        }
        let ld = &self.loader;
        let key = crate::rollup::days_key(&cm.prefix);
        let rollup_days = match ld.store.get(&ld.bucket, &key).await? {
            Some(bytes) => match crate::rollup::decode_days(&bytes) {
                Ok(d) if d.day_users.len() == head.dates.len() => d,
                _ => return Ok(None),
            },
            None => return Ok(None),
        };
        let (fresh, _) = crate::rollup::build_month(
            &ld.store,
            &ld.bucket,
            &ld.layout,
            head.month,
            &changed_metas,
            &FileCache::new(),
        )
        .await?;
        let (head, patch) = Patch::new(&head, &rollup_days, fresh, dates);
        Ok(Some(MonthEntry {
            head: Arc::new(head),
            source: source(Some(Arc::new(patch))),
            signature,
        }))
    }
}

/// The identity of a month's daily files: keys and ETags.
fn files_signature(metas: &[ObjectMeta]) -> String {
    use sha2::Digest;
    let mut keys: Vec<(&str, Option<&str>)> = metas
        .iter()
        .map(|m| (m.key.as_str(), m.etag.as_deref()))
        .collect();
    keys.sort_unstable();
    let mut h = sha2::Sha256::new();
    for (k, e) in keys {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(e.unwrap_or("-").as_bytes());
        h.update([0]);
    }
    format!("files:{}", hex::encode(h.finalize()))
}
