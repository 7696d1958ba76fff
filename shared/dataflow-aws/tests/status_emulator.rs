//! What `GET /pipeline/status` reads, against the emulator: the checkpoint table's `recent`
//! index (also on a table made before the index existed) and the dead-letter queue's depth.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use dataflow_aws::requeue::SqsDepth;
use dataflow_aws::{DynamoCheckpoints, ATTENTION_INDEX, RECENT_INDEX};
use dataflow_core::checkpoint::{CheckpointStore, ClaimOutcome};
use dataflow_core::pipeline::QueueDepth;
use dataflow_core::source::ObjectRef;
use dataflow_core::time::now_ms;

/// A table as earlier versions made it (the sweep's index only) gains the `recent` index, and
/// the status reads from it at once.
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
    ddb.create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(s("pk"))
        .attribute_definitions(s("attention"))
        .key_schema(hash("pk"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(ATTENTION_INDEX)
                .key_schema(hash("attention"))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
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
