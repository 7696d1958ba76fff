//! Writing the rollups: rebuilt months, the years' per-type objects, the catalog, pruning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::wire::{encode, file_id, DaysWire, HeadWire, TypeWire, YearMonth, YearWire};
use super::*;
use crate::event::format_date;
use crate::lake::layout::Layout;
use crate::lake::{effective_files, AggregateFile, LakeError};
use dataflow_store::{Body, ObjectStore};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupReport {
    pub years_rebuilt: usize,
    pub months_rebuilt: usize,
    pub months_unchanged: usize,
    pub months_dropped: usize,
    pub objects_written: usize,
    pub objects_pruned: usize,
}

/// How long a superseded rollup version stays readable: readers holding the previous catalog
/// finish with it (and a reader that finds a version gone builds the month from its daily files).
pub const PRUNE_GRACE_MS: i64 = 15 * 60_000;

/// Brings the rollups up to date with the daily files: months whose files changed are rebuilt
/// under a new prefix, then the catalog is written (one PUT, so readers see the old or the new
/// catalog, each complete), then versions no catalog has named for `prune_grace_ms` are deleted.
/// Safe to run concurrently and again at any point: a run that loses the race for the catalog
/// leaves a month to be read from its daily files until the next run.
pub async fn refresh(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    now_ms: i64,
    prune_grace_ms: i64,
) -> Result<RollupReport, LakeError> {
    let listed = by_month(
        layout,
        store.list(bucket, &layout.partitions_prefix()).await?,
    );
    let old = read_catalog(store.as_ref(), bucket, layout)
        .await?
        .unwrap_or_default();
    let mut report = RollupReport::default();
    let mut catalog = Catalog {
        format: FORMAT,
        written_ms: now_ms,
        months: BTreeMap::new(),
        years: BTreeMap::new(),
    };
    // Month label -> type -> serialized month sketch, for the months rebuilt now.
    let mut fresh: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (month, metas) in &listed {
        let label = month_label(*month);
        let current = |e: &&CatalogMonth| e.objects >= MONTH_OBJECTS && e.matches(metas, layout);
        if let Some(entry) = old.months.get(&label).filter(current) {
            catalog.months.insert(label, entry.clone());
            report.months_unchanged += 1;
            continue;
        }
        let (build, files) =
            build_month(store, bucket, layout, *month, metas, &HashMap::new()).await?;
        let counted: BTreeSet<&str> = {
            let all: Vec<&AggregateFile> = files.iter().map(|(_, f)| f.as_ref()).collect();
            let mut per_date: BTreeMap<i32, Vec<&AggregateFile>> = BTreeMap::new();
            for f in all {
                per_date.entry(f.date).or_default().push(f);
            }
            per_date
                .values()
                .flat_map(|fs| effective_files(fs))
                .map(|f| f.key.as_str())
                .collect()
        };
        let mut entry_files = BTreeMap::new();
        let mut covered = BTreeSet::new();
        for (meta, f) in &files {
            let (Some(id), Some(etag)) = (file_id(layout, &meta.key), meta.etag.clone()) else {
                continue;
            };
            if counted.contains(meta.key.as_str()) {
                entry_files.insert(id, etag);
                let date = format_date(f.date);
                covered.extend(f.covers.iter().map(|c| format!("{date}/{c}")));
            } else {
                covered.insert(id);
            }
        }
        let prefix = format!(
            "{}month={label}/{now_ms}-{}/",
            layout.rollup_prefix(),
            uuid::Uuid::new_v4().simple()
        );
        let days = DaysWire {
            cells: build.days.cells.clone(),
            day_users: build.days.day_users.iter().map(|s| s.to_bytes()).collect(),
        };
        let mut puts: Vec<(String, Vec<u8>)> = vec![(days_key(&prefix), encode(&days)?)];
        let edges = encode_edges(&build.days.day_users).map(|(bytes, parts)| {
            puts.push((edges_key(&prefix), bytes));
            parts
        });
        let sketches = fresh.entry(label.clone()).or_default();
        for (i, t) in build.types.iter().enumerate() {
            let wire = TypeWire {
                users: t.users.to_bytes(),
                days: t.days.clone(),
            };
            puts.push((type_key(&prefix, i), encode(&wire)?));
            sketches.insert(build.head.types[i].clone(), wire.users);
        }
        report.objects_written += puts.len();
        put_all(store, bucket, puts).await?;
        catalog.months.insert(
            label,
            CatalogMonth {
                prefix,
                files: entry_files,
                covered,
                head: HeadWire::of(&build.head),
                edges,
                objects: MONTH_OBJECTS,
            },
        );
        report.months_rebuilt += 1;
    }
    report.months_dropped = old
        .months
        .keys()
        .filter(|k| !catalog.months.contains_key(*k))
        .count();
    let years_before = old.years.len();
    write_years(
        store,
        bucket,
        layout,
        &old,
        &mut catalog,
        fresh,
        now_ms,
        &mut report,
    )
    .await?;
    if report.months_rebuilt > 0
        || report.months_dropped > 0
        || old.format != FORMAT
        || report.years_rebuilt > 0
        || catalog.years.len() != years_before
    {
        store
            .put(
                bucket,
                &catalog_key(layout),
                Body::Bytes(encode(&catalog)?),
                JSON,
            )
            .await?;
        report.objects_written += 1;
    }
    report.objects_pruned = prune(store, bucket, layout, &catalog, now_ms, prune_grace_ms).await?;
    tracing::info!(
        months_rebuilt = report.months_rebuilt,
        months_unchanged = report.months_unchanged,
        months_dropped = report.months_dropped,
        objects_written = report.objects_written,
        objects_pruned = report.objects_pruned,
        "rollups refreshed"
    );
    Ok(report)
}

/// Writes the per-type year objects of every year whose months changed (or that has none yet).
/// Sketches come from this run's builds, else from the previous year object when it was built
/// from the same month version, else from the month's own type object.
#[allow(clippy::too_many_arguments)]
async fn write_years(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    old: &Catalog,
    catalog: &mut Catalog,
    fresh: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    now_ms: i64,
    report: &mut RollupReport,
) -> Result<(), LakeError> {
    let mut by_year: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (label, m) in &catalog.months {
        let year = label.split('-').next().unwrap_or_default().to_owned();
        by_year
            .entry(year)
            .or_default()
            .insert(label.clone(), m.prefix.clone());
    }
    for (year, months) in by_year {
        if let Some(y) = old.years.get(&year).filter(|y| y.months == months) {
            catalog.years.insert(year, y.clone());
            continue;
        }
        let previous = old.years.get(&year);
        let mut types: BTreeSet<&str> = BTreeSet::new();
        for label in months.keys() {
            if let Some(m) = catalog.months.get(label) {
                types.extend(m.head.types.iter().map(String::as_str));
            }
        }
        let types: Vec<String> = types.into_iter().map(str::to_owned).collect();
        let prefix = format!(
            "{}year={year}/{now_ms}-{}/",
            layout.rollup_prefix(),
            uuid::Uuid::new_v4().simple()
        );
        let mut puts = Vec::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            // The previous object of this type, read only if a month needs it.
            let mut before: Option<BTreeMap<String, Vec<u8>>> = None;
            let mut wire = YearWire { months: Vec::new() };
            for (label, month_prefix) in &months {
                let Some(m) = catalog.months.get(label) else {
                    continue;
                };
                let Ok(ti) = m.head.types.binary_search(t) else {
                    continue;
                };
                let users = match fresh.get(label).and_then(|f| f.get(t)) {
                    Some(b) => Some(b.clone()),
                    None => {
                        if before.is_none() {
                            before = Some(
                                previous_year_type(store, bucket, previous, t)
                                    .await?
                                    .unwrap_or_default(),
                            );
                        }
                        let reuse =
                            previous.is_some_and(|p| p.months.get(label) == Some(month_prefix));
                        match before.as_ref().and_then(|b| b.get(label)).filter(|_| reuse) {
                            Some(b) => Some(b.clone()),
                            None => store
                                .get(bucket, &type_key(month_prefix, ti))
                                .await?
                                .and_then(|bytes| serde_json::from_slice::<TypeWire>(&bytes).ok())
                                .map(|w| w.users),
                        }
                    }
                };
                if let Some(users) = users {
                    wire.months.push(YearMonth {
                        month: label.clone(),
                        users,
                    });
                }
            }
            puts.push((year_key(&prefix, i), encode(&wire)?));
        }
        report.objects_written += puts.len();
        put_all(store, bucket, puts).await?;
        report.years_rebuilt += 1;
        catalog.years.insert(
            year,
            CatalogYear {
                prefix,
                types,
                months,
            },
        );
    }
    Ok(())
}

/// A type's month sketches from the previous version of its year object, by month label.
async fn previous_year_type(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    previous: Option<&CatalogYear>,
    t: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, LakeError> {
    let Some(p) = previous else {
        return Ok(None);
    };
    let Ok(i) = p.types.binary_search_by(|x| x.as_str().cmp(t)) else {
        return Ok(None);
    };
    let Some(bytes) = store.get(bucket, &year_key(&p.prefix, i)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<YearWire>(&bytes)
        .ok()
        .map(|w| w.months.into_iter().map(|m| (m.month, m.users)).collect()))
}

async fn put_all(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    puts: Vec<(String, Vec<u8>)>,
) -> Result<(), LakeError> {
    let mut set = tokio::task::JoinSet::new();
    let mut pending = puts.into_iter();
    loop {
        while set.len() < 16 {
            let Some((key, bytes)) = pending.next() else {
                break;
            };
            let (store, bucket) = (store.clone(), bucket.to_owned());
            let kind = match key.ends_with(".bin") {
                true => "application/octet-stream",
                false => JSON,
            };
            set.spawn(async move { store.put(&bucket, &key, Body::Bytes(bytes), kind).await });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        done.map_err(|e| LakeError::Internal(e.to_string()))??;
    }
    Ok(())
}

/// Deletes rollup versions the catalog does not name, once older than the grace period. The
/// version's time is in its prefix, so objects without a listing time are judged too.
async fn prune(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    layout: &Layout,
    catalog: &Catalog,
    now_ms: i64,
    grace_ms: i64,
) -> Result<usize, LakeError> {
    let live: BTreeSet<&str> = catalog
        .months
        .values()
        .map(|m| m.prefix.as_str())
        .chain(catalog.years.values().map(|y| y.prefix.as_str()))
        .collect();
    let mut listed = store
        .list(bucket, &format!("{}month=", layout.rollup_prefix()))
        .await?;
    listed.extend(
        store
            .list(bucket, &format!("{}year=", layout.rollup_prefix()))
            .await?,
    );
    let mut pruned = 0;
    for m in listed {
        // `<root><label>/<ms>-<id>/<file>`
        let Some((version, _)) = m.key.rsplit_once('/') else {
            continue;
        };
        let prefix = format!("{version}/");
        if live.contains(prefix.as_str()) {
            continue;
        }
        let written = version
            .rsplit('/')
            .next()
            .and_then(|v| v.split('-').next())
            .and_then(|ms| ms.parse::<i64>().ok());
        if written.is_some_and(|w| now_ms - w >= grace_ms) {
            store.delete(bucket, &m.key).await?;
            pruned += 1;
        }
    }
    Ok(pruned)
}
