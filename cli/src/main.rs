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
    Setup {
        /// Also create the ETL queue (with a dead-letter queue) and send the raw bucket's
        /// ObjectCreated notifications to it: the local stack's S3 trigger.
        #[arg(long)]
        notifications: bool,
    },
    /// Poll the ETL queue and run the ETL handler on each batch, like Lambda's SQS event source
    /// mapping (partial batch failures, retries after the visibility timeout, dead-letter queue).
    Dispatch,
    /// Check every part of the local stack and print the fix for each failure.
    Doctor {
        /// The local API address to check.
        #[arg(long, default_value = "127.0.0.1:3000")]
        api: String,
    },
    /// Merge each date's aggregate files into one (what the scheduled ETL run does).
    Compact,
    /// Build, publish and query the document search index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Serve the HTTP APIs locally, under the same paths as API Gateway.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Index a local folder of Markdown. With --upload, make the docs prefix of the index bucket
    /// hold exactly these files and publish the index built from them (what the index builder
    /// Lambda would publish); with --out, write the index object to a file.
    Build {
        #[arg(long, default_value = "docs")]
        docs: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        upload: bool,
    },
    /// Rebuild from the docs prefix in S3 and publish (what the index builder Lambda runs).
    Rebuild {
        /// Publish even when the docs are unchanged.
        #[arg(long)]
        force: bool,
    },
    /// Show the published index's manifest.
    Status,
    /// Search the published index (or a local index file).
    Search {
        query: String,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long)]
        file: Option<PathBuf>,
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
        Command::Index { command } => index(command).await,
        Command::Setup { notifications } => {
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
            if notifications {
                let (_, arn) = dataflow_aws::resources::ensure_queue_with_dlq(
                    &clients.sqs,
                    &cfg.etl_queue,
                    30,
                    3,
                )
                .await?;
                dataflow_aws::resources::wire_bucket_to_queue(&clients.s3, &cfg.raw_bucket, &arn)
                    .await?;
                eprintln!(
                    "ready: s3://{} ObjectCreated -> queue {} (dead letters: {}-dlq)",
                    cfg.raw_bucket, cfg.etl_queue, cfg.etl_queue
                );
                let (_, arn) = dataflow_aws::resources::ensure_queue_with_dlq(
                    &clients.sqs,
                    &cfg.docs_queue,
                    60,
                    3,
                )
                .await?;
                dataflow_aws::resources::wire_notifications(
                    &clients.s3,
                    &cfg.index_bucket,
                    &arn,
                    "dataflow-index-builder",
                    Some(&cfg.docs_prefix),
                    true,
                )
                .await?;
                eprintln!(
                    "ready: s3://{}/{} ObjectCreated/ObjectRemoved -> queue {}",
                    cfg.index_bucket, cfg.docs_prefix, cfg.docs_queue
                );
            }
            Ok(())
        }
        Command::Dispatch => dispatch().await,
        Command::Doctor { api } => doctor(&api).await,
    }
}

async fn aws_etl() -> Result<(Config, Etl<S3Store, DynamoCheckpoints>)> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    let etl = dataflow_aws::etl(&cfg, &clients);
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
    let analytics = analytics_api::routes(Arc::new(analytics_api::AppState::from_clients(
        &cfg, &clients,
    )));
    let search = rag_api::routes(Arc::new(rag_api::AppState::from_clients(&cfg, &clients)));
    let app = analytics
        .merge(search)
        .fallback(dataflow_http::not_found)
        .method_not_allowed_fallback(dataflow_http::method_not_allowed);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "serving on http://{addr}: /health /analytics/metrics /analytics/summary /docs /docs/search /openapi.json"
    );
    axum::serve(listener, app).await?;
    Ok(())
}

async fn queue(clients: &Clients, name: &str) -> Result<(String, String)> {
    let url = dataflow_aws::resources::queue_url(&clients.sqs, name)
        .await?
        .with_context(|| {
            format!("queue {name} does not exist: run `dataflow setup --notifications`")
        })?;
    let arn = dataflow_aws::resources::queue_arn(&clients.sqs, &url).await?;
    Ok((url, arn))
}

/// Polls the ETL queue and the docs queue, handing batches to the ETL and index builder
/// handlers, as Lambda's event source mappings would.
async fn dispatch() -> Result<()> {
    let (cfg, etl) = aws_etl().await?;
    let clients = Clients::new(&cfg).await;
    let region = cfg.region.clone().unwrap_or_else(|| "us-east-1".into());
    let dispatcher =
        |(queue_url, queue_arn): (String, String)| dataflow_aws::dispatcher::Dispatcher {
            sqs: clients.sqs.clone(),
            queue_url,
            queue_arn,
            region: region.clone(),
            batch_size: 10,
            wait_seconds: 1,
        };
    let etl_d = dispatcher(queue(&clients, &cfg.etl_queue).await?);
    let docs_d = dispatcher(queue(&clients, &cfg.docs_queue).await?);
    eprintln!(
        "dispatching {} -> ETL handler, {} -> index builder (Ctrl-C to stop)",
        cfg.etl_queue, cfg.docs_queue
    );
    let etl_handler = |event: serde_json::Value| {
        let etl = &etl;
        async move {
            etl_function::handle(etl, event)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let store = S3Store::new(clients.s3.clone());
    let loc = dataflow_rag::store::IndexLocation::from_config(&cfg);
    let docs_handler = |event: serde_json::Value| {
        let (store, loc) = (&store, &loc);
        async move {
            rag_indexer::handle(store, loc, event)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let run = |d: &'static str, r: std::result::Result<_, String>| {
        if let Err(e) = r {
            tracing::warn!(queue = d, error = %e, "poll failed; retrying");
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            (a, b) = async { tokio::join!(etl_d.poll_once(&etl_handler), docs_d.poll_once(&docs_handler)) } => {
                let failed = a.is_err() || b.is_err();
                run("etl", a);
                run("docs", b);
                if failed {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn index(command: IndexCommand) -> Result<()> {
    use dataflow_rag::chunk::ChunkOptions;
    use dataflow_rag::store;
    let aws = || async {
        let cfg = Config::from_env()?;
        let clients = Clients::new(&cfg).await;
        anyhow::Ok((
            S3Store::new(clients.s3.clone()),
            store::IndexLocation::from_config(&cfg),
        ))
    };
    match command {
        IndexCommand::Build { docs, out, upload } => {
            if out.is_none() && !upload {
                bail!("say where the index goes: --upload (publish to the index bucket) and/or --out FILE");
            }
            let (sources, skipped) = store::read_local_docs(&docs)?;
            for s in &skipped {
                eprintln!("skipped {}: {}", s.path, s.reason);
            }
            if sources.is_empty() {
                bail!(
                    "no Markdown files (.md, .markdown) under {}",
                    docs.display()
                );
            }
            if let Some(out) = out {
                let started = Instant::now();
                let bytes = dataflow_rag::index::build(
                    &sources,
                    ChunkOptions::default(),
                    chrono::Utc::now(),
                )?;
                let (h, _) = dataflow_rag::index::read_header(&bytes)?;
                std::fs::write(&out, &bytes)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!(
                    "wrote {} ({} bytes): {} documents, {} passages in {} ms",
                    out.display(),
                    bytes.len(),
                    h.documents.len(),
                    h.passages,
                    started.elapsed().as_millis()
                );
            }
            if upload {
                let (s3, loc) = aws().await?;
                let sync = store::sync_docs(&s3, &loc, &sources).await?;
                eprintln!(
                    "s3://{}/{}: {} uploaded, {} deleted, {} unchanged",
                    loc.bucket,
                    loc.docs_prefix,
                    sync.uploaded.len(),
                    sync.deleted.len(),
                    sync.unchanged
                );
                let outcome = store::rebuild(&s3, &loc, ChunkOptions::default(), false).await?;
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            }
            Ok(())
        }
        IndexCommand::Rebuild { force } => {
            let (s3, loc) = aws().await?;
            let outcome = store::rebuild(&s3, &loc, ChunkOptions::default(), force).await?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
        IndexCommand::Status => {
            let (s3, loc) = aws().await?;
            match store::current_manifest(&s3, &loc).await? {
                Some(m) => println!("{}", serde_json::to_string_pretty(&m)?),
                None => bail!(
                    "no index published at s3://{}/{}: run `dataflow index build --docs docs/ --upload`",
                    loc.bucket,
                    loc.manifest_key()
                ),
            }
            Ok(())
        }
        IndexCommand::Search { query, k, file } => {
            let bytes = match file {
                Some(f) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let (s3, loc) = aws().await?;
                    let m = store::current_manifest(&s3, &loc).await?.context(
                        "no index published: run `dataflow index build --docs docs/ --upload`",
                    )?;
                    use dataflow_core::storage::ObjectStore;
                    let started = Instant::now();
                    let b = s3
                        .get(&loc.bucket, &m.key)
                        .await?
                        .with_context(|| format!("index object {} is missing", m.key))?;
                    eprintln!(
                        "fetched s3://{}/{} ({} bytes) in {} ms",
                        loc.bucket,
                        m.key,
                        b.len(),
                        started.elapsed().as_millis()
                    );
                    b
                }
            };
            let started = Instant::now();
            let idx = dataflow_rag::index::SearchIndex::open(&bytes)?;
            eprintln!("opened in {} ms", started.elapsed().as_millis());
            let started = Instant::now();
            let hits = idx.search(&query, k)?;
            eprintln!(
                "{} hit(s) in {} µs",
                hits.len(),
                started.elapsed().as_micros()
            );
            println!("{}", serde_json::to_string_pretty(&hits)?);
            Ok(())
        }
    }
}

/// Each check: (name, Ok(detail) or Err(fix)).
async fn doctor(api: &str) -> Result<()> {
    let mut failures = 0;
    let mut report = |name: &str, r: std::result::Result<String, String>| match r {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(fix) => {
            failures += 1;
            println!("FAIL  {name}: {fix}");
        }
    };
    let cfg = match Config::from_env() {
        Ok(c) => {
            report("configuration", Ok("environment is valid".into()));
            c
        }
        Err(e) => {
            report(
                "configuration",
                Err(format!("{e} (see README, Configuration)")),
            );
            bail!("1 check failed");
        }
    };
    let endpoint = cfg.endpoint_url.clone().unwrap_or_else(|| "AWS".into());
    let clients = Clients::new(&cfg).await;
    let reachable = clients.s3.list_buckets().send().await;
    let up = reachable.is_ok();
    report(
        "emulator",
        reachable
            .map(|_| format!("{endpoint} answers"))
            .map_err(|e| {
                format!(
                    "{endpoint} unreachable ({}): run `scripts/local up`",
                    dataflow_aws::describe(&e)
                )
            }),
    );
    if !up {
        bail!("the emulator is down; nothing else can be checked");
    }
    for b in [&cfg.raw_bucket, &cfg.lake_bucket, &cfg.index_bucket] {
        let r = dataflow_aws::resources::bucket_exists(&clients.s3, b).await;
        report(
            &format!("bucket {b}"),
            match r {
                Ok(true) => Ok("exists".into()),
                Ok(false) => Err(
                    "missing: run `dataflow setup --notifications` (or `scripts/local up`)".into(),
                ),
                Err(e) => Err(e.to_string()),
            },
        );
    }
    report(
        &format!("table {}", cfg.checkpoint_table),
        match dataflow_aws::resources::table_exists(&clients.dynamodb, &cfg.checkpoint_table).await
        {
            Ok(true) => Ok("exists".into()),
            Ok(false) => Err("missing: run `dataflow setup --notifications`".into()),
            Err(e) => Err(e.to_string()),
        },
    );
    let queue = dataflow_aws::resources::queue_url(&clients.sqs, &cfg.etl_queue).await;
    match queue {
        Ok(Some(url)) => {
            report(&format!("queue {}", cfg.etl_queue), Ok("exists".into()));
            let arn = dataflow_aws::resources::queue_arn(&clients.sqs, &url).await?;
            let wired =
                dataflow_aws::resources::notifications_wired(&clients.s3, &cfg.raw_bucket, &arn)
                    .await;
            report(
                "notifications",
                match wired {
                    Ok(true) => Ok(format!(
                        "s3://{} ObjectCreated -> {}",
                        cfg.raw_bucket, cfg.etl_queue
                    )),
                    Ok(false) => Err("not wired: run `dataflow setup --notifications`".into()),
                    Err(e) => Err(e.to_string()),
                },
            );
            let depth = clients
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs_attr())
                .send()
                .await
                .ok()
                .and_then(|a| {
                    a.attributes()
                        .and_then(|m| m.get(&aws_sdk_sqs_attr()).cloned())
                })
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            report(
                "dispatcher",
                if depth < 100 {
                    Ok(format!("{depth} message(s) waiting"))
                } else {
                    Err(format!("{depth} messages waiting: is the dispatcher running? `scripts/local status`; restart with `scripts/local up`"))
                },
            );
        }
        Ok(None) => report(
            &format!("queue {}", cfg.etl_queue),
            Err("missing: run `dataflow setup --notifications`".into()),
        ),
        Err(e) => report(&format!("queue {}", cfg.etl_queue), Err(e.to_string())),
    }
    let etl = dataflow_aws::etl(&cfg, &clients);
    match etl.checkpoints.list().await {
        Ok(list) => {
            let failed: Vec<_> = list
                .iter()
                .filter(|c| c.state == dataflow_core::checkpoint::State::Failed)
                .collect();
            report(
                "ETL",
                if failed.is_empty() {
                    Ok(format!(
                        "{} object(s) checkpointed, none failed",
                        list.len()
                    ))
                } else {
                    Err(format!("{} failed object(s), e.g. {}: {}; fix or replace the object, then `dataflow reprocess --key KEY`", failed.len(), failed[0].id, failed[0].error.clone().unwrap_or_default()))
                },
            );
        }
        Err(e) => report("ETL", Err(e.to_string())),
    }
    let loc = dataflow_rag::store::IndexLocation::from_config(&cfg);
    let s3 = S3Store::new(clients.s3.clone());
    report(
        "search index",
        match dataflow_rag::store::current_manifest(&s3, &loc).await {
            Ok(Some(m)) => Ok(format!(
                "{} documents, {} passages, built {}",
                m.documents, m.passages, m.built_at
            )),
            Ok(None) => Err(format!(
                "not published at s3://{}/{}: run `dataflow index build --docs docs/ --upload`",
                loc.bucket,
                loc.manifest_key()
            )),
            Err(e) => Err(format!("{e}: run `dataflow index rebuild --force`")),
        },
    );
    match dataflow_aws::resources::queue_url(&clients.sqs, &cfg.docs_queue).await {
        Ok(Some(url)) => {
            let arn = dataflow_aws::resources::queue_arn(&clients.sqs, &url).await?;
            report(
                "docs notifications",
                match dataflow_aws::resources::notifications_wired(
                    &clients.s3,
                    &cfg.index_bucket,
                    &arn,
                )
                .await
                {
                    Ok(true) => Ok(format!(
                        "s3://{}/{} -> {} (index rebuilds on change)",
                        cfg.index_bucket, cfg.docs_prefix, cfg.docs_queue
                    )),
                    Ok(false) => Err("not wired: run `dataflow setup --notifications`".into()),
                    Err(e) => Err(e.to_string()),
                },
            );
        }
        Ok(None) => report(
            &format!("queue {}", cfg.docs_queue),
            Err("missing: run `dataflow setup --notifications`".into()),
        ),
        Err(e) => report(&format!("queue {}", cfg.docs_queue), Err(e.to_string())),
    }
    let health = http_get(api, "/health").await;
    report(
        &format!("API http://{api}"),
        match health {
            Ok((200, _)) => Ok("/health answers 200".into()),
            Ok((code, body)) => Err(format!("/health answered {code}: {body}")),
            Err(e) => Err(format!(
                "{e}: start it with `scripts/local up` (or `dataflow serve`)"
            )),
        },
    );
    let summary = http_get(api, "/analytics/summary").await;
    report(
        "analytics",
        match summary {
            Ok((200, _)) => Ok("/analytics/summary answers".into()),
            Ok((503, _)) => Err(
                "analytics not ready: drop a file in the raw bucket or run `dataflow backfill`"
                    .into(),
            ),
            Ok((code, body)) => Err(format!("{code}: {body}")),
            Err(e) => Err(e),
        },
    );
    report(
        "search",
        match http_get(api, "/docs/search?q=reprocess&k=1").await {
            Ok((200, _)) => Ok("/docs/search answers".into()),
            Ok((503, body)) => Err(format!(
                "index not loaded ({body}): run `dataflow index build --docs docs/ --upload`"
            )),
            Ok((code, body)) => Err(format!("{code}: {body}")),
            Err(e) => Err(e),
        },
    );
    if failures > 0 {
        bail!("{failures} check(s) failed");
    }
    println!("all checks passed");
    Ok(())
}

fn aws_sdk_sqs_attr() -> aws_sdk_sqs::types::QueueAttributeName {
    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages
}

/// Minimal HTTP/1.1 GET for the doctor (no client library needed for one local call).
async fn http_get(addr: &str, path: &str) -> std::result::Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        Ok((code, body))
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), fut)
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
}
