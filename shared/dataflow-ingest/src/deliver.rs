//! Handing accepted events to the delivery stream: packed into as few records as the stream
//! takes (so a typical request is one record, delivered whole or not at all), sent in calls the
//! stream accepts, failed records sent again with a backoff, and a clear error when they still
//! fail.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::MAX_EVENT_BYTES;

/// Most records in one call (Firehose `PutRecordBatch`).
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes in one call (Firehose `PutRecordBatch`: 4 MiB).
pub const MAX_BYTES_PER_CALL: usize = 4 << 20;
/// Attempts per record before the request fails.
pub const ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SinkError {
    pub context: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Where accepted events go: a delivery stream that buffers them into objects in the raw bucket.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Sends `records` (at most [`MAX_RECORDS_PER_CALL`], [`MAX_BYTES_PER_CALL`] in all) and
    /// returns the positions of the records the stream did not take, to be sent again. An error
    /// means none was taken.
    async fn put(&self, records: &[Vec<u8>]) -> Result<Vec<usize>, SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Some records were still refused after every attempt. With one record per request (any
    /// request up to 1,000 KiB of events) nothing of the request was delivered.
    #[error("the delivery stream refused {failed} of {records} record(s) after {ATTEMPTS} attempts: {last}")]
    Refused {
        failed: usize,
        records: usize,
        last: String,
    },
}

/// Packs lines (each ending in `\n`, each at most [`MAX_EVENT_BYTES`]) into records of at most
/// [`MAX_EVENT_BYTES`], in order. The stream joins records as they come, so the objects it writes
/// are JSON Lines.
pub fn pack(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        match records.last_mut() {
            Some(r) if r.len() + line.len() <= MAX_EVENT_BYTES => r.extend_from_slice(&line),
            _ => records.push(line),
        }
    }
    records
}

/// Sends every record, in calls the stream accepts, retrying refused ones.
pub async fn deliver(sink: &dyn EventSink, records: Vec<Vec<u8>>) -> Result<(), DeliveryError> {
    let total = records.len();
    let mut pending = records;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // 50, 100, 200 ms: the stream throttles per second.
            tokio::time::sleep(Duration::from_millis(50 << (attempt - 1))).await;
        }
        let mut refused = Vec::new();
        for call in calls(&pending) {
            let batch = &pending[call.clone()];
            match sink.put(batch).await {
                Ok(failed) => {
                    if !failed.is_empty() {
                        last = format!("{} record(s) refused in one call", failed.len());
                    }
                    refused.extend(failed.into_iter().filter_map(|i| batch.get(i).cloned()));
                }
                Err(e) => {
                    last = e.to_string();
                    refused.extend(batch.iter().cloned());
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        tracing::warn!(attempt, refused = refused.len(), error = %last, "delivery stream refused records; retrying");
        pending = refused;
    }
    Err(DeliveryError::Refused {
        failed: pending.len(),
        records: total,
        last,
    })
}

/// Ranges of `records` that fit one call each.
fn calls(records: &[Vec<u8>]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        if i > start && (i - start == MAX_RECORDS_PER_CALL || bytes + r.len() > MAX_BYTES_PER_CALL)
        {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += r.len();
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    out
}

/// Keeps what it is sent (tests, benchmarks); can refuse the first `refuse` records it sees.
#[derive(Default)]
pub struct MemorySink {
    pub records: Mutex<Vec<Vec<u8>>>,
    pub calls: Mutex<usize>,
    /// Refuse this many records (one per call) before taking any.
    pub refuse: Mutex<usize>,
    /// Fail every call.
    pub down: bool,
}

#[async_trait]
impl EventSink for MemorySink {
    async fn put(&self, records: &[Vec<u8>]) -> Result<Vec<usize>, SinkError> {
        fn lock_err<T>(_: T) -> SinkError {
            SinkError {
                context: "memory sink lock poisoned".into(),
                source: None,
            }
        }
        *self.calls.lock().map_err(lock_err)? += 1;
        if self.down {
            return Err(SinkError {
                context: "the stream is down".into(),
                source: None,
            });
        }
        let mut refuse = self.refuse.lock().map_err(lock_err)?;
        let mut kept = self.records.lock().map_err(lock_err)?;
        let mut failed = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if *refuse > 0 && failed.is_empty() {
                *refuse -= 1;
                failed.push(i);
            } else {
                kept.push(r.clone());
            }
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Vec<u8> {
        let mut v = vec![b'x'; n - 1];
        v.push(b'\n');
        v
    }

    #[test]
    fn packing_keeps_order_and_fills_records() {
        let lines: Vec<Vec<u8>> = (0..500).map(|_| line(150)).collect();
        let packed = pack(lines.clone());
        assert_eq!(packed.len(), 1, "a 500-event batch is one record");
        assert_eq!(packed[0], lines.concat());
        let big: Vec<Vec<u8>> = (0..5).map(|_| line(400 * 1024)).collect();
        let packed = pack(big);
        assert_eq!(
            packed.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![800 * 1024, 800 * 1024, 400 * 1024]
        );
        assert!(pack(Vec::new()).is_empty());
    }

    #[test]
    fn calls_respect_the_stream_limits() {
        let small: Vec<Vec<u8>> = (0..1201).map(|_| line(10)).collect();
        assert_eq!(calls(&small), vec![0..500, 500..1000, 1000..1201]);
        let big: Vec<Vec<u8>> = (0..9).map(|_| line(1000 * 1024)).collect();
        // Four 1,000 KiB records fit 4 MiB; a fifth would not.
        assert_eq!(calls(&big), vec![0..4, 4..8, 8..9]);
    }

    #[tokio::test]
    async fn refused_records_are_sent_again_in_order_of_need() {
        let sink = MemorySink::default();
        *sink.refuse.lock().unwrap() = 2;
        let records: Vec<Vec<u8>> = (0..3).map(|i| format!("{i}\n").into_bytes()).collect();
        deliver(&sink, records).await.unwrap();
        let mut got = sink.records.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![b"0\n".to_vec(), b"1\n".to_vec(), b"2\n".to_vec()]);
        assert_eq!(*sink.calls.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_stream_that_stays_down_fails_the_request() {
        let sink = MemorySink {
            down: true,
            ..MemorySink::default()
        };
        let err = deliver(&sink, vec![b"a\n".to_vec()]).await.unwrap_err();
        assert!(matches!(
            err,
            DeliveryError::Refused {
                failed: 1,
                records: 1,
                ..
            }
        ));
        assert_eq!(*sink.calls.lock().unwrap(), ATTEMPTS);
        assert!(sink.records.lock().unwrap().is_empty());
    }
}
