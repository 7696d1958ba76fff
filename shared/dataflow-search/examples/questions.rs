//! Retrieval quality on a question set over a Markdown corpus, at the level of documents (a
//! question is answered by files): indexes the corpus as the product does, with the embedding
//! model, ranks each question of one split in every mode, and writes TREC runs (a document at the
//! rank of its best passage) plus that split's judgements, for `ir_eval.py`.
//!
//! cargo run --profile profiling -p dataflow-search --example questions -- \
//!     DOCS_DIR QUESTIONS.jsonl SPLIT OUT_DIR
//!
//! SPLIT is `tune`, `test` or `all`. `EMBED_MODEL_DIR` names the model (default: the folder
//! `infra/model/install.sh` fills); `INDEX_CACHE=FILE` keeps the built index between runs (it is
//! rebuilt when missing). Fusion settings for tuning: `RRF_K`, `W_LEX`, `W_PAGE`, `W_SEM`, `CANDIDATES`.
//! `FLOAT=1` scores with f32 vectors instead of the stored int8 ones (to measure quantisation).
//! `PAGES=1` indexes each document whole, as one passage (BM25 over pages, for comparison).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use dataflow_embed::{default_model_dir, Embed, Embedder};
use dataflow_search::chunk::ChunkOptions;
use dataflow_search::index::{build_with, Fusion, Mode, SearchIndex};
use dataflow_search::store::read_local_docs;

/// Passages ranked per question: the API's deepest answer.
const DEPTH: usize = 50;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: questions DOCS_DIR QUESTIONS.jsonl SPLIT OUT_DIR".into());
    }
    let (docs_dir, questions, split, out) = (&args[1], &args[2], &args[3], Path::new(&args[4]));
    std::fs::create_dir_all(out)?;
    let t = Instant::now();
    let model = Embedder::load(&default_model_dir())?;
    eprintln!("model loaded in {} ms", t.elapsed().as_millis());
    let cache = std::env::var("INDEX_CACHE").ok();
    let packed = match cache.as_deref().map(std::fs::read) {
        Some(Ok(b)) => b,
        _ => {
            let (mut docs, _) = read_local_docs(Path::new(docs_dir))?;
            if std::env::var("PAGES").is_ok_and(|v| v == "1") {
                // One passage per page: no headings left to split on, and no size limit.
                for d in &mut docs {
                    d.text = d
                        .text
                        .lines()
                        .map(|l| l.trim_start_matches('#'))
                        .collect::<Vec<_>>()
                        .join("\n");
                }
            }
            let t = Instant::now();
            let pages = std::env::var("PAGES").is_ok_and(|v| v == "1");
            let opts = if pages {
                ChunkOptions {
                    max_chars: usize::MAX / 2,
                    overlap_chars: 0,
                }
            } else {
                ChunkOptions::default()
            };
            let (b, stats) = build_with(&docs, opts, chrono::Utc::now(), Some(&model), None)?;
            eprintln!(
                "built {} passages ({} embedded) in {:.1} s",
                stats.passages,
                stats.embedded,
                t.elapsed().as_secs_f64()
            );
            if let Some(c) = &cache {
                std::fs::write(c, &b)?;
            }
            b
        }
    };
    let d = Fusion::default();
    let fusion = Fusion {
        rrf_k: env("RRF_K", d.rrf_k),
        lexical_weight: env("W_LEX", d.lexical_weight),
        page_weight: env("W_PAGE", d.page_weight),
        semantic_weight: env("W_SEM", d.semantic_weight),
        candidates: env("CANDIDATES", d.candidates),
    };
    let index = SearchIndex::open(&packed)?.with_fusion(fusion);
    let mut qrels = std::io::BufWriter::new(std::fs::File::create(out.join("qrels.tsv"))?);
    let mut runs: BTreeMap<Mode, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    for m in Mode::ALL {
        let f = std::fs::File::create(out.join(format!("{m}.run")))?;
        runs.insert(m, std::io::BufWriter::new(f));
    }
    let float = std::env::var("FLOAT").is_ok_and(|v| v == "1");
    let mut asked = 0;
    for line in std::fs::read_to_string(questions)?.lines() {
        let q: serde_json::Value = serde_json::from_str(line)?;
        if split != "all" && q["split"] != split.as_str() {
            continue;
        }
        asked += 1;
        let id = q["id"].as_str().unwrap_or_default();
        let text = q["text"].as_str().unwrap_or_default();
        if let Some(rel) = q["relevant"].as_object() {
            for (doc, gain) in rel {
                writeln!(qrels, "{id}\t{doc}\t{gain}")?;
            }
        }
        for m in Mode::ALL {
            let ranking = if float {
                float_ranking(&index, &model, text, m)?
            } else {
                index
                    .rank_mode(text, DEPTH, m, Some(&model))?
                    .hits
                    .into_iter()
                    .map(|h| (h.doc, h.score))
                    .collect()
            };
            let mut seen = std::collections::HashSet::new();
            let w = runs.get_mut(&m).ok_or("mode")?;
            for (doc, score) in ranking {
                if seen.insert(doc.clone()) {
                    writeln!(w, "{id} Q0 {doc} {} {score} {m}", seen.len())?;
                }
            }
        }
    }
    eprintln!("{asked} questions ({split}), fusion {fusion:?}");
    Ok(())
}

/// The semantic ranking with exact f32 vectors (re-embedded passages); other modes as usual.
fn float_ranking(
    index: &SearchIndex,
    model: &Embedder,
    q: &str,
    m: Mode,
) -> Result<Vec<(String, f32)>, Box<dyn std::error::Error>> {
    if m != Mode::Semantic {
        return Ok(index
            .rank_mode(q, DEPTH, m, Some(model))?
            .hits
            .into_iter()
            .map(|h| (h.doc, h.score))
            .collect());
    }
    let hits = index.rank_mode(q, DEPTH, Mode::Semantic, Some(model))?.hits;
    let qv = model.embed(&[q])?.remove(0);
    let texts: Vec<String> = hits
        .iter()
        .map(|h| dataflow_search::index::vectors::embed_text(&h.title, &h.heading, &h.text))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vs = model.embed(&refs)?;
    let mut scored: Vec<(String, f32)> = hits
        .into_iter()
        .zip(vs)
        .map(|(h, v)| (h.doc, dataflow_embed::cosine(&qv, &v)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(scored)
}
