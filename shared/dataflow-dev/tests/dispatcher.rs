//! The local dispatcher against the emulator's real S3 -> SQS notifications: batches, partial
//! batch failures, retry after the visibility timeout, and the dead-letter queue.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::sync::atomic::{AtomicUsize, Ordering};

use dataflow_dev::dispatcher::Dispatcher;
use dataflow_dev::resources;
use serde_json::{json, Value};

#[tokio::test]
async fn partial_failures_are_retried_then_dead_lettered() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let (url, arn) = resources::ensure_queue_with_dlq(
        &clients.sqs,
        &cfg.etl_queue.replace("dataflow", &cfg.etl.lake.raw_bucket),
        1,
        2,
    )
    .await
    .unwrap();
    resources::wire_bucket_to_queue(&clients.s3, &cfg.etl.lake.raw_bucket, &arn)
        .await
        .unwrap();
    assert!(
        resources::notifications_wired(&clients.s3, &cfg.etl.lake.raw_bucket, &arn)
            .await
            .unwrap()
    );
    for key in ["good.jsonl", "bad.jsonl"] {
        clients
            .s3
            .put_object()
            .bucket(&cfg.etl.lake.raw_bucket)
            .key(key)
            .body(b"{}".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let d = Dispatcher {
        sqs: clients.sqs.clone(),
        queue_url: url.clone(),
        queue_arn: arn,
        region: "us-east-1".into(),
        batch_size: 10,
        wait_seconds: 1,
    };
    // A handler that fails every message naming bad.jsonl, like the ETL with a corrupt object.
    let seen = AtomicUsize::new(0);
    let handler = |event: Value| {
        let seen = &seen;
        async move {
            let mut failures = Vec::new();
            for r in event["Records"].as_array().unwrap() {
                assert_eq!(r["eventSource"], "aws:sqs");
                let body = r["body"].as_str().unwrap();
                if body.contains("bad.jsonl") {
                    failures.push(json!({"itemIdentifier": r["messageId"]}));
                }
                if body.contains("Records") {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok::<Value, String>(json!({"batchItemFailures": failures}))
        }
    };
    // First receives: the test event and both notifications; only bad.jsonl stays, and comes
    // back once its visibility timeout (1 s, the emulator's own clock) runs out. Each poll
    // long-polls up to a second, so the loops wait on the queue, not on a fixed time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut failed_rounds = 0;
    while failed_rounds < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "bad.jsonl is retried after the visibility timeout (failed {failed_rounds} time(s))"
        );
        failed_rounds += d.poll_once(&handler).await.unwrap().failed;
    }
    assert_eq!(failed_rounds, 2);
    let dlq_url = resources::queue_url(
        &clients.sqs,
        &format!(
            "{}-dlq",
            cfg.etl_queue.replace("dataflow", &cfg.etl.lake.raw_bucket)
        ),
    )
    .await
    .unwrap()
    .unwrap();
    // After maxReceiveCount (2) its next receive moves it to the dead-letter queue: it is
    // never delivered a third time.
    let dead = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "bad.jsonl never reached the dead-letter queue"
        );
        assert_eq!(d.poll_once(&handler).await.unwrap().failed, 0);
        let dead = clients
            .sqs
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if !dead.messages().is_empty() {
            break dead;
        }
    };
    assert_eq!(dead.messages().len(), 1);
    assert!(dead.messages()[0].body().unwrap().contains("bad.jsonl"));
    // good.jsonl was delivered once and deleted: the main queue is empty.
    let left = clients
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 3, "good once, bad twice");
}
