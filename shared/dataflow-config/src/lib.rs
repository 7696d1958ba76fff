//! Settings from environment variables. Each function reads only its own settings (its config
//! struct lives next to its code); what they share lives here: [`Env`], typed readers whose
//! errors name the variable, and [`AwsSettings`], the endpoint and region every AWS client uses.
//! Every variable is documented in README.md.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// A source of variables: the process environment, or a map in tests. Values are trimmed and an
/// empty value counts as unset.
pub struct Env<'a> {
    get: Lookup<'a>,
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

impl<'a> Env<'a> {
    pub fn from_env() -> Self {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(move |k| vars.get(k).cloned())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self { get: Box::new(get) }
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::from_lookup(move |k| m.get(k).cloned())
    }

    pub fn get(&self, var: &str) -> Option<String> {
        (self.get)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// An S3 bucket name (the naming rules that matter for a clear early error).
    pub fn bucket(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let v = self.string(var, default);
        validate_bucket(&v).map_err(|m| ConfigError::new(var, m))?;
        Ok(v)
    }

    /// A key prefix, as a folder: `events` means `events/`.
    pub fn prefix(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let v = self.string(var, default);
        if v.starts_with('/') {
            return Err(ConfigError::new(
                var,
                format!("{v:?} must not start with '/'"),
            ));
        }
        Ok(if v.is_empty() || v.ends_with('/') {
            v
        } else {
            format!("{v}/")
        })
    }

    /// A whole number within `range`.
    pub fn number<T>(
        &self,
        var: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let n = match self.get(var) {
            None => default,
            Some(s) => s
                .parse::<T>()
                .map_err(|_| ConfigError::new(var, format!("{s:?} is not a whole number")))?,
        };
        if !range.contains(&n) {
            return Err(ConfigError::new(
                var,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            ));
        }
        Ok(n)
    }

    /// `true`/`1`/`yes` or `false`/`0`/`no`.
    pub fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError::new(
                var,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    /// An http(s) URL.
    pub fn url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(var) {
            Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => Err(
                ConfigError::new(var, format!("{e:?} is not an http(s) URL")),
            ),
            v => Ok(v),
        }
    }

    /// A DynamoDB table name.
    pub fn table(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let t = self.string(var, default);
        let ok = (3..=255).contains(&t.len())
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return Err(ConfigError::new(
                var,
                format!("{t:?} is not a valid DynamoDB table name"),
            ));
        }
        Ok(t)
    }
}

/// `CACHE_SECONDS` (default 30, at most an hour): how long an API trusts what it cached (lake
/// listings, totals, the index manifest) before revalidating; read the same way by every API.
pub fn cache_seconds(env: &Env<'_>) -> Result<u64, ConfigError> {
    env.number("CACHE_SECONDS", 30, 0..=3600)
}

/// Settings read from the environment by each function.
pub trait FromEnv: Sized {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError>;
}

/// Where the AWS clients go: the SDKs' own variables, read once for every function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Endpoint override for every AWS client (`AWS_ENDPOINT_URL`): LocalStack or moto.
    pub endpoint_url: Option<String>,
    /// Per-service overrides, the AWS SDKs' standard `AWS_ENDPOINT_URL_<SERVICE>` variables:
    /// each wins over `AWS_ENDPOINT_URL` for its service (e.g. S3 and SQS from LocalStack,
    /// DynamoDB from moto).
    pub service_endpoints: ServiceEndpoints,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); defaults to us-east-1 when an endpoint is set.
    pub region: Option<String>,
}

/// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS`,
/// `AWS_ENDPOINT_URL_FIREHOSE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    pub s3: Option<String>,
    pub dynamodb: Option<String>,
    pub sqs: Option<String>,
    pub firehose: Option<String>,
}

/// The AWS services the product calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    DynamoDb,
    Sqs,
    Firehose,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::S3,
        Service::DynamoDb,
        Service::Sqs,
        Service::Firehose,
    ];

    /// The SDKs' name for it in `AWS_ENDPOINT_URL_<NAME>`.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::S3 => "AWS_ENDPOINT_URL_S3",
            Service::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
            Service::Sqs => "AWS_ENDPOINT_URL_SQS",
            Service::Firehose => "AWS_ENDPOINT_URL_FIREHOSE",
        }
    }
}

impl FromEnv for AwsSettings {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint_url: env.url("AWS_ENDPOINT_URL")?,
            service_endpoints: ServiceEndpoints {
                s3: env.url(Service::S3.env_var())?,
                dynamodb: env.url(Service::DynamoDb.env_var())?,
                sqs: env.url(Service::Sqs.env_var())?,
                firehose: env.url(Service::Firehose.env_var())?,
            },
            region: env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION")),
        })
    }
}

impl AwsSettings {
    /// The endpoint a service's client uses: its own override, else `AWS_ENDPOINT_URL`, else
    /// AWS itself (`None`).
    pub fn endpoint(&self, service: Service) -> Option<&str> {
        let own = match service {
            Service::S3 => &self.service_endpoints.s3,
            Service::DynamoDb => &self.service_endpoints.dynamodb,
            Service::Sqs => &self.service_endpoints.sqs,
            Service::Firehose => &self.service_endpoints.firehose,
        };
        own.as_deref().or(self.endpoint_url.as_deref())
    }

    /// Whether any client talks to an emulator rather than AWS.
    pub fn emulated(&self) -> bool {
        Service::ALL.iter().any(|s| self.endpoint(*s).is_some())
    }
}

/// `3600`, `90s`, `15m`, `48h`, `2d` as seconds.
pub fn parse_duration_seconds(v: &str) -> Option<u64> {
    let (num, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 's'),
    };
    let n: u64 = num.trim().parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// S3 bucket naming rules (the subset that matters for a clear early error).
fn validate_bucket(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && ok_chars && ends_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid S3 bucket name (3-63 lowercase letters, digits, '-' or '.')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(pairs: &[(&str, &str)]) -> Result<AwsSettings, ConfigError> {
        AwsSettings::from_env_vars(&Env::from_pairs(pairs))
    }

    #[test]
    fn per_service_endpoints_win_over_the_general_one() {
        let c = aws(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4567"),
        ])
        .unwrap();
        assert_eq!(c.endpoint(Service::S3), Some("http://127.0.0.1:4566"));
        assert_eq!(c.endpoint(Service::Sqs), Some("http://127.0.0.1:4566"));
        assert_eq!(c.endpoint(Service::DynamoDb), Some("http://127.0.0.1:4567"));
        let only = aws(&[("AWS_ENDPOINT_URL_S3", "http://localhost:9000")]).unwrap();
        assert_eq!(only.endpoint(Service::S3), Some("http://localhost:9000"));
        assert_eq!(only.endpoint(Service::DynamoDb), None);
        assert!(only.emulated() && !aws(&[]).unwrap().emulated());
        assert_eq!(
            aws(&[("AWS_ENDPOINT_URL_SQS", "localhost:1")])
                .unwrap_err()
                .var,
            "AWS_ENDPOINT_URL_SQS"
        );
        assert_eq!(
            aws(&[("AWS_ENDPOINT_URL", "localhost:4566")])
                .unwrap_err()
                .var,
            "AWS_ENDPOINT_URL"
        );
    }

    #[test]
    fn readers_name_the_variable() {
        let env = Env::from_pairs(&[
            ("B", "Bad_Bucket"),
            ("N", "ten"),
            ("R", "0"),
            ("F", "maybe"),
            ("P", "curated"),
            ("S", "/abs"),
            ("T", "x"),
        ]);
        assert_eq!(env.bucket("B", "ok").unwrap_err().var, "B");
        assert_eq!(env.number("N", 1u64, 1..=9).unwrap_err().var, "N");
        assert_eq!(
            env.number("R", 1u64, 1..=9).unwrap_err().message,
            "0 is outside 1..=9"
        );
        assert_eq!(env.flag("F", true).unwrap_err().var, "F");
        assert_eq!(env.prefix("P", "").unwrap(), "curated/");
        assert_eq!(env.prefix("S", "").unwrap_err().var, "S");
        assert_eq!(env.table("T", "t").unwrap_err().var, "T");
        assert_eq!(env.number("unset", 7u64, 1..=9).unwrap(), 7);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_seconds("900"), Some(900));
        assert_eq!(parse_duration_seconds("2d"), Some(172_800));
        assert_eq!(parse_duration_seconds("15M"), Some(900));
        for bad in ["soon", "5w", "-1d", ""] {
            assert_eq!(parse_duration_seconds(bad), None, "{bad}");
        }
    }
}
