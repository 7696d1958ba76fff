//! The analytics read model: daily aggregate partials from the lake, merged into per
//! (event_date, event_type) cells, with a segment tree of per-day merged sketches so that the
//! distinct users of any date range cost O(log days) sketch unions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::event::{format_date, parse_date};
use crate::parquet::{aggregate_covers, decode_aggregate_rows, AggregateRow, ParquetError};
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

#[derive(Debug, Clone)]
pub struct Cell {
    pub event_count: u64,
    pub users: UserSketch,
    pub unique_users: u64,
}

/// An immutable view of the lake at one point in time. Every per-day structure is indexed by the
/// days that hold data, never by the calendar span between the first and the last: one event in
/// year 9999 adds one day, not three million.
#[derive(Debug, Default)]
pub struct Snapshot {
    cells: BTreeMap<(i32, String), Cell>,
    types: BTreeSet<String>,
    /// Days with data, ascending; position `i` in every per-day vector below is `dates[i]`.
    dates: Vec<i32>,
    /// Segment tree over `dates` (leaves at `n..2*n`): merged sketch of all types.
    tree: Vec<Option<UserSketch>>,
    /// Distinct users of each day (all types), precomputed.
    day_unique: Vec<u64>,
    /// Per type (in `types` order): prefix sums of event counts over `dates`, `n + 1` long, so
    /// totals over any range cost O(types).
    prefix_counts: Vec<Vec<u64>>,
    /// Per type, built at its first filtered query (so cold starts do not pay for it): the merged
    /// sketch of each calendar month (`year * 12 + month0`) with data, so a filtered range costs
    /// one union per whole month plus one per day at its two ends, not one per day.
    type_months: HashMap<String, std::sync::OnceLock<BTreeMap<i32, UserSketch>>>,
    pub files: usize,
}

/// `year * 12 + month0` of a day number (days since 1970-01-01).
fn month_of(day: i32) -> i32 {
    use chrono::Datelike;
    match chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163) {
        Some(d) => d.year() * 12 + d.month0() as i32,
        None => i32::MIN,
    }
}

/// First and last day number of a month from [`month_of`].
fn month_bounds(month: i32) -> Option<(i32, i32)> {
    let (y, m0) = (month.div_euclid(12), month.rem_euclid(12) as u32);
    let first = chrono::NaiveDate::from_ymd_opt(y, m0 + 1, 1)?;
    let next = if m0 == 11 {
        chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)?
    } else {
        chrono::NaiveDate::from_ymd_opt(y, m0 + 2, 1)?
    };
    use chrono::Datelike;
    Some((
        first.num_days_from_ce() - 719_163,
        next.num_days_from_ce() - 719_163 - 1,
    ))
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

fn round(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

impl Snapshot {
    pub fn build(files: &[&AggregateFile]) -> Self {
        let mut by_date: BTreeMap<i32, Vec<&AggregateFile>> = BTreeMap::new();
        for f in files {
            by_date.entry(f.date).or_default().push(f);
        }
        let mut merging: BTreeMap<(i32, String), (u64, SketchMerger)> = BTreeMap::new();
        let mut counted = 0;
        for (date, fs) in &by_date {
            for f in effective_files(fs) {
                counted += 1;
                for row in &f.rows {
                    let e = merging.entry((*date, row.event_type.clone())).or_default();
                    e.0 += row.event_count;
                    e.1.add(&row.users);
                }
            }
        }
        let cells: BTreeMap<(i32, String), Cell> = merging
            .into_iter()
            .map(|(k, (n, m))| {
                let users = m.finish();
                let unique_users = round(users.estimate());
                (
                    k,
                    Cell {
                        event_count: n,
                        users,
                        unique_users,
                    },
                )
            })
            .collect();
        let types: BTreeSet<String> = cells.keys().map(|(_, t)| t.clone()).collect();
        let mut dates: Vec<i32> = cells.keys().map(|(d, _)| *d).collect();
        dates.dedup();
        let days = dates.len();
        let pos = |d: i32| dates.partition_point(|x| *x < d);
        let mut tree: Vec<Option<UserSketch>> = vec![None; 2 * days];
        let mut day_mergers: Vec<Option<SketchMerger>> = (0..days).map(|_| None).collect();
        for ((d, _), c) in &cells {
            day_mergers[pos(*d)]
                .get_or_insert_with(SketchMerger::default)
                .add(&c.users);
        }
        for (i, m) in day_mergers.into_iter().enumerate() {
            tree[days + i] = m.map(SketchMerger::finish);
        }
        for i in (1..days).rev() {
            tree[i] = match (&tree[2 * i], &tree[2 * i + 1]) {
                (Some(a), Some(b)) => {
                    let mut m = SketchMerger::default();
                    m.add(a);
                    m.add(b);
                    Some(m.finish())
                }
                (Some(a), None) | (None, Some(a)) => Some(a.clone()),
                (None, None) => None,
            };
        }
        let day_unique = (0..days)
            .map(|i| tree[days + i].as_ref().map_or(0, |s| round(s.estimate())))
            .collect();
        // One pass over the cells, then prefix sums per type.
        let type_index: HashMap<&str, usize> = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut prefix_counts = vec![vec![0u64; days + 1]; types.len()];
        for ((d, t), c) in &cells {
            if let Some(&ti) = type_index.get(t.as_str()) {
                prefix_counts[ti][pos(*d) + 1] += c.event_count;
            }
        }
        for per_day in &mut prefix_counts {
            for i in 1..=days {
                per_day[i] += per_day[i - 1];
            }
        }
        let type_months = types
            .iter()
            .map(|t| (t.clone(), std::sync::OnceLock::new()))
            .collect();
        Snapshot {
            cells,
            types,
            dates,
            tree,
            day_unique,
            prefix_counts,
            type_months,
            files: counted,
        }
    }

    /// Positions `[lo, hi)` in `dates` of the days within the filter's range, if any.
    fn day_span(&self, f: &Filter) -> Option<(usize, usize)> {
        let lo = f.from.map_or(0, |d| self.dates.partition_point(|x| *x < d));
        let hi = f.to.map_or(self.dates.len(), |d| {
            self.dates.partition_point(|x| *x <= d)
        });
        (lo < hi).then_some((lo, hi))
    }

    /// Approximate heap bytes held: what the read model costs a warm function.
    pub fn heap_bytes(&self) -> usize {
        const SKETCH: usize = (1 << crate::sketch::LG_K) + 64;
        let cells: usize = self.cells.keys().map(|(_, t)| t.len() + 64 + SKETCH).sum();
        let tree = self.tree.iter().flatten().count() * SKETCH
            + self.tree.capacity() * std::mem::size_of::<Option<UserSketch>>();
        let prefix: usize = self.prefix_counts.iter().map(|v| v.capacity() * 8).sum();
        cells + tree + prefix + self.dates.capacity() * 4 + self.day_unique.capacity() * 8
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn event_types(&self) -> &BTreeSet<String> {
        &self.types
    }

    /// First and last day with data.
    pub fn bounds(&self) -> Option<(i32, i32)> {
        Some((*self.dates.first()?, *self.dates.last()?))
    }

    fn in_range<'a>(
        &'a self,
        f: &'a Filter,
    ) -> impl Iterator<Item = (&'a (i32, String), &'a Cell)> + 'a {
        let lo = (f.from.unwrap_or(i32::MIN), String::new());
        self.cells
            .range(lo..)
            .take_while(move |((d, _), _)| f.to.is_none_or(|to| *d <= to))
            .filter(move |((_, t), _)| f.types.is_empty() || f.types.iter().any(|x| x == t))
    }

    /// Rows sorted by date then type, strictly after `after`, at most `limit`; plus the key to
    /// continue from when more rows remain.
    pub fn metrics(
        &self,
        f: &Filter,
        limit: usize,
        after: Option<&(i32, String)>,
    ) -> (Vec<MetricRow>, Option<(i32, String)>) {
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut iter = self
            .in_range(f)
            .filter(|(k, _)| after.is_none_or(|a| *k > a))
            .peekable();
        let mut last = None;
        while rows.len() < limit {
            let Some(((d, t), c)) = iter.next() else {
                break;
            };
            rows.push(MetricRow {
                event_date: format_date(*d),
                event_type: t.clone(),
                event_count: c.event_count,
                unique_users: c.unique_users,
            });
            last = Some((*d, t.clone()));
        }
        let next = if iter.peek().is_some() { last } else { None };
        (rows, next)
    }

    pub fn summary(&self, f: &Filter) -> Summary {
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
        let Some((lo, hi)) = self.day_span(f) else {
            return summary;
        };
        for (t, prefix) in self.types.iter().zip(&self.prefix_counts) {
            if !f.types.is_empty() && !f.types.iter().any(|x| x == t) {
                continue;
            }
            let n = prefix[hi] - prefix[lo];
            if n > 0 {
                summary.total_events += n;
                summary.events_by_type.insert(t.clone(), n);
            }
        }
        if f.types.is_empty() {
            summary.unique_users_daily_sum = self.day_unique[lo..hi].iter().sum();
            summary.unique_users = self.range_users(lo, hi);
        } else {
            let (first, last) = (self.dates[lo], self.dates[hi - 1]);
            summary.unique_users = self.types_users(&f.types, first, last);
            summary.unique_users_daily_sum = if f.types.len() == 1 {
                // One type: a day's distinct users are its cell's.
                self.in_range(f).map(|(_, c)| c.unique_users).sum()
            } else {
                let mut per_day: BTreeMap<i32, SketchMerger> = BTreeMap::new();
                for ((d, _), c) in self.in_range(f) {
                    per_day.entry(*d).or_default().add(&c.users);
                }
                per_day.values().map(|m| round(m.estimate())).sum()
            };
        }
        summary
    }

    /// Distinct users of `types` over days `first..=last`: for each type, the merged sketch of
    /// every month wholly inside the range, and the day cells of the months at its two ends.
    fn types_users(&self, types: &[String], first: i32, last: i32) -> u64 {
        let mut all = SketchMerger::default();
        let (m_first, m_last) = (month_of(first), month_of(last));
        for t in types {
            let Some(months) = self.type_months.get(t) else {
                continue;
            };
            let months = months.get_or_init(|| self.months_of(t));
            for (&m, sketch) in months.range(m_first..=m_last) {
                let Some((start, end)) = month_bounds(m) else {
                    continue;
                };
                let (a, b) = (start.max(first), end.min(last));
                if (a, b) == (start, end) {
                    all.add(sketch);
                    continue;
                }
                for d in a..=b {
                    if let Some(c) = self.cells.get(&(d, t.clone())) {
                        all.add(&c.users);
                    }
                }
            }
        }
        round(all.estimate())
    }

    /// One type's merged sketch per month.
    fn months_of(&self, t: &str) -> BTreeMap<i32, UserSketch> {
        let mut mergers: BTreeMap<i32, SketchMerger> = BTreeMap::new();
        for ((d, _), c) in self.cells.iter().filter(|((_, ty), _)| ty == t) {
            mergers.entry(month_of(*d)).or_default().add(&c.users);
        }
        mergers.into_iter().map(|(m, s)| (m, s.finish())).collect()
    }

    /// Distinct users (every type) over positions `[lo, hi)` of `dates`, from O(log days) tree
    /// nodes.
    fn range_users(&self, lo: usize, hi: usize) -> u64 {
        let mut merger = SketchMerger::default();
        let n = self.dates.len();
        let (mut l, mut r) = (lo + n, hi + n);
        while l < r {
            if l & 1 == 1 {
                if let Some(s) = &self.tree[l] {
                    merger.add(s);
                }
                l += 1;
            }
            if r & 1 == 1 {
                r -= 1;
                if let Some(s) = &self.tree[r] {
                    merger.add(s);
                }
            }
            l >>= 1;
            r >>= 1;
        }
        round(merger.estimate())
    }
}

struct Loaded {
    snapshot: Arc<Snapshot>,
    files: HashMap<String, (Option<String>, Arc<AggregateFile>)>,
    checked: Instant,
    generation: u64,
}

/// Reads the lake through an [`ObjectStore`], keeping decoded files and the snapshot across warm
/// invocations. After `refresh` it lists the prefix again and fetches only new or changed
/// objects, so new data shows up within `refresh`.
pub struct LakeReader {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    layout: Layout,
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
        Self {
            store,
            bucket,
            layout,
            refresh,
            state: Mutex::new(None),
        }
    }

    /// The current snapshot and its generation (changes whenever the data does).
    pub async fn snapshot(&self) -> Result<(Arc<Snapshot>, u64), LakeError> {
        // One refresher at a time; readers of a fresh snapshot pass straight through.
        let mut state = self.state.lock().await;
        if let Some(l) = state.as_ref() {
            if l.checked.elapsed() < self.refresh {
                return Ok((l.snapshot.clone(), l.generation));
            }
        }
        let listed = self
            .store
            .list(&self.bucket, &self.layout.partitions_prefix())
            .await?;
        let mut old = state.take();
        let mut files: HashMap<String, (Option<String>, Arc<AggregateFile>)> = HashMap::new();
        let mut to_fetch = Vec::new();
        for meta in listed.into_iter().filter(|m| m.key.ends_with(".parquet")) {
            match old.as_mut().and_then(|o| o.files.remove(&meta.key)) {
                Some((etag, f)) if etag == meta.etag && etag.is_some() => {
                    files.insert(meta.key, (etag, f));
                }
                _ => to_fetch.push(meta),
            }
        }
        // Files gone since the last look (or no look yet) change the answer; so does any fetch.
        let mut changed = old.as_ref().is_none_or(|o| !o.files.is_empty());
        // Compacted files first: the partials they cover are never fetched.
        let (compacted, partials): (Vec<_>, Vec<_>) = to_fetch
            .into_iter()
            .partition(|m| name_of(&m.key).starts_with("compacted-"));
        for (key, etag, f) in self.fetch(compacted).await? {
            changed = true;
            files.insert(key, (etag, Arc::new(f)));
        }
        let covered: BTreeSet<(i32, String)> = files
            .values()
            .flat_map(|(_, f)| f.covers.iter().map(|c| (f.date, c.clone())))
            .collect();
        let partials: Vec<ObjectMeta> = partials
            .into_iter()
            .filter(|m| {
                let date = self
                    .layout
                    .date_of_aggregate_key(&m.key)
                    .and_then(parse_date);
                date.is_none_or(|d| !covered.contains(&(d, name_of(&m.key).to_owned())))
            })
            .collect();
        for (key, etag, f) in self.fetch(partials).await? {
            changed = true;
            files.insert(key, (etag, Arc::new(f)));
        }
        let (snapshot, generation) = match old {
            Some(o) if !changed => (o.snapshot, o.generation),
            o => {
                let all: Vec<Arc<AggregateFile>> = files.values().map(|(_, f)| f.clone()).collect();
                let snap = tokio::task::spawn_blocking(move || {
                    let refs: Vec<&AggregateFile> = all.iter().map(|f| f.as_ref()).collect();
                    Snapshot::build(&refs)
                })
                .await
                .map_err(|e| LakeError::Internal(e.to_string()))?;
                (Arc::new(snap), o.map_or(1, |o| o.generation + 1))
            }
        };
        *state = Some(Loaded {
            snapshot: snapshot.clone(),
            files,
            checked: Instant::now(),
            generation,
        });
        Ok((snapshot, generation))
    }
}

impl LakeReader {
    /// Fetches and decodes aggregate files, 16 at a time.
    async fn fetch(
        &self,
        metas: Vec<ObjectMeta>,
    ) -> Result<Vec<(String, Option<String>, AggregateFile)>, LakeError> {
        let mut out = Vec::with_capacity(metas.len());
        let mut set = tokio::task::JoinSet::new();
        let mut pending = metas.into_iter();
        loop {
            while set.len() < 16 {
                let Some(meta) = pending.next() else { break };
                let (store, bucket, layout) =
                    (self.store.clone(), self.bucket.clone(), self.layout.clone());
                set.spawn(async move {
                    let Some(bytes) = store.get(&bucket, &meta.key).await? else {
                        return Ok::<_, LakeError>(None);
                    };
                    let file = AggregateFile::decode(&layout, &meta.key, &bytes)?;
                    Ok(file.map(|f| (meta.key, meta.etag, f)))
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            if let Some(found) = done.map_err(|e| LakeError::Internal(e.to_string()))?? {
                out.push(found);
            }
        }
        Ok(out)
    }
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

    fn snapshot(files: &[AggregateFile]) -> Snapshot {
        Snapshot::build(&files.iter().collect::<Vec<_>>())
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
        let all = s.summary(&Filter::default());
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
        let view = s.summary(&Filter {
            types: vec!["view".into()],
            ..Default::default()
        });
        assert_eq!((view.total_events, view.unique_users), (3, 3));
        let (rows, next) = s.metrics(&Filter::default(), 2, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].event_type.as_str(),
                rows[0].event_count,
                rows[0].unique_users
            ),
            ("click", 15, 8)
        );
        let (rest, none) = s.metrics(&Filter::default(), 10, next.as_ref());
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event_date, "2024-01-03");
        assert!(none.is_none());
        let jan3 = Filter {
            from: parse_date("2024-01-02"),
            to: parse_date("2024-01-03"),
            types: vec![],
        };
        assert_eq!(s.summary(&jan3).unique_users, 10);
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
            let via_tree = s.summary(&f).unique_users;
            let direct = s
                .summary(&Filter {
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
            let sum = s.summary(&Filter::default());
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
        assert_eq!(s.summary(&Filter::default()).total_events, 16);
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
        let all = s_hostile.summary(&Filter::default());
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
        let mid = s_hostile.summary(&f("2024-02-01", "2024-02-10"));
        assert_eq!((mid.total_events, mid.unique_users), (70, 60));
        assert_eq!(
            s_hostile
                .summary(&f("2030-01-01", "2030-12-31"))
                .total_events,
            0
        );
        assert_eq!(
            s_hostile
                .summary(&f("9000-01-01", "9999-12-31"))
                .total_events,
            1
        );
        assert_eq!(
            s_hostile
                .summary(&f("0999-01-01", "1999-01-01"))
                .unique_users,
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
                for (_, c) in s.in_range(&f) {
                    direct.add(&c.users);
                }
                assert_eq!(
                    s.summary(&f).unique_users,
                    round(direct.estimate()),
                    "days {a}..={b} {types:?}"
                );
            }
        }
    }

    #[test]
    fn empty_lake() {
        let s = snapshot(&[]);
        assert!(s.is_empty());
        assert_eq!(s.summary(&Filter::default()).total_events, 0);
    }
}
