//! Building the passage index and shipping it as one object.
//!
//! The engine is tantivy (BM25). An index is a handful of tantivy files; [`build`] writes them in
//! a scratch directory and packs them into one blob:
//!
//! ```text
//! b"DFSEARCH" | format version (u32 LE) | header length (u32 LE) | header (JSON)
//!             | file bytes, in header order | page index files (optional)
//!             | vector section (optional)
//!             | SHA-256 of everything before (32 bytes)
//! ```
//!
//! The vector section ([`vectors`]) holds one embedding per passage, in passage order, and the
//! header names the model that made them: a search side running another model searches
//! lexically and says why.
//!
//! The header carries the format version, build time, document list and passage count, so
//! `/docs` and operators read them without opening the engine. [`SearchIndex::open`] checks the
//! magic, version and checksum before it trusts a byte, then serves from memory.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, STORED, STRING,
};

use crate::analysis::ANALYZER;

mod build;
mod files;
mod hybrid;
mod modes;
mod pack;
mod pages;
mod search;
#[cfg(test)]
mod tests;
pub mod vectors;

pub use build::{build, build_with, embed_records, BuildStats};
pub use hybrid::{Fusion, Mode, Ranking, Scores};
pub use pack::{content_id, pack_records, read_header, read_vectors, Record};
pub use search::{Hit, SearchError, SearchIndex};
pub use vectors::{VectorInfo, Vectors};

pub const MAGIC: &[u8; 8] = b"DFSEARCH";
/// 2: an optional vector section after the engine's files.
pub const FORMAT_VERSION: u32 = 2;
/// Version of the text passages are made of (2: CommonMark-parsed clean text; 3: documents that
/// make no passage are listed too, so every stored document has a state).
const PASSAGES_VERSION: &[u8] = b"passages 3\0";
/// Queries longer than this (characters) are refused: nobody types them, and they cost.
pub const MAX_QUERY_CHARS: usize = 512;
pub const MAX_K: usize = 50;
const SNIPPET_CHARS: usize = 220;
/// Term-pair scores are added to the best `max(k * 4, Boosts::pair_candidates)` passages of the
/// term clauses alone (see [`Boosts::pair_candidates`]).
const PAIR_CANDIDATE_FACTOR: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("not a DataFlow search index (bad magic)")]
    BadMagic,
    #[error("index format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("index object is truncated")]
    Truncated,
    #[error("index checksum mismatch: the object is corrupt or was cut short")]
    ChecksumMismatch,
    #[error("index header is invalid: {0}")]
    BadHeader(String),
    #[error("search engine error: {0}")]
    Engine(#[from] tantivy::TantivyError),
    #[error("embedding the passages failed: {0}")]
    Embed(String),
    #[error("I/O error while building the index: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
    #[error("the query has no searchable terms (only stopwords or punctuation)")]
    NoTerms,
    #[error("k must be between 1 and {MAX_K}")]
    BadK,
}

/// One Markdown file to index; `path` is relative to the corpus root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDoc {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocInfo {
    pub path: String,
    pub title: String,
    pub passages: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    /// RFC 3339, UTC.
    pub built_at: String,
    pub engine: String,
    /// SHA-256 over the sorted (path, text) of the sources: equal means same corpus.
    pub docs_fingerprint: String,
    pub passages: usize,
    pub documents: Vec<DocInfo>,
    pub files: Vec<FileEntry>,
    /// The page index's files ([`pages`]), after the passages'; none when every document is one
    /// passage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<FileEntry>,
    /// The passages' embeddings, when the builder had the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<VectorInfo>,
}

/// How the per-field BM25 scores combine. Passage bodies do not repeat their title and heading,
/// so those fields carry their own evidence at the body's weight. Adjacent query-term pairs that
/// occur within two positions of each other in the body add a half-weight score: on Cranfield
/// that moves nDCG@10 from 0.526 to 0.541 (stable from 0.25 to 0.5 and slop 0 to 3; weights of 1
/// and above hurt). See docs/benchmarks.md.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boosts {
    pub title: f32,
    pub heading: f32,
    pub body: f32,
    /// Weight of adjacent query-term pairs found near each other in the body (0 disables).
    pub pairs: f32,
    /// How many positions apart a pair may be and still count.
    pub pair_slop: u32,
    /// At least this many of the best passages by term score get their pair scores added. A
    /// passage further down would need a pair score larger than its gap to the k-th to rank; the
    /// figures in docs/benchmarks.md measure how often that happens.
    pub pair_candidates: usize,
    /// Pseudo-relevance feedback (RM3): the best `feedback_docs` passages of a first ranking
    /// lend their most likely `feedback_terms` terms to a second one (0 disables).
    pub feedback_docs: usize,
    pub feedback_terms: usize,
    /// The original query's share of the expanded query's weight (RM3's lambda).
    pub feedback_original: f32,
    /// Softmax temperature over the feedback passages' scores.
    pub feedback_temperature: f32,
}

impl Default for Boosts {
    fn default() -> Self {
        Self {
            title: 1.0,
            heading: 1.0,
            body: 1.0,
            pairs: 0.5,
            pair_slop: 2,
            pair_candidates: 40,
            // Tuned on half the Cranfield queries, checked on the other half (docs/benchmarks.md).
            feedback_docs: 5,
            feedback_terms: 20,
            feedback_original: 0.5,
            feedback_temperature: 1.0,
        }
    }
}

struct Fields {
    id: Field,
    doc: Field,
    title: Field,
    heading: Field,
    anchor: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |positions: bool| {
        TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(ANALYZER)
                    .set_index_option(if positions {
                        IndexRecordOption::WithFreqsAndPositions
                    } else {
                        IndexRecordOption::WithFreqs
                    }),
            )
            .set_stored()
    };
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        doc: b.add_text_field("doc", STRING | STORED),
        title: b.add_text_field("title", text(false)),
        heading: b.add_text_field("heading", text(false)),
        anchor: b.add_text_field("anchor", STORED),
        body: b.add_text_field("body", text(true)),
    };
    (b.build(), f)
}

fn fields(schema: &Schema) -> Result<Fields, IndexError> {
    let get = |n: &str| {
        schema
            .get_field(n)
            .map_err(|_| IndexError::BadHeader(format!("index has no field {n:?}")))
    };
    Ok(Fields {
        id: get("id")?,
        doc: get("doc")?,
        title: get("title")?,
        heading: get("heading")?,
        anchor: get("anchor")?,
        body: get("body")?,
    })
}

/// SHA-256 over the sources sorted by path: the identity of a corpus.
pub fn fingerprint(docs: &[SourceDoc]) -> String {
    let mut sorted: Vec<&SourceDoc> = docs.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    // How documents become passages: a change makes every published index out of date, so the
    // index builder's next run rebuilds it (the old object stays readable meanwhile).
    h.update(PASSAGES_VERSION);
    for d in sorted {
        h.update(d.path.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(d.text.as_bytes()));
    }
    hex::encode(h.finalize())
}
