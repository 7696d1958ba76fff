//! Where the ETL's outputs go in the lake bucket, and how readers find them again.

/// Where outputs go in the lake bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub aggregates_prefix: String,
    pub events_prefix: String,
    pub rejected_prefix: String,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            aggregates_prefix: "aggregates/daily/".into(),
            events_prefix: "events/".into(),
            rejected_prefix: "rejected/".into(),
        }
    }
}

impl Layout {
    pub fn aggregate_key(&self, date: &str, source_id: &str) -> String {
        format!(
            "{}event_date={date}/part-{source_id}.parquet",
            self.aggregates_prefix
        )
    }
    pub fn events_key(&self, date: &str, source_id: &str) -> String {
        format!(
            "{}event_date={date}/part-{source_id}.parquet",
            self.events_prefix
        )
    }
    pub fn rejected_key(&self, source_id: &str) -> String {
        format!("{}{source_id}.jsonl", self.rejected_prefix)
    }
    /// Where every date partition of the aggregates starts (`aggregates/daily/event_date=`):
    /// listing it leaves out the archive of compacted partials.
    pub fn partitions_prefix(&self) -> String {
        format!("{}event_date=", self.aggregates_prefix)
    }
    /// Where the monthly rollups and their catalog live (`crate::rollup`): `_`-prefixed like the
    /// archive, so Hive-style readers of the aggregates skip it.
    pub fn rollup_prefix(&self) -> String {
        format!("{}_rollup/", self.aggregates_prefix)
    }
    /// Where compaction keeps the partials a compacted file covers: under an `_`-prefixed folder,
    /// which Hive-style readers (Athena's projection, Spark, DuckDB globs) skip.
    pub fn archived_aggregate_key(&self, date: &str, name: &str) -> String {
        format!(
            "{}_sources/event_date={date}/{name}.parquet",
            self.aggregates_prefix
        )
    }
    pub fn archive_prefix(&self, date: &str) -> String {
        format!("{}_sources/event_date={date}/", self.aggregates_prefix)
    }
    /// Parses `event_date=YYYY-MM-DD` out of an aggregate key (in a partition or the archive).
    pub fn date_of_aggregate_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.aggregates_prefix.as_str())?;
        let rest = rest.strip_prefix("_sources/").unwrap_or(rest);
        let rest = rest.strip_prefix("event_date=")?;
        let (date, _) = rest.split_once('/')?;
        Some(date)
    }
    pub fn prefixes(&self) -> [&str; 3] {
        [
            &self.aggregates_prefix,
            &self.events_prefix,
            &self.rejected_prefix,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keys() {
        let l = Layout::default();
        let k = l.aggregate_key("2024-01-02", "abc");
        assert_eq!(k, "aggregates/daily/event_date=2024-01-02/part-abc.parquet");
        assert_eq!(l.date_of_aggregate_key(&k), Some("2024-01-02"));
        let archived = l.archived_aggregate_key("2024-01-02", "part-abc");
        assert_eq!(
            archived,
            "aggregates/daily/_sources/event_date=2024-01-02/part-abc.parquet"
        );
        assert_eq!(l.date_of_aggregate_key(&archived), Some("2024-01-02"));
        assert!(!archived.starts_with(&l.partitions_prefix()));
    }
}
