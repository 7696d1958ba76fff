//! `GET /pipeline/status`: the pipeline as an operator reads it, from the checkpoint store's
//! totals and lists and the dead-letter queue's depth, cached for the state's refresh time.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::Json;
use dataflow_core::pipeline::{DeadLetters, PipelineStatus};
use dataflow_http::openapi::{ErrorBody, NO_PARAMETERS};
use dataflow_http::{value_of, ApiError, Params};
use serde_json::Value;
use tokio::time::Instant;

use crate::AppState;

/// How long the status waits for each store call.
const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How many recent objects the status lists.
const RECENT: usize = dataflow_core::pipeline::LISTED;

/// The pipeline as an operator reads it
#[utoipa::path(
    get,
    path = "/pipeline/status",
    responses(
        (status = 200, description = "Totals, watermark, recent objects, objects needing attention, the dead-letter queue.", body = PipelineStatus),
        (status = 400, description = NO_PARAMETERS, body = ErrorBody),
        (status = 503, description = "`checkpoints_unavailable`: the checkpoint table cannot be read.", body = ErrorBody),
    )
)]
pub(crate) async fn pipeline_status(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let mut cached = st.status.lock().await;
    if let Some((at, v)) = cached.as_ref() {
        if at.elapsed() < st.refresh {
            return Ok(Json(v.clone()));
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    // The totals are the status: without them it is a 503. The lists are parts: one that cannot
    // be read (an index still building, a slow call) is named in `problems`, the rest answers.
    let t = STATUS_CALL_TIMEOUT;
    let timed_out = || format!("no answer within {} ms", t.as_millis());
    let (p, recent, attention, failed) = tokio::join!(
        tokio::time::timeout(t, st.checkpoints.pipeline()),
        tokio::time::timeout(t, st.checkpoints.recent(RECENT, now)),
        tokio::time::timeout(t, st.checkpoints.attention()),
        tokio::time::timeout(t, st.checkpoints.failed(RECENT)),
    );
    let pipeline = match p {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return Err(ApiError::unavailable(
                "checkpoints_unavailable",
                e.to_string(),
            ))
        }
        Err(_) => {
            return Err(ApiError::unavailable(
                "checkpoints_unavailable",
                timed_out(),
            ))
        }
    };
    let mut problems = Vec::new();
    let mut part = |what: &str, r: Result<Result<Vec<_>, _>, _>| match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            problems.push(format!("{what}: {e}"));
            Vec::new()
        }
        Err(_) => {
            problems.push(format!("{what}: {}", timed_out()));
            Vec::new()
        }
    };
    let (recent, attention, failed) = (
        part("recent objects", recent),
        part("objects in progress", attention),
        part("failed objects", failed),
    );
    let parts = dataflow_core::pipeline::Parts {
        pipeline,
        recent,
        attention,
        failed,
        problems,
    };
    let dead_letters = match &st.dead_letters {
        None => DeadLetters {
            depth: None,
            error: Some("no dead-letter queue configured (ETL_DLQ)".into()),
        },
        Some(q) => match tokio::time::timeout(st.health_timeout, q.depth()).await {
            Ok(Ok(n)) => DeadLetters {
                depth: Some(n),
                error: None,
            },
            Ok(Err(e)) => DeadLetters {
                depth: None,
                error: Some(e),
            },
            Err(_) => DeadLetters {
                depth: None,
                error: Some(format!(
                    "no answer within {} ms",
                    st.health_timeout.as_millis()
                )),
            },
        },
    };
    let v = value_of(&dataflow_core::pipeline::status(&parts, dead_letters, now))?;
    *cached = Some((Instant::now(), v.clone()));
    Ok(Json(v))
}
