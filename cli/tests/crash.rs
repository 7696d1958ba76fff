//! A processing attempt killed for real (`kill -9` of the `dataflow dispatch` process while it
//! processes an object) heals with no operator step: a second dispatcher's sweep takes the
//! object over once the dead attempt's lease lapses, and the totals come out exact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

mod common;

use std::time::{Duration, Instant};

use common::{dataflow, wait_for, Killed};
use dataflow_core::analytics::{Filter, LakeReader};
use dataflow_core::checkpoint::{CheckpointReads, State};
use dataflow_store::{Body, ObjectStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_attempt_is_taken_over_with_exact_totals() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    let queue = dataflow_testkit::unique("etl");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dispatch.log");
    let status = dataflow(&cfg, &queue, &["setup", "--notifications"], &log)
        .wait()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // Big enough that a debug build takes seconds on it: the kill lands mid-object.
    const LINES: u64 = 300_000;
    let mut body = String::with_capacity(LINES as usize * 90);
    for i in 0..LINES {
        body.push_str(&format!(
            "{{\"user_id\":\"u{}\",\"event_type\":\"t{}\",\"timestamp\":\"2024-06-{:02}T12:00:00Z\"}}\n",
            i % 5_000,
            i % 7,
            1 + i % 28
        ));
    }
    body.push_str("not json\n");
    let mut first = Killed(dataflow(
        &cfg,
        &queue,
        &["dispatch", "--sweep-seconds", "1"],
        &log,
    ));
    etl.store
        .put(
            &cfg.etl.lake.raw_bucket,
            "big.jsonl",
            Body::Bytes(body.into_bytes()),
            "application/x-ndjson",
        )
        .await
        .unwrap();
    // A poll that fails (the emulator is busy while the dispatcher works) just polls again.
    let in_progress = || async {
        etl.checkpoints.list().await.is_ok_and(|l| {
            l.iter().any(|c| {
                c.state == State::InProgress
                    && c.source.as_ref().is_some_and(|s| s.key == "big.jsonl")
            })
        })
    };
    wait_for(
        "the first dispatcher to claim the object",
        Duration::from_secs(60),
        in_progress,
    )
    .await;
    // kill -9: no destructor, no lease release, no failure record.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let killed = Instant::now();
    let rec = etl.checkpoints.list().await.unwrap();
    assert!(
        rec.iter().any(|c| c.state == State::InProgress),
        "the attempt was killed mid-object"
    );
    assert_eq!(etl.checkpoints.pipeline().await.unwrap().files_processed, 0);

    let _second = Killed(dataflow(
        &cfg,
        &queue,
        &["dispatch", "--sweep-seconds", "1"],
        &log,
    ));
    let done = || async {
        etl.checkpoints
            .pipeline()
            .await
            .is_ok_and(|p| p.files_processed == 1)
    };
    wait_for("the takeover to finish", Duration::from_secs(120), done).await;
    let healed = killed.elapsed();
    eprintln!("kill -9 to exact totals: {:.1} s", healed.as_secs_f64());
    assert!(healed < Duration::from_secs(90), "took {healed:?}");

    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (1, LINES, 1)
    );
    let rec = etl.checkpoints.list().await.unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!((rec[0].state, rec[0].attempts), (State::Done, 2));
    let reader = LakeReader::new(
        std::sync::Arc::new(etl.store.as_ref().clone()),
        cfg.etl.lake.lake_bucket.clone(),
        cfg.etl.lake.layout.clone(),
        Duration::ZERO,
    );
    let summary = reader
        .snapshot()
        .await
        .unwrap()
        .0
        .summary(&Filter::default())
        .await
        .unwrap();
    assert_eq!(summary.total_events, LINES);
    let dlq = dataflow_dev::resources::queue_url(&clients.sqs, &format!("{queue}-dlq"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dataflow_dev::resources::queue_depth(&clients.sqs, &dlq)
            .await
            .unwrap(),
        0
    );
}
