//! Speed of search by meaning on a Markdown corpus, as the search function runs it: model load
//! and index open (the cold start's work), query embedding, lexical / semantic / hybrid search
//! latency (snippets included) for the questions and for search-box queries (the corpus's
//! headings), a rebuild after one page changed (vectors of the rest reused),
//! and the process's peak RSS.
//!
//! cargo run --profile profiling -p dataflow-search --example hybrid_bench -- \
//!     DOCS_DIR QUESTIONS.jsonl INDEX_FILE
//!
//! INDEX_FILE is built (with the model) when missing. Run it pinned to one core
//! (`taskset -c 1`) for the per-query figures; bench/search.sh does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::path::Path;
use std::time::Instant;

use dataflow_embed::{default_model_dir, Embed, Embedder};
use dataflow_search::chunk::ChunkOptions;
use dataflow_search::index::{build_with, read_vectors, Mode, SearchIndex};
use dataflow_search::store::read_local_docs;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

type Timings = (Vec<f64>, Vec<(Mode, f64, f64)>);

/// Query embedding times, and each mode's p50 / p99: a warm-up, then three passes.
fn timings(
    index: &SearchIndex,
    model: &Embedder,
    qs: &[String],
) -> Result<Timings, Box<dyn std::error::Error>> {
    for q in qs {
        index.search_mode(q, 5, Mode::Hybrid, Some(model))?;
    }
    let mut embed_ms = Vec::new();
    for _ in 0..3 {
        for q in qs {
            let t = Instant::now();
            model.embed(&[q.as_str()])?;
            embed_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut by_mode = Vec::new();
    for mode in Mode::ALL {
        let mut ms = Vec::new();
        for _ in 0..3 {
            for q in qs {
                let t = Instant::now();
                let r = index.search_mode(q, 5, mode, Some(model))?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                if r.mode != mode {
                    return Err(format!("{mode} fell back: {:?}", r.fallback).into());
                }
            }
        }
        by_mode.push((mode, pct(&mut ms, 0.5), pct(&mut ms, 0.99)));
    }
    Ok((embed_ms, by_mode))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: hybrid_bench DOCS_DIR QUESTIONS.jsonl INDEX_FILE".into());
    }
    let (dir, questions, file) = (&args[1], &args[2], Path::new(&args[3]));
    let (mut docs, _) = read_local_docs(Path::new(dir))?;
    let t = Instant::now();
    let model = Embedder::load(&default_model_dir())?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let packed = match std::fs::read(file) {
        Ok(b) => b,
        Err(_) => {
            let t = Instant::now();
            let (b, _) = build_with(
                &docs,
                ChunkOptions::default(),
                chrono::Utc::now(),
                Some(&model),
                None,
            )?;
            eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());
            std::fs::write(file, &b)?;
            b
        }
    };
    let t = Instant::now();
    let index = SearchIndex::open(&packed)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut qs: Vec<String> = Vec::new();
    for line in std::fs::read_to_string(questions)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        qs.push(v["text"].as_str().unwrap_or_default().to_owned());
    }
    // Search-box queries besides the questions: the corpus's distinct `##` headings (their text
    // before an `<a name>` anchor, lowercased: a few words in the corpus's own vocabulary).
    let mut short: Vec<String> = docs
        .iter()
        .flat_map(|d| d.text.lines().filter(|l| l.starts_with("## ")))
        .map(|l| l[3..].split('<').next().unwrap_or("").trim().to_lowercase())
        .filter(|q| SearchIndex::query_terms(q).is_ok())
        .collect();
    short.sort();
    short.dedup();
    let long = timings(&index, &model, &qs)?;
    let short_t = timings(&index, &model, &short)?;
    // One page edited: only its passages are embedded again.
    let previous = read_vectors(&packed)?;
    if let Some(d) = docs.iter_mut().find(|d| d.path == "lambda-invocation.md") {
        d.text
            .push_str("\n\nOne more paragraph, added to measure a rebuild.\n");
    }
    let t = Instant::now();
    let (_, stats) = build_with(
        &docs,
        ChunkOptions::default(),
        chrono::Utc::now(),
        Some(&model),
        previous.as_ref(),
    )?;
    let rebuild_s = t.elapsed().as_secs_f64();
    println!(
        "model_load_ms {load_ms:.0} index_open_ms {open_ms:.0} index_bytes {} passages {}",
        packed.len(),
        index.header.passages
    );
    for (label, set, (mut embed_ms, by_mode)) in [
        ("questions", &qs, long),
        ("search-box queries", &short, short_t),
    ] {
        let tokens: usize = set
            .iter()
            .map(|q| model.token_ids(q).map_or(0, |t| t.len()))
            .sum();
        println!(
            "{label}: {} (mean {} tokens)",
            set.len(),
            tokens / set.len().max(1)
        );
        println!(
            "  query_embedding_ms p50 {:.2} p99 {:.2}",
            pct(&mut embed_ms, 0.5),
            pct(&mut embed_ms, 0.99)
        );
        for (mode, p50, p99) in by_mode {
            println!("  search_ms {mode} p50 {p50:.3} p99 {p99:.3}");
        }
    }
    println!(
        "rebuild_after_one_page_s {rebuild_s:.1} embedded {} reused {}",
        stats.embedded, stats.reused
    );
    println!("peak_rss_mb {:.0}", peak_rss_mb());
    Ok(())
}
