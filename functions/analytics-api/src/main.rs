//! Analytics API: config, clients, run. Inside Lambda it serves API Gateway events; elsewhere
//! (`PORT` set, default 3000) it serves HTTP directly.

use std::sync::Arc;

use dataflow_core::config::AnalyticsConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (cfg, aws) = dataflow_aws::start::<AnalyticsConfig>().await?;
    let state = analytics_api::AppState::over_aws(&cfg, &aws);
    let app = analytics_api::router(Arc::new(state));
    dataflow_http::serve(app).await
}
