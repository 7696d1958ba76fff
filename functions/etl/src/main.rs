//! ETL Lambda: config, clients, run.

use std::sync::Arc;

use dataflow_aws::{Clients, DynamoCheckpoints, S3Store};
use dataflow_core::config::Config;
use dataflow_core::etl::Etl;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    dataflow_aws::telemetry::init();
    let cfg =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::new(&cfg).await;
    let etl = Etl::new(
        Arc::new(S3Store::new(clients.s3.clone())),
        Arc::new(DynamoCheckpoints::new(
            clients.dynamodb.clone(),
            cfg.checkpoint_table.clone(),
        )),
        &cfg,
    );
    let etl = &etl;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        etl_function::handle(etl, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
