//! Creating the resources the product needs, idempotently: used by the local stack, the test
//! suites and `dataflow doctor`. In AWS the SAM template owns them.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::{describe, status_of};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResourceError(pub String);

pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), ResourceError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(e) if matches!(status_of(&e), Some(404) | Some(403)) => {}
        Err(e) => {
            return Err(ResourceError(format!(
                "HeadBucket {bucket}: {}",
                describe(&e)
            )))
        }
    }
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let code = e
                .as_service_error()
                .map(|se| se.is_bucket_already_owned_by_you());
            if code == Some(true) {
                Ok(())
            } else {
                Err(ResourceError(format!(
                    "CreateBucket {bucket}: {}",
                    describe(&e)
                )))
            }
        }
    }
}

pub async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, ResourceError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) if matches!(status_of(&e), Some(404)) => Ok(false),
        Err(e) => Err(ResourceError(format!(
            "HeadBucket {bucket}: {}",
            describe(&e)
        ))),
    }
}

/// The checkpoint table: partition key `pk` (string), on-demand billing.
pub async fn ensure_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ResourceError> {
    if table_exists(ddb, table).await? {
        return Ok(());
    }
    let res = ddb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| ResourceError(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| ResourceError(e.to_string()))?,
        )
        .send()
        .await;
    match res {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) => {}
        Err(e) => {
            return Err(ResourceError(format!(
                "CreateTable {table}: {}",
                describe(&e)
            )))
        }
    }
    // Emulators create tables at once; real DynamoDB takes seconds.
    for _ in 0..60 {
        let d = ddb.describe_table().table_name(table).send().await;
        if let Ok(d) = d {
            if d.table().and_then(|t| t.table_status()).map(|s| s.as_str()) == Some("ACTIVE") {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(ResourceError(format!(
        "table {table} did not become ACTIVE"
    )))
}

pub async fn table_exists(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<bool, ResourceError> {
    match ddb.describe_table().table_name(table).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(ResourceError(format!(
            "DescribeTable {table}: {}",
            describe(&e)
        ))),
    }
}
