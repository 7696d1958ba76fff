//! The event-time window: events outside it are rejected as `timestamp_out_of_range`, by the
//! ETL and by `POST /events` alike (`ETL_MIN_DATE`, `ETL_MAX_FUTURE`).

use dataflow_config::{parse_duration_seconds, ConfigError, Env, FromEnv};

/// Default `ETL_MIN_DATE`: 2000-01-01 (day 10957). Devices with unset clocks report 1970.
pub const DEFAULT_MIN_DATE: i32 = 10_957;

/// Inclusive bounds on accepted event times, in microseconds since the epoch. A business rule
/// (no events from unset device clocks or far in the future), applied after the contract's own
/// checks so the rejection says which rule a line broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub min_us: i64,
    pub max_us: i64,
}

/// Where the window sits relative to processing time: from a fixed first day to some time
/// after now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRule {
    pub min_date: i32,
    pub max_future_seconds: u64,
}

impl WindowRule {
    pub fn at(&self, now_ms: i64) -> TimeWindow {
        TimeWindow {
            min_us: i64::from(self.min_date) * 86_400_000_000,
            max_us: now_ms
                .saturating_mul(1000)
                .saturating_add(self.max_future_seconds as i64 * 1_000_000),
        }
    }
}

impl TimeWindow {
    /// Everything the contract accepts.
    pub fn open() -> Self {
        Self {
            min_us: i64::MIN,
            max_us: i64::MAX,
        }
    }
    #[inline]
    pub fn contains(&self, us: i64) -> bool {
        (self.min_us..=self.max_us).contains(&us)
    }
}

impl FromEnv for WindowRule {
    /// `ETL_MIN_DATE` (`YYYY-MM-DD`, default 2000-01-01) and `ETL_MAX_FUTURE` (seconds, or with a
    /// unit `90s`, `15m`, `48h`, `2d`; default one day).
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        let min_date = match env.get("ETL_MIN_DATE") {
            None => DEFAULT_MIN_DATE,
            Some(v) => crate::parse_date(&v).ok_or_else(|| {
                ConfigError::new("ETL_MIN_DATE", format!("{v:?} is not a date YYYY-MM-DD"))
            })?,
        };
        let max_future_seconds = match env.get("ETL_MAX_FUTURE") {
            None => 86_400,
            Some(v) => parse_duration_seconds(&v)
                .filter(|s| *s <= 3_650 * 86_400)
                .ok_or_else(|| {
                    ConfigError::new(
                        "ETL_MAX_FUTURE",
                        format!("{v:?} is not a duration up to 3650d (seconds, or a number with s, m, h or d)"),
                    )
                })?,
        };
        Ok(Self {
            min_date,
            max_future_seconds,
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
