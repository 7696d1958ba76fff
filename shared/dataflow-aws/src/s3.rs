use crate::events::clean_etag;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use dataflow_store::{Body, ObjectMeta, ObjectReader, ObjectStore, StoreError};
use tokio_util::io::SyncIoBridge;

use crate::{describe, status_of};

/// [`ObjectStore`] over S3 (or any S3-compatible endpoint).
#[derive(Clone, Debug)]
pub struct S3Store {
    pub(crate) client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// The object's bytes, or those of `range` (an HTTP `Range` value); `None` when missing.
    async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        range: Option<String>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let req = self.client.get_object().bucket(bucket).key(key);
        match req.set_range(range).send().await {
            Ok(o) => {
                let bytes = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| other("GET body", bucket, key, e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            // A range that starts past the end: nothing there, as a slice of the object says.
            Err(e) if status_of(&e) == Some(416) => Ok(Some(Vec::new())),
            Err(e) => Err(other("GET", bucket, key, e)),
        }
    }
}

pub(crate) fn other<E: std::error::Error + Send + Sync + 'static>(
    context: &str,
    bucket: &str,
    key: &str,
    e: E,
) -> StoreError {
    let text = format!("{context} s3://{bucket}/{key}: {}", describe(&e));
    StoreError::failed(text, e)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().map(clean_etag),
                last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(other("HEAD", bucket, key, e)),
        }
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ObjectReader, StoreError> {
        let req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(etag.map(|e| format!("\"{e}\"")));
        match req.send().await {
            Ok(o) => {
                // The blocking core reads through this bridge on a blocking thread; the body is
                // streamed, never buffered whole.
                let reader = Box::pin(o.body.into_async_read());
                Ok(Box::new(SyncIoBridge::new(reader)))
            }
            Err(e) => match status_of(&e) {
                Some(404) => Err(StoreError::NotFound {
                    bucket: bucket.into(),
                    key: key.into(),
                }),
                Some(412) => Err(StoreError::Changed {
                    bucket: bucket.into(),
                    key: key.into(),
                }),
                _ => Err(other("GET", bucket, key, e)),
            },
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.fetch(bucket, key, None).await
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let range = format!("bytes={offset}-{}", offset.saturating_add(len - 1));
        self.fetch(bucket, key, Some(range)).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let stream = match body {
            Body::Bytes(b) => ByteStream::from(b),
            Body::File(p) => ByteStream::from_path(&p)
                .await
                .map_err(|e| other("reading upload file for", bucket, key, e))?,
        };
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(stream)
            .send()
            .await
            .map_err(|e| other("PUT", bucket, key, e))?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| other("DELETE", bucket, key, e))?;
        Ok(())
    }

    async fn ping(&self, bucket: &str) -> Result<(), StoreError> {
        self.client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| other("LIST", bucket, "", e))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.list_from(bucket, prefix, None).await
    }

    async fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        self.list_from(bucket, prefix, Some(start_after)).await
    }
}

impl S3Store {
    /// ListObjectsV2 over every page, from after `start_after` when given.
    async fn list_from(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| other("LIST", bucket, prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectMeta {
                    key: key.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(clean_etag),
                    last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }
}
