//! ETL orchestration for one source object: claim its checkpoint, stream and process it, upload
//! the outputs under names derived from the object's identity, then mark it done. Every step is
//! safe to repeat: outputs are overwritten in place and totals move only with the done mark.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::checkpoint::{CheckpointError, CheckpointStore, Claim, ClaimOutcome, Completion};
use crate::event::format_date;
use crate::parquet::{aggregate_rows_by_date, encode_aggregate_rows, ParquetError};
use crate::process::{maybe_decompress, process, ProcessError, ProcessOptions, ProcessReport};
use crate::source::{is_supported_key, Layout, ObjectRef};
use crate::storage::{Body, ObjectStore, StoreError};
use crate::trigger::Trigger;

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
    /// Deleted or overwritten before it was read; its newer version has its own notification.
    Gone(String),
}

#[derive(Clone)]
pub struct Etl<S, C> {
    pub store: Arc<S>,
    pub checkpoints: Arc<C>,
    pub lake_bucket: String,
    pub raw_prefix: String,
    pub layout: Layout,
    pub options: ProcessOptions,
    pub lease_ms: i64,
    pub work_root: PathBuf,
}

/// Outcome of one invocation.
#[derive(Debug, Default)]
pub struct TriggerReport {
    pub outcomes: Vec<ObjectOutcome>,
    /// SQS message ids to report as `batchItemFailures`.
    pub failed_message_ids: Vec<String>,
    pub errors: Vec<String>,
    /// Dates compacted by a scheduled run.
    pub compacted: usize,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl<S: ObjectStore, C: CheckpointStore> Etl<S, C> {
    pub fn new(store: Arc<S>, checkpoints: Arc<C>, cfg: &crate::config::Config) -> Self {
        Self {
            store,
            checkpoints,
            lake_bucket: cfg.lake_bucket.clone(),
            raw_prefix: cfg.raw_prefix.clone(),
            layout: cfg.layout.clone(),
            options: cfg.process_options(),
            lease_ms: cfg.lease_seconds as i64 * 1000,
            work_root: std::env::temp_dir(),
        }
    }

    pub async fn handle(&self, trigger: Trigger) -> TriggerReport {
        let mut report = TriggerReport::default();
        match trigger {
            Trigger::Compact => {
                let r = crate::compaction::compact_all(
                    self.store.as_ref(),
                    self.checkpoints.as_ref(),
                    &self.lake_bucket,
                    &self.layout,
                )
                .await;
                match r {
                    Ok(done) => report.compacted = done.len(),
                    Err(e) => report.errors.push(e.to_string()),
                }
            }
            Trigger::S3(objects) => {
                for obj in objects {
                    match self.process_object(obj).await {
                        Ok(o) => report.outcomes.push(o),
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Trigger::Sqs(messages) => {
                for msg in messages {
                    let objects = match msg.objects {
                        Ok(o) => o,
                        Err(e) => {
                            tracing::error!(message_id = %msg.message_id, error = %e, "unreadable SQS message");
                            report.errors.push(e);
                            report.failed_message_ids.push(msg.message_id);
                            continue;
                        }
                    };
                    let mut failed = false;
                    for obj in objects {
                        match self.process_object(obj).await {
                            Ok(o) => report.outcomes.push(o),
                            Err(e) => {
                                report.errors.push(e.to_string());
                                failed = true;
                            }
                        }
                    }
                    if failed {
                        report.failed_message_ids.push(msg.message_id);
                    }
                }
            }
        }
        report
    }

    pub async fn process_object(&self, mut obj: ObjectRef) -> Result<ObjectOutcome, EtlError> {
        if !obj.key.starts_with(&self.raw_prefix) {
            return Ok(ObjectOutcome::Skipped(format!(
                "{} is outside RAW_PREFIX",
                obj.key
            )));
        }
        if !is_supported_key(&obj.key) {
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
        let claim = match self.checkpoints.claim(&id, now_ms(), self.lease_ms).await? {
            ClaimOutcome::Acquired(c) => c,
            ClaimOutcome::AlreadyDone => {
                tracing::info!(checkpoint = %id, "skipped: already done");
                return Ok(ObjectOutcome::AlreadyDone);
            }
            ClaimOutcome::Busy { lease_expires_ms } => {
                return Err(EtlError::Busy {
                    id,
                    lease_expires_ms,
                })
            }
        };
        let started = Instant::now();
        match self.run_claimed(&obj, &claim).await {
            Ok(mut completion) => {
                completion.duration_ms = started.elapsed().as_millis() as u64;
                if self
                    .checkpoints
                    .complete(&claim, &completion, now_ms())
                    .await?
                {
                    tracing::info!(
                        bucket = %obj.bucket, key = %obj.key, attempt = claim.attempt,
                        accepted = completion.accepted, rejected = completion.rejected,
                        bytes = completion.bytes, outputs = completion.output_keys.len(),
                        duration_ms = completion.duration_ms, "object processed"
                    );
                    Ok(ObjectOutcome::Processed(completion))
                } else {
                    // A takeover finished first; our identical outputs overwrote its own.
                    Ok(ObjectOutcome::AlreadyDone)
                }
            }
            Err(EtlError::Store(
                e @ (StoreError::NotFound { .. } | StoreError::Changed { .. }),
            )) => {
                self.checkpoints
                    .fail(&claim, &e.to_string(), now_ms())
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
        }
    }

    async fn run_claimed(&self, obj: &ObjectRef, claim: &Claim) -> Result<Completion, EtlError> {
        let reader = self
            .store
            .open(&obj.bucket, &obj.key, obj.etag.as_deref())
            .await?;
        let work = tempfile::Builder::new()
            .prefix("dataflow-etl-")
            .tempdir_in(&self.work_root)?;
        let dir = work.path().to_owned();
        let opts = self.options.clone();
        let report: ProcessReport =
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
        for (date, rows) in aggregate_rows_by_date(&report.aggregates) {
            let bytes = encode_aggregate_rows(&rows)?;
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
        drop(work);
        Ok(Completion {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            accepted: report.accepted,
            rejected: report.rejected,
            bytes: report.bytes,
            output_keys,
            max_event_time_us: report.aggregates.max_time_us(),
            duration_ms: 0,
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
    pub async fn backfill(&self, bucket: &str, prefix: &str) -> Result<TriggerReport, EtlError> {
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
        Ok(self.handle(Trigger::S3(refs)).await)
    }
}

const PARQUET: &str = "application/vnd.apache.parquet";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryCheckpoints;
    use crate::config::Config;
    use crate::storage::MemoryStore;

    fn etl() -> Etl<MemoryStore, MemoryCheckpoints> {
        let cfg = Config::from_lookup(|_| None).unwrap();
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
}
