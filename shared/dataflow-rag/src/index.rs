//! Building the passage index and shipping it as one object.
//!
//! The engine is tantivy (BM25). An index is a handful of tantivy files; [`build`] writes them in
//! a scratch directory and packs them into one blob:
//!
//! ```text
//! b"DFSEARCH" | format version (u32 LE) | header length (u32 LE) | header (JSON)
//!             | file bytes, in header order | SHA-256 of everything before (32 bytes)
//! ```
//!
//! The header carries the format version, build time, document list and passage count, so
//! `/docs` and operators read them without opening the engine. [`SearchIndex::open`] checks the
//! magic, version and checksum before it trusts a byte, then serves from memory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::collector::TopDocs;
use tantivy::directory::{Directory, RamDirectory};
use tantivy::query::{
    BooleanQuery, BoostQuery, EnableScoring, Occur, PhraseQuery, Query, Scorer, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, ReloadPolicy, Searcher, SeekDangerResult,
    TantivyDocument, Term,
};

use crate::analysis::{self, ANALYZER};
use crate::chunk::{chunk_markdown, ChunkOptions, Passage};

pub const MAGIC: &[u8; 8] = b"DFSEARCH";
pub const FORMAT_VERSION: u32 = 1;
/// Version of the text passages are made of (2: CommonMark-parsed clean text).
const PASSAGES_VERSION: &[u8] = b"passages 2\0";
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

/// Splits every document into passages and indexes them; returns the packed index object.
pub fn build(
    docs: &[SourceDoc],
    opts: ChunkOptions,
    built_at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<u8>, IndexError> {
    let docs_fingerprint = fingerprint(docs);
    let mut docs: Vec<&SourceDoc> = docs.iter().collect();
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    let passages: Vec<(usize, Passage)> = docs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            chunk_markdown(&d.path, &d.text, opts)
                .into_iter()
                .map(move |p| (i, p))
        })
        .collect();
    let mut documents: Vec<DocInfo> = docs
        .iter()
        .map(|d| DocInfo {
            path: d.path.clone(),
            title: String::new(),
            passages: 0,
        })
        .collect();
    for (i, p) in &passages {
        documents[*i].passages += 1;
        documents[*i].title.clone_from(&p.title);
    }
    // A corpus may become empty (every file deleted): that is an empty index, not an error, so
    // answers stop citing deleted documents.
    documents.retain(|d| d.passages > 0);
    let records = passages.into_iter().map(|(_, p)| Record {
        id: p.id,
        doc: p.doc,
        title: p.title,
        heading: p.heading_path.join(" › "),
        anchor: p.anchor,
        body: p.text,
    });
    pack_records(records, documents, docs_fingerprint, built_at)
}

/// One searchable unit. Public so other corpora (e.g. the Cranfield evaluation) index the same
/// way the Markdown builder does.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub doc: String,
    pub title: String,
    pub heading: String,
    pub anchor: String,
    pub body: String,
}

/// Indexes records and packs the index into one object.
pub fn pack_records(
    records: impl IntoIterator<Item = Record>,
    documents: Vec<DocInfo>,
    docs_fingerprint: String,
    built_at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<u8>, IndexError> {
    let (schema, f) = schema();
    let dir = tempfile::tempdir()?;
    let index = Index::create_in_dir(dir.path(), schema)?;
    index.tokenizers().register(ANALYZER, analysis::analyzer());
    // One thread and a budget above any docs corpus: one segment, no merges, the same layout
    // on every build.
    let mut writer = index.writer_with_num_threads(1, 256 << 20)?;
    let mut passages = 0usize;
    for r in records {
        let mut d = TantivyDocument::default();
        d.add_text(f.id, &r.id);
        d.add_text(f.doc, &r.doc);
        d.add_text(f.title, &r.title);
        d.add_text(f.heading, &r.heading);
        d.add_text(f.anchor, &r.anchor);
        d.add_text(f.body, &r.body);
        writer.add_document(d)?;
        passages += 1;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    drop(index);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut blobs = Vec::with_capacity(names.len());
    for n in names {
        let bytes = std::fs::read(dir.path().join(&n))?;
        files.push(FileEntry {
            name: n,
            len: bytes.len() as u64,
        });
        blobs.push(bytes);
    }
    let header = Header {
        format_version: FORMAT_VERSION,
        built_at: built_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        engine: "tantivy 0.27 BM25".into(),
        docs_fingerprint,
        passages,
        documents,
        files,
    };
    let header_json =
        serde_json::to_vec(&header).map_err(|e| IndexError::BadHeader(e.to_string()))?;
    let header_len =
        u32::try_from(header_json.len()).map_err(|_| IndexError::BadHeader("too large".into()))?;
    let mut out =
        Vec::with_capacity(16 + header_json.len() + blobs.iter().map(Vec::len).sum::<usize>() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&header_json);
    for b in blobs {
        out.extend_from_slice(&b);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Reads and checks the header of a packed index (magic, version, checksum) without opening the
/// engine. Returns the header and where the files start.
pub fn read_header(bytes: &[u8]) -> Result<(Header, usize), IndexError> {
    if bytes.len() < 16 + 32 {
        return Err(if bytes.starts_with(MAGIC) || MAGIC.starts_with(bytes) {
            IndexError::Truncated
        } else {
            IndexError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(IndexError::BadMagic);
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(IndexError::UnsupportedVersion(version));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(IndexError::ChecksumMismatch);
    }
    let header_len = word(12) as usize;
    let start = 16usize
        .checked_add(header_len)
        .filter(|e| *e <= body.len())
        .ok_or(IndexError::Truncated)?;
    let header: Header = serde_json::from_slice(&body[16..start])
        .map_err(|e| IndexError::BadHeader(e.to_string()))?;
    let total: u64 = header.files.iter().map(|f| f.len).sum();
    if start as u64 + total != body.len() as u64 {
        return Err(IndexError::BadHeader(
            "file lengths do not add up to the object size".into(),
        ));
    }
    Ok((header, start))
}

/// SHA-256 hex of a packed index: its content-derived name.
pub fn content_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A loaded index, ready to search. Cheap to share (`Arc`); searching takes `&self`.
pub struct SearchIndex {
    pub header: Header,
    fields: Fields,
    searcher: Searcher,
    boosts: Boosts,
    /// Built once: the stopword set is a hash set, cheap to share, costly to rebuild per query.
    analyzer: tantivy::tokenizer::TextAnalyzer,
    highlighter: crate::snippet::Highlighter,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub passage_id: String,
    pub doc: String,
    pub title: String,
    pub heading: String,
    pub anchor: String,
    pub score: f32,
    /// The best window of the passage, HTML-escaped, query terms in `<mark>`.
    pub snippet: String,
}

impl SearchIndex {
    /// Opens a packed index (checking magic, version and checksum) into memory.
    pub fn open(bytes: &[u8]) -> Result<Self, IndexError> {
        let (header, mut at) = read_header(bytes)?;
        let dir = RamDirectory::create();
        for f in &header.files {
            if f.name.contains('/') || f.name.starts_with("..") {
                return Err(IndexError::BadHeader(format!("bad file name {:?}", f.name)));
            }
            let end = at + f.len as usize;
            dir.atomic_write(Path::new(&f.name), &bytes[at..end])
                .map_err(|e| IndexError::Io(std::io::Error::other(e.to_string())))?;
            at = end;
        }
        let index = Index::open(dir)?;
        index.tokenizers().register(ANALYZER, analysis::analyzer());
        let fields = fields(&index.schema())?;
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        Ok(Self {
            header,
            fields,
            searcher,
            boosts: Boosts::default(),
            analyzer: analysis::analyzer(),
            highlighter: crate::snippet::Highlighter::default(),
        })
    }

    pub fn with_boosts(mut self, boosts: Boosts) -> Self {
        self.boosts = boosts;
        self
    }

    pub fn num_passages(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Validates a query and returns its analysed terms with their counts.
    pub fn query_terms(q: &str) -> Result<BTreeMap<String, usize>, QueryError> {
        Self::analyse(&mut analysis::analyzer(), q).map(|(counts, _)| counts)
    }

    /// Term counts and the positioned term sequence of a valid query.
    #[allow(clippy::type_complexity)]
    fn analyse(
        a: &mut tantivy::tokenizer::TextAnalyzer,
        q: &str,
    ) -> Result<(BTreeMap<String, usize>, Vec<(usize, String)>), QueryError> {
        let q = q.trim();
        if q.is_empty() {
            return Err(QueryError::Empty);
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        let seq = analysis::positioned_terms(a, q);
        let mut counts = BTreeMap::new();
        for (_, t) in &seq {
            *counts.entry(t.clone()).or_insert(0) += 1;
        }
        if counts.is_empty() {
            return Err(QueryError::NoTerms);
        }
        Ok((counts, seq))
    }

    /// The top `k` passages for `q`, best first. Scores are BM25 summed over the title, heading
    /// and body fields (weighted by [`Boosts`]); a term repeated in the query counts that often.
    pub fn search(&self, q: &str, k: usize) -> Result<Vec<Hit>, SearchError> {
        self.search_inner(q, k, true, MAX_K)
    }

    /// Like [`search`](Self::search) without snippets and up to 1000 hits (evaluation runs).
    pub fn rank(&self, q: &str, k: usize) -> Result<Vec<Hit>, SearchError> {
        self.search_inner(q, k, false, 1000)
    }

    /// BM25 term clauses over the title, heading and body fields, weighted by [`Boosts`] and by
    /// how often the term appears in the query.
    fn term_clauses(&self, terms: &BTreeMap<String, usize>) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (t, n) in terms {
            for (field, boost) in [
                (f.body, self.boosts.body),
                (f.title, self.boosts.title),
                (f.heading, self.boosts.heading),
            ] {
                if boost <= 0.0 {
                    continue;
                }
                let tq = TermQuery::new(
                    Term::from_field_text(field, t),
                    IndexRecordOption::WithFreqs,
                );
                let w = boost * *n as f32;
                // Unboosted term queries stay bare: tantivy's block-max WAND only applies to them.
                if w == 1.0 {
                    clauses.push((Occur::Should, Box::new(tq)));
                } else {
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(tq), w))));
                }
            }
        }
        clauses
    }

    /// One phrase query (with slop) per distinct pair of adjacent query terms, on the body.
    fn pair_queries(&self, seq: &[(usize, String)]) -> Vec<PhraseQuery> {
        let mut pairs = Vec::new();
        if self.boosts.pairs <= 0.0 {
            return pairs;
        }
        let body = self.fields.body;
        let mut seen = std::collections::HashSet::new();
        for w in seq.windows(2) {
            let (pa, ta) = &w[0];
            let (pb, tb) = &w[1];
            if ta == tb || !seen.insert((ta, tb)) {
                continue;
            }
            let mut pq = PhraseQuery::new_with_offset(vec![
                (0, Term::from_field_text(body, ta)),
                (pb - pa, Term::from_field_text(body, tb)),
            ]);
            pq.set_slop(self.boosts.pair_slop);
            pairs.push(pq);
        }
        pairs
    }

    /// The top `k` (score, passage) pairs, best first.
    fn ranked(
        &self,
        terms: &BTreeMap<String, usize>,
        seq: &[(usize, String)],
        k: usize,
    ) -> Result<Vec<(f32, DocAddress)>, IndexError> {
        let pairs = self.pair_queries(seq);
        // Two phases: the term clauses alone rank candidates (block-max WAND prunes them), then
        // pair scores are added to the candidates only. Phrase clauses in the same query would
        // turn the pruning off and check positions in every passage holding both terms.
        let limit = if pairs.is_empty() {
            k
        } else {
            // Never more than the index holds: the collector sizes its buffer by the limit.
            let all = usize::try_from(self.searcher.num_docs()).unwrap_or(usize::MAX);
            (k * PAIR_CANDIDATE_FACTOR)
                .max(self.boosts.pair_candidates)
                .min(all)
                .max(k)
        };
        let mut top = self.searcher.search(
            &BooleanQuery::new(self.term_clauses(terms)),
            &TopDocs::with_limit(limit).order_by_score(),
        )?;
        if !pairs.is_empty() {
            self.add_pair_scores(&pairs, &mut top)?;
            // Best first; equal scores in index order.
            top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            top.truncate(k);
        }
        Ok(top)
    }

    fn search_inner(
        &self,
        q: &str,
        k: usize,
        snippets: bool,
        max_k: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        if !(1..=max_k).contains(&k) {
            return Err(QueryError::BadK.into());
        }
        let mut analyzer = self.analyzer.clone();
        let (terms, seq) = Self::analyse(&mut analyzer, q)?;
        let top = self.ranked(&terms, &seq, k)?;
        let f = &self.fields;
        let query_terms: Vec<&str> = terms.keys().map(String::as_str).collect();
        let mut highlighter = snippets.then(|| self.highlighter.clone());
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = self.searcher.doc(addr).map_err(IndexError::from)?;
            let text = |field: Field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let snippet = match highlighter.as_mut() {
                Some(h) => {
                    let body = text(f.body);
                    // Matched on title or heading only: show the passage's start.
                    h.snippet(&body, &query_terms, SNIPPET_CHARS)
                        .unwrap_or_else(|| lead(&body, SNIPPET_CHARS))
                }
                None => String::new(),
            };
            hits.push(Hit {
                passage_id: text(f.id),
                doc: text(f.doc),
                title: text(f.title),
                heading: text(f.heading),
                anchor: text(f.anchor),
                score,
                snippet,
            });
        }
        Ok(hits)
    }

    /// Adds each pair's (boosted) phrase score to the candidates that contain it. Candidates are
    /// visited in index order per segment with `seek_danger`, which checks positions only for
    /// the candidates themselves.
    fn add_pair_scores(
        &self,
        pairs: &[PhraseQuery],
        top: &mut [(f32, DocAddress)],
    ) -> Result<(), IndexError> {
        let mut order: Vec<usize> = (0..top.len()).collect();
        order.sort_by_key(|&i| top[i].1);
        let scoring = EnableScoring::enabled_from_searcher(&self.searcher);
        for pq in pairs {
            let weight = pq.weight(scoring)?;
            let mut at = 0;
            while at < order.len() {
                let seg = top[order[at]].1.segment_ord;
                let reader = self.searcher.segment_reader(seg);
                let mut scorer = weight.scorer(reader, self.boosts.pairs)?;
                // Below `floor` the scorer holds nothing, and seek_danger wants targets at or
                // past its position: a new scorer sits on its first match, a miss reports the
                // least document it could still hold (the inner postings may already be past
                // it: nothing lies between the target and their position either).
                let mut floor: DocId = scorer.doc();
                while at < order.len() && top[order[at]].1.segment_ord == seg {
                    let i = order[at];
                    at += 1;
                    let doc = top[i].1.doc_id;
                    if doc < floor {
                        continue;
                    }
                    match scorer.seek_danger(doc) {
                        SeekDangerResult::Found => {
                            top[i].0 += scorer.score();
                            floor = doc + 1;
                        }
                        SeekDangerResult::SeekLowerBound(next) => floor = next.max(scorer.doc()),
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The first `max` characters at a word boundary, HTML-escaped.
fn lead(text: &str, max: usize) -> String {
    let mut end = text.len();
    if let Some((i, _)) = text.char_indices().nth(max) {
        end = text[..i].rfind(char::is_whitespace).unwrap_or(i);
    }
    let mut out = String::with_capacity(end + 8);
    crate::snippet::escape_into(&mut out, &text[..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<SourceDoc> {
        let d = |p: &str, t: &str| SourceDoc {
            path: p.into(),
            text: t.into(),
        };
        vec![
            d(
                "operations.md",
                "# Operations guide\n\n## Reprocess an object\n\nDelete the checkpoint item, then run `dataflow reprocess --key KEY`. The ETL processes the object again.\n\n## Dead-letter queue\n\nMessages that failed three times land in the DLQ. Inspect them and redrive.\n",
            ),
            d(
                "contract.md",
                "# Event contract\n\nEach line is a JSON object with event_type, user_id and timestamp.\n\n## Rejections\n\nA line without a timestamp is rejected and counted in the rejected report.\n",
            ),
            d(
                "bench.md",
                "---\ntitle: Benchmarks\n---\n\n## Throughput\n\nDuckDB and PySpark were measured on the same file.\n",
            ),
        ]
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn builds_packs_and_ranks_the_expected_passage_first() {
        let bytes = build(&corpus(), ChunkOptions::default(), now()).unwrap();
        let idx = SearchIndex::open(&bytes).unwrap();
        assert_eq!(idx.header.passages, 5);
        assert_eq!(idx.num_passages(), 5);
        assert_eq!(idx.header.built_at, "2026-11-23T10:00:00.000Z");
        let docs: Vec<(&str, &str, usize)> = idx
            .header
            .documents
            .iter()
            .map(|d| (d.path.as_str(), d.title.as_str(), d.passages))
            .collect();
        assert_eq!(
            docs,
            vec![
                ("bench.md", "Benchmarks", 1),
                ("contract.md", "Event contract", 2),
                ("operations.md", "Operations guide", 2),
            ]
        );
        let hits = idx.search("how do I reprocess an object?", 3).unwrap();
        assert_eq!(hits[0].passage_id, "operations.md#reprocess-an-object");
        assert_eq!(hits[0].heading, "Operations guide › Reprocess an object");
        assert!(
            hits[0].snippet.contains("<mark>reprocess</mark>"),
            "{}",
            hits[0].snippet
        );
        let hits = idx.search("rejected lines", 5).unwrap();
        assert_eq!(hits[0].passage_id, "contract.md#rejections");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // Stemming: "queues" finds "queue", "redriving" finds "redrive".
        let hits = idx.search("redriving queues", 1).unwrap();
        assert_eq!(hits[0].passage_id, "operations.md#dead-letter-queue");
        // No match at all is an empty list, not an error.
        assert!(idx.search("zebra", 5).unwrap().is_empty());
    }

    #[test]
    fn query_errors() {
        let bytes = build(&corpus(), ChunkOptions::default(), now()).unwrap();
        let idx = SearchIndex::open(&bytes).unwrap();
        let err = |q: &str, k: usize| match idx.search(q, k) {
            Err(SearchError::Query(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(err("   ", 5), QueryError::Empty);
        assert_eq!(err("what is the", 5), QueryError::NoTerms);
        assert_eq!(err("?!", 5), QueryError::NoTerms);
        assert_eq!(
            err(&"x".repeat(MAX_QUERY_CHARS + 1), 5),
            QueryError::TooLong
        );
        assert_eq!(err("queue", 0), QueryError::BadK);
        assert_eq!(err("queue", MAX_K + 1), QueryError::BadK);
        assert!(idx.search("queue", MAX_K).is_ok());
    }

    #[test]
    fn snippets_are_escaped_and_fall_back_to_the_lead() {
        let docs = vec![SourceDoc {
            path: "x.md".into(),
            text: "# Retry policy\n\nUse `Vec<u8>` buffers, <b>exponential</b> backoff & jitter for every retry of a throttled call.\n".into(),
        }];
        let idx =
            SearchIndex::open(&build(&docs, ChunkOptions::default(), now()).unwrap()).unwrap();
        let h = &idx.search("jitter", 1).unwrap()[0];
        // Code keeps its text, escaped; HTML in the Markdown is markup and dropped.
        assert!(
            h.snippet
                .contains("Vec&lt;u8&gt; buffers, exponential backoff &amp; <mark>jitter</mark>"),
            "{}",
            h.snippet
        );
        // "policy" is only in the heading: the snippet is the passage's start.
        let h = &idx.search("policy", 1).unwrap()[0];
        assert!(h.snippet.starts_with("Use Vec&lt;u8&gt;"), "{}", h.snippet);
    }

    /// The whole shared Lambda guide: an operator's question finds the page and section that
    /// answer it, and what the hit shows is clean text with the page's own anchor.
    #[test]
    fn the_lambda_guide_answers_with_clean_hits() {
        let root = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpora/aws-lambda-guide"
        ));
        let (docs, skipped) = crate::store::read_local_docs(root).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared corpus sits beside the repository)",
                root.display()
            )
        });
        assert!(
            docs.len() >= 377 && skipped.is_empty(),
            "{} {skipped:?}",
            docs.len()
        );
        let idx =
            SearchIndex::open(&build(&docs, ChunkOptions::default(), now()).unwrap()).unwrap();
        let hits = idx
            .search(
                "how many times does lambda retry a failed asynchronous invocation",
                5,
            )
            .unwrap();
        let top = &hits[0];
        assert_eq!(
            (top.doc.as_str(), top.anchor.as_str(), top.title.as_str()),
            (
                "invocation-async.md",
                "invocation-async-errors",
                "Asynchronous invocation"
            ),
            "{hits:#?}"
        );
        assert_eq!(
            top.heading,
            "Asynchronous invocation › Configuring error handling for asynchronous invocation"
        );
        for h in &hits {
            for markup in ["**", "\\.", "<a name", "](", "&lt;a"] {
                assert!(
                    !h.snippet.contains(markup) && !h.title.contains(markup),
                    "{markup:?} in {h:#?}"
                );
            }
        }
        assert!(top.snippet.contains("<mark>"), "{}", top.snippet);
    }

    #[test]
    fn corrupt_objects_are_refused() {
        let bytes = build(&corpus(), ChunkOptions::default(), now()).unwrap();
        assert!(matches!(
            SearchIndex::open(b"nope"),
            Err(IndexError::BadMagic)
        ));
        assert!(matches!(
            SearchIndex::open(&bytes[..bytes.len() / 2]),
            Err(IndexError::ChecksumMismatch)
        ));
        assert!(matches!(
            SearchIndex::open(&bytes[..10]),
            Err(IndexError::Truncated)
        ));
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert!(matches!(
            SearchIndex::open(&flipped),
            Err(IndexError::ChecksumMismatch)
        ));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(matches!(
            SearchIndex::open(&v2),
            Err(IndexError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn an_empty_corpus_is_an_empty_index() {
        let idx = SearchIndex::open(&build(&[], ChunkOptions::default(), now()).unwrap()).unwrap();
        assert_eq!(idx.num_passages(), 0);
        assert!(idx.header.documents.is_empty());
        assert!(idx.search("anything", 5).unwrap().is_empty());
    }

    /// The two-phase ranking (terms, then pairs on candidates) scores every candidate exactly as
    /// one query with the phrase clauses inside would, and with enough candidates ranks the same.
    #[test]
    fn pair_scores_on_candidates_match_one_combined_query() {
        const WORDS: [&str; 12] = [
            "queue", "batch", "retry", "lambda", "timeout", "memory", "bucket", "event", "stream",
            "layer", "alias", "version",
        ];
        // Deterministic pseudo-random passages over a small vocabulary, so pairs recur.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let records: Vec<Record> = (0..400)
            .map(|i| {
                let len = 5 + next(40);
                let body: Vec<&str> = (0..len).map(|_| WORDS[next(WORDS.len())]).collect();
                Record {
                    id: format!("p{i}"),
                    doc: format!("d{}.md", i / 10),
                    title: WORDS[next(WORDS.len())].into(),
                    heading: String::new(),
                    anchor: String::new(),
                    body: body.join(" "),
                }
            })
            .collect();
        let packed = pack_records(records, Vec::new(), String::new(), now()).unwrap();
        let all = SearchIndex::open(&packed).unwrap().with_boosts(Boosts {
            pair_candidates: 10_000,
            ..Boosts::default()
        });
        let few = SearchIndex::open(&packed).unwrap().with_boosts(Boosts {
            pair_candidates: 8,
            ..Boosts::default()
        });
        for q in [
            "queue batch",
            "retry lambda timeout",
            "memory bucket event stream",
            "layer alias version queue",
            "batch batch retry",
        ] {
            let (terms, seq) = SearchIndex::analyse(&mut analysis::analyzer(), q).unwrap();
            let mut clauses = all.term_clauses(&terms);
            let pairs = all.pair_queries(&seq);
            assert!(!pairs.is_empty(), "{q}");
            for pq in pairs {
                let boosted = BoostQuery::new(Box::new(pq), all.boosts.pairs);
                clauses.push((Occur::Should, Box::new(boosted)));
            }
            let n = all.searcher.num_docs() as usize;
            let reference: BTreeMap<DocAddress, f32> = all
                .searcher
                .search(
                    &BooleanQuery::new(clauses),
                    &TopDocs::with_limit(n).order_by_score(),
                )
                .unwrap()
                .into_iter()
                .map(|(score, d)| (d, score))
                .collect();
            let two_phase = all.ranked(&terms, &seq, n).unwrap();
            assert_eq!(two_phase.len(), reference.len(), "{q}");
            for (score, d) in &two_phase {
                assert!((reference[d] - score).abs() < 1e-4, "{q}: {d:?}");
            }
            // With few candidates each hit still carries its exact combined score.
            for (score, d) in few.ranked(&terms, &seq, 2).unwrap() {
                assert!((reference[&d] - score).abs() < 1e-4, "{q}: {d:?}");
            }
        }
    }

    #[test]
    fn fingerprint_ignores_order_and_sees_edits() {
        let mut c = corpus();
        let a = fingerprint(&c);
        c.reverse();
        assert_eq!(fingerprint(&c), a);
        c[0].text.push('!');
        assert_ne!(fingerprint(&c), a);
    }
}
