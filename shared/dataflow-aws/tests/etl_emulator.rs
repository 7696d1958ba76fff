//! The ETL against the emulator (moto's server): S3 in, Parquet + DynamoDB checkpoints out.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_core::checkpoint::{CheckpointReads as _, ObjectClaims as _};
use std::collections::BTreeMap;
use std::io::Write;

use dataflow_aws::events::Invocation;
use dataflow_aws::{DynamoCheckpoints, S3Store};
use dataflow_core::checkpoint::{ClaimOutcome, CompleteOutcome};
use dataflow_core::etl::{Etl, EtlError, ObjectOutcome};
use dataflow_core::lake::parquet::{decode_aggregate_rows, read_parquet_bytes};
use dataflow_core::lake::source::ObjectRef;
use dataflow_core::time::Clock;
use dataflow_dev::StackConfig as Config;
use dataflow_store::{Body, ObjectStore};
use etl_function::work_of;
use serde_json::json;

type TestEtl = Etl<S3Store, DynamoCheckpoints>;

async fn setup() -> (Config, TestEtl) {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    (cfg, etl)
}

/// 9 good events over 2 dates and 3 types, one blank line, and one line per rejection reason.
const KNOWN: &str = r#"{"event_id":"e1","user_id":"u1","event_type":"click","timestamp":"2024-03-01T08:00:00Z","properties":{"page":"/"}}
{"event_id":"e2","user_id":"u2","event_type":"click","timestamp":"2024-03-01T09:00:00Z"}
{"event_id":"e3","user_id":"u1","event_type":"click","timestamp":"2024-03-01T10:00:00+02:00"}
{"event_id":"e4","user_id":7,"event_type":"view","timestamp":1709251200000}
{"event_id":"e5","user_id":"u3","event_type":"view","timestamp":"2024-03-01T23:59:59"}

{"event_id":"e6","user_id":"u1","event_type":"click","timestamp":"2024-03-02T00:00:00Z"}
{"event_id":"e7","user_id":"u4","event_type":"purchase","timestamp":"2024-03-02T12:00:00Z","properties":{"amount":9.5}}
{"event_id":"e8","user_id":"u5","event_type":"purchase","timestamp":"2024-03-02T13:00:00Z"}
{"event_id":"e9","user_id":"u4","event_type":"purchase","timestamp":"2024-03-01T22:00:00-03:00"}
{broken
[1,2,3]
{"user_id":"u","timestamp":0}
{"event_type":"","user_id":"u","timestamp":0}
{"event_type":"x","timestamp":0}
{"event_type":"x","user_id":false,"timestamp":0}
{"event_type":"x","user_id":"u"}
{"event_type":"x","user_id":"u","timestamp":"soon"}
{"event_type":"x","user_id":"u","timestamp":0,"event_id":["no"]}
"#;

async fn put(etl: &TestEtl, bucket: &str, key: &str, bytes: Vec<u8>) {
    etl.store
        .put(bucket, key, Body::Bytes(bytes), "application/x-ndjson")
        .await
        .unwrap();
}

/// (date, type) -> (events, estimated distinct users), summed over every aggregate partial.
async fn read_aggregates(etl: &TestEtl, cfg: &Config) -> BTreeMap<(String, String), (u64, f64)> {
    let mut merged: BTreeMap<(String, String), (u64, dataflow_sketch::SketchMerger)> =
        BTreeMap::new();
    for meta in etl
        .store
        .list(
            &cfg.etl.lake.lake_bucket,
            &cfg.etl.lake.layout.partitions_prefix(),
        )
        .await
        .unwrap()
    {
        let date = cfg
            .etl
            .lake
            .layout
            .date_of_aggregate_key(&meta.key)
            .unwrap()
            .to_owned();
        let bytes = etl
            .store
            .get(&cfg.etl.lake.lake_bucket, &meta.key)
            .await
            .unwrap()
            .unwrap();
        for row in decode_aggregate_rows(&bytes).unwrap() {
            let e = merged
                .entry((date.clone(), row.event_type.clone()))
                .or_default();
            e.0 += row.event_count;
            e.1.add(&row.users);
        }
    }
    merged
        .into_iter()
        .map(|(k, (n, m))| (k, (n, m.estimate().round())))
        .collect()
}

/// The lake's data keys (the change log left out: it records history, not data).
async fn lake_keys(etl: &TestEtl, cfg: &Config) -> Vec<String> {
    let changes = dataflow_core::lake::changes::prefix(&cfg.etl.lake.layout);
    let mut keys: Vec<String> = etl
        .store
        .list(&cfg.etl.lake.lake_bucket, "")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| !k.starts_with(&changes))
        .collect();
    keys.sort();
    keys
}

fn expected_known() -> BTreeMap<(String, String), (u64, f64)> {
    [
        (("2024-03-01", "click"), (3, 2.0)),
        (("2024-03-01", "view"), (2, 2.0)),
        (("2024-03-02", "click"), (1, 1.0)),
        (("2024-03-02", "purchase"), (3, 2.0)),
    ]
    .into_iter()
    .map(|((d, t), v)| ((d.to_owned(), t.to_owned()), v))
    .collect()
}

#[tokio::test]
async fn known_file_gives_exact_counts_and_all_outputs() {
    let (cfg, etl) = setup().await;
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "incoming/known.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    let out = etl
        .process_object(ObjectRef::new(
            &cfg.etl.lake.raw_bucket,
            "incoming/known.jsonl",
        ))
        .await
        .unwrap();
    let ObjectOutcome::Processed(c) = out else {
        panic!("{out:?}")
    };
    assert_eq!((c.accepted, c.rejected), (9, 9));
    assert_eq!(read_aggregates(&etl, &cfg).await, expected_known());

    // Curated events: typed columns, one file per date.
    let keys = lake_keys(&etl, &cfg).await;
    let events: Vec<&String> = keys.iter().filter(|k| k.starts_with("events/")).collect();
    assert_eq!(events.len(), 2, "{keys:?}");
    let mut rows = 0;
    for k in &events {
        let df = read_parquet_bytes(
            &etl.store
                .get(&cfg.etl.lake.lake_bucket, k)
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        rows += df.height();
    }
    assert_eq!(rows, 9);

    // Rejected report: one line per bad line, with its line number and reason.
    let rejected = keys.iter().find(|k| k.starts_with("rejected/")).unwrap();
    let report = String::from_utf8(
        etl.store
            .get(&cfg.etl.lake.lake_bucket, rejected)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut got: Vec<(u64, String)> = report
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(u64, String)> = [
        (11, "invalid_json"),
        (12, "not_an_object"),
        (13, "missing_event_type"),
        (14, "invalid_event_type"),
        (15, "missing_user_id"),
        (16, "invalid_user_id"),
        (17, "missing_timestamp"),
        (18, "invalid_timestamp"),
        (19, "invalid_event_id"),
    ]
    .into_iter()
    .map(|(n, r)| (n, r.to_owned()))
    .collect();
    assert_eq!(got, want);

    // Checkpoint and pipeline totals.
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (1, 9, 9)
    );
    assert_eq!(
        p.last_object.as_deref(),
        Some(format!("s3://{}/incoming/known.jsonl", cfg.etl.lake.raw_bucket).as_str())
    );
    // Latest event: 2024-03-02T13:00:00Z.
    assert_eq!(p.latest_event_time_us, Some(1_709_384_400_000_000));
    let list = etl.checkpoints.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].completion.as_ref().unwrap().output_keys.len(), 5);
}

#[tokio::test]
async fn duplicate_and_concurrent_deliveries_count_once() {
    let (cfg, etl) = setup().await;
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "dup.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    let obj = ObjectRef::new(&cfg.etl.lake.raw_bucket, "dup.jsonl");
    // 8 concurrent deliveries: exactly one processes, the others see a live lease or done.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (etl, obj) = (etl.clone(), obj.clone());
        set.spawn(async move { etl.process_object(obj).await });
    }
    let mut processed = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(ObjectOutcome::Processed(_)) => processed += 1,
            Ok(ObjectOutcome::AlreadyDone) | Err(EtlError::Busy { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(processed, 1);
    let keys_once = lake_keys(&etl, &cfg).await;
    // A redelivery after completion is skipped.
    assert_eq!(
        etl.process_object(obj).await.unwrap(),
        ObjectOutcome::AlreadyDone
    );
    assert_eq!(read_aggregates(&etl, &cfg).await, expected_known());
    assert_eq!(lake_keys(&etl, &cfg).await, keys_once);
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (1, 9));
}

#[tokio::test]
async fn claim_of_a_killed_attempt_is_taken_over_after_its_lease() {
    let (cfg, mut etl) = setup().await;
    // Time moves by hand: the lease runs out without waiting for it.
    etl.clock = Clock::shifted();
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "killed.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    let obj = ObjectRef::current(&*etl.store, &cfg.etl.lake.raw_bucket, "killed.jsonl")
        .await
        .unwrap()
        .unwrap();
    // An attempt claims with a 1.5 s lease and dies without finishing.
    let ClaimOutcome::Acquired(dead) = etl
        .checkpoints
        .claim(&obj, etl.clock.now_ms(), 1_500)
        .await
        .unwrap()
    else {
        panic!()
    };
    etl.lease_ms = 60_000;
    assert!(matches!(
        etl.process_object(obj.clone()).await,
        Err(EtlError::Busy { .. })
    ));
    etl.clock.advance(1_501);
    assert!(matches!(
        etl.process_object(obj.clone()).await.unwrap(),
        ObjectOutcome::Processed(_)
    ));
    let rec = etl
        .checkpoints
        .get(&obj.checkpoint_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.attempts, 2);
    // The dead attempt coming back cannot complete a second time.
    let c = rec.completion.unwrap();
    let id = obj.checkpoint_id();
    assert_eq!(
        etl.checkpoints
            .complete(&dead, &c, Some(id.as_str()), etl.clock.now_ms())
            .await
            .unwrap(),
        CompleteOutcome::Lost
    );
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (1, 9));
}

#[tokio::test]
async fn gzip_odd_keys_empty_and_all_bad_objects() {
    let (cfg, etl) = setup().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(KNOWN.as_bytes()).unwrap();
    let odd_key = "year=2024/my events é 1.jsonl.gz";
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        odd_key,
        gz.finish().unwrap(),
    )
    .await;
    put(&etl, &cfg.etl.lake.raw_bucket, "empty.jsonl", Vec::new()).await;
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "bad.ndjson",
        b"nope\n{\"event_type\":1}\n".to_vec(),
    )
    .await;

    // The notification as S3 encodes keys: '+' for space, %3D for '=', UTF-8 percent-escaped.
    let record = |key: &str| {
        json!({"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":cfg.etl.lake.raw_bucket},"object":{"key":key}}})
    };
    let event = json!({"Records":[
        record("year%3D2024/my+events+%C3%A9+1.jsonl.gz"), record("empty.jsonl"), record("bad.ndjson")]});
    let report = etl
        .handle(work_of(Invocation::parse(&event).unwrap()).unwrap())
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let counts: Vec<(u64, u64, usize)> = report
        .outcomes
        .iter()
        .map(|o| match o {
            ObjectOutcome::Processed(c) => (c.accepted, c.rejected, c.output_keys.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    // gzip: 9 good + 9 bad, 5 outputs; empty: nothing; all bad: only the report.
    assert_eq!(counts, vec![(9, 9, 5), (0, 0, 0), (0, 2, 1)]);
    assert_eq!(read_aggregates(&etl, &cfg).await, expected_known());
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (3, 9, 11)
    );
}

#[tokio::test]
async fn sqs_batch_reports_only_the_failing_message() {
    let (cfg, etl) = setup().await;
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "good.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    // Gzip magic followed by garbage: a processing error, not bad lines.
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "corrupt.jsonl.gz",
        vec![0x1f, 0x8b, 0x08, 0, 1, 2, 3, 4, 5, 6, 7],
    )
    .await;
    let body = |key: &str| {
        json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":cfg.etl.lake.raw_bucket},"object":{"key":key}}}]})
        .to_string()
    };
    let event = json!({"Records":[
        {"messageId":"m-good","eventSource":"aws:sqs","body":body("good.jsonl")},
        {"messageId":"m-bad","eventSource":"aws:sqs","body":body("corrupt.jsonl.gz")},
        {"messageId":"m-test","eventSource":"aws:sqs","body":"{\"Event\":\"s3:TestEvent\"}"},
    ]});
    let report = etl
        .handle(work_of(Invocation::parse(&event).unwrap()).unwrap())
        .await;
    assert_eq!(report.failed_message_ids, vec!["m-bad".to_owned()]);
    let failed: Vec<_> = etl
        .checkpoints
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.error.is_some())
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].id.contains("corrupt.jsonl.gz"));
    assert_eq!(etl.checkpoints.pipeline().await.unwrap().events_accepted, 9);
}

#[tokio::test]
async fn forget_and_backfill_reprocess_without_double_counting() {
    let (cfg, etl) = setup().await;
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "a.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "b.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    // Objects that arrived before notifications existed.
    let r = etl.backfill(&cfg.etl.lake.raw_bucket, "").await.unwrap();
    assert_eq!(
        r.outcomes
            .iter()
            .filter(|o| matches!(o, ObjectOutcome::Processed(_)))
            .count(),
        2
    );
    // Rejected lines by reason, in the totals: each reason twice (KNOWN has one line of each).
    let first = etl.checkpoints.pipeline().await.unwrap();
    assert!(first.rejected_by_reason.len() >= 5, "{first:?}");
    assert!(
        first.rejected_by_reason.values().all(|n| *n == 2),
        "{first:?}"
    );
    assert_eq!(
        first.rejected_by_reason.values().sum::<u64>(),
        first.events_rejected
    );
    // Force a full reprocess: forget every checkpoint, backfill again.
    for c in etl.checkpoints.list().await.unwrap() {
        assert!(etl.checkpoints.forget(&c.id).await.unwrap());
    }
    let emptied = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(emptied.files_processed, 0);
    assert!(emptied.rejected_by_reason.is_empty(), "{emptied:?}");
    etl.backfill(&cfg.etl.lake.raw_bucket, "").await.unwrap();
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (2, 18));
    assert_eq!(p.rejected_by_reason, first.rejected_by_reason);
    let doubled: BTreeMap<_, _> = expected_known()
        .into_iter()
        .map(|(k, (n, u))| (k, (n * 2, u)))
        .collect();
    assert_eq!(read_aggregates(&etl, &cfg).await, doubled);
}

/// (date, type) -> (events, distinct users) as the Analytics API reads them (compacted files and
/// the partials they do not cover).
async fn served(etl: &TestEtl, cfg: &Config) -> Vec<(String, String, u64, u64)> {
    let reader = dataflow_core::analytics::LakeReader::new(
        std::sync::Arc::new(etl.store.as_ref().clone()),
        cfg.etl.lake.lake_bucket.clone(),
        cfg.etl.lake.layout.clone(),
        std::time::Duration::ZERO,
    );
    let (snap, _) = reader.snapshot().await.unwrap();
    let (rows, _) = snap
        .metrics(&dataflow_core::analytics::Filter::default(), 1000, None)
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| (r.event_date, r.event_type, r.event_count, r.unique_users))
        .collect()
}

/// Lake keys with the source id blanked: what outputs exist, whoever wrote them (compacted files
/// and rollups, which are derived from them, left out).
async fn output_shapes(etl: &TestEtl, cfg: &Config) -> Vec<String> {
    let mut shapes: Vec<String> = lake_keys(etl, cfg)
        .await
        .into_iter()
        .filter(|k| {
            !k.contains("/compacted-") && !k.starts_with(&cfg.etl.lake.layout.rollup_prefix())
        })
        .map(|k| k.replace("/_sources/", "/"))
        .map(|k| match k.rfind('/') {
            Some(i) => format!("{}/<source>", &k[..i]),
            None => "<source>".to_owned(),
        })
        .collect();
    shapes.sort();
    shapes
}

/// A pipeline fed only `objects`, for comparison.
async fn alone(objects: &[(&str, Vec<u8>)]) -> (Config, TestEtl) {
    let (cfg, etl) = setup().await;
    for (key, body) in objects {
        put(&etl, &cfg.etl.lake.raw_bucket, key, body.clone()).await;
        etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, *key))
            .await
            .unwrap();
    }
    (cfg, etl)
}

async fn assert_like(etl: &TestEtl, cfg: &Config, other: &(Config, TestEtl)) {
    let (p, q) = (
        etl.checkpoints.pipeline().await.unwrap(),
        other.1.checkpoints.pipeline().await.unwrap(),
    );
    assert_eq!(p.counts(), q.counts());
    assert_eq!(served(etl, cfg).await, served(&other.1, &other.0).await);
    assert_eq!(
        output_shapes(etl, cfg).await,
        output_shapes(&other.1, &other.0).await
    );
}

#[tokio::test]
async fn an_overwrite_with_fewer_lines_on_other_dates_replaces_the_old_version() {
    let (cfg, etl) = setup().await;
    let v2 =
        b"{\"user_id\":\"n1\",\"event_type\":\"signup\",\"timestamp\":\"2024-04-10T08:00:00Z\"}\n\
{\"user_id\":\"n2\",\"event_type\":\"signup\",\"timestamp\":\"2024-04-10T09:00:00Z\"}\n"
            .to_vec();
    put(
        &etl,
        &cfg.etl.lake.raw_bucket,
        "k.jsonl",
        KNOWN.as_bytes().to_vec(),
    )
    .await;
    etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, "k.jsonl"))
        .await
        .unwrap();
    put(&etl, &cfg.etl.lake.raw_bucket, "k.jsonl", v2.clone()).await;
    let out = etl
        .process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, "k.jsonl"))
        .await
        .unwrap();
    assert!(matches!(out, ObjectOutcome::Processed(_)), "{out:?}");
    assert_eq!(
        served(&etl, &cfg).await,
        vec![("2024-04-10".into(), "signup".into(), 2, 2)]
    );
    assert_like(&etl, &cfg, &alone(&[("k.jsonl", v2)]).await).await;
    let states: Vec<_> = etl
        .checkpoints
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.state.as_str(), c.cleanup.len()))
        .collect();
    assert!(states.contains(&("superseded", 0)), "{states:?}");
    assert!(etl.checkpoints.attention().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_truncated_upload_then_the_full_upload_counts_once() {
    let (cfg, etl) = setup().await;
    let full = KNOWN.as_bytes().to_vec();
    // Cut mid-line, as an interrupted upload would be.
    let cut = full[..full.len() / 2].to_vec();
    let neighbour =
        b"{\"user_id\":\"z\",\"event_type\":\"click\",\"timestamp\":\"2024-03-01T05:00:00Z\"}\n"
            .to_vec();
    for (key, body) in [("day.jsonl", cut), ("neighbour.jsonl", neighbour.clone())] {
        put(&etl, &cfg.etl.lake.raw_bucket, key, body).await;
        etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, key))
            .await
            .unwrap();
    }
    // The hourly run folds the truncated version into a compacted file first.
    let report = etl.handle(dataflow_core::etl::work::Work::Compact).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.compacted, 1, "2024-03-01 had two partials");
    put(&etl, &cfg.etl.lake.raw_bucket, "day.jsonl", full.clone()).await;
    etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, "day.jsonl"))
        .await
        .unwrap();
    let reference = alone(&[("day.jsonl", full), ("neighbour.jsonl", neighbour)]).await;
    assert_like(&etl, &cfg, &reference).await;
    // Removing the truncated version already compacted 2024-03-01 again (without it, with the
    // full version): the next scheduled run finds nothing to do, and the answers hold.
    let report = etl.handle(dataflow_core::etl::work::Work::Compact).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.compacted, 0);
    assert_like(&etl, &cfg, &reference).await;
}

/// The raw bucket is versioned: an overwrite by mistake is undone by restoring the previous
/// version, which the ETL counts as the key's newest version (as the bucket's notification
/// delivers it, with its version id): the totals are the first version's again, exactly.
#[tokio::test]
async fn restoring_an_overwritten_raw_object_counts_the_previous_version_again() {
    let (cfg, etl) = setup().await;
    let raw = cfg.etl.lake.raw_bucket.clone();
    let wrong =
        b"{\"user_id\":\"n1\",\"event_type\":\"signup\",\"timestamp\":\"2024-04-10T08:00:00Z\"}\n"
            .to_vec();
    // What a notification carries: the key, its ETag and the version id.
    let newest = |etl: &TestEtl| {
        let raw = raw.clone();
        let store = etl.store.clone();
        async move {
            let v = store.versions(&raw, "k.jsonl").await.unwrap();
            let latest = v.first().unwrap().clone();
            assert!(latest.is_latest && !latest.deleted, "{v:?}");
            let mut obj = ObjectRef::new(&raw, "k.jsonl");
            obj.etag = latest.etag;
            obj.version_id = Some(latest.version_id);
            (obj, v.len())
        }
    };
    put(&etl, &raw, "k.jsonl", KNOWN.as_bytes().to_vec()).await;
    let (v1, _) = newest(&etl).await;
    etl.process_object(v1.clone()).await.unwrap();
    let first = etl.checkpoints.pipeline().await.unwrap();
    let first_served = served(&etl, &cfg).await;
    assert_eq!(first.events_accepted, 9);

    put(&etl, &raw, "k.jsonl", wrong).await;
    let (v2, n) = newest(&etl).await;
    assert_eq!(n, 2, "the first version is kept");
    etl.process_object(v2).await.unwrap();
    assert_eq!(etl.checkpoints.pipeline().await.unwrap().events_accepted, 1);

    let versions = etl.store.versions(&raw, "k.jsonl").await.unwrap();
    let previous = dataflow_aws::versions::previous(&versions).unwrap();
    assert_eq!(previous.version_id, v1.version_id.clone().unwrap());
    let restored = etl
        .store
        .restore_version(&raw, "k.jsonl", &previous.version_id)
        .await
        .unwrap();
    let (v3, n) = newest(&etl).await;
    assert_eq!(n, 3);
    assert_eq!(v3.version_id, restored);
    assert_eq!(v3.etag, v1.etag, "the same bytes");
    let out = etl.process_object(v3).await.unwrap();
    assert!(matches!(out, ObjectOutcome::Processed(_)), "{out:?}");
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!(p.counts(), first.counts());
    assert_eq!(served(&etl, &cfg).await, first_served);
}
