//! Running the `dataflow` binary against the emulator, as an operator would.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dataflow_dev::StackConfig as Config;

/// Kills the child on drop, so a failing test leaves no dispatcher behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn env(cfg: &Config, queue: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "AWS_ENDPOINT_URL",
            cfg.aws.endpoint_url.clone().unwrap_or_default(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        // Set as a developer may have it: no command's expected failure may print a trace.
        ("RUST_BACKTRACE", "1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("RAW_BUCKET", cfg.etl.lake.raw_bucket.clone()),
        ("LAKE_BUCKET", cfg.etl.lake.lake_bucket.clone()),
        ("INDEX_BUCKET", cfg.search.index.bucket.clone()),
        ("CHECKPOINT_TABLE", cfg.etl.lake.checkpoint_table.clone()),
        ("ETL_QUEUE", queue.to_owned()),
        ("DOCS_QUEUE", format!("{queue}-docs")),
        ("LEASE_SECONDS", "3".into()),
        ("ETL_WORKERS", "1".into()),
        ("RUST_LOG", "info".into()),
    ]
}

pub fn dataflow(cfg: &Config, queue: &str, args: &[&str], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_dataflow"))
        .args(args)
        .envs(env(cfg, queue))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    dataflow_testkit::eventually(what, limit, || {
        let ready = f();
        async move { ready.await.then_some(()) }
    })
    .await
}

/// Runs a command to its end; (success, stdout, stderr).
pub fn run(cfg: &Config, queue: &str, args: &[&str]) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_dataflow"))
        .args(args)
        .envs(env(cfg, queue))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
