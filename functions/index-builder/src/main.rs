//! Index builder Lambda: config, clients, run.

use dataflow_aws::S3Store;
use dataflow_search::config::{load_model, BuilderConfig};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (cfg, aws) = dataflow_aws::start::<BuilderConfig>().await?;
    let embed = load_model(cfg.model_dir.as_deref())?;
    let store = S3Store::new(aws.s3());
    let (store, loc, embed) = (&store, &cfg.index, &embed);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        index_builder::handle(store, loc, embed.clone(), event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
