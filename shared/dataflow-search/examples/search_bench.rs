//! Search benchmark on a Markdown corpus: build time, index object size, open time, and
//! in-process search latency (p50/p99, snippets included) over queries made from the corpus's
//! own headings plus a fixed set of operator questions.
//!
//! cargo run --profile profiling -p dataflow-search --example search_bench -- DOCS_DIR [OUT_FILE]

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::time::Instant;

use dataflow_search::chunk::ChunkOptions;
use dataflow_search::index::{build, SearchIndex};
use dataflow_search::store::read_local_docs;

const QUESTIONS: &[&str] = &[
    "how do I reduce cold start latency",
    "configure reserved concurrency for a function",
    "process messages from an SQS queue with partial batch failures",
    "invoke a function asynchronously and handle retries",
    "grant a function permission to read from S3",
    "environment variables encryption with KMS",
    "deploy a container image",
    "connect a function to a VPC",
    "what is the maximum timeout",
    "monitor functions with CloudWatch metrics",
    "use layers to share code",
    "provisioned concurrency autoscaling",
    "dead-letter queue for failed events",
    "function URL authentication",
    "arm64 graviton processors",
    "ephemeral storage tmp size",
    "event source mapping filtering",
    "X-Ray tracing",
    "SnapStart",
    "Kinesis stream batch window",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: search_bench DOCS_DIR [OUT_FILE]")?;
    let (docs, skipped) = read_local_docs(std::path::Path::new(dir))?;
    let bytes_in: usize = docs.iter().map(|d| d.text.len()).sum();
    let t = Instant::now();
    let packed = build(&docs, ChunkOptions::default(), chrono::Utc::now())?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some(out) = args.get(2) {
        std::fs::write(out, &packed)?;
    }
    let t = Instant::now();
    // CANDIDATES overrides how many passages get term-pair scores (tuning runs).
    let mut boosts = dataflow_search::index::Boosts::default();
    if let Some(n) = std::env::var("CANDIDATES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        boosts.pair_candidates = n;
    }
    let index = SearchIndex::open(&packed)?.with_boosts(boosts);
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    // Queries: the fixed questions plus every 7th heading of the corpus (lowercased), so the
    // set covers the corpus's own vocabulary without hand-picking.
    let mut queries: Vec<String> = QUESTIONS.iter().map(|q| q.to_string()).collect();
    // Known items: a `##` heading's text should find its own section.
    let mut known: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for d in &docs {
        for line in d.text.lines().filter(|l| l.starts_with("## ")) {
            let q = line[3..].to_lowercase();
            known.entry(q.clone()).or_insert_with(|| d.path.clone());
            queries.push(q);
        }
    }
    let queries: Vec<String> = queries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i < QUESTIONS.len() || i % 7 == 0)
        .map(|(_, q)| q)
        .filter(|q| SearchIndex::query_terms(q).is_ok())
        .collect();
    // Warm-up pass, then three timed passes.
    for q in &queries {
        index.search(q, 5)?;
    }
    let mut lat = Vec::new();
    let mut empty = 0;
    for _ in 0..3 {
        for q in &queries {
            let t = Instant::now();
            let hits = index.search(q, 5)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            empty += usize::from(hits.is_empty());
        }
    }
    // Where the time goes: ranking alone (no snippets), and ranking without term pairs.
    let p50 = |idx: &SearchIndex, snippets: bool| -> Result<f64, Box<dyn std::error::Error>> {
        let mut l = Vec::new();
        for q in &queries {
            let t = Instant::now();
            if snippets {
                idx.search(q, 5)?;
            } else {
                idx.rank(q, 5)?;
            }
            l.push(t.elapsed().as_secs_f64() * 1e6);
        }
        l.sort_by(|a, b| a.total_cmp(b));
        Ok(l[l.len() / 2])
    };
    let rank_p50 = p50(&index, false)?;
    let no_pairs = SearchIndex::open(&packed)?.with_boosts(dataflow_search::index::Boosts {
        pairs: 0.0,
        ..Default::default()
    });
    let no_pairs_p50 = p50(&no_pairs, true)?;
    // Pair scores go to the best candidates by term score only: how often does that change
    // the top 5 against scoring pairs on every passage?
    let exhaustive = SearchIndex::open(&packed)?.with_boosts(dataflow_search::index::Boosts {
        pair_candidates: usize::MAX,
        ..Default::default()
    });
    let ids = |hits: Vec<dataflow_search::index::Hit>| -> Vec<String> {
        hits.into_iter().map(|h| h.passage_id).collect()
    };
    let mut differ = 0;
    for q in &queries {
        differ += usize::from(ids(index.rank(q, 5)?) != ids(exhaustive.rank(q, 5)?));
    }
    let exhaustive_p50 = p50(&exhaustive, true)?;
    // Pseudo-relevance feedback: its cost, and how often it changes the top 5 (and whether the
    // first hit stays in the top 5 without it).
    let no_feedback = SearchIndex::open(&packed)?.with_boosts(dataflow_search::index::Boosts {
        feedback_docs: 0,
        ..Default::default()
    });
    let no_feedback_p50 = p50(&no_feedback, true)?;
    let (mut fb_differ, mut fb_first_kept) = (0, 0);
    for q in &queries {
        let (with, without) = (ids(index.rank(q, 5)?), ids(no_feedback.rank(q, 5)?));
        fb_differ += usize::from(with != without);
        fb_first_kept += usize::from(without.first().is_some_and(|f| with.contains(f)));
    }
    // Reciprocal rank of the known section (same document, a heading path ending in a heading
    // the query starts with) among the top 5, over the heading queries.
    let known_mrr = |idx: &SearchIndex| -> Result<f64, Box<dyn std::error::Error>> {
        let (mut sum, mut n) = (0.0, 0);
        for q in &queries {
            let Some(doc) = known.get(q) else { continue };
            n += 1;
            let hits = idx.rank(q, 5)?;
            if let Some(i) = hits.iter().position(|h| {
                let last = h.heading.rsplit(" › ").next().unwrap_or("").to_lowercase();
                &h.doc == doc && !last.is_empty() && q.starts_with(&last)
            }) {
                sum += 1.0 / (i + 1) as f64;
            }
        }
        Ok(if n == 0 { 0.0 } else { sum / n as f64 })
    };
    eprintln!(
        "known-item MRR@5 over the heading queries: {:.3} with feedback, {:.3} without",
        known_mrr(&index)?,
        known_mrr(&no_feedback)?
    );
    eprintln!(
        "feedback: p50 us without it {no_feedback_p50:.0}; top-5 differs in {fb_differ} of {} queries; the unexpanded first hit stays in the top 5 in {fb_first_kept}",
        queries.len()
    );
    eprintln!(
        "p50 us: ranking only {rank_p50:.0}, without term pairs {no_pairs_p50:.0}, every passage a pair candidate {exhaustive_p50:.0}; top-5 differs from that in {differ} of {} queries",
        queries.len()
    );
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{{\"documents\": {}, \"skipped\": {}, \"input_bytes\": {}, \"passages\": {}, \"build_ms\": {:.0}, \"index_bytes\": {}, \"open_ms\": {:.1}, \"queries\": {}, \"searches\": {}, \"empty_results\": {}, \"search_us_p50\": {:.0}, \"search_us_p99\": {:.0}, \"search_us_max\": {:.0}}}",
        index.header.documents.len(),
        skipped.len(),
        bytes_in,
        index.header.passages,
        build_ms,
        packed.len(),
        open_ms,
        queries.len(),
        lat.len(),
        empty,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
    );
    Ok(())
}
