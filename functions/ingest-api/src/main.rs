//! Ingest API: config, clients, run. Inside Lambda it serves API Gateway events; elsewhere
//! (`PORT` set, default 3000) it serves HTTP directly.

use std::sync::Arc;

use ingest_api::{AppState, IngestConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (cfg, aws) = dataflow_aws::start::<IngestConfig>().await?;
    let sink = dataflow_aws::FirehoseSink::new(aws.firehose(), cfg.stream.clone());
    let state = AppState::new(Arc::new(sink), cfg.window);
    dataflow_http::serve(ingest_api::router(Arc::new(state))).await
}
