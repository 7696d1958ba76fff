//! The ETL function's handler, shared by the Lambda binary and the local dispatcher so both run
//! exactly the same code: the invocation's envelope becomes [`Work`] here, the layer above the
//! ETL and compaction.

use dataflow_aws::events::{batch_response, ChangeKind, Invocation, ObjectChange};
use dataflow_aws::requeue::Requeue;
use dataflow_core::checkpoint::{CheckpointStore, Completion};
use dataflow_core::etl::work::{QueuedMessage, Work};
use dataflow_core::etl::{Etl, ObjectOutcome};
use dataflow_core::lake::source::ObjectRef;
use dataflow_store::ObjectStore;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    BadEvent(#[from] dataflow_aws::events::EventError),
    #[error("unknown action {0:?}: expected \"compact\" or \"sweep\"")]
    UnknownAction(String),
    /// A direct S3 invocation with a failed object: Lambda's async retries redeliver it, and
    /// checkpoints make the redelivery skip what already succeeded.
    #[error("{failed} object(s) failed: {errors}")]
    Objects { failed: usize, errors: String },
}

/// What the ETL does for an invocation: creations feed it (removals are acknowledged, as
/// before), schedules and `{"action": "compact"}` compact, `{"action": "sweep"}` sweeps.
pub fn work_of(invocation: Invocation) -> Result<Work, HandlerError> {
    fn created(changes: Vec<ObjectChange>) -> Vec<ObjectRef> {
        changes
            .into_iter()
            .filter(|c| c.kind == ChangeKind::Created)
            .map(|c| ObjectRef {
                bucket: c.bucket,
                key: c.key,
                etag: c.etag,
                version_id: c.version_id,
                size: c.size,
            })
            .collect()
    }
    Ok(match invocation {
        Invocation::Changes(c) => Work::Objects(created(c)),
        Invocation::Messages(m) => Work::Messages(
            m.into_iter()
                .map(|m| QueuedMessage {
                    message_id: m.id,
                    body: m.body,
                    queue_arn: m.queue_arn,
                    objects: m.changes.map(created),
                })
                .collect(),
        ),
        Invocation::Schedule => Work::Compact,
        Invocation::Action(a) if a == "compact" => Work::Compact,
        Invocation::Action(a) if a == "sweep" => Work::Sweep,
        Invocation::Action(a) => return Err(HandlerError::UnknownAction(a)),
    })
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
    handle_with_metrics(etl, requeue, &|_| {}, event).await
}

/// [`handle`], calling `processed` once for every object this invocation counted (the Lambda
/// prints its metrics document, see [`dataflow_core::etl::metrics`]).
pub async fn handle_with_metrics<S: ObjectStore, C: CheckpointStore>(
    etl: &Etl<S, C>,
    requeue: &dyn Requeue,
    processed: &(dyn Fn(&Completion) + Sync),
    event: Value,
) -> Result<Value, HandlerError> {
    let work = work_of(Invocation::parse(&event)?)?;
    let is_sqs = matches!(work, Work::Messages(_));
    let mut report = etl.handle(work).await;
    for o in &report.outcomes {
        if let ObjectOutcome::Processed(c) = o {
            processed(c);
        }
    }
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
        return Ok(batch_response(report.failed_message_ids));
    }
    if !report.errors.is_empty() {
        return Err(HandlerError::Objects {
            failed: report.errors.len(),
            errors: report
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let mut out = serde_json::json!({ "processed": report.outcomes.len(), "compacted_dates": report.compacted, "swept": report.swept });
    if let Some(r) = report.rollup {
        out["rollup"] = serde_json::json!(r);
    }
    Ok(out)
}
