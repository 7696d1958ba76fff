//! Analytics API: config, clients, run. Inside Lambda it serves API Gateway events; elsewhere
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
    let state = analytics_api::AppState::from_clients(&cfg, &clients);
    let app = analytics_api::router(Arc::new(state));
    dataflow_http::serve(app).await
}
