//! Monthly rollups of the daily aggregates, so the read side loads what a request's range needs
//! instead of the whole history.
//!
//! Per month three shapes, each small:
//! - the *head* (in the catalog, always resident): days with data, per-day distinct users of all
//!   types, per-type event counts and sums of per-day distinct users, and the month's merged
//!   sketch of all types;
//! - *days* (`days.json`): every (day, type) cell's count and estimate, and each day's merged
//!   sketch of all types — for ranges that cut a month and for `/analytics/metrics`;
//! - per type (`t{i}.json`, `i` its position in the head's sorted types): the type's month sketch
//!   and its day sketches — for summaries filtered by `event_type`.
//!
//! A rollup version of a month lives under its own prefix and is never rewritten; the catalog
//! (`catalog.json`, one PUT) names the current version of each month and the daily files it was
//! built from. A reader uses a month's rollup only while the listing still shows exactly those
//! files; otherwise it builds the month from the daily files, with the same code, so answers are
//! the same before, during and after a rollup is written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::analytics::{effective_files, name_of, round, AggregateFile, LakeError};
use crate::event::format_date;
use crate::sketch::{SketchMerger, UserSketch};
use crate::source::Layout;
use crate::storage::{Body, ObjectMeta, ObjectStore};

const FORMAT: u32 = 1;
const JSON: &str = "application/json";

/// `year * 12 + month0` of a day number (days since 1970-01-01).
pub fn month_of(day: i32) -> i32 {
    use chrono::Datelike;
    match chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163) {
        Some(d) => d.year() * 12 + d.month0() as i32,
        None => i32::MIN,
    }
}

/// `YYYY-MM` of a [`month_of`] number.
pub fn month_label(month: i32) -> String {
    format!(
        "{:04}-{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

fn parse_month(label: &str) -> Option<i32> {
    let (y, m) = label.split_once('-')?;
    let (y, m): (i32, i32) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some(y * 12 + m - 1)
}

/// What stays resident for every month.
#[derive(Debug, Clone)]
pub struct MonthHead {
    pub month: i32,
    /// Days with data, ascending.
    pub dates: Vec<i32>,
    /// Distinct users of each day in `dates`, all types.
    pub day_unique: Vec<u64>,
    /// Event types present, sorted.
    pub types: Vec<String>,
    /// Per type in `types`: events over the month.
    pub type_counts: Vec<u64>,
    /// Per type: the sum over days of that type's daily distinct users.
    pub type_unique_sum: Vec<u64>,
    /// All types over the whole month.
    pub users: UserSketch,
}

impl MonthHead {
    pub fn heap_bytes(&self) -> usize {
        SKETCH_BYTES
            + self.dates.len() * 12
            + self.types.iter().map(|t| t.len() + 40).sum::<usize>()
    }
}

/// Heap of one decoded (HLL_8) sketch.
pub const SKETCH_BYTES: usize = (1 << crate::sketch::LG_K) + 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCell {
    pub date: i32,
    /// Position of the type in the month's [`MonthHead::types`].
    pub ty: u32,
    pub count: u64,
    pub unique: u64,
}

/// A month's cells and per-day sketches.
#[derive(Debug, Clone)]
pub struct MonthDays {
    /// Sorted by (date, type).
    pub cells: Vec<DayCell>,
    /// Per day of the head's `dates`: the sketch of all types, decoded once at load because
    /// every range that cuts the month unions some of them.
    pub day_users: Vec<UserSketch>,
}

impl MonthDays {
    pub fn heap_bytes(&self) -> usize {
        self.cells.len() * std::mem::size_of::<DayCell>() + self.day_users.len() * SKETCH_BYTES
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DaysWire {
    cells: Vec<DayCell>,
    #[serde(with = "b64_list")]
    day_users: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeDay {
    pub date: i32,
    pub count: u64,
    pub unique: u64,
    #[serde(with = "b64")]
    pub sketch: Vec<u8>,
}

/// One type over one month.
#[derive(Debug, Clone)]
pub struct TypeMonth {
    /// Shared with the reader's cache of month sketches, which outlives the day sketches.
    pub users: Arc<UserSketch>,
    /// Days with data of this type, ascending.
    pub days: Vec<TypeDay>,
}

impl TypeMonth {
    pub fn heap_bytes(&self) -> usize {
        SKETCH_BYTES + self.days.iter().map(|d| d.sketch.len() + 48).sum::<usize>()
    }
}

/// Everything of one month, built from its daily files.
#[derive(Debug, Clone)]
pub struct MonthBuild {
    pub head: MonthHead,
    pub days: Arc<MonthDays>,
    pub types: Vec<Arc<TypeMonth>>,
}

impl MonthBuild {
    /// Builds a month from its aggregate files (any mix of partials and compacted files; only
    /// the effective ones of each date count).
    pub fn from_files(month: i32, files: &[&AggregateFile]) -> Self {
        let mut by_date: BTreeMap<i32, Vec<&AggregateFile>> = BTreeMap::new();
        for f in files.iter().filter(|f| month_of(f.date) == month) {
            by_date.entry(f.date).or_default().push(f);
        }
        // (type, date) -> count and merged sketch.
        let mut merging: BTreeMap<(&str, i32), (u64, SketchMerger)> = BTreeMap::new();
        for (date, fs) in &by_date {
            for f in effective_files(fs) {
                for row in &f.rows {
                    let e = merging.entry((row.event_type.as_str(), *date)).or_default();
                    e.0 += row.event_count;
                    e.1.add(&row.users);
                }
            }
        }
        let types: Vec<String> = merging
            .keys()
            .map(|(t, _)| *t)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let dates: Vec<i32> = merging
            .keys()
            .map(|(_, d)| *d)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let pos = |d: i32| dates.partition_point(|x| *x < d);
        let mut day_mergers: Vec<SketchMerger> =
            dates.iter().map(|_| SketchMerger::default()).collect();
        let mut month_all = SketchMerger::default();
        let mut cells = Vec::with_capacity(merging.len());
        let mut type_months = Vec::with_capacity(types.len());
        let mut type_counts = vec![0; types.len()];
        let mut type_unique_sum = vec![0; types.len()];
        let mut current: Option<(usize, SketchMerger, Vec<TypeDay>)> = None;
        let flush = |cur: Option<(usize, SketchMerger, Vec<TypeDay>)>,
                     out: &mut Vec<Arc<TypeMonth>>| {
            if let Some((_, m, days)) = cur {
                out.push(Arc::new(TypeMonth {
                    users: Arc::new(m.finish()),
                    days,
                }));
            }
        };
        for ((t, d), (count, merger)) in merging {
            let ti = types.partition_point(|x| x.as_str() < t);
            let sketch = merger.finish();
            let unique = round(sketch.estimate());
            day_mergers[pos(d)].add(&sketch);
            month_all.add(&sketch);
            type_counts[ti] += count;
            type_unique_sum[ti] += unique;
            cells.push(DayCell {
                date: d,
                ty: ti as u32,
                count,
                unique,
            });
            if current.as_ref().is_none_or(|(i, _, _)| *i != ti) {
                flush(current.take(), &mut type_months);
                current = Some((ti, SketchMerger::default(), Vec::new()));
            }
            if let Some((_, m, days)) = current.as_mut() {
                m.add(&sketch);
                days.push(TypeDay {
                    date: d,
                    count,
                    unique,
                    sketch: sketch.to_bytes(),
                });
            }
        }
        flush(current, &mut type_months);
        cells.sort_by_key(|c| (c.date, c.ty));
        let mut day_unique = Vec::with_capacity(dates.len());
        let mut day_users = Vec::with_capacity(dates.len());
        for m in day_mergers {
            let s = m.finish();
            day_unique.push(round(s.estimate()));
            day_users.push(s);
        }
        MonthBuild {
            head: MonthHead {
                month,
                dates,
                day_unique,
                types,
                type_counts,
                type_unique_sum,
                users: month_all.finish(),
            },
            days: Arc::new(MonthDays { cells, day_users }),
            types: type_months,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.head.heap_bytes()
            + self.days.heap_bytes()
            + self.types.iter().map(|t| t.heap_bytes()).sum::<usize>()
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod b64_list {
    use base64::Engine;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<&str>::deserialize(d)?;
        v.into_iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

fn sketch_of(bytes: &[u8], what: &str) -> Result<UserSketch, LakeError> {
    UserSketch::from_bytes(bytes).map_err(|e| LakeError::Rollup(format!("{what}: {e}")))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeadWire {
    month: String,
    dates: Vec<i32>,
    day_unique: Vec<u64>,
    types: Vec<String>,
    type_counts: Vec<u64>,
    type_unique_sum: Vec<u64>,
    #[serde(with = "b64")]
    users: Vec<u8>,
}

impl HeadWire {
    fn of(h: &MonthHead) -> Self {
        Self {
            month: month_label(h.month),
            dates: h.dates.clone(),
            day_unique: h.day_unique.clone(),
            types: h.types.clone(),
            type_counts: h.type_counts.clone(),
            type_unique_sum: h.type_unique_sum.clone(),
            users: h.users.to_bytes(),
        }
    }

    fn decode(&self) -> Result<MonthHead, LakeError> {
        let month = parse_month(&self.month)
            .ok_or_else(|| LakeError::Rollup(format!("bad month '{}'", self.month)))?;
        let n = self.types.len();
        if self.day_unique.len() != self.dates.len()
            || self.type_counts.len() != n
            || self.type_unique_sum.len() != n
        {
            return Err(LakeError::Rollup(format!(
                "month {}: column lengths disagree",
                self.month
            )));
        }
        Ok(MonthHead {
            month,
            dates: self.dates.clone(),
            day_unique: self.day_unique.clone(),
            types: self.types.clone(),
            type_counts: self.type_counts.clone(),
            type_unique_sum: self.type_unique_sum.clone(),
            users: sketch_of(&self.users, &self.month)?,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TypeWire {
    #[serde(with = "b64")]
    users: Vec<u8>,
    days: Vec<TypeDay>,
}

/// A month's entry in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogMonth {
    /// Where this version's `days.json` and `t{i}.json` are.
    pub prefix: String,
    /// The daily files it was built from (`YYYY-MM-DD/name` -> ETag).
    pub files: BTreeMap<String, String>,
    /// Files those cover (`YYYY-MM-DD/name`): still listed until compaction archives them, and
    /// counted through the file that covers them.
    pub covered: BTreeSet<String>,
    head: HeadWire,
}

impl CatalogMonth {
    pub fn head(&self) -> Result<MonthHead, LakeError> {
        self.head.decode()
    }

    /// Whether the month's listed daily files are exactly the ones this version was built from.
    pub fn matches(&self, listed: &[ObjectMeta], layout: &Layout) -> bool {
        self.changed_dates(listed, layout)
            .is_some_and(|c| c.is_empty())
    }

    /// The dates whose listed files differ from the ones this version was built from: a new
    /// file that nothing covers, or a counted file gone or changed. `None` when a listed key
    /// names no date.
    pub fn changed_dates(&self, listed: &[ObjectMeta], layout: &Layout) -> Option<BTreeSet<i32>> {
        let mut changed = BTreeSet::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for m in listed {
            let date = layout
                .date_of_aggregate_key(&m.key)
                .and_then(crate::event::parse_date)?;
            let id = file_id(layout, &m.key)?;
            match (self.files.get_key_value(&id), &m.etag) {
                (Some((k, want)), Some(etag)) if want == etag => {
                    seen.insert(k.as_str());
                }
                (None, _) if self.covered.contains(&id) => {}
                _ => {
                    changed.insert(date);
                }
            }
        }
        for id in self.files.keys().filter(|k| !seen.contains(k.as_str())) {
            let date = id
                .split_once('/')
                .and_then(|(d, _)| crate::event::parse_date(d))?;
            changed.insert(date);
        }
        Some(changed)
    }
}

/// A month's rollup with some dates replaced by a fresh build of their daily files: new data
/// since the last rollup costs a build of the dates it touched, not of the month.
#[derive(Debug)]
pub struct Patch {
    /// The rollup's types, in its order (its `t{i}.json` objects).
    pub rollup_types: Vec<String>,
    /// Built from the changed dates' files only.
    pub fresh: MonthBuild,
    pub changed: BTreeSet<i32>,
    pub days: Arc<MonthDays>,
}

impl Patch {
    /// The rollup's head and days with `changed` dates taken from `fresh` instead.
    pub fn new(
        rollup: &MonthHead,
        rollup_days: &MonthDays,
        fresh: MonthBuild,
        changed: BTreeSet<i32>,
    ) -> (MonthHead, Self) {
        let mut types: BTreeSet<&str> = fresh.head.types.iter().map(String::as_str).collect();
        let kept = |d: &i32| !changed.contains(d);
        types.extend(
            rollup_days
                .cells
                .iter()
                .filter(|c| kept(&c.date))
                .filter_map(|c| rollup.types.get(c.ty as usize))
                .map(String::as_str),
        );
        let types: Vec<String> = types.into_iter().map(str::to_owned).collect();
        let index = |t: &str| types.partition_point(|x| x.as_str() < t) as u32;
        let mut cells: Vec<DayCell> = rollup_days
            .cells
            .iter()
            .filter(|c| kept(&c.date))
            .filter_map(|c| {
                let t = rollup.types.get(c.ty as usize)?;
                Some(DayCell { ty: index(t), ..*c })
            })
            .chain(fresh.days.cells.iter().map(|c| DayCell {
                ty: index(&fresh.head.types[c.ty as usize]),
                ..*c
            }))
            .collect();
        cells.sort_by_key(|c| (c.date, c.ty));
        let mut per_day: BTreeMap<i32, (u64, UserSketch)> = BTreeMap::new();
        for (i, d) in rollup.dates.iter().enumerate().filter(|(_, d)| kept(d)) {
            if let (Some(u), Some(s)) = (rollup.day_unique.get(i), rollup_days.day_users.get(i)) {
                per_day.insert(*d, (*u, s.clone()));
            }
        }
        for (i, d) in fresh.head.dates.iter().enumerate() {
            per_day.insert(
                *d,
                (fresh.head.day_unique[i], fresh.days.day_users[i].clone()),
            );
        }
        let mut type_counts = vec![0; types.len()];
        let mut type_unique_sum = vec![0; types.len()];
        for c in &cells {
            type_counts[c.ty as usize] += c.count;
            type_unique_sum[c.ty as usize] += c.unique;
        }
        let mut all = SketchMerger::default();
        for (_, s) in per_day.values() {
            all.add(s);
        }
        let head = MonthHead {
            month: rollup.month,
            dates: per_day.keys().copied().collect(),
            day_unique: per_day.values().map(|(u, _)| *u).collect(),
            types,
            type_counts,
            type_unique_sum,
            users: all.finish(),
        };
        let days = Arc::new(MonthDays {
            cells,
            day_users: per_day.into_values().map(|(_, s)| s).collect(),
        });
        let patch = Patch {
            rollup_types: rollup.types.clone(),
            fresh,
            changed,
            days,
        };
        (head, patch)
    }

    /// One type over the month: the rollup's days of it outside the changed dates, and the fresh
    /// build's.
    pub fn type_month(&self, rollup: Option<&TypeMonth>, t: &str) -> Result<TypeMonth, LakeError> {
        let fresh = self
            .fresh
            .head
            .types
            .binary_search_by(|x| x.as_str().cmp(t))
            .ok()
            .and_then(|i| self.fresh.types.get(i));
        let mut days: Vec<TypeDay> = rollup
            .into_iter()
            .flat_map(|r| r.days.iter())
            .filter(|d| !self.changed.contains(&d.date))
            .chain(fresh.into_iter().flat_map(|f| f.days.iter()))
            .cloned()
            .collect();
        days.sort_by_key(|d| d.date);
        let mut all = SketchMerger::default();
        for d in &days {
            all.add_bytes(&d.sketch)
                .map_err(|e| LakeError::Rollup(e.to_string()))?;
        }
        Ok(TypeMonth {
            users: Arc::new(all.finish()),
            days,
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.fresh.heap_bytes() + self.days.heap_bytes()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub format: u32,
    pub written_ms: i64,
    /// By `YYYY-MM`.
    pub months: BTreeMap<String, CatalogMonth>,
    /// By `YYYY`: each type's month sketches of the year in one object, so a summary filtered by
    /// type over years reads one object per year, not one per month.
    #[serde(default)]
    pub years: BTreeMap<String, CatalogYear>,
}

/// One year's per-type objects (`y{i}.json`, `i` the type's position in `types`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogYear {
    pub prefix: String,
    pub types: Vec<String>,
    /// The month versions (`YYYY-MM` -> rollup prefix) the sketches were taken from: a reader
    /// uses a month's sketch only while that month is still served from that version.
    pub months: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct YearWire {
    months: Vec<YearMonth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct YearMonth {
    month: String,
    #[serde(with = "b64")]
    users: Vec<u8>,
}

pub fn year_key(prefix: &str, index: usize) -> String {
    format!("{prefix}y{index}.json")
}

/// A type's month sketches over one year, by [`month_of`] number.
pub fn decode_year(bytes: &[u8]) -> Result<Vec<(i32, Arc<UserSketch>)>, LakeError> {
    let w: YearWire =
        serde_json::from_slice(bytes).map_err(|e| LakeError::Rollup(format!("year: {e}")))?;
    w.months
        .iter()
        .map(|m| {
            let month = parse_month(&m.month)
                .ok_or_else(|| LakeError::Rollup(format!("bad month '{}'", m.month)))?;
            Ok((month, Arc::new(sketch_of(&m.users, &m.month)?)))
        })
        .collect()
}

/// `YYYY-MM-DD/name` of a daily aggregate key.
fn file_id(layout: &Layout, key: &str) -> Option<String> {
    Some(format!(
        "{}/{}",
        layout.date_of_aggregate_key(key)?,
        name_of(key)
    ))
}

pub fn catalog_key(layout: &Layout) -> String {
    format!("{}catalog.json", layout.rollup_prefix())
}

/// The catalog, if one was written. An unreadable catalog counts as none (every month is then
/// read from its daily files, and the next rollup writes a good one).
pub async fn read_catalog(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
) -> Result<Option<Catalog>, LakeError> {
    let Some(bytes) = store.get(bucket, &catalog_key(layout)).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Catalog>(&bytes) {
        Ok(c) if c.format == FORMAT => Ok(Some(c)),
        Ok(c) => {
            tracing::warn!(
                format = c.format,
                "rollup catalog of another format ignored"
            );
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable rollup catalog ignored");
            Ok(None)
        }
    }
}

/// Listed aggregate files grouped by month.
pub fn by_month(layout: &Layout, listed: Vec<ObjectMeta>) -> BTreeMap<i32, Vec<ObjectMeta>> {
    let mut out: BTreeMap<i32, Vec<ObjectMeta>> = BTreeMap::new();
    for m in listed.into_iter().filter(|m| m.key.ends_with(".parquet")) {
        let Some(date) = layout
            .date_of_aggregate_key(&m.key)
            .and_then(crate::event::parse_date)
        else {
            continue;
        };
        out.entry(month_of(date)).or_default().push(m);
    }
    out
}

pub type FileCache = HashMap<String, (Option<String>, Arc<AggregateFile>)>;

/// Fetches and decodes the files of `listed` that count, reusing `known` (key -> ETag, file)
/// where the ETag is unchanged: compacted files first, so the partials they cover are never
/// fetched.
pub async fn fetch_files(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    listed: &[ObjectMeta],
    known: &FileCache,
) -> Result<Vec<(ObjectMeta, Arc<AggregateFile>)>, LakeError> {
    let mut out = Vec::new();
    let mut to_fetch = Vec::new();
    for m in listed {
        match known.get(&m.key) {
            Some((etag, f)) if etag.is_some() && *etag == m.etag => {
                out.push((m.clone(), f.clone()))
            }
            _ => to_fetch.push(m.clone()),
        }
    }
    let (compacted, partials): (Vec<_>, Vec<_>) = to_fetch
        .into_iter()
        .partition(|m| name_of(&m.key).starts_with("compacted-"));
    out.extend(fetch(store, bucket, layout, compacted).await?);
    let covered: BTreeSet<(i32, &str)> = out
        .iter()
        .flat_map(|(_, f)| f.covers.iter().map(|c| (f.date, c.as_str())))
        .collect();
    let partials: Vec<ObjectMeta> = partials
        .into_iter()
        .filter(|m| {
            let date = layout
                .date_of_aggregate_key(&m.key)
                .and_then(crate::event::parse_date);
            date.is_none_or(|d| !covered.contains(&(d, name_of(&m.key))))
        })
        .collect();
    let more = fetch(store, bucket, layout, partials).await?;
    out.extend(more);
    Ok(out)
}

/// Fetches and decodes aggregate files, 16 at a time.
async fn fetch(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    metas: Vec<ObjectMeta>,
) -> Result<Vec<(ObjectMeta, Arc<AggregateFile>)>, LakeError> {
    let mut out = Vec::with_capacity(metas.len());
    let mut set = tokio::task::JoinSet::new();
    let mut pending = metas.into_iter();
    loop {
        while set.len() < 16 {
            let Some(meta) = pending.next() else { break };
            let (store, bucket, layout) = (store.clone(), bucket.to_owned(), layout.clone());
            set.spawn(async move {
                let Some(bytes) = store.get(&bucket, &meta.key).await? else {
                    return Ok::<_, LakeError>(None);
                };
                let file = AggregateFile::decode(&layout, &meta.key, &bytes)?;
                Ok(file.map(|f| (meta, Arc::new(f))))
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

/// Builds one month from its listed daily files.
pub async fn build_month(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    month: i32,
    listed: &[ObjectMeta],
    known: &FileCache,
) -> Result<(MonthBuild, Vec<(ObjectMeta, Arc<AggregateFile>)>), LakeError> {
    let files = fetch_files(store, bucket, layout, listed, known).await?;
    let refs: Vec<Arc<AggregateFile>> = files.iter().map(|(_, f)| f.clone()).collect();
    let build = tokio::task::spawn_blocking(move || {
        let refs: Vec<&AggregateFile> = refs.iter().map(|f| f.as_ref()).collect();
        MonthBuild::from_files(month, &refs)
    })
    .await
    .map_err(|e| LakeError::Internal(e.to_string()))?;
    Ok((build, files))
}

pub fn days_key(prefix: &str) -> String {
    format!("{prefix}days.json")
}

pub fn type_key(prefix: &str, index: usize) -> String {
    format!("{prefix}t{index}.json")
}

pub fn decode_days(bytes: &[u8]) -> Result<MonthDays, LakeError> {
    let w: DaysWire =
        serde_json::from_slice(bytes).map_err(|e| LakeError::Rollup(format!("days: {e}")))?;
    Ok(MonthDays {
        cells: w.cells,
        day_users: w
            .day_users
            .iter()
            .map(|b| sketch_of(b, "day"))
            .collect::<Result<_, _>>()?,
    })
}

pub fn decode_type(bytes: &[u8]) -> Result<TypeMonth, LakeError> {
    let w: TypeWire =
        serde_json::from_slice(bytes).map_err(|e| LakeError::Rollup(format!("type: {e}")))?;
    Ok(TypeMonth {
        users: Arc::new(sketch_of(&w.users, "type month")?),
        days: w.days,
    })
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, LakeError> {
    serde_json::to_vec(v).map_err(|e| LakeError::Internal(e.to_string()))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupReport {
    pub years_rebuilt: usize,
    pub months_rebuilt: usize,
    pub months_unchanged: usize,
    pub months_dropped: usize,
    pub objects_written: usize,
    pub objects_pruned: usize,
}

/// How long a superseded rollup version stays readable: readers holding the previous catalog
/// finish with it (and a reader that finds a version gone builds the month from its daily files).
pub const PRUNE_GRACE_MS: i64 = 15 * 60_000;

/// Brings the rollups up to date with the daily files: months whose files changed are rebuilt
/// under a new prefix, then the catalog is written (one PUT, so readers see the old or the new
/// catalog, each complete), then versions no catalog has named for `prune_grace_ms` are deleted.
/// Safe to run concurrently and again at any point: a run that loses the race for the catalog
/// leaves a month to be read from its daily files until the next run.
pub async fn refresh(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    now_ms: i64,
    prune_grace_ms: i64,
) -> Result<RollupReport, LakeError> {
    let listed = by_month(
        layout,
        store.list(bucket, &layout.partitions_prefix()).await?,
    );
    let old = read_catalog(store.as_ref(), bucket, layout)
        .await?
        .unwrap_or_default();
    let mut report = RollupReport::default();
    let mut catalog = Catalog {
        format: FORMAT,
        written_ms: now_ms,
        months: BTreeMap::new(),
        years: BTreeMap::new(),
    };
    // Month label -> type -> serialized month sketch, for the months rebuilt now.
    let mut fresh: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (month, metas) in &listed {
        let label = month_label(*month);
        if let Some(entry) = old.months.get(&label).filter(|e| e.matches(metas, layout)) {
            catalog.months.insert(label, entry.clone());
            report.months_unchanged += 1;
            continue;
        }
        let (build, files) =
            build_month(store, bucket, layout, *month, metas, &HashMap::new()).await?;
        let counted: BTreeSet<&str> = {
            let all: Vec<&AggregateFile> = files.iter().map(|(_, f)| f.as_ref()).collect();
            let mut per_date: BTreeMap<i32, Vec<&AggregateFile>> = BTreeMap::new();
            for f in all {
                per_date.entry(f.date).or_default().push(f);
            }
            per_date
                .values()
                .flat_map(|fs| effective_files(fs))
                .map(|f| f.key.as_str())
                .collect()
        };
        let mut entry_files = BTreeMap::new();
        let mut covered = BTreeSet::new();
        for (meta, f) in &files {
            let (Some(id), Some(etag)) = (file_id(layout, &meta.key), meta.etag.clone()) else {
                continue;
            };
            if counted.contains(meta.key.as_str()) {
                entry_files.insert(id, etag);
                let date = format_date(f.date);
                covered.extend(f.covers.iter().map(|c| format!("{date}/{c}")));
            } else {
                covered.insert(id);
            }
        }
        let prefix = format!(
            "{}month={label}/{now_ms}-{}/",
            layout.rollup_prefix(),
            uuid::Uuid::new_v4().simple()
        );
        let days = DaysWire {
            cells: build.days.cells.clone(),
            day_users: build.days.day_users.iter().map(|s| s.to_bytes()).collect(),
        };
        let mut puts: Vec<(String, Vec<u8>)> = vec![(days_key(&prefix), encode(&days)?)];
        let sketches = fresh.entry(label.clone()).or_default();
        for (i, t) in build.types.iter().enumerate() {
            let wire = TypeWire {
                users: t.users.to_bytes(),
                days: t.days.clone(),
            };
            puts.push((type_key(&prefix, i), encode(&wire)?));
            sketches.insert(build.head.types[i].clone(), wire.users);
        }
        report.objects_written += puts.len();
        put_all(store, bucket, puts).await?;
        catalog.months.insert(
            label,
            CatalogMonth {
                prefix,
                files: entry_files,
                covered,
                head: HeadWire::of(&build.head),
            },
        );
        report.months_rebuilt += 1;
    }
    report.months_dropped = old
        .months
        .keys()
        .filter(|k| !catalog.months.contains_key(*k))
        .count();
    let years_before = old.years.len();
    write_years(
        store,
        bucket,
        layout,
        &old,
        &mut catalog,
        fresh,
        now_ms,
        &mut report,
    )
    .await?;
    if report.months_rebuilt > 0
        || report.months_dropped > 0
        || old.format != FORMAT
        || report.years_rebuilt > 0
        || catalog.years.len() != years_before
    {
        store
            .put(
                bucket,
                &catalog_key(layout),
                Body::Bytes(encode(&catalog)?),
                JSON,
            )
            .await?;
        report.objects_written += 1;
    }
    report.objects_pruned = prune(store, bucket, layout, &catalog, now_ms, prune_grace_ms).await?;
    tracing::info!(
        months_rebuilt = report.months_rebuilt,
        months_unchanged = report.months_unchanged,
        months_dropped = report.months_dropped,
        objects_written = report.objects_written,
        objects_pruned = report.objects_pruned,
        "rollups refreshed"
    );
    Ok(report)
}

/// Writes the per-type year objects of every year whose months changed (or that has none yet).
/// Sketches come from this run's builds, else from the previous year object when it was built
/// from the same month version, else from the month's own type object.
#[allow(clippy::too_many_arguments)]
async fn write_years(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    old: &Catalog,
    catalog: &mut Catalog,
    fresh: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    now_ms: i64,
    report: &mut RollupReport,
) -> Result<(), LakeError> {
    let mut by_year: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (label, m) in &catalog.months {
        let year = label.split('-').next().unwrap_or_default().to_owned();
        by_year
            .entry(year)
            .or_default()
            .insert(label.clone(), m.prefix.clone());
    }
    for (year, months) in by_year {
        if let Some(y) = old.years.get(&year).filter(|y| y.months == months) {
            catalog.years.insert(year, y.clone());
            continue;
        }
        let previous = old.years.get(&year);
        let mut types: BTreeSet<&str> = BTreeSet::new();
        for label in months.keys() {
            if let Some(m) = catalog.months.get(label) {
                types.extend(m.head.types.iter().map(String::as_str));
            }
        }
        let types: Vec<String> = types.into_iter().map(str::to_owned).collect();
        let prefix = format!(
            "{}year={year}/{now_ms}-{}/",
            layout.rollup_prefix(),
            uuid::Uuid::new_v4().simple()
        );
        let mut puts = Vec::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            // The previous object of this type, read only if a month needs it.
            let mut before: Option<BTreeMap<String, Vec<u8>>> = None;
            let mut wire = YearWire { months: Vec::new() };
            for (label, month_prefix) in &months {
                let Some(m) = catalog.months.get(label) else {
                    continue;
                };
                let Ok(ti) = m.head.types.binary_search(t) else {
                    continue;
                };
                let users = match fresh.get(label).and_then(|f| f.get(t)) {
                    Some(b) => Some(b.clone()),
                    None => {
                        if before.is_none() {
                            before = Some(
                                previous_year_type(store, bucket, previous, t)
                                    .await?
                                    .unwrap_or_default(),
                            );
                        }
                        let reuse =
                            previous.is_some_and(|p| p.months.get(label) == Some(month_prefix));
                        match before.as_ref().and_then(|b| b.get(label)).filter(|_| reuse) {
                            Some(b) => Some(b.clone()),
                            None => store
                                .get(bucket, &type_key(month_prefix, ti))
                                .await?
                                .and_then(|bytes| serde_json::from_slice::<TypeWire>(&bytes).ok())
                                .map(|w| w.users),
                        }
                    }
                };
                if let Some(users) = users {
                    wire.months.push(YearMonth {
                        month: label.clone(),
                        users,
                    });
                }
            }
            puts.push((year_key(&prefix, i), encode(&wire)?));
        }
        report.objects_written += puts.len();
        put_all(store, bucket, puts).await?;
        report.years_rebuilt += 1;
        catalog.years.insert(
            year,
            CatalogYear {
                prefix,
                types,
                months,
            },
        );
    }
    Ok(())
}

/// A type's month sketches from the previous version of its year object, by month label.
async fn previous_year_type(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    previous: Option<&CatalogYear>,
    t: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, LakeError> {
    let Some(p) = previous else {
        return Ok(None);
    };
    let Ok(i) = p.types.binary_search_by(|x| x.as_str().cmp(t)) else {
        return Ok(None);
    };
    let Some(bytes) = store.get(bucket, &year_key(&p.prefix, i)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<YearWire>(&bytes)
        .ok()
        .map(|w| w.months.into_iter().map(|m| (m.month, m.users)).collect()))
}

async fn put_all(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    puts: Vec<(String, Vec<u8>)>,
) -> Result<(), LakeError> {
    let mut set = tokio::task::JoinSet::new();
    let mut pending = puts.into_iter();
    loop {
        while set.len() < 16 {
            let Some((key, bytes)) = pending.next() else {
                break;
            };
            let (store, bucket) = (store.clone(), bucket.to_owned());
            set.spawn(async move { store.put(&bucket, &key, Body::Bytes(bytes), JSON).await });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        done.map_err(|e| LakeError::Internal(e.to_string()))??;
    }
    Ok(())
}

/// Deletes rollup versions the catalog does not name, once older than the grace period. The
/// version's time is in its prefix, so objects without a listing time are judged too.
async fn prune(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    catalog: &Catalog,
    now_ms: i64,
    grace_ms: i64,
) -> Result<usize, LakeError> {
    let live: BTreeSet<&str> = catalog
        .months
        .values()
        .map(|m| m.prefix.as_str())
        .chain(catalog.years.values().map(|y| y.prefix.as_str()))
        .collect();
    let mut listed = store
        .list(bucket, &format!("{}month=", layout.rollup_prefix()))
        .await?;
    listed.extend(
        store
            .list(bucket, &format!("{}year=", layout.rollup_prefix()))
            .await?,
    );
    let mut pruned = 0;
    for m in listed {
        // `<root><label>/<ms>-<id>/<file>`
        let Some((version, _)) = m.key.rsplit_once('/') else {
            continue;
        };
        let prefix = format!("{version}/");
        if live.contains(prefix.as_str()) {
            continue;
        }
        let written = version
            .rsplit('/')
            .next()
            .and_then(|v| v.split('-').next())
            .and_then(|ms| ms.parse::<i64>().ok());
        if written.is_some_and(|w| now_ms - w >= grace_ms) {
            store.delete(bucket, &m.key).await?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_label_and_parse() {
        for (day, label) in [
            ("2024-01-01", "2024-01"),
            ("2024-12-31", "2024-12"),
            ("1000-01-01", "1000-01"),
            ("9999-12-31", "9999-12"),
        ] {
            let m = month_of(crate::event::parse_date(day).unwrap());
            assert_eq!(month_label(m), label);
            assert_eq!(parse_month(label), Some(m));
        }
        assert_eq!(parse_month("2024-13"), None);
        assert_eq!(parse_month("x"), None);
    }
}
