//! The handler with the sample events in `events/`, against the emulator: keeps the samples
//! accurate for `cargo lambda invoke --data-file` and `sam local invoke -e`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_core::checkpoint::{CheckpointReads as _, ObjectClaims as _};
use dataflow_store::{Body, ObjectStore};
use serde_json::Value;

fn sample(name: &str, bucket: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("dataflow-raw", bucket);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn sample_events_are_processed_once() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    let requeue = dataflow_aws::requeue::SqsRequeue::new(clients.sqs.clone());
    let data = std::fs::read(format!(
        "{}/../../events/data/sample-events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    etl.store
        .put(
            &cfg.etl.lake.raw_bucket,
            "incoming/sample-events.jsonl",
            Body::Bytes(data),
            "application/x-ndjson",
        )
        .await
        .unwrap();

    // The Lambda's metrics: one document per counted object, none for a duplicate.
    let docs = std::sync::Mutex::new(Vec::new());
    let emit = |c: &dataflow_core::checkpoint::Completion| {
        docs.lock()
            .unwrap()
            .push(dataflow_core::etl::metrics::object_processed(
                "DataFlow/test",
                c,
                0,
            ))
    };
    let resp = etl_function::handle_with_metrics(
        &etl,
        &requeue,
        &emit,
        sample("sqs-s3-put.json", &cfg.etl.lake.raw_bucket),
    )
    .await
    .unwrap();
    assert_eq!(resp, serde_json::json!({"batchItemFailures": []}));
    {
        let docs = docs.lock().unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (&docs[0]["EventsAccepted"], &docs[0]["EventsRejected"]),
            (&serde_json::json!(500), &serde_json::json!(3))
        );
        assert_eq!(docs[0]["key"], "incoming/sample-events.jsonl");
        assert_eq!(
            docs[0]["rejected_by_reason"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>(),
            3
        );
    }
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (1, 500, 3)
    );

    // The direct S3 notification for the same object is a duplicate now.
    let resp = etl_function::handle_with_metrics(
        &etl,
        &requeue,
        &emit,
        sample("s3-put.json", &cfg.etl.lake.raw_bucket),
    )
    .await
    .unwrap();
    assert_eq!(resp["processed"], 1);
    assert_eq!(docs.lock().unwrap().len(), 1, "a duplicate emits nothing");
    assert_eq!(
        etl.checkpoints.pipeline().await.unwrap().events_accepted,
        500
    );

    // Garbage is a clear error, not a panic.
    let err = etl_function::handle(&etl, &requeue, serde_json::json!({"hello": "world"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unrecognised event"), "{err}");
}

/// A delivery that meets another attempt's live lease is sent again with a delay, as a new
/// message: with a receive limit of 1, one failed receive would dead-letter it for good.
#[tokio::test]
async fn a_delivery_that_meets_a_live_lease_waits_without_burning_receives() {
    use dataflow_core::checkpoint::ClaimOutcome;
    use dataflow_core::lake::source::ObjectRef;
    use dataflow_dev::dispatcher::Dispatcher;
    use dataflow_dev::resources;

    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    let requeue = dataflow_aws::requeue::SqsRequeue::new(clients.sqs.clone());
    let name = dataflow_testkit::unique("busy");
    let (url, arn) = resources::ensure_queue_with_dlq(&clients.sqs, &name, 1, 1)
        .await
        .unwrap();
    resources::wire_bucket_to_queue(&clients.s3, &cfg.etl.lake.raw_bucket, &arn)
        .await
        .unwrap();
    let body = b"{\"user_id\":\"a\",\"event_type\":\"x\",\"timestamp\":\"2024-01-01T00:00:00Z\"}\n";
    etl.store
        .put(
            &cfg.etl.lake.raw_bucket,
            "k.jsonl",
            Body::Bytes(body.to_vec()),
            "application/x-ndjson",
        )
        .await
        .unwrap();
    let obj = ObjectRef::current(&*etl.store, &cfg.etl.lake.raw_bucket, "k.jsonl")
        .await
        .unwrap()
        .unwrap();
    // Another attempt holds a live 3 s lease (and then stops renewing it).
    let claimed = etl
        .checkpoints
        .claim(&obj, dataflow_core::time::now_ms(), 3_000)
        .await
        .unwrap();
    assert!(matches!(claimed, ClaimOutcome::Acquired(_)));
    let d = Dispatcher {
        sqs: clients.sqs.clone(),
        queue_url: url.clone(),
        queue_arn: arn,
        region: "us-east-1".into(),
        batch_size: 10,
        wait_seconds: 1,
    };
    let handler = |event: Value| {
        let (etl, requeue) = (&etl, &requeue);
        async move {
            etl_function::handle(etl, requeue, event)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let started = std::time::Instant::now();
    let mut failed = 0;
    while etl.checkpoints.pipeline().await.unwrap().files_processed == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the deferred message never came back"
        );
        failed += d.poll_once(&handler).await.unwrap().failed;
    }
    assert_eq!(failed, 0, "no delivery was reported as failed");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "it waited for the lease"
    );
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (1, 1));
    let dlq = resources::queue_url(&clients.sqs, &format!("{name}-dlq"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resources::queue_depth(&clients.sqs, &dlq).await.unwrap(), 0);
}
