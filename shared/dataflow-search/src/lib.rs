//! Document search core (no AWS types): documents (Markdown, text, HTML, PDF) into passages, a BM25 index (tantivy) packed into
//! one object, atomic publishing and revalidating loads over the [`ObjectStore`] port, and the
//! search functions' settings.
//!
//! [`ObjectStore`]: dataflow_store::ObjectStore

pub mod analysis;
pub mod chunk;
pub mod config;
pub mod context;
pub mod formats;
pub mod index;
pub mod snippet;
pub mod store;
pub mod upload;
