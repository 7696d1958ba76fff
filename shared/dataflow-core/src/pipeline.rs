//! The pipeline's status as an operator reads it (`GET /pipeline/status`, the dashboard): totals,
//! the watermark and its lag, recent objects, objects that need attention, the dead-letter
//! queue's depth and rejected lines by reason. Built from what the checkpoint store and the
//! queue already hold; nothing here scans the history.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::checkpoint::{ObjectCheckpoint, PipelineState, State};

/// How many messages wait in a queue (the ETL's dead-letter queue).
#[async_trait]
pub trait QueueDepth: Send + Sync + 'static {
    async fn depth(&self) -> Result<u64, String>;
}

/// Most objects listed per section: a status page, not an export.
pub const LISTED: usize = 25;

/// One object version as the checkpoint store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ObjectStatus {
    pub object: String,
    pub state: State,
    pub attempts: u32,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub accepted: Option<u64>,
    pub rejected: Option<u64>,
    pub bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// In progress with an expired lease: the attempt died; the ETL's sweep takes it over.
    pub stuck: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeadLetters {
    /// Messages waiting; `None` when no queue is configured or it could not be read.
    pub depth: Option<u64>,
    pub error: Option<String>,
}

/// Over every counted object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Totals {
    pub files_processed: u64,
    pub events_accepted: u64,
    pub events_rejected: u64,
    pub bytes_processed: u64,
}

/// `GET /pipeline/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PipelineStatus {
    #[schema(format = DateTime)]
    pub now: String,
    pub totals: Totals,
    pub last_object: Option<String>,
    #[schema(format = DateTime)]
    pub last_processed_at: Option<String>,
    /// The newest event time counted so far.
    #[schema(format = DateTime)]
    pub watermark: Option<String>,
    /// How far the watermark is behind now, in seconds (0 when it is ahead).
    pub watermark_lag_seconds: Option<i64>,
    /// Seconds since an object last finished.
    pub idle_seconds: Option<i64>,
    /// Rejected lines by reason code over every counted object.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Object records written in the last two days (UTC), newest first, at most 25.
    pub recent: Vec<ObjectStatus>,
    pub in_progress: usize,
    /// Stuck attempts (in progress, lease expired), then failed objects not retried since; at
    /// most 25.
    pub needs_attention: Vec<ObjectStatus>,
    pub dead_letters: DeadLetters,
    /// Parts of the status that could not be read this time (e.g. an index still building); the
    /// rest answers.
    pub problems: Vec<String>,
}

/// What the status is made of, as the stores returned it.
#[derive(Debug, Default)]
pub struct Parts {
    pub pipeline: PipelineState,
    /// Newest first.
    pub recent: Vec<ObjectCheckpoint>,
    /// The sweep's records: in progress (stuck when their lease expired) and superseded ones.
    pub attention: Vec<ObjectCheckpoint>,
    pub failed: Vec<ObjectCheckpoint>,
    pub problems: Vec<String>,
}

pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn object_status(r: &ObjectCheckpoint, now_ms: i64) -> ObjectStatus {
    let c = r.completion.as_ref();
    let object = match (&r.source, c) {
        (Some(s), _) => format!("s3://{}/{}", s.bucket, s.key),
        (None, Some(c)) => format!("s3://{}/{}", c.bucket, c.key),
        (None, None) => r.id.clone(),
    };
    ObjectStatus {
        object,
        state: r.state,
        attempts: r.attempts,
        updated_at: rfc3339_ms(r.updated_ms),
        accepted: c.map(|c| c.accepted),
        rejected: c.map(|c| c.rejected),
        bytes: c.map(|c| c.bytes),
        duration_ms: c.map(|c| c.duration_ms),
        error: r.error.clone(),
        stuck: r.is_stuck(now_ms),
    }
}

/// The status from what the stores returned.
pub fn status(parts: &Parts, dead_letters: DeadLetters, now_ms: i64) -> PipelineStatus {
    let Parts {
        pipeline: p,
        recent,
        attention,
        failed,
        problems,
    } = parts;
    let mut needs: Vec<ObjectStatus> = attention
        .iter()
        .filter(|r| r.is_stuck(now_ms))
        .map(|r| object_status(r, now_ms))
        .collect();
    needs.extend(
        failed
            .iter()
            .filter(|r| r.state == State::Failed)
            .map(|r| object_status(r, now_ms)),
    );
    needs.truncate(LISTED);
    PipelineStatus {
        now: rfc3339_ms(now_ms),
        totals: Totals {
            files_processed: p.files_processed,
            events_accepted: p.events_accepted,
            events_rejected: p.events_rejected,
            bytes_processed: p.bytes_processed,
        },
        last_object: p.last_object.clone(),
        last_processed_at: p.last_processed_ms.map(rfc3339_ms),
        watermark: p.latest_event_time_us.map(|us| rfc3339_ms(us / 1000)),
        watermark_lag_seconds: p
            .latest_event_time_us
            .map(|us| (now_ms.saturating_sub(us / 1000) / 1000).max(0)),
        idle_seconds: p
            .last_processed_ms
            .map(|ms| (now_ms.saturating_sub(ms) / 1000).max(0)),
        rejected_by_reason: p.rejected_by_reason.clone(),
        recent: recent
            .iter()
            .take(LISTED)
            .map(|r| object_status(r, now_ms))
            .collect(),
        in_progress: attention
            .iter()
            .filter(|r| r.state == State::InProgress)
            .count(),
        needs_attention: needs,
        dead_letters,
        problems: problems.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Completion;
    use crate::lake::source::ObjectRef;

    fn rec(key: &str, state: State, updated_ms: i64, lease: i64) -> ObjectCheckpoint {
        ObjectCheckpoint {
            id: format!("object#raw/{key}#e"),
            state,
            attempts: 2,
            lease_expires_ms: lease,
            completion: (state == State::Done).then(|| Completion {
                bucket: "raw".into(),
                key: key.into(),
                accepted: 10,
                rejected: 1,
                bytes: 500,
                duration_ms: 12,
                ..Completion::default()
            }),
            error: (state == State::Failed).then(|| "read timed out".to_owned()),
            updated_ms,
            source: Some(ObjectRef::new("raw", key)),
            cleanup: Vec::new(),
        }
    }

    #[test]
    fn status_lists_recent_stuck_and_failed_objects_with_lags() {
        let now = 1_700_000_000_000;
        let p = PipelineState {
            files_processed: 3,
            events_accepted: 30,
            events_rejected: 2,
            bytes_processed: 1500,
            latest_event_time_us: Some((now - 90_000) * 1000),
            last_object: Some("s3://raw/c.jsonl".into()),
            last_processed_ms: Some(now - 4_000),
            rejected_by_reason: BTreeMap::from([("invalid_json".into(), 2)]),
        };
        let parts = Parts {
            pipeline: p,
            recent: vec![
                rec("c.jsonl", State::Done, now - 4_000, 0),
                rec("b.jsonl", State::Failed, now - 5_000, 0),
                rec("a.jsonl", State::InProgress, now - 6_000, now + 50_000),
            ],
            attention: vec![
                rec("a.jsonl", State::InProgress, now - 6_000, now + 50_000),
                rec("dead.jsonl", State::InProgress, now - 200_000, now - 1),
            ],
            // Failed long ago: no longer among the recent records, still listed.
            failed: vec![rec("old.jsonl", State::Failed, now - 9 * 86_400_000, 0)],
            problems: vec![],
        };
        let dl = DeadLetters {
            depth: Some(4),
            error: None,
        };
        let s = status(&parts, dl, now);
        assert_eq!(s.watermark_lag_seconds, Some(90));
        assert_eq!(s.idle_seconds, Some(4));
        assert_eq!(s.recent.len(), 3);
        assert_eq!(s.recent[0].object, "s3://raw/c.jsonl");
        assert_eq!(s.recent[0].accepted, Some(10));
        assert_eq!(s.recent[1].error.as_deref(), Some("read timed out"));
        assert_eq!(s.in_progress, 2);
        let needs: Vec<(&str, &str, bool)> = s
            .needs_attention
            .iter()
            .map(|o| (o.object.as_str(), o.state.as_str(), o.stuck))
            .collect();
        assert_eq!(
            needs,
            vec![
                ("s3://raw/dead.jsonl", "in_progress", true),
                ("s3://raw/old.jsonl", "failed", false)
            ]
        );
        assert_eq!(s.dead_letters.depth, Some(4));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["totals"]["events_rejected"], 2);
        assert_eq!(v["rejected_by_reason"]["invalid_json"], 2);
        // A watermark in the future (clock skew, a bad producer) is no lag, not a negative one.
        let ahead = PipelineState {
            latest_event_time_us: Some((now + 3_600_000) * 1000),
            ..PipelineState::default()
        };
        let parts = Parts {
            pipeline: ahead,
            problems: vec!["recent objects: index missing".into()],
            ..Parts::default()
        };
        let s = status(&parts, dl_none(), now);
        assert_eq!(s.watermark_lag_seconds, Some(0));
        assert_eq!(s.idle_seconds, None);
        assert_eq!(s.problems, ["recent objects: index missing"]);
    }

    fn dl_none() -> DeadLetters {
        DeadLetters {
            depth: None,
            error: None,
        }
    }
}
