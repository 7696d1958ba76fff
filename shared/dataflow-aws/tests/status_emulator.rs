//! What `GET /pipeline/status` reads, against the emulator: the checkpoint table's `recent`
//! index (also on a table made before the index existed) and the dead-letter queue's depth.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use dataflow_aws::requeue::SqsDepth;
use dataflow_aws::{DynamoCheckpoints, ATTENTION_INDEX, RECENT_INDEX};
use dataflow_core::checkpoint::ClaimOutcome;
use dataflow_core::checkpoint::{CheckpointReads as _, ObjectClaims as _};
use dataflow_core::lake::source::ObjectRef;
use dataflow_core::pipeline::QueueDepth;
use dataflow_core::time::now_ms;

/// A table as earlier versions made it (no index) gains the sweep's and the status page's, and
/// the status reads from them at once; a failed object is listed until it is retried.
#[tokio::test]
async fn an_older_table_gains_the_recent_index() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_dev::Clients::new(&cfg).await;
    let table = cfg.etl.lake.checkpoint_table.clone();
    let ddb = &clients.dynamodb;
    let s = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let hash = |name: &str| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .unwrap()
    };
    // As the first versions made it: the partition key only, no index.
    ddb.create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(s("pk"))
        .key_schema(hash("pk"))
        .send()
        .await
        .unwrap();
    let ck = DynamoCheckpoints::new(ddb.clone(), table.clone());
    let obj = ObjectRef::new("raw", "a.jsonl");
    let ClaimOutcome::Acquired(_) = ck.claim(&obj, now_ms(), 60_000).await.unwrap() else {
        panic!("not claimed")
    };
    // The index is missing: the status says so rather than guessing.
    assert!(ck.recent(10, now_ms()).await.is_err());
    dataflow_dev::resources::ensure_table(ddb, &table)
        .await
        .unwrap();
    // Twice: nothing to add the second time.
    dataflow_dev::resources::ensure_table(ddb, &table)
        .await
        .unwrap();
    let d = ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let mut names: Vec<String> = d
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names, [ATTENTION_INDEX, RECENT_INDEX]);
    // Records written from now on are found; the one claimed before the index is written again
    // by its next step.
    let b = ObjectRef::new("raw", "b.jsonl");
    ck.claim(&b, now_ms(), 60_000).await.unwrap();
    let recent = ck.recent(10, now_ms()).await.unwrap();
    let ids: Vec<&str> = recent.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&b.checkpoint_id().as_str()), "{ids:?}");
    // The index holds what the page shows: source and state read back.
    let rec = recent.iter().find(|r| r.id == b.checkpoint_id()).unwrap();
    assert_eq!(rec.source.as_ref().map(|s| s.key.as_str()), Some("b.jsonl"));

    // A failed attempt: listed as failed (not by the sweep's query), until a retry claims it.
    let c = ObjectRef::new("raw", "c.jsonl");
    let ClaimOutcome::Acquired(claim) = ck.claim(&c, now_ms(), 60_000).await.unwrap() else {
        panic!("not claimed")
    };
    ck.fail(&claim, "read timed out", now_ms()).await.unwrap();
    let failed = ck.failed(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, c.checkpoint_id());
    assert_eq!(failed[0].error.as_deref(), Some("read timed out"));
    assert!(ck
        .attention()
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != c.checkpoint_id()));
    assert!(matches!(
        ck.claim(&c, now_ms(), 60_000).await.unwrap(),
        ClaimOutcome::Acquired(_)
    ));
    assert!(ck.failed(10).await.unwrap().is_empty());
    assert_eq!(ck.failed(0).await.unwrap().len(), 0);
}

#[tokio::test]
async fn dead_letter_depth_by_name_and_by_url() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_dev::Clients::new(&cfg).await;
    let name = format!("{}-dlq", cfg.etl.lake.checkpoint_table);
    let url = clients
        .sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        clients
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        SqsDepth::new(clients.sqs.clone(), name.clone())
            .depth()
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        SqsDepth::new(clients.sqs.clone(), url)
            .depth()
            .await
            .unwrap(),
        3
    );
    let err = SqsDepth::new(clients.sqs.clone(), format!("{name}-missing"))
        .depth()
        .await
        .unwrap_err();
    assert!(err.contains("GetQueueUrl"), "{err}");
}
