//! DataFlow's domain core. Everything here is plain Rust with no AWS types: the event contract,
//! the streaming aggregation, distinct-user sketches, Parquet encoding, the checkpoint protocol
//! and the ETL orchestration over the [`dataflow_store::ObjectStore`] and
//! [`checkpoint::CheckpointStore`] traits that `dataflow-aws` implements.

pub mod aggregate;
pub mod analytics;
pub mod changes;
pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod etl;
/// The event contract, shared with `POST /events` (`dataflow-contract`).
pub use dataflow_contract as event;
pub mod lake;
pub mod layout;
pub mod metrics;
pub mod parquet;
pub mod pipeline;
pub mod process;
pub mod rejected;
pub mod rollup;
pub mod sketch;
pub mod source;
pub mod time;
pub mod work;
