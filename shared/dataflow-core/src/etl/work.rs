//! What the ETL is asked to do, already read out of its envelope (`dataflow-aws`'s `events`
//! module turns an invocation into these; the CLI builds them directly).

use crate::lake::source::ObjectRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Objects to process, delivered directly (an S3 notification, an EventBridge event, a
    /// backfill).
    Objects(Vec<ObjectRef>),
    /// A batch of queued messages: each message's objects, or why the message could not be read.
    Messages(Vec<QueuedMessage>),
    /// The hourly schedule: sweep, then compact the lake and refresh the rollups.
    Compact,
    /// The frequent schedule: take over dead attempts, finish removing replaced versions'
    /// outputs.
    Sweep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub message_id: String,
    /// The raw body and the queue it came from: what a deferred message is sent again with.
    pub body: String,
    pub queue_arn: String,
    pub objects: Result<Vec<ObjectRef>, String>,
}
