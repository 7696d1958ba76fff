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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::lake::{effective_files, round, AggregateFile};
use dataflow_sketch::{SketchMerger, UserSketch};

mod files;
mod patch;
mod wire;
mod writer;

pub use files::{build_month, by_month, fetch_files, FileCache};
pub use patch::Patch;
pub use wire::{
    catalog_key, days_key, decode_days, decode_edge_part, decode_type, decode_year, edges_key,
    encode_edges, read_catalog, type_key, year_key, Catalog, CatalogMonth, CatalogYear, EdgePart,
    MONTH_OBJECTS,
};
pub use writer::{refresh, RollupReport, PRUNE_GRACE_MS};

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
        self.users.heap_bytes()
            + self.dates.len() * 12
            + self.types.iter().map(|t| t.len() + 40).sum::<usize>()
    }
}

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
    /// Per day of the head's `dates`: the sketch of all types (stored form: merged from its
    /// bytes by every range that cuts the month).
    pub day_users: Vec<UserSketch>,
}

impl MonthDays {
    pub fn heap_bytes(&self) -> usize {
        self.cells.len() * std::mem::size_of::<DayCell>()
            + self
                .day_users
                .iter()
                .map(UserSketch::heap_bytes)
                .sum::<usize>()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeDay {
    pub date: i32,
    pub count: u64,
    pub unique: u64,
    #[serde(with = "wire::b64")]
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
        self.users.heap_bytes() + self.days.iter().map(|d| d.sketch.len() + 48).sum::<usize>()
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
                    users: Arc::new(m.finish().into_stored()),
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
            let s = m.finish().into_stored();
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
                users: month_all.finish().into_stored(),
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
