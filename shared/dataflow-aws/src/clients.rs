use aws_config::{BehaviorVersion, Region, SdkConfig};
use dataflow_core::config::Config;

/// Shared SDK configuration. With an endpoint override (LocalStack, moto) the region defaults to
/// us-east-1 and, when no credentials are configured, the emulators' conventional `test`
/// credentials are used, so a local run needs no AWS account setup.
pub async fn sdk_config(cfg: &Config) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = &cfg.endpoint_url {
        loader = loader.endpoint_url(endpoint);
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
    pub async fn new(cfg: &Config) -> Self {
        let shared = sdk_config(cfg).await;
        Self::from_sdk_config(&shared, cfg.endpoint_url.is_some())
    }

    pub fn from_sdk_config(shared: &SdkConfig, endpoint_override: bool) -> Self {
        // Virtual-host bucket names do not resolve on localhost: path style whenever an endpoint
        // is set.
        let s3_conf = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(endpoint_override)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            dynamodb: aws_sdk_dynamodb::Client::new(shared),
            sqs: aws_sdk_sqs::Client::new(shared),
        }
    }
}
