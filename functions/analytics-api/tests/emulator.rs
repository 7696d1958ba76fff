//! End to end against the emulator: ETL some files into S3 and DynamoDB, then the API answers
//! exactly; after compaction the answers are identical; a new file shows up after the
//! revalidation delay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dataflow_aws::{DynamoCheckpoints, S3Store};
use dataflow_core::etl::work::Work;
use dataflow_core::etl::Etl;
use dataflow_core::lake::source::ObjectRef;
use dataflow_store::{Body as Upload, ObjectStore};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn file(day: u32, users: std::ops::Range<u32>, types: &[&str]) -> Vec<u8> {
    let mut s = String::new();
    for u in users {
        for t in types {
            s.push_str(&format!("{{\"user_id\":\"user-{u}\",\"event_type\":\"{t}\",\"timestamp\":\"2024-05-{day:02}T12:00:00Z\"}}\n"));
        }
    }
    s.into_bytes()
}

#[tokio::test]
async fn etl_then_api_then_compaction_then_new_data() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let store = Arc::new(S3Store::new(clients.s3.clone()));
    let ckpt = Arc::new(DynamoCheckpoints::new(
        clients.dynamodb.clone(),
        cfg.etl.lake.checkpoint_table.clone(),
    ));
    let etl = Etl::new(store.clone(), ckpt.clone(), &cfg.etl);
    let refresh = Duration::from_millis(500);
    let app = analytics_api::router(Arc::new(analytics_api::AppState::new(
        store.clone(),
        ckpt.clone(),
        &cfg.etl.lake,
        refresh,
    )));

    let (s, v) = get(&app, "/analytics/summary").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("analytics_not_ready"))
    );
    let (s, v) = get(&app, "/health").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));

    // Three files over two days: 0..100 x {click, view} on day 1, 50..150 x {click} twice on day 2.
    let files = [
        ("d1.jsonl", file(1, 0..100, &["click", "view"])),
        ("d2a.jsonl", file(2, 50..150, &["click"])),
        ("d2b.jsonl", file(2, 50..150, &["click"])),
    ];
    for (k, bytes) in files {
        store
            .put(
                &cfg.etl.lake.raw_bucket,
                k,
                Upload::Bytes(bytes),
                "application/x-ndjson",
            )
            .await
            .unwrap();
        etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, k))
            .await
            .unwrap();
    }
    // The cached empty answer gives way within the revalidation delay.
    dataflow_testkit::eventually(
        "the summary to count the files",
        Duration::from_secs(20),
        || async {
            let (_, v) = get(&app, "/analytics/summary").await;
            (v["total_events"] == 400).then_some(())
        },
    )
    .await;
    let (s, before) = get(&app, "/analytics/summary").await;
    assert_eq!(s, StatusCode::OK, "{before}");
    assert_eq!(before["total_events"], 400);
    assert_eq!(before["events_by_type"], json!({"click": 300, "view": 100}));
    assert_eq!(before["unique_users_daily_sum"], 200);
    assert_eq!(before["unique_users"], 150);
    assert_eq!(before["files_processed"], 3);
    let (_, metrics_before) = get(&app, "/analytics/metrics").await;
    assert_eq!(
        metrics_before["metrics"],
        json!([
            {"event_date": "2024-05-01", "event_type": "click", "event_count": 100, "unique_users": 100},
            {"event_date": "2024-05-01", "event_type": "view", "event_count": 100, "unique_users": 100},
            {"event_date": "2024-05-02", "event_type": "click", "event_count": 200, "unique_users": 100},
        ])
    );

    // Compaction (the scheduled run): one compacted file for the date with two partials (which
    // stay as the source of truth), identical answers.
    let report = etl.handle(Work::Compact).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.compacted, 1,
        "only 2024-05-02 had more than one file"
    );
    // ... and then the month's rollup, which the API reads from now on.
    let rollup = report.rollup.clone().expect("a rollup report");
    assert_eq!((rollup.months_rebuilt, rollup.months_unchanged), (1, 0));
    let aggs: Vec<_> = store
        .list(
            &cfg.etl.lake.lake_bucket,
            &cfg.etl.lake.layout.aggregates_prefix,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.key.starts_with(&cfg.etl.lake.layout.rollup_prefix()))
        .filter(|m| {
            !m.key
                .starts_with(&dataflow_core::lake::changes::prefix(&cfg.etl.lake.layout))
        })
        .collect();
    let compacted: Vec<_> = aggs
        .iter()
        .filter(|m| m.key.contains("/compacted-"))
        .collect();
    assert_eq!((compacted.len(), aggs.len()), (1, 4), "{aggs:?}");
    assert!(compacted[0].key.contains("event_date=2024-05-02/"));
    // A reader that starts now, after compaction, answers as before it.
    let fresh = analytics_api::router(Arc::new(analytics_api::AppState::new(
        store.clone(),
        ckpt.clone(),
        &cfg.etl.lake,
        refresh,
    )));
    let (_, after) = get(&fresh, "/analytics/summary").await;
    assert_eq!(after, before);
    let (_, metrics_after) = get(&fresh, "/analytics/metrics").await;
    assert_eq!(metrics_after, metrics_before);

    // A new file shows up after the revalidation delay.
    store
        .put(
            &cfg.etl.lake.raw_bucket,
            "d3.jsonl",
            Upload::Bytes(file(3, 1000..1010, &["buy"])),
            "application/x-ndjson",
        )
        .await
        .unwrap();
    etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, "d3.jsonl"))
        .await
        .unwrap();
    let v =
        dataflow_testkit::eventually("the new file to count", Duration::from_secs(20), || async {
            let (_, v) = get(&app, "/analytics/summary").await;
            (v["total_events"] == 410).then_some(v)
        })
        .await;
    assert_eq!(v["unique_users"], 160);
    assert_eq!(v["files_processed"], 4);

    // The next scheduled run rolls May up again; a cold API reading only the rollup agrees.
    let report = etl.handle(Work::Compact).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.rollup.map(|r| r.months_rebuilt), Some(1));
    let cold = analytics_api::router(Arc::new(analytics_api::AppState::new(
        store.clone(),
        ckpt.clone(),
        &cfg.etl.lake,
        refresh,
    )));
    let (_, w) = get(&cold, "/analytics/summary").await;
    assert_eq!(w, v);
    let (_, m) = get(&cold, "/analytics/metrics?event_type=buy").await;
    assert_eq!(
        m["metrics"],
        json!([{"event_date": "2024-05-03", "event_type": "buy", "event_count": 10, "unique_users": 10}])
    );
}

/// `/health` is public: when the lake bucket and the checkpoint table are missing it answers
/// 503 "degraded" saying which backend failed, without their names or the SDK's error text.
#[tokio::test]
async fn health_names_what_failed_but_not_how() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let mut lake = cfg.etl.lake.clone();
    lake.lake_bucket = "no-such-bucket-for-health".into();
    let ckpt = Arc::new(DynamoCheckpoints::new(
        clients.dynamodb.clone(),
        "no-such-table-for-health",
    ));
    let app = analytics_api::router(Arc::new(analytics_api::AppState::new(
        Arc::new(S3Store::new(clients.s3.clone())),
        ckpt,
        &lake,
        Duration::from_secs(60),
    )));
    let (s, v) = get(&app, "/health").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("degraded")),
        "{v}"
    );
    for backend in ["lake", "checkpoint_table"] {
        assert_eq!(v["checks"][backend]["reachable"], false, "{v}");
        assert_eq!(
            v["checks"][backend]["error"],
            "the backend failed to answer; the function's log has the error"
        );
    }
    let text = v.to_string();
    assert!(!text.contains("no-such-"), "backend names leaked: {text}");
}
