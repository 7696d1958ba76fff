//! The encoder against `candle-transformers`' BERT on the same weights and inputs, alternating
//! query by query so both see the same machine: per-query forward time (p50 / p99) for each
//! text of a questions file (JSON Lines with a `text` field), one text at a time; then the
//! encoder alone by input length (synthetic token ids).
//!
//! cargo run --profile profiling -p dataflow-embed --example encoder_bench -- QUESTIONS.jsonl
//!
//! Pin to one core with `taskset -c 1`, as the search function has one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use dataflow_embed::{default_model_dir, Config, Embedder, Encoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: encoder_bench QUESTIONS.jsonl")?;
    let dir = default_model_dir();
    let tokens = Embedder::load(&dir)?;
    let config = std::fs::read(dir.join("config.json"))?;
    let weights = std::fs::read(dir.join("model.safetensors"))?;
    let d = Device::Cpu;
    let vb = || VarBuilder::from_buffered_safetensors(weights.clone(), DType::F32, &d);
    let ours = Encoder::load(vb()?, &serde_json::from_slice::<Config>(&config)?)?;
    let theirs = BertModel::load(vb()?, &serde_json::from_slice::<BertConfig>(&config)?)?;
    let mut inputs = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let ids = tokens.token_ids(v["text"].as_str().unwrap_or_default())?;
        let n = ids.len();
        inputs.push(Tensor::from_vec(ids, (1, n), &d)?);
    }
    let mean_len =
        inputs.iter().map(|t| t.dim(1).unwrap_or(0)).sum::<usize>() / inputs.len().max(1);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for pass in 0..4 {
        for ids in &inputs {
            let mask = ids.ones_like()?;
            let t = Instant::now();
            ours.forward(ids, &mask)?;
            let ta = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            theirs.forward(ids, &ids.zeros_like()?, Some(&mask))?;
            let tb = t.elapsed().as_secs_f64() * 1e3;
            // The first pass warms the caches and the allocator.
            if pass > 0 {
                a.push(ta);
                b.push(tb);
            }
        }
    }
    let pct = |v: &mut Vec<f64>, p: usize| {
        v.sort_by(f64::total_cmp);
        v[(v.len() * p / 100).min(v.len() - 1)]
    };
    println!("texts {} mean_tokens {mean_len}", inputs.len());
    println!(
        "encoder_ms p50 {:.2} p99 {:.2}",
        pct(&mut a, 50),
        pct(&mut a, 99)
    );
    println!(
        "candle_transformers_bert_ms p50 {:.2} p99 {:.2}",
        pct(&mut b, 50),
        pct(&mut b, 99)
    );
    let mut by_len = Vec::new();
    for len in [2usize, 8, 12, 16, 17, 20, 26, 32] {
        let ids = Tensor::from_vec((0..len as u32).map(|i| 1000 + i).collect(), (1, len), &d)?;
        let mask = ids.ones_like()?;
        let mut v = Vec::new();
        for i in 0..120 {
            let t = Instant::now();
            ours.forward(&ids, &mask)?;
            if i >= 20 {
                v.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        by_len.push(format!("{len}:{:.2}", pct(&mut v, 50)));
    }
    println!("encoder_ms_by_tokens p50 {}", by_len.join(" "));
    Ok(())
}
