//! Source object identity and the output layout derived from it.

use sha2::{Digest, Sha256};

/// An object named by a notification (or a backfill listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    /// Without quotes. Notifications carry it; backfills take it from a listing.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            etag: None,
            version_id: None,
            size: None,
        }
    }

    /// The object's version identity: the S3 version id when versioning is on, else the ETag.
    pub fn version_tag(&self) -> Option<&str> {
        self.version_id
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "null")
            .or(self.etag.as_deref())
    }

    /// Checkpoint item key: one per source object version.
    pub fn checkpoint_id(&self) -> String {
        format!(
            "object#{}/{}#{}",
            self.bucket,
            self.key,
            self.version_tag().unwrap_or("")
        )
    }

    /// Identity of the key across its versions: where the key's current version is recorded.
    pub fn key_id(&self) -> String {
        format!("key#{}/{}", self.bucket, self.key)
    }

    /// Stable short id of (bucket, key, version): names every output of this object, so a re-run
    /// overwrites its own outputs instead of adding new ones.
    pub fn source_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.bucket.as_bytes());
        h.update([0]);
        h.update(self.key.as_bytes());
        h.update([0]);
        h.update(self.version_tag().unwrap_or("").as_bytes());
        hex::encode(&h.finalize()[..12])
    }
}

/// Normalizes an ETag as S3 returns it (`"abc"`) to the bare value.
pub fn clean_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_owned()
}

/// Whether a key names an input the ETL reads: JSON Lines, optionally gzip-compressed.
pub fn is_supported_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let k = k.strip_suffix(".gz").unwrap_or(&k);
    k.ends_with(".jsonl") || k.ends_with(".ndjson") || k.ends_with(".json")
}

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
    fn identity_uses_version_then_etag() {
        let mut o = ObjectRef::new("b", "k.jsonl");
        o.etag = Some("e1".into());
        let by_etag = o.source_id();
        assert_eq!(o.checkpoint_id(), "object#b/k.jsonl#e1");
        o.version_id = Some("null".into());
        assert_eq!(
            o.source_id(),
            by_etag,
            "the unversioned marker is not a version"
        );
        o.version_id = Some("v2".into());
        assert_ne!(o.source_id(), by_etag);
        assert_eq!(o.source_id().len(), 24);
    }

    #[test]
    fn supported_suffixes() {
        for k in ["a.jsonl", "a.NDJSON", "x/y.json", "a.jsonl.gz", "a.json.GZ"] {
            assert!(is_supported_key(k), "{k}");
        }
        for k in ["a.csv", "a.gz", "a.jsonl.zip", "folder/"] {
            assert!(!is_supported_key(k), "{k}");
        }
    }

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
        assert_eq!(clean_etag("\"d41d8\""), "d41d8");
    }
}
