//! The delivery port of `POST /events` over Kinesis Data Firehose (`PutRecordBatch`).

use async_trait::async_trait;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use dataflow_ingest::{EventSink, SinkError};

use crate::describe;

pub struct FirehoseSink {
    client: aws_sdk_firehose::Client,
    stream: String,
}

impl FirehoseSink {
    pub fn new(client: aws_sdk_firehose::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }
}

fn failed<E: std::error::Error + Send + Sync + 'static>(context: &str, e: E) -> SinkError {
    SinkError {
        context: format!("{context}: {}", describe(&e)),
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl EventSink for FirehoseSink {
    async fn put(&self, records: &[Vec<u8>]) -> Result<Vec<usize>, SinkError> {
        let records = records
            .iter()
            .map(|r| Record::builder().data(Blob::new(r.clone())).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed("building the records", e))?;
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| failed(&format!("PutRecordBatch {}", self.stream), e))?;
        if out.failed_put_count() == 0 {
            return Ok(Vec::new());
        }
        // Per record: an error code means this one was not taken (throttling, service errors).
        Ok(out
            .request_responses()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(i, _)| i)
            .collect())
    }
}
