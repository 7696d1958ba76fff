//! `dataflow doctor`: checks every part of the local stack and prints the fix for each failure.

use anyhow::Result;
use dataflow_aws::S3Store;
use dataflow_config::Service;
use dataflow_dev::Clients;
use dataflow_dev::StackConfig as Config;

/// Runs every check and prints one line each; a failure's line says its cause and the fix.
/// Failures end the process with status 1 after a summary line (never a backtrace).
pub async fn doctor(api: &str) -> Result<()> {
    let failures = checks(api).await;
    if failures > 0 {
        out!("{failures} check(s) failed");
        std::process::exit(1);
    }
    out!("all checks passed");
    Ok(())
}

/// A failure's line: the cause on one line, then the fix.
fn failed(cause: impl std::fmt::Display, fix: &str) -> String {
    let cause = cause
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cause}; fix: {fix}")
}

const FIX_REACH: &str = "check AWS_ENDPOINT_URL and the credentials, then `infra/stack up`";
const FIX_API: &str =
    "look at .local/api.log; restart the API with `infra/stack up` (or `dataflow serve`)";

async fn checks(api: &str) -> usize {
    let mut failures = 0;
    let mut report = |name: &str, r: std::result::Result<String, String>| match r {
        Ok(detail) => out!("ok    {name}: {detail}"),
        Err(fix) => {
            failures += 1;
            let fix = if fix.contains("fix: ") || fix.contains('`') {
                fix.split_whitespace().collect::<Vec<_>>().join(" ")
            } else {
                failed(fix, "see the README's Troubleshooting")
            };
            out!("FAIL  {name}: {fix}");
        }
    };
    let cfg = match Config::from_env() {
        Ok(c) => {
            report("configuration", Ok("environment is valid".into()));
            c
        }
        Err(e) => {
            report(
                "configuration",
                Err(failed(
                    e,
                    "set the variable as the README's Configuration says",
                )),
            );
            return 1;
        }
    };
    let at = |s: Service| cfg.aws.endpoint(s).unwrap_or("AWS").to_owned();
    let endpoint = if Service::ALL.iter().all(|s| at(*s) == at(Service::S3)) {
        at(Service::S3)
    } else {
        format!(
            "S3 {}, DynamoDB {}, SQS {}",
            at(Service::S3),
            at(Service::DynamoDb),
            at(Service::Sqs)
        )
    };
    let clients = Clients::new(&cfg).await;
    let reachable = clients.s3.list_buckets().send().await;
    let up = reachable.is_ok();
    report(
        "emulator",
        reachable
            .map(|_| format!("{endpoint} answers"))
            .map_err(|e| {
                format!(
                    "{endpoint} unreachable ({}): run `infra/stack up`",
                    dataflow_aws::describe(&e)
                )
            }),
    );
    if !up {
        out!("the emulator is down; nothing else can be checked");
        return 1;
    }
    for b in [
        &cfg.etl.lake.raw_bucket,
        &cfg.etl.lake.lake_bucket,
        &cfg.search.index.bucket,
    ] {
        let r = dataflow_dev::resources::bucket_exists(&clients.s3, b).await;
        report(
            &format!("bucket {b}"),
            match r {
                Ok(true) => Ok("exists".into()),
                Ok(false) => Err(
                    "missing: run `dataflow setup --notifications` (or `infra/stack up`)".into(),
                ),
                Err(e) => Err(failed(e, FIX_REACH)),
            },
        );
    }
    report(
        &format!("table {}", cfg.etl.lake.checkpoint_table),
        match dataflow_dev::resources::table_exists(
            &clients.dynamodb,
            &cfg.etl.lake.checkpoint_table,
        )
        .await
        {
            Ok(true) => Ok("exists".into()),
            Ok(false) => Err("missing: run `dataflow setup --notifications`".into()),
            Err(e) => Err(failed(e, FIX_REACH)),
        },
    );
    let queue = dataflow_dev::resources::queue_url(&clients.sqs, &cfg.etl_queue).await;
    match queue {
        Ok(Some(url)) => {
            report(&format!("queue {}", cfg.etl_queue), Ok("exists".into()));
            let wired = match dataflow_dev::resources::queue_arn(&clients.sqs, &url).await {
                Ok(arn) => {
                    dataflow_dev::resources::notifications_wired(
                        &clients.s3,
                        &cfg.etl.lake.raw_bucket,
                        &arn,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            report(
                "notifications",
                match wired {
                    Ok(true) => Ok(format!(
                        "s3://{} ObjectCreated -> {}",
                        cfg.etl.lake.raw_bucket, cfg.etl_queue
                    )),
                    Ok(false) => Err("not wired: run `dataflow setup --notifications`".into()),
                    Err(e) => Err(failed(e, FIX_REACH)),
                },
            );
            let depth = dataflow_dev::resources::queue_depth(&clients.sqs, &url)
                .await
                .unwrap_or(0);
            report(
                "dispatcher",
                if depth < 100 {
                    Ok(format!("{depth} message(s) waiting"))
                } else {
                    Err(format!("{depth} messages waiting: is the dispatcher running? `infra/stack status`; restart with `infra/stack up`"))
                },
            );
            report("dead-letter queue", dead_letters(&clients, &cfg).await);
        }
        Ok(None) => report(
            &format!("queue {}", cfg.etl_queue),
            Err("missing: run `dataflow setup --notifications`".into()),
        ),
        Err(e) => report(
            &format!("queue {}", cfg.etl_queue),
            Err(failed(e, FIX_REACH)),
        ),
    }
    let etl = dataflow_aws::etl(&cfg.etl, &clients.aws);
    for (name, r) in etl_checks(&etl).await {
        report(name, r);
    }
    let s3 = S3Store::new(clients.s3.clone());
    report("rollups", rollups(&s3, &cfg).await);
    report("change log", change_log(&s3, &cfg).await);
    let loc = cfg.search.index.clone();
    report(
        "search index",
        match dataflow_search::store::current_manifest(&s3, &loc).await {
            Ok(Some(m)) => Ok(format!(
                "{} documents, {} passages, built {}",
                m.documents, m.passages, m.built_at
            )),
            Ok(None) => Err(format!(
                "not published at s3://{}/{}: run `dataflow index build --docs docs/ --upload`",
                loc.bucket,
                loc.manifest_key()
            )),
            Err(e) => Err(format!("{e}: run `dataflow index rebuild --force`")),
        },
    );
    match dataflow_dev::resources::queue_url(&clients.sqs, &cfg.docs_queue).await {
        Ok(Some(url)) => {
            let wired = match dataflow_dev::resources::queue_arn(&clients.sqs, &url).await {
                Ok(arn) => {
                    dataflow_dev::resources::notifications_wired(
                        &clients.s3,
                        &cfg.search.index.bucket,
                        &arn,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            report(
                "docs notifications",
                match wired {
                    Ok(true) => Ok(format!(
                        "s3://{}/{} -> {} (index rebuilds on change)",
                        cfg.search.index.bucket, cfg.search.index.docs_prefix, cfg.docs_queue
                    )),
                    Ok(false) => Err("not wired: run `dataflow setup --notifications`".into()),
                    Err(e) => Err(failed(e, FIX_REACH)),
                },
            );
        }
        Ok(None) => report(
            &format!("queue {}", cfg.docs_queue),
            Err("missing: run `dataflow setup --notifications`".into()),
        ),
        Err(e) => report(
            &format!("queue {}", cfg.docs_queue),
            Err(failed(e, FIX_REACH)),
        ),
    }
    let health = http_get(api, "/health").await;
    report(
        &format!("API http://{api}"),
        match health {
            Ok((200, _)) => Ok("/health answers 200".into()),
            Ok((code, body)) => Err(failed(format!("/health answered {code}: {body}"), FIX_API)),
            Err(e) => Err(format!(
                "{e}: start it with `infra/stack up` (or `dataflow serve`)"
            )),
        },
    );
    let summary = http_get(api, "/analytics/summary").await;
    report(
        "analytics",
        match summary {
            Ok((200, _)) => Ok("/analytics/summary answers".into()),
            Ok((503, _)) => Err(
                "analytics not ready: drop a file in the raw bucket or run `dataflow backfill`"
                    .into(),
            ),
            Ok((code, body)) => Err(failed(format!("{code}: {body}"), FIX_API)),
            Err(e) if e.starts_with("no answer") => Err(failed(
                e,
                "reads slow down while many small files wait: `dataflow compact` merges them (the stack also does every COMPACT_SECONDS); else look at .local/api.log",
            )),
            Err(e) => Err(failed(e, FIX_API)),
        },
    );
    report(
        "search",
        match http_get(api, "/docs/search?q=reprocess&k=1").await {
            Ok((200, _)) => Ok("/docs/search answers".into()),
            Ok((503, body)) => Err(format!(
                "index not loaded ({body}): run `dataflow index build --docs docs/ --upload`"
            )),
            Ok((code, body)) => Err(failed(format!("{code}: {body}"), FIX_API)),
            Err(e) => Err(failed(e, FIX_API)),
        },
    );
    report(
        "dashboard",
        match (
            http_get(api, "/").await,
            http_get(api, "/pipeline/status").await,
        ) {
            (Ok((200, page)), Ok((200, _))) if page.contains("<title>DataFlow</title>") => {
                Ok(format!("http://{api}/ and /pipeline/status answer"))
            }
            (Ok((code, _)), _) if code != 200 => Err(failed(format!("/ answered {code}"), FIX_API)),
            (_, Ok((code, body))) if code != 200 => Err(failed(
                format!("/pipeline/status answered {code}: {body}"),
                FIX_API,
            )),
            (Err(e), _) | (_, Err(e)) => Err(failed(e, FIX_API)),
            _ => Err(failed(
                "/ is not the dashboard page",
                "another server holds the port: `infra/stack down`, then `infra/stack up`",
            )),
        },
    );
    failures
}

type Check = std::result::Result<String, String>;

/// The rollup catalog: its months, how many have edge tables, how many wait for the next run to
/// be written in the current form; and, on the catalog itself, that the store answers ranged
/// reads with the asked bytes (the API reads a month's edge tables that way).
async fn rollups(s3: &S3Store, cfg: &Config) -> Check {
    use dataflow_store::ObjectStore;
    let (bucket, layout) = (&cfg.etl.lake.lake_bucket, &cfg.etl.lake.layout);
    let key = dataflow_core::rollup::catalog_key(layout);
    let Some(bytes) = s3.get(bucket, &key).await.map_err(|e| e.to_string())? else {
        return Ok("none yet: the API reads the daily files until `dataflow compact` or the hourly run writes them".into());
    };
    let catalog = match dataflow_core::rollup::read_catalog(s3, bucket, layout).await {
        Ok(Some(c)) => c,
        Ok(None) | Err(_) => {
            return Err(format!(
                "s3://{bucket}/{key} is unreadable: run `dataflow rollup` to write it again"
            ))
        }
    };
    let (start, len) = (1u64, 16u64.min((bytes.len() as u64).saturating_sub(1)));
    let part = s3
        .get_range(bucket, &key, start, len)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if part.as_slice() != &bytes[start as usize..(start + len) as usize] {
        return Err(format!(
            "asked s3://{bucket}/{key} for {len} bytes at {start}, got {}: the store does not honour ranged reads, so the API reads whole months (right answers, slower)",
            part.len()
        ));
    }
    let months = catalog.months.len();
    let with_edges = catalog
        .months
        .values()
        .filter(|m| m.edges.is_some())
        .count();
    let older = catalog
        .months
        .values()
        .filter(|m| m.objects < dataflow_core::rollup::MONTH_OBJECTS)
        .count();
    let mut detail =
        format!("{months} month(s), {with_edges} with edge tables; ranged reads answer");
    if older > 0 {
        detail.push_str(&format!(
            "; {older} written in an older form (the next `dataflow rollup` rewrites them)"
        ));
    }
    Ok(detail)
}

/// The lake's change log against the lake: aggregate files written within the log's retention
/// that no marker names (a writer outside DataFlow). Readers still see them at their next full
/// listing: the lake wins; this says so.
async fn change_log(s3: &S3Store, cfg: &Config) -> Check {
    use dataflow_core::lake::changes::{self, Changed};
    use dataflow_store::ObjectStore;
    let (layout, bucket) = (&cfg.etl.lake.layout, &cfg.etl.lake.lake_bucket);
    let markers: Vec<changes::Marker> = s3
        .list(bucket, &changes::prefix(layout))
        .await
        .map_err(|e| failed(e, FIX_REACH))?
        .iter()
        .filter_map(|m| changes::parse(layout, &m.key))
        .collect();
    let files = s3
        .list(bucket, &layout.partitions_prefix())
        .await
        .map_err(|e| failed(e, FIX_REACH))?;
    // Older files' markers may already be pruned; an hour's margin keeps those out.
    let since = dataflow_core::time::now_ms() - changes::RETENTION_MS + 3_600_000;
    let mut unnamed = std::collections::BTreeSet::new();
    for f in &files {
        let (Some(at), Some(date)) = (f.last_modified_ms, layout.date_of_aggregate_key(&f.key))
        else {
            continue;
        };
        let Some(month) = date.get(..7) else { continue };
        if at < since {
            continue;
        }
        let named = markers.iter().any(|m| {
            m.at_ms >= at - changes::OVERLAP_MS
                && match &m.changed {
                    Changed::All => true,
                    Changed::Months(ms) => ms.contains(month),
                }
        });
        if !named {
            unnamed.insert(month.to_owned());
        }
    }
    if unnamed.is_empty() {
        return Ok(format!(
            "{} marker(s); every recent change in the lake is named",
            markers.len()
        ));
    }
    Err(failed(
        format!(
            "the lake changed in {} month(s) ({}) that the change log does not name (a writer outside DataFlow?)",
            unnamed.len(),
            unnamed.into_iter().collect::<Vec<_>>().join(", ")
        ),
        "nothing is lost: readers list the whole lake every 10 minutes and the lake wins; to see the files at once, restart the API (`infra/stack up`)",
    ))
}

/// The dead-letter queue's depth and the object keys its messages name.
async fn dead_letters(clients: &Clients, cfg: &Config) -> Check {
    let name = format!("{}-dlq", cfg.etl_queue);
    let url = match dataflow_dev::resources::queue_url(&clients.sqs, &name).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(format!(
                "{name} missing: run `dataflow setup --notifications`"
            ))
        }
        Err(e) => return Err(failed(e, FIX_REACH)),
    };
    let depth = dataflow_dev::resources::queue_depth(&clients.sqs, &url)
        .await
        .map_err(|e| failed(e, FIX_REACH))?;
    if depth == 0 {
        return Ok(format!("{name} is empty"));
    }
    let bodies = dataflow_dev::resources::peek(&clients.sqs, &url, 10)
        .await
        .unwrap_or_default();
    let keys: Vec<String> = bodies.iter().flat_map(|b| keys_in(b)).collect();
    Err(format!(
        "{depth} message(s) in {name} (objects: {}): fix the cause (see the failed objects), then `dataflow redrive`",
        if keys.is_empty() { "unknown".into() } else { keys.join(", ") }
    ))
}

/// Object keys named by a queued S3 notification.
fn keys_in(body: &str) -> Vec<String> {
    let record = serde_json::json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": body}]});
    match dataflow_aws::events::Invocation::parse(&record) {
        Ok(dataflow_aws::events::Invocation::Messages(msgs)) => msgs
            .into_iter()
            .flat_map(|m| m.changes.unwrap_or_default())
            .map(|o| format!("s3://{}/{}", o.bucket, o.key))
            .collect(),
        _ => Vec::new(),
    }
}

/// Stuck attempts, replaced versions with outputs left to remove, and failures of versions
/// that are still current (a failed version since overwritten or deleted is not a failure).
async fn etl_checks(
    etl: &dataflow_core::etl::Etl<S3Store, dataflow_aws::DynamoCheckpoints>,
) -> Vec<(&'static str, Check)> {
    use dataflow_core::checkpoint::{CheckpointReads, State};
    use dataflow_store::ObjectStore;
    let list = match etl.checkpoints.list().await {
        Ok(l) => l,
        Err(e) => return vec![("ETL", Err(failed(e, FIX_REACH)))],
    };
    let now = dataflow_core::time::now_ms();
    let key_of = |c: &dataflow_core::checkpoint::ObjectCheckpoint| {
        c.source.as_ref().map_or(c.id.clone(), |s| s.key.clone())
    };
    let stuck: Vec<String> = list
        .iter()
        .filter(|c| c.is_stuck(now))
        .map(key_of)
        .collect();
    let cleanup = list.iter().filter(|c| !c.cleanup.is_empty()).count();
    let mut failed = Vec::new();
    for c in list.iter().filter(|c| c.state == State::Failed) {
        let current = match &c.source {
            Some(s) => match etl.store.head(&s.bucket, &s.key).await {
                Ok(Some(meta)) => meta.etag == s.etag,
                Ok(None) => false,
                Err(_) => true,
            },
            None => true,
        };
        if current {
            failed.push(c);
        }
    }
    let counted = list.iter().filter(|c| c.state == State::Done).count();
    let replaced = list.iter().filter(|c| c.state == State::Superseded).count();
    let lease_s = etl.lease_ms / 1000;
    vec![
        (
            "ETL objects",
            match failed.first() {
                None => Ok(format!(
                    "{counted} counted, {replaced} replaced by newer versions, none failed"
                )),
                Some(f) => Err(format!(
                    "{} failed object(s), e.g. {}: {}; fix or replace the object (a new upload under the same key replaces it), then `dataflow reprocess --key {}`",
                    failed.len(),
                    key_of(f),
                    f.error.clone().unwrap_or_default(),
                    key_of(f)
                )),
            },
        ),
        (
            "ETL attempts",
            if stuck.is_empty() {
                Ok(format!("none stuck (lease {lease_s} s, renewed while processing)"))
            } else {
                Err(format!(
                    "{} object(s) in progress past their lease (the attempt died): {}; the sweep takes them over (the dispatcher runs it every few seconds); now: `dataflow sweep`",
                    stuck.len(),
                    stuck.join(", ")
                ))
            },
        ),
        (
            "replaced outputs",
            if cleanup == 0 {
                Ok("nothing left to remove".into())
            } else {
                Err(format!(
                    "{cleanup} replaced version(s) still have outputs in the lake: `dataflow sweep`"
                ))
            },
        ),
    ]
}

/// Minimal HTTP/1.1 GET for the doctor (no client library needed for one local call).
/// GET with the API key from `API_KEY` when set (`infra/stack doctor` sets it).
async fn http_get(addr: &str, path: &str) -> std::result::Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = std::env::var("API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty() && !k.contains(['\r', '\n']))
        .map(|k| format!("x-api-key: {}\r\n", k.trim()))
        .unwrap_or_default();
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{key}\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        Ok((code, body))
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), fut)
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
}
