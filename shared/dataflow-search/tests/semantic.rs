//! Search by meaning with the real model (installed by `infra/model/install.sh`, which
//! `scripts/test` runs): questions in a user's own words that share no useful word with the
//! page answering them. Lexical search misses that page; semantic and hybrid find it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_embed::{default_model_dir, Embedder};
use dataflow_search::chunk::ChunkOptions;
use dataflow_search::index::{build_with, Mode, SearchIndex, SourceDoc};

fn corpus() -> Vec<SourceDoc> {
    let d = |p: &str, t: &str| SourceDoc {
        path: p.into(),
        text: t.into(),
    };
    vec![
        d(
            "cold-starts.md",
            "# Cold starts\n\nAfter a function sits idle for a while, the next invocation waits while Lambda sets up a fresh execution environment and runs your initialization code. This startup delay is a cold start; later invocations reuse the warm environment.\n",
        ),
        d(
            "secrets.md",
            "# Secrets Manager\n\nStore database credentials and API tokens in AWS Secrets Manager and retrieve them at runtime instead of hard-coding them in the function's source.\n",
        ),
        d(
            "logs.md",
            "# Log retention\n\nThe first log stream of a function keeps its lines for one hour by default, and each request ID links the lines of one request.\n",
        ),
        d(
            "layers.md",
            "# Layers\n\nA layer is a ZIP archive of libraries or a custom runtime that many functions share.\n",
        ),
    ]
}

fn ids(hits: &[dataflow_search::index::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.doc.as_str()).collect()
}

#[test]
fn a_paraphrase_lexical_misses_is_found_by_meaning() {
    let model = Embedder::load(&default_model_dir())
        .unwrap_or_else(|e| panic!("{e}: run infra/model/install.sh"));
    let (bytes, stats) = build_with(
        &corpus(),
        ChunkOptions::default(),
        chrono::Utc::now(),
        Some(&model),
        None,
    )
    .unwrap();
    assert_eq!(stats.embedded, 4);
    let idx = SearchIndex::open(&bytes).unwrap();
    let q = "the first request after a quiet hour is slow";
    // Lexically the log page wins (first, request, hour) and the answer is not found at all.
    let lexical = idx.search_mode(q, 3, Mode::Lexical, Some(&model)).unwrap();
    assert_eq!(ids(&lexical.hits), vec!["logs.md"], "lexical");
    for mode in [Mode::Semantic, Mode::Hybrid] {
        let r = idx.search_mode(q, 3, mode, Some(&model)).unwrap();
        assert_eq!((r.mode, r.fallback.as_deref()), (mode, None));
        let at = ids(&r.hits).iter().position(|d| *d == "cold-starts.md");
        assert!(matches!(at, Some(0 | 1)), "{mode}: {:?}", ids(&r.hits));
    }
    let q = "where do I keep a password so it is not in my code";
    let r = idx.search_mode(q, 1, Mode::Semantic, Some(&model)).unwrap();
    assert_eq!(ids(&r.hits), vec!["secrets.md"]);
    let r = idx.search_mode(q, 2, Mode::Hybrid, Some(&model)).unwrap();
    let secrets = r.hits.iter().find(|h| h.doc == "secrets.md").unwrap();
    assert_eq!(
        secrets.scores.semantic_rank,
        Some(1),
        "{:?}",
        secrets.scores
    );
}
