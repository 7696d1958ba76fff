//! The ingest API router: `POST /events`. Events are checked by the ETL's own contract and made
//! durable in the delivery stream before the answer; the stream writes them to the raw bucket,
//! where the ETL takes over. The same router serves API Gateway (through `lambda_http`),
//! `dataflow serve` and in-process tests.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dataflow_contract::window::WindowRule;
use dataflow_http::{ApiError, Sorted};
pub use dataflow_ingest::IngestConfig;
use dataflow_ingest::{
    decode, deliver, pack, parse, BodyError, DeliveryError, EventSink, Format, MAX_BODY_BYTES,
};

pub mod api;

use api::{IngestError, Ingested};
use dataflow_http::openapi::ErrorBody;

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

/// This function's part of the OpenAPI document (`dataflow_http::openapi::document` merges it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(post_events))]
    struct Api;
    dataflow_http::openapi::tagged(<Api as utoipa::OpenApi>::openapi(), "ingest")
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

/// Send events (an object, an array of objects, or JSON Lines; gzip accepted)
///
/// Each event is checked by the ETL's contract; accepted events are durable in the delivery
/// stream before the answer and reach /analytics after the stream's buffer (60 s in AWS) and the
/// ETL. Limits: 4 MiB body as sent, 16 MiB decompressed, 10,000 events, 1,000 KiB per event.
#[utoipa::path(
    post,
    path = "/events",
    operation_id = "post_events",
    params(api::Headers),
    request_body(
        content(
            (api::Events = "application/json"),
            (api::JsonLines = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 200, description = "Accepted events are durable; rejected ones are listed with their reasons.", body = Ingested),
        (status = 400, description = "`no_events` (empty body, only blank lines), `no_valid_events` (every event failed the contract; `rejected` lists why), `invalid_body` (not JSON, or JSON that is not an object or an array), `invalid_gzip`.", body = IngestError),
        (status = 413, description = "`payload_too_large`: over 4 MiB as sent, 16 MiB decompressed, or 10,000 events.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type` (not JSON or JSON Lines) or `unsupported_encoding` (not gzip).", body = ErrorBody),
        (status = 503, description = "`delivery_unavailable`: the delivery stream refused the events after retries; send the request again.", body = ErrorBody),
    )
)]
async fn post_events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
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
        let refused = IngestError {
            error: "no_valid_events".into(),
            message: "no event in the request passed the event contract (docs/event-contract.md)"
                .into(),
            rejected: Some(parsed.rejected),
        };
        return Ok((StatusCode::BAD_REQUEST, Sorted(refused)).into_response());
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
    let answer = Ingested {
        accepted,
        rejected: parsed.rejected,
    };
    Ok((StatusCode::OK, Sorted(answer)).into_response())
}
