//! Emulator harness for integration tests. Uses `DATAFLOW_TEST_ENDPOINT` when set; otherwise
//! starts one moto server per test binary on a free loopback port (moto from the project's
//! `.venv`, created by `infra/local/venv.sh`, run by `infra/local/moto-server.py`; or
//! `moto_server` on PATH). The server dies with the test process.
//! Tests isolate themselves with unique resource names instead of resetting shared state.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dataflow_dev::StackConfig as Config;

static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();

/// The emulator endpoint. Panics with instructions when no emulator can be started: an
/// integration test must fail loudly, never pass without running.
pub fn endpoint() -> String {
    match ENDPOINT.get_or_init(start) {
        Ok(e) => e.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The command that starts the emulator: `MOTO_SERVER`, else the project's wrapper of moto's
/// server (`infra/local/moto-server.py`, DynamoDB requests applied one at a time as DynamoDB
/// applies them) with the `.venv` Python, else `moto_server` on PATH.
fn moto_command() -> Option<Command> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(Command::new(p));
    }
    let python = workspace_root().join(".venv/bin/python");
    let wrapper = workspace_root().join("infra/local/moto-server.py");
    if python.exists()
        && wrapper.exists()
        && workspace_root().join(".venv/bin/moto_server").exists()
    {
        let mut cmd = Command::new(python);
        cmd.arg(wrapper);
        return Some(cmd);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("moto_server"))
                .find(|p| p.exists())
        })
        .map(Command::new)
}

fn start() -> Result<String, String> {
    if let Ok(e) = std::env::var("DATAFLOW_TEST_ENDPOINT") {
        return Ok(e);
    }
    let mut cmd = moto_command().ok_or(
        "no emulator: run infra/local/venv.sh (installs moto[server] into .venv) or set DATAFLOW_TEST_ENDPOINT",
    )?;
    let shown = format!("{cmd:?}");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    // Spawned from a thread that lives as long as the process, so PDEATHSIG fires only when the
    // test binary exits (it tracks the spawning thread, not the process).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let r = cmd.spawn().map_err(|e| e.to_string());
        let ok = r.is_ok();
        let _ = tx.send(r.map(|_| ()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("starting {shown}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto server on port {port} did not start within 30 s"
    ))
}

/// Polls `check` until it gives a value, every 50 ms, for at most `limit`; panics naming `what`
/// when it never does. For states that only real time brings (an emulator's visibility
/// timeout, a refresh behind real I/O): tests wait on the state, never for a fixed time.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bucket/table-safe unique name.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Configuration pointing at the emulator with fresh resource names.
pub fn config() -> Config {
    let endpoint = endpoint();
    let names = [
        ("RAW_BUCKET", unique("raw")),
        ("LAKE_BUCKET", unique("lake")),
        ("INDEX_BUCKET", unique("index")),
        ("CHECKPOINT_TABLE", unique("ckpt")),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("ETL_WORKERS", "2".to_owned()),
    ];
    let found = |k: &str| names.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    match Config::from_lookup(found) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

/// Creates the buckets and the table of `cfg`.
pub async fn provision(cfg: &Config) -> dataflow_dev::Clients {
    let clients = dataflow_dev::Clients::new(cfg).await;
    for b in [
        &cfg.etl.lake.raw_bucket,
        &cfg.etl.lake.lake_bucket,
        &cfg.search.index.bucket,
    ] {
        if let Err(e) = dataflow_dev::resources::ensure_bucket(&clients.s3, b).await {
            panic!("creating bucket {b}: {e}");
        }
    }
    if let Err(e) =
        dataflow_dev::resources::ensure_versioning(&clients.s3, &cfg.etl.lake.raw_bucket).await
    {
        panic!("versioning the raw bucket: {e}");
    }
    if let Err(e) =
        dataflow_dev::resources::ensure_table(&clients.dynamodb, &cfg.etl.lake.checkpoint_table)
            .await
    {
        panic!("creating table: {e}");
    }
    clients
}
