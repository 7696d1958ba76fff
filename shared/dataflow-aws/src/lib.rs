//! AWS adapters for dataflow-core's ports: [`S3Store`] (object storage) and
//! [`DynamoCheckpoints`] (checkpoints), plus client construction that honours
//! `AWS_ENDPOINT_URL` with path-style S3 addressing, so LocalStack, moto's server and real AWS
//! all work with no code change.

mod clients;
pub mod dispatcher;
mod dynamo;
pub mod requeue;
pub mod resources;
mod s3;
pub mod telemetry;

pub use clients::{sdk_config, Clients};
pub use dynamo::DynamoCheckpoints;
pub use s3::S3Store;

/// The status code of a failed SDK call, when the service answered.
pub(crate) fn status_of<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Full error text of an SDK error (the Display of `SdkError` alone says only "service error").
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The ETL over S3 and DynamoDB with `cfg`'s names: what the Lambda, the CLI, the dispatcher and
/// the integration tests all run.
pub fn etl(
    cfg: &dataflow_core::config::Config,
    clients: &Clients,
) -> dataflow_core::etl::Etl<S3Store, DynamoCheckpoints> {
    dataflow_core::etl::Etl::new(
        std::sync::Arc::new(S3Store::new(clients.s3.clone())),
        std::sync::Arc::new(DynamoCheckpoints::new(
            clients.dynamodb.clone(),
            cfg.checkpoint_table.clone(),
        )),
        cfg,
    )
}
