//! The local stack's commands: resources, the dispatcher standing in for Lambda's triggers, the
//! local API server and the dead-letter queue's redrive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dataflow_aws::S3Store;
use dataflow_dev::Clients;
use dataflow_dev::StackConfig as Config;

use crate::etl_cmd::aws_etl;

/// The local ETL queue mirrors the template's relations (docs/operations.md): the visibility
/// timeout outlasts lease + sweep period, so the sweep (not a redelivery) takes over a dead
/// attempt, and a message is dead-lettered after the same number of failed receives.
pub const LOCAL_VISIBILITY_SECONDS: u32 = 30;
pub const MAX_RECEIVES: u32 = 5;

pub async fn setup(notifications: bool) -> Result<()> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    for b in [
        &cfg.etl.lake.raw_bucket,
        &cfg.etl.lake.lake_bucket,
        &cfg.search.index.bucket,
    ] {
        dataflow_dev::resources::ensure_bucket(&clients.s3, b).await?;
    }
    dataflow_dev::resources::ensure_versioning(&clients.s3, &cfg.etl.lake.raw_bucket).await?;
    dataflow_dev::resources::ensure_table(&clients.dynamodb, &cfg.etl.lake.checkpoint_table)
        .await?;
    dataflow_dev::resources::ensure_keys_table(&clients.dynamodb, &cfg.keys_table).await?;
    eprintln!(
        "ready: buckets {}, {}, {}; table {}",
        cfg.etl.lake.raw_bucket,
        cfg.etl.lake.lake_bucket,
        cfg.search.index.bucket,
        cfg.etl.lake.checkpoint_table
    );
    // The delivery stream behind POST /events writes into the raw bucket, where the notification
    // below hands its objects to the ETL. An emulator without Firehose leaves POST /events
    // answering 503; everything else still runs.
    match dataflow_dev::resources::ensure_delivery_stream(
        &clients.firehose,
        &cfg.ingest.stream,
        &cfg.etl.lake.raw_bucket,
        &cfg.etl.firehose_prefix,
    )
    .await
    {
        Ok(()) => eprintln!(
            "ready: delivery stream {} -> s3://{}/{}",
            cfg.ingest.stream, cfg.etl.lake.raw_bucket, cfg.etl.firehose_prefix
        ),
        Err(e) => eprintln!("warning: no delivery stream for POST /events: {e}"),
    }
    if notifications {
        let (_, arn) = dataflow_dev::resources::ensure_queue_with_dlq(
            &clients.sqs,
            &cfg.etl_queue,
            LOCAL_VISIBILITY_SECONDS,
            MAX_RECEIVES,
        )
        .await?;
        dataflow_dev::resources::wire_bucket_to_queue(&clients.s3, &cfg.etl.lake.raw_bucket, &arn)
            .await?;
        eprintln!(
            "ready: s3://{} ObjectCreated -> queue {} (dead letters: {}-dlq after {MAX_RECEIVES} receives)",
            cfg.etl.lake.raw_bucket, cfg.etl_queue, cfg.etl_queue
        );
        let (_, arn) =
            dataflow_dev::resources::ensure_queue_with_dlq(&clients.sqs, &cfg.docs_queue, 60, 3)
                .await?;
        dataflow_dev::resources::wire_notifications(
            &clients.s3,
            &cfg.search.index.bucket,
            &arn,
            "dataflow-index-builder",
            Some(&cfg.search.index.docs_prefix),
            true,
        )
        .await?;
        eprintln!(
            "ready: s3://{}/{} ObjectCreated/ObjectRemoved -> queue {}",
            cfg.search.index.bucket, cfg.search.index.docs_prefix, cfg.docs_queue
        );
    }
    Ok(())
}

pub async fn serve(addr: &str) -> Result<()> {
    let mut cfg = Config::from_env()?;
    // The local stack's dead-letter queue, as `setup` names it, unless ETL_DLQ says otherwise.
    cfg.analytics
        .dead_letter_queue
        .get_or_insert_with(|| format!("{}-dlq", cfg.etl_queue));
    let clients = Clients::new(&cfg).await;
    let analytics = analytics_api::routes(Arc::new(analytics_api::AppState::over_aws(
        &cfg.analytics,
        &clients.aws,
    )));
    let embed = dataflow_search::config::load_model(cfg.search.model_dir.as_deref())
        .context("loading the embedding model (EMBED_MODEL_DIR)")?;
    let search = search_api::routes(Arc::new(search_api::AppState::over_aws(
        &cfg.search,
        &clients.aws,
        embed,
    )));
    let ingest = ingest_api::routes(Arc::new(ingest_api::AppState::new(
        Arc::new(dataflow_aws::FirehoseSink::new(
            clients.firehose.clone(),
            cfg.ingest.stream.clone(),
        )),
        cfg.ingest.window,
    )));
    let mut app = dataflow_http::finish(analytics.merge(search).merge(ingest));
    if cfg.auth_keys {
        let keys = dataflow_aws::DynamoKeys::new(clients.dynamodb.clone(), cfg.keys_table.clone());
        app = dataflow_http::auth::with_keys(app, Arc::new(keys));
        eprintln!(
            "API keys required (AUTH_MODE=keys, table {}): x-api-key on every route but /health and /openapi.json",
            cfg.keys_table
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "serving on http://{addr}: /health /analytics/metrics /analytics/summary /docs /docs/search /docs/{{path}} (PUT, DELETE) /events (POST) /openapi.json"
    );
    axum::serve(dataflow_http::wire::JsonErrorListener(listener), app).await?;
    Ok(())
}

pub async fn queue(clients: &Clients, name: &str) -> Result<(String, String)> {
    let url = dataflow_dev::resources::queue_url(&clients.sqs, name)
        .await?
        .with_context(|| {
            format!("queue {name} does not exist: run `dataflow setup --notifications`")
        })?;
    let arn = dataflow_dev::resources::queue_arn(&clients.sqs, &url).await?;
    Ok((url, arn))
}

/// Polls the ETL queue and the docs queue, handing batches to the ETL and index builder
/// handlers, as Lambda's event source mappings would, and runs what the template schedules:
/// the sweep every `sweep_every`, and compaction with the rollups (the hourly run, which also
/// sweeps and prunes the change log) every `compact_every`.
pub async fn dispatch(sweep_every: Duration, compact_every: Duration) -> Result<()> {
    let (cfg, etl) = aws_etl().await?;
    let clients = Clients::new(&cfg).await;
    let region = cfg.aws.region.clone().unwrap_or_else(|| "us-east-1".into());
    let dispatcher =
        |(queue_url, queue_arn): (String, String)| dataflow_dev::dispatcher::Dispatcher {
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
        "dispatching {} -> ETL handler, {} -> index builder, sweep every {} s, compaction and rollups every {} s (Ctrl-C to stop)",
        cfg.etl_queue,
        cfg.docs_queue,
        sweep_every.as_secs(),
        compact_every.as_secs()
    );
    let requeue = dataflow_aws::requeue::SqsRequeue::new(clients.sqs.clone());
    let etl_handler = |event: serde_json::Value| {
        let (etl, requeue) = (&etl, &requeue);
        async move {
            etl_function::handle(etl, requeue, event)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let store = S3Store::new(clients.s3.clone());
    let loc = cfg.search.index.clone();
    let embed = dataflow_search::config::load_model(cfg.search.model_dir.as_deref())
        .context("loading the embedding model (EMBED_MODEL_DIR)")?;
    let docs_handler = |event: serde_json::Value| {
        let (store, loc, embed) = (&store, &loc, embed.clone());
        async move {
            index_builder::handle(store, loc, embed, event)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let run = |d: &'static str, r: std::result::Result<_, String>| {
        if let Err(e) = r {
            tracing::warn!(queue = d, error = %e, "poll failed; retrying");
        }
    };
    let mut last_sweep = Instant::now();
    let mut last_compaction = Instant::now();
    loop {
        if last_compaction.elapsed() >= compact_every {
            last_compaction = Instant::now();
            last_sweep = Instant::now();
            let report = etl.handle(dataflow_core::etl::work::Work::Compact).await;
            tracing::info!(
                compacted_dates = report.compacted,
                swept = report.swept,
                rollup = ?report.rollup,
                errors = ?report.errors,
                "compaction and rollups"
            );
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = Instant::now();
            let report = etl.sweep().await;
            if report.swept > 0 || !report.errors.is_empty() {
                tracing::info!(swept = report.swept, errors = ?report.errors, "sweep");
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            (a, b) = async { tokio::join!(etl_d.poll_once(&etl_handler), docs_d.poll_once(&docs_handler)) } => {
                let failed = a.is_err() || b.is_err();
                run("etl", a);
                run("docs", b);
                if failed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Sends the ETL dead-letter queue's messages back to the ETL queue, once the cause is fixed.
pub async fn redrive() -> Result<()> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    let (to, _) = queue(&clients, &cfg.etl_queue).await?;
    let dlq_name = format!("{}-dlq", cfg.etl_queue);
    let (from, _) = queue(&clients, &dlq_name).await?;
    let moved = dataflow_dev::resources::redrive(&clients.sqs, &from, &to).await?;
    out!(
        "{}",
        serde_json::json!({"redriven": moved, "from": dlq_name, "to": cfg.etl_queue})
    );
    Ok(())
}
