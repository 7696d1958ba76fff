//! Lenient parsing of what invokes the ETL: S3 event notifications, SQS messages that carry them,
//! and EventBridge "Object Created" events. Lenient because emulators omit fields the strict
//! `aws_lambda_events` types require (moto sends no `userIdentity`), and because one odd record
//! must not fail its neighbours.

use serde_json::Value;

use crate::source::{clean_etag, ObjectRef};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Direct S3 notification (or EventBridge event): objects to process.
    S3(Vec<ObjectRef>),
    /// An SQS batch: each message's objects, or why the message could not be read.
    Sqs(Vec<SqsMessage>),
    /// The hourly schedule (an EventBridge schedule without input, or `{"action": "compact"}`):
    /// sweep, then compact the lake.
    Compact,
    /// The frequent schedule (`{"action": "sweep"}`): take over dead attempts, finish removing
    /// replaced versions' outputs.
    Sweep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessage {
    pub message_id: String,
    /// The raw body and the queue it came from: what a deferred message is sent again with.
    pub body: String,
    pub queue_arn: String,
    pub objects: Result<Vec<ObjectRef>, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    #[error("bad S3 record: {0}")]
    BadRecord(String),
}

/// Decodes a key as S3 notifications encode it: form-style, `+` for space, `%XX` escapes.
pub fn decode_key(raw: &str) -> Result<String, TriggerError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            TriggerError::BadRecord(format!("key {raw:?} is not valid UTF-8 once decoded"))
        })
}

pub fn parse_trigger(event: &Value) -> Result<Trigger, TriggerError> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let is_sqs = records
            .iter()
            .any(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
        if is_sqs {
            return Ok(Trigger::Sqs(records.iter().map(parse_sqs_record).collect()));
        }
        return parse_s3_notification(event).map(Trigger::S3);
    }
    if event.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return parse_eventbridge(event).map(|o| Trigger::S3(o.into_iter().collect()));
    }
    let scheduled = event.get("source").and_then(Value::as_str) == Some("aws.events")
        && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    match event.get("action").and_then(Value::as_str) {
        Some("sweep") => return Ok(Trigger::Sweep),
        Some("compact") => return Ok(Trigger::Compact),
        _ if scheduled => return Ok(Trigger::Compact),
        _ => {}
    }
    Err(TriggerError::Unrecognised(
        "expected an S3 notification, an SQS batch or an EventBridge S3 event".into(),
    ))
}

fn parse_sqs_record(r: &Value) -> SqsMessage {
    let message_id = r
        .get("messageId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let body = r.get("body").and_then(Value::as_str);
    let queue_arn = r
        .get("eventSourceARN")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let objects = (|| {
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
            return parse_eventbridge(&v)
                .map(|o| o.into_iter().collect())
                .map_err(|e| e.to_string());
        }
        parse_s3_notification(&v).map_err(|e| e.to_string())
    })();
    SqsMessage {
        message_id,
        body: body.unwrap_or_default().to_owned(),
        queue_arn,
        objects,
    }
}

fn parse_s3_notification(v: &Value) -> Result<Vec<ObjectRef>, TriggerError> {
    let records = v
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| TriggerError::Unrecognised("no Records array".into()))?;
    let mut out = Vec::new();
    for r in records {
        let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
        // Only creations feed the ETL; removals and other events are acknowledged.
        if !name.starts_with("ObjectCreated") {
            continue;
        }
        let s3 = r
            .get("s3")
            .ok_or_else(|| TriggerError::BadRecord("record has no s3 section".into()))?;
        let bucket = s3
            .pointer("/bucket/name")
            .and_then(Value::as_str)
            .ok_or_else(|| TriggerError::BadRecord("record has no bucket name".into()))?;
        let obj = s3
            .get("object")
            .ok_or_else(|| TriggerError::BadRecord("record has no object".into()))?;
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| TriggerError::BadRecord("record has no object key".into()))?;
        out.push(ObjectRef {
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
fn parse_eventbridge(v: &Value) -> Result<Option<ObjectRef>, TriggerError> {
    if v.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
        return Ok(None);
    }
    let d = v
        .get("detail")
        .ok_or_else(|| TriggerError::BadRecord("EventBridge event has no detail".into()))?;
    let bucket = d.pointer("/bucket/name").and_then(Value::as_str);
    let key = d.pointer("/object/key").and_then(Value::as_str);
    let (Some(bucket), Some(key)) = (bucket, key) else {
        return Err(TriggerError::BadRecord(
            "EventBridge detail lacks bucket or key".into(),
        ));
    };
    Ok(Some(ObjectRef {
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

    fn s3_record(key: &str) -> Value {
        // The shape moto sends: no userIdentity, requestParameters or responseElements.
        json!({"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
               "s3":{"bucket":{"name":"raw"},"object":{"key":key,"size":10,"eTag":"\"abc\""}}})
    }

    #[test]
    fn s3_notification_with_encoded_keys() {
        let ev = json!({"Records":[s3_record("dir%2Fmy+file%3D1+%C3%A9.jsonl"),
            {"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{}}]});
        let Trigger::S3(objs) = parse_trigger(&ev).unwrap() else {
            panic!()
        };
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].key, "dir/my file=1 é.jsonl");
        assert_eq!(objs[0].etag.as_deref(), Some("abc"));
        assert_eq!(objs[0].size, Some(10));
    }

    #[test]
    fn sqs_batch_isolates_bad_messages_and_ignores_test_events() {
        let good = json!({"Records":[s3_record("a.jsonl")]}).to_string();
        let test_event =
            json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"raw"}).to_string();
        let ev = json!({"Records":[
            {"messageId":"m1","eventSource":"aws:sqs","body":good},
            {"messageId":"m2","eventSource":"aws:sqs","body":"{oops"},
            {"messageId":"m3","eventSource":"aws:sqs","body":test_event},
        ]});
        let Trigger::Sqs(msgs) = parse_trigger(&ev).unwrap() else {
            panic!()
        };
        assert_eq!(msgs[0].objects.as_ref().unwrap()[0].key, "a.jsonl");
        assert!(msgs[1].objects.is_err());
        assert_eq!(msgs[2].objects, Ok(vec![]));
    }

    #[test]
    fn eventbridge_and_garbage() {
        let ev = json!({"source":"aws.s3","detail-type":"Object Created",
            "detail":{"bucket":{"name":"raw"},"object":{"key":"a b.jsonl","etag":"e"}}});
        let Trigger::S3(objs) = parse_trigger(&ev).unwrap() else {
            panic!()
        };
        assert_eq!(objs[0].key, "a b.jsonl");
        assert!(parse_trigger(&json!({"hello":1})).is_err());
        let sched = json!({"source":"aws.events","detail-type":"Scheduled Event","detail":{}});
        assert_eq!(parse_trigger(&sched), Ok(Trigger::Compact));
        assert_eq!(
            parse_trigger(&json!({"action":"compact"})),
            Ok(Trigger::Compact)
        );
        assert_eq!(
            parse_trigger(&json!({"action":"sweep"})),
            Ok(Trigger::Sweep)
        );
        assert!(decode_key("%FF").is_err());
    }
}
