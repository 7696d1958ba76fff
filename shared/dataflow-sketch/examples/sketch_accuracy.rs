//! How far `unique_users` can be off, by sketch size: the analytics bench's user sets (200
//! types, days x types of contiguous user ranges) counted exactly and by HLL at lgK 14, 15 and
//! 16, both by one sketch fed every user (what a single file gets: DataSketches' HIP estimator)
//! and as the lake answers a range (per (day, type) sketches serialized as HLL_4, a union per
//! day, a union over the days: the register-based composite estimator).
//!
//! `cargo run --release -p dataflow-sketch --example sketch_accuracy` (about a minute).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure ends the run

use std::collections::HashSet;

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};

const TYPES: usize = 200;

/// The bench's users of one (day, type): see functions/analytics-api/examples/analytics_bench.rs.
fn users(day: i32, ty: usize) -> std::ops::Range<u64> {
    let size = 200 + (ty as u64 * 37) % 1800;
    let start = (day as u64 * 3_000 + ty as u64 * 11_000) % 2_000_000;
    start..start + size
}

fn id(u: u64) -> String {
    format!("user-{u}")
}

fn union(lg_k: u8) -> HllUnion {
    HllUnion::new(lg_k).expect("lgK in range")
}

fn main() {
    let ranges: Vec<(i32, i32)> = [0, 10, 100, 273, 547]
        .iter()
        .flat_map(|s| [1, 7, 31].map(|len| (*s, len)))
        .collect();
    for lg_k in [14u8, 15, 16] {
        let (mut worst_direct, mut worst_lake) = (0f64, 0f64);
        for &(start, len) in &ranges {
            let days = start..start + len;
            let exact: HashSet<u64> = days
                .clone()
                .flat_map(|d| (0..TYPES).flat_map(move |t| users(d, t)))
                .collect();
            let mut direct = HllSketch::new(lg_k, HllType::Hll8).expect("lgK in range");
            for u in &exact {
                direct.update(raw_bytes::from_str(&id(*u)));
            }
            let mut range = union(lg_k);
            for d in days {
                let mut day = union(lg_k);
                for t in 0..TYPES {
                    // As the ETL does (UserSketch): inserts into HLL_8, stored as HLL_4.
                    let mut s = HllSketch::new(lg_k, HllType::Hll8).expect("lgK in range");
                    for u in users(d, t) {
                        s.update(raw_bytes::from_str(&id(u)));
                    }
                    let mut u1 = union(lg_k);
                    u1.update(&s);
                    let stored = u1.to_sketch(HllType::Hll4).serialize();
                    day.update(&HllSketch::deserialize(&stored).expect("own bytes"));
                }
                let stored = day.to_sketch(HllType::Hll4).serialize();
                range.update(&HllSketch::deserialize(&stored).expect("own bytes"));
            }
            let n = exact.len() as f64;
            let e_direct = (direct.estimate() - n) / n;
            let e_lake = (range.estimate() - n) / n;
            worst_direct = worst_direct.max(e_direct.abs());
            worst_lake = worst_lake.max(e_lake.abs());
            println!(
                "lgK {lg_k} days {start}+{len}: exact {n} one sketch {:+.3}% lake unions {:+.3}%",
                e_direct * 100.0,
                e_lake * 100.0
            );
        }
        println!(
            "lgK {lg_k}: max |error| one sketch {:.3}%, lake unions {:.3}% over {} ranges",
            worst_direct * 100.0,
            worst_lake * 100.0,
            ranges.len()
        );
    }
}
