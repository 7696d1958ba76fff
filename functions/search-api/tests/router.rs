//! Every endpoint and error path of the search API, in-process, over an in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use dataflow_search::chunk::ChunkOptions;
use dataflow_search::store::{rebuild, IndexLocation};
use dataflow_store::MemoryStore;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn loc() -> IndexLocation {
    IndexLocation {
        bucket: "dataflow-index".into(),
        docs_prefix: "docs/".into(),
        index_prefix: "index/".into(),
    }
}

fn app(store: Arc<MemoryStore>, refresh: Duration) -> axum::Router {
    search_api::router(Arc::new(search_api::AppState::new(store, loc(), refresh)))
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Value) {
    dataflow_http::spec_check::request(app, method, uri, Vec::new()).await
}

async fn published() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::default());
    store.insert(
        "dataflow-index",
        "docs/operations.md",
        b"# Operations guide\n\n## Reprocess an object\n\nDelete its checkpoint with `dataflow reprocess --key KEY`; the object is processed again.\n\n## Dead-letter queue\n\nMessages that failed three times wait in the DLQ.\n".to_vec(),
    );
    store.insert(
        "dataflow-index",
        "docs/contract.md",
        b"# Event contract\n\nEvery line needs event_type, user_id and timestamp.\n".to_vec(),
    );
    rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn docs_lists_documents_and_the_index_version() {
    let app = app(published().await, Duration::from_secs(60));
    let (s, v) = call(&app, "GET", "/docs").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["index"]["format_version"], 2);
    assert_eq!(v["index"]["vectors"], serde_json::Value::Null);
    assert_eq!(v["index"]["documents"], 2);
    assert_eq!(v["index"]["passages"], 3);
    assert!(v["index"]["built_at"].as_str().unwrap().ends_with('Z'));
    let docs = v["documents"].as_array().unwrap();
    assert_eq!(docs[0]["path"], "contract.md");
    assert_eq!(docs[0]["title"], "Event contract");
    assert_eq!(docs[0]["state"], "indexed");
    assert_eq!(docs[1]["passages"], 2);
    assert_eq!(docs.len(), 2);
}

/// Files that cannot be indexed are listed with the reason; the index is republished when one
/// turns unreadable or is fixed, even though the readable documents did not change.
#[tokio::test]
async fn docs_shows_each_documents_indexing_state() {
    let store = published().await;
    store.insert("dataflow-index", "docs/scan.pdf", b"%PDF-1.4 cut".to_vec());
    store.insert("dataflow-index", "docs/latin1.md", vec![0xe9, 0x74, 0xe9]);
    // Accepted by an upload (it is valid Markdown), but there is nothing in it to search.
    store.insert(
        "dataflow-index",
        "docs/heading.md",
        b"# Only a heading\n".to_vec(),
    );
    let r = rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    assert!(
        matches!(r, dataflow_search::store::RebuildOutcome::Published { .. }),
        "{r:?}"
    );
    let app = app(store.clone(), Duration::ZERO);
    let (s, v) = call(&app, "GET", "/docs").await;
    assert_eq!(s, StatusCode::OK);
    let states: Vec<(&str, &str, &str)> = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap(),
                d["state"].as_str().unwrap(),
                d["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(states.len(), 5, "{states:?}");
    assert_eq!(
        &states[..3],
        &[
            ("contract.md", "indexed", ""),
            (
                "heading.md",
                "empty",
                "no text to search: the document holds only headings or whitespace"
            ),
            ("operations.md", "indexed", "")
        ]
    );
    assert_eq!(v["documents"][1]["passages"], 0);
    assert_eq!(states[3], ("latin1.md", "failed", "not UTF-8 text"));
    assert_eq!(states[4].0, "scan.pdf");
    assert!(states[4].2.starts_with("not a readable PDF"), "{states:?}");
    // Fixed: gone from the list after the next build.
    use dataflow_store::ObjectStore;
    store
        .delete("dataflow-index", "docs/scan.pdf")
        .await
        .unwrap();
    store
        .delete("dataflow-index", "docs/latin1.md")
        .await
        .unwrap();
    store
        .delete("dataflow-index", "docs/heading.md")
        .await
        .unwrap();
    let r = rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    assert!(
        matches!(r, dataflow_search::store::RebuildOutcome::Published { .. }),
        "{r:?}"
    );
    let (_, v) = call(&app, "GET", "/docs").await;
    assert_eq!(v["documents"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn search_ranks_the_expected_passage_first_with_a_marked_snippet() {
    let app = app(published().await, Duration::from_secs(60));
    let (s, v) = call(&app, "GET", "/docs/search?q=how+to+reprocess+an+object&k=2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["k"], 2);
    let r = v["results"].as_array().unwrap();
    assert!(!r.is_empty() && r.len() <= 2);
    assert_eq!(r[0]["passage_id"], "operations.md#reprocess-an-object");
    assert_eq!(r[0]["doc"], "operations.md");
    assert_eq!(r[0]["title"], "Operations guide");
    assert_eq!(r[0]["heading"], "Operations guide › Reprocess an object");
    assert!(r[0]["score"].as_f64().unwrap() > 0.0);
    assert!(r[0]["snippet"]
        .as_str()
        .unwrap()
        .contains("<mark>reprocess</mark>"));
    // Default k is 5.
    let (_, v) = call(&app, "GET", "/docs/search?q=checkpoint").await;
    assert_eq!(v["k"], 5);
}

#[tokio::test]
async fn bad_requests_get_400_with_the_stable_shape() {
    let app = app(published().await, Duration::from_secs(60));
    for (uri, param) in [
        ("/docs/search", "q"),
        ("/docs/search?q=", "q"),
        ("/docs/search?q=what+is+the", "q"),
        ("/docs/search?q=queue&k=0", "k"),
        ("/docs/search?q=queue&k=51", "k"),
        ("/docs/search?q=queue&k=ten", "k"),
        ("/docs/search?q=a&q=b", "q"),
        ("/docs/search?q=queue&limit=3", "limit"),
    ] {
        let (s, v) = call(&app, "GET", uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"], "invalid_parameter", "{uri}");
        assert_eq!(v["parameter"], param, "{uri}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let long = format!("/docs/search?q={}", "word+".repeat(200));
    let (s, v) = call(&app, "GET", &long).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("longer than"));
    let (s, v) = call(&app, "POST", "/docs/search?q=x").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"], "method_not_allowed");
    // Documents are written with PUT and removed with DELETE; there is no GET of one.
    let (s, v) = call(&app, "GET", "/docs/nope.md").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"], "method_not_allowed");
    let (s, v) = call(&app, "GET", "/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
}

async fn send(app: &axum::Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    dataflow_http::spec_check::request(app, method, uri, body).await
}

/// PUT stores a document under the docs prefix with its content type, the next build makes it
/// searchable, DELETE removes it.
#[tokio::test]
async fn uploaded_documents_become_searchable_and_deletes_remove_them() {
    use dataflow_store::ObjectStore;
    let store = published().await;
    let app = app(store.clone(), Duration::ZERO);
    let (s, v) = send(
        &app,
        "PUT",
        "/docs/runbooks/zeppelin.md",
        b"# Zeppelin\n\nInflate the zeppelin before the demo.\n".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["path"], "runbooks/zeppelin.md");
    assert_eq!(
        v["location"],
        "s3://dataflow-index/docs/runbooks/zeppelin.md"
    );
    assert_eq!(v["bytes"], 50);
    assert_eq!(v["searchable_within_seconds"], 30);
    let meta = store
        .head("dataflow-index", "docs/runbooks/zeppelin.md")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(meta.size, 50);
    let (s, _) = send(
        &app,
        "PUT",
        "/docs/notes/blimp.txt",
        b"Blimps float.".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    let (_, v) = call(&app, "GET", "/docs/search?q=zeppelin&k=1").await;
    assert_eq!(v["results"][0]["doc"], "runbooks/zeppelin.md", "{v}");
    let (_, v) = call(&app, "GET", "/docs/search?q=blimps&k=1").await;
    assert_eq!(v["results"][0]["doc"], "notes/blimp.txt", "{v}");

    let (s, v) = send(&app, "DELETE", "/docs/runbooks/zeppelin.md", vec![]).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("deleted"))
    );
    assert!(store
        .head("dataflow-index", "docs/runbooks/zeppelin.md")
        .await
        .unwrap()
        .is_none());
    let (s, v) = send(&app, "DELETE", "/docs/runbooks/zeppelin.md", vec![]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    let (_, v) = call(&app, "GET", "/docs/search?q=zeppelin&k=1").await;
    assert_eq!(v["results"], serde_json::json!([]), "{v}");
}

/// Every way an upload can be refused: the exact status and error code, and nothing stored.
#[tokio::test]
async fn upload_rejections() {
    let store = published().await;
    let before = store.keys("dataflow-index");
    let app = app(store.clone(), Duration::ZERO);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/docs/a/../x.md",
            b"# x".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "/docs//etc/x.md",
            b"# x".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "/docs/a%01b.md",
            b"# x".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "/docs/a%5Cb.md",
            b"# x".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "/docs/x.md",
            vec![],
            StatusCode::BAD_REQUEST,
            "empty_document",
        ),
        (
            "/docs/tool.exe",
            b"MZ".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            "/docs/x.md",
            vec![0xff, 0xfe, 0x00],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            "/docs/x.pdf",
            b"# not a pdf".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            "/docs/x.html",
            b"plain words".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            "/docs/x.pdf",
            b"%PDF-1.7 cut short".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unreadable_document",
        ),
        (
            "/docs/big.txt",
            vec![b'a'; dataflow_search::upload::MAX_UPLOAD_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (uri, body, status, code) in cases {
        let (s, v) = send(&app, "PUT", uri, body).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{uri}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{uri}"
        );
    }
    let (s, v) = send(&app, "DELETE", "/docs/../operations.md", vec![]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_path")),
        "{v}"
    );
    assert_eq!(store.keys("dataflow-index"), before);
}

/// On tokio's paused clock: the holder's refresh passes when the test advances it.
#[tokio::test(start_paused = true)]
async fn missing_index_is_503_naming_the_build_command_and_a_publish_is_picked_up() {
    let store = Arc::new(MemoryStore::default());
    let app = app(store.clone(), Duration::from_millis(100));
    for uri in ["/docs", "/docs/search?q=queue"] {
        let (s, v) = call(&app, "GET", uri).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["error"], "index_not_built");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("dataflow index build --docs docs/ --upload"));
    }
    // A bad query is still the client's fault, index or not.
    let (s, _) = call(&app, "GET", "/docs/search?q=").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    store.insert(
        "dataflow-index",
        "docs/a.md",
        b"# A\n\nkinesis streams\n".to_vec(),
    );
    rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(150)).await;
    let (s, v) = call(&app, "GET", "/docs/search?q=kinesis").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["doc"], "a.md");
}

#[tokio::test]
async fn a_corrupt_index_object_is_503_not_a_crash() {
    let store = published().await;
    let m = dataflow_search::store::current_manifest(&*store, &loc())
        .await
        .unwrap()
        .unwrap();
    store.insert("dataflow-index", &m.key, b"DFSEARCH garbage".to_vec());
    let app = app(store, Duration::from_secs(60));
    let (s, v) = call(&app, "GET", "/docs").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"], "index_unavailable");
}

/// The API Gateway v2 samples in events/ route through the same router (as lambda_http runs it).
#[tokio::test]
async fn api_gateway_samples_reach_the_router() {
    let app = app(published().await, Duration::from_secs(60));
    for name in ["apigw-docs.json", "apigw-docs-search.json"] {
        let text = std::fs::read_to_string(format!(
            "{}/../../events/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let req = lambda_http::request::from_str(&text).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        let v: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        if name == "apigw-docs-search.json" {
            assert_eq!(v["k"], 3);
            assert_eq!(v["results"][0]["doc"], "operations.md");
        }
    }
}

/// Every search operation of /openapi.json is routed, and the parameter bounds it declares are
/// the API's.
#[tokio::test]
async fn the_openapi_document_describes_these_routes() {
    let app = app(published().await, Duration::ZERO);
    let failures =
        dataflow_http::spec_check::run(&app, |p| p.starts_with("/docs") || p == "/openapi.json")
            .await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// An index with vectors: hybrid by default, each hit with both rankings' scores; the mode can
/// be chosen; a function without the model answers lexically and says why.
#[tokio::test]
async fn modes_default_to_hybrid_and_fall_back_with_a_reason() {
    use dataflow_embed::{Embed, HashEmbedder};
    let store = published().await;
    let model: Arc<dyn Embed> = Arc::new(HashEmbedder::new("test-model", 32));
    rebuild(
        &*store,
        &loc(),
        ChunkOptions::default(),
        true,
        Some(model.clone()),
    )
    .await
    .unwrap();
    let with_model = search_api::router(Arc::new(
        search_api::AppState::new(store.clone(), loc(), Duration::from_secs(60))
            .with_embedder(Some(model)),
    ));
    let (s, v) = call(&with_model, "GET", "/docs").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["index"]["vectors"]["name"], "test-model");
    let (s, v) = call(&with_model, "GET", "/docs/search?q=reprocess+an+object&k=2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["mode"].as_str(), &v["fallback"]),
        (Some("hybrid"), &Value::Null)
    );
    let top = &v["results"][0];
    assert_eq!(top["doc"], "operations.md");
    assert_eq!(top["scores"]["lexical_rank"], 1);
    assert_eq!(top["scores"]["semantic_rank"], 1);
    for mode in ["lexical", "semantic"] {
        let (s, v) = call(
            &with_model,
            "GET",
            &format!("/docs/search?q=reprocess+an+object&mode={mode}"),
        )
        .await;
        assert_eq!((s, v["mode"].as_str()), (StatusCode::OK, Some(mode)));
    }
    let (s, v) = call(&with_model, "GET", "/docs/search?q=reprocess&mode=fuzzy").await;
    assert_eq!(
        (s, v["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mode"))
    );
    // Stopwords only: refused lexically, searched by meaning otherwise.
    let (s, _) = call(&with_model, "GET", "/docs/search?q=how+do+I&mode=lexical").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = call(&with_model, "GET", "/docs/search?q=how+do+I").await;
    assert_eq!((s, v["mode"].as_str()), (StatusCode::OK, Some("hybrid")));

    let without = app(store, Duration::from_secs(60));
    let (s, v) = call(
        &without,
        "GET",
        "/docs/search?q=reprocess+an+object&mode=semantic",
    )
    .await;
    assert_eq!((s, v["mode"].as_str()), (StatusCode::OK, Some("lexical")));
    assert!(
        v["fallback"]
            .as_str()
            .unwrap()
            .contains("no embedding model"),
        "{v}"
    );
    assert_eq!(v["results"][0]["doc"], "operations.md");
}

/// `/docs/context`: whole passages, best first, within the budget, each with its citation.
#[tokio::test]
async fn context_packs_cited_passages_into_the_budget() {
    let app = app(published().await, Duration::from_secs(60));
    let (s, v) = call(
        &app,
        "GET",
        "/docs/context?q=reprocess+an+object&max_tokens=1000",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let passages = v["passages"].as_array().unwrap();
    assert_eq!(passages.len(), 1, "only one passage holds these words: {v}");
    assert_eq!(passages[0]["n"], 1);
    assert_eq!(passages[0]["citation"]["doc"], "operations.md");
    assert_eq!(
        passages[0]["citation"]["heading"],
        "Operations guide › Reprocess an object"
    );
    assert_eq!(passages[0]["citation"]["anchor"], "reprocess-an-object");
    assert!(passages[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Delete its checkpoint"));
    let used: u64 = passages.iter().map(|p| p["tokens"].as_u64().unwrap()).sum();
    assert_eq!(v["used_tokens"].as_u64(), Some(used));
    // A budget exactly its size holds it; one token less holds nothing (never a cut passage).
    let first = passages[0]["tokens"].as_u64().unwrap();
    for (budget, n) in [(first, 1), (first - 1, 0)] {
        let (s, v) = call(
            &app,
            "GET",
            &format!("/docs/context?q=reprocess+an+object&max_tokens={budget}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["passages"].as_array().unwrap().len(), n, "{v}");
        assert_eq!(v["skipped_over_budget"].as_u64(), Some(1 - n as u64));
    }
    for bad in ["max_tokens=0", "max_tokens=32001", "max_tokens=x"] {
        let (s, v) = call(&app, "GET", &format!("/docs/context?q=reprocess&{bad}")).await;
        assert_eq!(
            (s, v["parameter"].as_str()),
            (StatusCode::BAD_REQUEST, Some("max_tokens"))
        );
    }
    let (s, v) = call(&app, "GET", "/docs/context?max_tokens=10").await;
    assert_eq!(
        (s, v["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("q"))
    );
}

/// `doc`, `title` and `heading` are plain text, as the document states them (a client escapes
/// them); `snippet` is HTML whose only markup is `<mark>`. An HTML page whose title and body
/// carry markup-looking text holds both halves of that contract.
#[tokio::test]
async fn titles_are_plain_text_and_snippets_hold_only_mark() {
    let store = Arc::new(MemoryStore::default());
    store.insert(
        "dataflow-index",
        "docs/x<y>.html",
        br#"<!doctype html><html><head><title>Rollback &lt;b&gt;now&lt;/b&gt; & "safe"</title></head>
<body><h1>Steps &lt;script&gt;</h1><p>To roll back, run <code>&lt;img src=x onerror=alert(1)&gt;</code> then the rollback &amp; wait.</p></body></html>"#
            .to_vec(),
    );
    rebuild(&*store, &loc(), ChunkOptions::default(), false, None)
        .await
        .unwrap();
    let app = app(store, Duration::from_secs(60));
    let (s, v) = call(&app, "GET", "/docs/search?q=rollback").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let hit = &v["results"][0];
    assert_eq!(hit["doc"], "x<y>.html");
    assert_eq!(hit["title"], r#"Rollback <b>now</b> & "safe""#);
    assert_eq!(hit["heading"], "Steps <script>");
    let snippet = hit["snippet"].as_str().unwrap();
    assert!(
        snippet.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{snippet}"
    );
    assert!(snippet.contains("<mark>rollback</mark>"), "{snippet}");
    let without_marks = snippet.replace("<mark>", "").replace("</mark>", "");
    assert!(
        !without_marks.contains('<') && !without_marks.contains('>'),
        "markup besides <mark>: {snippet}"
    );
}
