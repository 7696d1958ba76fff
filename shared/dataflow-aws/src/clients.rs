use aws_config::{BehaviorVersion, Region, SdkConfig};
use dataflow_core::config::{Config, Service};

/// Shared SDK configuration. With any endpoint override (LocalStack, moto) the region defaults
/// to us-east-1 and, when no credentials are configured, the emulators' conventional `test`
/// credentials are used, so a local run needs no AWS account setup. Endpoints themselves are set
/// per client ([`Clients::new`]).
pub async fn sdk_config(cfg: &Config) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if cfg.emulated() {
        if cfg.region.is_none() {
            loader = loader.region(Region::new("us-east-1"));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
        {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "dataflow-local",
            ));
        }
    }
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}

/// The clients every function needs, built once per container and reused by warm invocations.
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// Each client with its own endpoint from the configuration: `AWS_ENDPOINT_URL_<SERVICE>`,
    /// else `AWS_ENDPOINT_URL`, else AWS. The configuration is the one source, so an endpoint
    /// given to `Config` (tests do) and one in the environment behave the same.
    pub async fn new(cfg: &Config) -> Self {
        let shared = sdk_config(cfg).await;
        let s3 = cfg.endpoint(Service::S3);
        let mut s3_conf = aws_sdk_s3::config::Builder::from(&shared)
            // Virtual-host bucket names do not resolve on localhost: path style whenever S3's
            // endpoint is overridden.
            .force_path_style(s3.is_some());
        if let Some(e) = s3 {
            s3_conf = s3_conf.endpoint_url(e);
        }
        let mut ddb_conf = aws_sdk_dynamodb::config::Builder::from(&shared);
        if let Some(e) = cfg.endpoint(Service::DynamoDb) {
            ddb_conf = ddb_conf.endpoint_url(e);
        }
        let mut sqs_conf = aws_sdk_sqs::config::Builder::from(&shared);
        if let Some(e) = cfg.endpoint(Service::Sqs) {
            sqs_conf = sqs_conf.endpoint_url(e);
        }
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_conf.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(ddb_conf.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs_conf.build()),
        }
    }
}
