//! `dataflow`: the operator's command line. Runs the same core as the Lambda functions.

/// `println!` for the command's output: a reader that goes away (`dataflow checkpoints | head`)
/// ends the command quietly, as with other Unix tools, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

mod doctor;
mod etl_cmd;
mod index_cmd;
mod keys_cmd;
mod stack;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// process again. Outputs are overwritten in place, never duplicated.
    Reprocess {
        /// One raw object key: only it is forgotten and processed.
        #[arg(long, conflicts_with = "all")]
        key: Option<String>,
        /// Every object (then a backfill of the raw prefix).
        #[arg(long)]
        all: bool,
        /// Only delete the checkpoints; let the next delivery or backfill process.
        #[arg(long)]
        no_run: bool,
    },
    /// Undo an overwrite or delete in the raw bucket (it is versioned): copy an earlier version
    /// of a key over it. The bucket's notification hands the restored version to the ETL, which
    /// counts it in place of the mistaken one.
    Restore {
        /// The raw object's key.
        #[arg(long)]
        key: String,
        /// The version to restore (default: the one before the current, or the newest before a
        /// delete). `--list` shows them.
        #[arg(long)]
        version_id: Option<String>,
        /// Only list the key's versions.
        #[arg(long)]
        list: bool,
    },
    /// Show checkpoints and pipeline totals.
    Checkpoints,
    /// Take over attempts whose lease expired and finish removing replaced versions' outputs
    /// (what the ETL function's frequent schedule runs).
    Sweep,
    /// Send the ETL dead-letter queue's messages back to the ETL queue (after fixing the cause).
    Redrive,
    /// Create the buckets and the checkpoint table named by the configuration (idempotent).
    Setup {
        /// Also create the ETL queue (with a dead-letter queue) and send the raw bucket's
        /// ObjectCreated notifications to it: the local stack's S3 trigger.
        #[arg(long)]
        notifications: bool,
    },
    /// Poll the ETL queue and run the ETL handler on each batch, like Lambda's SQS event source
    /// mapping (partial batch failures, retries after the visibility timeout, dead-letter queue),
    /// and run the sweep on a schedule.
    Dispatch {
        /// Seconds between sweeps (the template's schedule runs every 2 minutes).
        #[arg(long, default_value_t = 10)]
        sweep_seconds: u64,
        /// Seconds between compaction + rollup runs (the template's schedule runs hourly).
        #[arg(long, default_value_t = 60)]
        compact_seconds: u64,
    },
    /// Check every part of the local stack and print the fix for each failure.
    Doctor {
        /// The local API address to check.
        #[arg(long, default_value = "127.0.0.1:3000")]
        api: String,
    },
    /// Sweep, merge each date's aggregate files into one, then refresh the monthly rollups (what
    /// the hourly schedule does).
    Compact,
    /// Rebuild the monthly rollups of months whose daily aggregate files changed.
    Rollup,
    /// Build, publish and query the document search index.
    Index {
        #[command(subcommand)]
        command: index_cmd::IndexCommand,
    },
    /// API keys: create (printed once), list, revoke.
    Keys {
        #[command(subcommand)]
        command: keys_cmd::KeysCommand,
    },
    /// Print the HTTP API's OpenAPI document, made from the handlers' types and annotations:
    /// what `/openapi.json` serves.
    Openapi,
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
        } => etl_cmd::local_etl(input, output, aggregates_only, workers).await,
        Command::Backfill { prefix } => etl_cmd::backfill(&prefix).await,
        Command::Reprocess { key, all, no_run } => etl_cmd::reprocess(key, all, no_run).await,
        Command::Restore {
            key,
            version_id,
            list,
        } => etl_cmd::restore(&key, version_id, list).await,
        Command::Checkpoints => etl_cmd::checkpoints().await,
        Command::Sweep => etl_cmd::sweep().await,
        Command::Compact => etl_cmd::compact().await,
        Command::Rollup => etl_cmd::rollup().await,
        Command::Redrive => stack::redrive().await,
        Command::Serve { addr } => stack::serve(&addr).await,
        Command::Index { command } => index_cmd::index(command).await,
        Command::Keys { command } => keys_cmd::keys(command).await,
        Command::Setup { notifications } => stack::setup(notifications).await,
        Command::Dispatch {
            sweep_seconds,
            compact_seconds,
        } => {
            stack::dispatch(
                Duration::from_secs(sweep_seconds.max(1)),
                Duration::from_secs(compact_seconds.max(1)),
            )
            .await
        }
        Command::Doctor { api } => doctor::doctor(&api).await,
        Command::Openapi => {
            let doc = dataflow_http::openapi::document([
                analytics_api::openapi(),
                ingest_api::openapi(),
                search_api::openapi(),
            ]);
            out!("{}", dataflow_http::openapi::to_json(&doc)?);
            Ok(())
        }
    }
}

fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }
}
