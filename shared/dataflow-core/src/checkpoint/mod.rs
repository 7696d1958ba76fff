//! The checkpoint protocol: one record per source object version, claimed with a short lease
//! that a heartbeat renews while the object is processed, so that concurrent or repeated
//! deliveries process an object once and a dead attempt is taken over within one lease. Pipeline
//! totals move only in the same atomic step that marks an object done, and a newer version of a
//! key replaces the older version's contribution in that same step.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::lake::source::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store request failed: {0}")]
    Store(String),
    #[error("checkpoint record is malformed: {0}")]
    Malformed(String),
}

/// An object version's state (its name in answers: `in_progress`, `done`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
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

/// Claims and leases on object versions, and the one step that counts a version: what the
/// ETL and the sweep write with.
#[async_trait]
pub trait ObjectClaims: Send + Sync + 'static {
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
    /// Deletes a record so the object is processed again, taking a done record's counts back out
    /// of the totals in the same step. Returns whether a record existed.
    async fn forget(&self, id: &str) -> Result<bool, CheckpointError>;
}

/// The records as operators, the status page and the sweep read them.
#[async_trait]
pub trait CheckpointReads: Send + Sync + 'static {
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
}

/// Named mutual-exclusion leases (one compaction per date at a time).
#[async_trait]
pub trait Locks: Send + Sync + 'static {
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

/// The whole checkpoint store: every implementation is all three ports; a caller that needs
/// one role takes that port alone (the status page reads, compaction locks).
pub trait CheckpointStore: ObjectClaims + CheckpointReads + Locks {}

impl<T: ObjectClaims + CheckpointReads + Locks + ?Sized> CheckpointStore for T {}

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

pub mod conformance;
mod memory;
pub use memory::MemoryCheckpoints;

#[cfg(test)]
mod tests;
