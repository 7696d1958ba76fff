//! Configuration from environment variables: one typed struct, validated at start with messages
//! that name the variable. Every variable is documented in README.md.

use std::collections::HashMap;

use crate::layout::Layout;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bucket where raw JSON Lines land (`RAW_BUCKET`).
    pub raw_bucket: String,
    /// Only keys under this prefix are ETL input (`RAW_PREFIX`, default empty).
    pub raw_prefix: String,
    /// Bucket of the Parquet lake (`LAKE_BUCKET`).
    pub lake_bucket: String,
    /// Bucket of the search index (`INDEX_BUCKET`).
    pub index_bucket: String,
    /// Folder of the Markdown corpus in the index bucket (`DOCS_PREFIX`, default `docs/`).
    pub docs_prefix: String,
    /// Folder of index objects and the manifest (`INDEX_PREFIX`, default `index/`).
    pub index_prefix: String,
    /// SQS queue receiving the docs prefix's notifications locally (`DOCS_QUEUE`).
    pub docs_queue: String,
    /// DynamoDB checkpoint table (`CHECKPOINT_TABLE`).
    pub checkpoint_table: String,
    /// SQS queue receiving the raw bucket's notifications (`ETL_QUEUE`); the local dispatcher
    /// polls it.
    pub etl_queue: String,
    pub layout: Layout,
    /// Lease of a claim on one object (`LEASE_SECONDS`, default 60): a heartbeat renews it every
    /// third of it while the object is processed, and the sweep takes over a claim nobody renewed
    /// for a whole lease (the attempt died).
    pub lease_seconds: u64,
    /// Worker threads for parsing (`ETL_WORKERS`, default: available cores).
    pub workers: usize,
    /// Read chunk size in bytes (`ETL_CHUNK_BYTES`).
    pub chunk_bytes: usize,
    /// Lines longer than this are rejected (`ETL_MAX_LINE_BYTES`).
    pub max_line_bytes: usize,
    /// Write curated events Parquet as well as aggregates (`ETL_WRITE_EVENTS`).
    pub write_events: bool,
    /// Events before this day are rejected as `timestamp_out_of_range` (`ETL_MIN_DATE`,
    /// `YYYY-MM-DD`, default 2000-01-01).
    pub min_date: i32,
    /// Events later than this many seconds after processing time are rejected as
    /// `timestamp_out_of_range` (`ETL_MAX_FUTURE`: seconds, or with a unit `90s`, `15m`, `48h`,
    /// `2d`; default one day).
    pub max_future_seconds: u64,
    /// How long the APIs trust what they cached before revalidating (`CACHE_SECONDS`): new data
    /// shows up within this delay.
    pub cache_seconds: u64,
    /// Endpoint override for every AWS client (`AWS_ENDPOINT_URL`): LocalStack or moto.
    pub endpoint_url: Option<String>,
    /// Per-service overrides, the AWS SDKs' standard `AWS_ENDPOINT_URL_<SERVICE>` variables:
    /// each wins over `AWS_ENDPOINT_URL` for its service (e.g. S3 and SQS from LocalStack,
    /// DynamoDB from moto).
    pub service_endpoints: ServiceEndpoints,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); defaults to us-east-1 when an endpoint is set.
    pub region: Option<String>,
}

/// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    pub s3: Option<String>,
    pub dynamodb: Option<String>,
    pub sqs: Option<String>,
}

/// The AWS services the product calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    DynamoDb,
    Sqs,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::S3, Service::DynamoDb, Service::Sqs];

    /// The SDKs' name for it in `AWS_ENDPOINT_URL_<NAME>`.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::S3 => "AWS_ENDPOINT_URL_S3",
            Service::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
            Service::Sqs => "AWS_ENDPOINT_URL_SQS",
        }
    }
}

impl Config {
    /// The endpoint a service's client uses: its own override, else `AWS_ENDPOINT_URL`, else
    /// AWS itself (`None`).
    pub fn endpoint(&self, service: Service) -> Option<&str> {
        let own = match service {
            Service::S3 => &self.service_endpoints.s3,
            Service::DynamoDb => &self.service_endpoints.dynamodb,
            Service::Sqs => &self.service_endpoints.sqs,
        };
        own.as_deref().or(self.endpoint_url.as_deref())
    }

    /// Whether any client talks to an emulator rather than AWS.
    pub fn emulated(&self) -> bool {
        Service::ALL.iter().any(|s| self.endpoint(*s).is_some())
    }
}

pub const DEFAULT_RAW_BUCKET: &str = "dataflow-raw";
pub const DEFAULT_LAKE_BUCKET: &str = "dataflow-lake";
pub const DEFAULT_INDEX_BUCKET: &str = "dataflow-index";
pub const DEFAULT_CHECKPOINT_TABLE: &str = "dataflow-checkpoints";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|k| vars.get(k).cloned())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bucket = |var: &'static str, default: &str| -> Result<String, ConfigError> {
            let v = get(var).unwrap_or_else(|| default.to_owned());
            validate_bucket(&v).map_err(|message| ConfigError { var, message })?;
            Ok(v)
        };
        let prefix = |var: &'static str, default: &str| -> Result<String, ConfigError> {
            let v = get(var).unwrap_or_else(|| default.to_owned());
            if v.starts_with('/') {
                return Err(ConfigError {
                    var,
                    message: format!("{v:?} must not start with '/'"),
                });
            }
            // Prefixes are folders: make "events" mean "events/".
            Ok(if v.is_empty() || v.ends_with('/') {
                v
            } else {
                format!("{v}/")
            })
        };
        fn number<T>(
            var: &'static str,
            v: Option<String>,
            default: T,
            range: std::ops::RangeInclusive<T>,
        ) -> Result<T, ConfigError>
        where
            T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
        {
            let n = match v {
                None => default,
                Some(s) => s.parse::<T>().map_err(|_| ConfigError {
                    var,
                    message: format!("{s:?} is not a whole number"),
                })?,
            };
            if !range.contains(&n) {
                return Err(ConfigError {
                    var,
                    message: format!("{n} is outside {}..={}", range.start(), range.end()),
                });
            }
            Ok(n)
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let write_events = match get("ETL_WRITE_EVENTS").as_deref() {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(ConfigError {
                    var: "ETL_WRITE_EVENTS",
                    message: format!("{other:?} is not true or false"),
                })
            }
        };
        let min_date = match get("ETL_MIN_DATE") {
            None => DEFAULT_MIN_DATE,
            Some(v) => crate::event::parse_date(&v).ok_or_else(|| ConfigError {
                var: "ETL_MIN_DATE",
                message: format!("{v:?} is not a date YYYY-MM-DD"),
            })?,
        };
        let max_future_seconds = match get("ETL_MAX_FUTURE") {
            None => 86_400,
            Some(v) => parse_duration_seconds(&v)
                .filter(|s| *s <= 3_650 * 86_400)
                .ok_or_else(|| ConfigError {
                    var: "ETL_MAX_FUTURE",
                    message: format!(
                        "{v:?} is not a duration up to 3650d (seconds, or a number with s, m, h or d)"
                    ),
                })?,
        };
        let url = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match get(var) {
                Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
                    Err(ConfigError {
                        var,
                        message: format!("{e:?} is not an http(s) URL"),
                    })
                }
                v => Ok(v),
            }
        };
        let endpoint_url = url("AWS_ENDPOINT_URL")?;
        let service_endpoints = ServiceEndpoints {
            s3: url(Service::S3.env_var())?,
            dynamodb: url(Service::DynamoDb.env_var())?,
            sqs: url(Service::Sqs.env_var())?,
        };
        let cfg = Config {
            raw_bucket: bucket("RAW_BUCKET", DEFAULT_RAW_BUCKET)?,
            raw_prefix: prefix("RAW_PREFIX", "")?,
            lake_bucket: bucket("LAKE_BUCKET", DEFAULT_LAKE_BUCKET)?,
            index_bucket: bucket("INDEX_BUCKET", DEFAULT_INDEX_BUCKET)?,
            docs_prefix: prefix("DOCS_PREFIX", "docs/")?,
            index_prefix: prefix("INDEX_PREFIX", "index/")?,
            docs_queue: get("DOCS_QUEUE").unwrap_or_else(|| "dataflow-docs-events".into()),
            checkpoint_table: {
                let t = get("CHECKPOINT_TABLE").unwrap_or_else(|| DEFAULT_CHECKPOINT_TABLE.into());
                let ok = (3..=255).contains(&t.len())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                if !ok {
                    return Err(ConfigError {
                        var: "CHECKPOINT_TABLE",
                        message: format!("{t:?} is not a valid DynamoDB table name"),
                    });
                }
                t
            },
            etl_queue: get("ETL_QUEUE").unwrap_or_else(|| "dataflow-raw-events".into()),
            layout: Layout {
                aggregates_prefix: prefix("AGGREGATES_PREFIX", "aggregates/daily/")?,
                events_prefix: prefix("EVENTS_PREFIX", "events/")?,
                rejected_prefix: prefix("REJECTED_PREFIX", "rejected/")?,
            },
            lease_seconds: number("LEASE_SECONDS", get("LEASE_SECONDS"), 60, 3..=3_600)?,
            workers: number("ETL_WORKERS", get("ETL_WORKERS"), cores, 1..=64)?,
            chunk_bytes: number(
                "ETL_CHUNK_BYTES",
                get("ETL_CHUNK_BYTES"),
                4 << 20,
                4096..=(256 << 20),
            )?,
            max_line_bytes: number(
                "ETL_MAX_LINE_BYTES",
                get("ETL_MAX_LINE_BYTES"),
                1 << 20,
                256..=(64 << 20),
            )?,
            write_events,
            min_date,
            max_future_seconds,
            cache_seconds: number("CACHE_SECONDS", get("CACHE_SECONDS"), 30, 0..=3600)?,
            endpoint_url,
            service_endpoints,
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
        };
        cfg.check_no_retrigger()?;
        Ok(cfg)
    }

    /// Outputs must never land where they would trigger the ETL (or the index builder) again.
    fn check_no_retrigger(&self) -> Result<(), ConfigError> {
        if self.docs_prefix.starts_with(&self.index_prefix)
            || self.index_prefix.starts_with(&self.docs_prefix)
        {
            return Err(ConfigError {
                var: "INDEX_PREFIX",
                message: format!(
                    "INDEX_PREFIX {:?} must not overlap DOCS_PREFIX {:?} (publishing would trigger a rebuild)",
                    self.index_prefix, self.docs_prefix
                ),
            });
        }
        if self.raw_bucket != self.lake_bucket {
            return Ok(());
        }
        for p in self.layout.prefixes() {
            if p.starts_with(&self.raw_prefix) || self.raw_prefix.starts_with(p) {
                return Err(ConfigError {
                    var: "RAW_PREFIX",
                    message: format!(
                        "RAW_BUCKET and LAKE_BUCKET are the same bucket, so RAW_PREFIX {:?} must not overlap the output prefix {p:?} (outputs would trigger the ETL again)",
                        self.raw_prefix
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn process_options(&self) -> crate::process::ProcessOptions {
        crate::process::ProcessOptions {
            workers: self.workers,
            chunk_bytes: self.chunk_bytes,
            max_line_bytes: self.max_line_bytes,
            max_raw_bytes: 1024,
            curated: self.write_events,
            window: crate::process::TimeWindow::open(),
        }
    }

    /// The accepted event-time rule (`ETL_MIN_DATE`, `ETL_MAX_FUTURE`).
    pub fn window_rule(&self) -> crate::process::WindowRule {
        crate::process::WindowRule {
            min_date: self.min_date,
            max_future_seconds: self.max_future_seconds,
        }
    }
}

/// Default `ETL_MIN_DATE`: 2000-01-01 (day 10957). Devices with unset clocks report 1970.
pub const DEFAULT_MIN_DATE: i32 = 10_957;

/// `3600`, `90s`, `15m`, `48h`, `2d` as seconds.
fn parse_duration_seconds(v: &str) -> Option<u64> {
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

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_template() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.raw_bucket, "dataflow-raw");
        assert_eq!(c.lake_bucket, "dataflow-lake");
        assert_eq!(c.checkpoint_table, "dataflow-checkpoints");
        assert_eq!(c.layout, Layout::default());
        assert_eq!(c.lease_seconds, 60);
        assert_eq!(
            (c.docs_prefix.as_str(), c.index_prefix.as_str()),
            ("docs/", "index/")
        );
        assert!(c.write_events);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            cfg(&[("LAKE_BUCKET", "Bad_Bucket")]).unwrap_err().var,
            "LAKE_BUCKET"
        );
        assert_eq!(
            cfg(&[("LEASE_SECONDS", "ten")]).unwrap_err().var,
            "LEASE_SECONDS"
        );
        assert_eq!(
            cfg(&[("LEASE_SECONDS", "0")]).unwrap_err().var,
            "LEASE_SECONDS"
        );
        assert_eq!(
            cfg(&[("ETL_WRITE_EVENTS", "maybe")]).unwrap_err().var,
            "ETL_WRITE_EVENTS"
        );
        assert_eq!(
            cfg(&[("AWS_ENDPOINT_URL", "localhost:4566")])
                .unwrap_err()
                .var,
            "AWS_ENDPOINT_URL"
        );
        let e = cfg(&[("RAW_BUCKET", "same"), ("LAKE_BUCKET", "same")]).unwrap_err();
        assert_eq!(e.var, "RAW_PREFIX");
        assert!(e.to_string().contains("trigger the ETL again"));
        assert_eq!(
            cfg(&[("DOCS_PREFIX", "index/docs")]).unwrap_err().var,
            "INDEX_PREFIX"
        );
        assert_eq!(
            cfg(&[("INDEX_PREFIX", "docs/index")]).unwrap_err().var,
            "INDEX_PREFIX"
        );
        assert!(cfg(&[
            ("RAW_BUCKET", "same"),
            ("LAKE_BUCKET", "same"),
            ("RAW_PREFIX", "incoming")
        ])
        .is_ok());
    }

    #[test]
    fn event_time_window() {
        let c = cfg(&[]).unwrap();
        assert_eq!(crate::event::format_date(c.min_date), "2000-01-01");
        assert_eq!(c.max_future_seconds, 86_400);
        let c = cfg(&[("ETL_MIN_DATE", "1990-06-01"), ("ETL_MAX_FUTURE", "48h")]).unwrap();
        assert_eq!(crate::event::format_date(c.min_date), "1990-06-01");
        assert_eq!(c.max_future_seconds, 172_800);
        let w = c.window_rule().at(1_000);
        assert_eq!(w.max_us, 1_000_000 + 172_800_000_000);
        assert_eq!(w.min_us, i64::from(c.min_date) * 86_400_000_000);
        assert_eq!(
            cfg(&[("ETL_MAX_FUTURE", "900")])
                .unwrap()
                .max_future_seconds,
            900
        );
        assert_eq!(
            cfg(&[("ETL_MAX_FUTURE", "2d")]).unwrap().max_future_seconds,
            172_800
        );
        for bad in ["soon", "5w", "-1d", "99999d"] {
            assert_eq!(
                cfg(&[("ETL_MAX_FUTURE", bad)]).unwrap_err().var,
                "ETL_MAX_FUTURE"
            );
        }
        assert_eq!(
            cfg(&[("ETL_MIN_DATE", "2000-13-01")]).unwrap_err().var,
            "ETL_MIN_DATE"
        );
    }

    #[test]
    fn per_service_endpoints_win_over_the_general_one() {
        let c = cfg(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4567"),
        ])
        .unwrap();
        assert_eq!(c.endpoint(Service::S3), Some("http://127.0.0.1:4566"));
        assert_eq!(c.endpoint(Service::Sqs), Some("http://127.0.0.1:4566"));
        assert_eq!(c.endpoint(Service::DynamoDb), Some("http://127.0.0.1:4567"));
        let only = cfg(&[("AWS_ENDPOINT_URL_S3", "http://localhost:9000")]).unwrap();
        assert_eq!(only.endpoint(Service::S3), Some("http://localhost:9000"));
        assert_eq!(only.endpoint(Service::DynamoDb), None);
        assert!(only.emulated() && !cfg(&[]).unwrap().emulated());
        assert_eq!(
            cfg(&[("AWS_ENDPOINT_URL_SQS", "localhost:1")])
                .unwrap_err()
                .var,
            "AWS_ENDPOINT_URL_SQS"
        );
    }

    #[test]
    fn prefixes_become_folders() {
        let c = cfg(&[("EVENTS_PREFIX", "curated")]).unwrap();
        assert_eq!(c.layout.events_prefix, "curated/");
    }
}
