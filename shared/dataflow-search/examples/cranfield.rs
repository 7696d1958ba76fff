//! Retrieval quality on a test collection: indexes `docs.jsonl` ({"id","title","text"}) the way
//! the product indexes passages (title field + body field), runs `queries.jsonl` and writes a
//! TREC run (top 100) for `ir_eval.py`.
//!
//! cargo run --release -p dataflow-search --example cranfield -- DIR RUN_OUT [title_boost] [body_boost]
//!
//! `MODE` = lexical (default), semantic or hybrid: the other two embed every abstract with the
//! model (`EMBED_MODEL_DIR`, default the installed one); `INDEX_CACHE=FILE` keeps that index
//! between runs. `RRF_K`, `W_LEX`, `W_SEM`, `CANDIDATES_FUSED` override the fusion.
//!
//! Cranfield's `text` already begins with the title, so the default indexes it as the body
//! alone (title boost 0), like the bm25s reference; `PAIRS` and `SLOP` override the term-pair
//! weight and distance of the product's defaults.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use dataflow_embed::{default_model_dir, Embedder};
use dataflow_search::index::{
    embed_records, pack_records, Boosts, BuildStats, Fusion, Mode, Record, SearchIndex,
};
use std::io::{BufRead, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: cranfield DIR RUN_OUT [title_boost] [body_boost]".into());
    }
    let dir = std::path::Path::new(&args[1]);
    let boost = |i: usize, d: f32| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let env = |k: &str, d: f32| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let d = Boosts::default();
    let boosts = Boosts {
        title: boost(3, 0.0),
        heading: 0.0,
        body: boost(4, d.body),
        pairs: env("PAIRS", d.pairs),
        pair_slop: env("SLOP", d.pair_slop as f32) as u32,
        pair_candidates: env("CANDIDATES", d.pair_candidates as f32) as usize,
        feedback_docs: env("FB_DOCS", d.feedback_docs as f32) as usize,
        feedback_terms: env("FB_TERMS", d.feedback_terms as f32) as usize,
        feedback_original: env("FB_LAMBDA", d.feedback_original),
        feedback_temperature: env("FB_TEMP", d.feedback_temperature),
    };
    let read = |name: &str| -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
        let f = std::fs::File::open(dir.join(name))?;
        std::io::BufReader::new(f)
            .lines()
            .map(|l| Ok(serde_json::from_str(&l?)?))
            .collect()
    };
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let docs = read("docs.jsonl")?;
    let mode: Mode = std::env::var("MODE")
        .unwrap_or_else(|_| "lexical".into())
        .parse()?;
    let model = match mode {
        Mode::Lexical => None,
        _ => Some(Embedder::load(&default_model_dir())?),
    };
    let started = std::time::Instant::now();
    let records: Vec<Record> = docs
        .iter()
        .map(|d| Record {
            id: s(d, "id"),
            doc: s(d, "id"),
            title: s(d, "title"),
            heading: String::new(),
            anchor: String::new(),
            body: s(d, "text"),
        })
        .collect();
    let cache = std::env::var("INDEX_CACHE").ok();
    let bytes = match (&model, cache.as_deref().map(std::fs::read)) {
        (Some(_), Some(Ok(b))) => b,
        (Some(m), _) => {
            let v = embed_records(&records, m, None, &mut BuildStats::default())?;
            let b = pack_records(
                records,
                Vec::new(),
                String::new(),
                chrono::Utc::now(),
                Some(&v),
            )?;
            if let Some(c) = &cache {
                std::fs::write(c, &b)?;
            }
            b
        }
        (None, _) => pack_records(records, Vec::new(), String::new(), chrono::Utc::now(), None)?,
    };
    let f = Fusion::default();
    let fusion = Fusion {
        rrf_k: env("RRF_K", f.rrf_k),
        lexical_weight: env("W_LEX", f.lexical_weight),
        page_weight: env("W_PAGE", f.page_weight),
        semantic_weight: env("W_SEM", f.semantic_weight),
        candidates: env("CANDIDATES_FUSED", f.candidates as f32) as usize,
    };
    let index = SearchIndex::open(&bytes)?
        .with_boosts(boosts)
        .with_fusion(fusion);
    eprintln!(
        "indexed {} docs in {:?} ({} bytes)",
        docs.len(),
        started.elapsed(),
        bytes.len()
    );
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[2])?);
    for q in read("queries.jsonl")? {
        let qid = s(&q, "id");
        let hits = match index.rank_mode(&s(&q, "text"), 100, mode, model.as_ref().map(|m| m as _))
        {
            Ok(r) => r.hits,
            Err(e) => {
                eprintln!("query {qid}: {e}");
                continue;
            }
        };
        for (rank, h) in hits.iter().enumerate() {
            writeln!(out, "{qid} Q0 {} {} {} dataflow", h.doc, rank + 1, h.score)?;
        }
    }
    out.flush()?;
    Ok(())
}
