//! Embedding speed: model load, one short query at a time (p50/p90 over 200), and passages in
//! batches (texts per second), on the Markdown files of a folder cut into ~1,200-character
//! pieces.
//!
//! cargo run --profile profiling -p dataflow-embed --example embed_bench -- DOCS_DIR [PASSAGES]
//!
//! Pin to one core with `taskset -c 1` for the per-query figure; `BATCH` overrides the batch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::time::Instant;

use dataflow_embed::{default_model_dir, Embed, Embedder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: embed_bench DOCS_DIR [PASSAGES]")?;
    let want: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let t = Instant::now();
    let model = Embedder::load(&default_model_dir())?;
    println!("load_ms {:.0}", t.elapsed().as_secs_f64() * 1e3);
    let mut pieces = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    'files: for p in names {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let mut cur = String::new();
        for para in text.split("\n\n") {
            cur.push_str(para);
            cur.push('\n');
            if cur.len() > 1200 {
                pieces.push(std::mem::take(&mut cur));
                if pieces.len() >= want {
                    break 'files;
                }
            }
        }
    }
    let queries = [
        "the first request after a quiet hour is slow",
        "where do I keep a password so it is not in my code",
        "how do I run a cleanup job every weekday at 6 pm",
        "process messages from a queue in batches",
    ];
    let mut times = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        model.embed(&[queries[i % queries.len()]])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("query_ms p50 {:.2} p90 {:.2}", times[100], times[180]);
    let mut tok = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        model.token_ids(queries[i % queries.len()])?;
        tok.push(t.elapsed().as_secs_f64() * 1e3);
    }
    tok.sort_by(f64::total_cmp);
    println!("tokenize_ms p50 {:.3}", tok[100]);
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let tokens: usize = refs
        .iter()
        .map(|t| model.token_ids(t).map(|v| v.len()).unwrap_or(0))
        .sum();
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(dataflow_embed::BATCH);
    let t = Instant::now();
    model.embed_batched(&refs, batch)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "passages {} (mean {} tokens) in {:.1} s: {:.1}/s",
        refs.len(),
        tokens / refs.len().max(1),
        s,
        refs.len() as f64 / s
    );
    Ok(())
}
