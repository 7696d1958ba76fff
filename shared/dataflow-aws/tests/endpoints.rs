//! Every client takes its endpoint from the SDKs' standard variables: `AWS_ENDPOINT_URL_<SERVICE>`
//! wins over `AWS_ENDPOINT_URL` for its service. Checked against the emulator with the other
//! endpoint pointing nowhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_dev::StackConfig as Config;

fn config(pairs: &[(&str, String)]) -> Config {
    let base = dataflow_testkit::config();
    let mut vars = vec![
        ("RAW_BUCKET", base.raw_bucket().to_owned()),
        ("CHECKPOINT_TABLE", base.checkpoint_table().to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    vars.extend(pairs.iter().cloned());
    Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
}

/// Nothing listens there.
const NOWHERE: &str = "http://127.0.0.1:9";

async fn reach(cfg: &Config) -> (bool, bool, bool) {
    let c = dataflow_dev::Clients::new(cfg).await;
    let s3 = c.s3.list_buckets().send().await.is_ok();
    let ddb = c.dynamodb.list_tables().send().await.is_ok();
    let sqs = c.sqs.list_queues().send().await.is_ok();
    (s3, ddb, sqs)
}

#[tokio::test]
async fn per_service_endpoints_win_over_the_general_one() {
    let emulator = dataflow_testkit::endpoint();
    let each = config(&[
        ("AWS_ENDPOINT_URL", NOWHERE.into()),
        ("AWS_ENDPOINT_URL_S3", emulator.clone()),
        ("AWS_ENDPOINT_URL_DYNAMODB", emulator.clone()),
        ("AWS_ENDPOINT_URL_SQS", emulator.clone()),
    ]);
    assert_eq!(reach(&each).await, (true, true, true));
    let dynamodb_elsewhere = config(&[
        ("AWS_ENDPOINT_URL", emulator.clone()),
        ("AWS_ENDPOINT_URL_DYNAMODB", NOWHERE.into()),
    ]);
    assert_eq!(reach(&dynamodb_elsewhere).await, (true, false, true));
    // Path-style S3 follows S3's own override: a bucket round trip works through it alone.
    let s3_only = config(&[("AWS_ENDPOINT_URL_S3", emulator)]);
    let c = dataflow_dev::Clients::new(&s3_only).await;
    dataflow_dev::resources::ensure_bucket(&c.s3, s3_only.raw_bucket())
        .await
        .unwrap();
    assert!(
        dataflow_dev::resources::bucket_exists(&c.s3, s3_only.raw_bucket())
            .await
            .unwrap()
    );
}
