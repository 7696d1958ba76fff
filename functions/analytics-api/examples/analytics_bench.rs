//! Analytics API benchmark: DAYS x TYPES of data (default a year x 50 event types, one aggregate
//! file per day as after compaction), then in-process warm request latency, cold start time and
//! peak resident memory, and the accuracy of `unique_users` against exact distinct counts.
//!
//!   cargo run --release -p analytics-api --example analytics_bench
//!   BENCH_DAYS=1095 BENCH_TYPES=200 cargo run --release -p analytics-api --example analytics_bench
//!   AWS_ENDPOINT_URL=http://127.0.0.1:4566 cargo run --release -p analytics-api --example analytics_bench -- --emulator
//!
//! With `--emulator` the files are uploaded to a fresh bucket of the emulator and the cold start
//! (new state, first request reads everything from S3) is timed too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use dataflow_core::checkpoint::MemoryCheckpoints;
use dataflow_core::config::Config;
use dataflow_core::event::format_date;
use dataflow_core::parquet::{encode_aggregate_rows, AggregateRow};
use dataflow_core::sketch::UserSketch;
use dataflow_core::storage::{Body as Upload, MemoryStore, ObjectStore};
use http_body_util::BodyExt;
use tower::ServiceExt;

const FIRST_DAY: i32 = 19_723; // 2024-01-01

fn shape(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Peak resident memory of this process so far (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Deterministic users of (day, type): a sliding window over a 2M-user population, so ranges
/// overlap realistically and exact distinct counts are cheap to compute.
fn users(day: i32, ty: usize) -> std::ops::Range<u64> {
    let size = 200 + (ty as u64 * 37) % 1800;
    let start = (day as u64 * 3_000 + ty as u64 * 11_000) % 2_000_000;
    start..start + size
}

async fn request(app: &axum::Router, uri: &str) -> serde_json::Value {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{uri}: {}", resp.status());
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let days = shape("BENCH_DAYS", 365) as i32;
    let types = shape("BENCH_TYPES", 50);
    let emulator = std::env::args().any(|a| a == "--emulator");
    let mut cfg = Config::from_lookup(|_| None).unwrap();
    let store: Arc<dyn ObjectStore> = if emulator {
        cfg = Config::from_env().unwrap();
        cfg.lake_bucket = format!("bench-lake-{}", std::process::id());
        let clients = dataflow_aws::Clients::new(&cfg).await;
        dataflow_aws::resources::ensure_bucket(&clients.s3, &cfg.lake_bucket)
            .await
            .unwrap();
        Arc::new(dataflow_aws::S3Store::new(clients.s3))
    } else {
        Arc::new(MemoryStore::default())
    };
    let t = Instant::now();
    let mut bytes_total = 0;
    for d in 0..days {
        let rows: Vec<AggregateRow> = (0..types)
            .map(|ty| {
                let mut s = UserSketch::new();
                for u in users(d, ty) {
                    s.insert(&format!("user-{u}"));
                }
                AggregateRow {
                    event_type: format!("type_{ty:02}"),
                    event_count: 1_000 + ty as u64,
                    users: s,
                    min_time_us: 0,
                    max_time_us: 0,
                }
            })
            .collect();
        let bytes = encode_aggregate_rows(&rows).unwrap();
        bytes_total += bytes.len();
        let key = cfg
            .layout
            .aggregate_key(&format_date(FIRST_DAY + d), "compacted-bench");
        store
            .put(
                &cfg.lake_bucket,
                &key,
                Upload::Bytes(bytes),
                "application/vnd.apache.parquet",
            )
            .await
            .unwrap();
    }
    println!(
        "data: {days} days x {types} types, {} files, {:.1} MB of Parquet, written in {:.1} s",
        days,
        bytes_total as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let state = analytics_api::AppState::new(
        store.clone(),
        Arc::new(MemoryCheckpoints::default()),
        &cfg,
        Duration::from_secs(3600),
    );
    let app = analytics_api::router(Arc::new(state));
    let before = peak_rss_mb();
    let t = Instant::now();
    request(&app, "/analytics/summary").await;
    println!(
        "cold: first /analytics/summary (list + fetch + decode + build) {:.0} ms{}; peak RSS {:.0} MB (before the first request {:.0} MB, which holds the generated data in memory runs)",
        t.elapsed().as_secs_f64() * 1e3,
        if emulator {
            " from the emulator"
        } else {
            " from memory"
        },
        peak_rss_mb().unwrap_or(0.0),
        before.unwrap_or(0.0)
    );

    // Warm latency over distinct queries (each a cache miss), then the repeated default query.
    let mut queries = Vec::new();
    for i in 0..400 {
        let a = (i * 7) % (days * 4 / 5).max(1);
        let b = a + 1 + (i * 13) % (days - a - 1).max(1);
        let q = match i % 4 {
            0 => format!(
                "/analytics/summary?from={}&to={}",
                format_date(FIRST_DAY + a),
                format_date(FIRST_DAY + b)
            ),
            1 => format!(
                "/analytics/summary?from={}&to={}&event_type=type_{:02}",
                format_date(FIRST_DAY + a),
                format_date(FIRST_DAY + b),
                i as usize % types
            ),
            2 => format!(
                "/analytics/metrics?from={}&limit=100",
                format_date(FIRST_DAY + a)
            ),
            _ => format!(
                "/analytics/summary?from={}",
                format_date(FIRST_DAY + a + (i % 7))
            ),
        };
        queries.push((i % 4, q));
        if i % 4 == 1 {
            // The same type over another range: warm once the type's month sketches exist.
            let (a2, b2) = ((a + 3).min(days - 1), (b + 11).min(days - 1));
            queries.push((
                5,
                format!(
                    "/analytics/summary?from={}&to={}&event_type=type_{:02}",
                    format_date(FIRST_DAY + a2),
                    format_date(FIRST_DAY + b2),
                    i as usize % types
                ),
            ));
        }
    }
    // Filtered summaries run twice over other ranges: the first pass includes building each
    // type's month sketches (at its first filtered query), the second is warm.
    for kind in [0, 1, 5, 2, 3] {
        let mut times: Vec<Duration> = Vec::new();
        for (k, q) in &queries {
            if *k != kind {
                continue;
            }
            let t = Instant::now();
            request(&app, q).await;
            times.push(t.elapsed());
        }
        times.sort();
        let name = match kind {
            0 => "summary, random range, all types",
            1 => "summary, random range, one type (first query per type included)",
            5 => "summary, random range, one type (type seen before, new range)",
            2 => "metrics page of 100",
            _ => "summary, open-ended range",
        };
        println!(
            "warm {name}: n={} p50 {:.3} ms p99 {:.3} ms",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    let mut times = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        request(&app, "/analytics/summary").await;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "warm summary, repeated full-year query: p50 {:.3} ms p99 {:.3} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );

    // Accuracy of unique_users against exact distinct counts.
    let mut errors = Vec::new();
    let last = days - 1;
    for (a, b) in [
        (0, 0),
        (0, 6.min(last)),
        (10.min(last), 40.min(last)),
        (last / 4, last / 2),
        (0, last),
        (last / 2, last),
    ] {
        let mut exact = HashSet::new();
        for d in a..=b {
            for ty in 0..types {
                exact.extend(users(d, ty));
            }
        }
        let v = request(
            &app,
            &format!(
                "/analytics/summary?from={}&to={}",
                format_date(FIRST_DAY + a),
                format_date(FIRST_DAY + b)
            ),
        )
        .await;
        let est = v["unique_users"].as_u64().unwrap() as f64;
        let err = (est - exact.len() as f64) / exact.len() as f64;
        errors.push(err.abs());
        println!(
            "accuracy days {a}..={b}: exact {} estimate {} error {:+.3}%",
            exact.len(),
            est,
            err * 100.0
        );
    }
    errors.sort_by(|a, b| a.total_cmp(b));
    println!(
        "accuracy: max |error| {:.3}%",
        errors.last().unwrap() * 100.0
    );
}
