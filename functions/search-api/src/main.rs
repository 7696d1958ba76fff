//! Search API: config, clients, run. Inside Lambda it serves API Gateway events; elsewhere
//! (`PORT` set, default 3000) it serves HTTP directly.

use std::sync::Arc;

use dataflow_aws::Clients;
use dataflow_core::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dataflow_aws::telemetry::init();
    let cfg =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::new(&cfg).await;
    let state = Arc::new(search_api::AppState::from_clients(&cfg, &clients));
    // Load during init so the first query is fast; a missing index is not fatal: the API answers
    // 503 until one is published.
    if let Err(e) = state.index.get().await {
        tracing::warn!(error = %e, "no index loaded at start");
    }
    let app = search_api::router(state);
    dataflow_http::serve(app).await
}
