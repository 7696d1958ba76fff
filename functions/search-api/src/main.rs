//! Search API: config, clients, run. Inside Lambda it serves API Gateway events; elsewhere
//! (`PORT` set, default 3000) it serves HTTP directly.

use std::sync::Arc;

use dataflow_search::config::{load_model, SearchConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (cfg, aws) = dataflow_aws::start::<SearchConfig>().await?;
    // The model loads at start: a bad EMBED_MODEL_DIR stops the function here, not per query.
    let embed = load_model(cfg.model_dir.as_deref())?;
    let state = Arc::new(search_api::AppState::over_aws(&cfg, &aws, embed));
    // Load during init so the first query is fast; a missing index is not fatal: the API answers
    // 503 until one is published.
    if let Err(e) = state.index.get().await {
        tracing::warn!(error = %e, "no index loaded at start");
    }
    let app = search_api::router(state);
    dataflow_http::serve(app).await
}
