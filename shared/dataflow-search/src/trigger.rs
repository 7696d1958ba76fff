//! What wakes the index builder: S3 notifications for the docs prefix (direct, through SQS or
//! SNS, or EventBridge), a schedule, or an explicit `{"action": "rebuild"}`.

use dataflow_core::trigger::decode_key;
use serde_json::Value;

use crate::store::is_document;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildRequest {
    /// Changed Markdown keys under the docs prefix (empty for a forced rebuild).
    pub changed: Vec<String>,
    /// Rebuild even if the docs look unchanged.
    pub force: bool,
    /// SQS messages that could not be read (reported as batch item failures).
    pub unreadable: Vec<(String, String)>,
    /// The invocation came from SQS (answer with `batchItemFailures`).
    pub from_sqs: bool,
}

impl RebuildRequest {
    pub fn wants_rebuild(&self) -> bool {
        self.force || !self.changed.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unrecognised event: expected S3 notifications, an SQS batch of them, an EventBridge event or {{\"action\": \"rebuild\"}}")]
pub struct UnrecognisedEvent;

/// Reads an invocation payload. Records for other prefixes, non-Markdown keys, other event kinds
/// and `s3:TestEvent` are ignored; deletions count as changes.
pub fn parse_rebuild_trigger(
    event: &Value,
    docs_prefix: &str,
) -> Result<RebuildRequest, UnrecognisedEvent> {
    let mut req = RebuildRequest {
        changed: Vec::new(),
        force: false,
        unreadable: Vec::new(),
        from_sqs: false,
    };
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        for r in records {
            if r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs") {
                req.from_sqs = true;
                let id = r
                    .get("messageId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let body = r.get("body").and_then(Value::as_str).unwrap_or_default();
                match serde_json::from_str::<Value>(body) {
                    Ok(v) => {
                        let v = match v.get("Message").and_then(Value::as_str) {
                            Some(inner)
                                if v.get("Type").and_then(Value::as_str)
                                    == Some("Notification") =>
                            {
                                match serde_json::from_str(inner) {
                                    Ok(x) => x,
                                    Err(e) => {
                                        req.unreadable
                                            .push((id, format!("SNS message is not JSON: {e}")));
                                        continue;
                                    }
                                }
                            }
                            _ => v,
                        };
                        collect(&v, docs_prefix, &mut req.changed);
                    }
                    Err(e) => req.unreadable.push((id, format!("body is not JSON: {e}"))),
                }
            } else {
                collect_record(r, docs_prefix, &mut req.changed);
            }
        }
        return Ok(req);
    }
    if event.get("source").and_then(Value::as_str) == Some("aws.s3") {
        collect(event, docs_prefix, &mut req.changed);
        return Ok(req);
    }
    let scheduled = event.get("source").and_then(Value::as_str) == Some("aws.events");
    if scheduled || event.get("action").and_then(Value::as_str) == Some("rebuild") {
        req.force = event.get("action").is_some();
        // A schedule is a safety net: rebuild only if the docs differ from the index.
        if scheduled {
            req.changed.push(String::new());
        }
        return Ok(req);
    }
    Err(UnrecognisedEvent)
}

fn collect(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        for r in records {
            collect_record(r, prefix, out);
        }
    } else if v.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let kind = v.get("detail-type").and_then(Value::as_str).unwrap_or("");
        if kind == "Object Created" || kind == "Object Deleted" {
            if let Some(key) = v.pointer("/detail/object/key").and_then(Value::as_str) {
                push_key(key, prefix, out);
            }
        }
    }
}

fn collect_record(r: &Value, prefix: &str, out: &mut Vec<String>) {
    let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
    if !(name.starts_with("ObjectCreated") || name.starts_with("ObjectRemoved")) {
        return;
    }
    if let Some(key) = r.pointer("/s3/object/key").and_then(Value::as_str) {
        push_key(key, prefix, out);
    }
}

fn push_key(raw: &str, prefix: &str, out: &mut Vec<String>) {
    let Ok(key) = decode_key(raw) else { return };
    if key.starts_with(prefix) && is_document(&key) && !out.contains(&key) {
        out.push(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s3(name: &str, key: &str) -> Value {
        json!({"eventSource": "aws:s3", "eventName": name, "s3": {"bucket": {"name": "b"}, "object": {"key": key}}})
    }

    #[test]
    fn direct_notifications_for_docs_count_and_others_do_not() {
        let ev = json!({"Records": [
            s3("ObjectCreated:Put", "docs/ops/run+book.md"),
            s3("ObjectRemoved:Delete", "docs/old.md"),
            s3("ObjectCreated:Put", "docs/image.png"),
            s3("ObjectCreated:Put", "index/current.json"),
            s3("ObjectRestore:Post", "docs/x.md"),
        ]});
        let r = parse_rebuild_trigger(&ev, "docs/").unwrap();
        assert_eq!(r.changed, vec!["docs/ops/run book.md", "docs/old.md"]);
        assert!(r.wants_rebuild() && !r.force && !r.from_sqs);
        let none = json!({"Records": [s3("ObjectCreated:Put", "index/objects/x.dfidx")]});
        assert!(!parse_rebuild_trigger(&none, "docs/")
            .unwrap()
            .wants_rebuild());
    }

    #[test]
    fn sqs_sns_test_events_and_bad_bodies() {
        let notif = json!({"Records": [s3("ObjectCreated:Put", "docs/a%3Db.md")]}).to_string();
        let sns = json!({"Type": "Notification", "Message": json!({"Records": [s3("ObjectRemoved:Delete", "docs/c.md")]}).to_string()}).to_string();
        let test = json!({"Event": "s3:TestEvent", "Bucket": "b"}).to_string();
        let ev = json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "1", "body": notif},
            {"eventSource": "aws:sqs", "messageId": "2", "body": sns},
            {"eventSource": "aws:sqs", "messageId": "3", "body": test},
            {"eventSource": "aws:sqs", "messageId": "4", "body": "{not json"},
        ]});
        let r = parse_rebuild_trigger(&ev, "docs/").unwrap();
        assert!(r.from_sqs);
        assert_eq!(r.changed, vec!["docs/a=b.md", "docs/c.md"]);
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!(r.unreadable[0].0, "4");
    }

    #[test]
    fn eventbridge_schedule_and_manual() {
        let eb = json!({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {"object": {"key": "docs/z.md"}}});
        assert_eq!(
            parse_rebuild_trigger(&eb, "docs/").unwrap().changed,
            vec!["docs/z.md"]
        );
        let sched = json!({"source": "aws.events", "detail-type": "Scheduled Event"});
        let r = parse_rebuild_trigger(&sched, "docs/").unwrap();
        assert!(r.wants_rebuild() && !r.force);
        let manual = parse_rebuild_trigger(&json!({"action": "rebuild"}), "docs/").unwrap();
        assert!(manual.force);
        assert_eq!(
            parse_rebuild_trigger(&json!({"x": 1}), "docs/"),
            Err(UnrecognisedEvent)
        );
    }
}
