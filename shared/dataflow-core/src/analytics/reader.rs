//! Loading the view: the daily files' listing and the rollup catalog, each month from its rollup,
//! a patched rollup or its daily files, again after the refresh delay.
//!
//! A refresh does not list the lake: it reads the change log ([`crate::lake::changes`]) from where it
//! stopped and lists again only the months the log names, so its requests do not grow with the
//! lake's age: a HEAD of the rollup catalog, one LIST of the log, one LIST per changed month.
//! The whole lake is listed at the first load and every [`FULL_LISTING_EVERY`] after it, so a
//! change the log missed (a writer outside the product) shows up within that period.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

// Refreshes are timed on tokio's clock, which tests pause and advance.
use tokio::time::Instant;

use tokio::sync::Mutex;

use super::view::{built_entry, DetailCache, Loader, MonthEntry, Source};
use super::{LakeError, View, DETAIL_CACHE_BYTES};
use crate::event::parse_date;
use crate::lake::layout::Layout;
use crate::rollup::{month_label, Catalog, FileCache, Patch};
use dataflow_store::{ObjectMeta, ObjectStore};

/// How often a reader lists the whole lake whatever the change log says.
pub const FULL_LISTING_EVERY: Duration = Duration::from_secs(600);

/// The daily files by month, as last listed.
type Listing = BTreeMap<i32, Vec<ObjectMeta>>;

/// Where a reader is in the change log.
#[derive(Clone, Default)]
struct LogCursor {
    /// The newest marker's time (or the time of the last full listing).
    high_ms: i64,
    /// Markers already acted on within the overlap window.
    seen: BTreeSet<String>,
}

/// What one refresh asked the store, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshRequests {
    pub full_listing: bool,
    pub log_lists: usize,
    pub month_lists: usize,
}

struct Loaded {
    view: Arc<View>,
    listing: Listing,
    cursor: LogCursor,
    listed_at: Instant,
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
    inner: Arc<Reader>,
}

/// How long the request that starts a refresh waits for it before it too is answered from the
/// view there is (the refresh goes on in the background).
const REFRESH_WAIT: Duration = Duration::from_secs(1);

struct Reader {
    loader: Arc<Loader>,
    refresh: Duration,
    full_every: Duration,
    state: Arc<Mutex<Option<Loaded>>>,
    /// The view readers are answered from, and when it was checked: read without waiting for a
    /// refresh in progress.
    current: std::sync::RwLock<Option<Current>>,
    last_requests: std::sync::Mutex<RefreshRequests>,
}

type Current = (Arc<View>, u64, Instant);

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
            inner: Arc::new(Reader {
                loader: Arc::new(Loader {
                    store,
                    bucket,
                    layout,
                    cache: DetailCache::new(budget),
                }),
                refresh,
                full_every: FULL_LISTING_EVERY,
                state: Arc::new(Mutex::new(None)),
                current: std::sync::RwLock::new(None),
                last_requests: std::sync::Mutex::new(RefreshRequests::default()),
            }),
        }
    }

    /// Lists the whole lake this often instead of [`FULL_LISTING_EVERY`] (zero: every refresh).
    /// A setting made at construction, before the reader is shared.
    pub fn with_full_listing_every(mut self, every: Duration) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(r) => r.full_every = every,
            None => tracing::warn!("with_full_listing_every on a shared reader: ignored"),
        }
        self
    }

    /// What the last refresh asked the store.
    pub fn last_requests(&self) -> RefreshRequests {
        self.inner
            .last_requests
            .lock()
            .map(|r| *r)
            .unwrap_or_default()
    }

    /// Whether a refresh holds the state (tests).
    #[cfg(test)]
    pub(crate) fn refreshing(&self) -> bool {
        self.inner.state.try_lock().is_err()
    }

    /// The current view and its generation (changes whenever the data does).
    ///
    /// Readers of a fresh view pass straight through. When it is stale, one request starts a
    /// refresh and waits for it up to [`REFRESH_WAIT`]; the refresh then goes on in the
    /// background, and every other request meanwhile is answered from the view there is (a
    /// refresh during a burst of new data may take seconds; nobody waits that long). Only the
    /// first load is waited for whole.
    pub async fn snapshot(&self) -> Result<(Arc<View>, u64), LakeError> {
        let r = &self.inner;
        let held = r.current();
        let Some((view, generation, checked)) = held else {
            let mut state = r.state.lock().await;
            if let Some((v, g, _)) = r.current() {
                return Ok((v, g));
            }
            return r.refresh_now(&mut state).await;
        };
        if checked.elapsed() < r.refresh {
            return Ok((view, generation));
        }
        let Ok(mut state) = r.state.clone().try_lock_owned() else {
            return Ok((view, generation));
        };
        let reader = r.clone();
        let mut task = tokio::spawn(async move {
            let fresh = state
                .as_ref()
                .is_some_and(|l| l.checked.elapsed() < reader.refresh);
            if fresh {
                return Ok(reader.current().map(|(v, g, _)| (v, g)));
            }
            let done = reader.refresh_now(&mut state).await;
            if let Err(e) = &done {
                // Nobody may be waiting any more: the next stale request tries again.
                tracing::warn!(error = %e, "refreshing the read model failed");
            }
            done.map(Some)
        });
        match tokio::time::timeout(REFRESH_WAIT, &mut task).await {
            Ok(Ok(Ok(Some(done)))) => Ok(done),
            Ok(Ok(Ok(None))) => Ok((view, generation)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(join)) => Err(LakeError::Internal(format!("refresh task: {join}"))),
            Err(_) => {
                tracing::info!("refresh still running; answered from the current view");
                Ok((view, generation))
            }
        }
    }
}

impl Reader {
    fn current(&self) -> Option<Current> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Lists what changed, rebuilds the months that did and publishes the new view.
    async fn refresh_now(&self, state: &mut Option<Loaded>) -> Result<(Arc<View>, u64), LakeError> {
        let ld = &self.loader;
        let (store, bucket, layout) = (&ld.store, ld.bucket.as_str(), &ld.layout);
        let catalog_key = crate::rollup::catalog_key(layout);
        let (listed, catalog_meta) = tokio::join!(
            self.listing(state.as_ref()),
            store.head(bucket, &catalog_key)
        );
        let ((listing, cursor, listed_at, requests), catalog_meta) = (listed?, catalog_meta?);
        if let Ok(mut r) = self.last_requests.lock() {
            *r = requests;
        }
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
        for (&month, metas) in &listing {
            let previous = old.as_ref().and_then(|o| o.view.months.get(&month));
            let rollup = catalog.as_ref().and_then(|(_, c)| {
                let cm = c.months.get(&month_label(month))?;
                Some((cm, cm.changed_dates(metas, layout)?))
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
                        Some(p) => {
                            keep_files(&changed_metas, old_files, &mut files);
                            Some(p.clone())
                        }
                        None => {
                            let (entry, used) = self
                                .rollup_entry(
                                    cm,
                                    metas,
                                    (dates, changed_metas),
                                    signature,
                                    old_files,
                                )
                                .await?;
                            for (m, f) in used {
                                files.insert(m.key, (m.etag, f));
                            }
                            entry
                        }
                    }
                }
                None => None,
            };
            let entry = match from_rollup {
                Some(e) => e,
                None => {
                    let signature = files_signature(metas);
                    match previous.filter(|p| p.signature == signature) {
                        Some(p) => {
                            keep_files(metas, old_files, &mut files);
                            p.clone()
                        }
                        None => {
                            let (b, used) = crate::rollup::build_month(
                                store, bucket, layout, month, metas, old_files,
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
        let checked = Instant::now();
        *state = Some(Loaded {
            view: view.clone(),
            listing,
            cursor,
            listed_at,
            files,
            catalog,
            checked,
            generation,
        });
        if let Ok(mut c) = self.current.write() {
            *c = Some((view.clone(), generation, checked));
        }
        Ok((view, generation))
    }
}

impl Reader {
    /// The daily files by month: from the last listing and the change log since, or listed
    /// whole at the first load and every `full_every`.
    async fn listing(
        &self,
        old: Option<&Loaded>,
    ) -> Result<(Listing, LogCursor, Instant, RefreshRequests), LakeError> {
        let ld = &self.loader;
        let (store, bucket, layout) = (&ld.store, ld.bucket.as_str(), &ld.layout);
        let mut requests = RefreshRequests::default();
        let Some(old) = old.filter(|o| o.listed_at.elapsed() < self.full_every) else {
            return self.full_listing(requests).await;
        };
        let after = crate::lake::changes::start_after(layout, old.cursor.high_ms);
        let markers = store
            .list_after(bucket, &crate::lake::changes::prefix(layout), &after)
            .await?;
        requests.log_lists = 1;
        let mut cursor = old.cursor.clone();
        let mut months: BTreeSet<String> = BTreeSet::new();
        for m in markers {
            let Some(marker) = crate::lake::changes::parse(layout, &m.key) else {
                continue;
            };
            if !cursor.seen.insert(marker.key) {
                continue;
            }
            cursor.high_ms = cursor.high_ms.max(marker.at_ms);
            match marker.changed {
                crate::lake::changes::Changed::All => return self.full_listing(requests).await,
                crate::lake::changes::Changed::Months(ms) => months.extend(ms),
            }
        }
        let keep_from = cursor.high_ms - crate::lake::changes::OVERLAP_MS;
        cursor.seen.retain(|k| {
            crate::lake::changes::parse(layout, k).is_some_and(|m| m.at_ms >= keep_from)
        });
        let mut listing = old.listing.clone();
        for label in &months {
            let Some(month) = parse_date(&format!("{label}-01")).map(crate::rollup::month_of)
            else {
                continue;
            };
            let prefix = format!("{}{label}-", layout.partitions_prefix());
            let listed = store.list(bucket, &prefix).await?;
            requests.month_lists += 1;
            match crate::rollup::by_month(layout, listed).remove(&month) {
                Some(metas) => listing.insert(month, metas),
                None => listing.remove(&month),
            };
        }
        Ok((listing, cursor, old.listed_at, requests))
    }

    async fn full_listing(
        &self,
        mut requests: RefreshRequests,
    ) -> Result<(Listing, LogCursor, Instant, RefreshRequests), LakeError> {
        let ld = &self.loader;
        // The log from just before this listing on is what the next refresh reads.
        let cursor = LogCursor {
            high_ms: crate::time::now_ms(),
            seen: BTreeSet::new(),
        };
        let listed = ld
            .store
            .list(&ld.bucket, &ld.layout.partitions_prefix())
            .await?;
        requests.full_listing = true;
        Ok((
            crate::rollup::by_month(&ld.layout, listed),
            cursor,
            Instant::now(),
            requests,
        ))
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

impl Reader {
    /// A month served from its rollup, with the dates whose files changed since built fresh;
    /// `None` when the rollup cannot be read (the caller builds the month from its files).
    /// The changed dates' decoded files are returned to be kept until the next refresh: while
    /// data keeps arriving a month is patched at every refresh, and decoding the same partials
    /// again each time cost more than the newest file. The rollup that follows drops them.
    async fn rollup_entry(
        &self,
        cm: &crate::rollup::CatalogMonth,
        metas: &[ObjectMeta],
        (dates, changed_metas): (BTreeSet<i32>, Vec<ObjectMeta>),
        signature: String,
        known: &FileCache,
    ) -> Result<
        (
            Option<MonthEntry>,
            Vec<(ObjectMeta, Arc<crate::lake::AggregateFile>)>,
        ),
        LakeError,
    > {
        let head = match cm.head() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, prefix = cm.prefix, "rollup head unreadable; reading the month's daily files");
                return Ok((None, Vec::new()));
            }
        };
        let source = |patch| Source::Rollup {
            prefix: cm.prefix.clone(),
            listed: Arc::new(metas.to_vec()),
            patch,
            edges: cm.edges,
        };
        if dates.is_empty() {
            let entry = MonthEntry {
                head: Arc::new(head),
                source: source(None),
                signature,
            };
            return Ok((Some(entry), Vec::new()));
        }
        let ld = &self.loader;
        let key = crate::rollup::days_key(&cm.prefix);
        let rollup_days = match ld.store.get(&ld.bucket, &key).await? {
            Some(bytes) => match crate::rollup::decode_days(&bytes) {
                Ok(d) if d.day_users.len() == head.dates.len() => d,
                _ => return Ok((None, Vec::new())),
            },
            None => return Ok((None, Vec::new())),
        };
        let (fresh, used) = crate::rollup::build_month(
            &ld.store,
            &ld.bucket,
            &ld.layout,
            head.month,
            &changed_metas,
            known,
        )
        .await?;
        let (head, patch) = Patch::new(&head, &rollup_days, fresh, dates);
        let entry = MonthEntry {
            head: Arc::new(head),
            source: source(Some(Arc::new(patch))),
            signature,
        };
        Ok((Some(entry), used))
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
