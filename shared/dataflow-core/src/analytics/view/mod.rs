//! The view of the lake at one point in time and the queries it answers, loading month details
//! on demand into a bounded cache. The parts: the cache (`cache`), loading a month's objects
//! (`load`), cutting unions for a range (`unions`), and the queries (`queries`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{AggregateFile, Daily, DayPoint, Filter, LakeError, MetricRow, Summary};
use crate::event::format_date;
use crate::lake::layout::Layout;
use crate::lake::round;
use crate::rollup::{
    month_label, month_of, CatalogYear, MonthBuild, MonthDays, MonthHead, Patch, TypeMonth,
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

mod cache;
mod load;
mod queries;
mod unions;

use cache::Detail;
pub(in crate::analytics) use cache::DetailCache;
pub use cache::DETAIL_CACHE_BYTES;
use unions::TypePiece;

pub(super) struct Loader {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) bucket: String,
    pub(super) layout: Layout,
    pub(super) cache: DetailCache,
}

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
}

pub(super) fn built_entry(b: Arc<MonthBuild>, signature: String) -> MonthEntry {
    MonthEntry {
        head: Arc::new(b.head.clone()),
        source: Source::Built(b),
        signature,
    }
}
