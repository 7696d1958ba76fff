//! POST /events through the router in-process, with an in-memory delivery stream: every answer a
//! producer can get, with exact counts, and exactly what reaches the stream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dataflow_contract::window::WindowRule;
use dataflow_ingest::MemorySink;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const OK: &str = r#"{"user_id":"u1","event_type":"click","timestamp":"2024-03-01T10:00:00Z"}"#;

fn app(sink: Arc<MemorySink>) -> axum::Router {
    let window = WindowRule {
        min_date: 10_957,
        max_future_seconds: 86_400,
    };
    ingest_api::router(Arc::new(ingest_api::AppState::new(sink, window)))
}

async fn post(app: &axum::Router, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = Request::builder().method("POST").uri("/events");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let Ok(resp) = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Headers, body, the status and error code it must get.
type Case = (
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");
const JSON: (&str, &str) = ("content-type", "application/json");

fn delivered(sink: &MemorySink) -> Vec<String> {
    let records = sink.records.lock().unwrap();
    String::from_utf8(records.concat())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn a_batch_with_bad_events_keeps_the_good_ones() {
    let sink = Arc::new(MemorySink::default());
    let body = format!("{OK}\n{{\"event_type\":\"click\",\"timestamp\":1}}\n\n{OK}\nnot json\n");
    let (status, v) = post(&app(sink.clone()), &[NDJSON], body.into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"accepted": 2, "rejected": [
            {"index": 1, "reason": "missing_user_id"},
            {"index": 4, "reason": "invalid_json"}]})
    );
    assert_eq!(delivered(&sink), vec![OK, OK]);
    assert_eq!(
        *sink.calls.lock().unwrap(),
        1,
        "one request, one record, one call"
    );
}

#[tokio::test]
async fn an_object_and_an_array() {
    let sink = Arc::new(MemorySink::default());
    let app = app(sink.clone());
    let (status, v) = post(&app, &[JSON], OK.as_bytes().to_vec()).await;
    assert_eq!(
        (status, v),
        (StatusCode::OK, json!({"accepted": 1, "rejected": []}))
    );
    let arr =
        format!("[{OK}, {{\"user_id\": \"u2\", \"event_type\": \"\", \"timestamp\": 1}}, {OK}]");
    let (status, v) = post(&app, &[], arr.into_bytes()).await;
    assert_eq!(
        (status, v),
        (
            StatusCode::OK,
            json!({"accepted": 2, "rejected": [{"index": 1, "reason": "invalid_event_type"}]})
        )
    );
    assert_eq!(delivered(&sink).len(), 3);
}

#[tokio::test]
async fn an_event_type_past_256_bytes_is_refused_with_its_reason() {
    let sink = Arc::new(MemorySink::default());
    let app = app(sink.clone());
    let line = |t: &str| OK.replace("\"click\"", &format!("\"{t}\""));
    let body = format!(
        "[{}, {}, {}]",
        line(&"t".repeat(256)),
        line(&"t".repeat(257)),
        line(&"t".repeat(100_000))
    );
    let (status, v) = post(&app, &[], body.into_bytes()).await;
    assert_eq!(
        (status, v),
        (
            StatusCode::OK,
            json!({"accepted": 1, "rejected": [
                {"index": 1, "reason": "event_type_too_long"},
                {"index": 2, "reason": "event_type_too_long"}
            ]})
        )
    );
    assert_eq!(delivered(&sink).len(), 1);
}

#[tokio::test]
async fn gzip_bodies() {
    let sink = Arc::new(MemorySink::default());
    let app = app(sink.clone());
    let body = gzip(format!("{OK}\n{OK}\n").as_bytes());
    let (status, v) = post(&app, &[NDJSON, ("content-encoding", "gzip")], body.clone()).await;
    assert_eq!((status, v["accepted"].clone()), (StatusCode::OK, json!(2)));
    let (status, v) = post(
        &app,
        &[NDJSON, ("content-encoding", "gzip")],
        body[..body.len() / 2].to_vec(),
    )
    .await;
    assert_eq!(
        (status, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_gzip"))
    );
    let (status, v) = post(&app, &[NDJSON, ("content-encoding", "br")], body).await;
    assert_eq!(
        (status, v["error"].clone()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!("unsupported_encoding")
        )
    );
}

#[tokio::test]
async fn each_bad_request_gets_its_status_and_nothing_is_delivered() {
    let sink = Arc::new(MemorySink::default());
    let app = app(sink.clone());
    // A body cut mid-line: the whole lines are kept, the cut one is rejected.
    let cut = format!("{OK}\n{}", &OK[..40]);
    let (status, v) = post(&app, &[NDJSON], cut.into_bytes()).await;
    assert_eq!(
        (status, v),
        (
            StatusCode::OK,
            json!({"accepted": 1, "rejected": [{"index": 1, "reason": "invalid_json"}]})
        )
    );
    sink.records.lock().unwrap().clear();

    let mut bad_utf8 =
        b"{\"user_id\":\"\xc3\x28\",\"event_type\":\"x\",\"timestamp\":1}\n".to_vec();
    bad_utf8.extend_from_slice(OK.as_bytes());
    let (status, v) = post(&app, &[NDJSON], bad_utf8).await;
    assert_eq!(
        (status, v),
        (
            StatusCode::OK,
            json!({"accepted": 1, "rejected": [{"index": 0, "reason": "invalid_json"}]})
        )
    );
    sink.records.lock().unwrap().clear();

    let cases: Vec<Case> = vec![
        (
            vec![NDJSON],
            "\n".repeat(10_000).into_bytes(),
            StatusCode::BAD_REQUEST,
            "no_events",
        ),
        (vec![JSON], Vec::new(), StatusCode::BAD_REQUEST, "no_events"),
        (
            vec![JSON],
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "no_events",
        ),
        (
            vec![JSON],
            b"[{\"user_id\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            vec![JSON],
            b"\"an event\"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            vec![("content-type", "text/csv")],
            b"a,b\n".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            vec![("content-type", "application/x-www-form-urlencoded")],
            OK.as_bytes().to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // 20 MB as sent.
        (
            vec![NDJSON],
            format!("{OK}\n")
                .repeat(20_000_000 / (OK.len() + 1))
                .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        // More events than a request may hold.
        (
            vec![NDJSON],
            format!("{OK}\n").repeat(10_001).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (headers, body, want_status, want_code) in cases {
        let (status, v) = post(&app, &headers, body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (want_status, Some(want_code)),
            "{headers:?}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // A gzip bomb: 1 GiB of zeros in ~1 MB stops at the decompressed limit.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let (status, v) = post(&app, &[NDJSON, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    assert!(
        sink.records.lock().unwrap().is_empty(),
        "nothing reached the stream"
    );
}

#[tokio::test]
async fn a_stream_that_refuses_then_takes_loses_nothing() {
    let sink = Arc::new(MemorySink::default());
    *sink.refuse.lock().unwrap() = 2;
    let (status, v) = post(
        &app(sink.clone()),
        &[NDJSON],
        format!("{OK}\n{OK}\n").into_bytes(),
    )
    .await;
    assert_eq!((status, v["accepted"].clone()), (StatusCode::OK, json!(2)));
    assert_eq!(delivered(&sink), vec![OK, OK]);
    assert_eq!(*sink.calls.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_stream_that_is_down_answers_503_and_acknowledges_nothing() {
    let sink = Arc::new(MemorySink {
        down: true,
        ..MemorySink::default()
    });
    let (status, v) = post(&app(sink.clone()), &[NDJSON], OK.as_bytes().to_vec()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("delivery_unavailable")
        )
    );
    assert!(v.get("accepted").is_none());
}

#[tokio::test]
async fn events_outside_the_etls_window_are_rejected_here() {
    let sink = Arc::new(MemorySink::default());
    let body = "{\"user_id\":\"u\",\"event_type\":\"x\",\"timestamp\":\"1970-01-02T00:00:00Z\"}\n{\"user_id\":\"u\",\"event_type\":\"x\",\"timestamp\":\"2999-01-01T00:00:00Z\"}";
    let (status, v) = post(&app(sink), &[NDJSON], body.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "no_valid_events");
    assert_eq!(
        v["rejected"],
        json!([
            {"index": 0, "reason": "timestamp_out_of_range"},
            {"index": 1, "reason": "timestamp_out_of_range"}])
    );
}

#[tokio::test]
async fn the_openapi_document_describes_this_route() {
    let app = app(Arc::new(MemorySink::default()));
    let failures = dataflow_http::spec_check::run(&app, |p| p == "/events").await;
    assert!(failures.is_empty(), "{failures:#?}");
}
