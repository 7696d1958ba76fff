//! Index builder Lambda: config, clients, run.

use dataflow_aws::S3Store;
use dataflow_search::store::IndexLocation;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (loc, aws) = dataflow_aws::start::<IndexLocation>().await?;
    let store = S3Store::new(aws.s3());
    let (store, loc) = (&store, &loc);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        index_builder::handle(store, loc, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
