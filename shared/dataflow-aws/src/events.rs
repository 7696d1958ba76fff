//! What invokes a function, read once for all of them: S3 notifications (direct, through SQS, or
//! through SNS into SQS), EventBridge S3 events, EventBridge schedules and explicit
//! `{"action": ...}` payloads become one [`Invocation`]; [`batch_response`] answers an SQS batch.
//!
//! Lenient because emulators omit fields the strict `aws_lambda_events` types require (moto
//! sends no `userIdentity`), and because one odd record must not fail its neighbours: a message
//! that cannot be read carries why, and only it is reported as failed.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use serde_json::Value;

/// One invocation's payload, whatever sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Object changes delivered directly: an S3 notification or an EventBridge S3 event.
    Changes(Vec<ObjectChange>),
    /// An SQS batch: each message with its changes, or why it could not be read.
    Messages(Vec<Message>),
    /// An EventBridge schedule with no input.
    Schedule,
    /// An explicit `{"action": "..."}`: a schedule's input or a manual invoke.
    Action(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Removed,
}

/// One object created or removed, with the key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub kind: ChangeKind,
    pub bucket: String,
    pub key: String,
    /// Without quotes.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
}

/// One SQS message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    /// The raw body and the queue it came from: what a deferred message is sent again with.
    pub body: String,
    pub queue_arn: String,
    /// Its object changes (none for `s3:TestEvent`), or why it could not be read.
    pub changes: Result<Vec<ObjectChange>, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("unrecognised event: expected an S3 notification, an SQS batch, an EventBridge S3 event, a schedule or {{\"action\": ...}}")]
    Unrecognised,
    #[error("bad S3 record: {0}")]
    BadRecord(String),
}

impl Invocation {
    pub fn parse(event: &Value) -> Result<Self, EventError> {
        if let Some(records) = event.get("Records").and_then(Value::as_array) {
            let is_sqs = records
                .iter()
                .any(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
            if is_sqs {
                return Ok(Invocation::Messages(records.iter().map(message).collect()));
            }
            return s3_notification(records).map(Invocation::Changes);
        }
        if event.get("source").and_then(Value::as_str) == Some("aws.s3") {
            return eventbridge(event).map(|c| Invocation::Changes(c.into_iter().collect()));
        }
        if let Some(action) = event.get("action").and_then(Value::as_str) {
            return Ok(Invocation::Action(action.to_owned()));
        }
        if event.get("source").and_then(Value::as_str) == Some("aws.events")
            && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        {
            return Ok(Invocation::Schedule);
        }
        Err(EventError::Unrecognised)
    }
}

/// The answer to an SQS batch (the event source mapping enables `ReportBatchItemFailures`):
/// only the named messages are delivered again.
pub fn batch_response(failed_ids: impl IntoIterator<Item = String>) -> Value {
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failed_ids
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    // A struct of strings always serialises.
    serde_json::to_value(resp).unwrap_or_else(|_| serde_json::json!({"batchItemFailures": []}))
}

/// Decodes a key as S3 notifications encode it: form-style, `+` for space, `%XX` escapes.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| EventError::BadRecord(format!("key {raw:?} is not valid UTF-8 once decoded")))
}

/// Without the quotes S3 puts around ETags.
pub fn clean_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn message(r: &Value) -> Message {
    let text = |k: &str| r.get(k).and_then(Value::as_str);
    let body = text("body");
    let changes = (|| {
        let body = body.ok_or_else(|| "message has no body".to_owned())?;
        let v: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
        // SNS fan-out wraps the notification once more.
        let v = match v.get("Message").and_then(Value::as_str) {
            Some(inner) if v.get("Type").and_then(Value::as_str) == Some("Notification") => {
                serde_json::from_str(inner).map_err(|e| format!("SNS message is not JSON: {e}"))?
            }
            _ => v,
        };
        if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(Vec::new());
        }
        if v.get("source").and_then(Value::as_str) == Some("aws.s3") {
            return eventbridge(&v)
                .map(|c| c.into_iter().collect())
                .map_err(|e| e.to_string());
        }
        let records = v
            .get("Records")
            .and_then(Value::as_array)
            .ok_or_else(|| "no Records array".to_owned())?;
        s3_notification(records).map_err(|e| e.to_string())
    })();
    Message {
        id: text("messageId").unwrap_or_default().to_owned(),
        body: body.unwrap_or_default().to_owned(),
        queue_arn: text("eventSourceARN").unwrap_or_default().to_owned(),
        changes,
    }
}

fn s3_notification(records: &[Value]) -> Result<Vec<ObjectChange>, EventError> {
    let mut out = Vec::new();
    for r in records {
        let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
        let kind = if name.starts_with("ObjectCreated") {
            ChangeKind::Created
        } else if name.starts_with("ObjectRemoved") {
            ChangeKind::Removed
        } else {
            // Restores, replication, lifecycle: nothing any function acts on.
            continue;
        };
        let bad = |m: &str| EventError::BadRecord(m.to_owned());
        let s3 = r.get("s3").ok_or_else(|| bad("record has no s3 section"))?;
        let bucket = s3
            .pointer("/bucket/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("record has no bucket name"))?;
        let obj = s3
            .get("object")
            .ok_or_else(|| bad("record has no object"))?;
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("record has no object key"))?;
        out.push(ObjectChange {
            kind,
            bucket: bucket.to_owned(),
            key: decode_key(key)?,
            etag: obj
                .get("eTag")
                .or_else(|| obj.get("etag"))
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .map(clean_etag),
            version_id: obj
                .get("versionId")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            size: obj.get("size").and_then(Value::as_u64),
        });
    }
    Ok(out)
}

/// EventBridge S3 events carry the key unencoded.
fn eventbridge(v: &Value) -> Result<Option<ObjectChange>, EventError> {
    let kind = match v.get("detail-type").and_then(Value::as_str) {
        Some("Object Created") => ChangeKind::Created,
        Some("Object Deleted") => ChangeKind::Removed,
        _ => return Ok(None),
    };
    let d = v
        .get("detail")
        .ok_or_else(|| EventError::BadRecord("EventBridge event has no detail".into()))?;
    let bucket = d.pointer("/bucket/name").and_then(Value::as_str);
    let key = d.pointer("/object/key").and_then(Value::as_str);
    let (Some(bucket), Some(key)) = (bucket, key) else {
        return Err(EventError::BadRecord(
            "EventBridge detail lacks bucket or key".into(),
        ));
    };
    Ok(Some(ObjectChange {
        kind,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        etag: d
            .pointer("/object/etag")
            .and_then(Value::as_str)
            .map(clean_etag),
        version_id: d
            .pointer("/object/version-id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        size: d.pointer("/object/size").and_then(Value::as_u64),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(name: &str, key: &str) -> Value {
        // The shape moto sends: no userIdentity, requestParameters or responseElements.
        json!({"eventVersion":"2.1","eventSource":"aws:s3","eventName":name,
               "s3":{"bucket":{"name":"raw"},"object":{"key":key,"size":10,"eTag":"\"abc\""}}})
    }

    fn changes(inv: Invocation) -> Vec<(ChangeKind, String)> {
        let Invocation::Changes(c) = inv else {
            panic!("not changes: {inv:?}")
        };
        c.into_iter().map(|c| (c.kind, c.key)).collect()
    }

    #[test]
    fn s3_notifications_decode_keys_and_keep_creations_and_removals() {
        let ev = json!({"Records":[
            record("ObjectCreated:Put", "dir%2Fmy+file%3D1+%C3%A9.jsonl"),
            record("ObjectRemoved:Delete", "docs/old.md"),
            record("ObjectRestore:Post", "docs/x.md"),
        ]});
        let Invocation::Changes(c) = Invocation::parse(&ev).unwrap() else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].key, "dir/my file=1 é.jsonl");
        assert_eq!(
            (c[0].kind, c[0].etag.as_deref(), c[0].size),
            (ChangeKind::Created, Some("abc"), Some(10))
        );
        assert_eq!(
            (c[1].kind, c[1].key.as_str()),
            (ChangeKind::Removed, "docs/old.md")
        );
        let broken =
            json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{}}]});
        assert!(matches!(
            Invocation::parse(&broken),
            Err(EventError::BadRecord(_))
        ));
        assert!(decode_key("%FF").is_err());
    }

    #[test]
    fn sqs_batches_isolate_bad_messages() {
        let good = json!({"Records":[record("ObjectCreated:Put", "a.jsonl")]}).to_string();
        let sns = json!({"Type": "Notification", "Message": json!({"Records": [record("ObjectRemoved:Delete", "docs/c.md")]}).to_string()}).to_string();
        let test_event =
            json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"raw"}).to_string();
        let ev = json!({"Records":[
            {"messageId":"m1","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:q","body":good},
            {"messageId":"m2","eventSource":"aws:sqs","body":"{oops"},
            {"messageId":"m3","eventSource":"aws:sqs","body":test_event},
            {"messageId":"m4","eventSource":"aws:sqs","body":sns},
            {"messageId":"m5","eventSource":"aws:sqs"},
        ]});
        let Invocation::Messages(m) = Invocation::parse(&ev).unwrap() else {
            panic!()
        };
        assert_eq!(m[0].changes.as_ref().unwrap()[0].key, "a.jsonl");
        assert_eq!(
            (m[0].id.as_str(), m[0].queue_arn.as_str()),
            ("m1", "arn:aws:sqs:us-east-1:1:q")
        );
        assert!(m[1]
            .changes
            .as_ref()
            .unwrap_err()
            .starts_with("body is not JSON"));
        assert_eq!(m[2].changes, Ok(vec![]));
        assert_eq!(m[3].changes.as_ref().unwrap()[0].kind, ChangeKind::Removed);
        assert_eq!(m[4].changes, Err("message has no body".into()));
    }

    #[test]
    fn eventbridge_schedules_actions_and_garbage() {
        let created = json!({"source":"aws.s3","detail-type":"Object Created",
            "detail":{"bucket":{"name":"raw"},"object":{"key":"a b.jsonl","etag":"e"}}});
        assert_eq!(
            changes(Invocation::parse(&created).unwrap()),
            vec![(ChangeKind::Created, "a b.jsonl".into())]
        );
        let deleted = json!({"source":"aws.s3","detail-type":"Object Deleted",
            "detail":{"bucket":{"name":"b"},"object":{"key":"docs/z.md"}}});
        assert_eq!(
            changes(Invocation::parse(&deleted).unwrap()),
            vec![(ChangeKind::Removed, "docs/z.md".into())]
        );
        let sched = json!({"source":"aws.events","detail-type":"Scheduled Event","detail":{}});
        assert_eq!(Invocation::parse(&sched), Ok(Invocation::Schedule));
        assert_eq!(
            Invocation::parse(&json!({"action":"sweep"})),
            Ok(Invocation::Action("sweep".into()))
        );
        assert_eq!(
            Invocation::parse(&json!({"hello":1})),
            Err(EventError::Unrecognised)
        );
    }

    #[test]
    fn batch_responses_name_only_the_failed_messages() {
        assert_eq!(
            batch_response(vec!["m2".to_owned()]),
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
        );
        assert_eq!(batch_response(Vec::new()), json!({"batchItemFailures": []}));
    }
}
