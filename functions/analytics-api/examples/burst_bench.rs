//! Reads while data keeps arriving: two years of compacted, rolled-up history, then a burst of
//! raw objects each spanning 30 dates (late mobile events) through the ETL, with 16 clients
//! asking `/analytics/summary` all along and the compaction + rollup run on the local stack's
//! schedule. Reports latency during and after the burst (p50 / p99 / max, answers over 2 s,
//! non-200s), how long after the last object its events are all in the answer, how long until
//! every date is one file again, and the reader's store requests on its last refresh.
//!
//!   cargo build --profile profiling -p analytics-api --example burst_bench
//!   target/profiling/examples/burst_bench
//!
//! Shape: `BENCH_OBJECTS` (1000), `BENCH_TYPES` (50), `BENCH_CLIENTS` (16), `CACHE_SECONDS` (2, as
//! the local stack), `COMPACT_SECONDS` (60, as the local stack), `ETL_COMPACT_AT_FILES` (8).
//! In-process, over the in-memory store, or the folder store with `BENCH_DIR=/some/empty/dir`
//! (the raw and lake buckets as folders in it): the figures are the product's own work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use dataflow_config::{Env, FromEnv};
use dataflow_core::checkpoint::MemoryCheckpoints;
use dataflow_core::config::EtlConfig;
use dataflow_core::etl::work::Work;
use dataflow_core::etl::Etl;
use dataflow_core::event::format_date;
use dataflow_core::lake::parquet::{encode_aggregate_rows, AggregateRow};
use dataflow_core::lake::source::ObjectRef;
use dataflow_sketch::UserSketch;
use dataflow_store::{Body as Upload, FsStore, MemoryStore, ObjectStore};
use http_body_util::BodyExt;
use tower::ServiceExt;

const FIRST_DAY: i32 = 19_723; // 2024-01-01
const HISTORY_DAYS: i32 = 730;
const SPAN: i32 = 30;
const EVENTS_PER_DATE: usize = 10;
const HISTORY_EVENTS_PER_ROW: u64 = 100;

fn setting(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn day_file(d: i32, types: usize) -> Vec<u8> {
    let rows: Vec<AggregateRow> = (0..types)
        .map(|ty| {
            let mut s = UserSketch::new();
            for u in 0..50 {
                s.insert(&format!("h{d}-{ty}-{u}"));
            }
            AggregateRow {
                event_type: format!("type_{ty:03}"),
                event_count: HISTORY_EVENTS_PER_ROW,
                users: s,
                min_time_us: 0,
                max_time_us: 0,
            }
        })
        .collect();
    encode_aggregate_rows(&rows).expect("encode")
}

/// A raw object of the burst: EVENTS_PER_DATE events on each of SPAN dates spread over the
/// history (a device that was offline, then sent its backlog).
fn burst_object(i: usize, types: usize) -> Vec<u8> {
    let mut out = String::new();
    for j in 0..SPAN {
        let day = FIRST_DAY + ((i as i32 * 37 + j * 23) % HISTORY_DAYS);
        for k in 0..EVENTS_PER_DATE {
            out.push_str(&format!(
                "{{\"user_id\":\"b{i}-{k}\",\"event_type\":\"type_{:03}\",\"timestamp\":\"{}T12:00:00Z\"}}\n",
                (i + k) % types,
                format_date(day)
            ));
        }
    }
    out.into_bytes()
}

async fn total_events(app: &axum::Router) -> (u16, u64) {
    let resp = app
        .clone()
        .oneshot(
            Request::get("/analytics/summary")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let total = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["total_events"].as_u64())
        .unwrap_or(0);
    (status, total)
}

/// Dates with more than one aggregate file in their partition.
async fn crowded_dates(store: &dyn ObjectStore, cfg: &EtlConfig) -> usize {
    let listed = store
        .list(&cfg.lake.lake_bucket, &cfg.lake.layout.partitions_prefix())
        .await
        .expect("list");
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for m in listed {
        if let Some(d) = cfg.lake.layout.date_of_aggregate_key(&m.key) {
            *per.entry(d.to_owned()).or_default() += 1;
        }
    }
    per.values().filter(|n| **n > 1).count()
}

fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    format!(
        "{} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, over 2 s: {}",
        v.len(),
        at(0.5),
        at(0.99),
        v[v.len() - 1],
        v.iter().filter(|ms| **ms > 2_000.0).count()
    )
}

#[tokio::main]
async fn main() {
    match std::env::var_os("BENCH_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let store = FsStore::default()
                .with_bucket("dataflow-raw", dir.join("raw"))
                .with_bucket("dataflow-lake", dir.join("lake"));
            println!("store: folders under {}", dir.display());
            run(Arc::new(store)).await
        }
        None => {
            println!("store: in memory");
            run(Arc::new(MemoryStore::default())).await
        }
    }
}

async fn run<S: ObjectStore>(store: Arc<S>) {
    let objects = setting("BENCH_OBJECTS", 1000) as usize;
    let types = setting("BENCH_TYPES", 50) as usize;
    let clients = setting("BENCH_CLIENTS", 16) as usize;
    let refresh = Duration::from_secs(setting("CACHE_SECONDS", 2));
    let compact_every = Duration::from_secs(setting("COMPACT_SECONDS", 60));
    let at_files = setting("ETL_COMPACT_AT_FILES", 8).to_string();
    let cfg = EtlConfig::from_env_vars(&Env::from_pairs(&[("ETL_COMPACT_AT_FILES", &at_files)]))
        .expect("config");
    let ckpt = Arc::new(MemoryCheckpoints::default());
    let dyn_store: Arc<dyn ObjectStore> = store.clone();

    // History: one compacted file per day, rolled up.
    let t = Instant::now();
    for d in 0..HISTORY_DAYS {
        let key = cfg
            .lake
            .layout
            .aggregate_key(&format_date(FIRST_DAY + d), "compacted-history");
        dyn_store
            .put(
                &cfg.lake.lake_bucket,
                &key,
                Upload::Bytes(day_file(d, types)),
                "application/vnd.apache.parquet",
            )
            .await
            .expect("put");
    }
    dataflow_core::rollup::refresh(
        &dyn_store,
        &cfg.lake.lake_bucket,
        &cfg.lake.layout,
        dataflow_core::time::now_ms(),
        dataflow_core::rollup::PRUNE_GRACE_MS,
    )
    .await
    .expect("rollup");
    let history = HISTORY_DAYS as u64 * types as u64 * HISTORY_EVENTS_PER_ROW;
    println!(
        "history: {HISTORY_DAYS} days x {types} types ({history} events), written and rolled up in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let state = Arc::new(analytics_api::AppState::new(
        dyn_store.clone(),
        ckpt.clone(),
        &cfg.lake,
        refresh,
    ));
    let app = analytics_api::router(state.clone());
    let t = Instant::now();
    let (status, total) = total_events(&app).await;
    assert_eq!((status, total), (200, history));
    println!(
        "cold first summary: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // 16 clients, each recording (ms, status, during burst?) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let bursting = Arc::new(AtomicBool::new(true));
    let non_200 = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (app, stop, bursting, non_200) =
            (app.clone(), stop.clone(), bursting.clone(), non_200.clone());
        handles.push(tokio::spawn(async move {
            let (mut during, mut after) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _) = total_events(&app).await;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if status != 200 {
                    non_200.fetch_add(1, Ordering::Relaxed);
                }
                if bursting.load(Ordering::Relaxed) {
                    during.push(ms);
                } else {
                    after.push(ms);
                }
                // A client thinks between requests; without it 16 loops only measure the
                // scheduler.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (during, after)
        }));
    }

    // The local stack's schedule: compaction + rollups every COMPACT_SECONDS.
    let etl = Arc::new(Etl::new(store.clone(), ckpt.clone(), &cfg));
    let scheduler = {
        let (etl, stop) = (etl.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                while t.elapsed() < compact_every && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if !stop.load(Ordering::Relaxed) {
                    let r = etl.handle(Work::Compact).await;
                    assert!(r.errors.is_empty(), "{:?}", r.errors);
                    runs += 1;
                }
            }
            runs
        })
    };

    // The burst, through the ETL as the queue would hand it over.
    let t = Instant::now();
    for i in 0..objects {
        let key = format!("burst/{i:05}.jsonl");
        store
            .put(
                &cfg.lake.raw_bucket,
                &key,
                Upload::Bytes(burst_object(i, types)),
                "application/x-ndjson",
            )
            .await
            .expect("put");
        etl.process_object(ObjectRef::new(&cfg.lake.raw_bucket, key))
            .await
            .expect("process");
    }
    let burst_s = t.elapsed().as_secs_f64();
    let last = Instant::now();
    bursting.store(false, Ordering::Relaxed);
    let expected = history + (objects * SPAN as usize * EVENTS_PER_DATE) as u64;
    println!(
        "burst: {objects} objects x {SPAN} dates processed in {burst_s:.1} s; crowded dates at its end: {}",
        crowded_dates(store.as_ref(), &cfg).await
    );
    let visible = loop {
        if total_events(&app).await == (200, expected) {
            break last.elapsed().as_secs_f64();
        }
        assert!(last.elapsed() < Duration::from_secs(300), "never visible");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("every burst event visible {visible:.1} s after the last object was processed");
    let compacted = loop {
        if crowded_dates(store.as_ref(), &cfg).await == 0 {
            break last.elapsed().as_secs_f64();
        }
        assert!(last.elapsed() < Duration::from_secs(600), "never compacted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("every date one file again {compacted:.1} s after the last object");
    // The rollups follow the compaction; a little more reading after them.
    tokio::time::sleep(refresh * 3).await;
    stop.store(true, Ordering::Relaxed);
    let runs = scheduler.await.expect("scheduler");
    let (mut during, mut after) = (Vec::new(), Vec::new());
    for h in handles {
        let (d, a) = h.await.expect("client");
        during.extend(d);
        after.extend(a);
    }
    println!("scheduled compaction runs: {runs}");
    println!("during the burst: {}", stats(during));
    println!("after the burst: {}", stats(after));
    println!("non-200 answers: {}", non_200.load(Ordering::Relaxed));
    println!(
        "the reader's last refresh asked the store: {:?}",
        state.lake.last_requests()
    );
    let (status, total) = total_events(&app).await;
    assert_eq!((status, total), (200, expected));
}
