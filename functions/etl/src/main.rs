//! ETL Lambda: config, clients, run.

use dataflow_aws::requeue::SqsRequeue;
use dataflow_core::config::EtlConfig;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (cfg, aws) = dataflow_aws::start::<EtlConfig>().await?;
    let etl = dataflow_aws::etl(&cfg, &aws);
    let requeue = SqsRequeue::new(aws.sqs());
    let (etl, requeue) = (&etl, &requeue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        etl_function::handle(etl, requeue, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
