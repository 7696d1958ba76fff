//! What the Search API answers and takes, as types: the handlers build the answers, and the
//! OpenAPI document is made from these types and the handlers' annotations. Query strings are
//! parsed by `dataflow_http::Params`; the query types describe the same parameters and bounds,
//! which the router tests hold to the handlers (`dataflow_http::spec_check`), and the path
//! pattern is held to `check_path` by `tests/path_pattern.rs`.

use dataflow_search::context::ContextPassage;
use dataflow_search::index::{Hit, Mode};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// `GET /docs`: the published index and every document with its indexing state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Docs)]
pub struct DocsAnswer {
    pub index: IndexInfo,
    pub documents: Vec<DocumentState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IndexInfo {
    pub key: String,
    pub sha256: String,
    pub format_version: u32,
    #[schema(format = DateTime)]
    pub built_at: String,
    pub bytes: u64,
    pub documents: usize,
    pub passages: usize,
    pub engine: String,
    /// The model the passages' vectors come from; null when the index has none (lexical search
    /// only).
    pub vectors: Option<VectorModel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VectorModel {
    pub name: String,
    /// SHA-256 of the model's weights.
    pub sha256: String,
    pub dims: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocState {
    Indexed,
    Empty,
    Failed,
}

/// A document under the docs prefix. `indexed`: searchable, with `passages` passages; `empty`:
/// stored but holds no text to search (only headings or whitespace); `failed`: could not be read
/// (`reason`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentState {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub passages: Option<usize>,
    pub state: DocState,
    /// Why a document is empty or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// The index an answer came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexRef {
    pub key: String,
    pub built_at: String,
}

/// `GET /docs/search`: results, best first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SearchResults)]
pub struct SearchAnswer {
    pub query: String,
    pub k: usize,
    /// The mode that produced the results.
    pub mode: Mode,
    /// Why the results are lexical when another mode was asked for (or is the default); null
    /// otherwise.
    pub fallback: Option<String>,
    pub took_us: u64,
    pub index: IndexRef,
    pub results: Vec<Hit>,
}

/// `GET /docs/context`: the packed context.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Context)]
pub struct ContextAnswer {
    pub query: String,
    /// The mode that ranked the passages.
    pub mode: Mode,
    /// As in `/docs/search`.
    pub fallback: Option<String>,
    pub took_us: u64,
    pub index: IndexRef,
    /// How tokens are counted.
    pub token_estimate: String,
    pub max_tokens: usize,
    /// At most max_tokens.
    pub used_tokens: usize,
    /// Ranked passages left out because they did not fit.
    pub skipped_over_budget: usize,
    /// Ranked passages left out because their text is already in the context.
    pub skipped_duplicates: usize,
    pub passages: Vec<ContextPassage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    Stored,
}

/// `PUT /docs/{path}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Upload)]
pub struct UploadAnswer {
    pub path: String,
    pub location: String,
    pub bytes: usize,
    pub status: Stored,
    pub searchable_within_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    Deleted,
}

/// `DELETE /docs/{path}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Deleted)]
pub struct DeleteAnswer {
    pub path: String,
    pub status: Removed,
    pub gone_from_search_within_seconds: u64,
}

/// What is asked: `/docs/search` and `/docs/context` take the same question.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes the parameters `Params` parses
pub struct Question {
    /// The question or words to search for. In lexical mode a query of stopwords or punctuation
    /// only is a 400 (`q` has no searchable terms); semantic and hybrid modes search such a query
    /// by its meaning.
    #[param(min_length = 1, max_length = 512, example = "reprocess an object")]
    q: String,
    /// How passages are ranked. `lexical`: BM25 over the words. `semantic`: cosine between the
    /// query's and the passages' embeddings (all-MiniLM-L6-v2). `hybrid`: both, fused by
    /// reciprocal rank. Default: `hybrid` when the index holds vectors, else `lexical`. When the
    /// mode asked for cannot run (an index built without vectors, a function without the model,
    /// or vectors from another model), the answer is lexical and `fallback` says why.
    #[param(inline)]
    mode: Option<Mode>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Count {
    /// How many passages.
    #[param(minimum = 1, maximum = 50, default = 5)]
    k: Option<u32>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Budget {
    /// The budget, in estimated tokens.
    #[param(minimum = 1, maximum = 32000, default = 1000)]
    max_tokens: Option<u32>,
}

/// A document's place under the docs prefix.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct DocPath {
    /// Relative path under the docs prefix, e.g. `runbooks/restart.md`; its extension names the
    /// format (.md, .markdown, .txt, .html, .htm, .pdf, .docx). Refused with 400: `.`/`..`/empty
    /// segments, backslashes, control characters and bidirectional formatting characters
    /// (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), more than 512 bytes (UTF-8).
    #[param(
        min_length = 1,
        max_length = 512,
        pattern = r"^(?!/)(?!.*//)(?!(?:.*/)?\.\.?(?:/|$))[^\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*\.(?:[mM][dD]|[mM][aA][rR][kK][dD][oO][wW][nN]|[tT][xX][tT]|[hH][tT][mM][lL]?|[pP][dD][fF]|[dD][oO][cC][xX])$"
    )]
    path: String,
}

/// An uploaded document's body: any bytes.
pub struct DocumentBytes;

impl PartialSchema for DocumentBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some(
                "The document's bytes, whatever they are: the path's extension names the format, and the content is checked against it (415 when it is not that format, 400 when empty).",
            ))
            .into()
    }
}

impl ToSchema for DocumentBytes {}
