//! ETL commands: the core on local files, backfills, reprocessing, checkpoints, compaction and
//! the sweep.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dataflow_aws::{DynamoCheckpoints, S3Store};
use dataflow_core::checkpoint::{CheckpointReads, MemoryCheckpoints, ObjectClaims, State};
use dataflow_core::etl::work::Work;
use dataflow_core::etl::{Etl, ObjectOutcome, WorkReport};
use dataflow_core::lake::source::ObjectRef;
use dataflow_dev::Clients;
use dataflow_dev::StackConfig as Config;
use dataflow_store::FsStore;
use serde_json::json;

pub async fn aws_etl() -> Result<(Config, Etl<S3Store, DynamoCheckpoints>)> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    Ok((cfg, etl))
}

pub fn print_report(report: &WorkReport) -> Result<()> {
    let processed = report
        .outcomes
        .iter()
        .filter(|o| matches!(o, ObjectOutcome::Processed(_)))
        .count();
    let skipped = report.outcomes.len() - processed;
    out!(
        "{}",
        json!({"processed": processed, "skipped_or_done": skipped, "swept": report.swept, "errors": report.errors.iter().map(ToString::to_string).collect::<Vec<_>>()})
    );
    if !report.errors.is_empty() {
        bail!("{} object(s) failed", report.errors.len());
    }
    Ok(())
}

pub async fn backfill(prefix: &str) -> Result<()> {
    let (cfg, etl) = aws_etl().await?;
    let prefix = format!("{}{prefix}", cfg.etl.raw_prefix);
    let report = etl.backfill(&cfg.etl.lake.raw_bucket, &prefix).await?;
    print_report(&report)
}

/// Forgets the checkpoints of one key (or of everything) and processes again: with `--key`, that
/// key alone, so unrelated objects are neither touched nor able to fail the command.
pub async fn reprocess(key: Option<String>, all: bool, no_run: bool) -> Result<()> {
    let (cfg, etl) = aws_etl().await?;
    let records = etl.checkpoints.list().await?;
    let ids: Vec<String> = match (&key, all) {
        (Some(k), _) => records
            .into_iter()
            .filter(|c| match &c.source {
                Some(s) => s.bucket == cfg.etl.lake.raw_bucket && s.key == *k,
                None => {
                    c.id.starts_with(&format!("object#{}/{k}#", cfg.etl.lake.raw_bucket))
                }
            })
            // A replaced version stays replaced; its record also lists outputs still to remove.
            .filter(|c| c.state != State::Superseded)
            .map(|c| c.id)
            .collect(),
        (None, true) => records
            .into_iter()
            .filter(|c| c.state != State::Superseded)
            .map(|c| c.id)
            .collect(),
        (None, false) => bail!("say which: --key KEY or --all"),
    };
    for id in &ids {
        etl.checkpoints.forget(id).await?;
    }
    eprintln!("forgot {} checkpoint(s)", ids.len());
    if no_run {
        return Ok(());
    }
    let report = match key {
        Some(k) => {
            etl.handle(Work::Objects(vec![ObjectRef::new(
                cfg.etl.lake.raw_bucket.clone(),
                k,
            )]))
            .await
        }
        None => {
            etl.backfill(&cfg.etl.lake.raw_bucket, &cfg.etl.raw_prefix)
                .await?
        }
    };
    print_report(&report)
}

pub async fn checkpoints() -> Result<()> {
    let (_, etl) = aws_etl().await?;
    let pipeline = etl.checkpoints.pipeline().await?;
    let objects: Vec<_> = etl
        .checkpoints
        .list()
        .await?
        .into_iter()
        .map(|c| {
            json!({"id": c.id, "state": c.state.as_str(), "attempts": c.attempts,
                "key": c.source.as_ref().map(|s| s.key.clone()),
                "lease_expires_ms": c.lease_expires_ms,
                "accepted": c.completion.as_ref().map(|x| x.accepted),
                "rejected": c.completion.as_ref().map(|x| x.rejected), "error": c.error,
                "outputs_to_remove": c.cleanup.len()})
        })
        .collect();
    out!(
        "{}",
        serde_json::to_string_pretty(&json!({"pipeline": pipeline, "objects": objects}))?
    );
    Ok(())
}

/// Lists a raw key's versions, or restores one (see `dataflow restore --help`).
pub async fn restore(key: &str, version_id: Option<String>, list: bool) -> Result<()> {
    let (cfg, etl) = aws_etl().await?;
    let bucket = &cfg.etl.lake.raw_bucket;
    let versions = etl.store.versions(bucket, key).await?;
    let shown: Vec<_> = versions
        .iter()
        .map(|v| {
            json!({"version_id": v.version_id, "latest": v.is_latest, "deleted": v.deleted,
                "etag": v.etag, "bytes": v.size, "last_modified_ms": v.last_modified_ms})
        })
        .collect();
    if list {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({"key": key, "versions": shown}))?
        );
        return Ok(());
    }
    let chosen = match &version_id {
        Some(id) => versions
            .iter()
            .find(|v| &v.version_id == id && !v.deleted)
            .with_context(|| format!("s3://{bucket}/{key} has no version {id} with data (`--list` shows them)"))?,
        None => dataflow_aws::versions::previous(&versions).with_context(|| {
            format!("s3://{bucket}/{key} has no earlier version to restore (is the bucket versioned? `--list` shows what there is)")
        })?,
    };
    let new_version = etl
        .store
        .restore_version(bucket, key, &chosen.version_id)
        .await?;
    out!(
        "{}",
        json!({"key": key, "restored": chosen.version_id, "new_version": new_version,
            "next": "the raw bucket's notification hands the new version to the ETL, which counts it in place of the current one; `dataflow checkpoints` shows it"})
    );
    Ok(())
}

pub async fn compact() -> Result<()> {
    let (_, etl) = aws_etl().await?;
    let report = etl.handle(Work::Compact).await;
    out!(
        "{}",
        json!({"compacted_dates": report.compacted, "swept": report.swept, "rollup": report.rollup, "errors": report.errors.iter().map(ToString::to_string).collect::<Vec<_>>()})
    );
    if !report.errors.is_empty() {
        bail!("compaction failed");
    }
    Ok(())
}

/// Brings the monthly rollups up to date with the daily files (also done after every scheduled
/// compaction); safe to run at any time and again.
pub async fn rollup() -> Result<()> {
    let (_, etl) = aws_etl().await?;
    let t = std::time::Instant::now();
    let report = etl.refresh_rollups().await?;
    out!(
        "{}",
        json!({"rollup": report, "seconds": t.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// What the frequent schedule runs: take over dead attempts, finish removing replaced outputs.
pub async fn sweep() -> Result<()> {
    let (_, etl) = aws_etl().await?;
    print_report(&etl.sweep().await)
}

pub async fn local_etl(
    input: PathBuf,
    output: PathBuf,
    aggregates_only: bool,
    workers: Option<usize>,
) -> Result<()> {
    let meta = std::fs::metadata(&input).with_context(|| format!("reading {}", input.display()))?;
    let (root, only) = if meta.is_dir() {
        (input.clone(), None)
    } else {
        let name = input
            .file_name()
            .context("input has no file name")?
            .to_string_lossy()
            .into_owned();
        (
            input
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| ".".into()),
            Some(name),
        )
    };
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    let mut cfg = Config::from_lookup(|_| None)?;
    cfg.etl.write_events = !aggregates_only;
    if let Some(w) = workers {
        cfg.etl.workers = w.max(1);
    }
    let store = FsStore::default()
        .with_bucket("input", &root)
        .with_bucket("lake", &output);
    let mut etl = Etl::new(
        Arc::new(store),
        Arc::new(MemoryCheckpoints::default()),
        &cfg.etl,
    );
    etl.lake_bucket = "lake".into();
    let started = Instant::now();
    let report = match only {
        Some(name) => {
            etl.handle(dataflow_core::etl::work::Work::Objects(vec![
                dataflow_core::lake::source::ObjectRef::new("input", name),
            ]))
            .await
        }
        None => etl.backfill("input", "").await?,
    };
    let secs = started.elapsed().as_secs_f64();
    let p = etl.checkpoints.pipeline().await?;
    out!(
        "{}",
        json!({
            "files": p.files_processed, "accepted": p.events_accepted, "rejected": p.events_rejected,
            "bytes": p.bytes_processed, "seconds": (secs * 1000.0).round() / 1000.0,
            "mb_per_s": ((p.bytes_processed as f64 / 1e6 / secs) * 10.0).round() / 10.0,
            "output": output, "errors": report.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    );
    if !report.errors.is_empty() {
        bail!("{} file(s) failed", report.errors.len());
    }
    Ok(())
}
