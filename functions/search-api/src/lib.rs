//! The search API router: `/docs`, `/docs/search`, `/docs/context`, and `PUT`/`DELETE
//! /docs/{path}` for documents. The same router serves API Gateway (through `lambda_http`), `cargo lambda watch`,
//! `dataflow serve` and in-process tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::Router;
use dataflow_embed::Embed;
use dataflow_http::{ApiError, Params, Sorted};
use dataflow_search::context;
use dataflow_search::index::{Mode, QueryError, Ranking, SearchError, MAX_K};
use dataflow_search::store::{IndexHolder, IndexLocation, LoadedIndex};
use dataflow_search::upload::{check_content, check_path, UploadError, MAX_UPLOAD_BYTES};
use dataflow_store::{Body, ObjectStore};

pub mod api;

use api::{
    ContextAnswer, DeleteAnswer, DocState, DocsAnswer, DocumentState, IndexInfo, IndexRef, Removed,
    SearchAnswer, Stored, UploadAnswer, VectorModel,
};
use dataflow_http::openapi::{ErrorBody, BAD_PARAMETER, NO_PARAMETERS};

pub const DEFAULT_K: usize = 5;
/// What the 503 tells an operator to run.
pub const BUILD_COMMAND: &str = "dataflow index build --docs docs/ --upload";

pub struct AppState {
    pub index: IndexHolder,
    /// Where uploads go (the docs prefix of the index bucket).
    store: Arc<dyn ObjectStore>,
    refresh: Duration,
    /// The query embedder for semantic and hybrid search; without it every answer is lexical.
    embed: Option<Arc<dyn Embed>>,
}

impl AppState {
    pub fn new(store: Arc<dyn ObjectStore>, loc: IndexLocation, refresh: Duration) -> Self {
        Self {
            index: IndexHolder::new(store.clone(), loc, refresh),
            store,
            refresh,
            embed: None,
        }
    }

    pub fn with_embedder(mut self, embed: Option<Arc<dyn Embed>>) -> Self {
        self.embed = embed;
        self
    }

    /// Over S3, revalidating the manifest after `CACHE_SECONDS`: what the Lambda and
    /// `dataflow serve` run. `embed` is the model `EMBED_MODEL_DIR` names (see
    /// [`dataflow_search::config::load_model`]).
    pub fn over_aws(
        cfg: &dataflow_search::config::SearchConfig,
        aws: &dataflow_aws::Aws,
        embed: Option<Arc<dyn Embed>>,
    ) -> Self {
        Self::new(
            Arc::new(dataflow_aws::S3Store::new(aws.s3())),
            cfg.index.clone(),
            Duration::from_secs(cfg.cache_seconds),
        )
        .with_embedder(embed)
    }

    async fn loaded(&self) -> Result<Arc<LoadedIndex>, ApiError> {
        let loc = self.index.location();
        match self.index.get().await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(ApiError::unavailable(
                "index_not_built",
                format!(
                    "no search index is published at s3://{}/{}: build one with `{BUILD_COMMAND}`, or put Markdown under s3://{}/{} for the index builder",
                    loc.bucket,
                    loc.manifest_key(),
                    loc.bucket,
                    loc.docs_prefix
                ),
            )),
            Err(e) => {
                tracing::error!(error = %e, "index load failed");
                Err(ApiError::unavailable(
                    "index_unavailable",
                    format!("cannot load the search index: {e}"),
                ))
            }
        }
    }
}

/// The routes alone, for merging with other functions' routes (`dataflow serve`).
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/docs", get(docs))
        .route("/docs/search", get(search))
        .route("/docs/context", get(context_route))
        .route("/docs/{*path}", put(put_doc).delete(delete_doc))
        .with_state(state)
}

pub fn router(state: Arc<AppState>) -> Router {
    dataflow_http::finish(routes(state))
}

/// This function's part of the OpenAPI document (`dataflow_http::openapi::document` merges it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(docs, search, context_route, put_doc, delete_doc))]
    struct Api;
    dataflow_http::openapi::tagged(<Api as utoipa::OpenApi>::openapi(), "search")
}

fn index_info(l: &LoadedIndex) -> IndexInfo {
    let m = &l.manifest;
    IndexInfo {
        key: m.key.clone(),
        sha256: m.sha256.clone(),
        format_version: m.format_version,
        built_at: m.built_at.clone(),
        bytes: m.bytes,
        documents: m.documents,
        passages: m.passages,
        engine: l.index.header.engine.clone(),
        vectors: l.index.vector_model().map(|v| VectorModel {
            name: v.name.clone(),
            sha256: v.sha256.clone(),
            dims: v.dims,
        }),
    }
}

fn index_ref(l: &LoadedIndex) -> IndexRef {
    IndexRef {
        key: l.manifest.key.clone(),
        built_at: l.manifest.built_at.clone(),
    }
}

const NO_INDEX: &str = "`index_not_built` before the first publish; `index_unavailable` when the index cannot be loaded.";
const SEARCH_FAILED: &str =
    "`search_failed`: the index could not answer (the function's log has the error).";

/// The published index and every document with its indexing state
#[utoipa::path(
    get,
    path = "/docs",
    responses(
        (status = 200, description = "Index and documents.", body = DocsAnswer),
        (status = 400, description = NO_PARAMETERS, body = ErrorBody),
        (status = 503, description = NO_INDEX, body = ErrorBody),
    )
)]
async fn docs(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Sorted<DocsAnswer>, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let l = st.loaded().await?;
    let mut documents = Vec::new();
    for d in &l.index.header.documents {
        let empty = d.passages == 0;
        documents.push(DocumentState {
            path: d.path.clone(),
            title: Some(d.title.clone()),
            passages: Some(d.passages),
            state: if empty {
                DocState::Empty
            } else {
                DocState::Indexed
            },
            reason: empty.then(|| {
                "no text to search: the document holds only headings or whitespace".into()
            }),
        });
    }
    for s in &l.manifest.skipped {
        documents.push(DocumentState {
            path: s.path.clone(),
            title: None,
            passages: None,
            state: DocState::Failed,
            reason: Some(s.reason.clone()),
        });
    }
    Ok(Sorted(DocsAnswer {
        index: index_info(&l),
        documents,
    }))
}

struct Asked {
    query: String,
    mode: Option<Mode>,
}

fn asked(p: &Params) -> Result<Asked, ApiError> {
    let query = p
        .one("q")?
        .ok_or_else(|| {
            ApiError::bad_param(
                "q",
                "'q' is required, e.g. /docs/search?q=reprocess+an+object",
            )
        })?
        .to_owned();
    let mode = match p.one("mode")? {
        None => None,
        Some(m) => Some(
            m.parse::<Mode>()
                .map_err(|why| ApiError::bad_param("mode", why))?,
        ),
    };
    // Bad queries are refused before the index is needed: a client error stays a 400 even
    // when no index is built yet. A query of stopwords alone is refused only lexically.
    match dataflow_search::index::SearchIndex::query_terms(&query) {
        Err(QueryError::NoTerms) if mode != Some(Mode::Lexical) => {}
        Err(e) => return Err(query_error(e)),
        Ok(_) => {}
    }
    Ok(Asked { query, mode })
}

/// Runs a query in the mode asked for, by default hybrid where the index has vectors.
fn run(st: &AppState, l: &LoadedIndex, a: &Asked, k: usize) -> Result<Ranking, ApiError> {
    let mode = a.mode.unwrap_or(if l.index.vector_model().is_some() {
        Mode::Hybrid
    } else {
        Mode::Lexical
    });
    l.index
        .search_mode(&a.query, k, mode, st.embed.as_deref())
        .map_err(|e| match e {
            SearchError::Query(q) => query_error(q),
            SearchError::Index(e) => {
                tracing::error!(error = %e, "search failed");
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "search_failed",
                    e.to_string(),
                )
            }
        })
}

/// Ranked passages for a query: hybrid (BM25 + embeddings), lexical or semantic
#[utoipa::path(
    get,
    path = "/docs/search",
    params(api::Question, api::Count),
    responses(
        (status = 200, description = "Results, best first.", body = SearchAnswer),
        (status = 400, description = BAD_PARAMETER, body = ErrorBody),
        (status = 500, description = SEARCH_FAILED, body = ErrorBody),
        (status = 503, description = NO_INDEX, body = ErrorBody),
    )
)]
async fn search(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Sorted<SearchAnswer>, ApiError> {
    let p = Params::parse(q.as_deref(), &["q", "k", "mode"])?;
    let a = asked(&p)?;
    let k = p.number("k", DEFAULT_K, 1..=MAX_K)?;
    let l = st.loaded().await?;
    let started = Instant::now();
    let r = run(&st, &l, &a, k)?;
    let took_us = started.elapsed().as_micros() as u64;
    tracing::info!(k, mode = %r.mode, hits = r.hits.len(), took_us, fallback = r.fallback.as_deref(), "search");
    Ok(Sorted(SearchAnswer {
        query: a.query,
        k,
        mode: r.mode,
        fallback: r.fallback,
        took_us,
        index: index_ref(&l),
        results: r.hits,
    }))
}

/// Ranks up to 50 passages as `/docs/search` does, then takes whole passages best first while
/// they fit in `max_tokens` (a passage that does not fit is passed over for a smaller one further
/// down). Passages already in the context, or wholly inside one that is, are left out. Tokens are
/// estimated as ceil(UTF-8 bytes / 4) per passage.
#[utoipa::path(
    get,
    path = "/docs/context",
    operation_id = "context",
    summary = "The best passages for a question, whole, packed into a token budget, with citations: the context an application puts in front of an LLM",
    params(api::Question, api::Budget),
    responses(
        (status = 200, description = "The packed context.", body = ContextAnswer),
        (status = 400, description = BAD_PARAMETER, body = ErrorBody),
        (status = 500, description = SEARCH_FAILED, body = ErrorBody),
        (status = 503, description = NO_INDEX, body = ErrorBody),
    )
)]
async fn context_route(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Sorted<ContextAnswer>, ApiError> {
    let p = Params::parse(q.as_deref(), &["q", "max_tokens", "mode"])?;
    let a = asked(&p)?;
    let max_tokens = p.number(
        "max_tokens",
        context::DEFAULT_TOKENS,
        1..=context::MAX_TOKENS,
    )?;
    let l = st.loaded().await?;
    let started = Instant::now();
    let r = run(&st, &l, &a, MAX_K)?;
    let ctx = context::pack(r.hits, max_tokens);
    let took_us = started.elapsed().as_micros() as u64;
    tracing::info!(
        max_tokens,
        used = ctx.used_tokens,
        passages = ctx.passages.len(),
        took_us,
        "context"
    );
    Ok(Sorted(ContextAnswer {
        query: a.query,
        mode: r.mode,
        fallback: r.fallback,
        took_us,
        index: index_ref(&l),
        token_estimate: "ceil(utf8_bytes / 4) per passage".into(),
        max_tokens: ctx.max_tokens,
        used_tokens: ctx.used_tokens,
        skipped_over_budget: ctx.skipped_over_budget,
        skipped_duplicates: ctx.skipped_duplicates,
        passages: ctx.passages,
    }))
}

fn upload_error(e: UploadError) -> ApiError {
    let status = match e {
        UploadError::BadPath(_) | UploadError::Empty => StatusCode::BAD_REQUEST,
        UploadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        UploadError::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        UploadError::Unreadable(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let code = match e {
        UploadError::BadPath(_) => "bad_path",
        UploadError::Empty => "empty_document",
        UploadError::TooLarge(_) => "payload_too_large",
        UploadError::UnsupportedFormat(_) => "unsupported_format",
        UploadError::Unreadable(_) => "unreadable_document",
    };
    ApiError::new(status, code, e.to_string())
}

fn store_error(e: dataflow_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "docs bucket write failed");
    ApiError::unavailable(
        "docs_unavailable",
        format!("cannot write the docs bucket: {e}"),
    )
}

/// When an accepted change shows in search: the index builder's rebuild (seconds after the
/// bucket's notification) plus the API's revalidation delay.
fn expected_seconds(st: &AppState) -> u64 {
    st.refresh.as_secs() + 30
}

/// Store a document under the docs prefix (the index is rebuilt)
///
/// The index builder rebuilds on the bucket's notification, as for any other write there.
#[utoipa::path(
    put,
    path = "/docs/{path}",
    operation_id = "put_document",
    params(api::DocPath),
    request_body(
        content(
            (api::DocumentBytes = "text/markdown"),
            (api::DocumentBytes = "text/plain"),
            (api::DocumentBytes = "text/html"),
            (api::DocumentBytes = "application/pdf"),
            (api::DocumentBytes = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        )
    ),
    responses(
        (status = 202, description = "Stored; searchable after the index builder's next publish.", body = UploadAnswer),
        (status = 400, description = "`bad_path` (unsafe path) or `empty_document`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 5 MB.", body = ErrorBody),
        (status = 415, description = "`unsupported_format`: an unsupported extension, or content that is not what the extension says.", body = ErrorBody),
        (status = 422, description = "`unreadable_document`: the index builder could not read it (e.g. a PDF without a text layer).", body = ErrorBody),
        (status = 503, description = "`docs_unavailable`: the docs bucket cannot be written.", body = ErrorBody),
    )
)]
async fn put_doc(
    State(st): State<Arc<AppState>>,
    Path(path): Path<String>,
    body: axum::body::Body,
) -> Result<(StatusCode, Sorted<UploadAnswer>), ApiError> {
    let format = check_path(&path).map_err(upload_error)?;
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD_BYTES + 1)
        .await
        .map_err(|_| upload_error(UploadError::TooLarge(MAX_UPLOAD_BYTES + 1)))?;
    check_content(&path, format, &bytes).map_err(upload_error)?;
    let loc = st.index.location();
    let key = format!("{}{path}", loc.docs_prefix);
    let size = bytes.len();
    st.store
        .put(
            &loc.bucket,
            &key,
            Body::Bytes(bytes.to_vec()),
            dataflow_search::store::content_type(&path),
        )
        .await
        .map_err(store_error)?;
    tracing::info!(path = %path, bytes = size, "document stored");
    Ok((
        StatusCode::ACCEPTED,
        Sorted(UploadAnswer {
            path,
            location: format!("s3://{}/{key}", loc.bucket),
            bytes: size,
            status: Stored::Stored,
            searchable_within_seconds: expected_seconds(&st),
        }),
    ))
}

/// Remove a document from the docs prefix (the index is rebuilt)
#[utoipa::path(
    delete,
    path = "/docs/{path}",
    operation_id = "delete_document",
    params(api::DocPath),
    responses(
        (status = 202, description = "Deleted.", body = DeleteAnswer),
        (status = 400, description = "`bad_path`.", body = ErrorBody),
        (status = 404, description = "No such document.", body = ErrorBody),
        (status = 415, description = "`unsupported_format`: the path's extension is not a supported format, so no document can be stored there.", body = ErrorBody),
        (status = 503, description = "`docs_unavailable`: the docs bucket cannot be read or written.", body = ErrorBody),
    )
)]
async fn delete_doc(
    State(st): State<Arc<AppState>>,
    Path(path): Path<String>,
) -> Result<(StatusCode, Sorted<DeleteAnswer>), ApiError> {
    check_path(&path).map_err(upload_error)?;
    let loc = st.index.location();
    let key = format!("{}{path}", loc.docs_prefix);
    if st
        .store
        .head(&loc.bucket, &key)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no document at s3://{}/{key}", loc.bucket),
        ));
    }
    st.store
        .delete(&loc.bucket, &key)
        .await
        .map_err(store_error)?;
    tracing::info!(path = %path, "document deleted");
    Ok((
        StatusCode::ACCEPTED,
        Sorted(DeleteAnswer {
            path,
            status: Removed::Deleted,
            gone_from_search_within_seconds: expected_seconds(&st),
        }),
    ))
}

fn query_error(e: QueryError) -> ApiError {
    let param = match e {
        QueryError::BadK => "k",
        _ => "q",
    };
    ApiError::bad_param(param, e.to_string())
}
