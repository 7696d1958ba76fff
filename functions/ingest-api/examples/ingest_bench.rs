//! Throughput and latency of `POST /events` on loopback: the ingest router served by axum (as
//! `dataflow serve` does), N keep-alive clients each sending batches of JSON Lines events.
//!
//! cargo run --profile profiling -p ingest-api --example ingest_bench -- [memory|firehose]
//!
//! Environment: BENCH_CLIENTS (8), BENCH_BATCH (500 events), BENCH_SECONDS (10). `memory` keeps
//! the records in memory (the server's own cost: parsing, the contract, packing); `firehose`
//! sends them to the delivery stream `EVENTS_STREAM` at `AWS_ENDPOINT_URL` (e.g. moto's server,
//! `infra/stack up`), as the local stack does. Prints one Markdown table row.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataflow_contract::window::WindowRule;
use dataflow_ingest::{EventSink, MemorySink, SinkError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts what it is sent and drops it, so a long run does not grow memory.
#[derive(Default)]
struct CountingSink {
    bytes: AtomicU64,
}

#[async_trait::async_trait]
impl EventSink for CountingSink {
    async fn put(&self, records: &[Vec<u8>]) -> Result<Vec<usize>, SinkError> {
        let n: usize = records.iter().map(Vec::len).sum();
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Vec::new())
    }
}

fn batch(client: usize, size: usize) -> Vec<u8> {
    let types = [
        "page_view",
        "click",
        "search",
        "add_to_cart",
        "purchase",
        "login",
    ];
    let mut out = Vec::with_capacity(size * 160);
    for i in 0..size {
        out.extend_from_slice(
            format!(
                "{{\"event_id\":\"e-{client}-{i}\",\"user_id\":\"u-{}\",\"event_type\":\"{}\",\"timestamp\":\"2024-03-0{}T10:{:02}:{:02}Z\",\"properties\":{{\"page\":\"/p/{}\"}}}}\n",
                (client * 7919 + i * 104_729) % 50_000,
                types[i % types.len()],
                1 + i % 9,
                i % 60,
                (i * 7) % 60,
                i % 100
            )
            .as_bytes(),
        );
    }
    out
}

/// One keep-alive connection: POST, read the answer, repeat until `stop`.
async fn client(
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    size: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    // Every answer must say all of the batch was accepted.
    let want = format!("{{\"accepted\":{size},");
    let mut lat = Vec::new();
    let Ok(stream) = TcpStream::connect(addr).await else {
        return lat;
    };
    stream.set_nodelay(true).ok();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let head = format!(
        "POST /events HTTP/1.1\r\nhost: bench\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if w.write_all(head.as_bytes()).await.is_err() || w.write_all(&body).await.is_err() {
            break;
        }
        let mut len = 0usize;
        let mut ok = false;
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return lat;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if l.starts_with("HTTP/1.1 ") {
                ok = l.starts_with("HTTP/1.1 200");
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; len];
        if r.read_exact(&mut buf).await.is_err() {
            break;
        }
        if !ok || !buf.starts_with(want.as_bytes()) {
            eprintln!("unexpected answer: {}", String::from_utf8_lossy(&buf));
            break;
        }
        lat.push(t.elapsed());
    }
    lat
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    let clients = env_num("BENCH_CLIENTS", 8);
    let size = env_num("BENCH_BATCH", 500);
    let seconds = env_num("BENCH_SECONDS", 10) as u64;
    let sink: Arc<dyn EventSink> = match mode.as_str() {
        "memory" => Arc::new(CountingSink::default()),
        "memory-keep" => Arc::new(MemorySink::default()),
        "firehose" => {
            let settings =
                dataflow_config::FromEnv::from_env_vars(&dataflow_config::Env::from_env())
                    .expect("AWS settings");
            let aws = dataflow_aws::Aws::load(&settings).await;
            let stream =
                std::env::var("EVENTS_STREAM").unwrap_or_else(|_| "dataflow-events".into());
            Arc::new(dataflow_aws::FirehoseSink::new(aws.firehose(), stream))
        }
        other => panic!("unknown sink {other:?}: memory or firehose"),
    };
    let window = WindowRule {
        min_date: 10_957,
        max_future_seconds: 86_400,
    };
    let app = ingest_api::router(Arc::new(ingest_api::AppState::new(sink, window)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let bodies: Vec<Vec<u8>> = (0..clients).map(|c| batch(c, size)).collect();
    let body_bytes = bodies[0].len();
    // Warm-up: one second, not counted.
    for (warm, secs) in [(true, 1), (false, seconds)] {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| tokio::spawn(client(addr, b.clone(), size, stop.clone())))
            .collect();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.unwrap_or_default());
        }
        let wall = started.elapsed().as_secs_f64();
        if warm {
            continue;
        }
        lat.sort();
        let pct =
            |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        let requests = lat.len();
        println!("| sink | clients | events/request | body | requests | events/s | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {mode} | {clients} | {size} | {:.0} KB | {requests} | {:.0} | {:.2} | {:.2} | {:.2} |",
            body_bytes as f64 / 1e3,
            (requests * size) as f64 / wall,
            pct(0.50),
            pct(0.99),
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }
}
