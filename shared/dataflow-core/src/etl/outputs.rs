//! What one claimed object produces: its outputs in the lake (processed in a scratch folder,
//! uploaded under names derived from its identity, recorded in the change log), the removal of a
//! replaced version's outputs, compaction of the dates it crowded, and the scratch folders dead
//! processes left.

use tokio::task::JoinSet;

use super::{Etl, EtlError};
use crate::checkpoint::{CheckpointStore, Claim, Completion};
use crate::etl::process::{maybe_decompress, process, ProcessError, ProcessReport};
use crate::event::format_date;
use crate::lake::parquet::{aggregate_rows_by_date, encode_aggregate_dates};
use crate::lake::source::ObjectRef;
use dataflow_store::{Body, ObjectStore};

impl<S: ObjectStore, C: CheckpointStore> Etl<S, C> {
    pub(super) async fn run_claimed(
        &self,
        obj: &ObjectRef,
        claim: &Claim,
    ) -> Result<Completion, EtlError> {
        let reader = self
            .store
            .open(&obj.bucket, &obj.key, obj.etag.as_deref())
            .await?;
        let work = tempfile::Builder::new()
            .prefix(&format!("{WORK_PREFIX}{}-", std::process::id()))
            .tempdir_in(&self.work_root)?;
        let dir = work.path().to_owned();
        let mut opts = self.options.clone();
        opts.window = self.window.at(self.clock.now_ms());
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
        // and records the change again (readers learn what changed from this log, crate::lake::changes).
        crate::lake::changes::record(
            self.store.as_ref(),
            &self.lake_bucket,
            &self.layout,
            changed_dates.iter().map(String::as_str),
            self.clock.now_ms(),
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

    /// Compacts the dates this object wrote whose partitions reached `compact_at_files`, so
    /// reads do not wait for the hourly run. The object already counted: a failure here is
    /// logged and left to that run.
    pub(super) async fn compact_under_pressure(&self, outputs: &[String]) {
        let mut dates: Vec<String> = outputs
            .iter()
            .filter(|k| k.starts_with(&self.layout.partitions_prefix()))
            .filter_map(|k| self.layout.date_of_aggregate_key(k).map(str::to_owned))
            .collect();
        dates.sort();
        dates.dedup();
        match crate::etl::compaction::compact_crowded(
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
    pub(super) async fn clean_replaced(
        &self,
        id: &str,
        outputs: &[String],
    ) -> Result<(), EtlError> {
        if outputs.is_empty() {
            return Ok(());
        }
        crate::etl::compaction::remove_outputs(
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
}

const PARQUET: &str = "application/vnd.apache.parquet";

/// Scratch folders are `dataflow-etl-<pid>-<random>`: the pid tells whether the process that
/// made one is gone (killed mid-object, or a Lambda sandbox restarted after a timeout).
pub(super) const WORK_PREFIX: &str = "dataflow-etl-";

/// Removes scratch folders left by dead processes, once per process (when its first ETL is
/// built): a folder whose pid no longer runs, or (where liveness cannot be told) one untouched
/// for a day.
pub(super) fn clean_stale_work_dirs_once(root: &std::path::Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let removed = clean_stale_work_dirs(root);
        if removed > 0 {
            tracing::info!(removed, root = %root.display(), "removed stale scratch folders");
        }
    });
}

pub(super) fn clean_stale_work_dirs(root: &std::path::Path) -> usize {
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
