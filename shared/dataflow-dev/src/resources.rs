//! Creating the resources the product needs, idempotently: used by the local stack, the test
//! suites and `dataflow doctor`. In AWS the SAM template owns them.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

use dataflow_aws::{
    describe, status_of, ATTENTION_ATTR, ATTENTION_INDEX, RECENT_DAY_ATTR, RECENT_INDEX,
    RECENT_PROJECTED,
};

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ResourceError {
    /// The call and what it named, with the cause's full text (SDK errors' own messages say only
    /// "service error").
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ResourceError {
    /// A failed call: `context` names it, `e` is kept as the source.
    fn call<E: std::error::Error + Send + Sync + 'static>(
        context: impl std::fmt::Display,
        e: E,
    ) -> Self {
        Self {
            message: format!("{context}: {}", describe(&e)),
            source: Some(Box::new(e)),
        }
    }

    fn msg(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), ResourceError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(e) if matches!(status_of(&e), Some(404) | Some(403)) => {}
        Err(e) => return Err(ResourceError::call(format!("HeadBucket {bucket}"), e)),
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
                Err(ResourceError::call(format!("CreateBucket {bucket}"), e))
            }
        }
    }
}

/// Turns versioning on (the raw bucket's, as the template does): an overwrite or delete keeps
/// the earlier version, which `dataflow restore` brings back.
pub async fn ensure_versioning(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), ResourceError> {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ResourceError::call(format!("PutBucketVersioning {bucket}"), e))
}

pub async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, ResourceError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) if matches!(status_of(&e), Some(404)) => Ok(false),
        Err(e) => Err(ResourceError::call(format!("HeadBucket {bucket}"), e)),
    }
}

/// The checkpoint table: partition key `pk` (string), on-demand billing, and the sparse
/// `attention` index the sweep queries (added to a table created before it existed).
pub async fn ensure_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ResourceError> {
    let built =
        |e: aws_sdk_dynamodb::error::BuildError| ResourceError::call("building the request", e);
    let attr = |name: &str, ty: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ty)
            .build()
            .map_err(built)
    };
    let element = |name: &str, ty: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(ty)
            .build()
            .map_err(built)
    };
    let all = Projection::builder()
        .projection_type(ProjectionType::All)
        .build();
    let status_fields = Projection::builder()
        .projection_type(ProjectionType::Include)
        .set_non_key_attributes(Some(
            RECENT_PROJECTED.iter().map(|a| a.to_string()).collect(),
        ))
        .build();
    // The sweep's index (hash only, every attribute) and the status page's (day, then time; the
    // fields it shows); both sparse. Each with the definitions of its own key attributes.
    let indexes = [
        (
            ATTENTION_INDEX,
            vec![element(ATTENTION_ATTR, KeyType::Hash)?],
            vec![attr(ATTENTION_ATTR, ScalarAttributeType::S)?],
            all,
        ),
        (
            RECENT_INDEX,
            vec![
                element(RECENT_DAY_ATTR, KeyType::Hash)?,
                element("updated_ms", KeyType::Range)?,
            ],
            vec![
                attr(RECENT_DAY_ATTR, ScalarAttributeType::S)?,
                attr("updated_ms", ScalarAttributeType::N)?,
            ],
            status_fields,
        ),
    ];
    if table_exists(ddb, table).await? {
        // Tables made by earlier versions get the indexes they lack, one update each (DynamoDB
        // takes one index creation per call).
        for (name, schema, defs, projection) in indexes {
            let d = ddb
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| ResourceError::call(format!("DescribeTable {table}"), e))?;
            let has_index = d
                .table()
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .any(|i| i.index_name() == Some(name));
            if has_index {
                continue;
            }
            ddb.update_table()
                .table_name(table)
                .set_attribute_definitions(Some(defs))
                .global_secondary_index_updates(
                    GlobalSecondaryIndexUpdate::builder()
                        .create(
                            CreateGlobalSecondaryIndexAction::builder()
                                .index_name(name)
                                .set_key_schema(Some(schema))
                                .projection(projection)
                                .build()
                                .map_err(built)?,
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    ResourceError::call(format!("adding the {name} index to {table}"), e)
                })?;
            wait_active(ddb, table).await?;
        }
        return wait_active(ddb, table).await;
    }
    let mut create = ddb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .key_schema(element("pk", KeyType::Hash)?);
    for (name, schema, defs, projection) in indexes {
        for d in defs {
            create = create.attribute_definitions(d);
        }
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(schema))
                .projection(projection)
                .build()
                .map_err(built)?,
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) => {}
        Err(e) => return Err(ResourceError::call(format!("CreateTable {table}"), e)),
    }
    wait_active(ddb, table).await
}

/// Emulators create tables and indexes at once; real DynamoDB takes seconds to minutes.
async fn wait_active(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), ResourceError> {
    for _ in 0..120 {
        let d = ddb.describe_table().table_name(table).send().await;
        if let Ok(d) = d {
            let t = d.table();
            let table_ok = t.and_then(|t| t.table_status()).map(|s| s.as_str()) == Some("ACTIVE");
            let indexes_ok = t
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .all(|i| i.index_status().is_none_or(|s| s.as_str() == "ACTIVE"));
            if table_ok && indexes_ok {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(ResourceError::msg(format!(
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
        Err(e) => Err(ResourceError::call(format!("DescribeTable {table}"), e)),
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
        .map_err(|e| ResourceError::call(format!("CreateQueue {name}-dlq"), e))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
    let q = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| ResourceError::call(format!("CreateQueue {name}"), e))?;
    let url = q.queue_url().unwrap_or_default().to_owned();
    // Set apart from creation so that a queue made with older settings gets the current ones.
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(A::VisibilityTimeout, visibility_seconds.to_string())
        .attributes(A::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| ResourceError::call(format!("SetQueueAttributes {name}"), e))?;
    let arn = queue_arn(sqs, &url).await?;
    Ok((url, arn))
}

/// Approximate number of visible messages in a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, ResourceError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| ResourceError::call(format!("GetQueueAttributes {url}"), e))?;
    Ok(out
        .attributes()
        .and_then(|m| m.get(&A::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Bodies of up to `max` messages, left in the queue (received with no visibility timeout).
pub async fn peek(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: i32,
) -> Result<Vec<String>, ResourceError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(0)
        .send()
        .await
        .map_err(|e| ResourceError::call(format!("ReceiveMessage {url}"), e))?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect())
}

/// Moves every message of `from` (a dead-letter queue) back to `to`: sent first, deleted after,
/// so a crash in between duplicates a message (harmless: checkpoints) and never loses one.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    from: &str,
    to: &str,
) -> Result<usize, ResourceError> {
    let mut moved = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(|e| ResourceError::call(format!("ReceiveMessage {from}"), e))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(moved);
        }
        for m in messages {
            sqs.send_message()
                .queue_url(to)
                .message_body(m.body().unwrap_or_default())
                .send()
                .await
                .map_err(|e| ResourceError::call(format!("SendMessage {to}"), e))?;
            sqs.delete_message()
                .queue_url(from)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| ResourceError::call(format!("DeleteMessage {from}"), e))?;
            moved += 1;
        }
    }
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
        Err(e) => Err(ResourceError::call(format!("GetQueueUrl {name}"), e)),
    }
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, ResourceError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ResourceError::call(format!("GetQueueAttributes {url}"), e))?;
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| ResourceError::msg(format!("queue {url} has no ARN")))
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
    let qc = qc
        .build()
        .map_err(|e| ResourceError::call("building the request", e))?;
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
            ResourceError::call(format!("PutBucketNotificationConfiguration {bucket}"), e)
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
            ResourceError::call(format!("GetBucketNotificationConfiguration {bucket}"), e)
        })?;
    Ok(n.queue_configurations()
        .iter()
        .any(|q| q.queue_arn() == queue_arn))
}

/// The delivery stream behind `POST /events` (what the SAM template creates): direct put, into
/// `<prefix>` of the raw bucket. The emulators write each `PutRecordBatch` as one object at once.
pub async fn ensure_delivery_stream(
    firehose: &aws_sdk_firehose::Client,
    name: &str,
    bucket: &str,
    prefix: &str,
) -> Result<(), ResourceError> {
    use aws_sdk_firehose::types::{
        BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration,
    };
    match firehose
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
    {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => {
            return Err(ResourceError::call(
                format!("DescribeDeliveryStream {name}"),
                e,
            ))
        }
    }
    let dest = ExtendedS3DestinationConfiguration::builder()
        // The emulators do not check the role; the template's is least privilege.
        .role_arn("arn:aws:iam::000000000000:role/dataflow-events-stream")
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .prefix(prefix)
        .buffering_hints(
            BufferingHints::builder()
                .interval_in_seconds(60)
                .size_in_mbs(5)
                .build(),
        )
        .compression_format(CompressionFormat::Uncompressed)
        .build()
        .map_err(|e| ResourceError::call("building the request", e))?;
    firehose
        .create_delivery_stream()
        .delivery_stream_name(name)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(dest)
        .send()
        .await
        .map_err(|e| ResourceError::call(format!("CreateDeliveryStream {name}"), e))?;
    Ok(())
}

/// The API key table (what the SAM template creates): partition key `pk` (the key's SHA-256),
/// on-demand billing.
pub async fn ensure_keys_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ResourceError> {
    if table_exists(ddb, table).await? {
        return Ok(());
    }
    let created = ddb
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| ResourceError::call("building the request", e))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| ResourceError::call("building the request", e))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        // Created meanwhile by another process.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(ResourceError::call(format!("CreateTable {table}"), e)),
    }
}
