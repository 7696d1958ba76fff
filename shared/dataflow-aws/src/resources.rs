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

/// A queue and its dead-letter queue (redrive after `max_receive` failed receives).
/// Returns (queue url, queue arn).
pub async fn ensure_queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_seconds: u32,
    max_receive: u32,
) -> Result<(String, String), ResourceError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(|e| ResourceError(format!("CreateQueue {name}-dlq: {}", describe(&e))))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
    let q = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, visibility_seconds.to_string())
        .attributes(A::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| ResourceError(format!("CreateQueue {name}: {}", describe(&e))))?;
    let url = q.queue_url().unwrap_or_default().to_owned();
    let arn = queue_arn(sqs, &url).await?;
    Ok((url, arn))
}

pub async fn queue_url(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<Option<String>, ResourceError> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(o) => Ok(o.queue_url().map(str::to_owned)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(ResourceError(format!(
            "GetQueueUrl {name}: {}",
            describe(&e)
        ))),
    }
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, ResourceError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ResourceError(format!("GetQueueAttributes {url}: {}", describe(&e))))?;
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| ResourceError(format!("queue {url} has no ARN")))
}

/// Sends the bucket's ObjectCreated notifications to the queue (what the SAM template does).
pub async fn wire_bucket_to_queue(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    queue_arn: &str,
) -> Result<(), ResourceError> {
    wire_notifications(s3, bucket, queue_arn, "dataflow-etl", None, false).await
}

/// Sends a bucket's notifications for keys under `prefix` to a queue: creations, and deletions
/// too with `removals`. Replaces the bucket's notification configuration.
pub async fn wire_notifications(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    queue_arn: &str,
    id: &str,
    prefix: Option<&str>,
    removals: bool,
) -> Result<(), ResourceError> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let mut qc = QueueConfiguration::builder()
        .id(id)
        .queue_arn(queue_arn)
        .events(Event::from("s3:ObjectCreated:*"));
    if removals {
        qc = qc.events(Event::from("s3:ObjectRemoved:*"));
    }
    if let Some(p) = prefix.filter(|p| !p.is_empty()) {
        qc = qc.filter(
            NotificationConfigurationFilter::builder()
                .key(
                    S3KeyFilter::builder()
                        .filter_rules(
                            FilterRule::builder()
                                .name(FilterRuleName::Prefix)
                                .value(p)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
    }
    let qc = qc.build().map_err(|e| ResourceError(e.to_string()))?;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(qc)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            ResourceError(format!(
                "PutBucketNotificationConfiguration {bucket}: {}",
                describe(&e)
            ))
        })?;
    Ok(())
}

pub async fn notifications_wired(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    queue_arn: &str,
) -> Result<bool, ResourceError> {
    let n = s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| {
            ResourceError(format!(
                "GetBucketNotificationConfiguration {bucket}: {}",
                describe(&e)
            ))
        })?;
    Ok(n.queue_configurations()
        .iter()
        .any(|q| q.queue_arn() == queue_arn))
}
