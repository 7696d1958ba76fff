//! The operator's commands against the emulator: `reprocess --key` touches that key only, and
//! `doctor` tells the truth (the dead-letter queue with its keys, stuck attempts, failures of
//! current versions only), each with a fix command that works.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

mod common;

use common::run;
use dataflow_core::checkpoint::{CheckpointReads as _, ObjectClaims as _};
use dataflow_core::checkpoint::{ClaimOutcome, State};
use dataflow_core::etl::ObjectOutcome;
use dataflow_core::lake::source::ObjectRef;
use dataflow_store::{Body, ObjectStore};

const GOOD: &[u8] =
    b"{\"user_id\":\"a\",\"event_type\":\"x\",\"timestamp\":\"2024-01-01T00:00:00Z\"}\n\
{\"user_id\":\"b\",\"event_type\":\"x\",\"timestamp\":\"2024-01-02T00:00:00Z\"}\n";
/// Gzip magic, then garbage: fails every attempt.
const CORRUPT: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02,
];

#[tokio::test]
async fn reprocess_key_touches_that_key_only() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    for (key, body) in [("good.jsonl", GOOD), ("corrupt.jsonl.gz", CORRUPT)] {
        etl.store
            .put(
                &cfg.etl.lake.raw_bucket,
                key,
                Body::Bytes(body.to_vec()),
                "application/x-ndjson",
            )
            .await
            .unwrap();
        let _ = etl
            .process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, key))
            .await;
    }
    let before = etl.checkpoints.list().await.unwrap();
    let corrupt = |l: &[dataflow_core::checkpoint::ObjectCheckpoint]| {
        l.iter()
            .find(|c| {
                c.source
                    .as_ref()
                    .is_some_and(|s| s.key == "corrupt.jsonl.gz")
            })
            .map(|c| (c.state, c.attempts))
    };
    assert_eq!(corrupt(&before), Some((State::Failed, 1)));

    let (ok, out, err) = run(&cfg, "q", &["reprocess", "--key", "good.jsonl"]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("forgot 1 checkpoint(s)"), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            report["processed"].as_u64(),
            report["errors"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );
    let after = etl.checkpoints.list().await.unwrap();
    assert_eq!(
        corrupt(&after),
        Some((State::Failed, 1)),
        "the corrupt object was not retried"
    );
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (1, 2));

    // The corrupt key itself fails the command, naming the compressed offset.
    let (ok, out, _) = run(&cfg, "q", &["reprocess", "--key", "corrupt.jsonl.gz"]);
    assert!(!ok);
    assert!(
        out.contains("gzip stream invalid at compressed byte"),
        "{out}"
    );
}

#[tokio::test]
async fn doctor_reports_dead_letters_stuck_attempts_and_real_failures_with_fixes() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    let queue = dataflow_testkit::unique("q");
    let (ok, _, err) = run(&cfg, &queue, &["setup", "--notifications"]);
    assert!(ok, "{err}");
    // Drain what the setup's notifications and puts below send, so only our dead letter counts.
    let put = |key: &'static str, body: &'static [u8]| {
        let etl = &etl;
        let bucket = cfg.etl.lake.raw_bucket.clone();
        async move {
            etl.store
                .put(
                    &bucket,
                    key,
                    Body::Bytes(body.to_vec()),
                    "application/x-ndjson",
                )
                .await
                .unwrap();
            etl.process_object(ObjectRef::new(&bucket, key)).await
        }
    };
    // A real failure: a corrupt object that is still the key's current version.
    assert!(put("corrupt.jsonl.gz", CORRUPT).await.is_err());
    // Not a failure: a version that failed, then was replaced by a good upload.
    assert!(put("fixed.jsonl.gz", CORRUPT).await.is_err());
    assert!(matches!(
        put("fixed.jsonl.gz", GOOD).await.unwrap(),
        ObjectOutcome::Processed(_)
    ));
    // An attempt that died: claimed with a lease that has lapsed.
    etl.store
        .put(
            &cfg.etl.lake.raw_bucket,
            "stuck.jsonl",
            Body::Bytes(GOOD.to_vec()),
            "application/x-ndjson",
        )
        .await
        .unwrap();
    let stuck = ObjectRef::current(&*etl.store, &cfg.etl.lake.raw_bucket, "stuck.jsonl")
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        etl.checkpoints.claim(&stuck, 0, 1).await.unwrap(),
        ClaimOutcome::Acquired(_)
    ));
    // A message that exhausted its receives.
    let dlq = dataflow_dev::resources::queue_url(&clients.sqs, &format!("{queue}-dlq"))
        .await
        .unwrap()
        .unwrap();
    let body = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": cfg.etl.lake.raw_bucket}, "object": {"key": "lost+and+found.jsonl"}}}]});
    clients
        .sqs
        .send_message()
        .queue_url(&dlq)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();

    let (ok, out, err) = run(&cfg, &queue, &["doctor", "--api", "127.0.0.1:9"]);
    eprintln!("{out}");
    assert!(!ok);
    // Every failure is one line with its cause and a fix; no error trace follows.
    for l in out.lines().filter(|l| l.starts_with("FAIL")) {
        assert!(
            l.contains("; fix: ") || l.contains('`'),
            "a failure without a fix: {l}"
        );
    }
    assert!(out.trim_end().ends_with("check(s) failed"), "{out}");
    assert!(
        !err.contains("backtrace") && !err.contains("Error:"),
        "{err}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name}: ")))
            .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
            .to_owned()
    };
    let dead = line("dead-letter queue");
    assert!(dead.starts_with("FAIL"), "{dead}");
    assert!(
        dead.contains(&format!("1 message(s) in {queue}-dlq")),
        "{dead}"
    );
    assert!(
        dead.contains(&format!(
            "s3://{}/lost and found.jsonl",
            cfg.etl.lake.raw_bucket
        )),
        "{dead}"
    );
    assert!(dead.contains("`dataflow redrive`"), "{dead}");
    let objects = line("ETL objects");
    assert!(
        objects.contains("1 failed object(s), e.g. corrupt.jsonl.gz"),
        "{objects}"
    );
    assert!(
        objects.contains("`dataflow reprocess --key corrupt.jsonl.gz`"),
        "{objects}"
    );
    let attempts = line("ETL attempts");
    assert!(
        attempts.contains("1 object(s) in progress past their lease"),
        "{attempts}"
    );
    assert!(
        attempts.contains("stuck.jsonl") && attempts.contains("`dataflow sweep`"),
        "{attempts}"
    );

    // The fixes it names work.
    let (ok, out, err) = run(&cfg, &queue, &["redrive"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"redriven\":1"), "{out}");
    let (ok, out, err) = run(&cfg, &queue, &["sweep"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"swept\":1"), "{out}");
    let (_, out, _) = run(&cfg, &queue, &["doctor", "--api", "127.0.0.1:9"]);
    for name in ["dead-letter queue", "ETL attempts"] {
        let l = out
            .lines()
            .find(|l| l.contains(&format!(" {name}: ")))
            .unwrap();
        assert!(l.starts_with("ok"), "{l}");
    }
    let p = etl.checkpoints.pipeline().await.unwrap();
    assert_eq!((p.files_processed, p.events_accepted), (2, 4));

    // The change log names every change the ETL made; a file written around it is reported.
    let change_log = |out: &str| {
        out.lines()
            .find(|l| l.contains(" change log: "))
            .unwrap_or_else(|| panic!("no change log line in:\n{out}"))
            .to_owned()
    };
    let l = change_log(&out);
    assert!(
        l.starts_with("ok") && l.contains("every recent change"),
        "{l}"
    );
    etl.store
        .put(
            &cfg.etl.lake.lake_bucket,
            &cfg.etl.lake.layout.aggregate_key("2023-07-04", "outside"),
            dataflow_store::Body::Bytes(b"PAR1".to_vec()),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let (_, out, _) = run(&cfg, &queue, &["doctor", "--api", "127.0.0.1:9"]);
    let l = change_log(&out);
    assert!(
        l.starts_with("FAIL") && l.contains("(2023-07)") && l.contains("the lake wins"),
        "{l}"
    );
    etl.store
        .delete(
            &cfg.etl.lake.lake_bucket,
            &cfg.etl.lake.layout.aggregate_key("2023-07-04", "outside"),
        )
        .await
        .unwrap();

    // Rollups: none yet; after `dataflow rollup`, the catalog's months, and a ranged read of
    // the catalog from the store answering with the asked bytes.
    let rollups = |out: &str| {
        out.lines()
            .find(|l| l.contains(" rollups: "))
            .unwrap_or_else(|| panic!("no rollups line in:\n{out}"))
            .to_owned()
    };
    let l = rollups(&out);
    assert!(l.starts_with("ok") && l.contains("none yet"), "{l}");
    let (ok, out, err) = run(&cfg, &queue, &["rollup"]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = run(&cfg, &queue, &["doctor", "--api", "127.0.0.1:9"]);
    let l = rollups(&out);
    assert!(
        l.starts_with("ok") && l.contains("1 month(s), 0 with edge tables; ranged reads answer"),
        "{l}"
    );
}

/// `dataflow checkpoints | head`: a reader that stops early ends the command quietly (exit 0,
/// no panic), as with other Unix tools.
#[tokio::test]
async fn a_closed_output_pipe_ends_the_command_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    // Enough records that the listing outgrows the pipe's buffer.
    let store = dataflow_aws::S3Store::new(clients.s3.clone());
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    for i in 0..200 {
        let key = format!("in/f{i}.jsonl");
        store
            .put(
                &cfg.etl.lake.raw_bucket,
                &key,
                Body::Bytes(GOOD.to_vec()),
                "application/x-ndjson",
            )
            .await
            .unwrap();
        etl.process_object(ObjectRef::new(&cfg.etl.lake.raw_bucket, &key))
            .await
            .unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_dataflow"))
        .arg("checkpoints")
        .envs(common::env(&cfg, "unused"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader goes away here (stdout dropped).
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
