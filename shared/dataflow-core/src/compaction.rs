//! Compaction: merge one date's aggregate files into a single object so read cost does not grow
//! with the number of ingested files. Safe against concurrent ETL runs and repeatable:
//! - one compaction per date at a time (a lease lock in the checkpoint store);
//! - the compacted file lists every file it replaces in its Parquet metadata, and readers skip
//!   those ([`crate::analytics::effective_files`]), so between the write and the deletes readers
//!   count each partial once; partials written meanwhile are not covered and still count;
//! - its name derives from what it covers, so a re-run rewrites the same object.

use sha2::{Digest, Sha256};

use crate::analytics::{effective_files, AggregateFile, LakeError};
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

/// Compacts every date that has more than one aggregate file.
pub async fn compact_all(
    store: &dyn ObjectStore,
    checkpoints: &dyn CheckpointStore,
    bucket: &str,
    layout: &Layout,
) -> Result<Vec<(String, CompactionOutcome)>, CompactionError> {
    let listed = store.list(bucket, &layout.aggregates_prefix).await?;
    let mut per_date: std::collections::BTreeMap<String, usize> = Default::default();
    for m in &listed {
        if let Some(d) = layout.date_of_aggregate_key(&m.key) {
            *per_date.entry(d.to_owned()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (date, n) in per_date {
        if n > 1 {
            let r = compact_date(store, checkpoints, bucket, layout, &date).await?;
            out.push((date, r));
        }
    }
    Ok(out)
}

pub async fn compact_date(
    store: &dyn ObjectStore,
    checkpoints: &dyn CheckpointStore,
    bucket: &str,
    layout: &Layout,
    date: &str,
) -> Result<CompactionOutcome, CompactionError> {
    let now = crate::etl::now_ms();
    let Some(lock) = checkpoints
        .acquire_lock(&format!("compaction#{date}"), now, 300_000)
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
        let garbage: Vec<&str> = files
            .iter()
            .filter(|f| !effective.iter().any(|e| e.name == f.name))
            .map(|f| f.key.as_str())
            .collect();
        for key in garbage {
            store.delete(bucket, key).await?;
        }
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
    let mut replaced = 0;
    for f in &files {
        if covers.contains(&f.name) {
            store.delete(bucket, &f.key).await?;
            replaced += 1;
        }
    }
    tracing::info!(date, key = %key, replaced, rows = rows.len(), "compacted");
    Ok(CompactionOutcome::Compacted { key, replaced })
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
        assert_eq!(aggs.len(), 2, "{aggs:?}");
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
