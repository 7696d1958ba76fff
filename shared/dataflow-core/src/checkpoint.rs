//! The checkpoint protocol: one record per source object version, claimed with a short lease
//! that a heartbeat renews while the object is processed, so that concurrent or repeated
//! deliveries process an object once and a dead attempt is taken over within one lease. Pipeline
//! totals move only in the same atomic step that marks an object done, and a newer version of a
//! key replaces the older version's contribution in that same step.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lake::source::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store request failed: {0}")]
    Store(String),
    #[error("checkpoint record is malformed: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    InProgress,
    Done,
    Failed,
    /// A newer version of the key replaced this one (its counts left the totals), or this
    /// version was overwritten before it could be counted.
    Superseded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::InProgress => "in_progress",
            State::Done => "done",
            State::Failed => "failed",
            State::Superseded => "superseded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in_progress" => Some(State::InProgress),
            "done" => Some(State::Done),
            "failed" => Some(State::Failed),
            "superseded" => Some(State::Superseded),
            _ => None,
        }
    }
}

/// A held claim on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: String,
    pub owner: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Acquired(Claim),
    /// Already processed: nothing to do.
    AlreadyDone,
    /// This version was replaced by a newer one: nothing to do.
    Superseded,
    /// Another attempt holds an unexpired lease.
    Busy {
        lease_expires_ms: i64,
    },
}

/// What a finished object contributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    pub bucket: String,
    pub key: String,
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
    pub output_keys: Vec<String>,
    pub max_event_time_us: Option<i64>,
    pub duration_ms: u64,
    /// Rejected lines by reason code (the codes of [`crate::event::Reason`]).
    pub rejected_by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// Marked done; `replaced` is the key's previous version, whose counts left the totals in
    /// the same step and whose outputs the caller now removes.
    Done {
        replaced: Option<Box<ObjectCheckpoint>>,
    },
    /// The claim was lost to a takeover that finished first: nothing changed.
    Lost,
    /// The key's current version is no longer the one the caller read: nothing changed; read
    /// it again, check the object is still current, and retry.
    KeyMoved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCheckpoint {
    pub id: String,
    pub state: State,
    pub attempts: u32,
    pub lease_expires_ms: i64,
    pub completion: Option<Completion>,
    pub error: Option<String>,
    pub updated_ms: i64,
    /// The object version this record is about (recorded at claim time).
    pub source: Option<ObjectRef>,
    /// Outputs of a superseded version that still have to be removed from the lake.
    pub cleanup: Vec<String>,
}

impl ObjectCheckpoint {
    /// The outputs a done version wrote.
    pub fn outputs(&self) -> Vec<String> {
        self.completion
            .as_ref()
            .map(|c| c.output_keys.clone())
            .unwrap_or_default()
    }

    /// Replaced by a newer version: its outputs are now to be removed.
    pub fn supersede(&mut self, now_ms: i64) {
        self.state = State::Superseded;
        self.updated_ms = now_ms;
        self.cleanup = self.outputs();
    }

    /// In progress, with a lease nobody renewed: the attempt died.
    pub fn is_stuck(&self, now_ms: i64) -> bool {
        self.state == State::InProgress && self.lease_expires_ms < now_ms
    }
}

/// Pipeline-level totals and watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineState {
    pub files_processed: u64,
    pub events_accepted: u64,
    pub events_rejected: u64,
    pub bytes_processed: u64,
    pub latest_event_time_us: Option<i64>,
    pub last_object: Option<String>,
    pub last_processed_ms: Option<i64>,
    /// Rejected lines by reason code over every counted object.
    pub rejected_by_reason: BTreeMap<String, u64>,
}

impl PipelineState {
    /// The additive totals: (files, events accepted, events rejected, bytes).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.files_processed,
            self.events_accepted,
            self.events_rejected,
            self.bytes_processed,
        )
    }
}

#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Claims the object version unless it is done, superseded or leased by a live attempt. An
    /// expired lease is taken over.
    async fn claim(
        &self,
        obj: &ObjectRef,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError>;
    /// Extends a held claim's lease (the heartbeat). `false` when the claim was lost.
    async fn renew(
        &self,
        claim: &Claim,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, CheckpointError>;
    /// The checkpoint id of the key's current (counted) version.
    async fn current_version(&self, key_id: &str) -> Result<Option<String>, CheckpointError>;
    /// Marks the claim done and adds its counts to the pipeline totals, atomically, provided the
    /// key's current version is still `expected` (what [`Self::current_version`] returned); that
    /// previous version, when done, is superseded in the same step (its counts leave the
    /// totals). [`CompleteOutcome::Lost`] when a takeover finished first.
    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        expected: Option<&str>,
        now_ms: i64,
    ) -> Result<CompleteOutcome, CheckpointError>;
    /// Records a failure and releases the lease so the next delivery retries at once.
    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError>;
    /// The claimed version is no longer the key's current one: record it as superseded without
    /// counting it, with the outputs it already wrote left to remove.
    async fn abandon(
        &self,
        claim: &Claim,
        outputs: &[String],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), CheckpointError>;
    /// A superseded version's outputs are gone from the lake.
    async fn cleaned(&self, id: &str) -> Result<(), CheckpointError>;
    /// Records that need the sweep's attention: every in-progress record (the caller checks
    /// the lease) and superseded ones with outputs left to remove. Cheap: it reads only those.
    async fn attention(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError>;
    async fn get(&self, id: &str) -> Result<Option<ObjectCheckpoint>, CheckpointError>;
    async fn list(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError>;
    /// The object records written most recently (claimed, done, failed or superseded), newest
    /// first, at most `limit`, from the last two days: what a status page shows. Cheap: an
    /// index read, never a scan of the history.
    async fn recent(
        &self,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<ObjectCheckpoint>, CheckpointError>;
    /// Records whose last attempt failed (not retried or done since), at most `limit`. Cheap:
    /// an index read.
    async fn failed(&self, limit: usize) -> Result<Vec<ObjectCheckpoint>, CheckpointError>;
    async fn pipeline(&self) -> Result<PipelineState, CheckpointError>;
    /// Deletes a record so the object is processed again, taking a done record's counts back out
    /// of the totals in the same step. Returns whether a record existed.
    async fn forget(&self, id: &str) -> Result<bool, CheckpointError>;
    /// A named mutual-exclusion lease (e.g. one compaction per date). `None` when held by a live
    /// owner; an expired lease is taken over.
    async fn acquire_lock(
        &self,
        name: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, CheckpointError>;
    /// Releases a lock if still held by `claim`.
    async fn release_lock(&self, claim: &Claim) -> Result<(), CheckpointError>;
}

const DAY_MS: i64 = 86_400_000;

/// Where [`CheckpointStore::recent`] starts: the beginning of yesterday (UTC), so a store that
/// indexes records by UTC day reads two partitions.
pub fn recent_since_ms(now_ms: i64) -> i64 {
    (now_ms.div_euclid(DAY_MS) - 1) * DAY_MS
}

/// How the pipeline totals move when `add` starts counting and `remove` (a previous version, or
/// a forgotten object) stops: one rule for every checkpoint store (memory applies it, DynamoDB
/// sends it as `ADD` values in the same transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotalsDelta {
    pub files: i64,
    pub accepted: i128,
    pub rejected: i128,
    pub bytes: i128,
    /// Rejected lines by reason code; codes whose sum is zero are left out.
    pub reasons: BTreeMap<String, i128>,
}

impl TotalsDelta {
    pub fn between(add: Option<&Completion>, remove: Option<&Completion>) -> Self {
        let mut d = Self::default();
        for (c, sign) in [(add, 1), (remove, -1)] {
            if let Some(c) = c {
                d.files += sign;
                d.accepted += i128::from(sign) * i128::from(c.accepted);
                d.rejected += i128::from(sign) * i128::from(c.rejected);
                d.bytes += i128::from(sign) * i128::from(c.bytes);
                for (r, n) in &c.rejected_by_reason {
                    *d.reasons.entry(r.clone()).or_default() += i128::from(sign) * i128::from(*n);
                }
            }
        }
        d.reasons.retain(|_, n| *n != 0);
        d
    }

    /// Applies the delta, never below zero.
    pub fn apply(&self, p: &mut PipelineState) {
        fn moved(v: u64, by: i128) -> u64 {
            u64::try_from((i128::from(v) + by).max(0)).unwrap_or(u64::MAX)
        }
        p.files_processed = moved(p.files_processed, i128::from(self.files));
        p.events_accepted = moved(p.events_accepted, self.accepted);
        p.events_rejected = moved(p.events_rejected, self.rejected);
        p.bytes_processed = moved(p.bytes_processed, self.bytes);
        for (r, n) in &self.reasons {
            let v = p.rejected_by_reason.entry(r.clone()).or_default();
            *v = moved(*v, *n);
        }
        p.rejected_by_reason.retain(|_, n| *n > 0);
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    objects: BTreeMap<String, ObjectCheckpoint>,
    pipeline: PipelineState,
    locks: BTreeMap<String, (String, i64)>,
    /// Key id -> checkpoint id of the key's current (done) version.
    current: BTreeMap<String, String>,
}

/// In-memory implementation with the same semantics, for unit tests of the orchestration.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    inner: Mutex<MemoryState>,
}

impl MemoryCheckpoints {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, CheckpointError> {
        self.inner
            .lock()
            .map_err(|_| CheckpointError::Store("lock poisoned".into()))
    }
}

/// The in-memory record of a held claim, if still held (the attempt number is the owner).
fn held<'a>(g: &'a mut MemoryState, claim: &Claim) -> Option<&'a mut ObjectCheckpoint> {
    g.objects
        .get_mut(&claim.id)
        .filter(|r| r.state == State::InProgress && r.attempts == claim.attempt)
}

#[async_trait]
impl CheckpointStore for MemoryCheckpoints {
    async fn claim(
        &self,
        obj: &ObjectRef,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError> {
        let id = obj.checkpoint_id();
        let mut g = self.lock()?;
        let attempts = match g.objects.get(&id) {
            Some(c) if c.state == State::Done => return Ok(ClaimOutcome::AlreadyDone),
            Some(c) if c.state == State::Superseded => return Ok(ClaimOutcome::Superseded),
            Some(c) if c.state == State::InProgress && c.lease_expires_ms >= now_ms => {
                return Ok(ClaimOutcome::Busy {
                    lease_expires_ms: c.lease_expires_ms,
                })
            }
            Some(c) => c.attempts,
            None => 0,
        };
        let claim = Claim {
            id: id.clone(),
            owner: uuid::Uuid::new_v4().to_string(),
            attempt: attempts + 1,
        };
        g.objects.insert(
            id.clone(),
            ObjectCheckpoint {
                id,
                state: State::InProgress,
                attempts: attempts + 1,
                lease_expires_ms: now_ms + lease_ms,
                completion: None,
                error: None,
                updated_ms: now_ms,
                source: Some(obj.clone()),
                cleanup: Vec::new(),
            },
        );
        Ok(ClaimOutcome::Acquired(claim))
    }

    async fn renew(
        &self,
        claim: &Claim,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, CheckpointError> {
        let mut g = self.lock()?;
        Ok(match held(&mut g, claim) {
            Some(rec) => {
                rec.lease_expires_ms = now_ms + lease_ms;
                true
            }
            None => false,
        })
    }

    async fn current_version(&self, key_id: &str) -> Result<Option<String>, CheckpointError> {
        Ok(self.lock()?.current.get(key_id).cloned())
    }

    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        expected: Option<&str>,
        now_ms: i64,
    ) -> Result<CompleteOutcome, CheckpointError> {
        let mut g = self.lock()?;
        let Some(rec) = held(&mut g, claim) else {
            return Ok(CompleteOutcome::Lost);
        };
        let key_id = rec
            .source
            .as_ref()
            .map(ObjectRef::key_id)
            .unwrap_or_else(|| claim.id.clone());
        if g.current.get(&key_id).map(String::as_str) != expected {
            return Ok(CompleteOutcome::KeyMoved);
        }
        let Some(rec) = held(&mut g, claim) else {
            return Ok(CompleteOutcome::Lost);
        };
        rec.state = State::Done;
        rec.completion = Some(c.clone());
        rec.updated_ms = now_ms;
        let previous = g.current.insert(key_id, claim.id.clone());
        let replaced = match previous.filter(|p| *p != claim.id) {
            Some(p) => match g.objects.get_mut(&p) {
                Some(old) if old.state == State::Done => {
                    old.supersede(now_ms);
                    Some(old.clone())
                }
                _ => None,
            },
            None => None,
        };
        let pipe = &mut g.pipeline;
        TotalsDelta::between(
            Some(c),
            replaced.as_ref().and_then(|r| r.completion.as_ref()),
        )
        .apply(pipe);
        pipe.latest_event_time_us = pipe.latest_event_time_us.max(c.max_event_time_us);
        pipe.last_object = Some(format!("s3://{}/{}", c.bucket, c.key));
        pipe.last_processed_ms = Some(now_ms);
        Ok(CompleteOutcome::Done {
            replaced: replaced.map(Box::new),
        })
    }

    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if let Some(rec) = held(&mut g, claim) {
            rec.state = State::Failed;
            rec.error = Some(error.into());
            rec.lease_expires_ms = 0;
            rec.updated_ms = now_ms;
        }
        Ok(())
    }

    async fn abandon(
        &self,
        claim: &Claim,
        outputs: &[String],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if let Some(rec) = held(&mut g, claim) {
            rec.state = State::Superseded;
            rec.error = Some(reason.into());
            rec.lease_expires_ms = 0;
            rec.updated_ms = now_ms;
            rec.cleanup = outputs.to_vec();
        }
        Ok(())
    }

    async fn cleaned(&self, id: &str) -> Result<(), CheckpointError> {
        if let Some(rec) = self.lock()?.objects.get_mut(id) {
            rec.cleanup.clear();
        }
        Ok(())
    }

    async fn attention(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self
            .lock()?
            .objects
            .values()
            .filter(|r| r.state == State::InProgress || !r.cleanup.is_empty())
            .cloned()
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<ObjectCheckpoint>, CheckpointError> {
        Ok(self.lock()?.objects.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self.lock()?.objects.values().cloned().collect())
    }

    async fn recent(
        &self,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        let since = recent_since_ms(now_ms);
        let mut out: Vec<ObjectCheckpoint> = self
            .lock()?
            .objects
            .values()
            .filter(|r| r.updated_ms >= since)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then(a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn failed(&self, limit: usize) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self
            .lock()?
            .objects
            .values()
            .filter(|r| r.state == State::Failed)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn pipeline(&self) -> Result<PipelineState, CheckpointError> {
        Ok(self.lock()?.pipeline.clone())
    }

    async fn forget(&self, id: &str) -> Result<bool, CheckpointError> {
        let mut g = self.lock()?;
        let Some(rec) = g.objects.remove(id) else {
            return Ok(false);
        };
        if rec.state == State::Done {
            TotalsDelta::between(None, rec.completion.as_ref()).apply(&mut g.pipeline);
        }
        Ok(true)
    }

    async fn acquire_lock(
        &self,
        name: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, CheckpointError> {
        let mut g = self.lock()?;
        if g.locks.get(name).is_some_and(|(_, until)| *until > now_ms) {
            return Ok(None);
        }
        let owner = uuid::Uuid::new_v4().to_string();
        g.locks
            .insert(name.into(), (owner.clone(), now_ms + lease_ms));
        Ok(Some(Claim {
            id: name.into(),
            owner,
            attempt: 1,
        }))
    }

    async fn release_lock(&self, claim: &Claim) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if g.locks
            .get(&claim.id)
            .is_some_and(|(o, _)| *o == claim.owner)
        {
            g.locks.remove(&claim.id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(accepted: u64, rejected: u64, bytes: u64) -> Completion {
        Completion {
            bucket: "b".into(),
            key: "k".into(),
            accepted,
            rejected,
            bytes,
            output_keys: Vec::new(),
            max_event_time_us: None,
            duration_ms: 0,
            rejected_by_reason: BTreeMap::from([("invalid_json".to_owned(), rejected)]),
        }
    }

    #[tokio::test]
    async fn reasons_follow_the_counted_version_and_recent_reads_two_days() {
        let store = MemoryCheckpoints::default();
        let day = 20_000 * DAY_MS;
        let obj = |v: &str| ObjectRef {
            bucket: "raw".into(),
            key: "a.jsonl".into(),
            etag: Some(v.into()),
            version_id: None,
            size: Some(1),
        };
        let mut c = done(3, 2, 10);
        c.rejected_by_reason.insert("missing_user_id".into(), 1);
        let ClaimOutcome::Acquired(first) =
            store.claim(&obj("v1"), day - DAY_MS, 1000).await.unwrap()
        else {
            panic!("not claimed")
        };
        store
            .complete(&first, &c, None, day - DAY_MS)
            .await
            .unwrap();
        let p = store.pipeline().await.unwrap();
        let want = BTreeMap::from([("invalid_json".into(), 2), ("missing_user_id".into(), 1)]);
        assert_eq!(p.rejected_by_reason, want);
        // A new version of the key replaces the old one's reasons, it does not add to them.
        let ClaimOutcome::Acquired(second) = store.claim(&obj("v2"), day + 5, 1000).await.unwrap()
        else {
            panic!("not claimed")
        };
        let current = store.current_version(&obj("v2").key_id()).await.unwrap();
        store
            .complete(&second, &done(1, 4, 1), current.as_deref(), day + 5)
            .await
            .unwrap();
        let p = store.pipeline().await.unwrap();
        assert_eq!(
            p.rejected_by_reason,
            BTreeMap::from([("invalid_json".into(), 4)])
        );
        let recent = store.recent(10, day + 10).await.unwrap();
        let states: Vec<(&str, State)> = recent.iter().map(|r| (r.id.as_str(), r.state)).collect();
        assert_eq!(
            states,
            vec![
                (first.id.as_str(), State::Superseded),
                (second.id.as_str(), State::Done)
            ]
        );
        assert_eq!(store.recent(1, day + 10).await.unwrap().len(), 1);
        // Two days on, the first day's records are out of the window.
        let later = store.recent(10, day + 2 * DAY_MS).await.unwrap();
        assert!(later.is_empty(), "{later:?}");
    }

    #[test]
    fn totals_move_by_the_difference_and_never_below_zero() {
        let (new, old) = (done(7, 1, 100), done(10, 0, 300));
        let d = TotalsDelta::between(Some(&new), Some(&old));
        assert_eq!((d.files, d.accepted, d.rejected, d.bytes), (0, -3, 1, -200));
        let mut p = PipelineState {
            files_processed: 1,
            events_accepted: 10,
            events_rejected: 0,
            bytes_processed: 300,
            ..PipelineState::default()
        };
        d.apply(&mut p);
        assert_eq!(p.counts(), (1, 7, 1, 100));
        TotalsDelta::between(None, Some(&done(u64::MAX, 5, 5))).apply(&mut p);
        assert_eq!(p.counts(), (0, 0, 0, 95));
        let max = done(u64::MAX, u64::MAX, u64::MAX);
        TotalsDelta::between(Some(&max), None).apply(&mut p);
        assert_eq!(p.counts(), (1, u64::MAX, u64::MAX, u64::MAX));
    }
}
