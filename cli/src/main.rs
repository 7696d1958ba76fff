//! `dataflow`: the operator's command line. Runs the same core as the Lambda functions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dataflow_aws::{Clients, DynamoCheckpoints, S3Store};
use dataflow_core::checkpoint::{CheckpointStore, MemoryCheckpoints};
use dataflow_core::config::Config;
use dataflow_core::etl::{Etl, ObjectOutcome, TriggerReport};
use dataflow_core::storage::FsStore;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "dataflow",
    version,
    about = "DataFlow: serverless event analytics and document search"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ETL core on local files (a file or a folder of .jsonl/.ndjson/.json[.gz]) and write
    /// the lake layout under --output. No AWS involved.
    Etl {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Skip curated events: aggregates and rejected lines only.
        #[arg(long)]
        aggregates_only: bool,
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Process every object under a prefix of the raw bucket that has no done checkpoint
    /// (objects that predate the notifications, or after `reprocess`).
    Backfill {
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Force reprocessing: delete checkpoints (taking their counts out of the totals), then
    /// backfill. Outputs are overwritten in place, never duplicated.
    Reprocess {
        /// One raw object key.
        #[arg(long, conflicts_with = "all")]
        key: Option<String>,
        /// Every object.
        #[arg(long)]
        all: bool,
        /// Only delete the checkpoints; let the next delivery or backfill process.
        #[arg(long)]
        no_run: bool,
    },
    /// Show checkpoints and pipeline totals.
    Checkpoints,
    /// Create the buckets and the checkpoint table named by the configuration (idempotent).
    Setup,
    /// Merge each date's aggregate files into one (what the scheduled ETL run does).
    Compact,
    /// Serve the HTTP APIs locally, under the same paths as API Gateway.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    dataflow_aws::telemetry::init();
    match Cli::parse().command {
        Command::Etl {
            input,
            output,
            aggregates_only,
            workers,
        } => local_etl(input, output, aggregates_only, workers).await,
        Command::Backfill { prefix } => {
            let (cfg, etl) = aws_etl().await?;
            let prefix = format!("{}{prefix}", cfg.raw_prefix);
            let report = etl.backfill(&cfg.raw_bucket, &prefix).await?;
            print_report(&report)
        }
        Command::Reprocess { key, all, no_run } => {
            let (cfg, etl) = aws_etl().await?;
            let ids: Vec<String> = match (key, all) {
                (Some(k), _) => etl
                    .checkpoints
                    .list()
                    .await?
                    .into_iter()
                    .filter(|c| c.id.starts_with(&format!("object#{}/{k}#", cfg.raw_bucket)))
                    .map(|c| c.id)
                    .collect(),
                (None, true) => etl
                    .checkpoints
                    .list()
                    .await?
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
                (None, false) => bail!("say which: --key KEY or --all"),
            };
            for id in &ids {
                etl.checkpoints.forget(id).await?;
            }
            eprintln!("forgot {} checkpoint(s)", ids.len());
            if !no_run {
                let report = etl.backfill(&cfg.raw_bucket, &cfg.raw_prefix).await?;
                print_report(&report)?;
            }
            Ok(())
        }
        Command::Checkpoints => {
            let (_, etl) = aws_etl().await?;
            let pipeline = etl.checkpoints.pipeline().await?;
            let objects: Vec<_> = etl
                .checkpoints
                .list()
                .await?
                .into_iter()
                .map(|c| {
                    json!({"id": c.id, "state": c.state.as_str(), "attempts": c.attempts,
                        "accepted": c.completion.as_ref().map(|x| x.accepted),
                        "rejected": c.completion.as_ref().map(|x| x.rejected), "error": c.error})
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"pipeline": pipeline, "objects": objects}))?
            );
            Ok(())
        }
        Command::Compact => {
            let (_, etl) = aws_etl().await?;
            let report = etl.handle(dataflow_core::trigger::Trigger::Compact).await;
            println!(
                "{}",
                json!({"compacted_dates": report.compacted, "errors": report.errors})
            );
            if !report.errors.is_empty() {
                bail!("compaction failed");
            }
            Ok(())
        }
        Command::Serve { addr } => serve(&addr).await,
        Command::Setup => {
            let cfg = Config::from_env()?;
            let clients = Clients::new(&cfg).await;
            for b in [&cfg.raw_bucket, &cfg.lake_bucket, &cfg.index_bucket] {
                dataflow_aws::resources::ensure_bucket(&clients.s3, b).await?;
            }
            dataflow_aws::resources::ensure_table(&clients.dynamodb, &cfg.checkpoint_table).await?;
            eprintln!(
                "ready: buckets {}, {}, {}; table {}",
                cfg.raw_bucket, cfg.lake_bucket, cfg.index_bucket, cfg.checkpoint_table
            );
            Ok(())
        }
    }
}

async fn aws_etl() -> Result<(Config, Etl<S3Store, DynamoCheckpoints>)> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    let etl = Etl::new(
        Arc::new(S3Store::new(clients.s3.clone())),
        Arc::new(DynamoCheckpoints::new(
            clients.dynamodb.clone(),
            cfg.checkpoint_table.clone(),
        )),
        &cfg,
    );
    Ok((cfg, etl))
}

fn print_report(report: &TriggerReport) -> Result<()> {
    let processed = report
        .outcomes
        .iter()
        .filter(|o| matches!(o, ObjectOutcome::Processed(_)))
        .count();
    let skipped = report.outcomes.len() - processed;
    println!(
        "{}",
        json!({"processed": processed, "skipped_or_done": skipped, "errors": report.errors})
    );
    if !report.errors.is_empty() {
        bail!("{} object(s) failed", report.errors.len());
    }
    Ok(())
}

async fn local_etl(
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
    cfg.write_events = !aggregates_only;
    if let Some(w) = workers {
        cfg.workers = w.max(1);
    }
    let store = FsStore::default()
        .with_bucket("input", &root)
        .with_bucket("lake", &output);
    let mut etl = Etl::new(
        Arc::new(store),
        Arc::new(MemoryCheckpoints::default()),
        &cfg,
    );
    etl.lake_bucket = "lake".into();
    let started = Instant::now();
    let report = match only {
        Some(name) => {
            etl.handle(dataflow_core::trigger::Trigger::S3(vec![
                dataflow_core::source::ObjectRef::new("input", name),
            ]))
            .await
        }
        None => etl.backfill("input", "").await?,
    };
    let secs = started.elapsed().as_secs_f64();
    let p = etl.checkpoints.pipeline().await?;
    println!(
        "{}",
        json!({
            "files": p.files_processed, "accepted": p.events_accepted, "rejected": p.events_rejected,
            "bytes": p.bytes_processed, "seconds": (secs * 1000.0).round() / 1000.0,
            "mb_per_s": ((p.bytes_processed as f64 / 1e6 / secs) * 10.0).round() / 10.0,
            "output": output, "errors": report.errors,
        })
    );
    if !report.errors.is_empty() {
        bail!("{} file(s) failed", report.errors.len());
    }
    Ok(())
}

async fn serve(addr: &str) -> Result<()> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    let store: Arc<dyn dataflow_core::storage::ObjectStore> =
        Arc::new(S3Store::new(clients.s3.clone()));
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(DynamoCheckpoints::new(
        clients.dynamodb.clone(),
        cfg.checkpoint_table.clone(),
    ));
    let refresh = std::time::Duration::from_secs(cfg.cache_seconds);
    let analytics = analytics_api::router(Arc::new(analytics_api::AppState::new(
        store,
        checkpoints,
        &cfg,
        refresh,
    )));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "serving on http://{addr}: /health /analytics/metrics /analytics/summary /openapi.json"
    );
    axum::serve(listener, analytics).await?;
    Ok(())
}
