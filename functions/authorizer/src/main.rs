//! Authorizer Lambda: config, clients, run.

use authorizer::KeysConfig;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (cfg, aws) = dataflow_aws::start::<KeysConfig>().await?;
    let store = dataflow_aws::DynamoKeys::new(aws.dynamodb(), cfg.table);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(authorizer::handle(store, &event.payload).await)
    }))
    .await
}
