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

    /// The object as it is in the store now: its ETag and size from a HEAD, `None` when it is
    /// gone. What the ETL does for a reference without an ETag, and how tests name the version
    /// they just wrote.
    pub async fn current(
        store: &dyn dataflow_store::ObjectStore,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Self>, dataflow_store::StoreError> {
        Ok(store.head(bucket, key).await?.map(|meta| Self {
            etag: meta.etag,
            size: Some(meta.size),
            ..Self::new(bucket, key)
        }))
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

/// Whether a key names an input the ETL reads: JSON Lines, optionally gzip-compressed.
pub fn is_supported_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let k = k.strip_suffix(".gz").unwrap_or(&k);
    k.ends_with(".jsonl") || k.ends_with(".ndjson") || k.ends_with(".json")
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
}
