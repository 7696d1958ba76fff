//! The ingest API router: `POST /events`. Events are checked by the ETL's own contract and made
//! durable in the delivery stream before the answer; the stream writes them to the raw bucket,
//! where the ETL takes over. The same router serves API Gateway (through `lambda_http`),
//! `dataflow serve` and in-process tests.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use dataflow_contract::window::WindowRule;
use dataflow_http::ApiError;
pub use dataflow_ingest::IngestConfig;
use dataflow_ingest::{
    decode, deliver, pack, parse, BodyError, DeliveryError, EventSink, Format, MAX_BODY_BYTES,
};
use serde_json::{json, Value};

pub struct AppState {
    sink: Arc<dyn EventSink>,
    window: WindowRule,
}

impl AppState {
    pub fn new(sink: Arc<dyn EventSink>, window: WindowRule) -> Self {
        Self { sink, window }
    }
}

/// The routes alone, for merging with other functions' routes (`dataflow serve`).
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/events", post(post_events))
        .with_state(state)
}

pub fn router(state: Arc<AppState>) -> Router {
    dataflow_http::finish(routes(state))
}

fn body_error(e: BodyError) -> ApiError {
    let code = match &e {
        BodyError::TooLarge { .. } | BodyError::TooManyEvents { .. } => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            )
        }
        BodyError::Empty => "no_events",
        BodyError::BadGzip(_) => "invalid_gzip",
        BodyError::NotJson(_) | BodyError::NotAnArrayOrObject => "invalid_body",
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

async fn post_events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let started = Instant::now();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(text(header::CONTENT_TYPE)).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json (an object or an array of objects) or application/x-ndjson (JSON Lines)",
        )
    })?;
    let gzip = match text(header::CONTENT_ENCODING).map(str::trim) {
        None | Some("" | "identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding {other:?} is not supported: send gzip or nothing"),
            ))
        }
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes: send smaller batches"),
            )
        })?;
    let received = bytes.len();
    let decoded = decode(&bytes, gzip).map_err(body_error)?;
    let window = st.window.at(dataflow_contract::window::now_ms());
    // CPU-bound but bounded (16 MiB at most, tens of milliseconds): inline.
    let parsed = parse(&decoded, format, window).map_err(body_error)?;
    let accepted = parsed.lines.len();
    if accepted == 0 {
        // Nothing usable: a client error, with each event's reason.
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "no_valid_events",
                "message": "no event in the request passed the event contract (docs/event-contract.md)",
                "rejected": parsed.rejected,
            })),
        ));
    }
    deliver(st.sink.as_ref(), pack(parsed.lines))
        .await
        .map_err(|e: DeliveryError| {
            tracing::error!(error = %e, "delivery failed");
            ApiError::unavailable(
                "delivery_unavailable",
                format!("{e}; the request was not acknowledged: send it again"),
            )
        })?;
    tracing::info!(
        accepted,
        rejected = parsed.rejected.len(),
        bytes = received,
        duration_ms = started.elapsed().as_millis() as u64,
        "events received"
    );
    Ok((
        StatusCode::OK,
        Json(json!({"accepted": accepted, "rejected": parsed.rejected})),
    ))
}
