//! The ETL over in-memory stores: exact totals through duplicates, overwrites, crashes and
//! takeovers.

use super::outputs::{clean_stale_work_dirs, WORK_PREFIX};
use super::sweep::MAX_ATTEMPTS;
use super::*;
use crate::checkpoint::{CheckpointReads as _, ObjectClaims as _};
use crate::checkpoint::{MemoryCheckpoints, State};
use crate::config::EtlConfig;
use dataflow_config::{Env, FromEnv};
use dataflow_store::MemoryStore;

/// The lake's data keys: everything but the change log.
fn lake_data(store: &dataflow_store::MemoryStore) -> Vec<String> {
    let mut keys = store.keys("dataflow-lake");
    keys.retain(|k| !k.contains("/_changes/"));
    keys
}

fn etl() -> Etl<MemoryStore, MemoryCheckpoints> {
    let cfg = EtlConfig::from_env_vars(&Env::from_pairs(&[])).unwrap();
    Etl::new(
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryCheckpoints::default()),
        &cfg,
    )
}

const FILE: &str = concat!(
    r#"{"user_id":"a","event_type":"click","timestamp":"2024-01-01T10:00:00Z"}"#,
    "\n",
    r#"{"user_id":"b","event_type":"view","timestamp":"2024-01-02T10:00:00Z"}"#,
    "\n",
    "bad\n"
);

/// What the delivery stream behind POST /events writes: gzip JSON Lines under `firehose/`
/// with no extension (the emulators) or `.jsonl.gz` (AWS). Both are input; a redelivered
/// notification counts nothing twice; other extension-less keys stay skipped.
#[tokio::test]
async fn delivery_stream_objects_are_input_whatever_their_names() {
    use std::io::Write;
    let e = etl();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(FILE.as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    let key = "firehose/2026/11/26/19/dataflow-events-1-2026-11-26-19-00-00-abc";
    e.store.insert("dataflow-raw", key, body.clone());
    e.store.insert("dataflow-raw", "firehose/x.jsonl.gz", body);
    e.store.insert(
        "dataflow-raw",
        "elsewhere/no-extension",
        FILE.as_bytes().to_vec(),
    );
    for k in [key, "firehose/x.jsonl.gz", key] {
        let out = e
            .process_object(ObjectRef::new("dataflow-raw", k))
            .await
            .unwrap();
        assert!(
            matches!(
                out,
                ObjectOutcome::Processed(_) | ObjectOutcome::AlreadyDone
            ),
            "{k}: {out:?}"
        );
    }
    let skipped = e
        .process_object(ObjectRef::new("dataflow-raw", "elsewhere/no-extension"))
        .await
        .unwrap();
    assert!(matches!(skipped, ObjectOutcome::Skipped(_)), "{skipped:?}");
    let p = e.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (2, 4, 2)
    );
}

#[tokio::test]
async fn processes_once_and_skips_duplicates() {
    let e = etl();
    e.store
        .insert("dataflow-raw", "in/a.jsonl", FILE.as_bytes().to_vec());
    let obj = ObjectRef::new("dataflow-raw", "in/a.jsonl");
    let ObjectOutcome::Processed(c) = e.process_object(obj.clone()).await.unwrap() else {
        panic!()
    };
    assert_eq!((c.accepted, c.rejected), (2, 1));
    assert_eq!(
        c.output_keys.len(),
        5,
        "2 aggregates, 2 event files, 1 report: {:?}",
        c.output_keys
    );
    assert_eq!(
        e.process_object(obj).await.unwrap(),
        ObjectOutcome::AlreadyDone
    );
    let p = e.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (1, 2, 1)
    );
    let lake = e.store.keys("dataflow-lake");
    let sid = ObjectRef::current(&*e.store, "dataflow-raw", "in/a.jsonl")
        .await
        .unwrap()
        .unwrap()
        .source_id();
    assert!(
        lake.contains(&format!(
            "aggregates/daily/event_date=2024-01-01/part-{sid}.parquet"
        )),
        "{lake:?}"
    );
    assert!(lake.contains(&format!("rejected/{sid}.jsonl")), "{lake:?}");
}

#[test]
fn scratch_folders_of_dead_processes_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let dead = root.path().join(format!("{WORK_PREFIX}4294967295-abc"));
    let live = root
        .path()
        .join(format!("{WORK_PREFIX}{}-def", std::process::id()));
    let other = root.path().join("unrelated-folder");
    for d in [&dead, &live, &other] {
        std::fs::create_dir_all(d.join("inner")).unwrap();
    }
    assert_eq!(clean_stale_work_dirs(root.path()), 1);
    assert!(!dead.exists());
    assert!(live.exists() && other.exists());
}

#[tokio::test]
async fn skips_other_keys_and_missing_objects() {
    let e = etl();
    assert!(matches!(
        e.process_object(ObjectRef::new("dataflow-raw", "a.csv"))
            .await
            .unwrap(),
        ObjectOutcome::Skipped(_)
    ));
    assert!(matches!(
        e.process_object(ObjectRef::new("dataflow-raw", "gone.jsonl"))
            .await
            .unwrap(),
        ObjectOutcome::Gone(_)
    ));
}

#[tokio::test]
async fn forget_allows_reprocessing_without_double_counting() {
    let e = etl();
    e.store
        .insert("dataflow-raw", "a.jsonl", FILE.as_bytes().to_vec());
    let obj = ObjectRef::new("dataflow-raw", "a.jsonl");
    e.process_object(obj.clone()).await.unwrap();
    let with_etag = ObjectRef::current(&*e.store, "dataflow-raw", "a.jsonl")
        .await
        .unwrap()
        .unwrap();
    assert!(e
        .checkpoints
        .forget(&with_etag.checkpoint_id())
        .await
        .unwrap());
    assert!(matches!(
        e.process_object(obj).await.unwrap(),
        ObjectOutcome::Processed(_)
    ));
    let p = e.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (1, 2));
}

fn lines(rows: &[(&str, &str, &str)]) -> Vec<u8> {
    rows.iter()
        .map(|(u, t, day)| {
            format!("{{\"user_id\":\"{u}\",\"event_type\":\"{t}\",\"timestamp\":\"{day}T10:00:00Z\"}}\n")
        })
        .collect::<String>()
        .into_bytes()
}

async fn summary(e: &Etl<MemoryStore, MemoryCheckpoints>) -> crate::analytics::Summary {
    crate::analytics::LakeReader::new(
        e.store.clone(),
        e.lake_bucket.clone(),
        e.layout.clone(),
        Duration::ZERO,
    )
    .snapshot()
    .await
    .unwrap()
    .0
    .summary(&crate::analytics::Filter::default())
    .await
    .unwrap()
}

async fn compact(
    e: &Etl<MemoryStore, MemoryCheckpoints>,
) -> Vec<(String, crate::etl::compaction::CompactionOutcome)> {
    crate::etl::compaction::compact_all(
        e.store.as_ref(),
        e.checkpoints.as_ref(),
        "dataflow-lake",
        &e.layout,
    )
    .await
    .unwrap()
}

async fn put_and_process(e: &Etl<MemoryStore, MemoryCheckpoints>, key: &str, body: Vec<u8>) {
    e.store.insert("dataflow-raw", key, body);
    let out = e
        .process_object(ObjectRef::new("dataflow-raw", key))
        .await
        .unwrap();
    assert!(matches!(out, ObjectOutcome::Processed(_)), "{out:?}");
}

/// The lake and the totals after `steps`, against a fresh pipeline given only `alone`.
async fn assert_same_as_alone(e: &Etl<MemoryStore, MemoryCheckpoints>, alone: &[(&str, Vec<u8>)]) {
    let fresh = etl();
    for (k, body) in alone {
        put_and_process(&fresh, k, body.clone()).await;
    }
    let (p, q) = (
        e.checkpoints.pipeline().await.unwrap(),
        fresh.checkpoints.pipeline().await.unwrap(),
    );
    assert_eq!(p.counts(), q.counts());
    assert_eq!(summary(e).await, summary(&fresh).await);
    // Each source's outputs, wherever compaction keeps them (partition or archive).
    let outputs = |x: &Etl<MemoryStore, MemoryCheckpoints>| -> Vec<String> {
        let mut keys: Vec<String> = x
            .store
            .keys("dataflow-lake")
            .into_iter()
            .filter(|k| !k.contains("/compacted-") && !k.contains("/_changes/"))
            .map(|k| k.replace("/_sources/", "/"))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(outputs(e), outputs(&fresh));
}

#[tokio::test]
async fn an_overwrite_replaces_the_previous_version() {
    let e = etl();
    let v1 = lines(&[
        ("a", "click", "2024-01-01"),
        ("b", "click", "2024-01-02"),
        ("c", "view", "2024-01-03"),
    ]);
    let v2 = lines(&[("z", "buy", "2024-02-01")]);
    let other = lines(&[("a", "click", "2024-01-01")]);
    put_and_process(&e, "other.jsonl", other.clone()).await;
    put_and_process(&e, "k.jsonl", v1).await;
    put_and_process(&e, "k.jsonl", v2.clone()).await;
    assert_same_as_alone(&e, &[("other.jsonl", other), ("k.jsonl", v2)]).await;
    let states: Vec<State> = e
        .checkpoints
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == State::Superseded).count(),
        1
    );
    assert!(e.checkpoints.attention().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_truncated_upload_then_the_full_one_counts_once_even_after_compaction() {
    let e = etl();
    let rows: Vec<(String, &str, &str)> = (0..40)
        .map(|i| {
            (
                format!("u{i}"),
                "click",
                if i % 2 == 0 {
                    "2024-01-01"
                } else {
                    "2024-01-02"
                },
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = rows.iter().map(|(u, t, d)| (u.as_str(), *t, *d)).collect();
    let full = lines(&refs);
    let mut cut = full[..full.len() / 2].to_vec();
    cut.extend_from_slice(b"{\"user_id\":\"half"); // cut mid-line
    put_and_process(&e, "day.jsonl", cut).await;
    put_and_process(
        &e,
        "neighbour.jsonl",
        lines(&[("n", "click", "2024-01-01")]),
    )
    .await;
    // The truncated version's partials are folded into compacted files first.
    let out = compact(&e).await;
    assert_eq!(out.len(), 1);
    put_and_process(&e, "day.jsonl", full.clone()).await;
    let s = summary(&e).await;
    assert_eq!((s.total_events, s.unique_users), (41, 41));
    assert_eq!(e.checkpoints.pipeline().await.unwrap().events_rejected, 0);
    compact(&e).await;
    assert_same_as_alone(
        &e,
        &[
            ("day.jsonl", full),
            ("neighbour.jsonl", lines(&[("n", "click", "2024-01-01")])),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_version_overwritten_while_processed_never_counts() {
    let e = etl();
    e.store.insert(
        "dataflow-raw",
        "k.jsonl",
        lines(&[("a", "x", "2024-01-01")]),
    );
    let obj = ObjectRef::current(&*e.store, "dataflow-raw", "k.jsonl")
        .await
        .unwrap()
        .unwrap();
    let ClaimOutcome::Acquired(claim) = e
        .checkpoints
        .claim(&obj, e.clock.now_ms(), 60_000)
        .await
        .unwrap()
    else {
        panic!()
    };
    let completion = e.run_claimed(&obj, &claim).await.unwrap();
    assert!(!e.store.keys("dataflow-lake").is_empty());
    // The producer uploads a new version before this attempt marks its own done.
    e.store.insert(
        "dataflow-raw",
        "k.jsonl",
        lines(&[("b", "y", "2024-01-05")]),
    );
    let out = e.count_once(&obj, &claim, completion).await.unwrap();
    assert!(matches!(out, ObjectOutcome::Gone(_)), "{out:?}");
    assert!(lake_data(&e.store).is_empty());
    assert_eq!(e.checkpoints.pipeline().await.unwrap().files_processed, 0);
    let rec = e.checkpoints.get(&claim.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.cleanup.len()), (State::Superseded, 0));
    // Its late notification changes nothing; the new version's counts.
    assert!(matches!(
        e.process_object(obj).await.unwrap(),
        ObjectOutcome::Gone(_)
    ));
    put_and_process(&e, "k.jsonl", lines(&[("b", "y", "2024-01-05")])).await;
    assert_same_as_alone(&e, &[("k.jsonl", lines(&[("b", "y", "2024-01-05")]))]).await;
}

/// On tokio's paused clock: the lease runs out when the test advances time.
#[tokio::test(start_paused = true)]
async fn the_sweep_takes_over_an_expired_claim_and_a_live_one_defers_its_message() {
    let mut e = etl();
    e.lease_ms = 300;
    e.clock = Clock::following_tokio();
    e.store
        .insert("dataflow-raw", "k.jsonl", FILE.as_bytes().to_vec());
    let obj = ObjectRef::current(&*e.store, "dataflow-raw", "k.jsonl")
        .await
        .unwrap()
        .unwrap();
    // An attempt claims the object and never comes back.
    assert!(matches!(
        e.checkpoints
            .claim(&obj, e.clock.now_ms(), e.lease_ms)
            .await
            .unwrap(),
        ClaimOutcome::Acquired(_)
    ));
    // While its lease lives, a delivery is deferred (sent again later), not failed.
    let body = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "dataflow-raw"}, "object": {"key": "k.jsonl"}}}]})
    .to_string();
    let report = e
        .handle(Work::Messages(vec![crate::etl::work::QueuedMessage {
            message_id: "m1".into(),
            body: body.clone(),
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:q".into(),
            objects: Ok(vec![obj.clone()]),
        }]))
        .await;
    assert!(report.failed_message_ids.is_empty());
    assert_eq!(report.deferred.len(), 1);
    assert_eq!(
        (
            report.deferred[0].body.as_str(),
            report.deferred[0].delay_seconds
        ),
        (body.as_str(), 1)
    );
    assert!(
        e.sweep().await.outcomes.is_empty(),
        "the lease is still live"
    );
    tokio::time::advance(Duration::from_millis(301)).await;
    let report = e.sweep().await;
    assert_eq!(report.swept, 1);
    assert!(matches!(report.outcomes[0], ObjectOutcome::Processed(_)));
    let p = e.checkpoints.pipeline().await.unwrap();
    assert_eq!(
        (p.files_processed, p.events_accepted, p.events_rejected),
        (1, 2, 1)
    );
    assert_eq!(
        e.process_object(obj).await.unwrap(),
        ObjectOutcome::AlreadyDone
    );
}

/// On tokio's paused clock: a second of work passes at once, with the heartbeat renewing on
/// the same clock as the lease is read.
#[tokio::test(start_paused = true)]
async fn the_heartbeat_keeps_a_slow_attempt_s_claim() {
    let mut e = etl();
    e.lease_ms = 300;
    e.clock = Clock::following_tokio();
    let obj = ObjectRef::new("dataflow-raw", "slow.jsonl");
    let ClaimOutcome::Acquired(claim) = e
        .checkpoints
        .claim(&obj, e.clock.now_ms(), e.lease_ms)
        .await
        .unwrap()
    else {
        panic!()
    };
    let slow = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        Ok::<_, EtlError>(())
    };
    e.with_heartbeat(&claim, slow).await.unwrap();
    let rec = e.checkpoints.get(&claim.id).await.unwrap().unwrap();
    assert!(
        !rec.is_stuck(e.clock.now_ms()),
        "renewed past the original lease"
    );
    assert!(matches!(
        e.checkpoints
            .claim(&obj, e.clock.now_ms(), e.lease_ms)
            .await
            .unwrap(),
        ClaimOutcome::Busy { .. }
    ));
}

#[tokio::test]
async fn the_sweep_gives_up_on_an_object_every_attempt_dies_on() {
    let e = etl();
    e.store
        .insert("dataflow-raw", "huge.jsonl", FILE.as_bytes().to_vec());
    let obj = ObjectRef::current(&*e.store, "dataflow-raw", "huge.jsonl")
        .await
        .unwrap()
        .unwrap();
    // Five attempts, each killed before it finished (leases that lapsed long ago).
    let base = e.clock.now_ms() - 10_000;
    for i in 0..MAX_ATTEMPTS as i64 {
        assert!(matches!(
            e.checkpoints.claim(&obj, base + i * 100, 1).await.unwrap(),
            ClaimOutcome::Acquired(_)
        ));
    }
    let report = e.sweep().await;
    assert_eq!((report.swept, report.outcomes.len()), (0, 0));
    assert!(
        matches!(&report.errors[0], WorkError::GaveUp { reason, .. } if reason.contains("gave up after 5 attempts")),
        "{:?}",
        report.errors
    );
    let rec = e
        .checkpoints
        .get(&obj.checkpoint_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, State::Failed);
    assert_eq!(e.checkpoints.pipeline().await.unwrap().files_processed, 0);
    // Not swept again; a delivery (or `reprocess --key`) still retries it.
    assert!(e.sweep().await.errors.is_empty());
    assert!(matches!(
        e.process_object(obj).await.unwrap(),
        ObjectOutcome::Processed(_)
    ));
}
