//! What runs inside the Lambda functions on the AWS side: invocation envelopes ([`events`]), the
//! S3 adapter of the object storage port ([`S3Store`]), the DynamoDB adapter of the checkpoint
//! port ([`DynamoCheckpoints`], feature `dynamodb`), sending an SQS message again ([`requeue`],
//! feature `sqs`), the Firehose adapter of the ingest delivery port ([`FirehoseSink`], feature
//! `firehose`), the API key store ([`DynamoKeys`], feature `keys`), clients that honour `AWS_ENDPOINT_URL` with path-style S3 addressing (so
//! LocalStack, moto's server and real AWS all work with no code change), and each function's
//! start ([`start`]). Each function enables only the features it uses, so the search functions
//! build neither the DynamoDB and SQS SDKs nor the ETL's crate.
//! Local-only machinery (creating resources, the dispatcher) lives in `dataflow-dev`.

mod clients;
#[cfg(feature = "dynamodb")]
mod dynamo;
pub mod events;
#[cfg(feature = "firehose")]
mod firehose;
#[cfg(feature = "keys")]
mod keys;
#[cfg(feature = "sqs")]
pub mod requeue;
mod s3;
pub mod telemetry;
pub mod versions;

pub use clients::Aws;
use dataflow_config::{AwsSettings, ConfigError, Env, FromEnv};
#[cfg(feature = "dynamodb")]
pub use dynamo::{
    DynamoCheckpoints, ATTENTION_ATTR, ATTENTION_INDEX, RECENT_DAY_ATTR, RECENT_INDEX,
    RECENT_PROJECTED,
};
#[cfg(feature = "firehose")]
pub use firehose::FirehoseSink;
#[cfg(feature = "keys")]
pub use keys::DynamoKeys;
pub use s3::S3Store;

/// The status code of a failed SDK call, when the service answered.
pub fn status_of<E>(
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

/// Every function's start: logging, then its own settings `C` and the AWS settings from the
/// environment (a bad value is logged with the variable's name and stops the start), then the
/// shared SDK configuration.
pub async fn start<C: FromEnv>() -> Result<(C, Aws), ConfigError> {
    telemetry::init();
    let env = Env::from_env();
    let read =
        || Ok::<_, ConfigError>((C::from_env_vars(&env)?, AwsSettings::from_env_vars(&env)?));
    let (cfg, settings) =
        read().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    Ok((cfg, Aws::load(&settings).await))
}

/// The ETL over S3 and DynamoDB with `cfg`'s names: what the Lambda, the CLI, the dispatcher and
/// the integration tests all run.
#[cfg(feature = "dynamodb")]
pub fn etl(
    cfg: &dataflow_core::config::EtlConfig,
    aws: &Aws,
) -> dataflow_core::etl::Etl<S3Store, DynamoCheckpoints> {
    dataflow_core::etl::Etl::new(
        std::sync::Arc::new(S3Store::new(aws.s3())),
        std::sync::Arc::new(DynamoCheckpoints::new(
            aws.dynamodb(),
            cfg.lake.checkpoint_table.clone(),
        )),
        cfg,
    )
}
