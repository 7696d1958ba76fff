//! ETL orchestration for one source object: claim its checkpoint (a short lease renewed by a
//! heartbeat), stream and process it, upload the outputs under names derived from the object's
//! identity, then mark it done, replacing the key's previous version. Every step is safe to
//! repeat: outputs are overwritten in place and totals move only with the done mark. A sweep
//! takes over attempts that died and finishes removing replaced versions' outputs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::checkpoint::{
    CheckpointError, CheckpointStore, Claim, ClaimOutcome, CompleteOutcome, Completion,
};
use crate::event::format_date;
use crate::layout::Layout;
use crate::parquet::{aggregate_rows_by_date, encode_aggregate_dates, ParquetError};
use crate::process::{
    maybe_decompress, process, ProcessError, ProcessOptions, ProcessReport, WindowRule,
};
use crate::source::{is_supported_key, ObjectRef};
use crate::time::now_ms;
use crate::work::Work;
use dataflow_store::{Body, ObjectStore, StoreError};

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
    Cleanup(#[from] crate::compaction::CompactionError),
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
    Compaction(#[from] crate::compaction::CompactionError),
    #[error("rollups: {0}")]
    Rollups(#[from] crate::analytics::LakeError),
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
        clean_stale_work_dirs_once(&std::env::temp_dir());
        Self {
            store,
            checkpoints,
            lake_bucket: cfg.lake.lake_bucket.clone(),
            raw_prefix: cfg.raw_prefix.clone(),
            firehose_prefix: cfg.firehose_prefix.clone(),
            layout: cfg.lake.layout.clone(),
            options: cfg.process_options(),
            window: cfg.window_rule(),
            lease_ms: cfg.lease_seconds as i64 * 1000,
            compact_at_files: cfg.compact_at_files,
            work_root: std::env::temp_dir(),
        }
    }

    pub async fn handle(&self, work: Work) -> WorkReport {
        let mut report = WorkReport::default();
        match work {
            Work::Sweep => self.sweep_into(&mut report).await,
            Work::Compact => {
                self.sweep_into(&mut report).await;
                let r = crate::compaction::compact_all(
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
                match crate::changes::prune(
                    self.store.as_ref(),
                    &self.lake_bucket,
                    &self.layout,
                    now_ms(),
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
                        let wait_ms = (until - now_ms()).max(0) + 1_000;
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
    ) -> Result<crate::rollup::RollupReport, crate::analytics::LakeError> {
        let store: Arc<dyn ObjectStore> = self.store.clone();
        crate::rollup::refresh(
            &store,
            &self.lake_bucket,
            &self.layout,
            now_ms(),
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
            match self.store.head(&obj.bucket, &obj.key).await? {
                Some(meta) => {
                    obj.etag = meta.etag;
                    obj.size = Some(meta.size);
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
            .claim(&obj, now_ms(), self.lease_ms)
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
                    .abandon(&claim, &[], &e.to_string(), now_ms())
                    .await?;
                Ok(ObjectOutcome::Gone(e.to_string()))
            }
            Err(e) => {
                tracing::error!(bucket = %obj.bucket, key = %obj.key, attempt = claim.attempt, error = %e, "object failed");
                if let Err(ce) = self
                    .checkpoints
                    .fail(&claim, &e.to_string(), now_ms())
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
                    .abandon(claim, &completion.output_keys, &reason, now_ms())
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
                .complete(claim, &completion, expected.as_deref(), now_ms())
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
                match self.checkpoints.renew(claim, now_ms(), self.lease_ms).await {
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

    /// Compacts the dates this object wrote whose partitions reached `compact_at_files`, so
    /// reads do not wait for the hourly run. The object already counted: a failure here is
    /// logged and left to that run.
    async fn compact_under_pressure(&self, outputs: &[String]) {
        let mut dates: Vec<String> = outputs
            .iter()
            .filter(|k| k.starts_with(&self.layout.partitions_prefix()))
            .filter_map(|k| self.layout.date_of_aggregate_key(k).map(str::to_owned))
            .collect();
        dates.sort();
        dates.dedup();
        match crate::compaction::compact_crowded(
            self.store.as_ref(),
            self.checkpoints.as_ref(),
            &self.lake_bucket,
            &self.layout,
            &dates,
            self.compact_at_files,
        )
        .await
        {
            Ok(done) if !done.is_empty() => {
                tracing::info!(dates = done.len(), "compacted under pressure")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "compaction under pressure left to the hourly run")
            }
        }
    }

    /// Removes a replaced version's outputs from the lake, then clears its cleanup mark.
    async fn clean_replaced(&self, id: &str, outputs: &[String]) -> Result<(), EtlError> {
        if outputs.is_empty() {
            return Ok(());
        }
        crate::compaction::remove_outputs(
            self.store.as_ref(),
            self.checkpoints.as_ref(),
            &self.lake_bucket,
            &self.layout,
            outputs,
        )
        .await?;
        self.checkpoints.cleaned(id).await?;
        Ok(())
    }

    /// Takes over attempts whose lease expired (the process died: a kill, an out-of-memory, a
    /// timeout) and finishes removing replaced versions' outputs. Runs on the schedule, so a
    /// crash heals without an operator and without waiting for the queue to redeliver.
    pub async fn sweep(&self) -> WorkReport {
        let mut report = WorkReport::default();
        self.sweep_into(&mut report).await;
        report
    }

    async fn sweep_into(&self, report: &mut WorkReport) {
        let records = match self.checkpoints.attention().await {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(e.into());
                return;
            }
        };
        let now = now_ms();
        for rec in records {
            if !rec.cleanup.is_empty() {
                match self.clean_replaced(&rec.id, &rec.cleanup).await {
                    Ok(()) => report.swept += 1,
                    Err(e) => report.errors.push(e.into()),
                }
            } else if rec.is_stuck(now) {
                let Some(source) = rec.source else { continue };
                if rec.attempts >= MAX_ATTEMPTS {
                    // Every attempt died (an object too big for the function's memory or time
                    // would otherwise be retried by every sweep, forever): record a failure that
                    // doctor shows, and let the queue's receive limit dead-letter its message.
                    let reason = format!(
                        "gave up after {} attempts that never finished (killed, out of memory or timed out)",
                        rec.attempts
                    );
                    if let Ok(ClaimOutcome::Acquired(c)) =
                        self.checkpoints.claim(&source, now, self.lease_ms).await
                    {
                        match self.checkpoints.fail(&c, &reason, now).await {
                            Ok(()) => report.errors.push(WorkError::GaveUp {
                                id: rec.id.clone(),
                                reason: reason.clone(),
                            }),
                            Err(e) => report.errors.push(e.into()),
                        }
                    }
                    continue;
                }
                tracing::warn!(checkpoint = %rec.id, attempts = rec.attempts, "taking over a dead attempt");
                match self.process_object(source).await {
                    Ok(o) => {
                        report.swept += 1;
                        report.outcomes.push(o);
                    }
                    // Someone else took it over first.
                    Err(EtlError::Busy { .. }) => {}
                    Err(e) => report.errors.push(e.into()),
                }
            }
        }
    }

    async fn run_claimed(&self, obj: &ObjectRef, claim: &Claim) -> Result<Completion, EtlError> {
        let reader = self
            .store
            .open(&obj.bucket, &obj.key, obj.etag.as_deref())
            .await?;
        let work = tempfile::Builder::new()
            .prefix(&format!("{WORK_PREFIX}{}-", std::process::id()))
            .tempdir_in(&self.work_root)?;
        let dir = work.path().to_owned();
        let mut opts = self.options.clone();
        opts.window = self.window.at(now_ms());
        let mut report: ProcessReport =
            tokio::task::spawn_blocking(move || -> Result<ProcessReport, ProcessError> {
                let input = maybe_decompress(reader)
                    .map_err(|source| ProcessError::Read { bytes: 0, source })?;
                process(input, &opts, &dir)
            })
            .await
            .map_err(|e| EtlError::Internal(format!("processing task: {e}")))??;
        tracing::debug!(checkpoint = %claim.id, lines = report.lines, "parsed");

        let sid = obj.source_id();
        let mut uploads: Vec<(String, Body, &'static str)> = Vec::new();
        let max_event_time_us = report.aggregates.max_time_us();
        let dates = aggregate_rows_by_date(std::mem::take(&mut report.aggregates));
        let encoded = tokio::task::spawn_blocking(move || encode_aggregate_dates(&dates))
            .await
            .map_err(|e| EtlError::Internal(format!("encoding task: {e}")))??;
        let changed_dates: Vec<String> = encoded.iter().map(|(d, _)| format_date(*d)).collect();
        for (date, bytes) in encoded {
            uploads.push((
                self.layout.aggregate_key(&format_date(date), &sid),
                Body::Bytes(bytes),
                PARQUET,
            ));
        }
        for (date, path, _) in &report.curated_files {
            uploads.push((
                self.layout.events_key(&format_date(*date), &sid),
                Body::File(path.clone()),
                PARQUET,
            ));
        }
        if let Some(path) = &report.rejected_file {
            uploads.push((
                self.layout.rejected_key(&sid),
                Body::File(path.clone()),
                "application/x-ndjson",
            ));
        }
        let output_keys: Vec<String> = uploads.iter().map(|(k, _, _)| k.clone()).collect();
        self.upload_all(uploads).await?;
        // After the data, before the checkpoint completes: a crash in between re-runs the object
        // and records the change again (readers learn what changed from this log, crate::changes).
        crate::changes::record(
            self.store.as_ref(),
            &self.lake_bucket,
            &self.layout,
            changed_dates.iter().map(String::as_str),
            now_ms(),
        )
        .await?;
        drop(work);
        Ok(Completion {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            accepted: report.accepted,
            rejected: report.rejected,
            bytes: report.bytes,
            output_keys,
            max_event_time_us,
            duration_ms: 0,
            rejected_by_reason: report
                .rejected_by_reason
                .iter()
                .map(|(r, n)| (r.code().to_owned(), *n))
                .collect(),
        })
    }

    async fn upload_all(&self, uploads: Vec<(String, Body, &'static str)>) -> Result<(), EtlError> {
        const PARALLEL: usize = 16;
        let mut set = JoinSet::new();
        for (key, body, ct) in uploads {
            if set.len() >= PARALLEL {
                if let Some(r) = set.join_next().await {
                    r.map_err(|e| EtlError::Internal(e.to_string()))??;
                }
            }
            let store = self.store.clone();
            let bucket = self.lake_bucket.clone();
            set.spawn(async move { store.put(&bucket, &key, body, ct).await });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| EtlError::Internal(e.to_string()))??;
        }
        Ok(())
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

const PARQUET: &str = "application/vnd.apache.parquet";

/// Attempts (claims) of one object version after which the sweep stops taking it over: the
/// queue's receive limit in the template.
const MAX_ATTEMPTS: u32 = 5;

/// How often the done step re-reads a key whose current version moved under it.
const KEY_RETRIES: usize = 8;

/// Scratch folders are `dataflow-etl-<pid>-<random>`: the pid tells whether the process that
/// made one is gone (killed mid-object, or a Lambda sandbox restarted after a timeout).
const WORK_PREFIX: &str = "dataflow-etl-";

/// Removes scratch folders left by dead processes, once per process (when its first ETL is
/// built): a folder whose pid no longer runs, or (where liveness cannot be told) one untouched
/// for a day.
fn clean_stale_work_dirs_once(root: &std::path::Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let removed = clean_stale_work_dirs(root);
        if removed > 0 {
            tracing::info!(removed, root = %root.display(), "removed stale scratch folders");
        }
    });
}

fn clean_stale_work_dirs(root: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let own = std::process::id();
    let proc_fs = std::path::Path::new("/proc/self").exists();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(WORK_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stale = if proc_fs {
            pid != own && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 86_400)
        };
        if stale && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    /// The lake's data keys: everything but the change log.
    fn lake_data(store: &dataflow_store::MemoryStore) -> Vec<String> {
        let mut keys = store.keys("dataflow-lake");
        keys.retain(|k| !k.contains("/_changes/"));
        keys
    }

    use super::*;
    use crate::checkpoint::{MemoryCheckpoints, State};
    use crate::config::EtlConfig;
    use dataflow_config::{Env, FromEnv};
    use dataflow_store::MemoryStore;

    fn etl() -> Etl<MemoryStore, MemoryCheckpoints> {
        let cfg = EtlConfig::from_env_vars(&Env::from_pairs(&[])).unwrap();
        Etl::new(
            Arc::new(MemoryStore::default()),
            Arc::new(MemoryCheckpoints::default()),
            &cfg,
        )
    }

    const FILE: &str = concat!(
        r#"{"user_id":"a","event_type":"click","timestamp":"2024-01-01T10:00:00Z"}"#,
        "\n",
        r#"{"user_id":"b","event_type":"view","timestamp":"2024-01-02T10:00:00Z"}"#,
        "\n",
        "bad\n"
    );

    /// What the delivery stream behind POST /events writes: gzip JSON Lines under `firehose/`
    /// with no extension (the emulators) or `.jsonl.gz` (AWS). Both are input; a redelivered
    /// notification counts nothing twice; other extension-less keys stay skipped.
    #[tokio::test]
    async fn delivery_stream_objects_are_input_whatever_their_names() {
        use std::io::Write;
        let e = etl();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(FILE.as_bytes()).unwrap();
        let body = gz.finish().unwrap();
        let key = "firehose/2026/11/26/19/dataflow-events-1-2026-11-26-19-00-00-abc";
        e.store.insert("dataflow-raw", key, body.clone());
        e.store.insert("dataflow-raw", "firehose/x.jsonl.gz", body);
        e.store.insert(
            "dataflow-raw",
            "elsewhere/no-extension",
            FILE.as_bytes().to_vec(),
        );
        for k in [key, "firehose/x.jsonl.gz", key] {
            let out = e
                .process_object(ObjectRef::new("dataflow-raw", k))
                .await
                .unwrap();
            assert!(
                matches!(
                    out,
                    ObjectOutcome::Processed(_) | ObjectOutcome::AlreadyDone
                ),
                "{k}: {out:?}"
            );
        }
        let skipped = e
            .process_object(ObjectRef::new("dataflow-raw", "elsewhere/no-extension"))
            .await
            .unwrap();
        assert!(matches!(skipped, ObjectOutcome::Skipped(_)), "{skipped:?}");
        let p = e.checkpoints.pipeline().await.unwrap();
        assert_eq!(
            (p.files_processed, p.events_accepted, p.events_rejected),
            (2, 4, 2)
        );
    }

    #[tokio::test]
    async fn processes_once_and_skips_duplicates() {
        let e = etl();
        e.store
            .insert("dataflow-raw", "in/a.jsonl", FILE.as_bytes().to_vec());
        let obj = ObjectRef::new("dataflow-raw", "in/a.jsonl");
        let ObjectOutcome::Processed(c) = e.process_object(obj.clone()).await.unwrap() else {
            panic!()
        };
        assert_eq!((c.accepted, c.rejected), (2, 1));
        assert_eq!(
            c.output_keys.len(),
            5,
            "2 aggregates, 2 event files, 1 report: {:?}",
            c.output_keys
        );
        assert_eq!(
            e.process_object(obj).await.unwrap(),
            ObjectOutcome::AlreadyDone
        );
        let p = e.checkpoints.pipeline().await.unwrap();
        assert_eq!(
            (p.files_processed, p.events_accepted, p.events_rejected),
            (1, 2, 1)
        );
        let lake = e.store.keys("dataflow-lake");
        let sid = ObjectRef {
            etag: e
                .store
                .head("dataflow-raw", "in/a.jsonl")
                .await
                .unwrap()
                .unwrap()
                .etag,
            ..ObjectRef::new("dataflow-raw", "in/a.jsonl")
        }
        .source_id();
        assert!(
            lake.contains(&format!(
                "aggregates/daily/event_date=2024-01-01/part-{sid}.parquet"
            )),
            "{lake:?}"
        );
        assert!(lake.contains(&format!("rejected/{sid}.jsonl")), "{lake:?}");
    }

    #[test]
    fn scratch_folders_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join(format!("{WORK_PREFIX}4294967295-abc"));
        let live = root
            .path()
            .join(format!("{WORK_PREFIX}{}-def", std::process::id()));
        let other = root.path().join("unrelated-folder");
        for d in [&dead, &live, &other] {
            std::fs::create_dir_all(d.join("inner")).unwrap();
        }
        assert_eq!(clean_stale_work_dirs(root.path()), 1);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }

    #[tokio::test]
    async fn skips_other_keys_and_missing_objects() {
        let e = etl();
        assert!(matches!(
            e.process_object(ObjectRef::new("dataflow-raw", "a.csv"))
                .await
                .unwrap(),
            ObjectOutcome::Skipped(_)
        ));
        assert!(matches!(
            e.process_object(ObjectRef::new("dataflow-raw", "gone.jsonl"))
                .await
                .unwrap(),
            ObjectOutcome::Gone(_)
        ));
    }

    #[tokio::test]
    async fn forget_allows_reprocessing_without_double_counting() {
        let e = etl();
        e.store
            .insert("dataflow-raw", "a.jsonl", FILE.as_bytes().to_vec());
        let obj = ObjectRef::new("dataflow-raw", "a.jsonl");
        e.process_object(obj.clone()).await.unwrap();
        let mut with_etag = obj.clone();
        with_etag.etag = e
            .store
            .head("dataflow-raw", "a.jsonl")
            .await
            .unwrap()
            .unwrap()
            .etag;
        assert!(e
            .checkpoints
            .forget(&with_etag.checkpoint_id())
            .await
            .unwrap());
        assert!(matches!(
            e.process_object(obj).await.unwrap(),
            ObjectOutcome::Processed(_)
        ));
        let p = e.checkpoints.pipeline().await.unwrap();
        assert_eq!((p.files_processed, p.events_accepted), (1, 2));
    }

    fn lines(rows: &[(&str, &str, &str)]) -> Vec<u8> {
        rows.iter()
            .map(|(u, t, day)| {
                format!("{{\"user_id\":\"{u}\",\"event_type\":\"{t}\",\"timestamp\":\"{day}T10:00:00Z\"}}\n")
            })
            .collect::<String>()
            .into_bytes()
    }

    async fn summary(e: &Etl<MemoryStore, MemoryCheckpoints>) -> crate::analytics::Summary {
        crate::analytics::LakeReader::new(
            e.store.clone(),
            e.lake_bucket.clone(),
            e.layout.clone(),
            Duration::ZERO,
        )
        .snapshot()
        .await
        .unwrap()
        .0
        .summary(&crate::analytics::Filter::default())
        .await
        .unwrap()
    }

    async fn compact(
        e: &Etl<MemoryStore, MemoryCheckpoints>,
    ) -> Vec<(String, crate::compaction::CompactionOutcome)> {
        crate::compaction::compact_all(
            e.store.as_ref(),
            e.checkpoints.as_ref(),
            "dataflow-lake",
            &e.layout,
        )
        .await
        .unwrap()
    }

    async fn put_and_process(e: &Etl<MemoryStore, MemoryCheckpoints>, key: &str, body: Vec<u8>) {
        e.store.insert("dataflow-raw", key, body);
        let out = e
            .process_object(ObjectRef::new("dataflow-raw", key))
            .await
            .unwrap();
        assert!(matches!(out, ObjectOutcome::Processed(_)), "{out:?}");
    }

    /// The lake and the totals after `steps`, against a fresh pipeline given only `alone`.
    async fn assert_same_as_alone(
        e: &Etl<MemoryStore, MemoryCheckpoints>,
        alone: &[(&str, Vec<u8>)],
    ) {
        let fresh = etl();
        for (k, body) in alone {
            put_and_process(&fresh, k, body.clone()).await;
        }
        let (p, q) = (
            e.checkpoints.pipeline().await.unwrap(),
            fresh.checkpoints.pipeline().await.unwrap(),
        );
        assert_eq!(p.counts(), q.counts());
        assert_eq!(summary(e).await, summary(&fresh).await);
        // Each source's outputs, wherever compaction keeps them (partition or archive).
        let outputs = |x: &Etl<MemoryStore, MemoryCheckpoints>| -> Vec<String> {
            let mut keys: Vec<String> = x
                .store
                .keys("dataflow-lake")
                .into_iter()
                .filter(|k| !k.contains("/compacted-") && !k.contains("/_changes/"))
                .map(|k| k.replace("/_sources/", "/"))
                .collect();
            keys.sort();
            keys
        };
        assert_eq!(outputs(e), outputs(&fresh));
    }

    #[tokio::test]
    async fn an_overwrite_replaces_the_previous_version() {
        let e = etl();
        let v1 = lines(&[
            ("a", "click", "2024-01-01"),
            ("b", "click", "2024-01-02"),
            ("c", "view", "2024-01-03"),
        ]);
        let v2 = lines(&[("z", "buy", "2024-02-01")]);
        let other = lines(&[("a", "click", "2024-01-01")]);
        put_and_process(&e, "other.jsonl", other.clone()).await;
        put_and_process(&e, "k.jsonl", v1).await;
        put_and_process(&e, "k.jsonl", v2.clone()).await;
        assert_same_as_alone(&e, &[("other.jsonl", other), ("k.jsonl", v2)]).await;
        let states: Vec<State> = e
            .checkpoints
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.state)
            .collect();
        assert_eq!(
            states.iter().filter(|s| **s == State::Superseded).count(),
            1
        );
        assert!(e.checkpoints.attention().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_truncated_upload_then_the_full_one_counts_once_even_after_compaction() {
        let e = etl();
        let rows: Vec<(String, &str, &str)> = (0..40)
            .map(|i| {
                (
                    format!("u{i}"),
                    "click",
                    if i % 2 == 0 {
                        "2024-01-01"
                    } else {
                        "2024-01-02"
                    },
                )
            })
            .collect();
        let refs: Vec<(&str, &str, &str)> =
            rows.iter().map(|(u, t, d)| (u.as_str(), *t, *d)).collect();
        let full = lines(&refs);
        let mut cut = full[..full.len() / 2].to_vec();
        cut.extend_from_slice(b"{\"user_id\":\"half"); // cut mid-line
        put_and_process(&e, "day.jsonl", cut).await;
        put_and_process(
            &e,
            "neighbour.jsonl",
            lines(&[("n", "click", "2024-01-01")]),
        )
        .await;
        // The truncated version's partials are folded into compacted files first.
        let out = compact(&e).await;
        assert_eq!(out.len(), 1);
        put_and_process(&e, "day.jsonl", full.clone()).await;
        let s = summary(&e).await;
        assert_eq!((s.total_events, s.unique_users), (41, 41));
        assert_eq!(e.checkpoints.pipeline().await.unwrap().events_rejected, 0);
        compact(&e).await;
        assert_same_as_alone(
            &e,
            &[
                ("day.jsonl", full),
                ("neighbour.jsonl", lines(&[("n", "click", "2024-01-01")])),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn a_version_overwritten_while_processed_never_counts() {
        let e = etl();
        e.store.insert(
            "dataflow-raw",
            "k.jsonl",
            lines(&[("a", "x", "2024-01-01")]),
        );
        let mut obj = ObjectRef::new("dataflow-raw", "k.jsonl");
        obj.etag = e
            .store
            .head("dataflow-raw", "k.jsonl")
            .await
            .unwrap()
            .unwrap()
            .etag;
        let ClaimOutcome::Acquired(claim) =
            e.checkpoints.claim(&obj, now_ms(), 60_000).await.unwrap()
        else {
            panic!()
        };
        let completion = e.run_claimed(&obj, &claim).await.unwrap();
        assert!(!e.store.keys("dataflow-lake").is_empty());
        // The producer uploads a new version before this attempt marks its own done.
        e.store.insert(
            "dataflow-raw",
            "k.jsonl",
            lines(&[("b", "y", "2024-01-05")]),
        );
        let out = e.count_once(&obj, &claim, completion).await.unwrap();
        assert!(matches!(out, ObjectOutcome::Gone(_)), "{out:?}");
        assert!(lake_data(&e.store).is_empty());
        assert_eq!(e.checkpoints.pipeline().await.unwrap().files_processed, 0);
        let rec = e.checkpoints.get(&claim.id).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.cleanup.len()), (State::Superseded, 0));
        // Its late notification changes nothing; the new version's counts.
        assert!(matches!(
            e.process_object(obj).await.unwrap(),
            ObjectOutcome::Gone(_)
        ));
        put_and_process(&e, "k.jsonl", lines(&[("b", "y", "2024-01-05")])).await;
        assert_same_as_alone(&e, &[("k.jsonl", lines(&[("b", "y", "2024-01-05")]))]).await;
    }

    #[tokio::test]
    async fn the_sweep_takes_over_an_expired_claim_and_a_live_one_defers_its_message() {
        let mut e = etl();
        e.lease_ms = 300;
        e.store
            .insert("dataflow-raw", "k.jsonl", FILE.as_bytes().to_vec());
        let obj = ObjectRef {
            etag: e
                .store
                .head("dataflow-raw", "k.jsonl")
                .await
                .unwrap()
                .unwrap()
                .etag,
            ..ObjectRef::new("dataflow-raw", "k.jsonl")
        };
        // An attempt claims the object and never comes back.
        assert!(matches!(
            e.checkpoints
                .claim(&obj, now_ms(), e.lease_ms)
                .await
                .unwrap(),
            ClaimOutcome::Acquired(_)
        ));
        // While its lease lives, a delivery is deferred (sent again later), not failed.
        let body = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "dataflow-raw"}, "object": {"key": "k.jsonl"}}}]})
        .to_string();
        let report = e
            .handle(Work::Messages(vec![crate::work::QueuedMessage {
                message_id: "m1".into(),
                body: body.clone(),
                queue_arn: "arn:aws:sqs:us-east-1:000000000000:q".into(),
                objects: Ok(vec![obj.clone()]),
            }]))
            .await;
        assert!(report.failed_message_ids.is_empty());
        assert_eq!(report.deferred.len(), 1);
        assert_eq!(
            (
                report.deferred[0].body.as_str(),
                report.deferred[0].delay_seconds
            ),
            (body.as_str(), 1)
        );
        assert!(
            e.sweep().await.outcomes.is_empty(),
            "the lease is still live"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let report = e.sweep().await;
        assert_eq!(report.swept, 1);
        assert!(matches!(report.outcomes[0], ObjectOutcome::Processed(_)));
        let p = e.checkpoints.pipeline().await.unwrap();
        assert_eq!(
            (p.files_processed, p.events_accepted, p.events_rejected),
            (1, 2, 1)
        );
        assert_eq!(
            e.process_object(obj).await.unwrap(),
            ObjectOutcome::AlreadyDone
        );
    }

    #[tokio::test]
    async fn the_heartbeat_keeps_a_slow_attempt_s_claim() {
        let mut e = etl();
        e.lease_ms = 300;
        let obj = ObjectRef::new("dataflow-raw", "slow.jsonl");
        let ClaimOutcome::Acquired(claim) = e
            .checkpoints
            .claim(&obj, now_ms(), e.lease_ms)
            .await
            .unwrap()
        else {
            panic!()
        };
        let slow = async {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            Ok::<_, EtlError>(())
        };
        e.with_heartbeat(&claim, slow).await.unwrap();
        let rec = e.checkpoints.get(&claim.id).await.unwrap().unwrap();
        assert!(!rec.is_stuck(now_ms()), "renewed past the original lease");
        assert!(matches!(
            e.checkpoints
                .claim(&obj, now_ms(), e.lease_ms)
                .await
                .unwrap(),
            ClaimOutcome::Busy { .. }
        ));
    }

    #[tokio::test]
    async fn the_sweep_gives_up_on_an_object_every_attempt_dies_on() {
        let e = etl();
        e.store
            .insert("dataflow-raw", "huge.jsonl", FILE.as_bytes().to_vec());
        let obj = ObjectRef {
            etag: e
                .store
                .head("dataflow-raw", "huge.jsonl")
                .await
                .unwrap()
                .unwrap()
                .etag,
            ..ObjectRef::new("dataflow-raw", "huge.jsonl")
        };
        // Five attempts, each killed before it finished (leases that lapsed long ago).
        let base = now_ms() - 10_000;
        for i in 0..MAX_ATTEMPTS as i64 {
            assert!(matches!(
                e.checkpoints.claim(&obj, base + i * 100, 1).await.unwrap(),
                ClaimOutcome::Acquired(_)
            ));
        }
        let report = e.sweep().await;
        assert_eq!((report.swept, report.outcomes.len()), (0, 0));
        assert!(
            matches!(&report.errors[0], WorkError::GaveUp { reason, .. } if reason.contains("gave up after 5 attempts")),
            "{:?}",
            report.errors
        );
        let rec = e
            .checkpoints
            .get(&obj.checkpoint_id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.state, State::Failed);
        assert_eq!(e.checkpoints.pipeline().await.unwrap().files_processed, 0);
        // Not swept again; a delivery (or `reprocess --key`) still retries it.
        assert!(e.sweep().await.errors.is_empty());
        assert!(matches!(
            e.process_object(obj).await.unwrap(),
            ObjectOutcome::Processed(_)
        ));
    }
}
