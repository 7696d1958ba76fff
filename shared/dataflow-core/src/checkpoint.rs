//! The checkpoint protocol: one record per source object version, claimed with a lease so that
//! concurrent or repeated deliveries process an object once, and pipeline totals that move only in
//! the same atomic step that marks an object done.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

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
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::InProgress => "in_progress",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in_progress" => Some(State::InProgress),
            "done" => Some(State::Done),
            "failed" => Some(State::Failed),
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
}

#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Claims `id` unless it is done or leased by a live attempt. An expired lease is taken over.
    async fn claim(
        &self,
        id: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError>;
    /// Marks the claim done and adds its counts to the pipeline totals, atomically. Returns
    /// `false` (and changes nothing) when the claim was lost to a takeover that finished first.
    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        now_ms: i64,
    ) -> Result<bool, CheckpointError>;
    /// Records a failure and releases the lease so the next delivery retries at once.
    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError>;
    async fn get(&self, id: &str) -> Result<Option<ObjectCheckpoint>, CheckpointError>;
    async fn list(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError>;
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

type MemoryState = (
    BTreeMap<String, ObjectCheckpoint>,
    PipelineState,
    BTreeMap<String, (String, i64)>,
);

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

#[async_trait]
impl CheckpointStore for MemoryCheckpoints {
    async fn claim(
        &self,
        id: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError> {
        let mut g = self.lock()?;
        let attempts = match g.0.get(id) {
            Some(c) if c.state == State::Done => return Ok(ClaimOutcome::AlreadyDone),
            Some(c) if c.state == State::InProgress && c.lease_expires_ms > now_ms => {
                return Ok(ClaimOutcome::Busy {
                    lease_expires_ms: c.lease_expires_ms,
                })
            }
            Some(c) => c.attempts,
            None => 0,
        };
        let claim = Claim {
            id: id.into(),
            owner: uuid::Uuid::new_v4().to_string(),
            attempt: attempts + 1,
        };
        g.0.insert(
            id.into(),
            ObjectCheckpoint {
                id: id.into(),
                state: State::InProgress,
                attempts: attempts + 1,
                lease_expires_ms: now_ms + lease_ms,
                completion: None,
                error: None,
                updated_ms: now_ms,
            },
        );
        // The owner is tracked through the attempt number in memory.
        Ok(ClaimOutcome::Acquired(claim))
    }

    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        now_ms: i64,
    ) -> Result<bool, CheckpointError> {
        let mut g = self.lock()?;
        let (objects, pipe, _) = &mut *g;
        let Some(rec) = objects.get_mut(&claim.id) else {
            return Ok(false);
        };
        if rec.state == State::Done || rec.attempts != claim.attempt {
            return Ok(false);
        }
        rec.state = State::Done;
        rec.completion = Some(c.clone());
        rec.updated_ms = now_ms;
        pipe.files_processed += 1;
        pipe.events_accepted += c.accepted;
        pipe.events_rejected += c.rejected;
        pipe.bytes_processed += c.bytes;
        pipe.latest_event_time_us = pipe.latest_event_time_us.max(c.max_event_time_us);
        pipe.last_object = Some(format!("s3://{}/{}", c.bucket, c.key));
        pipe.last_processed_ms = Some(now_ms);
        Ok(true)
    }

    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if let Some(rec) = g.0.get_mut(&claim.id) {
            if rec.state != State::Done && rec.attempts == claim.attempt {
                rec.state = State::Failed;
                rec.error = Some(error.into());
                rec.lease_expires_ms = 0;
                rec.updated_ms = now_ms;
            }
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ObjectCheckpoint>, CheckpointError> {
        Ok(self.lock()?.0.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self.lock()?.0.values().cloned().collect())
    }

    async fn pipeline(&self) -> Result<PipelineState, CheckpointError> {
        Ok(self.lock()?.1.clone())
    }

    async fn forget(&self, id: &str) -> Result<bool, CheckpointError> {
        let mut g = self.lock()?;
        let (objects, pipe, _) = &mut *g;
        let Some(rec) = objects.remove(id) else {
            return Ok(false);
        };
        if let (State::Done, Some(c)) = (rec.state, rec.completion) {
            pipe.files_processed = pipe.files_processed.saturating_sub(1);
            pipe.events_accepted = pipe.events_accepted.saturating_sub(c.accepted);
            pipe.events_rejected = pipe.events_rejected.saturating_sub(c.rejected);
            pipe.bytes_processed = pipe.bytes_processed.saturating_sub(c.bytes);
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
        if g.2.get(name).is_some_and(|(_, until)| *until > now_ms) {
            return Ok(None);
        }
        let owner = uuid::Uuid::new_v4().to_string();
        g.2.insert(name.into(), (owner.clone(), now_ms + lease_ms));
        Ok(Some(Claim {
            id: name.into(),
            owner,
            attempt: 1,
        }))
    }

    async fn release_lock(&self, claim: &Claim) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if g.2.get(&claim.id).is_some_and(|(o, _)| *o == claim.owner) {
            g.2.remove(&claim.id);
        }
        Ok(())
    }
}
