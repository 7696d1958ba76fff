//! The view of the lake at one point in time and the queries it answers, loading month details
//! on demand into a bounded cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{AggregateFile, Daily, DayPoint, Filter, LakeError, MetricRow, Summary};
use crate::event::format_date;
use crate::lake::layout::Layout;
use crate::lake::round;
use crate::rollup::{
    month_label, month_of, CatalogYear, EdgePart, MonthBuild, MonthDays, MonthHead, Patch,
    TypeMonth,
};
use dataflow_sketch::{SketchMerger, UserSketch};
use dataflow_store::{ObjectMeta, ObjectStore};

/// Where a month's details come from.
#[derive(Clone)]
pub(super) enum Source {
    /// A current rollup version (its prefix) and the daily files it stands for, which are read
    /// instead should one of its objects be gone or unreadable.
    Rollup {
        prefix: String,
        listed: Arc<Vec<ObjectMeta>>,
        /// Dates whose files changed since the rollup, built fresh.
        patch: Option<Arc<Patch>>,
        /// Byte lengths of the two parts of the version's `edges.bin`, if it has one.
        edges: Option<[u32; 2]>,
    },
    /// Built from the daily files: no rollup yet, or the files changed since it was written.
    Built(Arc<MonthBuild>),
}

#[derive(Clone)]
pub(super) struct MonthEntry {
    pub(super) head: Arc<MonthHead>,
    pub(super) source: Source,
    /// Changes whenever the month's data does: the rollup prefix or the daily files' ETags.
    pub(super) signature: String,
}

impl MonthEntry {
    /// The rollup version the month is served from, unpatched: the only months whose objects,
    /// and the unions cut from them, may be kept under that version's keys.
    fn rollup_prefix(&self) -> Option<&str> {
        match &self.source {
            Source::Rollup {
                prefix,
                patch: None,
                ..
            } => Some(prefix),
            _ => None,
        }
    }
}

/// A type's days of one month within a range, reduced: what a summary of that type needs.
pub(super) struct TypePiece {
    count: u64,
    unique_sum: u64,
    users: UserSketch,
}

#[derive(Clone)]
enum Detail {
    Days(Arc<MonthDays>),
    Piece(Arc<TypePiece>),
    Type(Arc<TypeMonth>),
    Users(Arc<UserSketch>),
    Year(Arc<Vec<(i32, Arc<UserSketch>)>>),
    Build(Arc<MonthBuild>),
    Edges(Arc<EdgePart>),
}

type Lru = lru::LruCache<String, (usize, Detail)>;

/// One least-recently-used list with the sum of its entries' byte sizes.
struct Tier {
    lru: Lru,
    bytes: usize,
    budget: usize,
}

impl Tier {
    fn new(budget: usize) -> Self {
        Self {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    fn put(&mut self, key: String, bytes: usize, d: Detail) {
        if let Some((old, _)) = self.lru.put(key, (bytes, d)) {
            self.bytes -= old;
        }
        self.bytes += bytes;
        while self.bytes > self.budget && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((_, (b, _))) => self.bytes -= b,
                None => break,
            }
        }
    }
}

/// Month details loaded on demand, least recently used first out once over a byte budget, so a
/// warm function's memory stays bounded whatever the history.
///
/// Two lists: whole objects as read (a month's day sketches, a type's month, a year object)
/// get three eighths of the budget; what questions keep using (cells, step tables, month
/// sketches and the unions cut from those objects for a range) gets the rest. In one list,
/// every object read for a new range pushed out the small unions that earlier ranges keep
/// asking for; the larger share is what a warm reader answers from (docs/benchmarks.md).
pub(super) struct DetailCache {
    inner: std::sync::Mutex<(Tier, Tier)>,
}

impl DetailCache {
    pub(super) fn new(budget: usize) -> Self {
        let objects = budget / 8 * 3;
        Self {
            inner: std::sync::Mutex::new((Tier::new(budget - objects), Tier::new(objects))),
        }
    }

    fn get(&self, key: &str) -> Option<Detail> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, d)) = g.0.lru.get(key) {
            return Some(d.clone());
        }
        g.1.lru.get(key).map(|(_, d)| d.clone())
    }

    fn put(&self, key: String, bytes: usize, d: Detail) {
        let whole_object = match &d {
            Detail::Days(days) => !days.day_users.is_empty(),
            Detail::Type(_) | Detail::Year(_) | Detail::Build(_) => true,
            Detail::Users(_) | Detail::Piece(_) | Detail::Edges(_) => false,
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if whole_object {
            g.1.put(key, bytes, d);
        } else {
            g.0.put(key, bytes, d);
        }
    }

    fn bytes(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.bytes + g.1.bytes
    }
}

pub(super) struct Loader {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) bucket: String,
    pub(super) layout: Layout,
    pub(super) cache: DetailCache,
}

/// Default budget for month details held by a warm reader: a year of 50 types fits whole, and
/// five years of 500 types keep the API under 200 MB resident (docs/benchmarks.md).
pub const DETAIL_CACHE_BYTES: usize = 112 << 20;

/// The lake at one point in time: every month's head, and where to load its details from.
/// Every per-day structure is indexed by the days that hold data, never by the calendar span
/// between the first and the last: one event in year 9999 adds one day, not three million.
pub struct View {
    pub(super) months: BTreeMap<i32, MonthEntry>,
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

    pub(super) fn new(
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
        self.rollup_part(key, None, decode).await
    }

    /// [`Self::rollup_object`], or only `len` bytes of it from `offset`.
    async fn rollup_part<T>(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        decode: impl FnOnce(&[u8]) -> Result<T, LakeError>,
    ) -> Result<Option<T>, LakeError> {
        let loader = self.loader()?;
        let read = match range {
            None => loader.store.get(&loader.bucket, key).await?,
            Some((offset, len)) => {
                loader
                    .store
                    .get_range(&loader.bucket, key, offset, len)
                    .await?
            }
        };
        let Some(bytes) = read else {
            tracing::warn!(
                key,
                "rollup object missing; answering from the month's other sources"
            );
            return Ok(None);
        };
        match decode(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(key, error = %e, "rollup object unreadable; answering from the month's other sources");
                Ok(None)
            }
        }
    }

    /// A month's cells (`sketches == false`) or its day sketches: the two halves of `days.json`,
    /// cached apart, so questions that need only counts, or only a cached union of some days,
    /// do not keep a month's thirty day sketches in memory.
    async fn days_part(&self, e: &MonthEntry, sketches: bool) -> Result<Arc<MonthDays>, LakeError> {
        let prefix = match &e.source {
            Source::Built(b) => return Ok(b.days.clone()),
            Source::Rollup { patch: Some(p), .. } => return Ok(p.days.clone()),
            Source::Rollup { prefix, .. } => prefix,
        };
        let key = crate::rollup::days_key(prefix);
        let (cells_key, sketches_key) = (format!("{key}#cells"), format!("{key}#sketches"));
        let loader = self.loader()?;
        if let Some(Detail::Days(d)) =
            loader
                .cache
                .get(if sketches { &sketches_key } else { &cells_key })
        {
            return Ok(d);
        }
        let full = match self.rollup_object(&key, crate::rollup::decode_days).await? {
            Some(d) if d.day_users.len() == e.head.dates.len() => d,
            _ => (*self.build(e).await?.days).clone(),
        };
        let cells = Arc::new(MonthDays {
            cells: full.cells,
            day_users: Vec::new(),
        });
        let days = Arc::new(MonthDays {
            cells: Vec::new(),
            day_users: full.day_users,
        });
        loader
            .cache
            .put(cells_key, cells.heap_bytes(), Detail::Days(cells.clone()));
        // A month with edge unions needs its day sketches only for ranges inside it: not
        // worth their place in the cache when the cells were what was asked for.
        let has_edges = matches!(e.source, Source::Rollup { edges: Some(_), .. });
        if sketches || !has_edges {
            loader
                .cache
                .put(sketches_key, days.heap_bytes(), Detail::Days(days.clone()));
        }
        Ok(if sketches { days } else { cells })
    }

    /// The union of the days `lo..hi` (positions in the head's `dates`) of a month, all types:
    /// cached per (rollup version, lo, hi) for months served from a rollup, `None` otherwise
    /// (the caller merges the resident day sketches itself).
    async fn day_piece(
        &self,
        e: &MonthEntry,
        lo: usize,
        hi: usize,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let Some(prefix) = e.rollup_prefix() else {
            return Ok(None);
        };
        let key = format!("{}#union{lo}-{hi}", crate::rollup::days_key(prefix));
        let loader = self.loader()?;
        if let Some(Detail::Users(u)) = loader.cache.get(&key) {
            return Ok(Some(u));
        }
        let days = self.days_part(e, true).await?;
        let sketches = days.day_users.get(lo..hi).unwrap_or_default();
        Ok(Some(self.keep_union(key, sketches)?))
    }

    /// Merges into `users` the union of the days `lo..hi` of a month when the range cuts it
    /// at one end only, from the part of the version's `edges.bin` for that end (read alone
    /// with a ranged GET, then kept: every later cut at that end is answered from memory).
    /// `false` when the month has none, the part cannot be read, or its table cannot give
    /// that union (the caller cuts it from the day sketches: the same sketch).
    async fn add_edge(
        &self,
        e: &MonthEntry,
        lo: usize,
        hi: usize,
        users: &mut SketchMerger,
    ) -> Result<bool, LakeError> {
        let (
            Some(prefix),
            Source::Rollup {
                edges: Some([from_len, to_len]),
                ..
            },
        ) = (e.rollup_prefix(), &e.source)
        else {
            return Ok(false);
        };
        let n = e.head.dates.len();
        // A run's suffix from `start`: the days in order, or reversed for a month's start.
        let (side, start, offset, len) = match (lo, hi) {
            (lo, hi) if lo > 0 && lo < n && hi == n => ("from", lo, 0, *from_len),
            (0, hi) if hi > 0 && hi < n => ("to", n - hi, u64::from(*from_len), *to_len),
            _ => return Ok(false),
        };
        let object = crate::rollup::edges_key(prefix);
        let key = format!("{object}#{side}");
        let loader = self.loader()?;
        let part = match loader.cache.get(&key) {
            Some(Detail::Edges(p)) => p,
            _ => {
                let range = Some((offset, u64::from(len)));
                let decode = crate::rollup::decode_edge_part;
                let Some(p) = self.rollup_part(&object, range, decode).await? else {
                    return Ok(false);
                };
                let p = Arc::new(p);
                loader
                    .cache
                    .put(key, p.heap_bytes() + 64, Detail::Edges(p.clone()));
                p
            }
        };
        if start + 1 == n {
            users.add(&part.last);
            return Ok(true);
        }
        Ok(part
            .table
            .as_ref()
            .is_some_and(|t| t.add_union_from(start, users)))
    }

    /// Adds the all-types sketches of `run`, consecutive whole months, as aligned blocks of
    /// 2^k months (by position in the view), each block's union kept under its months'
    /// versions: any run costs O(log months) unions, so an open-ended range over years merges a
    /// handful of sketches, not one per month.
    fn add_whole_months(
        &self,
        run: &[&MonthEntry],
        users: &mut SketchMerger,
    ) -> Result<(), LakeError> {
        let Some(first) = run.first() else {
            return Ok(());
        };
        let base = self.months.range(..first.head.month).count();
        let (mut lo, hi) = (base, base + run.len());
        while lo < hi {
            let mut size = 1;
            while lo % (size * 2) == 0 && lo + size * 2 <= hi {
                size *= 2;
            }
            let block = &run[lo - base..lo - base + size];
            lo += size;
            let versions: Option<Vec<&str>> = block.iter().map(|e| e.rollup_prefix()).collect();
            match (size, versions, &self.loader) {
                (2.., Some(versions), Some(loader)) => {
                    use sha2::Digest;
                    let mut h = sha2::Sha256::new();
                    for v in versions {
                        h.update(v.as_bytes());
                        h.update([0]);
                    }
                    let key = format!("months:{}", hex::encode(h.finalize()));
                    let u = match loader.cache.get(&key) {
                        Some(Detail::Users(u)) => u,
                        _ => self.keep_union(key, block.iter().map(|e| &e.head.users))?,
                    };
                    users.add(&u);
                }
                _ => {
                    for e in block {
                        users.add(&e.head.users);
                    }
                }
            }
        }
        Ok(())
    }

    /// The union of `sketches`, kept under `key` (the immutable version it was cut from and
    /// the range it covers).
    fn keep_union<'a>(
        &self,
        key: String,
        sketches: impl IntoIterator<Item = &'a UserSketch>,
    ) -> Result<Arc<UserSketch>, LakeError> {
        let u = Arc::new(SketchMerger::union_of(sketches));
        self.loader()?
            .cache
            .put(key, u.heap_bytes() + 64, Detail::Users(u.clone()));
        Ok(u)
    }

    /// One type's days of a month within `from..=to`: events, the sum of daily distinct users
    /// and their union. Cached per (object version, first and last day) for months served from
    /// a rollup, so a warm reader keeps this instead of the type's month object.
    async fn type_piece(
        &self,
        e: &MonthEntry,
        ti: usize,
        from: i32,
        to: i32,
    ) -> Result<Arc<TypePiece>, LakeError> {
        let key = e
            .rollup_prefix()
            .map(|prefix| format!("{}#union{from}-{to}", crate::rollup::type_key(prefix, ti)));
        if let (Some(k), Ok(l)) = (&key, self.loader()) {
            if let Some(Detail::Piece(p)) = l.cache.get(k) {
                return Ok(p);
            }
        }
        let tm = self.type_month(e, ti).await?;
        let (mut count, mut unique_sum, mut m) = (0u64, 0u64, SketchMerger::default());
        for d in tm.days.iter().filter(|d| d.date >= from && d.date <= to) {
            count += d.count;
            unique_sum += d.unique;
            m.add_bytes(&d.sketch)
                .map_err(|e| LakeError::Rollup(e.to_string()))?;
        }
        let p = Arc::new(TypePiece {
            count,
            unique_sum,
            users: m.finish().into_stored(),
        });
        if let (Some(k), Ok(l)) = (key, self.loader()) {
            l.cache
                .put(k, p.users.heap_bytes() + 80, Detail::Piece(p.clone()));
        }
        Ok(p)
    }

    /// A type's union over the whole months `first..=last` of one year, from that year's
    /// object: `None` unless every one of those months is served from the version the object
    /// was built from. Cached per (object version, first, last): a warm reader keeps one sketch
    /// per year a question covers instead of the year's twelve.
    async fn year_run(
        &self,
        t: &str,
        first: &MonthEntry,
        last: &MonthEntry,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let year = first.head.month.div_euclid(12);
        let Some(y) = self.years.get(&year) else {
            return Ok(None);
        };
        let Ok(yi) = y.types.binary_search_by(|x| x.as_str().cmp(t)) else {
            return Ok(None);
        };
        let (m_lo, m_hi) = (first.head.month, last.head.month);
        for (m, e) in self.months.range(m_lo..=m_hi) {
            let current = e.rollup_prefix().is_some_and(|prefix| {
                y.months.get(&month_label(*m)).map(String::as_str) == Some(prefix)
            });
            if !current {
                return Ok(None);
            }
        }
        let ykey = crate::rollup::year_key(&y.prefix, yi);
        let key = format!("{ykey}#union{m_lo}-{m_hi}");
        let loader = self.loader()?;
        if let Some(Detail::Users(u)) = loader.cache.get(&key) {
            return Ok(Some(u));
        }
        let months = match self.year_months(&ykey).await? {
            Some(m) => m,
            None => return Ok(None),
        };
        let run = months
            .iter()
            .filter(|(m, _)| (m_lo..=m_hi).contains(m))
            .map(|(_, u)| &**u);
        Ok(Some(self.keep_union(key, run)?))
    }

    /// A per-type year object: each month's sketch.
    async fn year_months(
        &self,
        key: &str,
    ) -> Result<Option<Arc<Vec<(i32, Arc<UserSketch>)>>>, LakeError> {
        let loader = self.loader()?;
        if let Some(Detail::Year(m)) = loader.cache.get(key) {
            return Ok(Some(m));
        }
        Ok(
            match self.rollup_object(key, crate::rollup::decode_year).await? {
                Some(m) => {
                    let m = Arc::new(m);
                    let bytes = m.iter().map(|(_, u)| u.heap_bytes() + 16).sum();
                    loader
                        .cache
                        .put(key.to_owned(), bytes, Detail::Year(m.clone()));
                    Some(m)
                }
                None => None,
            },
        )
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
        let u = match self.year_users(e, ti).await? {
            Some(u) => u,
            None => self.type_month(e, ti).await?.users.clone(),
        };
        // Kept on its own: the object it came from is cached as a whole, in the smaller list.
        loader
            .cache
            .put(key, u.heap_bytes(), Detail::Users(u.clone()));
        Ok(u)
    }

    /// A type's month sketch from its year object, when the catalog has one built from the
    /// month version this view serves.
    async fn year_users(
        &self,
        e: &MonthEntry,
        ti: usize,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let Some(prefix) = e.rollup_prefix() else {
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
        let Some(months) = self
            .year_months(&crate::rollup::year_key(&y.prefix, yi))
            .await?
        else {
            return Ok(None);
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
            let days = self.days_part(e, false).await?;
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

    /// The months with days in the filter's range, each with the positions in its `dates` of
    /// the first day in range and one past the last.
    fn months_in<'a>(
        &'a self,
        f: &Filter,
    ) -> impl Iterator<Item = (&'a MonthEntry, usize, usize)> + 'a {
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        let (m_lo, m_hi) = (
            f.from.map_or(i32::MIN, month_of),
            f.to.map_or(i32::MAX, month_of),
        );
        self.months
            .range(m_lo..=m_hi.max(m_lo))
            .filter_map(move |(_, e)| {
                let lo = e.head.dates.partition_point(|d| *d < from);
                let hi = e.head.dates.partition_point(|d| *d <= to);
                (lo < hi).then_some((e, lo, hi))
            })
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
        let mut whole_months: BTreeMap<&str, Vec<(&MonthEntry, usize)>> = BTreeMap::new();
        let mut whole_all: Vec<&MonthEntry> = Vec::new();
        let mut all_counts = vec![
            0u64;
            if types.is_empty() {
                self.types.len()
            } else {
                0
            }
        ];
        for (e, lo, hi) in self.months_in(f) {
            let h = &e.head;
            let whole = lo == 0 && hi == h.dates.len();
            if types.is_empty() {
                summary.unique_users_daily_sum += h.day_unique[lo..hi].iter().sum::<u64>();
                let ids = self.type_ids.get(&h.month).map_or(&[][..], Vec::as_slice);
                if whole {
                    for (i, n) in ids.iter().zip(&h.type_counts) {
                        all_counts[*i] += n;
                    }
                    // Merged after the loop, in blocks.
                    whole_all.push(e);
                } else {
                    let days = self.days_part(e, false).await?;
                    let first = days.cells.partition_point(|c| c.date < from);
                    for c in days.cells[first..].iter().take_while(|c| c.date <= to) {
                        if let Some(i) = ids.get(c.ty as usize) {
                            all_counts[*i] += c.count;
                        }
                    }
                    if self.add_edge(e, lo, hi, &mut users).await? {
                        continue;
                    }
                    match self.day_piece(e, lo, hi).await? {
                        Some(u) => users.add(&u),
                        None => {
                            for s in self
                                .days_part(e, true)
                                .await?
                                .day_users
                                .get(lo..hi)
                                .unwrap_or_default()
                            {
                                users.add(s);
                            }
                        }
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
                if whole {
                    *counts.entry(t).or_default() += h.type_counts[ti];
                    // Merged after the loop, a year's run of whole months at a time.
                    whole_months.entry(t).or_default().push((e, ti));
                    if types.len() == 1 {
                        summary.unique_users_daily_sum += h.type_unique_sum[ti];
                    }
                } else if types.len() == 1 {
                    // Keyed by the month's first and last day in range that hold data, so
                    // ranges that differ only in empty days share it.
                    let p = self.type_piece(e, ti, h.dates[lo], h.dates[hi - 1]).await?;
                    *counts.entry(t).or_default() += p.count;
                    summary.unique_users_daily_sum += p.unique_sum;
                    users.add(&p.users);
                } else {
                    let p = self.type_piece(e, ti, h.dates[lo], h.dates[hi - 1]).await?;
                    *counts.entry(t).or_default() += p.count;
                    users.add(&p.users);
                }
                if types.len() > 1 {
                    // Several types need their days for the per-day unions.
                    let tm = self.type_month(e, ti).await?;
                    for d in tm.days.iter().filter(|d| d.date >= from && d.date <= to) {
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
        self.add_whole_months(&whole_all, &mut users)?;
        // Each type's whole months: one union per year where the year's object serves them
        // all, the month sketches otherwise.
        for (t, months) in whole_months {
            for run in months
                .chunk_by(|a, b| a.0.head.month.div_euclid(12) == b.0.head.month.div_euclid(12))
            {
                let (first, last) = (run[0].0, run[run.len() - 1].0);
                let merged = match run.len() {
                    1 => None,
                    _ => self.year_run(t, first, last).await?,
                };
                match merged {
                    Some(u) => users.add(&u),
                    None => {
                        for (e, ti) in run {
                            users.add(&*self.type_users(e, *ti).await?);
                        }
                    }
                }
            }
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

impl View {
    /// Per day with data in the filter's range: events split over `split` (types outside it
    /// count as other) and the day's distinct users over the filtered types (all types when the
    /// filter names none). One union per day for several types; a stored count otherwise.
    pub async fn daily(&self, f: &Filter, split: &[String]) -> Result<Daily, LakeError> {
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        let mut out = Daily {
            types: split.to_vec(),
            days: Vec::new(),
        };
        if from > to {
            return Ok(out);
        }
        let slot = |t: &str| split.iter().position(|s| s == t);
        let mut types: Vec<&str> = f.types.iter().map(String::as_str).collect();
        types.sort_unstable();
        types.dedup();
        for (e, lo, hi) in self.months_in(f) {
            let h = &e.head;
            // The month's days in range, in date order, filled below.
            let mut points: BTreeMap<i32, (DayPoint, SketchMerger)> = BTreeMap::new();
            let point = |date: i32| DayPoint {
                event_date: format_date(date),
                event_count: 0,
                unique_users: 0,
                by_type: vec![0; split.len()],
                other_count: 0,
            };
            if types.is_empty() {
                let slots: Vec<Option<usize>> = h.types.iter().map(|t| slot(t)).collect();
                for (i, date) in h.dates[lo..hi].iter().enumerate() {
                    let mut p = point(*date);
                    p.unique_users = h.day_unique[lo + i];
                    points.insert(*date, (p, SketchMerger::default()));
                }
                let days = self.days_part(e, false).await?;
                let first = days.cells.partition_point(|c| c.date < from);
                for c in days.cells[first..].iter().take_while(|c| c.date <= to) {
                    if let Some((p, _)) = points.get_mut(&c.date) {
                        p.event_count += c.count;
                        match slots.get(c.ty as usize).copied().flatten() {
                            Some(i) => p.by_type[i] += c.count,
                            None => p.other_count += c.count,
                        }
                    }
                }
            } else {
                for &t in &types {
                    let Ok(ti) = h.types.binary_search_by(|x| x.as_str().cmp(t)) else {
                        continue;
                    };
                    let tm = self.type_month(e, ti).await?;
                    for d in tm.days.iter().filter(|d| d.date >= from && d.date <= to) {
                        let (p, users) = points
                            .entry(d.date)
                            .or_insert_with(|| (point(d.date), SketchMerger::default()));
                        p.event_count += d.count;
                        match slot(t) {
                            Some(i) => p.by_type[i] += d.count,
                            None => p.other_count += d.count,
                        }
                        if types.len() == 1 {
                            p.unique_users = d.unique;
                        } else {
                            users
                                .add_bytes(&d.sketch)
                                .map_err(|e| LakeError::Rollup(e.to_string()))?;
                        }
                    }
                }
                if types.len() > 1 {
                    for (p, users) in points.values_mut() {
                        p.unique_users = round(users.estimate());
                    }
                }
            }
            out.days.extend(points.into_values().map(|(p, _)| p));
        }
        Ok(out)
    }
}

pub(super) fn built_entry(b: Arc<MonthBuild>, signature: String) -> MonthEntry {
    MonthEntry {
        head: Arc::new(b.head.clone()),
        source: Source::Built(b),
        signature,
    }
}
