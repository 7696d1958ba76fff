//! The daily aggregate files of a month: listed, fetched, decoded, built.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::*;
use crate::lake::layout::Layout;
use crate::lake::{name_of, AggregateFile, LakeError};
use dataflow_store::{ObjectMeta, ObjectStore};

pub fn by_month(layout: &Layout, listed: Vec<ObjectMeta>) -> BTreeMap<i32, Vec<ObjectMeta>> {
    let mut out: BTreeMap<i32, Vec<ObjectMeta>> = BTreeMap::new();
    for m in listed.into_iter().filter(|m| m.key.ends_with(".parquet")) {
        let Some(date) = layout
            .date_of_aggregate_key(&m.key)
            .and_then(crate::event::parse_date)
        else {
            continue;
        };
        out.entry(month_of(date)).or_default().push(m);
    }
    out
}

pub type FileCache = HashMap<String, (Option<String>, Arc<AggregateFile>)>;

/// Fetches and decodes the files of `listed` that count, reusing `known` (key -> ETag, file)
/// where the ETag is unchanged: compacted files first, so the partials they cover are never
/// fetched.
pub async fn fetch_files(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    listed: &[ObjectMeta],
    known: &FileCache,
) -> Result<Vec<(ObjectMeta, Arc<AggregateFile>)>, LakeError> {
    let mut out = Vec::new();
    let mut to_fetch = Vec::new();
    for m in listed {
        match known.get(&m.key) {
            Some((etag, f)) if etag.is_some() && *etag == m.etag => {
                out.push((m.clone(), f.clone()))
            }
            _ => to_fetch.push(m.clone()),
        }
    }
    let (compacted, partials): (Vec<_>, Vec<_>) = to_fetch
        .into_iter()
        .partition(|m| name_of(&m.key).starts_with("compacted-"));
    out.extend(fetch(store, bucket, layout, compacted).await?);
    let covered: BTreeSet<(i32, &str)> = out
        .iter()
        .flat_map(|(_, f)| f.covers.iter().map(|c| (f.date, c.as_str())))
        .collect();
    let partials: Vec<ObjectMeta> = partials
        .into_iter()
        .filter(|m| {
            let date = layout
                .date_of_aggregate_key(&m.key)
                .and_then(crate::event::parse_date);
            date.is_none_or(|d| !covered.contains(&(d, name_of(&m.key))))
        })
        .collect();
    let more = fetch(store, bucket, layout, partials).await?;
    out.extend(more);
    Ok(out)
}

/// Fetches and decodes aggregate files, 16 at a time.
async fn fetch(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    metas: Vec<ObjectMeta>,
) -> Result<Vec<(ObjectMeta, Arc<AggregateFile>)>, LakeError> {
    let mut out = Vec::with_capacity(metas.len());
    let mut set = tokio::task::JoinSet::new();
    let mut pending = metas.into_iter();
    loop {
        while set.len() < 16 {
            let Some(meta) = pending.next() else { break };
            let (store, bucket, layout) = (store.clone(), bucket.to_owned(), layout.clone());
            set.spawn(async move {
                let Some(bytes) = store.get(&bucket, &meta.key).await? else {
                    return Ok::<_, LakeError>(None);
                };
                let file = AggregateFile::decode(&layout, &meta.key, &bytes)?;
                Ok(file.map(|f| (meta, Arc::new(f))))
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        if let Some(found) = done.map_err(|e| LakeError::Internal(e.to_string()))?? {
            out.push(found);
        }
    }
    Ok(out)
}

/// Builds one month from its listed daily files.
pub async fn build_month(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    month: i32,
    listed: &[ObjectMeta],
    known: &FileCache,
) -> Result<(MonthBuild, Vec<(ObjectMeta, Arc<AggregateFile>)>), LakeError> {
    let files = fetch_files(store, bucket, layout, listed, known).await?;
    let refs: Vec<Arc<AggregateFile>> = files.iter().map(|(_, f)| f.clone()).collect();
    let build = tokio::task::spawn_blocking(move || {
        let refs: Vec<&AggregateFile> = refs.iter().map(|f| f.as_ref()).collect();
        MonthBuild::from_files(month, &refs)
    })
    .await
    .map_err(|e| LakeError::Internal(e.to_string()))?;
    Ok((build, files))
}
