//! ETL orchestration for one source object: claim its checkpoint (a short lease renewed by a
//! heartbeat), stream and process it, upload the outputs under names derived from the object's
//! identity, then mark it done, replacing the key's previous version. Every step is safe to
//! repeat: outputs are overwritten in place and totals move only with the done mark. A sweep
//! takes over attempts that died and finishes removing replaced versions' outputs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::{
    CheckpointError, CheckpointStore, Claim, ClaimOutcome, CompleteOutcome, Completion,
};
use crate::etl::process::{ProcessError, ProcessOptions, WindowRule};
use crate::etl::work::Work;
use crate::lake::layout::Layout;
use crate::lake::parquet::ParquetError;
use crate::lake::source::{is_supported_key, ObjectRef};
use crate::time::Clock;
use dataflow_store::{ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    #[error("{id} is being processed by another attempt (lease until {lease_expires_ms} ms); retry later")]
    Busy { id: String, lease_expires_ms: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("processing failed: {0}")]
    Process(#[from] ProcessError),
    #[error("encoding output failed: {0}")]
    Encode(#[from] ParquetError),
    #[error("work directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("removing a replaced version's outputs: {0}")]
    Cleanup(#[from] crate::etl::compaction::CompactionError),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    Processed(Completion),
    /// A done checkpoint exists: the delivery was a duplicate.
    AlreadyDone,
    /// Not ETL input (outside the raw prefix, or not a JSON Lines key).
    Skipped(String),
    /// Deleted or overwritten: a newer version counts instead (its own notification brings it).
    Gone(String),
}

#[derive(Clone)]
pub struct Etl<S, C> {
    pub store: Arc<S>,
    pub checkpoints: Arc<C>,
    pub lake_bucket: String,
    pub raw_prefix: String,
    /// The delivery stream's objects: input whatever their names end with.
    pub firehose_prefix: String,
    pub layout: Layout,
    pub options: ProcessOptions,
    /// Accepted event times (`ETL_MIN_DATE`, `ETL_MAX_FUTURE`), taken at each object's start.
    pub window: WindowRule,
    /// Claim lease; the heartbeat renews it every third of it while an object is processed.
    pub lease_ms: i64,
    /// Compact a date when an object leaves this many files in it (0: only the hourly run).
    pub compact_at_files: usize,
    pub work_root: PathBuf,
    /// Where leases, heartbeats and the event-time window read the time.
    pub clock: Clock,
}

/// A message that met a live lease: to be sent again after `delay_seconds`, as a new message
/// so that waiting does not count toward the dead-letter queue's receive limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    pub message_id: String,
    pub queue_arn: String,
    pub body: String,
    pub delay_seconds: u32,
}

/// Why part of an invocation's work failed (the rest went on).
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Object(#[from] EtlError),
    #[error(transparent)]
    Checkpoints(#[from] CheckpointError),
    #[error("compaction: {0}")]
    Compaction(#[from] crate::etl::compaction::CompactionError),
    #[error("rollups: {0}")]
    Rollups(#[from] crate::lake::LakeError),
    #[error("message {message_id} cannot be read: {reason}")]
    UnreadableMessage { message_id: String, reason: String },
    #[error("{id}: {reason}")]
    GaveUp { id: String, reason: String },
}

/// Outcome of one invocation.
#[derive(Debug, Default)]
pub struct WorkReport {
    pub outcomes: Vec<ObjectOutcome>,
    /// SQS message ids to report as `batchItemFailures`.
    pub failed_message_ids: Vec<String>,
    /// SQS messages to send again later (see [`Deferred`]).
    pub deferred: Vec<Deferred>,
    pub errors: Vec<WorkError>,
    /// Dates compacted by a scheduled run.
    pub compacted: usize,
    /// Dead attempts taken over and replaced versions cleaned by the sweep.
    pub swept: usize,
    /// What a scheduled run did to the monthly rollups (after compacting).
    pub rollup: Option<crate::rollup::RollupReport>,
}

impl<S: ObjectStore, C: CheckpointStore> Etl<S, C> {
    pub fn new(store: Arc<S>, checkpoints: Arc<C>, cfg: &crate::config::EtlConfig) -> Self {
        // At start: a killed attempt's scratch folder would otherwise stay for good.
        outputs::clean_stale_work_dirs_once(&std::env::temp_dir());
        Self {
            store,
            checkpoints,
            lake_bucket: cfg.lake.lake_bucket.clone(),
            raw_prefix: cfg.raw_prefix.clone(),
            firehose_prefix: cfg.firehose_prefix.clone(),
            layout: cfg.lake.layout.clone(),
            options: ProcessOptions::for_config(cfg),
            window: cfg.window_rule(),
            lease_ms: cfg.lease_seconds as i64 * 1000,
            compact_at_files: cfg.compact_at_files,
            work_root: std::env::temp_dir(),
            clock: Clock::system(),
        }
    }

    pub async fn handle(&self, work: Work) -> WorkReport {
        let mut report = WorkReport::default();
        match work {
            Work::Sweep => self.sweep_into(&mut report).await,
            Work::Compact => {
                self.sweep_into(&mut report).await;
                let r = crate::etl::compaction::compact_all(
                    self.store.as_ref(),
                    self.checkpoints.as_ref(),
                    &self.lake_bucket,
                    &self.layout,
                )
                .await;
                match r {
                    Ok(done) => report.compacted = done.len(),
                    Err(e) => report.errors.push(e.into()),
                }
                // After compaction, so the rollups name the compacted files.
                match self.refresh_rollups().await {
                    Ok(r) => report.rollup = Some(r),
                    Err(e) => report.errors.push(e.into()),
                }
                match crate::lake::changes::prune(
                    self.store.as_ref(),
                    &self.lake_bucket,
                    &self.layout,
                    self.clock.now_ms(),
                )
                .await
                {
                    Ok(n) if n > 0 => tracing::info!(markers = n, "change log pruned"),
                    Ok(_) => {}
                    Err(e) => report.errors.push(EtlError::from(e).into()),
                }
            }
            Work::Objects(objects) => {
                for obj in objects {
                    match self.process_object(obj).await {
                        Ok(o) => report.outcomes.push(o),
                        Err(e) => report.errors.push(e.into()),
                    }
                }
            }
            Work::Messages(messages) => {
                for msg in messages {
                    let objects = match msg.objects {
                        Ok(o) => o,
                        Err(e) => {
                            tracing::error!(message_id = %msg.message_id, error = %e, "unreadable SQS message");
                            report.errors.push(WorkError::UnreadableMessage {
                                message_id: msg.message_id.clone(),
                                reason: e,
                            });
                            report.failed_message_ids.push(msg.message_id);
                            continue;
                        }
                    };
                    let mut failed = false;
                    let mut busy_until: Option<i64> = None;
                    for obj in objects {
                        match self.process_object(obj).await {
                            Ok(o) => report.outcomes.push(o),
                            Err(EtlError::Busy {
                                lease_expires_ms, ..
                            }) => {
                                busy_until = busy_until.max(Some(lease_expires_ms));
                            }
                            Err(e) => {
                                report.errors.push(e.into());
                                failed = true;
                            }
                        }
                    }
                    if failed {
                        report.failed_message_ids.push(msg.message_id);
                    } else if let Some(until) = busy_until {
                        // Come back just after the live lease would end; SQS delays top out at
                        // 15 minutes.
                        let wait_ms = (until - self.clock.now_ms()).max(0) + 1_000;
                        report.deferred.push(Deferred {
                            message_id: msg.message_id,
                            queue_arn: msg.queue_arn,
                            body: msg.body,
                            delay_seconds: (wait_ms / 1000).clamp(1, 900) as u32,
                        });
                    }
                }
            }
        }
        report
    }

    /// Rebuilds the monthly rollups of months whose daily files changed.
    pub async fn refresh_rollups(
        &self,
    ) -> Result<crate::rollup::RollupReport, crate::lake::LakeError> {
        let store: Arc<dyn ObjectStore> = self.store.clone();
        crate::rollup::refresh(
            &store,
            &self.lake_bucket,
            &self.layout,
            self.clock.now_ms(),
            crate::rollup::PRUNE_GRACE_MS,
        )
        .await
    }

    pub async fn process_object(&self, mut obj: ObjectRef) -> Result<ObjectOutcome, EtlError> {
        let from_stream =
            !self.firehose_prefix.is_empty() && obj.key.starts_with(&self.firehose_prefix);
        if !obj.key.starts_with(&self.raw_prefix) && !from_stream {
            return Ok(ObjectOutcome::Skipped(format!(
                "{} is outside RAW_PREFIX",
                obj.key
            )));
        }
        if !is_supported_key(&obj.key) && !from_stream {
            tracing::info!(bucket = %obj.bucket, key = %obj.key, "skipped: not a .jsonl/.ndjson/.json(.gz) key");
            return Ok(ObjectOutcome::Skipped(format!(
                "{} is not a JSON Lines key",
                obj.key
            )));
        }
        if obj.etag.is_none() {
            match ObjectRef::current(&*self.store, &obj.bucket, &obj.key).await? {
                Some(found) => {
                    obj.etag = found.etag;
                    obj.size = found.size;
                }
                None => {
                    return Ok(ObjectOutcome::Gone(format!(
                        "s3://{}/{} no longer exists",
                        obj.bucket, obj.key
                    )))
                }
            }
        }
        let id = obj.checkpoint_id();
        let claim = match self
            .checkpoints
            .claim(&obj, self.clock.now_ms(), self.lease_ms)
            .await?
        {
            ClaimOutcome::Acquired(c) => c,
            ClaimOutcome::AlreadyDone => {
                tracing::info!(checkpoint = %id, "skipped: already done");
                return Ok(ObjectOutcome::AlreadyDone);
            }
            ClaimOutcome::Superseded => {
                return Ok(ObjectOutcome::Gone(format!(
                    "{id} was replaced by a newer version"
                )))
            }
            ClaimOutcome::Busy { lease_expires_ms } => {
                return Err(EtlError::Busy {
                    id,
                    lease_expires_ms,
                })
            }
        };
        let started = Instant::now();
        let run = async {
            let mut completion = self.run_claimed(&obj, &claim).await?;
            completion.duration_ms = started.elapsed().as_millis() as u64;
            self.count_once(&obj, &claim, completion).await
        };
        match self.with_heartbeat(&claim, run).await {
            Err(EtlError::Store(
                e @ (StoreError::NotFound { .. } | StoreError::Changed { .. }),
            )) => {
                self.checkpoints
                    .abandon(&claim, &[], &e.to_string(), self.clock.now_ms())
                    .await?;
                Ok(ObjectOutcome::Gone(e.to_string()))
            }
            Err(e) => {
                tracing::error!(bucket = %obj.bucket, key = %obj.key, attempt = claim.attempt, error = %e, "object failed");
                if let Err(ce) = self
                    .checkpoints
                    .fail(&claim, &e.to_string(), self.clock.now_ms())
                    .await
                {
                    tracing::error!(error = %ce, "could not record the failure");
                }
                Err(e)
            }
            ok => ok,
        }
    }

    /// Marks a processed version done, provided it is still the key's current version in the
    /// bucket; it then replaces the key's previous version (counts and outputs). A version
    /// overwritten meanwhile is recorded as superseded and its outputs removed instead.
    async fn count_once(
        &self,
        obj: &ObjectRef,
        claim: &Claim,
        completion: Completion,
    ) -> Result<ObjectOutcome, EtlError> {
        let key_id = obj.key_id();
        // Each retry means another version of the key completed meanwhile; a handful is plenty.
        for _ in 0..KEY_RETRIES {
            // Read the key's record before looking at the bucket: a newer version that completes
            // after this read moves the record and fails the conditional step below.
            let expected = self.checkpoints.current_version(&key_id).await?;
            let current = self.store.head(&obj.bucket, &obj.key).await?;
            let still_current = current.as_ref().is_some_and(|m| m.etag == obj.etag);
            if !still_current {
                let reason = format!(
                    "s3://{}/{} was overwritten or deleted while it was processed",
                    obj.bucket, obj.key
                );
                self.checkpoints
                    .abandon(claim, &completion.output_keys, &reason, self.clock.now_ms())
                    .await?;
                // The record lists the outputs; if removing them fails, the sweep finishes it.
                if let Err(e) = self
                    .clean_replaced(&claim.id, &completion.output_keys)
                    .await
                {
                    tracing::warn!(checkpoint = %claim.id, error = %e, "superseded outputs left to the sweep");
                }
                tracing::info!(bucket = %obj.bucket, key = %obj.key, "superseded before it counted");
                return Ok(ObjectOutcome::Gone(reason));
            }
            let outcome = self
                .checkpoints
                .complete(claim, &completion, expected.as_deref(), self.clock.now_ms())
                .await?;
            match outcome {
                CompleteOutcome::KeyMoved => continue,
                // A takeover finished first; our identical outputs overwrote its own.
                CompleteOutcome::Lost => return Ok(ObjectOutcome::AlreadyDone),
                CompleteOutcome::Done { replaced } => {
                    tracing::info!(
                        bucket = %obj.bucket, key = %obj.key, attempt = claim.attempt,
                        accepted = completion.accepted, rejected = completion.rejected,
                        bytes = completion.bytes, outputs = completion.output_keys.len(),
                        duration_ms = completion.duration_ms,
                        replaced = replaced.as_ref().map(|r| r.id.as_str()),
                        "object processed"
                    );
                    if let Some(old) = replaced {
                        // The totals already moved; a failure here leaves the outputs to the
                        // sweep (the record lists them), it must not fail this object.
                        if let Err(e) = self.clean_replaced(&old.id, &old.cleanup).await {
                            tracing::warn!(checkpoint = %old.id, error = %e, "replaced version's outputs left to the sweep");
                        }
                    }
                    self.compact_under_pressure(&completion.output_keys).await;
                    return Ok(ObjectOutcome::Processed(completion));
                }
            }
        }
        Err(EtlError::Internal(format!(
            "{key_id}: its current version kept changing while {} completed; retried later",
            claim.id
        )))
    }

    /// Runs `work` while renewing the claim's lease every third of it, so a live attempt keeps
    /// its claim however long the object takes and a dead one loses it within one lease.
    async fn with_heartbeat<T>(
        &self,
        claim: &Claim,
        work: impl std::future::Future<Output = Result<T, EtlError>>,
    ) -> Result<T, EtlError> {
        let period = Duration::from_millis((self.lease_ms / 3).max(100) as u64);
        let heartbeat = async {
            loop {
                tokio::time::sleep(period).await;
                match self
                    .checkpoints
                    .renew(claim, self.clock.now_ms(), self.lease_ms)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        // Taken over after renewals failed for a whole lease: the other
                        // attempt writes the same outputs; only one completion counts.
                        tracing::warn!(checkpoint = %claim.id, "claim lost to another attempt");
                        return std::future::pending().await;
                    }
                    Err(e) => {
                        tracing::warn!(checkpoint = %claim.id, error = %e, "lease renewal failed")
                    }
                }
            }
        };
        tokio::select! {
            r = work => r,
            never = heartbeat => never,
        }
    }

    /// Processes every object under `prefix` in `bucket` that has no done checkpoint: objects that
    /// were in the bucket before notifications existed, or after a forced reprocess.
    pub async fn backfill(&self, bucket: &str, prefix: &str) -> Result<WorkReport, EtlError> {
        let objects = self.store.list(bucket, prefix).await?;
        let refs = objects
            .into_iter()
            .map(|m| ObjectRef {
                bucket: bucket.to_owned(),
                key: m.key,
                etag: m.etag,
                version_id: None,
                size: Some(m.size),
            })
            .collect();
        Ok(self.handle(Work::Objects(refs)).await)
    }
}

/// How often the done step re-reads a key whose current version moved under it.
const KEY_RETRIES: usize = 8;

pub mod compaction;
pub mod metrics;
mod outputs;
pub mod process;
pub mod rejected;
mod sweep;
#[cfg(test)]
mod tests;
pub mod work;
