//! The index builder's handler, shared by the Lambda binary and the local dispatcher.

use dataflow_core::storage::ObjectStore;
use dataflow_search::chunk::ChunkOptions;
use dataflow_search::store::{rebuild, IndexLocation, RebuildOutcome};
use dataflow_search::trigger::parse_rebuild_trigger;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    BadEvent(String),
    /// The rebuild failed: the invocation fails, so S3's async retries (or the SQS redelivery)
    /// try again; a rebuild is idempotent.
    #[error("index rebuild failed: {0}")]
    Rebuild(String),
}

/// Handles one invocation: rebuilds when a Markdown file under the docs prefix was created or
/// deleted (or on `{"action": "rebuild"}` / a schedule), else acknowledges. SQS batches answer
/// with `batchItemFailures` naming only unreadable messages.
pub async fn handle(
    store: &dyn ObjectStore,
    loc: &IndexLocation,
    event: Value,
) -> Result<Value, HandlerError> {
    let req = parse_rebuild_trigger(&event, &loc.docs_prefix)
        .map_err(|e| HandlerError::BadEvent(e.to_string()))?;
    for (id, why) in &req.unreadable {
        tracing::warn!(message_id = %id, reason = %why, "unreadable message");
    }
    let mut out = if req.wants_rebuild() {
        let outcome = rebuild(store, loc, ChunkOptions::default(), req.force)
            .await
            .map_err(|e| HandlerError::Rebuild(e.to_string()))?;
        // publish() already logs the index's key, size and counts.
        match &outcome {
            RebuildOutcome::Published {
                skipped, build_ms, ..
            } => tracing::info!(
                skipped = skipped.len(),
                build_ms,
                changed = req.changed.len(),
                "index rebuilt"
            ),
            RebuildOutcome::UpToDate { .. } => tracing::info!("index already up to date"),
        }
        serde_json::to_value(&outcome).map_err(|e| HandlerError::Rebuild(e.to_string()))?
    } else {
        json!({"outcome": "ignored", "reason": "no Markdown change under the docs prefix"})
    };
    if req.from_sqs {
        out["batchItemFailures"] = req
            .unreadable
            .iter()
            .map(|(id, _)| json!({"itemIdentifier": id}))
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflow_core::storage::MemoryStore;

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
        let v = handle(&store, &loc(), put_event("docs/a.md"))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "published");
        assert_eq!(v["manifest"]["documents"], 1);
        let v = handle(&store, &loc(), put_event("docs/a.md"))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "up_to_date");
        let v = handle(&store, &loc(), put_event("index/current.json"))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "ignored");
        let v = handle(&store, &loc(), json!({"action": "rebuild"}))
            .await
            .unwrap();
        assert_eq!(v["outcome"], "published");
        assert!(matches!(
            handle(&store, &loc(), json!({"hello": 1})).await,
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
        let v = handle(&store, &loc(), ev).await.unwrap();
        assert_eq!(v["outcome"], "published");
        assert_eq!(v["batchItemFailures"], json!([{"itemIdentifier": "bad"}]));
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
        let v = handle(&store, &loc(), serde_json::from_str(&text).unwrap())
            .await
            .unwrap();
        assert_eq!(v["outcome"], "published");
    }
}
