//! Analytics API benchmark: DAYS x TYPES of data (default a year x 50 event types, one aggregate
//! file per day as after compaction) and its monthly rollups, then the first answer after a cold
//! start, warm request latency, the API's peak resident memory, and the accuracy of
//! `unique_users` against exact distinct counts.
//!
//!   cargo run --release -p analytics-api --example analytics_bench
//!   BENCH_DAYS=1826 BENCH_TYPES=500 BENCH_DIR=/tmp/lake cargo run ... -- generate
//!   BENCH_DAYS=1826 BENCH_TYPES=500 BENCH_DIR=/tmp/lake cargo run ... -- measure
//!   AWS_ENDPOINT_URL=http://127.0.0.1:4566 cargo run ... -- --emulator [generate|measure]
//!
//! Stores: in memory (default; generate and measure in one process), a folder (`BENCH_DIR`), or
//! the emulator's S3 (`--emulator`, bucket `BENCH_BUCKET` or `bench-lake-<days>x<types>`).
//! `generate` writes the daily files and runs the rollup; `rollup` runs the rollup alone (as the
//! scheduled run does); `measure` starts from nothing, so its peak RSS is the API's own. `BENCH_NO_ROLLUP=1` leaves the rollups out (every month is then
//! read from its daily files, as before the first rollup); `BENCH_DIRTY=1` adds a partial to the
//! last month for the measurement (read from its daily files, as between two scheduled runs; the
//! accuracy figures then include its extra users).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use dataflow_core::checkpoint::MemoryCheckpoints;
use dataflow_core::event::format_date;
use dataflow_core::lake::parquet::{encode_aggregate_rows, AggregateRow};
use dataflow_dev::StackConfig as Config;
use dataflow_sketch::UserSketch;
use dataflow_store::{Body as Upload, FsStore, MemoryStore, ObjectStore};
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
fn peak_rss_mb() -> f64 {
    let kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Deterministic users of (day, type): a sliding window over a 2M-user population, so ranges
/// overlap realistically and exact distinct counts are cheap to compute (a union of intervals).
fn users(day: i32, ty: usize) -> std::ops::Range<u64> {
    let size = 200 + (ty as u64 * 37) % 1800;
    let start = (day as u64 * 3_000 + ty as u64 * 11_000) % 2_000_000;
    start..start + size
}

fn exact_distinct(days: std::ops::RangeInclusive<i32>, types: usize) -> u64 {
    let mut iv: Vec<(u64, u64)> = days
        .flat_map(|d| (0..types).map(move |t| users(d, t)))
        .map(|r| (r.start, r.end))
        .collect();
    iv.sort_unstable();
    let (mut total, mut cur): (u64, Option<(u64, u64)>) = (0, None);
    for (a, b) in iv {
        cur = match cur {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + cur.map_or(0, |(s, e)| e - s)
}

fn day_file(d: i32, types: usize) -> Vec<u8> {
    let rows: Vec<AggregateRow> = (0..types)
        .map(|ty| {
            let mut s = UserSketch::new();
            for u in users(d, ty) {
                s.insert(&format!("user-{u}"));
            }
            AggregateRow {
                event_type: format!("type_{ty:03}"),
                event_count: 1_000 + ty as u64,
                users: s,
                min_time_us: 0,
                max_time_us: 0,
            }
        })
        .collect();
    encode_aggregate_rows(&rows).expect("encode")
}

async fn request(app: &axum::Router, uri: &str) -> serde_json::Value {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert!(resp.status().is_success(), "{uri}: {}", resp.status());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("json")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn generate(store: &Arc<dyn ObjectStore>, cfg: &Config, days: i32, types: usize) {
    let t = Instant::now();
    let mut bytes_total = 0;
    // Two days at a time: one per core.
    let mut d = 0;
    while d < days {
        let batch: Vec<i32> = (d..(d + 2).min(days)).collect();
        let handles: Vec<_> = batch
            .iter()
            .map(|&day| tokio::task::spawn_blocking(move || (day, day_file(day, types))))
            .collect();
        for h in handles {
            let (day, bytes) = h.await.expect("generate");
            bytes_total += bytes.len();
            let key = cfg
                .etl
                .lake
                .layout
                .aggregate_key(&format_date(FIRST_DAY + day), "compacted-bench");
            store
                .put(
                    &cfg.etl.lake.lake_bucket,
                    &key,
                    Upload::Bytes(bytes),
                    "application/vnd.apache.parquet",
                )
                .await
                .expect("put");
        }
        d += 2;
    }
    println!(
        "data: {days} days x {types} types, {days} files, {:.1} MB of Parquet, written in {:.1} s",
        bytes_total as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    if std::env::var("BENCH_NO_ROLLUP").is_ok() {
        println!("rollup: skipped (BENCH_NO_ROLLUP)");
        return;
    }
    rollup(store, cfg).await;
}

async fn rollup(store: &Arc<dyn ObjectStore>, cfg: &Config) {
    let t = Instant::now();
    let r = dataflow_core::rollup::refresh(
        store,
        &cfg.etl.lake.lake_bucket,
        &cfg.etl.lake.layout,
        dataflow_core::time::now_ms(),
        dataflow_core::rollup::PRUNE_GRACE_MS,
    )
    .await
    .expect("rollup");
    println!(
        "rollup: {} months and {} years rebuilt ({} unchanged), {} objects written, {} pruned, in {:.1} s",
        r.months_rebuilt,
        r.years_rebuilt,
        r.months_unchanged,
        r.objects_written,
        r.objects_pruned,
        t.elapsed().as_secs_f64()
    );
}

async fn measure(store: Arc<dyn ObjectStore>, cfg: &Config, days: i32, types: usize, from: &str) {
    let new_app = || {
        let state = analytics_api::AppState::new(
            store.clone(),
            Arc::new(MemoryCheckpoints::default()),
            &cfg.etl.lake,
            Duration::from_secs(3600),
        );
        analytics_api::router(Arc::new(state))
    };
    // A new partial on the last day: its month is read from the daily files until the next
    // rollup, as between two scheduled runs.
    let dirty = std::env::var("BENCH_DIRTY").is_ok().then(|| {
        cfg.etl
            .lake
            .layout
            .aggregate_key(&format_date(FIRST_DAY + days - 1), "bench-late")
    });
    if let Some(key) = &dirty {
        store
            .put(
                &cfg.etl.lake.lake_bucket,
                key,
                Upload::Bytes(day_file(days + 7, 3)),
                "application/vnd.apache.parquet",
            )
            .await
            .expect("put");
        println!("dirty: one new partial in the last month ({key})");
    }
    let before = peak_rss_mb();
    let app = new_app();
    let t = Instant::now();
    let v = request(&app, "/analytics/summary").await;
    println!(
        "cold: first /analytics/summary {:.0} ms from {from}; peak RSS {:.0} MB (before the first request {:.0} MB); {} events",
        t.elapsed().as_secs_f64() * 1e3,
        peak_rss_mb(),
        before,
        v["total_events"]
    );
    let last = format_date(FIRST_DAY + days - 1);
    let mid = format_date(FIRST_DAY + days / 2);
    for (what, uri) in [
        (
            "range cutting two months, all types",
            format!("/analytics/summary?from=2024-01-10&to={mid}"),
        ),
        (
            "whole history, one type",
            "/analytics/summary?event_type=type_007".to_owned(),
        ),
        (
            "range, one type",
            format!("/analytics/summary?from=2024-02-03&to={last}&event_type=type_003"),
        ),
        (
            "metrics page of 100",
            format!("/analytics/metrics?from={mid}&limit=100"),
        ),
    ] {
        let app = new_app();
        let t = Instant::now();
        request(&app, &uri).await;
        println!("cold: {what} {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    }

    // Warm latency over distinct queries (each a cache miss of the answer cache).
    let mut queries = Vec::new();
    for i in 0..400 {
        let a = (i * 7) % (days * 4 / 5).max(1);
        let b = a + 1 + (i * 13) % (days - a - 1).max(1);
        let ty = (i as usize * 7) % types;
        let q = match i % 4 {
            0 => format!(
                "/analytics/summary?from={}&to={}",
                format_date(FIRST_DAY + a),
                format_date(FIRST_DAY + b)
            ),
            1 => format!(
                "/analytics/summary?from={}&to={}&event_type=type_{ty:03}",
                format_date(FIRST_DAY + a),
                format_date(FIRST_DAY + b),
            ),
            2 => format!(
                "/analytics/metrics?from={}&limit=100",
                format_date(FIRST_DAY + a)
            ),
            // Open-ended: the warm pass (below) asks from the next day.
            _ => format!(
                "/analytics/summary?from={}",
                format_date(FIRST_DAY + (a + (i % 7) + 1).min(days - 1))
            ),
        };
        queries.push((i % 4, q));
        if i % 4 == 1 {
            let (a2, b2) = ((a + 3).min(days - 1), (b + 11).min(days - 1));
            queries.push((
                5,
                format!(
                    "/analytics/summary?from={}&to={}&event_type=type_{ty:03}",
                    format_date(FIRST_DAY + a2),
                    format_date(FIRST_DAY + b2),
                ),
            ));
        }
    }
    // Every query runs twice: the first pass loads the months it touches, the second is warm.
    for pass in ["first pass (loads months)", "warm"] {
        for kind in [0, 1, 5, 2, 3] {
            let mut times: Vec<Duration> = Vec::new();
            for (k, q) in &queries {
                if *k != kind {
                    continue;
                }
                // The same question with its parameters reversed: another key for the answer
                // cache, so the warm pass measures the read model, not the cache.
                let q = match (pass, q.split_once('?')) {
                    ("warm", Some((path, params))) if params.contains('&') => {
                        let mut p: Vec<&str> = params.split('&').collect();
                        p.reverse();
                        format!("{path}?{}", p.join("&"))
                    }
                    ("warm", Some((path, params))) => {
                        let day = params
                            .strip_prefix("from=")
                            .and_then(dataflow_core::event::parse_date)
                            .map_or(FIRST_DAY, |d| (d - 1).max(FIRST_DAY));
                        format!("{path}?from={}", format_date(day))
                    }
                    _ => q.clone(),
                };
                let t = Instant::now();
                request(&app, &q).await;
                times.push(t.elapsed());
            }
            times.sort();
            let name = match kind {
                0 => "summary, random range, all types",
                1 => "summary, random range, one type",
                5 => "summary, one type seen before, new range",
                2 => "metrics page of 100",
                _ => "summary, open-ended range",
            };
            println!(
                "{pass} {name}: n={} p50 {:.3} ms p99 {:.3} ms",
                times.len(),
                percentile(&times, 0.5),
                percentile(&times, 0.99)
            );
        }
    }
    println!("peak RSS after the warm queries: {:.0} MB", peak_rss_mb());

    // Accuracy of unique_users against exact distinct counts.
    let mut worst: f64 = 0.0;
    let last = days - 1;
    for (a, b) in [
        (0, 0),
        (0, 6.min(last)),
        (10.min(last), 40.min(last)),
        (last / 4, last / 2),
        (0, last),
        (last / 2, last),
    ] {
        let exact = exact_distinct(a..=b, types);
        let v = request(
            &app,
            &format!(
                "/analytics/summary?from={}&to={}",
                format_date(FIRST_DAY + a),
                format_date(FIRST_DAY + b)
            ),
        )
        .await;
        let est = v["unique_users"].as_u64().unwrap_or(0) as f64;
        let err = (est - exact as f64) / exact as f64;
        worst = worst.max(err.abs());
        println!(
            "accuracy days {a}..={b}: exact {exact} estimate {est} error {:+.3}%",
            err * 100.0
        );
    }
    println!("accuracy: max |error| {:.3}%", worst * 100.0);
    if let Some(key) = &dirty {
        store
            .delete(&cfg.etl.lake.lake_bucket, key)
            .await
            .expect("delete");
    }
}

#[tokio::main]
async fn main() {
    let days = shape("BENCH_DAYS", 365) as i32;
    let types = shape("BENCH_TYPES", 50);
    let args: Vec<String> = std::env::args().collect();
    let emulator = args.iter().any(|a| a == "--emulator");
    let phase = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "all".into());
    let mut cfg = Config::from_lookup(|_| None).expect("config");
    let (store, from): (Arc<dyn ObjectStore>, &str) = if emulator {
        cfg = Config::from_env().expect("config");
        cfg.etl.lake.lake_bucket =
            std::env::var("BENCH_BUCKET").unwrap_or_else(|_| format!("bench-lake-{days}x{types}"));
        let clients = dataflow_dev::Clients::new(&cfg).await;
        dataflow_dev::resources::ensure_bucket(&clients.s3, &cfg.etl.lake.lake_bucket)
            .await
            .expect("bucket");
        (
            Arc::new(dataflow_aws::S3Store::new(clients.s3)),
            "the emulator",
        )
    } else if let Ok(dir) = std::env::var("BENCH_DIR") {
        std::fs::create_dir_all(&dir).expect("BENCH_DIR");
        (
            Arc::new(FsStore::default().with_bucket(&cfg.etl.lake.lake_bucket, dir)),
            "a folder",
        )
    } else {
        (Arc::new(MemoryStore::default()), "memory")
    };
    if phase == "rollup" {
        rollup(&store, &cfg).await;
        return;
    }
    if phase != "measure" {
        generate(&store, &cfg, days, types).await;
    }
    if phase != "generate" {
        measure(store, &cfg, days, types, from).await;
    }
}
