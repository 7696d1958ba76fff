//! The analytics read model. Daily aggregate files are merged into per (event_date, event_type)
//! cells month by month ([`crate::rollup`]); a request loads only the months its range touches,
//! from their rollups when those are current and from the daily files otherwise. Distinct users
//! over any range cost one union per whole month plus one per day at its two ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::event::{format_date, parse_date};
use crate::parquet::{aggregate_covers, decode_aggregate_rows, AggregateRow, ParquetError};
use crate::rollup::{
    month_label, month_of, Catalog, CatalogYear, FileCache, MonthBuild, MonthDays, MonthHead,
    Patch, TypeMonth,
};
use crate::sketch::{SketchMerger, UserSketch};
use crate::source::Layout;
use crate::storage::{ObjectMeta, ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("aggregate file {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: ParquetError,
    },
    #[error("rollup: {0}")]
    Rollup(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// One decoded aggregate file.
#[derive(Debug, Clone)]
pub struct AggregateFile {
    pub key: String,
    pub date: i32,
    /// File name without `.parquet`: what compacted files list in their coverage.
    pub name: String,
    pub rows: Vec<AggregateRow>,
    pub covers: Vec<String>,
    /// A compacted file's generation: the newest compaction of a date wins.
    pub generation: u64,
}

impl AggregateFile {
    pub fn decode(layout: &Layout, key: &str, bytes: &[u8]) -> Result<Option<Self>, LakeError> {
        let Some(date) = layout.date_of_aggregate_key(key).and_then(parse_date) else {
            return Ok(None);
        };
        let name = name_of(key).to_owned();
        let err = |source| LakeError::Decode {
            key: key.to_owned(),
            source,
        };
        let (covers, generation) = aggregate_covers(bytes).map_err(err)?;
        Ok(Some(Self {
            key: key.to_owned(),
            date,
            name,
            rows: decode_aggregate_rows(bytes).map_err(err)?,
            covers,
            generation,
        }))
    }
}

/// The files of one date that count: the newest compacted file (highest generation, then widest
/// coverage), and every file it does not cover. Compactions of a date are serialized by a lock
/// and each covers the files before it (earlier compacted files included), so nothing is counted
/// twice or missed.
pub fn effective_files<'a>(files: &[&'a AggregateFile]) -> Vec<&'a AggregateFile> {
    let best = files
        .iter()
        .filter(|f| !f.covers.is_empty())
        .max_by(|a, b| {
            (a.generation, a.covers.len(), &a.name).cmp(&(b.generation, b.covers.len(), &b.name))
        });
    let Some(best) = best else {
        return files.to_vec();
    };
    let covered: BTreeSet<&str> = best.covers.iter().map(String::as_str).collect();
    files
        .iter()
        .filter(|f| f.name == best.name || !covered.contains(f.name.as_str()))
        .copied()
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Inclusive day numbers.
    pub from: Option<i32>,
    pub to: Option<i32>,
    /// Empty: every type.
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetricRow {
    pub event_date: String,
    pub event_type: String,
    pub event_count: u64,
    pub unique_users: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub total_events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub unique_users_daily_sum: u64,
    pub unique_users: u64,
}

/// A sketch estimate as a count.
pub(crate) fn round(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

/// Where a month's details come from.
#[derive(Clone)]
enum Source {
    /// A current rollup version (its prefix) and the daily files it stands for, which are read
    /// instead should one of its objects be gone or unreadable.
    Rollup {
        prefix: String,
        listed: Arc<Vec<ObjectMeta>>,
        /// Dates whose files changed since the rollup, built fresh.
        patch: Option<Arc<Patch>>,
    },
    /// Built from the daily files: no rollup yet, or the files changed since it was written.
    Built(Arc<MonthBuild>),
}

#[derive(Clone)]
struct MonthEntry {
    head: Arc<MonthHead>,
    source: Source,
    /// Changes whenever the month's data does: the rollup prefix or the daily files' ETags.
    signature: String,
}

#[derive(Clone)]
enum Detail {
    Days(Arc<MonthDays>),
    Type(Arc<TypeMonth>),
    Users(Arc<UserSketch>),
    Year(Arc<Vec<(i32, Arc<UserSketch>)>>),
    Build(Arc<MonthBuild>),
}

type Lru = lru::LruCache<String, (usize, Detail)>;

/// Month details loaded on demand, least recently used first out once over a byte budget, so a
/// warm function's memory stays bounded whatever the history.
struct DetailCache {
    /// Entries with their byte sizes, and the sum of those.
    inner: std::sync::Mutex<(Lru, usize)>,
    budget: usize,
}

impl DetailCache {
    fn new(budget: usize) -> Self {
        Self {
            inner: std::sync::Mutex::new((lru::LruCache::unbounded(), 0)),
            budget,
        }
    }

    fn get(&self, key: &str) -> Option<Detail> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(key).map(|(_, d)| d.clone())
    }

    fn put(&self, key: String, bytes: usize, d: Detail) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, _)) = g.0.put(key, (bytes, d)) {
            g.1 -= old;
        }
        g.1 += bytes;
        while g.1 > self.budget && g.0.len() > 1 {
            match g.0.pop_lru() {
                Some((_, (b, _))) => g.1 -= b,
                None => break,
            }
        }
    }

    fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

struct Loader {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    layout: Layout,
    cache: DetailCache,
}

/// Default budget for month details held by a warm reader: a year of 50 types fits whole (~60 MB),
/// and five years of 500 types keep the API under 200 MB resident (docs/benchmarks.md).
pub const DETAIL_CACHE_BYTES: usize = 80 << 20;

/// The lake at one point in time: every month's head, and where to load its details from.
/// Every per-day structure is indexed by the days that hold data, never by the calendar span
/// between the first and the last: one event in year 9999 adds one day, not three million.
pub struct View {
    months: BTreeMap<i32, MonthEntry>,
    types: BTreeSet<String>,
    /// Per month: the position in `types` of each of its types, so totals over many months and
    /// types add into one array.
    type_ids: BTreeMap<i32, Vec<usize>>,
    /// Per-type year objects by year, from the catalog.
    years: BTreeMap<i32, Arc<CatalogYear>>,
    loader: Option<Arc<Loader>>,
}

impl View {
    /// A view of files in memory (tests, tools): every month built at once.
    pub fn from_files(files: &[&AggregateFile]) -> Self {
        let mut by_month: BTreeMap<i32, Vec<&AggregateFile>> = BTreeMap::new();
        for f in files {
            by_month.entry(month_of(f.date)).or_default().push(f);
        }
        let months = by_month
            .into_iter()
            .map(|(m, fs)| {
                let b = Arc::new(MonthBuild::from_files(m, &fs));
                (m, built_entry(b, String::new()))
            })
            .collect();
        Self::new(months, BTreeMap::new(), None)
    }

    fn new(
        months: BTreeMap<i32, MonthEntry>,
        years: BTreeMap<i32, Arc<CatalogYear>>,
        loader: Option<Arc<Loader>>,
    ) -> Self {
        let types: BTreeSet<String> = months
            .values()
            .flat_map(|e| e.head.types.iter().cloned())
            .collect();
        let sorted: Vec<&String> = types.iter().collect();
        let type_ids = months
            .iter()
            .map(|(m, e)| {
                let ids = e
                    .head
                    .types
                    .iter()
                    .map(|t| sorted.partition_point(|x| *x < t))
                    .collect();
                (*m, ids)
            })
            .collect();
        Self {
            months,
            types,
            type_ids,
            years,
            loader,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.months.is_empty()
    }

    pub fn event_types(&self) -> &BTreeSet<String> {
        &self.types
    }

    /// First and last day with data.
    pub fn bounds(&self) -> Option<(i32, i32)> {
        let first = self.months.values().next()?.head.dates.first()?;
        let last = self.months.values().next_back()?.head.dates.last()?;
        Some((*first, *last))
    }

    /// Approximate heap bytes held: the resident heads, months built from daily files, and the
    /// month details loaded so far.
    pub fn heap_bytes(&self) -> usize {
        let resident: usize = self
            .months
            .values()
            .map(|e| match &e.source {
                Source::Built(b) => b.heap_bytes(),
                Source::Rollup { patch, .. } => {
                    e.head.heap_bytes() + patch.as_ref().map_or(0, |p| p.heap_bytes())
                }
            })
            .sum();
        resident + self.loader.as_ref().map_or(0, |l| l.cache.bytes())
    }

    /// Months read from a rollup with some dates built fresh from their daily files.
    pub fn months_patched(&self) -> usize {
        self.months
            .values()
            .filter(|e| matches!(e.source, Source::Rollup { patch: Some(_), .. }))
            .count()
    }

    /// Months built from daily files rather than read from a rollup.
    pub fn months_from_daily_files(&self) -> usize {
        self.months
            .values()
            .filter(|e| matches!(e.source, Source::Built(_)))
            .count()
    }

    async fn build(&self, e: &MonthEntry) -> Result<Arc<MonthBuild>, LakeError> {
        let (prefix, listed) = match &e.source {
            Source::Built(b) => return Ok(b.clone()),
            Source::Rollup { prefix, listed, .. } => (prefix, listed),
        };
        let loader = self.loader()?;
        let key = format!("{prefix}#build");
        if let Some(Detail::Build(b)) = loader.cache.get(&key) {
            return Ok(b);
        }
        let (b, _) = crate::rollup::build_month(
            &loader.store,
            &loader.bucket,
            &loader.layout,
            e.head.month,
            listed,
            &HashMap::new(),
        )
        .await?;
        let b = Arc::new(b);
        loader
            .cache
            .put(key, b.heap_bytes(), Detail::Build(b.clone()));
        Ok(b)
    }

    fn loader(&self) -> Result<&Arc<Loader>, LakeError> {
        self.loader
            .as_ref()
            .ok_or_else(|| LakeError::Internal("no store to load a month from".into()))
    }

    /// A rollup object, or `None` when it is gone or unreadable (the caller then builds the
    /// month from its daily files).
    async fn rollup_object<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&[u8]) -> Result<T, LakeError>,
    ) -> Result<Option<T>, LakeError> {
        let loader = self.loader()?;
        let Some(bytes) = loader.store.get(&loader.bucket, key).await? else {
            tracing::warn!(
                key,
                "rollup object missing; reading the month's daily files"
            );
            return Ok(None);
        };
        match decode(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(key, error = %e, "rollup object unreadable; reading the month's daily files");
                Ok(None)
            }
        }
    }

    async fn days(&self, e: &MonthEntry) -> Result<Arc<MonthDays>, LakeError> {
        let prefix = match &e.source {
            Source::Built(b) => return Ok(b.days.clone()),
            Source::Rollup { patch: Some(p), .. } => return Ok(p.days.clone()),
            Source::Rollup { prefix, .. } => prefix,
        };
        let key = crate::rollup::days_key(prefix);
        let loader = self.loader()?;
        if let Some(Detail::Days(d)) = loader.cache.get(&key) {
            return Ok(d);
        }
        let days = match self.rollup_object(&key, crate::rollup::decode_days).await? {
            Some(d) if d.day_users.len() == e.head.dates.len() => Arc::new(d),
            _ => self.build(e).await?.days.clone(),
        };
        loader
            .cache
            .put(key, days.heap_bytes(), Detail::Days(days.clone()));
        Ok(days)
    }

    async fn type_month(&self, e: &MonthEntry, ti: usize) -> Result<Arc<TypeMonth>, LakeError> {
        let (prefix, patch) = match &e.source {
            Source::Built(_) => return self.built_type(e, ti).await,
            Source::Rollup { prefix, patch, .. } => (prefix, patch),
        };
        let key = match patch {
            None => crate::rollup::type_key(prefix, ti),
            Some(_) => format!("{}#t{ti}", e.signature),
        };
        let loader = self.loader()?;
        if let Some(Detail::Type(t)) = loader.cache.get(&key) {
            return Ok(t);
        }
        let t = match patch {
            None => match self.rollup_object(&key, crate::rollup::decode_type).await? {
                Some(t) => Arc::new(t),
                None => self.built_type(e, ti).await?,
            },
            Some(p) => {
                let t = e.head.types.get(ti).ok_or_else(|| {
                    LakeError::Rollup(format!("month {} has no type {ti}", e.head.month))
                })?;
                // The rollup's object of this type, if the rollup had it.
                let rollup = match p.rollup_types.binary_search(t) {
                    Ok(ri) => {
                        let rk = crate::rollup::type_key(prefix, ri);
                        match self.rollup_object(&rk, crate::rollup::decode_type).await? {
                            Some(r) => Some(r),
                            None => return self.built_type(e, ti).await,
                        }
                    }
                    Err(_) => None,
                };
                Arc::new(p.type_month(rollup.as_ref(), t)?)
            }
        };
        loader
            .cache
            .put(key, t.heap_bytes(), Detail::Type(t.clone()));
        Ok(t)
    }

    /// A type's sketch over a whole month.
    async fn type_users(&self, e: &MonthEntry, ti: usize) -> Result<Arc<UserSketch>, LakeError> {
        let key = match &e.source {
            Source::Rollup { .. } => format!("{}#users{ti}", e.signature),
            Source::Built(_) => return Ok(self.type_month(e, ti).await?.users.clone()),
        };
        let loader = self.loader()?;
        if let Some(Detail::Users(u)) = loader.cache.get(&key) {
            return Ok(u);
        }
        if let Some(u) = self.year_users(e, ti).await? {
            return Ok(u);
        }
        let u = self.type_month(e, ti).await?.users.clone();
        loader
            .cache
            .put(key, crate::rollup::SKETCH_BYTES, Detail::Users(u.clone()));
        Ok(u)
    }

    /// A type's month sketch from its year object, when the catalog has one built from the
    /// month version this view serves.
    async fn year_users(
        &self,
        e: &MonthEntry,
        ti: usize,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let Source::Rollup {
            prefix,
            patch: None,
            ..
        } = &e.source
        else {
            return Ok(None);
        };
        let Some(y) = self.years.get(&e.head.month.div_euclid(12)) else {
            return Ok(None);
        };
        let (Some(t), Some(from)) = (
            e.head.types.get(ti),
            y.months.get(&month_label(e.head.month)),
        ) else {
            return Ok(None);
        };
        let Ok(yi) = y.types.binary_search(t) else {
            return Ok(None);
        };
        if from != prefix {
            return Ok(None);
        }
        let key = crate::rollup::year_key(&y.prefix, yi);
        let loader = self.loader()?;
        let months = match loader.cache.get(&key) {
            Some(Detail::Year(m)) => m,
            _ => match self.rollup_object(&key, crate::rollup::decode_year).await? {
                Some(m) => {
                    let m = Arc::new(m);
                    let bytes = m.len() * crate::rollup::SKETCH_BYTES;
                    loader.cache.put(key, bytes, Detail::Year(m.clone()));
                    m
                }
                None => return Ok(None),
            },
        };
        Ok(months
            .iter()
            .find(|(m, _)| *m == e.head.month)
            .map(|(_, u)| u.clone()))
    }

    async fn built_type(&self, e: &MonthEntry, ti: usize) -> Result<Arc<TypeMonth>, LakeError> {
        self.build(e)
            .await?
            .types
            .get(ti)
            .cloned()
            .ok_or_else(|| LakeError::Rollup(format!("month {} has no type {ti}", e.head.month)))
    }

    /// Rows sorted by date then type, strictly after `after`, at most `limit`; plus the key to
    /// continue from when more rows remain.
    pub async fn metrics(
        &self,
        f: &Filter,
        limit: usize,
        after: Option<&(i32, String)>,
    ) -> Result<(Vec<MetricRow>, Option<(i32, String)>), LakeError> {
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        let first_month = match (f.from, after) {
            (_, Some((d, _))) => month_of(from.max(*d)),
            (Some(d), None) => month_of(d),
            (None, None) => i32::MIN,
        };
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut last: Option<(i32, String)> = None;
        for e in self.months.range(first_month..).map(|(_, e)| e) {
            let h = &e.head;
            if h.dates.first().is_some_and(|d| *d > to) {
                break;
            }
            let wanted: Vec<bool> = h
                .types
                .iter()
                .map(|t| f.types.is_empty() || f.types.contains(t))
                .collect();
            if !wanted.contains(&true) || h.dates.last().is_none_or(|d| *d < from) {
                continue;
            }
            let days = self.days(e).await?;
            for c in &days.cells {
                if c.date < from || c.date > to || !wanted[c.ty as usize] {
                    continue;
                }
                let t = &h.types[c.ty as usize];
                if let Some((ad, at)) = after {
                    if (c.date, t.as_str()) <= (*ad, at.as_str()) {
                        continue;
                    }
                }
                if rows.len() == limit {
                    return Ok((rows, last));
                }
                rows.push(MetricRow {
                    event_date: format_date(c.date),
                    event_type: t.clone(),
                    event_count: c.count,
                    unique_users: c.unique,
                });
                last = Some((c.date, t.clone()));
            }
        }
        Ok((rows, None))
    }

    pub async fn summary(&self, f: &Filter) -> Result<Summary, LakeError> {
        let (start, end) = match (f.from, f.to, self.bounds()) {
            (from, to, Some((lo, hi))) => (Some(from.unwrap_or(lo)), Some(to.unwrap_or(hi))),
            (from, to, None) => (from, to),
        };
        let mut summary = Summary {
            total_events: 0,
            events_by_type: BTreeMap::new(),
            start: start.map(format_date),
            end: end.map(format_date),
            unique_users_daily_sum: 0,
            unique_users: 0,
        };
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        if from > to {
            return Ok(summary);
        }
        let mut types: Vec<&str> = f.types.iter().map(String::as_str).collect();
        types.sort_unstable();
        types.dedup();
        let mut users = SketchMerger::default();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        let mut all_counts = vec![
            0u64;
            if types.is_empty() {
                self.types.len()
            } else {
                0
            }
        ];
        let (m_lo, m_hi) = (
            f.from.map_or(i32::MIN, month_of),
            f.to.map_or(i32::MAX, month_of),
        );
        for e in self.months.range(m_lo..=m_hi).map(|(_, e)| e) {
            let h = &e.head;
            let lo = h.dates.partition_point(|d| *d < from);
            let hi = h.dates.partition_point(|d| *d <= to);
            if lo >= hi {
                continue;
            }
            let whole = lo == 0 && hi == h.dates.len();
            if types.is_empty() {
                summary.unique_users_daily_sum += h.day_unique[lo..hi].iter().sum::<u64>();
                let ids = self.type_ids.get(&h.month).map_or(&[][..], Vec::as_slice);
                if whole {
                    for (i, n) in ids.iter().zip(&h.type_counts) {
                        all_counts[*i] += n;
                    }
                    users.add(&h.users);
                } else {
                    let days = self.days(e).await?;
                    let first = days.cells.partition_point(|c| c.date < from);
                    for c in days.cells[first..].iter().take_while(|c| c.date <= to) {
                        if let Some(i) = ids.get(c.ty as usize) {
                            all_counts[*i] += c.count;
                        }
                    }
                    for s in &days.day_users[lo..hi] {
                        users.add(s);
                    }
                }
                continue;
            }
            // Per-day unions across several types, for their daily distinct users.
            let mut per_day: BTreeMap<i32, SketchMerger> = BTreeMap::new();
            for &t in &types {
                let Ok(ti) = h.types.binary_search_by(|x| x.as_str().cmp(t)) else {
                    continue;
                };
                // A month covered whole needs the type's month sketch only, unless several
                // types need its days for their per-day unions.
                let tm = if whole && types.len() == 1 {
                    None
                } else {
                    Some(self.type_month(e, ti).await?)
                };
                let in_range = tm
                    .iter()
                    .flat_map(|tm| tm.days.iter())
                    .filter(|d| d.date >= from && d.date <= to);
                if whole {
                    *counts.entry(t).or_default() += h.type_counts[ti];
                    users.add(&*self.type_users(e, ti).await?);
                    if types.len() == 1 {
                        summary.unique_users_daily_sum += h.type_unique_sum[ti];
                    }
                } else {
                    for d in in_range.clone() {
                        *counts.entry(t).or_default() += d.count;
                        users
                            .add_bytes(&d.sketch)
                            .map_err(|e| LakeError::Rollup(e.to_string()))?;
                        if types.len() == 1 {
                            summary.unique_users_daily_sum += d.unique;
                        }
                    }
                }
                if types.len() > 1 {
                    for d in in_range {
                        per_day
                            .entry(d.date)
                            .or_default()
                            .add_bytes(&d.sketch)
                            .map_err(|e| LakeError::Rollup(e.to_string()))?;
                    }
                }
            }
            summary.unique_users_daily_sum +=
                per_day.values().map(|m| round(m.estimate())).sum::<u64>();
        }
        let everything = self.types.iter().map(String::as_str).zip(all_counts);
        for (t, n) in counts.into_iter().chain(everything) {
            if n > 0 {
                summary.total_events += n;
                summary.events_by_type.insert(t.to_owned(), n);
            }
        }
        summary.unique_users = round(users.estimate());
        Ok(summary)
    }
}

fn built_entry(b: Arc<MonthBuild>, signature: String) -> MonthEntry {
    MonthEntry {
        head: Arc::new(b.head.clone()),
        source: Source::Built(b),
        signature,
    }
}

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

/// File name without `.parquet`: what compacted files list in their coverage.
pub fn name_of(key: &str) -> &str {
    let file = key.rsplit('/').next().unwrap_or(key);
    file.strip_suffix(".parquet").unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(
        name: &str,
        date: &str,
        rows: &[(&str, u64, std::ops::Range<u32>)],
        covers: &[&str],
    ) -> AggregateFile {
        AggregateFile {
            key: format!("aggregates/daily/event_date={date}/{name}.parquet"),
            date: parse_date(date).unwrap(),
            name: name.into(),
            rows: rows
                .iter()
                .map(|(t, n, users)| {
                    let mut s = UserSketch::new();
                    for u in users.clone() {
                        s.insert(&format!("u{u}"));
                    }
                    AggregateRow {
                        event_type: (*t).into(),
                        event_count: *n,
                        users: s,
                        min_time_us: 0,
                        max_time_us: 0,
                    }
                })
                .collect(),
            generation: u64::from(!covers.is_empty()),
            covers: covers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn snapshot(files: &[AggregateFile]) -> View {
        View::from_files(&files.iter().collect::<Vec<_>>())
    }

    /// Answers of a view, synchronously (tests only).
    trait Sync_ {
        fn sum(&self, f: &Filter) -> Summary;
        fn rows(
            &self,
            f: &Filter,
            limit: usize,
            after: Option<&(i32, String)>,
        ) -> (Vec<MetricRow>, Option<(i32, String)>);
    }

    impl Sync_ for View {
        fn sum(&self, f: &Filter) -> Summary {
            block_on(self.summary(f)).unwrap()
        }
        fn rows(
            &self,
            f: &Filter,
            limit: usize,
            after: Option<&(i32, String)>,
        ) -> (Vec<MetricRow>, Option<(i32, String)>) {
            block_on(self.metrics(f, limit, after)).unwrap()
        }
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn merges_partials_and_answers_ranges() {
        let s = snapshot(&[
            file(
                "part-a",
                "2024-01-01",
                &[("click", 10, 0..5), ("view", 3, 0..3)],
                &[],
            ),
            file("part-b", "2024-01-01", &[("click", 5, 3..8)], &[]),
            file("part-c", "2024-01-03", &[("click", 7, 100..110)], &[]),
        ]);
        let all = s.sum(&Filter::default());
        assert_eq!(all.total_events, 25);
        assert_eq!(
            all.events_by_type,
            BTreeMap::from([("click".into(), 22), ("view".into(), 3)])
        );
        assert_eq!(all.unique_users, 18); // u0..u7 and u100..u109
        assert_eq!(all.unique_users_daily_sum, 18);
        assert_eq!(
            (all.start.as_deref(), all.end.as_deref()),
            (Some("2024-01-01"), Some("2024-01-03"))
        );
        let view = s.sum(&Filter {
            types: vec!["view".into()],
            ..Default::default()
        });
        assert_eq!((view.total_events, view.unique_users), (3, 3));
        let (rows, next) = s.rows(&Filter::default(), 2, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].event_type.as_str(),
                rows[0].event_count,
                rows[0].unique_users
            ),
            ("click", 15, 8)
        );
        let (rest, none) = s.rows(&Filter::default(), 10, next.as_ref());
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event_date, "2024-01-03");
        assert!(none.is_none());
        let jan3 = Filter {
            from: parse_date("2024-01-02"),
            to: parse_date("2024-01-03"),
            types: vec![],
        };
        assert_eq!(s.sum(&jan3).unique_users, 10);
    }

    #[test]
    fn tree_ranges_match_direct_merges() {
        let files: Vec<AggregateFile> = (0..37)
            .map(|d| {
                let date = format_date(parse_date("2024-02-01").unwrap() + d);
                file(
                    &format!("part-{d}"),
                    &date,
                    &[("t", 1, (d as u32 * 7)..(d as u32 * 7 + 20))],
                    &[],
                )
            })
            .collect();
        let s = snapshot(&files);
        let base = parse_date("2024-02-01").unwrap();
        for (a, b) in [(0, 36), (3, 4), (5, 30), (17, 17), (0, 1)] {
            let f = Filter {
                from: Some(base + a),
                to: Some(base + b),
                types: vec![],
            };
            let via_tree = s.sum(&f).unique_users;
            let direct = s
                .sum(&Filter {
                    types: vec!["t".into()],
                    ..f
                })
                .unique_users;
            assert_eq!(via_tree, direct, "range {a}..={b}");
            assert_eq!(via_tree, (b as u64 - a as u64) * 7 + 20);
        }
    }

    #[test]
    fn compacted_files_replace_what_they_cover() {
        let parts = [
            file("part-a", "2024-01-01", &[("click", 10, 0..5)], &[]),
            file("part-b", "2024-01-01", &[("click", 5, 3..8)], &[]),
        ];
        let compacted = file(
            "compacted-1",
            "2024-01-01",
            &[("click", 15, 0..8)],
            &["part-a", "part-b"],
        );
        let late = file("part-c", "2024-01-01", &[("click", 1, 50..51)], &[]);
        // Before the covered partials are deleted, and after: the same answer.
        let during = snapshot(&[
            parts[0].clone(),
            parts[1].clone(),
            compacted.clone(),
            late.clone(),
        ]);
        let after = snapshot(&[compacted.clone(), late.clone()]);
        for s in [&during, &after] {
            let sum = s.sum(&Filter::default());
            assert_eq!((sum.total_events, sum.unique_users), (16, 9));
        }
        // A second compaction covers the first one and the late partial.
        let second = file(
            "compacted-2",
            "2024-01-01",
            &[("click", 16, 0..8)],
            &["part-a", "part-b", "compacted-1", "part-c"],
        );
        let s = snapshot(&[compacted, late, second]);
        assert_eq!(s.sum(&Filter::default()).total_events, 16);
    }

    /// A year of data plus one event at year 1000 and one at 9999: the read model grows by two
    /// days, not by the ~3.3 million days between them.
    #[test]
    fn memory_and_build_time_follow_the_data_not_the_date_span() {
        let base = parse_date("2024-01-01").unwrap();
        let year: Vec<AggregateFile> = (0..365)
            .map(|d| {
                file(
                    &format!("part-{d}"),
                    &format_date(base + d),
                    &[("click", 5, 0..50), ("view", 2, 25..60)],
                    &[],
                )
            })
            .collect();
        let mut hostile = year.clone();
        hostile.push(file("part-old", "1000-01-01", &[("x", 1, 0..1)], &[]));
        hostile.push(file("part-far", "9999-12-31", &[("x", 1, 0..1)], &[]));
        let timed = |files: &[AggregateFile]| {
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    let s = snapshot(files);
                    (t.elapsed(), s)
                })
                .min_by_key(|(t, _)| *t)
                .unwrap()
        };
        let (t_year, s_year) = timed(&year);
        let (t_hostile, s_hostile) = timed(&hostile);
        let (m_year, m_hostile) = (s_year.heap_bytes(), s_hostile.heap_bytes());
        assert!(
            m_hostile < m_year + m_year / 10,
            "read model {m_hostile} bytes with the extreme days vs {m_year} without"
        );
        assert!(
            t_hostile < t_year * 3 + Duration::from_millis(20),
            "build {t_hostile:?} with the extreme days vs {t_year:?} without"
        );
        let all = s_hostile.sum(&Filter::default());
        assert_eq!(all.total_events, 365 * 7 + 2);
        assert_eq!(
            (all.start.as_deref(), all.end.as_deref()),
            (Some("1000-01-01"), Some("9999-12-31"))
        );
        // Ranges between and around the data days still answer exactly.
        let f = |a: &str, b: &str| Filter {
            from: parse_date(a),
            to: parse_date(b),
            types: vec![],
        };
        let mid = s_hostile.sum(&f("2024-02-01", "2024-02-10"));
        assert_eq!((mid.total_events, mid.unique_users), (70, 60));
        assert_eq!(
            s_hostile.sum(&f("2030-01-01", "2030-12-31")).total_events,
            0
        );
        assert_eq!(
            s_hostile.sum(&f("9000-01-01", "9999-12-31")).total_events,
            1
        );
        assert_eq!(
            s_hostile.sum(&f("0999-01-01", "1999-01-01")).unique_users,
            1
        );
    }

    /// Filtered distinct users from whole-month sketches plus edge days equal a merge of every
    /// day's cell, for ranges that start and end anywhere in a month.
    #[test]
    fn filtered_ranges_from_month_sketches_match_direct_merges() {
        let base = parse_date("2024-01-15").unwrap();
        let files: Vec<AggregateFile> = (0..140)
            .map(|d| {
                let u = d as u32 * 11;
                file(
                    &format!("part-{d}"),
                    &format_date(base + d),
                    &[("t", 1, u..u + 30), ("u", 2, u + 5..u + 9)],
                    &[],
                )
            })
            .collect();
        let s = snapshot(&files);
        for (a, b) in [
            (0, 139),
            (3, 17),
            (16, 47),
            (17, 46),
            (0, 0),
            (45, 120),
            (77, 78),
        ] {
            for types in [vec!["t"], vec!["u"], vec!["t", "u"]] {
                let f = Filter {
                    from: Some(base + a),
                    to: Some(base + b),
                    types: types.iter().map(|t| t.to_string()).collect(),
                };
                let mut direct = SketchMerger::default();
                for file in &files {
                    if file.date < base + a || file.date > base + b {
                        continue;
                    }
                    for row in file
                        .rows
                        .iter()
                        .filter(|r| types.contains(&r.event_type.as_str()))
                    {
                        direct.add(&row.users);
                    }
                }
                assert_eq!(
                    s.sum(&f).unique_users,
                    round(direct.estimate()),
                    "days {a}..={b} {types:?}"
                );
            }
        }
    }

    /// Writes `f` into a store as a daily aggregate file.
    fn put_file(store: &crate::storage::MemoryStore, f: &AggregateFile) {
        let bytes =
            crate::parquet::encode_aggregate_file(&f.rows, &f.covers, f.generation).unwrap();
        store.insert("lake", &f.key, bytes);
    }

    /// Four months, three types, a date with two partials, a date compacted with its covered
    /// partials still listed, and a type that appears in one month only.
    fn lake_files() -> Vec<AggregateFile> {
        let base = parse_date("2024-01-20").unwrap();
        let mut files = Vec::new();
        for d in 0..100 {
            let date = format_date(base + d);
            let u = d as u32 * 13;
            let mut rows = vec![
                ("click", 10 + d as u64, u..u + 40),
                ("view", 3, u + 20..u + 30),
            ];
            if (30..40).contains(&d) {
                rows.push(("buy", 1, u..u + 2));
            }
            files.push(file(&format!("part-a{d}"), &date, &rows, &[]));
            if d % 9 == 0 {
                files.push(file(
                    &format!("part-b{d}"),
                    &date,
                    &[("click", 2, 5000..5010)],
                    &[],
                ));
            }
        }
        let date = format_date(base + 50);
        let covered = [
            file("part-x", &date, &[("view", 4, 0..9)], &[]),
            file("part-y", &date, &[("view", 6, 5..20)], &[]),
        ];
        files.push(file(
            "compacted-7",
            &date,
            &[("view", 10, 0..20)],
            &["part-x", "part-y"],
        ));
        files.extend(covered);
        files
    }

    /// The same questions to two views: summaries over many ranges and filters, and every
    /// metrics page.
    async fn answers(v: &View) -> Vec<String> {
        let base = parse_date("2024-01-20").unwrap();
        let mut out = Vec::new();
        let ranges = [
            (None, None),
            (Some(0), Some(99)),
            (Some(5), Some(17)),
            (Some(11), Some(12)),
            (Some(12), Some(70)),
            (Some(40), None),
            (None, Some(41)),
            (Some(-50), Some(500)),
        ];
        for (a, b) in ranges {
            for types in [vec![], vec!["click"], vec!["buy"], vec!["view", "buy"]] {
                let f = Filter {
                    from: a.map(|a| base + a),
                    to: b.map(|b| base + b),
                    types: types.iter().map(|t| t.to_string()).collect(),
                };
                out.push(format!("{f:?} {:?}", v.summary(&f).await.unwrap()));
                let mut after = None;
                loop {
                    let (rows, next) = v.metrics(&f, 37, after.as_ref()).await.unwrap();
                    out.push(format!("{f:?} {after:?} {rows:?}"));
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
            }
        }
        out
    }

    /// [`lake_files`] in a store, typed twice: for inspection and as the reader's port.
    fn stored_lake() -> (
        Arc<crate::storage::MemoryStore>,
        Arc<dyn ObjectStore>,
        Vec<AggregateFile>,
    ) {
        let store = Arc::new(crate::storage::MemoryStore::default());
        let files = lake_files();
        for f in &files {
            put_file(&store, f);
        }
        (store.clone(), store, files)
    }

    fn reader(store: &Arc<crate::storage::MemoryStore>) -> LakeReader {
        LakeReader::new(
            store.clone(),
            "lake".into(),
            Layout::default(),
            Duration::ZERO,
        )
    }

    #[tokio::test]
    async fn rollups_answer_like_the_daily_files_before_during_and_after() {
        let (store, dyn_store, mut files) = stored_lake();
        let expected = answers(&snapshot(&files)).await;
        let layout = Layout::default();

        // Before any rollup: every month from its daily files.
        let before = reader(&store);
        let (v, g1) = before.snapshot().await.unwrap();
        assert_eq!(v.months_from_daily_files(), 4);
        assert_eq!(answers(&v).await, expected);

        let r = crate::rollup::refresh(&dyn_store, "lake", &layout, 1_000, 0)
            .await
            .unwrap();
        assert_eq!((r.months_rebuilt, r.months_unchanged), (4, 0));
        // The reader that saw the files switches to the rollups: a new generation, same answers.
        let (v, g2) = before.snapshot().await.unwrap();
        assert_eq!(v.months_from_daily_files(), 0);
        assert!(g2 > g1);
        assert_eq!(answers(&v).await, expected);
        // A cold reader reads the rollups alone.
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!(v.months_from_daily_files(), 0);
        assert_eq!(answers(&v).await, expected);

        // Nothing changed: a second run writes nothing.
        let again = crate::rollup::refresh(&dyn_store, "lake", &layout, 2_000, 0)
            .await
            .unwrap();
        assert_eq!((again.months_rebuilt, again.objects_written), (0, 0));

        // A late partial: its date (only) is built from the daily files until the next run.
        let late = file(
            "part-late",
            "2024-02-03",
            &[("click", 5, 9000..9100), ("new", 1, 1..2)],
            &[],
        );
        put_file(&store, &late);
        files.push(late);
        let expected = answers(&snapshot(&files)).await;
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!((v.months_from_daily_files(), v.months_patched()), (0, 1));
        assert!(v.event_types().contains("new"));
        assert_eq!(answers(&v).await, expected);
        let r = crate::rollup::refresh(&dyn_store, "lake", &layout, 3_000, 0)
            .await
            .unwrap();
        assert_eq!((r.months_rebuilt, r.months_unchanged), (1, 3));
        // The superseded version of February is pruned (grace 0); three months kept theirs.
        let versions: BTreeSet<String> = store
            .keys("lake")
            .into_iter()
            .filter(|k| k.contains("/_rollup/month="))
            .filter_map(|k| k.rsplit_once('/').map(|(v, _)| v.to_owned()))
            .collect();
        assert_eq!(versions.len(), 4, "{versions:?}");
        // February's old version (days.json and its click, view and buy objects) and 2024's old
        // year objects (buy, click, view).
        assert_eq!(r.objects_pruned, 4 + 3);
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!(v.months_from_daily_files(), 0);
        assert_eq!(answers(&v).await, expected);

        // Compaction archiving covered partials keeps the rollup current.
        store
            .delete("lake", &files[files.len() - 2].key)
            .await
            .unwrap();
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!(v.months_from_daily_files(), 0);

        // A rollup object gone (or garbage) mid-flight: the month is read from its daily files.
        let march: Vec<String> = store
            .keys("lake")
            .into_iter()
            .filter(|k| k.contains("month=2024-03/"))
            .collect();
        for k in &march {
            if k.ends_with("days.json") {
                store.delete("lake", k).await.unwrap();
            } else {
                store.insert("lake", k, b"garbage".to_vec());
            }
        }
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!(answers(&v).await, expected);
    }

    /// Changes after a rollup — a partial removed, a date compacted, a date emptied, a late
    /// partial — patch the dates they touch; answers equal a build of the files at every step.
    #[tokio::test]
    async fn changed_dates_patch_the_rollup() {
        let (store, dyn_store, mut files) = stored_lake();
        crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
            .await
            .unwrap();
        let remove = |files: &mut Vec<AggregateFile>, name: &str, date: &str| {
            let i = files
                .iter()
                .position(|f| f.name == name && format_date(f.date) == date)
                .unwrap();
            files.remove(i).key
        };
        let check = |files: Vec<AggregateFile>, patched: usize| {
            let store = store.clone();
            async move {
                let (v, _) = reader(&store).snapshot().await.unwrap();
                assert_eq!(
                    (v.months_from_daily_files(), v.months_patched()),
                    (0, patched)
                );
                assert_eq!(answers(&v).await, answers(&snapshot(&files)).await);
            }
        };
        // A partial removed (reprocessing took its object's outputs away).
        let key = remove(&mut files, "part-b9", "2024-01-29");
        store.delete("lake", &key).await.unwrap();
        check(files.clone(), 1).await;
        // A date compacted after the rollup: the compacted file in, its partials archived.
        let date = "2024-01-20";
        let compacted = file(
            "compacted-9",
            date,
            &[("click", 12, 0..40), ("view", 3, 20..30)],
            &["part-a0", "part-b0"],
        );
        for name in ["part-a0", "part-b0"] {
            let key = remove(&mut files, name, date);
            store.delete("lake", &key).await.unwrap();
        }
        put_file(&store, &compacted);
        files.push(compacted);
        check(files.clone(), 1).await;
        // Every file of a date gone, in another month.
        let key = remove(&mut files, "part-a21", "2024-02-10");
        store.delete("lake", &key).await.unwrap();
        check(files.clone(), 2).await;
        // A late partial with a type the month did not have, on a date the rollup holds.
        let late = file("part-late", "2024-03-02", &[("zzz", 4, 1..5)], &[]);
        put_file(&store, &late);
        files.push(late);
        check(files.clone(), 3).await;
        // The rollup's days of a patched month gone: that month is built from its files.
        let days: Vec<String> = store
            .keys("lake")
            .into_iter()
            .filter(|k| k.contains("month=2024-03/") && k.ends_with("days.json"))
            .collect();
        store.delete("lake", &days[0]).await.unwrap();
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!((v.months_from_daily_files(), v.months_patched()), (1, 2));
        assert_eq!(answers(&v).await, answers(&snapshot(&files)).await);
        // The next run folds every change in.
        let r = crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 2_000, 0)
            .await
            .unwrap();
        assert_eq!((r.months_rebuilt, r.months_unchanged), (3, 1));
        check(files, 0).await;
    }

    #[tokio::test]
    async fn months_removed_from_the_lake_leave_the_catalog() {
        let (store, dyn_store, files) = stored_lake();
        let layout = Layout::default();
        crate::rollup::refresh(&dyn_store, "lake", &layout, 1_000, 0)
            .await
            .unwrap();
        // Reprocessing removed every output of January.
        for f in files.iter().filter(|f| f.key.contains("2024-01-")) {
            store.delete("lake", &f.key).await.unwrap();
        }
        let rest: Vec<AggregateFile> = files
            .iter()
            .filter(|f| !f.key.contains("2024-01-"))
            .cloned()
            .collect();
        let (v, _) = reader(&store).snapshot().await.unwrap();
        assert_eq!(answers(&v).await, answers(&snapshot(&rest)).await);
        let r = crate::rollup::refresh(&dyn_store, "lake", &layout, 2_000, 0)
            .await
            .unwrap();
        assert_eq!((r.months_dropped, r.months_unchanged), (1, 3));
        assert!(store
            .keys("lake")
            .iter()
            .all(|k| !k.contains("month=2024-01")));
    }

    /// However much history is queried, the details a warm reader keeps stay within its budget.
    #[tokio::test]
    async fn month_details_stay_within_the_cache_budget() {
        let (store, dyn_store, files) = stored_lake();
        crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
            .await
            .unwrap();
        // About two months' days (each holds ~30 decoded day sketches); the questions touch four.
        let budget = 1_000_000;
        let r = LakeReader::with_cache_budget(
            store.clone(),
            "lake".into(),
            Layout::default(),
            Duration::ZERO,
            budget,
        );
        let (v, _) = r.snapshot().await.unwrap();
        let heads = v.heap_bytes();
        let expected = answers(&snapshot(&files)).await;
        assert_eq!(answers(&v).await, expected);
        let held = v.heap_bytes() - heads;
        assert!(held > budget / 2 && held <= budget, "held {held}");
    }

    /// A store that records the keys read.
    #[derive(Default)]
    struct Counting {
        inner: crate::storage::MemoryStore,
        gets: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counting {
        async fn head(&self, b: &str, k: &str) -> Result<Option<ObjectMeta>, StoreError> {
            self.inner.head(b, k).await
        }
        async fn open(
            &self,
            b: &str,
            k: &str,
            e: Option<&str>,
        ) -> Result<crate::storage::ObjectReader, StoreError> {
            self.inner.open(b, k, e).await
        }
        async fn get(&self, b: &str, k: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.gets.lock().unwrap().push(k.to_owned());
            self.inner.get(b, k).await
        }
        async fn put(
            &self,
            b: &str,
            k: &str,
            body: crate::storage::Body,
            ct: &str,
        ) -> Result<(), StoreError> {
            self.inner.put(b, k, body, ct).await
        }
        async fn delete(&self, b: &str, k: &str) -> Result<(), StoreError> {
            self.inner.delete(b, k).await
        }
        async fn list(&self, b: &str, p: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            self.inner.list(b, p).await
        }
    }

    impl Counting {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.gets.lock().unwrap())
        }
    }

    /// A cold reader over a rolled-up lake reads the catalog and nothing else for the whole
    /// history's summary, and only the months a range or a type touches after that.
    #[tokio::test]
    async fn a_cold_start_reads_the_catalog_only() {
        let store = Arc::new(Counting::default());
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        for f in &lake_files() {
            let bytes =
                crate::parquet::encode_aggregate_file(&f.rows, &f.covers, f.generation).unwrap();
            store.inner.insert("lake", &f.key, bytes);
        }
        crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
            .await
            .unwrap();
        store.take();
        let r = LakeReader::new(dyn_store, "lake".into(), Layout::default(), Duration::ZERO);
        let (v, _) = r.snapshot().await.unwrap();
        let all = v.summary(&Filter::default()).await.unwrap();
        // click 10+d over 100 days, view 3 a day, buy 10, 12 extra partials of 2, compacted 10.
        assert_eq!(all.total_events, 5_950 + 300 + 10 + 24 + 10);
        assert_eq!(store.take(), vec!["aggregates/daily/_rollup/catalog.json"]);

        // A range cutting February and March: those months' days, nothing else.
        let f = Filter {
            from: parse_date("2024-02-10"),
            to: parse_date("2024-03-05"),
            types: vec![],
        };
        v.summary(&f).await.unwrap();
        let mut got = store.take();
        got.sort();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("month=2024-02/") && got[0].ends_with("/days.json"));
        assert!(got[1].contains("month=2024-03/") && got[1].ends_with("/days.json"));
        // Asked again: served from memory.
        v.summary(&f).await.unwrap();
        assert!(store.take().is_empty());

        // One type over the whole history: its year object, one read for four months.
        let click = Filter {
            types: vec!["click".into()],
            ..Filter::default()
        };
        assert_eq!(v.summary(&click).await.unwrap().total_events, 5_950 + 24);
        let got = store.take();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("/_rollup/year=2024/") && got[0].ends_with("/y1.json"));
        // A range cutting two months: the year object (cached) and the two months' objects of
        // the type for their days.
        let cut = Filter {
            from: parse_date("2024-02-10"),
            to: parse_date("2024-04-05"),
            types: vec!["click".into()],
        };
        v.summary(&cut).await.unwrap();
        let mut got = store.take();
        got.sort();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("month=2024-02/") && got[0].ends_with("/t1.json"));
        assert!(got[1].contains("month=2024-04/") && got[1].ends_with("/t0.json"));
    }

    #[test]
    fn empty_lake() {
        let s = snapshot(&[]);
        assert!(s.is_empty());
        assert_eq!(s.sum(&Filter::default()).total_events, 0);
    }
}
