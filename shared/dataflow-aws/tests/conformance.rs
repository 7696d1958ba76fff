//! The ports' conformance suites (`dataflow_store::conformance`, `dataflow_core::checkpoint::
//! conformance`) against the AWS adapters: S3 and DynamoDB on the emulator, fresh resources per
//! test. `DATAFLOW_TEST_ENDPOINT` points them at another emulator; `scripts/e2e-local.sh
//! --localstack` runs the S3 suite against LocalStack that way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

#[tokio::test]
async fn s3_store_conforms() {
    let cfg = dataflow_testkit::config();
    // The bucket alone: against LocalStack, which serves no DynamoDB here.
    let clients = dataflow_dev::Clients::new(&cfg).await;
    let bucket = &cfg.etl.lake.lake_bucket;
    dataflow_dev::resources::ensure_bucket(&clients.s3, bucket)
        .await
        .unwrap();
    let store = dataflow_aws::S3Store::new(clients.aws.s3());
    dataflow_store::conformance::object_store(&store, bucket, "")
        .await
        .unwrap();
    dataflow_store::conformance::object_store(&store, bucket, "nested/prefix/")
        .await
        .unwrap();
}

#[tokio::test]
async fn dynamodb_checkpoints_conform() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let store = dataflow_aws::DynamoCheckpoints::new(
        clients.aws.dynamodb(),
        &cfg.etl.lake.checkpoint_table,
    );
    dataflow_core::checkpoint::conformance::claims(&store)
        .await
        .unwrap();
    dataflow_core::checkpoint::conformance::locks(&store)
        .await
        .unwrap();
}
