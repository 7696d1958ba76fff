//! A raw object's versions (the raw bucket is versioned) and restoring an earlier one: the undo
//! for a mistaken overwrite or delete. The restored bytes become the key's newest version, so the
//! bucket's notification hands them to the ETL, which counts them as any overwrite: the mistaken
//! version's counts leave the totals and the restored ones come back, exactly.

use dataflow_store::StoreError;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::events::clean_etag;
use crate::s3::{other, S3Store};

/// One version of a key, newest first in [`S3Store::versions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub version_id: String,
    pub etag: Option<String>,
    pub size: u64,
    pub last_modified_ms: Option<i64>,
    pub is_latest: bool,
    /// A delete marker: the key was deleted at this point.
    pub deleted: bool,
}

/// What to restore when no version is named: after a delete, the newest real version; after an
/// overwrite, the one before the current.
pub fn previous(versions: &[ObjectVersion]) -> Option<&ObjectVersion> {
    let current_is_data = versions.first().is_some_and(|v| v.is_latest && !v.deleted);
    versions
        .iter()
        .filter(|v| !v.deleted)
        .nth(usize::from(current_is_data))
}

/// Characters CopySource must escape: everything but unreserved characters and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl S3Store {
    /// Every version and delete marker of exactly `key`, newest first.
    pub async fn versions(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| other("ListObjectVersions", bucket, key, e))?;
            for v in page.versions() {
                if v.key() != Some(key) {
                    continue;
                }
                out.push(ObjectVersion {
                    version_id: v.version_id().unwrap_or("null").to_owned(),
                    etag: v.e_tag().map(clean_etag),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    last_modified_ms: v.last_modified().and_then(|t| t.to_millis().ok()),
                    is_latest: v.is_latest() == Some(true),
                    deleted: false,
                });
            }
            for m in page.delete_markers() {
                if m.key() != Some(key) {
                    continue;
                }
                out.push(ObjectVersion {
                    version_id: m.version_id().unwrap_or("null").to_owned(),
                    etag: None,
                    size: 0,
                    last_modified_ms: m.last_modified().and_then(|t| t.to_millis().ok()),
                    is_latest: m.is_latest() == Some(true),
                    deleted: true,
                });
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_owned);
                version_marker = page.next_version_id_marker().map(str::to_owned);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        // The latest first, then by time, newest first.
        out.sort_by(|a, b| {
            b.is_latest
                .cmp(&a.is_latest)
                .then(b.last_modified_ms.cmp(&a.last_modified_ms))
        });
        Ok(out)
    }

    /// Copies `version_id` of `key` over the key: its bytes become the newest version. Returns
    /// the new version's id (none where the bucket is not versioned).
    pub async fn restore_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let source = format!(
            "{}/{}?versionId={}",
            bucket,
            utf8_percent_encode(key, COPY_SOURCE),
            utf8_percent_encode(version_id, COPY_SOURCE)
        );
        let out = self
            .client
            .copy_object()
            .bucket(bucket)
            .key(key)
            .copy_source(source)
            .send()
            .await
            .map_err(|e| other("CopyObject", bucket, key, e))?;
        Ok(out.version_id().map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, latest: bool, deleted: bool) -> ObjectVersion {
        ObjectVersion {
            version_id: id.into(),
            etag: None,
            size: 0,
            last_modified_ms: None,
            is_latest: latest,
            deleted,
        }
    }

    #[test]
    fn the_previous_version_after_an_overwrite_or_a_delete() {
        // Overwritten: v2 current, v1 before it.
        assert_eq!(
            previous(&[v("v2", true, false), v("v1", false, false)]).map(|x| &x.version_id[..]),
            Some("v1")
        );
        // Deleted: a marker current, v2 the newest data.
        assert_eq!(
            previous(&[
                v("m", true, true),
                v("v2", false, false),
                v("v1", false, false)
            ])
            .map(|x| &x.version_id[..]),
            Some("v2")
        );
        assert_eq!(previous(&[v("v1", true, false)]), None);
        assert_eq!(previous(&[]), None);
    }
}
