//! ETL Lambda: config, clients, run.

use dataflow_aws::Clients;
use dataflow_core::config::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    dataflow_aws::telemetry::init();
    let cfg =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::new(&cfg).await;
    let etl = dataflow_aws::etl(&cfg, &clients);
    let requeue = dataflow_aws::requeue::SqsRequeue::new(clients.sqs.clone());
    let (etl, requeue) = (&etl, &requeue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        etl_function::handle(etl, requeue, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
