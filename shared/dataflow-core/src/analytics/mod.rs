//! The analytics read model. Daily aggregate files are merged into per (event_date, event_type)
//! cells month by month ([`crate::rollup`]); a request loads only the months its range touches,
//! from their rollups when those are current and from the daily files otherwise. Distinct users
//! over any range cost one union per whole month plus one per day at its two ends.

use std::collections::BTreeMap;

mod reader;
mod view;

pub use crate::lake::{effective_files, name_of, AggregateFile, LakeError};
pub use reader::LakeReader;
pub use view::{View, DETAIL_CACHE_BYTES};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Inclusive day numbers.
    pub from: Option<i32>,
    pub to: Option<i32>,
    /// Empty: every type.
    pub types: Vec<String>,
}

/// One (event_date, event_type) row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Metric)]
pub struct MetricRow {
    #[schema(format = Date, examples("2024-03-01"))]
    pub event_date: String,
    pub event_type: String,
    pub event_count: u64,
    /// Distinct users (HLL estimate, ~0.8% error).
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

/// One day of [`View::daily`]: events (split over the chosen types, the rest in `other_count`)
/// and the day's distinct users over the filtered types.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DayPoint {
    #[schema(format = Date)]
    pub event_date: String,
    pub event_count: u64,
    /// Distinct users of the day over the selected types (sketch estimate).
    pub unique_users: u64,
    /// Events of each type in [`Daily::types`], in that order.
    pub by_type: Vec<u64>,
    /// Events of the filtered types not in [`Daily::types`].
    pub other_count: u64,
}

/// Days with data in a range, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Daily {
    pub types: Vec<String>,
    pub days: Vec<DayPoint>,
}

#[cfg(test)]
mod tests;
