//! The handler with the sample events in `events/`, against the emulator: keeps the samples
//! accurate for `cargo lambda invoke --data-file` and `sam local invoke -e`.

use dataflow_core::checkpoint::CheckpointStore;
use dataflow_core::storage::{Body, ObjectStore};
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
    let etl = dataflow_aws::etl(&cfg, &clients);
    let requeue = dataflow_aws::requeue::SqsRequeue::new(clients.sqs.clone());
    let data = std::fs::read(format!(
        "{}/../../events/data/sample-events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    etl.store
        .put(
            &cfg.raw_bucket,
            "incoming/sample-events.jsonl",
            Body::Bytes(data),
            "application/x-ndjson",
        )
        .await
        .unwrap();

    let resp = etl_function::handle(&etl, &requeue, sample("sqs-s3-put.json", &cfg.raw_bucket))
        .await
        .unwrap();
    assert_eq!(resp, serde_json::json!({"batchItemFailures": []}));
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (1, 500, 3)
    );

    // The direct S3 notification for the same object is a duplicate now.
    let resp = etl_function::handle(&etl, &requeue, sample("s3-put.json", &cfg.raw_bucket))
        .await
        .unwrap();
    assert_eq!(resp["processed"], 1);
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
