use aws_config::{BehaviorVersion, Region, SdkConfig};
use dataflow_config::{AwsSettings, Service};

/// The AWS side of a function: the shared SDK configuration and the endpoints, from which each
/// function builds only the clients it calls. Built once per container, reused by warm
/// invocations.
#[derive(Clone, Debug)]
pub struct Aws {
    shared: SdkConfig,
    settings: AwsSettings,
}

impl Aws {
    /// With any endpoint override (LocalStack, moto) the region defaults to us-east-1 and, when
    /// no credentials are configured, the emulators' conventional `test` credentials are used,
    /// so a local run needs no AWS account setup.
    pub async fn load(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if settings.emulated() {
            if settings.region.is_none() {
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
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        Self {
            shared: loader.load().await,
            settings: settings.clone(),
        }
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.shared
    }

    /// S3 with its endpoint (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let endpoint = self.settings.endpoint(Service::S3);
        let mut conf = aws_sdk_s3::config::Builder::from(&self.shared)
            // Virtual-host bucket names do not resolve on localhost: path style whenever S3's
            // endpoint is overridden.
            .force_path_style(endpoint.is_some());
        if let Some(e) = endpoint {
            conf = conf.endpoint_url(e);
        }
        aws_sdk_s3::Client::from_conf(conf.build())
    }

    #[cfg(any(feature = "dynamodb", feature = "keys"))]
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut conf = aws_sdk_dynamodb::config::Builder::from(&self.shared);
        if let Some(e) = self.settings.endpoint(Service::DynamoDb) {
            conf = conf.endpoint_url(e);
        }
        aws_sdk_dynamodb::Client::from_conf(conf.build())
    }

    #[cfg(feature = "sqs")]
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let mut conf = aws_sdk_sqs::config::Builder::from(&self.shared);
        if let Some(e) = self.settings.endpoint(Service::Sqs) {
            conf = conf.endpoint_url(e);
        }
        aws_sdk_sqs::Client::from_conf(conf.build())
    }

    #[cfg(feature = "firehose")]
    pub fn firehose(&self) -> aws_sdk_firehose::Client {
        let mut conf = aws_sdk_firehose::config::Builder::from(&self.shared);
        if let Some(e) = self.settings.endpoint(Service::Firehose) {
            conf = conf.endpoint_url(e);
        }
        aws_sdk_firehose::Client::from_conf(conf.build())
    }
}
