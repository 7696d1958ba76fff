//! CloudWatch metrics in Embedded Metric Format: one JSON document per processed object, written
//! to the function's log stream, which CloudWatch turns into metrics with no API call (and no
//! latency or failure mode in the ETL's path). Plain JSON here; the function prints it.

use serde_json::{json, Value};

use crate::checkpoint::Completion;

/// Namespace when `METRICS_NAMESPACE` is unset; the template sets `DataFlow/<stage>`.
pub use crate::config::DEFAULT_METRICS_NAMESPACE as DEFAULT_NAMESPACE;

/// The metric names, as the template's dashboard and alarms use them.
pub const EVENTS_ACCEPTED: &str = "EventsAccepted";
pub const EVENTS_REJECTED: &str = "EventsRejected";
pub const BYTES_PROCESSED: &str = "BytesProcessed";
pub const OBJECTS_PROCESSED: &str = "ObjectsProcessed";
pub const OBJECT_DURATION: &str = "ObjectDuration";
pub const WATERMARK_LAG: &str = "WatermarkLag";

/// The EMF document for one processed object. `WatermarkLag` is how far the object's newest
/// event is behind `now_ms`, in seconds (absent for an object without accepted events; never
/// negative). The object's bucket, key and rejected reasons ride along as properties, which
/// Logs Insights can query but which are not metric dimensions (no per-object cost).
pub fn object_processed(namespace: &str, c: &Completion, now_ms: i64) -> Value {
    let mut metrics = vec![
        json!({"Name": OBJECTS_PROCESSED, "Unit": "Count"}),
        json!({"Name": EVENTS_ACCEPTED, "Unit": "Count"}),
        json!({"Name": EVENTS_REJECTED, "Unit": "Count"}),
        json!({"Name": BYTES_PROCESSED, "Unit": "Bytes"}),
        json!({"Name": OBJECT_DURATION, "Unit": "Milliseconds"}),
    ];
    let mut doc = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [[]], "Metrics": []}],
        },
        OBJECTS_PROCESSED: 1,
        EVENTS_ACCEPTED: c.accepted,
        EVENTS_REJECTED: c.rejected,
        BYTES_PROCESSED: c.bytes,
        OBJECT_DURATION: c.duration_ms,
        "bucket": c.bucket,
        "key": c.key,
        "rejected_by_reason": c.rejected_by_reason,
    });
    if let Some(us) = c.max_event_time_us {
        let lag = (now_ms.saturating_sub(us.div_euclid(1000)) / 1000).max(0);
        metrics.push(json!({"Name": WATERMARK_LAG, "Unit": "Seconds"}));
        doc[WATERMARK_LAG] = json!(lag);
    }
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] = Value::Array(metrics);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_per_object_with_every_metric_declared() {
        let now = 1_700_000_000_000;
        let c = Completion {
            bucket: "raw".into(),
            key: "a.jsonl".into(),
            accepted: 9,
            rejected: 2,
            bytes: 1234,
            duration_ms: 57,
            max_event_time_us: Some((now - 125_000) * 1000),
            rejected_by_reason: [("invalid_json".to_owned(), 2)].into(),
            ..Completion::default()
        };
        let d = object_processed("DataFlow/dev", &c, now);
        let m = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "DataFlow/dev");
        assert_eq!(m["Dimensions"], json!([[]]));
        assert_eq!(d["_aws"]["Timestamp"], now);
        // Every declared metric has a number at the top level (EMF's rule).
        let names: Vec<&str> = m["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                OBJECTS_PROCESSED,
                EVENTS_ACCEPTED,
                EVENTS_REJECTED,
                BYTES_PROCESSED,
                OBJECT_DURATION,
                WATERMARK_LAG
            ]
        );
        for n in &names {
            assert!(d[*n].is_u64(), "{n}: {}", d[*n]);
        }
        assert_eq!(
            (d[EVENTS_ACCEPTED].as_u64(), d[EVENTS_REJECTED].as_u64()),
            (Some(9), Some(2))
        );
        assert_eq!(d[WATERMARK_LAG], 125);
        assert_eq!(d["rejected_by_reason"]["invalid_json"], 2);
        // No accepted event: no watermark, so no lag metric; a future event is no lag.
        let empty = Completion::default();
        let d = object_processed("n", &empty, now);
        assert!(d.get(WATERMARK_LAG).is_none());
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        let future = Completion {
            max_event_time_us: Some(i64::MAX),
            ..Completion::default()
        };
        assert_eq!(object_processed("n", &future, now)[WATERMARK_LAG], 0);
        let past = Completion {
            max_event_time_us: Some(i64::MIN),
            ..Completion::default()
        };
        assert!(
            object_processed("n", &past, now)[WATERMARK_LAG]
                .as_i64()
                .unwrap()
                > 0
        );
    }
}
