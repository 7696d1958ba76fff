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
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(app).await;
    }
    let addr = format!(
        "127.0.0.1:{}",
        std::env::var("PORT").unwrap_or_else(|_| "3000".into())
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "serving");
    axum::serve(listener, app).await?;
    Ok(())
}
