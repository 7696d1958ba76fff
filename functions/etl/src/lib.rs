//! The ETL function's handler, shared by the Lambda binary and the local dispatcher so both run
//! exactly the same code.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use dataflow_aws::requeue::Requeue;
use dataflow_core::checkpoint::CheckpointStore;
use dataflow_core::etl::Etl;
use dataflow_core::storage::ObjectStore;
use dataflow_core::trigger::{parse_trigger, Trigger};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    BadEvent(String),
    /// The answer could not be written (never expected: a fault of this code, not the event).
    #[error("cannot encode the response: {0}")]
    Response(#[from] serde_json::Error),
    /// A direct S3 invocation with a failed object: Lambda's async retries redeliver it, and
    /// checkpoints make the redelivery skip what already succeeded.
    #[error("{failed} object(s) failed: {errors}")]
    Objects { failed: usize, errors: String },
}

/// Handles one invocation payload. SQS batches answer with `batchItemFailures` (the event source
/// mapping must enable `ReportBatchItemFailures`), so only failed messages are redelivered; a
/// message that met another attempt's live lease is sent again with a delay through `requeue`
/// (and reported as failed only if that send fails).
pub async fn handle<S: ObjectStore, C: CheckpointStore>(
    etl: &Etl<S, C>,
    requeue: &dyn Requeue,
    event: Value,
) -> Result<Value, HandlerError> {
    let trigger = parse_trigger(&event).map_err(|e| HandlerError::BadEvent(e.to_string()))?;
    let is_sqs = matches!(trigger, Trigger::Sqs(_));
    let mut report = etl.handle(trigger).await;
    for d in std::mem::take(&mut report.deferred) {
        match requeue
            .requeue(&d.queue_arn, &d.body, d.delay_seconds)
            .await
        {
            Ok(()) => {
                tracing::info!(message_id = %d.message_id, delay_seconds = d.delay_seconds, "object busy; message sent again with a delay")
            }
            Err(e) => {
                tracing::warn!(message_id = %d.message_id, error = %e, "could not defer; the queue retries it");
                report.failed_message_ids.push(d.message_id);
            }
        }
    }
    tracing::info!(
        outcomes = report.outcomes.len(),
        errors = report.errors.len(),
        failed_messages = report.failed_message_ids.len(),
        swept = report.swept,
        "invocation done"
    );
    if is_sqs {
        let mut resp = SqsBatchResponse::default();
        resp.batch_item_failures = report
            .failed_message_ids
            .into_iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
            .collect();
        return Ok(serde_json::to_value(resp)?);
    }
    if !report.errors.is_empty() {
        return Err(HandlerError::Objects {
            failed: report.errors.len(),
            errors: report.errors.join("; "),
        });
    }
    let mut out = serde_json::json!({ "processed": report.outcomes.len(), "compacted_dates": report.compacted, "swept": report.swept });
    if let Some(r) = report.rollup {
        out["rollup"] = serde_json::json!(r);
    }
    Ok(out)
}
