//! DataFlow's domain core: plain Rust with no AWS types, over the [`dataflow_store::ObjectStore`]
//! and [`checkpoint::CheckpointStore`] ports that `dataflow-aws` implements. By part:
//!
//! - [`lake`]: the lake's format: layout, raw objects' identity, aggregates and their Parquet
//!   encoding, the change log, the aggregate files as readers see them;
//! - [`etl`]: what writes the lake: streaming processing of one object, its outputs, the sweep,
//!   compaction, the ETL's metrics;
//! - [`checkpoint`]: the checkpoint protocol (exactly-once counting) and its port;
//! - [`rollup`]: the monthly rollups and their catalog;
//! - [`analytics`]: the read model behind the Analytics API;
//! - [`pipeline`]: the pipeline's status as operators read it;
//! - [`config`]: the ETL's and the Analytics API's settings; [`time`]: the clock.
//!
//! The event contract is `dataflow-contract` (re-exported as [`event`]); the distinct-user
//! sketches are `dataflow-sketch`.

pub mod analytics;
pub mod checkpoint;
pub mod config;
pub mod etl;
/// The event contract, shared with `POST /events` (`dataflow-contract`).
pub use dataflow_contract as event;
pub mod lake;
pub mod pipeline;
pub mod rollup;
pub mod time;
