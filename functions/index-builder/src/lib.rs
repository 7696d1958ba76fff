//! The index builder's handler, shared by the Lambda binary and the local dispatcher: the
//! invocation's envelope becomes a [`RebuildRequest`] here.

use std::sync::Arc;

use dataflow_aws::events::{batch_response, Invocation, ObjectChange};
use dataflow_embed::Embed;
use dataflow_search::chunk::ChunkOptions;
use dataflow_search::store::{is_document, rebuild, IndexLocation, RebuildOutcome};
use dataflow_store::ObjectStore;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    BadEvent(#[from] dataflow_aws::events::EventError),
    #[error("unknown action {0:?}: expected \"rebuild\"")]
    UnknownAction(String),
    /// The rebuild failed: the invocation fails, so S3's async retries (or the SQS redelivery)
    /// try again; a rebuild is idempotent.
    #[error("index rebuild failed: {0}")]
    Rebuild(#[source] dataflow_search::store::IndexStoreError),
    /// The answer could not be written (never expected: a fault of this code, not the event).
    #[error("cannot encode the response: {0}")]
    Response(#[from] serde_json::Error),
}

/// What an invocation asks of the index builder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildRequest {
    /// Documents created or removed under the docs prefix.
    pub changed: Vec<String>,
    /// `{"action": "rebuild"}`: rebuild even if the docs look unchanged.
    pub force: bool,
    /// A schedule: a safety net that rebuilds only if the docs differ from the index.
    pub scheduled: bool,
    /// SQS messages that could not be read (reported as batch item failures), with why.
    pub unreadable: Vec<(String, String)>,
    /// The invocation came from SQS (answer with `batchItemFailures`).
    pub from_sqs: bool,
}

impl RebuildRequest {
    /// Keys under other prefixes, files that are not documents and other event kinds are
    /// ignored; removals count as changes.
    pub fn of(invocation: Invocation, docs_prefix: &str) -> Result<Self, HandlerError> {
        let mut req = RebuildRequest::default();
        let take = |changes: Vec<ObjectChange>, changed: &mut Vec<String>| {
            for c in changes {
                if c.key.starts_with(docs_prefix)
                    && is_document(&c.key)
                    && !changed.contains(&c.key)
                {
                    changed.push(c.key);
                }
            }
        };
        match invocation {
            Invocation::Changes(c) => take(c, &mut req.changed),
            Invocation::Messages(messages) => {
                req.from_sqs = true;
                for m in messages {
                    match m.changes {
                        Ok(c) => take(c, &mut req.changed),
                        Err(why) => req.unreadable.push((m.id, why)),
                    }
                }
            }
            Invocation::Schedule => req.scheduled = true,
            Invocation::Action(a) if a == "rebuild" => req.force = true,
            Invocation::Action(a) => return Err(HandlerError::UnknownAction(a)),
        }
        Ok(req)
    }

    pub fn wants_rebuild(&self) -> bool {
        self.force || self.scheduled || !self.changed.is_empty()
    }
}

/// Handles one invocation: rebuilds when a document under the docs prefix was created or
/// deleted (or on `{"action": "rebuild"}` / a schedule), else acknowledges. SQS batches answer
/// with `batchItemFailures` naming only unreadable messages.
/// With a model, every passage gets a vector (reused from the current index where its text is
/// unchanged).
pub async fn handle(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
    embed: Option<Arc<dyn Embed>>,
    event: Value,
) -> Result<Value, HandlerError> {
    let req = RebuildRequest::of(Invocation::parse(&event)?, &loc.docs_prefix)?;
    for (id, why) in &req.unreadable {
        tracing::warn!(message_id = %id, reason = %why, "unreadable message");
    }
    let mut out = if req.wants_rebuild() {
        let outcome = rebuild(store, loc, ChunkOptions::default(), req.force, embed)
            .await
            .map_err(HandlerError::Rebuild)?;
        // publish() already logs the index's key, size and counts.
        match &outcome {
            RebuildOutcome::Published {
                skipped,
                build_ms,
                stats,
                ..
            } => tracing::info!(
                skipped = skipped.len(),
                build_ms,
                changed = req.changed.len(),
                embedded = stats.embedded,
                reused = stats.reused,
                "index rebuilt"
            ),
            RebuildOutcome::UpToDate { .. } => tracing::info!("index already up to date"),
        }
        serde_json::to_value(&outcome)?
    } else {
        json!({"outcome": "ignored", "reason": "no document change under the docs prefix"})
    };
    if req.from_sqs {
        let failures = batch_response(req.unreadable.into_iter().map(|(id, _)| id));
        out["batchItemFailures"] = failures["batchItemFailures"].clone();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflow_store::MemoryStore;

    fn loc() -> IndexLocation {
        IndexLocation {
            bucket: "idx".into(),
            docs_prefix: "docs/".into(),
            index_prefix: "index/".into(),
        }
    }

    fn put_event(key: &str) -> Value {
        json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "idx"}, "object": {"key": key}}}]})
    }

    #[tokio::test]
    async fn rebuilds_on_docs_changes_and_ignores_the_rest() {
        let store = MemoryStore::default();
        store.insert("idx", "docs/a.md", b"# A\n\nhello\n".to_vec());
        let v = handle(&store, &loc(), None, put_event("docs/a.md"))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "published");
        assert_eq!(v["manifest"]["documents"], 1);
        let v = handle(&store, &loc(), None, put_event("docs/a.md"))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "up_to_date");
        let v = handle(&store, &loc(), None, put_event("index/current.json"))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "ignored");
        let v = handle(&store, &loc(), None, json!({"action": "rebuild"}))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "published");
        assert!(matches!(
            handle(&store, &loc(), None, json!({"hello": 1})).await,
            Err(HandlerError::BadEvent(_))
        ));
    }

    #[tokio::test]
    async fn sqs_batches_report_only_unreadable_messages() {
        let store = MemoryStore::default();
        store.insert("idx", "docs/a.md", b"# A\n\nhello\n".to_vec());
        let ev = json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "ok", "body": put_event("docs/a.md").to_string()},
            {"eventSource": "aws:sqs", "messageId": "bad", "body": "garbage"},
        ]});
        let v = handle(&store, &loc(), None, ev).await.unwrap();
        assert_eq!(v["outcome"], "published");
        assert_eq!(v["batchItemFailures"], json!([{"itemIdentifier": "bad"}]));
    }

    fn s3(name: &str, key: &str) -> Value {
        json!({"eventSource": "aws:s3", "eventName": name, "s3": {"bucket": {"name": "b"}, "object": {"key": key}}})
    }

    fn request(event: Value) -> RebuildRequest {
        RebuildRequest::of(Invocation::parse(&event).unwrap(), "docs/").unwrap()
    }

    #[test]
    fn document_changes_under_the_prefix_count_and_others_do_not() {
        let r = request(json!({"Records": [
            s3("ObjectCreated:Put", "docs/ops/run+book.md"),
            s3("ObjectRemoved:Delete", "docs/old.md"),
            s3("ObjectCreated:Put", "docs/image.png"),
            s3("ObjectCreated:Put", "index/current.json"),
            s3("ObjectCreated:Put", "docs/old.md"),
        ]}));
        assert_eq!(r.changed, vec!["docs/ops/run book.md", "docs/old.md"]);
        assert!(r.wants_rebuild() && !r.force && !r.from_sqs);
        let none = request(json!({"Records": [s3("ObjectCreated:Put", "index/objects/x.dfidx")]}));
        assert!(!none.wants_rebuild());
        let sched = request(json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
        assert!(sched.wants_rebuild() && !sched.force && sched.changed.is_empty());
        assert!(request(json!({"action": "rebuild"})).force);
        assert!(matches!(
            RebuildRequest::of(Invocation::Action("compact".into()), "docs/"),
            Err(HandlerError::UnknownAction(_))
        ));
    }

    /// The sample in events/ (for `cargo lambda invoke` and `sam local invoke`) is a docs change.
    #[tokio::test]
    async fn the_sample_event_rebuilds() {
        let text = std::fs::read_to_string(format!(
            "{}/../../events/s3-docs-put.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let store = MemoryStore::default();
        store.insert("idx", "docs/operations.md", b"# Ops\n\nrunbook\n".to_vec());
        let v = handle(&store, &loc(), None, serde_json::from_str(&text).unwrap())
            .await
            .unwrap();
        assert_eq!(v["outcome"], "published");
    }
}
