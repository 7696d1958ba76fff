//! Compaction: merge one date's aggregate files into a single object so read cost does not grow
//! with the number of ingested files. Safe against concurrent ETL runs and repeatable:
//! - one compaction per date at a time (a lease lock in the checkpoint store);
//! - the compacted file lists every file it replaces in its Parquet metadata, and readers skip
//!   those ([`crate::analytics::effective_files`]), so between the write and the deletes readers
//!   count each partial once; partials written meanwhile are not covered and still count;
//! - its name derives from what it covers, so a re-run rewrites the same object;
//! - the partials it covers stay (readers skip them unread): they are the source of truth, so
//!   when a key's newer version replaces an older one, [`remove_outputs`] deletes the older
//!   partials and every compacted file that covers them, and the date is compacted again later
//!   from what remains.

use sha2::{Digest, Sha256};

use crate::analytics::{effective_files, name_of, AggregateFile, LakeError};
use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::parquet::{encode_aggregate_file, AggregateRow, ParquetError};
use crate::sketch::SketchMerger;
use crate::source::Layout;
use crate::storage::{Body, ObjectStore, StoreError};

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
    /// Wrote `key`, replacing `replaced` files (deleted afterwards).
    Compacted { key: String, replaced: usize },
    /// Already a single file.
    NothingToDo,
    /// Another compaction of this date holds the lock.
    Locked,
}

/// Compacts every date whose aggregate files changed since its last compaction. Partials stay
/// after they are compacted, so a listing alone decides which dates to look at: those with
/// several files and no compacted file, or with a partial written after (or up to one lock
/// lease before) the newest compacted file. The locked step decides exactly. Returns the dates
/// compacted (or found locked).
pub async fn compact_all(
    store: &dyn ObjectStore,
    checkpoints: &dyn CheckpointStore,
    bucket: &str,
    layout: &Layout,
) -> Result<Vec<(String, CompactionOutcome)>, CompactionError> {
    #[derive(Default)]
    struct DateFiles {
        files: usize,
        newest_compacted: Option<i64>,
        newest_partial: Option<i64>,
    }
    let listed = store.list(bucket, &layout.aggregates_prefix).await?;
    let mut per_date: std::collections::BTreeMap<String, DateFiles> = Default::default();
    for m in &listed {
        let Some(d) = layout.date_of_aggregate_key(&m.key) else {
            continue;
        };
        let e = per_date.entry(d.to_owned()).or_default();
        e.files += 1;
        // Unknown times count as new: look rather than miss.
        let t = m.last_modified_ms.unwrap_or(i64::MAX);
        if name_of(&m.key).starts_with(COMPACTED) {
            e.newest_compacted = e.newest_compacted.max(Some(t));
        } else {
            e.newest_partial = e.newest_partial.max(Some(t));
        }
    }
    let mut out = Vec::new();
    for (date, f) in per_date {
        let look = f.files > 1
            && match (f.newest_compacted, f.newest_partial) {
                (Some(c), Some(p)) => p >= c.saturating_sub(LOCK_MS),
                (None, _) => true,
                (Some(_), None) => true,
            };
        if look {
            let r = compact_date(store, checkpoints, bucket, layout, &date).await?;
            if r != CompactionOutcome::NothingToDo {
                out.push((date, r));
            }
        }
    }
    Ok(out)
}

/// How long a compaction may hold a date's lock.
const LOCK_MS: i64 = 300_000;

pub async fn compact_date(
    store: &dyn ObjectStore,
    checkpoints: &dyn CheckpointStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
) -> Result<CompactionOutcome, CompactionError> {
    let now = crate::time::now_ms();
    let Some(lock) = checkpoints
        .acquire_lock(&format!("compaction#{date}"), now, LOCK_MS)
        .await?
    else {
        return Ok(CompactionOutcome::Locked);
    };
    let result = compact_locked(store, bucket, layout, date).await;
    checkpoints.release_lock(&lock).await?;
    result
}

async fn compact_locked(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
) -> Result<CompactionOutcome, CompactionError> {
    let prefix = format!("{}event_date={date}/", layout.aggregates_prefix);
    let mut files = Vec::new();
    for meta in store.list(bucket, &prefix).await? {
        if !meta.key.ends_with(".parquet") {
            continue;
        }
        if let Some(bytes) = store.get(bucket, &meta.key).await? {
            if let Some(f) = AggregateFile::decode(layout, &meta.key, &bytes)? {
                files.push(f);
            }
        }
    }
    let refs: Vec<&AggregateFile> = files.iter().collect();
    let effective = effective_files(&refs);
    if effective.len() <= 1 {
        // Leftovers of a compaction that stopped before its deletes: finish them.
        delete_replaced_compactions(store, bucket, &files, &effective).await?;
        return Ok(CompactionOutcome::NothingToDo);
    }
    let mut covers: Vec<String> = effective
        .iter()
        .flat_map(|f| {
            f.covers
                .iter()
                .cloned()
                .chain(std::iter::once(f.name.clone()))
        })
        .collect();
    covers.sort();
    covers.dedup();
    let mut merged: std::collections::BTreeMap<String, (u64, SketchMerger, i64, i64)> =
        Default::default();
    for f in &effective {
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
    let name = format!("compacted-{}", hex::encode(&digest[..12]));
    let key = format!("{prefix}{name}.parquet");
    let bytes = encode_aggregate_file(&rows, &covers)?;
    store
        .put(
            bucket,
            &key,
            Body::Bytes(bytes),
            "application/vnd.apache.parquet",
        )
        .await?;
    let replaced = covers.len();
    let kept: Vec<&AggregateFile> = files.iter().filter(|f| f.key == key).collect();
    delete_replaced_compactions(store, bucket, &files, &kept).await?;
    tracing::info!(date, key = %key, replaced, rows = rows.len(), "compacted");
    Ok(CompactionOutcome::Compacted { key, replaced })
}

/// Deletes compacted files that the effective compacted file covers (earlier compactions of the
/// date). Covered partials stay.
async fn delete_replaced_compactions(
    store: &dyn ObjectStore,
    bucket: &str,
    files: &[AggregateFile],
    effective: &[&AggregateFile],
) -> Result<(), CompactionError> {
    let Some(best) = effective.iter().find(|f| !f.covers.is_empty()) else {
        return Ok(());
    };
    for f in files {
        if f.name.starts_with(COMPACTED) && f.name != best.name && best.covers.contains(&f.name) {
            store.delete(bucket, &f.key).await?;
        }
    }
    Ok(())
}

const COMPACTED: &str = "compacted-";

/// Removes a replaced version's outputs from the lake: its curated events and rejected report,
/// its aggregate partials, and every compacted file of those dates that covers one of them (the
/// date is compacted again later). Under each date's compaction lock, so no compaction can fold
/// a removed partial back in. Repeatable: what is already gone is skipped.
pub async fn remove_outputs(
    store: &dyn ObjectStore,
    checkpoints: &dyn CheckpointStore,
    bucket: &str,
    layout: &Layout,
    outputs: &[String],
) -> Result<(), CompactionError> {
    let mut by_date: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for key in outputs {
        match layout.date_of_aggregate_key(key) {
            Some(date) => by_date.entry(date).or_default().push(key),
            None => store.delete(bucket, key).await?,
        }
    }
    for (date, keys) in by_date {
        let Some(lock) = checkpoints
            .acquire_lock(
                &format!("compaction#{date}"),
                crate::time::now_ms(),
                LOCK_MS,
            )
            .await?
        else {
            return Err(CompactionError::Busy(date.to_owned()));
        };
        let result = async {
            let names: Vec<&str> = keys.iter().map(|k| name_of(k)).collect();
            for key in &keys {
                store.delete(bucket, key).await?;
            }
            let prefix = format!("{}event_date={date}/", layout.aggregates_prefix);
            for meta in store.list(bucket, &prefix).await? {
                if !name_of(&meta.key).starts_with(COMPACTED) {
                    continue;
                }
                let Some(bytes) = store.get(bucket, &meta.key).await? else {
                    continue;
                };
                let Some(f) = AggregateFile::decode(layout, &meta.key, &bytes)? else {
                    continue;
                };
                if f.covers.iter().any(|c| names.contains(&c.as_str())) {
                    store.delete(bucket, &meta.key).await?;
                }
            }
            Ok::<_, CompactionError>(())
        }
        .await;
        checkpoints.release_lock(&lock).await?;
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::analytics::{Filter, LakeReader};
    use crate::checkpoint::MemoryCheckpoints;
    use crate::config::Config;
    use crate::etl::Etl;
    use crate::source::ObjectRef;
    use crate::storage::MemoryStore;

    #[tokio::test]
    async fn compaction_keeps_answers_identical() {
        let cfg = Config::from_lookup(|_| None).unwrap();
        let store = Arc::new(MemoryStore::default());
        let ckpt = Arc::new(MemoryCheckpoints::default());
        let etl = Etl::new(store.clone(), ckpt.clone(), &cfg);
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
                cfg.layout.clone(),
                std::time::Duration::ZERO,
            )
        };
        let before = reader(store.clone())
            .snapshot()
            .await
            .unwrap()
            .0
            .summary(&Filter::default());
        assert_eq!(before.total_events, 100);
        let out = compact_all(store.as_ref(), ckpt.as_ref(), "dataflow-lake", &cfg.layout)
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|(_, o)| matches!(o, CompactionOutcome::Compacted { replaced: 5, .. })));
        let after = reader(store.clone())
            .snapshot()
            .await
            .unwrap()
            .0
            .summary(&Filter::default());
        assert_eq!(before, after);
        let aggs: Vec<String> = store
            .keys("dataflow-lake")
            .into_iter()
            .filter(|k| k.starts_with("aggregates/"))
            .collect();
        let compacted = aggs.iter().filter(|k| k.contains("/compacted-")).count();
        // One compacted file per date; the 10 partials stay as the source of truth.
        assert_eq!((compacted, aggs.len()), (2, 12), "{aggs:?}");
        // Again: nothing to do; a new partial then a second compaction still gives exact totals.
        let again = compact_all(store.as_ref(), ckpt.as_ref(), "dataflow-lake", &cfg.layout)
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
        compact_all(store.as_ref(), ckpt.as_ref(), "dataflow-lake", &cfg.layout)
            .await
            .unwrap();
        let last = reader(store.clone())
            .snapshot()
            .await
            .unwrap()
            .0
            .summary(&Filter::default());
        assert_eq!(last.total_events, 101);
        assert_eq!(last.unique_users, before.unique_users + 1);
    }
}
