//! The ETL's and the Analytics API's own settings, read from environment variables and checked
//! at start with messages that name the variable. Every variable is documented in README.md.
//! AWS endpoints and the search functions' settings live with their code
//! ([`dataflow_config::AwsSettings`], `dataflow_search::config`), so a bad `ETL_CHUNK_BYTES`
//! never stops the search API.

use dataflow_config::{ConfigError, Env, FromEnv};
use dataflow_contract::window::WindowRule;

use crate::lake::layout::Layout;

pub const DEFAULT_RAW_BUCKET: &str = "dataflow-raw";
pub const DEFAULT_LAKE_BUCKET: &str = "dataflow-lake";
pub const DEFAULT_CHECKPOINT_TABLE: &str = "dataflow-checkpoints";
/// The CloudWatch namespace of the ETL's metrics (`METRICS_NAMESPACE`).
pub const DEFAULT_METRICS_NAMESPACE: &str = "DataFlow";

pub use dataflow_contract::window::DEFAULT_MIN_DATE;

/// The lake's names, read the same way by the ETL (which writes it) and the Analytics API (which
/// reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeNames {
    /// Bucket where raw JSON Lines land (`RAW_BUCKET`).
    pub raw_bucket: String,
    /// Bucket of the Parquet lake (`LAKE_BUCKET`).
    pub lake_bucket: String,
    /// DynamoDB checkpoint table (`CHECKPOINT_TABLE`).
    pub checkpoint_table: String,
    /// `AGGREGATES_PREFIX`, `EVENTS_PREFIX`, `REJECTED_PREFIX`.
    pub layout: Layout,
}

impl FromEnv for LakeNames {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            raw_bucket: env.bucket("RAW_BUCKET", DEFAULT_RAW_BUCKET)?,
            lake_bucket: env.bucket("LAKE_BUCKET", DEFAULT_LAKE_BUCKET)?,
            checkpoint_table: env.table("CHECKPOINT_TABLE", DEFAULT_CHECKPOINT_TABLE)?,
            layout: Layout {
                aggregates_prefix: env.prefix("AGGREGATES_PREFIX", "aggregates/daily/")?,
                events_prefix: env.prefix("EVENTS_PREFIX", "events/")?,
                rejected_prefix: env.prefix("REJECTED_PREFIX", "rejected/")?,
            },
        })
    }
}

/// The ETL function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtlConfig {
    pub lake: LakeNames,
    /// Only keys under this prefix are ETL input (`RAW_PREFIX`, default empty).
    pub raw_prefix: String,
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
    /// Where the `POST /events` delivery stream writes in the raw bucket (`FIREHOSE_PREFIX`,
    /// default `firehose/`): its objects are ETL input whatever their names end with (the
    /// emulators' have no extension).
    pub firehose_prefix: String,
    /// CloudWatch namespace of the ETL function's per-object metrics (`METRICS_NAMESPACE`,
    /// default `DataFlow`; the template sets `DataFlow/<stage>`).
    pub metrics_namespace: String,
    /// A date is compacted as soon as an object leaves this many aggregate files in its
    /// partition (`ETL_COMPACT_AT_FILES`, default 8; 0 leaves it to the hourly run).
    pub compact_at_files: usize,
}

impl FromEnv for EtlConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let window = WindowRule::from_env_vars(env)?;
        let cfg = Self {
            lake: LakeNames::from_env_vars(env)?,
            raw_prefix: env.prefix("RAW_PREFIX", "")?,
            lease_seconds: env.number("LEASE_SECONDS", 60, 3..=3_600)?,
            workers: env.number("ETL_WORKERS", cores, 1..=64)?,
            chunk_bytes: env.number("ETL_CHUNK_BYTES", 4 << 20, 4096..=(256 << 20))?,
            max_line_bytes: env.number("ETL_MAX_LINE_BYTES", 1 << 20, 256..=(64 << 20))?,
            write_events: env.flag("ETL_WRITE_EVENTS", true)?,
            min_date: window.min_date,
            max_future_seconds: window.max_future_seconds,
            firehose_prefix: env.prefix("FIREHOSE_PREFIX", "firehose/")?,
            metrics_namespace: namespace(env)?,
            compact_at_files: env.number("ETL_COMPACT_AT_FILES", 8, 0..=10_000)?,
        };
        cfg.check_no_retrigger()?;
        Ok(cfg)
    }
}

/// CloudWatch's namespace rule: 1 to 255 of letters, digits and `.-_/#: `, not starting `AWS/`.
fn namespace(env: &Env<'_>) -> Result<String, ConfigError> {
    let v = env.string("METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE);
    let ok = (1..=255).contains(&v.len())
        && !v.starts_with("AWS/")
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c));
    if ok {
        Ok(v)
    } else {
        Err(ConfigError::new(
            "METRICS_NAMESPACE",
            format!("'{v}' is not a CloudWatch namespace: 1-255 of letters, digits and .-_/#: (not AWS/...)"),
        ))
    }
}

impl EtlConfig {
    /// Outputs must never land where they would trigger the ETL again.
    fn check_no_retrigger(&self) -> Result<(), ConfigError> {
        if self.lake.raw_bucket != self.lake.lake_bucket {
            return Ok(());
        }
        for p in self.lake.layout.prefixes() {
            let overlaps = |input: &str| p.starts_with(input) || input.starts_with(p);
            if overlaps(&self.firehose_prefix) {
                return Err(ConfigError::new(
                    "FIREHOSE_PREFIX",
                    format!(
                        "RAW_BUCKET and LAKE_BUCKET are the same bucket, so FIREHOSE_PREFIX {:?} must not overlap the output prefix {p:?}",
                        self.firehose_prefix
                    ),
                ));
            }
            if overlaps(&self.raw_prefix) {
                return Err(ConfigError::new(
                    "RAW_PREFIX",
                    format!(
                        "RAW_BUCKET and LAKE_BUCKET are the same bucket, so RAW_PREFIX {:?} must not overlap the output prefix {p:?} (outputs would trigger the ETL again)",
                        self.raw_prefix
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The accepted event-time rule (`ETL_MIN_DATE`, `ETL_MAX_FUTURE`).
    pub fn window_rule(&self) -> WindowRule {
        WindowRule {
            min_date: self.min_date,
            max_future_seconds: self.max_future_seconds,
        }
    }
}

/// The Analytics API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsConfig {
    pub lake: LakeNames,
    /// How long the API trusts what it cached before revalidating (`CACHE_SECONDS`, default 30):
    /// new data shows up within this delay.
    pub cache_seconds: u64,
    /// The ETL's dead-letter queue, by URL or name (`ETL_DLQ`), whose depth
    /// `GET /pipeline/status` reports; unset, the status says so.
    pub dead_letter_queue: Option<String>,
}

impl FromEnv for AnalyticsConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            lake: LakeNames::from_env_vars(env)?,
            cache_seconds: dataflow_config::cache_seconds(env)?,
            dead_letter_queue: env.get("ETL_DLQ").filter(|v| !v.trim().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etl(pairs: &[(&str, &str)]) -> Result<EtlConfig, ConfigError> {
        EtlConfig::from_env_vars(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_match_the_template() {
        let c = etl(&[]).unwrap();
        assert_eq!(c.lake.raw_bucket, "dataflow-raw");
        assert_eq!(c.lake.lake_bucket, "dataflow-lake");
        assert_eq!(c.lake.checkpoint_table, "dataflow-checkpoints");
        assert_eq!(c.lake.layout, Layout::default());
        assert_eq!(c.lease_seconds, 60);
        assert_eq!(c.compact_at_files, 8);
        assert_eq!(c.metrics_namespace, "DataFlow");
        assert!(c.write_events);
        let a = AnalyticsConfig::from_env_vars(&Env::from_pairs(&[])).unwrap();
        assert_eq!((a.lake, a.cache_seconds), (c.lake, 30));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            etl(&[("LAKE_BUCKET", "Bad_Bucket")]).unwrap_err().var,
            "LAKE_BUCKET"
        );
        assert_eq!(
            etl(&[("LEASE_SECONDS", "ten")]).unwrap_err().var,
            "LEASE_SECONDS"
        );
        assert_eq!(
            etl(&[("LEASE_SECONDS", "0")]).unwrap_err().var,
            "LEASE_SECONDS"
        );
        for bad in ["AWS/Lambda", "naïve", "a;b", &"n".repeat(256)] {
            assert_eq!(
                etl(&[("METRICS_NAMESPACE", bad)]).unwrap_err().var,
                "METRICS_NAMESPACE",
                "{bad}"
            );
        }
        assert_eq!(
            etl(&[("METRICS_NAMESPACE", "DataFlow/prod")])
                .unwrap()
                .metrics_namespace,
            "DataFlow/prod"
        );
        assert_eq!(
            etl(&[("ETL_WRITE_EVENTS", "maybe")]).unwrap_err().var,
            "ETL_WRITE_EVENTS"
        );
        assert_eq!(
            etl(&[("CHECKPOINT_TABLE", "a b")]).unwrap_err().var,
            "CHECKPOINT_TABLE"
        );
        let e = etl(&[("RAW_BUCKET", "same"), ("LAKE_BUCKET", "same")]).unwrap_err();
        assert_eq!(e.var, "RAW_PREFIX");
        assert!(e.to_string().contains("trigger the ETL again"));
        assert!(etl(&[
            ("RAW_BUCKET", "same"),
            ("LAKE_BUCKET", "same"),
            ("RAW_PREFIX", "incoming")
        ])
        .is_ok());
    }

    #[test]
    fn the_analytics_api_ignores_the_etls_settings() {
        // One function's bad setting must not stop another from starting.
        let env = Env::from_pairs(&[("ETL_CHUNK_BYTES", "lots"), ("CACHE_SECONDS", "5")]);
        assert_eq!(
            EtlConfig::from_env_vars(&env).unwrap_err().var,
            "ETL_CHUNK_BYTES"
        );
        assert_eq!(
            AnalyticsConfig::from_env_vars(&env).unwrap().cache_seconds,
            5
        );
    }

    #[test]
    fn event_time_window() {
        let c = etl(&[]).unwrap();
        assert_eq!(crate::event::format_date(c.min_date), "2000-01-01");
        assert_eq!(c.max_future_seconds, 86_400);
        let c = etl(&[("ETL_MIN_DATE", "1990-06-01"), ("ETL_MAX_FUTURE", "48h")]).unwrap();
        assert_eq!(crate::event::format_date(c.min_date), "1990-06-01");
        assert_eq!(c.max_future_seconds, 172_800);
        let w = c.window_rule().at(1_000);
        assert_eq!(w.max_us, 1_000_000 + 172_800_000_000);
        assert_eq!(w.min_us, i64::from(c.min_date) * 86_400_000_000);
        assert_eq!(
            etl(&[("ETL_MAX_FUTURE", "900")])
                .unwrap()
                .max_future_seconds,
            900
        );
        for bad in ["soon", "5w", "-1d", "99999d"] {
            assert_eq!(
                etl(&[("ETL_MAX_FUTURE", bad)]).unwrap_err().var,
                "ETL_MAX_FUTURE"
            );
        }
        assert_eq!(
            etl(&[("ETL_MIN_DATE", "2000-13-01")]).unwrap_err().var,
            "ETL_MIN_DATE"
        );
    }

    #[test]
    fn prefixes_become_folders() {
        let c = etl(&[("EVENTS_PREFIX", "curated")]).unwrap();
        assert_eq!(c.lake.layout.events_prefix, "curated/");
    }
}
