//! Index builder Lambda: config, clients, run.

use dataflow_aws::{Clients, S3Store};
use dataflow_core::config::Config;
use dataflow_search::store::IndexLocation;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    dataflow_aws::telemetry::init();
    let cfg =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::new(&cfg).await;
    let store = S3Store::new(clients.s3.clone());
    let loc = IndexLocation::from_config(&cfg);
    let (store, loc) = (&store, &loc);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        index_builder::handle(store, loc, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
