//! The rebuild-on-docs-change path against the emulator: Markdown put into and deleted from the
//! docs prefix reaches the index builder through real S3 -> SQS notifications, the rebuilt index
//! is published to S3, and a search API over S3 serves it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::time::Duration;

use dataflow_aws::S3Store;
use dataflow_dev::dispatcher::Dispatcher;
use dataflow_dev::resources;
use dataflow_search::store::{current_manifest, IndexHolder};
use serde_json::Value;

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn docs_changes_rebuild_and_republish_the_index() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let loc = cfg.search.index.clone();
    let (url, arn) = resources::ensure_queue_with_dlq(
        &clients.sqs,
        &format!("{}-docs", cfg.search.index.bucket),
        5,
        3,
    )
    .await
    .unwrap();
    resources::wire_notifications(
        &clients.s3,
        &cfg.search.index.bucket,
        &arn,
        "docs",
        Some(&loc.docs_prefix),
        true,
    )
    .await
    .unwrap();
    let d = Dispatcher {
        sqs: clients.sqs.clone(),
        queue_url: url,
        queue_arn: arn,
        region: "us-east-1".into(),
        batch_size: 10,
        wait_seconds: 1,
    };
    let store = S3Store::new(clients.s3.clone());
    let handler = |event: Value| {
        let (store, loc) = (&store, &loc);
        async move {
            index_builder::handle(store, loc, None, event)
                .await
                .map_err(|e| e.to_string())
        }
    };
    // Drains the queue: polls until a poll comes back empty.
    let drain = || async {
        let mut total = 0;
        for _ in 0..20 {
            let r = d.poll_once(&handler).await.unwrap();
            assert_eq!(r.failed, 0);
            total += r.received;
            if r.received == 0 && total > 0 {
                break;
            }
        }
        total
    };

    put(&clients.s3, &cfg.search.index.bucket, "docs/ops/runbook.md", "# Runbook\n\n## Throttling\n\nRaise reserved concurrency when invocations are throttled.\n").await;
    put(
        &clients.s3,
        &cfg.search.index.bucket,
        "docs/diagram.png",
        "not a document",
    )
    .await;
    assert!(drain().await >= 1);
    let m1 = current_manifest(&store, &loc)
        .await
        .unwrap()
        .expect("published");
    assert_eq!((m1.documents, m1.passages), (1, 1));

    let holder = IndexHolder::new(
        std::sync::Arc::new(S3Store::new(clients.s3.clone())),
        loc.clone(),
        Duration::ZERO,
    );
    let l = holder.get().await.unwrap().unwrap();
    let hits = l.index.search("throttled invocations", 3).unwrap();
    assert_eq!(hits[0].passage_id, "ops/runbook.md#throttling");

    // An edit and a new file: republished, and the API's holder picks it up.
    put(
        &clients.s3,
        &cfg.search.index.bucket,
        "docs/ops/runbook.md",
        "# Runbook\n\n## Cold starts\n\nProvisioned concurrency removes cold starts.\n",
    )
    .await;
    put(
        &clients.s3,
        &cfg.search.index.bucket,
        "docs/space name.md",
        "# Spaced\n\nKeys with spaces are decoded.\n",
    )
    .await;
    assert!(drain().await >= 1);
    let m2 = current_manifest(&store, &loc).await.unwrap().unwrap();
    assert_ne!(m2.key, m1.key);
    assert_eq!(m2.documents, 2);
    let l = holder.get().await.unwrap().unwrap();
    assert_eq!(l.manifest.key, m2.key);
    assert!(l.index.search("throttled", 3).unwrap().is_empty());
    assert_eq!(
        l.index.search("provisioned", 1).unwrap()[0].doc,
        "ops/runbook.md"
    );

    // A deletion is a change too: the deleted document stops being cited.
    clients
        .s3
        .delete_object()
        .bucket(&cfg.search.index.bucket)
        .key("docs/space name.md")
        .send()
        .await
        .unwrap();
    assert!(drain().await >= 1);
    let m3 = current_manifest(&store, &loc).await.unwrap().unwrap();
    assert_eq!(m3.documents, 1);
    let l = holder.get().await.unwrap().unwrap();
    assert!(l.index.search("spaces decoded", 5).unwrap().is_empty());
    // The object the previous manifest named is kept for readers that were mid-read.
    let kept = clients
        .s3
        .head_object()
        .bucket(&cfg.search.index.bucket)
        .key(&m2.key)
        .send()
        .await;
    assert!(kept.is_ok());
}
