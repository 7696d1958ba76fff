//! Every endpoint and error path through the router, in-process, over in-memory stores.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use dataflow_config::{Env, FromEnv};
use dataflow_core::checkpoint::MemoryCheckpoints;
use dataflow_core::config::EtlConfig;
use dataflow_core::etl::Etl;
use dataflow_core::lake::source::ObjectRef;
use dataflow_store::MemoryStore;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    app: axum::Router,
    etl: Etl<MemoryStore, MemoryCheckpoints>,
}

fn fixture(refresh: Duration) -> Fixture {
    let cfg = EtlConfig::from_env_vars(&Env::from_pairs(&[])).unwrap();
    let store = Arc::new(MemoryStore::default());
    let ckpt = Arc::new(MemoryCheckpoints::default());
    let etl = Etl::new(store.clone(), ckpt.clone(), &cfg);
    let state = analytics_api::AppState::new(store, ckpt, &cfg.lake, refresh);
    Fixture {
        app: analytics_api::router(Arc::new(state)),
        etl,
    }
}

async fn ingest(f: &Fixture, name: &str, lines: &[(&str, &str, &str)]) {
    let body: String = lines
        .iter()
        .map(|(u, t, ts)| {
            format!("{{\"user_id\":\"{u}\",\"event_type\":\"{t}\",\"timestamp\":\"{ts}\"}}\n")
        })
        .collect();
    f.etl.store.insert("dataflow-raw", name, body.into_bytes());
    f.etl
        .process_object(ObjectRef::new("dataflow-raw", name))
        .await
        .unwrap();
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Value) {
    dataflow_http::spec_check::request(app, method, uri, Vec::new()).await
}

const DAY1: &str = "2024-03-01T10:00:00Z";
const DAY2: &str = "2024-03-02T10:00:00Z";

async fn loaded() -> Fixture {
    let f = fixture(Duration::ZERO);
    ingest(
        &f,
        "a.jsonl",
        &[
            ("u1", "click", DAY1),
            ("u2", "click", DAY1),
            ("u1", "view", DAY1),
        ],
    )
    .await;
    ingest(
        &f,
        "b.jsonl",
        &[
            ("u1", "click", DAY2),
            ("u3", "click", DAY2),
            ("u2", "click", DAY1),
        ],
    )
    .await;
    f
}

#[tokio::test]
async fn not_ready_before_any_data() {
    let f = fixture(Duration::ZERO);
    for uri in ["/analytics/summary", "/analytics/metrics"] {
        let (s, v) = call(&f.app, "GET", uri).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["error"], "analytics_not_ready");
        assert!(v["message"].as_str().unwrap().contains("run the ETL"));
    }
}

#[tokio::test]
async fn summary_exact_numbers() {
    let f = loaded().await;
    let (s, v) = call(&f.app, "GET", "/analytics/summary").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total_events"], 6);
    assert_eq!(v["events_by_type"], json!({"click": 5, "view": 1}));
    assert_eq!(
        v["date_range"],
        json!({"start": "2024-03-01", "end": "2024-03-02"})
    );
    // Day 1: u1, u2; day 2: u1, u3 -> daily sum 4, true distinct 3.
    assert_eq!(v["unique_users_daily_sum"], 4);
    assert_eq!(v["unique_users"], 3);
    assert_eq!(v["files_processed"], 2);
    assert!(v["last_processed_at"].as_str().unwrap().ends_with('Z'));
    let (_, v) = call(
        &f.app,
        "GET",
        "/analytics/summary?from=2024-03-02&event_type=click",
    )
    .await;
    assert_eq!(
        (v["total_events"].clone(), v["unique_users"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        v["date_range"],
        json!({"start": "2024-03-02", "end": "2024-03-02"})
    );
}

#[tokio::test]
async fn metrics_sorted_filtered_and_paginated() {
    let f = loaded().await;
    let (s, v) = call(&f.app, "GET", "/analytics/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["metrics"],
        json!([
            {"event_date": "2024-03-01", "event_type": "click", "event_count": 3, "unique_users": 2},
            {"event_date": "2024-03-01", "event_type": "view", "event_count": 1, "unique_users": 1},
            {"event_date": "2024-03-02", "event_type": "click", "event_count": 2, "unique_users": 2},
        ])
    );
    assert_eq!(v["next_cursor"], Value::Null);
    let (_, p1) = call(&f.app, "GET", "/analytics/metrics?limit=2").await;
    assert_eq!(p1["count"], 2);
    let cursor = p1["next_cursor"].as_str().unwrap().to_owned();
    let (_, p2) = call(
        &f.app,
        "GET",
        &format!("/analytics/metrics?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(p2["metrics"][0]["event_date"], "2024-03-02");
    assert_eq!(p2["next_cursor"], Value::Null);
    let (_, v) = call(
        &f.app,
        "GET",
        "/analytics/metrics?event_type=view&event_type=click&to=2024-03-01",
    )
    .await;
    assert_eq!(v["count"], 2);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let f = loaded().await;
    for (uri, param) in [
        ("/analytics/summary?from=2024-13-01", "from"),
        ("/analytics/summary?to=yesterday", "to"),
        ("/analytics/summary?from=2024-03-02&to=2024-03-01", "from"),
        ("/analytics/summary?event_type=nope", "event_type"),
        ("/analytics/summary?event_type=", "event_type"),
        ("/analytics/summary?colour=red", "colour"),
        ("/analytics/summary?from=2024-03-01&from=2024-03-02", "from"),
        ("/analytics/metrics?limit=0", "limit"),
        ("/analytics/metrics?limit=1001", "limit"),
        ("/analytics/metrics?limit=ten", "limit"),
        ("/analytics/metrics?cursor=zz", "cursor"),
    ] {
        let (s, v) = call(&f.app, "GET", uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], "invalid_parameter", "{uri}");
        assert_eq!(v["parameter"], param, "{uri}");
    }
}

#[tokio::test]
async fn unknown_event_type_answers_briefly_however_many_types_exist() {
    let f = fixture(Duration::ZERO);
    let names: Vec<String> = (0..200)
        .map(|i| format!("{i:03}{}", "t".repeat(200)))
        .collect();
    let lines: Vec<(&str, &str, &str)> = names.iter().map(|n| ("u", n.as_str(), DAY1)).collect();
    ingest(&f, "many.jsonl", &lines).await;
    let asked = "q".repeat(5000);
    let (s, v) = call(
        &f.app,
        "GET",
        &format!("/analytics/summary?event_type={asked}"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["parameter"], "event_type");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.len() < 400, "{} bytes: {msg}", msg.len());
    assert!(msg.contains("200 known"), "{msg}");
    assert!(msg.ends_with("and 195 more"), "{msg}");
}

/// 600 types: the summary names the 500 with most events (ties by name) and adds up the rest,
/// so its size does not grow with the number of types.
#[tokio::test]
async fn a_summary_names_at_most_500_types_and_counts_the_rest() {
    let f = fixture(Duration::ZERO);
    // Type t000 has 1 event, t001 2, ... t599 600: the 100 smallest are left out.
    let names: Vec<String> = (0..600).map(|i| format!("t{i:03}")).collect();
    let mut lines: Vec<(&str, &str, &str)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        for _ in 0..=i {
            lines.push(("u", n.as_str(), DAY1));
        }
    }
    ingest(&f, "types.jsonl", &lines).await;
    let (s, v) = call(&f.app, "GET", "/analytics/summary").await;
    assert_eq!(s, StatusCode::OK);
    let listed = v["events_by_type"].as_object().unwrap();
    assert_eq!(listed.len(), 500);
    assert_eq!(v["types_total"], 600);
    assert!(listed.contains_key("t100") && !listed.contains_key("t099"));
    assert_eq!(listed["t599"], 600);
    // 1 + 2 + ... + 100 events in the 100 types left out.
    assert_eq!(v["other_types_events"], 5_050);
    let sum: u64 = listed.values().map(|c| c.as_u64().unwrap()).sum();
    assert_eq!(sum + 5_050, v["total_events"].as_u64().unwrap());
    assert_eq!(v["total_events"], 600 * 601 / 2);
}

#[tokio::test]
async fn health_openapi_and_unknown_routes() {
    let f = loaded().await;
    let (s, v) = call(&f.app, "GET", "/health").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["checks"]["lake"]["reachable"], true);
    assert_eq!(v["watermark"]["files_processed"], 2);
    assert_eq!(v["watermark"]["last_object"], "s3://dataflow-raw/b.jsonl");
    let (s, v) = call(&f.app, "GET", "/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["paths"]["/analytics/summary"].is_object());
    let (s, v) = call(&f.app, "GET", "/nope").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, v) = call(&f.app, "POST", "/analytics/summary").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

/// On tokio's paused clock: the delay passes when the test advances it, however loaded the
/// machine is.
#[tokio::test(start_paused = true)]
async fn new_data_shows_up_after_the_revalidation_delay() {
    let f = fixture(Duration::from_secs(3));
    ingest(&f, "a.jsonl", &[("u1", "click", DAY1)]).await;
    let (_, v) = call(&f.app, "GET", "/analytics/summary").await;
    assert_eq!(v["total_events"], 1);
    let (_, v) = call(&f.app, "GET", "/pipeline/status").await;
    assert_eq!(v["totals"]["files_processed"], 1);
    ingest(&f, "b.jsonl", &[("u2", "click", DAY1)]).await;
    // Within the delay the cached view answers; after it, the new file counts.
    let (_, v) = call(&f.app, "GET", "/analytics/summary").await;
    assert_eq!(v["total_events"], 1);
    let (_, v) = call(&f.app, "GET", "/pipeline/status").await;
    assert_eq!(v["totals"]["files_processed"], 1);
    // Still within it at its last millisecond...
    tokio::time::advance(Duration::from_millis(2_999)).await;
    let (_, v) = call(&f.app, "GET", "/analytics/summary").await;
    assert_eq!(v["total_events"], 1);
    // ...and past it, the new file counts.
    tokio::time::advance(Duration::from_millis(1)).await;
    let (_, v) = call(&f.app, "GET", "/analytics/summary").await;
    assert_eq!(v["total_events"], 2);
    assert_eq!(v["files_processed"], 2);
    let (_, v) = call(&f.app, "GET", "/pipeline/status").await;
    assert_eq!(v["totals"]["files_processed"], 2);
    assert_eq!(v["recent"].as_array().unwrap().len(), 2);
}

/// The API Gateway v2 samples in events/ route through the same router (as lambda_http runs it).
#[tokio::test]
async fn api_gateway_samples_reach_the_router() {
    let f = loaded().await;
    for name in [
        "apigw-health.json",
        "apigw-summary.json",
        "apigw-metrics.json",
        "apigw-pipeline-status.json",
    ] {
        let text = std::fs::read_to_string(format!(
            "{}/../../events/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let req = lambda_http::request::from_str(&text).unwrap();
        let resp = f.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        let v: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        if name == "apigw-summary.json" {
            assert_eq!(v["total_events"], 6);
        }
        if name == "apigw-metrics.json" {
            assert_eq!(v["count"], 2);
        }
    }
    // The dashboard through the same path: HTML, not JSON.
    let text = std::fs::read_to_string(format!(
        "{}/../../events/apigw-dashboard.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let req = lambda_http::request::from_str(&text).unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&page).contains("<title>DataFlow</title>"));
}

/// Every analytics operation of /openapi.json is routed, and the parameter bounds it declares
/// are the API's.
#[tokio::test]
async fn the_openapi_document_describes_these_routes() {
    let f = loaded().await;
    let failures =
        dataflow_http::spec_check::run(&f.app, |p| !p.starts_with("/docs") && p != "/events").await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The charts' series: per day, events split over the top types and the day's distinct users.
#[tokio::test]
async fn daily_series_exact_numbers() {
    let f = loaded().await;
    // 2024-03-01: click u1, u2, u2 and view u1; 2024-03-02: click u1, u3.
    let (s, v) = call(&f.app, "GET", "/analytics/daily?top=1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["types"], json!(["click"]));
    assert_eq!(
        v["days"],
        json!([
            {"event_date": "2024-03-01", "event_count": 4, "unique_users": 2, "by_type": [3], "other_count": 1},
            {"event_date": "2024-03-02", "event_count": 2, "unique_users": 2, "by_type": [2], "other_count": 0},
        ])
    );
    assert_eq!(
        v["date_range"],
        json!({"start": "2024-03-01", "end": "2024-03-02"})
    );
    let (_, v) = call(&f.app, "GET", "/analytics/daily?event_type=view").await;
    assert_eq!(v["types"], json!(["view"]));
    assert_eq!(
        v["days"],
        json!([{"event_date": "2024-03-01", "event_count": 1, "unique_users": 1, "by_type": [1], "other_count": 0}])
    );
    // Two types: each day's users are the union (u1 viewed and clicked on the first day).
    let (_, v) = call(
        &f.app,
        "GET",
        "/analytics/daily?event_type=click&event_type=view&from=2024-03-01&to=2024-03-01&top=0",
    )
    .await;
    assert_eq!(v["types"], json!([]));
    assert_eq!(
        v["days"],
        json!([{"event_date": "2024-03-01", "event_count": 4, "unique_users": 2, "by_type": [], "other_count": 4}])
    );
    let (_, v) = call(&f.app, "GET", "/analytics/daily?from=2025-01-01").await;
    assert_eq!(v["days"], json!([]));
    let (s, v) = call(&f.app, "GET", "/analytics/daily?top=21").await;
    assert_eq!(
        (s, v["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("top"))
    );
}

#[tokio::test]
async fn pipeline_status_reports_totals_recent_objects_and_reasons() {
    let f = fixture(Duration::ZERO);
    let (s, v) = call(&f.app, "GET", "/pipeline/status").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["totals"]["files_processed"], 0);
    assert_eq!(v["recent"], json!([]));
    assert_eq!(v["last_processed_at"], Value::Null);
    ingest(
        &f,
        "a.jsonl",
        &[("u1", "click", DAY1), ("u2", "view", DAY2)],
    )
    .await;
    let body = format!(
        "{{\"user_id\":\"u3\",\"event_type\":\"click\",\"timestamp\":\"{DAY1}\"}}\nnot json\n{{\"event_type\":\"click\",\"timestamp\":\"{DAY1}\"}}\n{{\"user_id\":\"u4\",\"event_type\":\"\",\"timestamp\":\"{DAY1}\"}}\n"
    );
    f.etl
        .store
        .insert("dataflow-raw", "b.jsonl", body.into_bytes());
    f.etl
        .process_object(ObjectRef::new("dataflow-raw", "b.jsonl"))
        .await
        .unwrap();
    let (s, v) = call(&f.app, "GET", "/pipeline/status").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["totals"],
        json!({"files_processed": 2, "events_accepted": 3, "events_rejected": 3, "bytes_processed": v["totals"]["bytes_processed"]})
    );
    assert_eq!(
        v["rejected_by_reason"],
        json!({"invalid_json": 1, "missing_user_id": 1, "invalid_event_type": 1})
    );
    let objects: Vec<(&str, &str, u64, u64)> = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["object"].as_str().unwrap(),
                o["state"].as_str().unwrap(),
                o["accepted"].as_u64().unwrap(),
                o["rejected"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = objects.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("s3://dataflow-raw/a.jsonl", "done", 2, 0),
            ("s3://dataflow-raw/b.jsonl", "done", 1, 3)
        ]
    );
    assert_eq!(v["last_object"], "s3://dataflow-raw/b.jsonl");
    assert_eq!(v["watermark"], "2024-03-02T10:00:00.000Z");
    assert!(v["watermark_lag_seconds"].as_i64().unwrap() > 86_400 * 365);
    assert_eq!(v["needs_attention"], json!([]));
    assert_eq!(v["problems"], json!([]));
    assert_eq!(v["in_progress"], 0);
    assert_eq!(v["dead_letters"]["depth"], Value::Null);
    assert!(v["dead_letters"]["error"]
        .as_str()
        .unwrap()
        .contains("ETL_DLQ"));
    let (s, v) = call(&f.app, "GET", "/pipeline/status?x=1").await;
    assert_eq!(
        (s, v["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("x"))
    );
}

async fn raw(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = axum::http::Request::builder()
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The dashboard is served by the function itself: the page, its script and styles, uPlot and
/// its license; no third-party origin anywhere.
#[tokio::test]
async fn the_dashboard_and_its_assets_are_served() {
    let f = fixture(Duration::ZERO);
    let (s, h, page) = raw(&f.app, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    assert!(page.contains("<title>DataFlow</title>"));
    // The view's query string does not change the page.
    let (s, _, same) = raw(&f.app, "/?from=2024-03-01&event_type=click").await;
    assert_eq!((s, same.len()), (StatusCode::OK, page.len()));
    let mut referenced = 0;
    for asset in [
        "app.js",
        "app.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "LICENSE-uPlot.txt",
    ] {
        let (s, h, body) = raw(&f.app, &format!("/assets/{asset}")).await;
        assert_eq!(s, StatusCode::OK, "{asset}");
        assert!(body.len() > 500, "{asset}");
        assert!(h["cache-control"].to_str().unwrap().contains("max-age"));
        referenced += usize::from(page.contains(&format!("assets/{asset}")));
        assert!(
            !body.contains("https://fonts.") && !body.contains("cdn."),
            "{asset} calls out"
        );
    }
    assert_eq!(referenced, 5);
    let (_, _, license) = raw(&f.app, "/assets/LICENSE-uPlot.txt").await;
    assert!(license.starts_with("The MIT License"));
    let (s, v) = call(&f.app, "GET", "/assets/../Cargo.toml").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = call(&f.app, "GET", "/assets/nope.js").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

/// Extremes through the new reads: two days 20 years apart (the oldest day the default window
/// accepts, and a leap day), a 30-digit user id, a 256-byte type (the longest the contract
/// accepts) and an object key of
/// 1,000 characters. The daily series holds the two days only; the status names the key whole.
#[tokio::test]
async fn daily_series_and_status_with_extreme_values() {
    let f = fixture(Duration::ZERO);
    let long_type = "t".repeat(dataflow_core::event::MAX_EVENT_TYPE_BYTES);
    let long_key = format!("{}.jsonl", "k".repeat(994));
    let id30 = "123456789012345678901234567890";
    ingest(
        &f,
        &long_key,
        &[
            (id30, &long_type, "2000-01-01T00:00:00Z"),
            (id30, "click", "2020-02-29T23:59:59Z"),
            ("u2", "click", "2020-02-29T00:00:00Z"),
        ],
    )
    .await;
    let (s, v) = call(&f.app, "GET", "/analytics/daily?top=20").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["types"], json!(["click", long_type]));
    assert_eq!(
        v["days"],
        json!([
            {"event_date": "2000-01-01", "event_count": 1, "unique_users": 1, "by_type": [0, 1], "other_count": 0},
            {"event_date": "2020-02-29", "event_count": 2, "unique_users": 2, "by_type": [2, 0], "other_count": 0},
        ])
    );
    let (_, v) = call(
        &f.app,
        "GET",
        &format!("/analytics/daily?event_type={long_type}"),
    )
    .await;
    assert_eq!(v["days"].as_array().map(Vec::len), Some(1), "{v}");
    let (s, v) = call(&f.app, "GET", "/pipeline/status").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["recent"][0]["object"],
        format!("s3://dataflow-raw/{long_key}")
    );
    assert_eq!(v["watermark"], "2020-02-29T23:59:59.000Z");
    assert_eq!(v["totals"]["events_accepted"], 3);
}
