//! The lake: what the ETL writes and every reader reads. Where each thing goes (`layout`), the
//! raw objects' identity (`source`), the per-(date, type) aggregate and its Parquet encoding
//! (`aggregate`, `parquet`), the change log readers refresh from (`changes`), and, here, the
//! aggregate files as every reader sees them: one decoded file, which files of a date count (a
//! compacted file covers the partials it merged), and the errors of reading them. The read model
//! (`analytics`), the rollups and compaction all build on this; none of them on each other's
//! internals.

pub mod aggregate;
pub mod changes;
pub mod layout;
pub mod parquet;
pub mod source;

use std::collections::BTreeSet;

use crate::event::parse_date;
use crate::lake::layout::Layout;
use crate::lake::parquet::{aggregate_covers, decode_aggregate_rows, AggregateRow, ParquetError};
use dataflow_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("aggregate file {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: ParquetError,
    },
    #[error("rollup: {0}")]
    Rollup(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// One decoded aggregate file.
#[derive(Debug, Clone)]
pub struct AggregateFile {
    pub key: String,
    pub date: i32,
    /// File name without `.parquet`: what compacted files list in their coverage.
    pub name: String,
    pub rows: Vec<AggregateRow>,
    pub covers: Vec<String>,
    /// A compacted file's generation: the newest compaction of a date wins.
    pub generation: u64,
}

impl AggregateFile {
    pub fn decode(layout: &Layout, key: &str, bytes: &[u8]) -> Result<Option<Self>, LakeError> {
        let Some(date) = layout.date_of_aggregate_key(key).and_then(parse_date) else {
            return Ok(None);
        };
        let name = name_of(key).to_owned();
        let err = |source| LakeError::Decode {
            key: key.to_owned(),
            source,
        };
        let (covers, generation) = aggregate_covers(bytes).map_err(err)?;
        Ok(Some(Self {
            key: key.to_owned(),
            date,
            name,
            rows: decode_aggregate_rows(bytes).map_err(err)?,
            covers,
            generation,
        }))
    }
}

/// The files of one date that count: the newest compacted file (highest generation, then widest
/// coverage), and every file it does not cover. Compactions of a date are serialized by a lock
/// and each covers the files before it (earlier compacted files included), so nothing is counted
/// twice or missed.
pub fn effective_files<'a>(files: &[&'a AggregateFile]) -> Vec<&'a AggregateFile> {
    let best = files
        .iter()
        .filter(|f| !f.covers.is_empty())
        .max_by(|a, b| {
            (a.generation, a.covers.len(), &a.name).cmp(&(b.generation, b.covers.len(), &b.name))
        });
    let Some(best) = best else {
        return files.to_vec();
    };
    let covered: BTreeSet<&str> = best.covers.iter().map(String::as_str).collect();
    files
        .iter()
        .filter(|f| f.name == best.name || !covered.contains(f.name.as_str()))
        .copied()
        .collect()
}

/// A sketch estimate as a count.
pub(crate) fn round(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

/// File name without `.parquet`: what compacted files list in their coverage.
pub fn name_of(key: &str) -> &str {
    let file = key.rsplit('/').next().unwrap_or(key);
    file.strip_suffix(".parquet").unwrap_or(file)
}
