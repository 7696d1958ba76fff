//! The ingest function's settings.

use dataflow_config::{ConfigError, Env, FromEnv};
use dataflow_contract::window::WindowRule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The Firehose delivery stream (`EVENTS_STREAM`, default `dataflow-events`).
    pub stream: String,
    /// The event-time window (`ETL_MIN_DATE`, `ETL_MAX_FUTURE`), as the ETL applies it.
    pub window: WindowRule,
}

impl FromEnv for IngestConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        let stream = env.string("EVENTS_STREAM", "dataflow-events");
        let ok = (1..=64).contains(&stream.len())
            && stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return Err(ConfigError::new(
                "EVENTS_STREAM",
                format!("{stream:?} is not a valid delivery stream name"),
            ));
        }
        Ok(Self {
            stream,
            window: WindowRule::from_env_vars(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let c = IngestConfig::from_env_vars(&Env::from_pairs(&[])).unwrap();
        assert_eq!(c.stream, "dataflow-events");
        assert_eq!(
            (c.window.min_date, c.window.max_future_seconds),
            (10_957, 86_400)
        );
        let bad = |k, v| {
            IngestConfig::from_env_vars(&Env::from_pairs(&[(k, v)]))
                .unwrap_err()
                .var
        };
        assert_eq!(bad("EVENTS_STREAM", "has space"), "EVENTS_STREAM");
        assert_eq!(bad("ETL_MAX_FUTURE", "soon"), "ETL_MAX_FUTURE");
        // The ETL's other settings are not the ingest function's concern.
        assert!(IngestConfig::from_env_vars(&Env::from_pairs(&[("ETL_CHUNK_BYTES", "x")])).is_ok());
    }
}
