//! Local stand-in for Lambda's SQS event source mapping: long-polls a queue, hands batches to a
//! handler in the shape Lambda uses, deletes the messages that succeeded, and leaves failed ones
//! to come back after the visibility timeout (and reach the dead-letter queue after the queue's
//! `maxReceiveCount`), exactly as the managed mapping does with `ReportBatchItemFailures`.

use std::future::Future;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{json, Value};

use dataflow_aws::describe;

pub struct Dispatcher {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub batch_size: i32,
    pub wait_seconds: i32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchResult {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
}

impl Dispatcher {
    /// Receives one batch and dispatches it. Returns what happened (zero received on an empty
    /// poll).
    pub async fn poll_once<F, Fut>(&self, handler: &F) -> Result<BatchResult, String>
    where
        F: Fn(Value) -> Fut,
        Fut: Future<Output = Result<Value, String>>,
    {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("ReceiveMessage: {}", describe(&e)))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(BatchResult::default());
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attrs: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attrs,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.region,
                })
            })
            .collect();
        let failed: Vec<String> = match handler(json!({ "Records": records })).await {
            Ok(resp) => resp["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            // A failed invocation fails the whole batch.
            Err(e) => {
                tracing::warn!(error = %e, "handler failed; the batch will be retried");
                messages
                    .iter()
                    .filter_map(|m| m.message_id().map(str::to_owned))
                    .collect()
            }
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| {
                m.message_id()
                    .is_some_and(|id| !failed.iter().any(|f| f == id))
            })
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        let deleted = entries.len();
        if !entries.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("DeleteMessageBatch: {}", describe(&e)))?;
        }
        let r = BatchResult {
            received: messages.len(),
            deleted,
            failed: failed.len(),
        };
        tracing::info!(
            received = r.received,
            deleted = r.deleted,
            failed = r.failed,
            "dispatched batch"
        );
        Ok(r)
    }
}
