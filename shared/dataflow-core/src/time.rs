//! Wall-clock helpers shared by the ETL, compaction and the sweep.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
