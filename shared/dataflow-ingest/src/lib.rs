//! `POST /events` without AWS types: a request body becomes accepted events (checked by the ETL's
//! own contract, `dataflow-contract`) and per-event rejections ([`parse`]); accepted events are
//! packed into delivery-stream records ([`pack`]) and handed to an [`EventSink`] with retries
//! ([`deliver`]). The Firehose adapter lives in `dataflow-aws`; the HTTP route in
//! `functions/ingest-api`.

mod body;
pub mod config;
mod deliver;

pub use body::{decode, parse, BodyError, Format, Parsed, Rejection};
pub use config::IngestConfig;
pub use deliver::{deliver, pack, DeliveryError, EventSink, MemorySink, SinkError};

/// Largest request body as sent (after any base64 of API Gateway, a 4 MiB body stays under
/// Lambda's 6 MB synchronous payload).
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Largest body once gunzipped: a gzip bomb stops here.
pub const MAX_DECODED_BYTES: usize = 16 << 20;
/// Most events in one request.
pub const MAX_EVENTS: usize = 10_000;
/// Largest single event: a Firehose record holds at most 1,000 KiB.
pub const MAX_EVENT_BYTES: usize = 1_000 * 1024;
