//! What the Analytics API answers and takes, as types: the handlers build the answers, and the
//! OpenAPI document (`crate::openapi`) is made from these types and the handlers' annotations.
//! Query strings are parsed by `dataflow_http::Params` (unknown and repeated parameters are a
//! 400); the query types here describe the same parameters and bounds, which the router tests
//! hold to the handlers (`dataflow_http::spec_check`).

use std::collections::BTreeMap;

use dataflow_core::analytics::{DayPoint, MetricRow};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthAnswer {
    pub status: HealthStatus,
    pub version: String,
    pub checks: Checks,
    /// How far the ETL has got; null when the checkpoint table did not answer.
    pub watermark: Option<Watermark>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub lake: Check,
    pub checkpoint_table: Check,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub reachable: bool,
    /// What failed, without the backend's own error text (that is in the function's log).
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Watermark {
    pub last_object: Option<String>,
    #[schema(format = DateTime)]
    pub last_processed_at: Option<String>,
    /// The newest event time counted so far.
    #[schema(format = DateTime)]
    pub latest_event_time: Option<String>,
    pub files_processed: u64,
}

/// `GET /analytics/metrics`: one page.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsPage {
    pub metrics: Vec<MetricRow>,
    pub count: usize,
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The first and last day with data in the range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DateRange {
    #[schema(format = Date)]
    pub start: Option<String>,
    #[schema(format = Date)]
    pub end: Option<String>,
}

/// `GET /analytics/summary`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Summary)]
pub struct SummaryAnswer {
    pub total_events: u64,
    /// Events per type for the 500 types with most events (ties by name); the others add up in
    /// `other_types_events`.
    pub events_by_type: BTreeMap<String, u64>,
    /// How many types had events in the range, listed or not.
    pub types_total: usize,
    /// Events of the types `events_by_type` leaves out (0 when it lists them all).
    pub other_types_events: u64,
    pub date_range: DateRange,
    /// Sum over days of each day's distinct users.
    pub unique_users_daily_sum: u64,
    /// Distinct users over the whole range (merged sketches).
    pub unique_users: u64,
    pub files_processed: u64,
    #[schema(format = DateTime)]
    pub last_processed_at: Option<String>,
}

/// `GET /analytics/daily`: days with data in the range, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Daily)]
pub struct DailyAnswer {
    /// The types `by_type` is split over, most events first.
    pub types: Vec<String>,
    pub days: Vec<DayPoint>,
    pub date_range: DateRange,
}

/// The rows a question is about.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes the parameters `Params` parses
pub struct Selection {
    /// First date, inclusive (UTC).
    #[param(format = Date, example = "2024-03-01")]
    from: Option<String>,
    /// Last date, inclusive (UTC).
    #[param(format = Date, example = "2024-03-01")]
    to: Option<String>,
    /// Repeat to select several types. Empty or unknown types are a 400.
    #[param(style = Form, explode, min_length = 1)]
    event_type: Option<Vec<String>>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Page {
    /// Rows per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// Opaque `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Split {
    /// How many types (most events first) each day is split over; the rest add up in
    /// `other_count`.
    #[param(minimum = 0, maximum = 20, default = 8)]
    top: Option<u32>,
}
