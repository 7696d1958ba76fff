//! API keys on the local server: every case answers with its status and the JSON error shape,
//! and a refused request never reaches the handler.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{get, post, put};
use dataflow_http::spec_check::request;
use dataflow_keys::{generate, KeyStore, MemoryKeys, Scope};
use serde_json::json;

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
) -> (u16, serde_json::Value) {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let Ok(resp) = app.clone().oneshot(req.body(Body::empty()).unwrap()).await;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn every_auth_case() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let handler = move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"ok": true}))
        }
    };
    let routes = axum::Router::new()
        .route("/health", get(handler.clone()))
        .route("/analytics/summary", get(handler.clone()))
        .route("/events", post(handler.clone()))
        .route("/docs/{*path}", put(handler.clone()));
    let store = Arc::new(MemoryKeys::default());
    let ingest = generate("app", Scope::Ingest, 1);
    let read = generate("dash", Scope::Read, 1);
    let admin = generate("ops", Scope::Admin, 1);
    for k in [&ingest, &read, &admin] {
        store.put(&k.record).await.unwrap();
    }
    let app = dataflow_http::auth::with_keys(dataflow_http::finish(routes), store.clone());

    // Public routes need no key.
    assert_eq!(send(&app, "GET", "/health", None).await.0, 200);
    assert_eq!(
        request(&app, "GET", "/openapi.json", Vec::new())
            .await
            .0
            .as_u16(),
        200
    );
    let before = hits.load(Ordering::SeqCst);
    let cases = [
        ("GET", "/analytics/summary", None, 401, "missing_api_key"),
        (
            "GET",
            "/analytics/summary",
            Some("dfk_0000"),
            401,
            "invalid_api_key",
        ),
        (
            "GET",
            "/analytics/summary",
            Some("not a key"),
            401,
            "invalid_api_key",
        ),
        (
            "GET",
            "/analytics/summary",
            Some(ingest.key.as_str()),
            403,
            "insufficient_scope",
        ),
        (
            "POST",
            "/events",
            Some(read.key.as_str()),
            403,
            "insufficient_scope",
        ),
        (
            "PUT",
            "/docs/a.md",
            Some(read.key.as_str()),
            403,
            "insufficient_scope",
        ),
        (
            "PUT",
            "/docs/a.md",
            Some(ingest.key.as_str()),
            403,
            "insufficient_scope",
        ),
    ];
    for (method, uri, key, status, code) in cases {
        let (got, body) = send(&app, method, uri, key).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{method} {uri}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(k) = key {
            assert!(!body.to_string().contains(k), "the key is never echoed");
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "refused requests never reach a handler"
    );
    assert_eq!(
        send(&app, "GET", "/analytics/summary", Some(&read.key))
            .await
            .0,
        200
    );
    assert_eq!(
        send(&app, "POST", "/events", Some(&ingest.key)).await.0,
        200
    );
    assert_eq!(
        send(&app, "PUT", "/docs/a.md", Some(&admin.key)).await.0,
        200
    );
    assert_eq!(
        send(&app, "GET", "/analytics/summary", Some(&admin.key))
            .await
            .0,
        200
    );
    store.revoke("dash", 2).await.unwrap();
    let (status, body) = send(&app, "GET", "/analytics/summary", Some(&read.key)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("revoked_api_key"))
    );
}
