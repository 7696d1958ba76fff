//! Compaction: merge one date's aggregate files into a single object so read cost does not grow
//! with the number of ingested files. Safe against concurrent ETL runs and repeatable:
//! - one compaction per date at a time (a lease lock in the checkpoint store);
//! - the compacted file lists every file it replaces in its Parquet metadata, with a generation
//!   one above the compaction it replaces; readers take the newest and skip what it covers
//!   ([`crate::lake::effective_files`]), so between the write and the clean-up readers count
//!   each partial once; partials written meanwhile are not covered and still count;
//! - covered partials then move to the date's archive (`_sources/`, which Hive-style readers and
//!   the read model never list): they stay the source of truth, so when a key's newer version
//!   replaces an older one, [`remove_outputs`] rebuilds the date's compacted file from the
//!   archive without the older version;
//! - its name derives from what it covers, so a re-run rewrites the same object.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, Locks};
use crate::lake::layout::Layout;
use crate::lake::parquet::{encode_aggregate_file, AggregateRow, ParquetError};
use crate::lake::{effective_files, name_of, AggregateFile, LakeError};
use crate::time::now_ms;
use dataflow_sketch::SketchMerger;
use dataflow_store::{Body, ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Encode(#[from] ParquetError),
    #[error("a compaction of {0} holds its lock; retried on the next sweep")]
    Busy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactionOutcome {
    /// Wrote `key`, covering `replaced` files.
    Compacted { key: String, replaced: usize },
    /// Already a single file.
    NothingToDo,
    /// Another compaction of this date holds the lock.
    Locked,
}

const COMPACTED: &str = "compacted-";
const PARQUET: &str = "application/vnd.apache.parquet";

/// How long a compaction may hold a date's lock.
const LOCK_MS: i64 = 300_000;

/// Compacts every date with more than one aggregate file in its partition (covered partials move
/// to the archive, so a listing alone tells which dates need it). Returns the dates compacted
/// (or found locked).
pub async fn compact_all(
    store: &dyn ObjectStore,
    locks: &dyn Locks,
    bucket: &str,
    layout: &Layout,
) -> Result<Vec<(String, CompactionOutcome)>, CompactionError> {
    let listed = store.list(bucket, &layout.partitions_prefix()).await?;
    let mut per_date: BTreeMap<String, usize> = BTreeMap::new();
    for m in &listed {
        if let Some(d) = layout.date_of_aggregate_key(&m.key) {
            *per_date.entry(d.to_owned()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (date, n) in per_date {
        if n > 1 {
            let r = compact_date(store, locks, bucket, layout, &date).await?;
            if r != CompactionOutcome::NothingToDo {
                out.push((date, r));
            }
        }
    }
    Ok(out)
}

/// Runs `work` holding the date's compaction lock; `None` when another holder has it.
async fn with_date_lock<T, F>(
    locks: &dyn Locks,
    date: &str,
    work: F,
) -> Result<Option<T>, CompactionError>
where
    F: std::future::Future<Output = Result<T, CompactionError>>,
{
    let Some(lock) = locks
        .acquire_lock(
            &format!("compaction#{date}"),
            crate::time::now_ms(),
            LOCK_MS,
        )
        .await?
    else {
        return Ok(None);
    };
    let result = work.await;
    locks.release_lock(&lock).await?;
    result.map(Some)
}

/// Compaction by pressure: each of `dates` whose partition holds `at_files` or more aggregate
/// files is compacted now (one LIST per date to count). Dates another compaction holds are left
/// to it. Returns what was done per date.
pub async fn compact_crowded(
    store: &dyn ObjectStore,
    locks: &dyn Locks,
    bucket: &str,
    layout: &Layout,
    dates: &[String],
    at_files: usize,
) -> Result<Vec<(String, CompactionOutcome)>, CompactionError> {
    let mut out = Vec::new();
    if at_files == 0 {
        return Ok(out);
    }
    for date in dates {
        let prefix = format!("{}{date}/", layout.partitions_prefix());
        let files = store
            .list(bucket, &prefix)
            .await?
            .iter()
            .filter(|m| m.key.ends_with(".parquet"))
            .count();
        if files >= at_files.max(2) {
            let r = compact_date(store, locks, bucket, layout, date).await?;
            out.push((date.clone(), r));
        }
    }
    Ok(out)
}

pub async fn compact_date(
    store: &dyn ObjectStore,
    locks: &dyn Locks,
    bucket: &str,
    layout: &Layout,
    date: &str,
) -> Result<CompactionOutcome, CompactionError> {
    let work = compact_locked(store, bucket, layout, date);
    Ok(with_date_lock(locks, date, work)
        .await?
        .unwrap_or(CompactionOutcome::Locked))
}

/// Every decodable aggregate file under `prefix`.
async fn load(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    prefix: &str,
) -> Result<Vec<AggregateFile>, CompactionError> {
    let mut files = Vec::new();
    for meta in store.list(bucket, prefix).await? {
        if !meta.key.ends_with(".parquet") {
            continue;
        }
        if let Some(bytes) = store.get(bucket, &meta.key).await? {
            if let Some(f) = AggregateFile::decode(layout, &meta.key, &bytes)? {
                files.push(f);
            }
        }
    }
    Ok(files)
}

async fn compact_locked(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
) -> Result<CompactionOutcome, CompactionError> {
    let prefix = format!("{}{date}/", layout.partitions_prefix());
    let files = load(store, bucket, layout, &prefix).await?;
    let refs: Vec<&AggregateFile> = files.iter().collect();
    let effective = effective_files(&refs);
    if effective.len() <= 1 {
        // Leftovers of a compaction that stopped before its clean-up: finish it.
        if let Some(best) = effective.first() {
            if files.len() > 1 {
                tidy(store, bucket, layout, date, &files, best).await?;
                crate::lake::changes::record(store, bucket, layout, [date], now_ms()).await?;
            }
        }
        return Ok(CompactionOutcome::NothingToDo);
    }
    let mut covers: Vec<String> = effective
        .iter()
        .flat_map(|f| f.covers.iter().cloned().chain([f.name.clone()]))
        .collect();
    covers.sort();
    covers.dedup();
    let generation = files.iter().map(|f| f.generation).max().unwrap_or(0) + 1;
    let written =
        write_compacted(store, bucket, layout, date, &effective, covers, generation).await?;
    tidy(store, bucket, layout, date, &files, &written).await?;
    crate::lake::changes::record(store, bucket, layout, [date], now_ms()).await?;
    let replaced = written.covers.len();
    tracing::info!(date, key = %written.key, replaced, generation, "compacted");
    Ok(CompactionOutcome::Compacted {
        key: written.key,
        replaced,
    })
}

/// Merges `parts` into one compacted file covering `covers`, and writes it.
async fn write_compacted(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
    parts: &[&AggregateFile],
    covers: Vec<String>,
    generation: u64,
) -> Result<AggregateFile, CompactionError> {
    let mut merged: BTreeMap<String, (u64, SketchMerger, i64, i64)> = BTreeMap::new();
    for f in parts {
        for r in &f.rows {
            let e = merged
                .entry(r.event_type.clone())
                .or_insert_with(|| (0, SketchMerger::default(), i64::MAX, i64::MIN));
            e.0 += r.event_count;
            e.1.add(&r.users);
            e.2 = e.2.min(r.min_time_us);
            e.3 = e.3.max(r.max_time_us);
        }
    }
    let rows: Vec<AggregateRow> = merged
        .into_iter()
        .map(|(t, (n, m, lo, hi))| AggregateRow {
            event_type: t,
            event_count: n,
            users: m.finish(),
            min_time_us: lo,
            max_time_us: hi,
        })
        .collect();
    let digest = Sha256::digest(covers.join(",").as_bytes());
    let name = format!("{COMPACTED}{}", hex::encode(&digest[..12]));
    let key = format!("{}{date}/{name}.parquet", layout.partitions_prefix());
    let bytes = encode_aggregate_file(&rows, &covers, generation)?;
    store.put(bucket, &key, Body::Bytes(bytes), PARQUET).await?;
    Ok(AggregateFile {
        key,
        date: parts.first().map_or(0, |f| f.date),
        name,
        rows,
        covers,
        generation,
    })
}

/// After `best` is written: moves the partials it covers to the archive (copy, then delete) and
/// deletes the compacted files it replaces.
async fn tidy(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
    files: &[AggregateFile],
    best: &AggregateFile,
) -> Result<(), CompactionError> {
    for f in files {
        if f.name == best.name || !best.covers.contains(&f.name) {
            continue;
        }
        if !f.name.starts_with(COMPACTED) {
            if let Some(bytes) = store.get(bucket, &f.key).await? {
                let archived = layout.archived_aggregate_key(date, &f.name);
                store
                    .put(bucket, &archived, Body::Bytes(bytes), PARQUET)
                    .await?;
            }
        }
        store.delete(bucket, &f.key).await?;
    }
    Ok(())
}

/// Removes a replaced version's outputs from the lake: its curated events and rejected report,
/// and its aggregate partials, wherever they are (partition or archive). A date whose compacted
/// file covers a removed partial is compacted again at once from the archive and the partition
/// without it, with a higher generation, so readers switch from the old file to the new one and
/// never count a partial twice. Under each date's compaction lock; repeatable.
pub async fn remove_outputs(
    store: &dyn ObjectStore,
    locks: &dyn Locks,
    bucket: &str,
    layout: &Layout,
    outputs: &[String],
) -> Result<(), CompactionError> {
    let mut by_date: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for key in outputs {
        match layout.date_of_aggregate_key(key) {
            Some(date) => by_date.entry(date).or_default().push(key),
            None => store.delete(bucket, key).await?,
        }
    }
    for (date, keys) in by_date {
        let work = remove_from_date(store, bucket, layout, date, &keys);
        if with_date_lock(locks, date, work).await?.is_none() {
            return Err(CompactionError::Busy(date.to_owned()));
        }
        crate::lake::changes::record(store, bucket, layout, [date], now_ms()).await?;
    }
    Ok(())
}

async fn remove_from_date(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
    keys: &[&str],
) -> Result<(), CompactionError> {
    let names: Vec<&str> = keys.iter().map(|k| name_of(k)).collect();
    for (key, name) in keys.iter().zip(&names) {
        store.delete(bucket, key).await?;
        store
            .delete(bucket, &layout.archived_aggregate_key(date, name))
            .await?;
    }
    let prefix = format!("{}{date}/", layout.partitions_prefix());
    let files = load(store, bucket, layout, &prefix).await?;
    let stale = files
        .iter()
        .any(|f| f.covers.iter().any(|c| names.contains(&c.as_str())));
    if !stale {
        return Ok(());
    }
    // The date's truth without the removed partials: every partial, archived or not.
    let archived = load(store, bucket, layout, &layout.archive_prefix(date)).await?;
    let mut parts: Vec<&AggregateFile> = Vec::new();
    for f in archived.iter().chain(&files) {
        if !f.name.starts_with(COMPACTED) && !parts.iter().any(|p| p.name == f.name) {
            parts.push(f);
        }
    }
    if parts.is_empty() {
        for f in &files {
            store.delete(bucket, &f.key).await?;
        }
        return Ok(());
    }
    // It replaces every compacted file of the date, so it covers their names too.
    let mut covers: Vec<String> = parts
        .iter()
        .map(|p| p.name.clone())
        .chain(
            files
                .iter()
                .filter(|f| f.name.starts_with(COMPACTED))
                .map(|f| f.name.clone()),
        )
        .collect();
    covers.sort();
    covers.dedup();
    let generation = files.iter().map(|f| f.generation).max().unwrap_or(0) + 1;
    let written = write_compacted(store, bucket, layout, date, &parts, covers, generation).await?;
    tidy(store, bucket, layout, date, &files, &written).await?;
    tracing::info!(date, key = %written.key, generation, "recompacted without a replaced version");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::analytics::{Filter, LakeReader, Summary};

    /// What a reader answers for the whole lake now.
    async fn summary_of(reader: &LakeReader) -> Summary {
        let (view, _) = reader.snapshot().await.unwrap();
        view.summary(&Filter::default()).await.unwrap()
    }
    use crate::checkpoint::MemoryCheckpoints;
    use crate::config::EtlConfig;
    use crate::etl::Etl;
    use crate::lake::source::ObjectRef;
    use dataflow_config::{Env, FromEnv};
    use dataflow_store::MemoryStore;

    type Fixture = (
        EtlConfig,
        Arc<MemoryStore>,
        Arc<MemoryCheckpoints>,
        Etl<MemoryStore, MemoryCheckpoints>,
    );

    fn fixture() -> Fixture {
        let cfg = EtlConfig::from_env_vars(&Env::from_pairs(&[])).unwrap();
        let store = Arc::new(MemoryStore::default());
        let ckpt = Arc::new(MemoryCheckpoints::default());
        let etl = Etl::new(store.clone(), ckpt.clone(), &cfg);
        (cfg, store, ckpt, etl)
    }

    /// At `ETL_COMPACT_AT_FILES` files a date is compacted by the object that reached it, and
    /// the answers are those of a lake that was never compacted.
    #[tokio::test]
    async fn pressure_compacts_a_date_at_the_threshold_and_changes_no_answer() {
        let at = 3;
        let env = Env::from_pairs(&[("ETL_COMPACT_AT_FILES", "3")]);
        let cfg = EtlConfig::from_env_vars(&env).unwrap();
        let (plain_cfg, plain_store, _, plain) = fixture();
        let store = Arc::new(MemoryStore::default());
        let ckpt = Arc::new(MemoryCheckpoints::default());
        let etl = Etl::new(store.clone(), ckpt.clone(), &cfg);
        let files_of = |s: &MemoryStore, date: &str| -> Vec<String> {
            s.keys("dataflow-lake")
                .into_iter()
                .filter(|k| k.starts_with(&format!("aggregates/daily/event_date={date}/")))
                .collect()
        };
        for i in 0..at + 1 {
            // Every object writes 2024-01-01; only the first two also write 2024-01-02.
            let days = if i < 2 { 2 } else { 1 };
            let lines: String = (0..10)
                .map(|j| format!("{{\"user_id\":\"u{}\",\"event_type\":\"t{}\",\"timestamp\":\"2024-01-0{}T00:00:00Z\"}}\n", i * 5 + j, j % 3, 1 + j % days))
                .collect();
            for (s, e) in [(&store, &etl), (&plain_store, &plain)] {
                s.insert(
                    "dataflow-raw",
                    &format!("f{i}.jsonl"),
                    lines.clone().into_bytes(),
                );
                e.process_object(ObjectRef::new("dataflow-raw", format!("f{i}.jsonl")))
                    .await
                    .unwrap();
            }
            let day1 = files_of(&store, "2024-01-01");
            match i + 1 {
                n if n < at => assert_eq!(day1.len(), n, "{day1:?}"),
                // The third file triggers it; the fourth makes two again (below the threshold).
                n if n == at => {
                    assert_eq!(day1.len(), 1, "{day1:?}");
                    assert!(day1[0].contains("/compacted-"), "{day1:?}");
                }
                _ => assert_eq!(day1.len(), 2, "{day1:?}"),
            }
        }
        assert_eq!(
            files_of(&store, "2024-01-02").len(),
            2,
            "below the threshold"
        );
        let reader = |s: Arc<MemoryStore>, c: &EtlConfig| {
            LakeReader::new(
                s,
                "dataflow-lake".into(),
                c.lake.layout.clone(),
                std::time::Duration::ZERO,
            )
        };
        let compacted = summary_of(&reader(store.clone(), &cfg)).await;
        let plain = summary_of(&reader(plain_store.clone(), &plain_cfg)).await;
        assert_eq!(compacted.total_events, 40);
        assert_eq!(compacted, plain);
    }

    #[tokio::test]
    async fn compaction_keeps_answers_identical() {
        let (cfg, store, ckpt, etl) = fixture();
        for i in 0..5 {
            let lines: String = (0..20)
                .map(|j| format!("{{\"user_id\":\"u{}\",\"event_type\":\"t{}\",\"timestamp\":\"2024-01-0{}T00:00:00Z\"}}\n", i * 7 + j, j % 3, 1 + j % 2))
                .collect();
            store.insert("dataflow-raw", &format!("f{i}.jsonl"), lines.into_bytes());
            etl.process_object(ObjectRef::new("dataflow-raw", format!("f{i}.jsonl")))
                .await
                .unwrap();
        }
        let reader = |s: Arc<MemoryStore>| {
            LakeReader::new(
                s,
                "dataflow-lake".into(),
                cfg.lake.layout.clone(),
                std::time::Duration::ZERO,
            )
        };
        let before = summary_of(&reader(store.clone())).await;
        assert_eq!(before.total_events, 100);
        let out = compact_all(
            store.as_ref(),
            ckpt.as_ref(),
            "dataflow-lake",
            &cfg.lake.layout,
        )
        .await
        .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|(_, o)| matches!(o, CompactionOutcome::Compacted { replaced: 5, .. })));
        let after = summary_of(&reader(store.clone())).await;
        assert_eq!(before, after);
        let aggs: Vec<String> = store
            .keys("dataflow-lake")
            .into_iter()
            .filter(|k| k.starts_with("aggregates/") && !k.contains("/_changes/"))
            .collect();
        let compacted = aggs.iter().filter(|k| k.contains("/compacted-")).count();
        let archived = aggs.iter().filter(|k| k.contains("/_sources/")).count();
        // One compacted file per date; the 10 partials move to the archive.
        assert_eq!((compacted, archived, aggs.len()), (2, 10, 12), "{aggs:?}");
        // Again: nothing to do; a new partial then a second compaction still gives exact totals.
        let again = compact_all(
            store.as_ref(),
            ckpt.as_ref(),
            "dataflow-lake",
            &cfg.lake.layout,
        )
        .await
        .unwrap();
        assert!(again.is_empty());
        store.insert(
            "dataflow-raw",
            "late.jsonl",
            b"{\"user_id\":\"new\",\"event_type\":\"t0\",\"timestamp\":\"2024-01-01T05:00:00Z\"}\n"
                .to_vec(),
        );
        etl.process_object(ObjectRef::new("dataflow-raw", "late.jsonl"))
            .await
            .unwrap();
        compact_all(
            store.as_ref(),
            ckpt.as_ref(),
            "dataflow-lake",
            &cfg.lake.layout,
        )
        .await
        .unwrap();
        let last = summary_of(&reader(store.clone())).await;
        assert_eq!(last.total_events, 101);
        assert_eq!(last.unique_users, before.unique_users + 1);
    }

    #[tokio::test]
    async fn a_compaction_stopped_before_its_clean_up_counts_once_and_is_finished() {
        let (cfg, store, ckpt, etl) = fixture();
        for i in 0..3 {
            let line = format!(
                "{{\"user_id\":\"u{i}\",\"event_type\":\"t\",\"timestamp\":\"2024-01-01T00:00:00Z\"}}\n"
            );
            store.insert("dataflow-raw", &format!("f{i}.jsonl"), line.into_bytes());
            etl.process_object(ObjectRef::new("dataflow-raw", format!("f{i}.jsonl")))
                .await
                .unwrap();
        }
        let partials: Vec<(String, Vec<u8>)> = {
            let mut v = Vec::new();
            for k in store.keys("dataflow-lake") {
                if k.starts_with("aggregates/") {
                    v.push((
                        k.clone(),
                        store.get("dataflow-lake", &k).await.unwrap().unwrap(),
                    ));
                }
            }
            v
        };
        compact_all(
            store.as_ref(),
            ckpt.as_ref(),
            "dataflow-lake",
            &cfg.lake.layout,
        )
        .await
        .unwrap();
        // As if the compaction died after writing its file, before moving the partials.
        for (k, bytes) in &partials {
            store.insert("dataflow-lake", k, bytes.clone());
        }
        let reader = LakeReader::new(
            store.clone(),
            "dataflow-lake".into(),
            cfg.lake.layout.clone(),
            std::time::Duration::ZERO,
        );
        let s = summary_of(&reader).await;
        assert_eq!((s.total_events, s.unique_users), (3, 3));
        let again = compact_all(
            store.as_ref(),
            ckpt.as_ref(),
            "dataflow-lake",
            &cfg.lake.layout,
        )
        .await
        .unwrap();
        assert!(again.is_empty(), "{again:?}");
        let in_partition = store
            .keys("dataflow-lake")
            .into_iter()
            .filter(|k| k.starts_with(&cfg.lake.layout.partitions_prefix()))
            .count();
        assert_eq!(in_partition, 1, "the partials moved to the archive");
        let s = summary_of(&reader).await;
        assert_eq!((s.total_events, s.unique_users), (3, 3));
    }
}
