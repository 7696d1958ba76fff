//! The Analytics API router. The same router serves API Gateway (through `lambda_http`),
//! `cargo lambda watch`, a plain local server and in-process tests.

use std::sync::Arc;
use std::time::Duration;

// The status caches are timed on tokio's clock, which tests pause and advance.
use tokio::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dataflow_core::analytics::{Filter, LakeError, LakeReader, View};
use dataflow_core::checkpoint::{CheckpointReads, PipelineState};
use dataflow_core::event::parse_date;
use dataflow_core::pipeline::QueueDepth;
use dataflow_http::{value_of, ApiError, Params, Sorted};
use dataflow_store::ObjectStore;
use serde_json::Value;
use tokio::sync::Mutex;

pub mod answers;
pub mod api;
pub mod dashboard;
mod status;

use answers::AnswerCache;
use api::{
    Check, Checks, DailyAnswer, DateRange, HealthAnswer, HealthStatus, MetricsPage, SummaryAnswer,
    Watermark,
};
use dataflow_http::openapi::{ErrorBody, BAD_PARAMETER};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

pub struct AppState {
    pub lake: LakeReader,
    /// The ETL's dead-letter queue, when configured (`ETL_DLQ`).
    pub dead_letters: Option<Arc<dyn QueueDepth>>,
    pub store: Arc<dyn ObjectStore>,
    pub checkpoints: Arc<dyn CheckpointReads>,
    pub lake_bucket: String,
    pub raw_bucket: String,
    /// How long cached reads (lake listing, pipeline totals) are trusted.
    pub refresh: Duration,
    pub health_timeout: Duration,
    pipeline: Mutex<Option<(Instant, PipelineState)>>,
    /// The last `/pipeline/status` answer: every open dashboard asks every few seconds, and each
    /// answer is four DynamoDB reads and an SQS call.
    pub(crate) status: Mutex<Option<(Instant, Value)>>,
    /// Rendered answers: dashboards repeat queries.
    answers: AnswerCache,
}

impl AppState {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        checkpoints: Arc<dyn CheckpointReads>,
        names: &dataflow_core::config::LakeNames,
        refresh: Duration,
    ) -> Self {
        Self {
            lake: LakeReader::new(
                store.clone(),
                names.lake_bucket.clone(),
                names.layout.clone(),
                refresh,
            ),
            dead_letters: None,
            store,
            checkpoints,
            lake_bucket: names.lake_bucket.clone(),
            raw_bucket: names.raw_bucket.clone(),
            refresh,
            health_timeout: Duration::from_secs(2),
            pipeline: Mutex::new(None),
            status: Mutex::new(None),
            answers: AnswerCache::default(),
        }
    }

    /// The state over S3 and DynamoDB, revalidating after `CACHE_SECONDS`: what the Lambda and
    /// `dataflow serve` both run.
    pub fn over_aws(cfg: &dataflow_core::config::AnalyticsConfig, aws: &dataflow_aws::Aws) -> Self {
        let mut st = Self::new(
            Arc::new(dataflow_aws::S3Store::new(aws.s3())),
            Arc::new(dataflow_aws::DynamoCheckpoints::new(
                aws.dynamodb(),
                cfg.lake.checkpoint_table.clone(),
            )),
            &cfg.lake,
            Duration::from_secs(cfg.cache_seconds),
        );
        st.dead_letters = cfg.dead_letter_queue.as_ref().map(|q| {
            Arc::new(dataflow_aws::requeue::SqsDepth::new(aws.sqs(), q.clone()))
                as Arc<dyn QueueDepth>
        });
        st
    }

    async fn pipeline(&self) -> Result<PipelineState, ApiError> {
        let mut cached = self.pipeline.lock().await;
        if let Some((at, p)) = cached.as_ref() {
            if at.elapsed() < self.refresh {
                return Ok(p.clone());
            }
        }
        let p = self
            .checkpoints
            .pipeline()
            .await
            .map_err(|e| ApiError::unavailable("checkpoints_unavailable", e.to_string()))?;
        *cached = Some((Instant::now(), p.clone()));
        Ok(p)
    }
}

fn lake_error(e: LakeError) -> ApiError {
    tracing::error!(error = %e, "lake read failed");
    ApiError::unavailable(
        "lake_unavailable",
        format!("cannot read the analytics lake: {e}"),
    )
}

/// The routes alone, for merging with other functions' routes (`dataflow serve`).
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/analytics/metrics", get(metrics))
        .route("/analytics/summary", get(summary))
        .route("/analytics/daily", get(daily))
        .route("/pipeline/status", get(status::pipeline_status))
        .merge(dashboard::routes())
        .with_state(state)
}

pub fn router(state: Arc<AppState>) -> Router {
    dataflow_http::finish(routes(state))
}

/// This function's part of the OpenAPI document (`dataflow_http::openapi::document` merges it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(health, metrics, summary, daily, status::pipeline_status))]
    struct Api;
    dataflow_http::openapi::tagged(<Api as utoipa::OpenApi>::openapi(), "analytics")
}

/// What `/health` says of a backend that failed; the error itself is logged.
const UNREACHABLE: &str = "the backend failed to answer; the function's log has the error";

/// Liveness and readiness
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Lake and checkpoint table reachable.", body = HealthAnswer),
        (status = 503, description = "A dependency is unreachable (same body, status `degraded`).", body = HealthAnswer),
    )
)]
async fn health(State(st): State<Arc<AppState>>) -> Response {
    let t = st.health_timeout;
    let lake = tokio::time::timeout(t, st.store.ping(&st.lake_bucket)).await;
    let pipe = tokio::time::timeout(t, st.checkpoints.pipeline()).await;
    let late = || Check {
        reachable: false,
        error: Some(format!("no answer within {} ms", t.as_millis())),
    };
    let ok = || Check {
        reachable: true,
        error: None,
    };
    // /health is public: a backend's own error text (bucket names, endpoints, SDK detail) goes
    // to the log, the answer says only what failed.
    let failed = || Check {
        reachable: false,
        error: Some(UNREACHABLE.into()),
    };
    let lake = match lake {
        Ok(Ok(())) => ok(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: the lake bucket did not answer");
            failed()
        }
        Err(_) => late(),
    };
    let (checkpoint_table, watermark) = match pipe {
        Ok(Ok(p)) => (
            ok(),
            Some(Watermark {
                last_object: p.last_object,
                last_processed_at: p.last_processed_ms.map(rfc3339_ms),
                latest_event_time: p.latest_event_time_us.map(|us| rfc3339_ms(us / 1000)),
                files_processed: p.files_processed,
            }),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: the checkpoint table did not answer");
            (failed(), None)
        }
        Err(_) => (late(), None),
    };
    let healthy = lake.reachable && checkpoint_table.reachable;
    let body = HealthAnswer {
        status: if healthy {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        version: VERSION.into(),
        checks: Checks {
            lake,
            checkpoint_table,
        },
        watermark,
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Sorted(body)).into_response()
}

use dataflow_core::pipeline::rfc3339_ms;

/// A `YYYY-MM-DD` parameter.
fn date(p: &Params, name: &str) -> Result<Option<i32>, ApiError> {
    match p.one(name)? {
        None => Ok(None),
        Some(v) => parse_date(v).map(Some).ok_or_else(|| {
            ApiError::bad_param(
                name,
                format!("'{name}' must be a date YYYY-MM-DD, got '{v}'"),
            )
        }),
    }
}

fn filter(p: &Params, snap: &View) -> Result<Filter, ApiError> {
    let (from, to) = (date(p, "from")?, date(p, "to")?);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::bad_param("from", "'from' is after 'to'"));
        }
    }
    let mut types = Vec::new();
    for t in p.all("event_type") {
        if t.is_empty() {
            return Err(ApiError::bad_param(
                "event_type",
                "'event_type' must not be empty",
            ));
        }
        if !snap.event_types().contains(t) {
            return Err(unknown_type(t, snap.event_types()));
        }
        types.push(t.to_owned());
    }
    Ok(Filter { from, to, types })
}

/// A short answer whatever the names: a few known types, each cut, and how many there are.
fn unknown_type(t: &str, known: &std::collections::BTreeSet<String>) -> ApiError {
    const SHOWN: usize = 5;
    let cut = |s: &str| match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    };
    let some: Vec<String> = known.iter().take(SHOWN).map(|k| cut(k)).collect();
    let more = known.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    ApiError::bad_param(
        "event_type",
        format!(
            "unknown event_type '{}'; {} known, e.g. {}{tail}",
            cut(t),
            known.len(),
            some.join(", ")
        ),
    )
}

/// The snapshot, or 503 "analytics not ready" before the ETL has produced anything.
async fn ready(st: &AppState) -> Result<(Arc<View>, u64), ApiError> {
    let (snap, generation) = st.lake.snapshot().await.map_err(lake_error)?;
    if snap.is_empty() {
        return Err(ApiError::unavailable(
            "analytics_not_ready",
            format!(
                "no aggregates in s3://{}/ yet: run the ETL first (drop JSON Lines files in s3://{}/, or run `dataflow backfill` for files already there)",
                st.lake_bucket, st.raw_bucket
            ),
        ));
    }
    Ok((snap, generation))
}

const NOT_READY: &str = "`analytics_not_ready` before the ETL produced data; `lake_unavailable` / `checkpoints_unavailable` when storage cannot be read.";

/// Rows per (event_date, event_type), sorted by date then type, paginated
#[utoipa::path(
    get,
    path = "/analytics/metrics",
    params(api::Selection, api::Page),
    responses(
        (status = 200, description = "A page of metrics.", body = MetricsPage),
        (status = 400, description = BAD_PARAMETER, body = ErrorBody),
        (status = 503, description = NOT_READY, body = ErrorBody),
    )
)]
async fn metrics(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(
        q.as_deref(),
        &["from", "to", "event_type", "limit", "cursor"],
    )?;
    let (snap, generation) = ready(&st).await?;
    let key = format!("m?{}", q.as_deref().unwrap_or(""));
    if let Some(v) = st.answers.get(generation, &key).await {
        return Ok(Json(v));
    }
    let f = filter(&p, &snap)?;
    let limit = p.number("limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    let after = match p.one("cursor")? {
        None => None,
        Some(c) => {
            Some(decode_cursor(c).ok_or_else(|| ApiError::bad_param("cursor", "invalid cursor"))?)
        }
    };
    let (rows, next) = snap
        .metrics(&f, limit, after.as_ref())
        .await
        .map_err(lake_error)?;
    let v = value_of(&MetricsPage {
        count: rows.len(),
        metrics: rows,
        next_cursor: next.map(|k| encode_cursor(&k)),
    })?;
    st.answers.put(generation, key, &v).await;
    Ok(Json(v))
}

/// Totals, events by type, distinct users
#[utoipa::path(
    get,
    path = "/analytics/summary",
    params(api::Selection),
    responses(
        (status = 200, description = "Totals for the range.", body = SummaryAnswer),
        (status = 400, description = BAD_PARAMETER, body = ErrorBody),
        (status = 503, description = NOT_READY, body = ErrorBody),
    )
)]
async fn summary(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), &["from", "to", "event_type"])?;
    let (snap, generation) = ready(&st).await?;
    let pipeline = st.pipeline().await?;
    let files_processed = pipeline.files_processed;
    let last_processed_at = pipeline.last_processed_ms.map(rfc3339_ms);
    let key = format!("s?{}", q.as_deref().unwrap_or(""));
    let mut v = match st.answers.get(generation, &key).await {
        Some(v) => v,
        None => {
            let f = filter(&p, &snap)?;
            let s = snap.summary(&f).await.map_err(lake_error)?;
            let (events_by_type, other_types_events) =
                top_types(&s.events_by_type, MAX_SUMMARY_TYPES);
            let v = value_of(&SummaryAnswer {
                total_events: s.total_events,
                types_total: s.events_by_type.len(),
                events_by_type,
                other_types_events,
                date_range: DateRange {
                    start: s.start,
                    end: s.end,
                },
                unique_users_daily_sum: s.unique_users_daily_sum,
                unique_users: s.unique_users,
                files_processed,
                last_processed_at: last_processed_at.clone(),
            })?;
            st.answers.put(generation, key, &v).await;
            v
        }
    };
    // The figures are cached with the snapshot; the pipeline's are as fresh as its own cache.
    v["files_processed"] = files_processed.into();
    v["last_processed_at"] = last_processed_at.into();
    Ok(Json(v))
}

/// Most types a summary names in `events_by_type` (those with most events; ties by name): an
/// answer stays a few kilobytes, and a dashboard's type list usable, whatever the producers send.
/// The rest add up in `other_types_events`; `types_total` counts them all.
pub const MAX_SUMMARY_TYPES: usize = 500;

/// The `n` types with most events, and the events of the others.
fn top_types(
    by_type: &std::collections::BTreeMap<String, u64>,
    n: usize,
) -> (std::collections::BTreeMap<String, u64>, u64) {
    let mut by_count: Vec<(&String, &u64)> = by_type.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let other = by_count.iter().skip(n).map(|(_, c)| **c).sum();
    let listed = by_count
        .into_iter()
        .take(n)
        .map(|(t, c)| (t.clone(), *c))
        .collect();
    (listed, other)
}

/// Most types a daily series splits events over; the rest add up as `other_count`.
pub const MAX_SPLIT: usize = 20;

/// Events and distinct users per day, split over the types with most events
#[utoipa::path(
    get,
    path = "/analytics/daily",
    params(api::Selection, api::Split),
    responses(
        (status = 200, description = "The days with data, oldest first.", body = DailyAnswer),
        (status = 400, description = BAD_PARAMETER, body = ErrorBody),
        (status = 503, description = NOT_READY, body = ErrorBody),
    )
)]
async fn daily(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref(), &["from", "to", "event_type", "top"])?;
    let (snap, generation) = ready(&st).await?;
    let key = format!("d?{}", q.as_deref().unwrap_or(""));
    if let Some(v) = st.answers.get(generation, &key).await {
        return Ok(Json(v));
    }
    let f = filter(&p, &snap)?;
    let top = p.number("top", 8, 0..=MAX_SPLIT)?;
    // The types with most events in the range, most first (ties by name).
    let s = snap.summary(&f).await.map_err(lake_error)?;
    let mut by_count: Vec<(&String, &u64)> = s.events_by_type.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let split: Vec<String> = by_count
        .into_iter()
        .take(top)
        .map(|(t, _)| t.clone())
        .collect();
    let d = snap.daily(&f, &split).await.map_err(lake_error)?;
    let v = value_of(&DailyAnswer {
        types: d.types,
        days: d.days,
        date_range: DateRange {
            start: s.start,
            end: s.end,
        },
    })?;
    st.answers.put(generation, key, &v).await;
    Ok(Json(v))
}

/// Cursors are opaque to clients: the hex of the last row's key.
fn encode_cursor(k: &(i32, String)) -> String {
    hex::encode(format!("v1|{}|{}", k.0, k.1))
}

fn decode_cursor(c: &str) -> Option<(i32, String)> {
    let text = String::from_utf8(hex::decode(c).ok()?).ok()?;
    let rest = text.strip_prefix("v1|")?;
    let (d, t) = rest.split_once('|')?;
    Some((d.parse().ok()?, t.to_owned()))
}
