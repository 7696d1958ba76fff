//! Local-only machinery, never linked by a Lambda function: the whole stack's settings
//! ([`StackConfig`]: every function's own settings plus the local queues), clients for every
//! service ([`Clients`]), creating resources ([`resources`]) and the dispatcher that stands in for
//! Lambda's SQS event source mapping ([`dispatcher`]). Used by the `dataflow` CLI and the tests.

pub mod dispatcher;
pub mod resources;

use dataflow_aws::Aws;
use dataflow_config::{AwsSettings, ConfigError, Env, FromEnv};
use dataflow_core::config::{AnalyticsConfig, EtlConfig};
use dataflow_ingest::IngestConfig;
use dataflow_search::config::SearchConfig;

/// Everything the local stack runs, read from one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    pub aws: AwsSettings,
    pub etl: EtlConfig,
    pub analytics: AnalyticsConfig,
    pub search: SearchConfig,
    pub ingest: IngestConfig,
    /// The API key table (`KEYS_TABLE`, default `dataflow-keys`).
    pub keys_table: String,
    /// `AUTH_MODE`: `keys` puts every route but `/health` and `/openapi.json` behind an API key
    /// on `dataflow serve` (the same check as the authorizer in AWS); `none` (the default for a
    /// bare `dataflow serve`; `infra/stack` sets `keys`) leaves them open.
    pub auth_keys: bool,
    /// SQS queue receiving the raw bucket's notifications (`ETL_QUEUE`); the local dispatcher
    /// polls it.
    pub etl_queue: String,
    /// SQS queue receiving the docs prefix's notifications locally (`DOCS_QUEUE`).
    pub docs_queue: String,
}

impl FromEnv for StackConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            aws: AwsSettings::from_env_vars(env)?,
            etl: EtlConfig::from_env_vars(env)?,
            analytics: AnalyticsConfig::from_env_vars(env)?,
            search: SearchConfig::from_env_vars(env)?,
            ingest: IngestConfig::from_env_vars(env)?,
            keys_table: env.table("KEYS_TABLE", "dataflow-keys")?,
            auth_keys: match env
                .string("AUTH_MODE", "none")
                .to_ascii_lowercase()
                .as_str()
            {
                "keys" => true,
                "none" => false,
                other => {
                    return Err(ConfigError::new(
                        "AUTH_MODE",
                        format!(
                        "{other:?}: expected keys or none (IAM and JWT are API Gateway's, in AWS)"
                    ),
                    ))
                }
            },
            etl_queue: env.string("ETL_QUEUE", "dataflow-raw-events"),
            docs_queue: env.string("DOCS_QUEUE", "dataflow-docs-events"),
        })
    }
}

impl StackConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(&Env::from_env())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_env_vars(&Env::from_lookup(get))
    }

    pub fn raw_bucket(&self) -> &str {
        &self.etl.lake.raw_bucket
    }

    pub fn checkpoint_table(&self) -> &str {
        &self.etl.lake.checkpoint_table
    }
}

/// A client for every service the stack uses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub aws: Aws,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub firehose: aws_sdk_firehose::Client,
}

impl Clients {
    pub async fn new(cfg: &StackConfig) -> Self {
        let aws = Aws::load(&cfg.aws).await;
        Self {
            s3: aws.s3(),
            dynamodb: aws.dynamodb(),
            sqs: aws.sqs(),
            firehose: aws.firehose(),
            aws,
        }
    }
}
