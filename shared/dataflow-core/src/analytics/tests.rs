//! The read model against builds of the daily files: exact answers, rollups, patches, caching.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::event::format_date;
use crate::event::parse_date;
use crate::lake::layout::Layout;
use crate::lake::parquet::AggregateRow;
use crate::lake::round;
use dataflow_sketch::{SketchMerger, UserSketch};
use dataflow_store::StoreError;
use dataflow_store::{ObjectMeta, ObjectStore};

fn file(
    name: &str,
    date: &str,
    rows: &[(&str, u64, std::ops::Range<u32>)],
    covers: &[&str],
) -> AggregateFile {
    AggregateFile {
        key: format!("aggregates/daily/event_date={date}/{name}.parquet"),
        date: parse_date(date).unwrap(),
        name: name.into(),
        rows: rows
            .iter()
            .map(|(t, n, users)| {
                let mut s = UserSketch::new();
                for u in users.clone() {
                    s.insert(&format!("u{u}"));
                }
                AggregateRow {
                    event_type: (*t).into(),
                    event_count: *n,
                    users: s,
                    min_time_us: 0,
                    max_time_us: 0,
                }
            })
            .collect(),
        generation: u64::from(!covers.is_empty()),
        covers: covers.iter().map(|s| s.to_string()).collect(),
    }
}

fn snapshot(files: &[AggregateFile]) -> View {
    View::from_files(&files.iter().collect::<Vec<_>>())
}

/// Answers of a view, synchronously (tests only).
trait Sync_ {
    fn sum(&self, f: &Filter) -> Summary;
    fn rows(
        &self,
        f: &Filter,
        limit: usize,
        after: Option<&(i32, String)>,
    ) -> (Vec<MetricRow>, Option<(i32, String)>);
}

impl Sync_ for View {
    fn sum(&self, f: &Filter) -> Summary {
        block_on(self.summary(f)).unwrap()
    }
    fn rows(
        &self,
        f: &Filter,
        limit: usize,
        after: Option<&(i32, String)>,
    ) -> (Vec<MetricRow>, Option<(i32, String)>) {
        block_on(self.metrics(f, limit, after)).unwrap()
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn merges_partials_and_answers_ranges() {
    let s = snapshot(&[
        file(
            "part-a",
            "2024-01-01",
            &[("click", 10, 0..5), ("view", 3, 0..3)],
            &[],
        ),
        file("part-b", "2024-01-01", &[("click", 5, 3..8)], &[]),
        file("part-c", "2024-01-03", &[("click", 7, 100..110)], &[]),
    ]);
    let all = s.sum(&Filter::default());
    assert_eq!(all.total_events, 25);
    assert_eq!(
        all.events_by_type,
        BTreeMap::from([("click".into(), 22), ("view".into(), 3)])
    );
    assert_eq!(all.unique_users, 18); // u0..u7 and u100..u109
    assert_eq!(all.unique_users_daily_sum, 18);
    assert_eq!(
        (all.start.as_deref(), all.end.as_deref()),
        (Some("2024-01-01"), Some("2024-01-03"))
    );
    let view = s.sum(&Filter {
        types: vec!["view".into()],
        ..Default::default()
    });
    assert_eq!((view.total_events, view.unique_users), (3, 3));
    let (rows, next) = s.rows(&Filter::default(), 2, None);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0].event_type.as_str(),
            rows[0].event_count,
            rows[0].unique_users
        ),
        ("click", 15, 8)
    );
    let (rest, none) = s.rows(&Filter::default(), 10, next.as_ref());
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event_date, "2024-01-03");
    assert!(none.is_none());
    let jan3 = Filter {
        from: parse_date("2024-01-02"),
        to: parse_date("2024-01-03"),
        types: vec![],
    };
    assert_eq!(s.sum(&jan3).unique_users, 10);
}

#[test]
fn tree_ranges_match_direct_merges() {
    let files: Vec<AggregateFile> = (0..37)
        .map(|d| {
            let date = format_date(parse_date("2024-02-01").unwrap() + d);
            file(
                &format!("part-{d}"),
                &date,
                &[("t", 1, (d as u32 * 7)..(d as u32 * 7 + 20))],
                &[],
            )
        })
        .collect();
    let s = snapshot(&files);
    let base = parse_date("2024-02-01").unwrap();
    for (a, b) in [(0, 36), (3, 4), (5, 30), (17, 17), (0, 1)] {
        let f = Filter {
            from: Some(base + a),
            to: Some(base + b),
            types: vec![],
        };
        let via_tree = s.sum(&f).unique_users;
        let direct = s
            .sum(&Filter {
                types: vec!["t".into()],
                ..f
            })
            .unique_users;
        assert_eq!(via_tree, direct, "range {a}..={b}");
        assert_eq!(via_tree, (b as u64 - a as u64) * 7 + 20);
    }
}

#[test]
fn compacted_files_replace_what_they_cover() {
    let parts = [
        file("part-a", "2024-01-01", &[("click", 10, 0..5)], &[]),
        file("part-b", "2024-01-01", &[("click", 5, 3..8)], &[]),
    ];
    let compacted = file(
        "compacted-1",
        "2024-01-01",
        &[("click", 15, 0..8)],
        &["part-a", "part-b"],
    );
    let late = file("part-c", "2024-01-01", &[("click", 1, 50..51)], &[]);
    // Before the covered partials are deleted, and after: the same answer.
    let during = snapshot(&[
        parts[0].clone(),
        parts[1].clone(),
        compacted.clone(),
        late.clone(),
    ]);
    let after = snapshot(&[compacted.clone(), late.clone()]);
    for s in [&during, &after] {
        let sum = s.sum(&Filter::default());
        assert_eq!((sum.total_events, sum.unique_users), (16, 9));
    }
    // A second compaction covers the first one and the late partial.
    let second = file(
        "compacted-2",
        "2024-01-01",
        &[("click", 16, 0..8)],
        &["part-a", "part-b", "compacted-1", "part-c"],
    );
    let s = snapshot(&[compacted, late, second]);
    assert_eq!(s.sum(&Filter::default()).total_events, 16);
}

/// A year of data plus one event at year 1000 and one at 9999: the read model grows by two
/// days, not by the ~3.3 million days between them.
#[test]
fn memory_and_build_time_follow_the_data_not_the_date_span() {
    let base = parse_date("2024-01-01").unwrap();
    let year: Vec<AggregateFile> = (0..365)
        .map(|d| {
            file(
                &format!("part-{d}"),
                &format_date(base + d),
                &[("click", 5, 0..50), ("view", 2, 25..60)],
                &[],
            )
        })
        .collect();
    let mut hostile = year.clone();
    hostile.push(file("part-old", "1000-01-01", &[("x", 1, 0..1)], &[]));
    hostile.push(file("part-far", "9999-12-31", &[("x", 1, 0..1)], &[]));
    let timed = |files: &[AggregateFile]| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let s = snapshot(files);
                (t.elapsed(), s)
            })
            .min_by_key(|(t, _)| *t)
            .unwrap()
    };
    let (t_year, s_year) = timed(&year);
    let (t_hostile, s_hostile) = timed(&hostile);
    let (m_year, m_hostile) = (s_year.heap_bytes(), s_hostile.heap_bytes());
    assert!(
        m_hostile < m_year + m_year / 10,
        "read model {m_hostile} bytes with the extreme days vs {m_year} without"
    );
    assert!(
        t_hostile < t_year * 3 + Duration::from_millis(20),
        "build {t_hostile:?} with the extreme days vs {t_year:?} without"
    );
    let all = s_hostile.sum(&Filter::default());
    assert_eq!(all.total_events, 365 * 7 + 2);
    assert_eq!(
        (all.start.as_deref(), all.end.as_deref()),
        (Some("1000-01-01"), Some("9999-12-31"))
    );
    // Ranges between and around the data days still answer exactly.
    let f = |a: &str, b: &str| Filter {
        from: parse_date(a),
        to: parse_date(b),
        types: vec![],
    };
    let mid = s_hostile.sum(&f("2024-02-01", "2024-02-10"));
    assert_eq!((mid.total_events, mid.unique_users), (70, 60));
    assert_eq!(
        s_hostile.sum(&f("2030-01-01", "2030-12-31")).total_events,
        0
    );
    assert_eq!(
        s_hostile.sum(&f("9000-01-01", "9999-12-31")).total_events,
        1
    );
    assert_eq!(
        s_hostile.sum(&f("0999-01-01", "1999-01-01")).unique_users,
        1
    );
}

/// Filtered distinct users from whole-month sketches plus edge days equal a merge of every
/// day's cell, for ranges that start and end anywhere in a month.
#[test]
fn filtered_ranges_from_month_sketches_match_direct_merges() {
    let base = parse_date("2024-01-15").unwrap();
    let files: Vec<AggregateFile> = (0..140)
        .map(|d| {
            let u = d as u32 * 11;
            file(
                &format!("part-{d}"),
                &format_date(base + d),
                &[("t", 1, u..u + 30), ("u", 2, u + 5..u + 9)],
                &[],
            )
        })
        .collect();
    let s = snapshot(&files);
    for (a, b) in [
        (0, 139),
        (3, 17),
        (16, 47),
        (17, 46),
        (0, 0),
        (45, 120),
        (77, 78),
    ] {
        for types in [vec!["t"], vec!["u"], vec!["t", "u"]] {
            let f = Filter {
                from: Some(base + a),
                to: Some(base + b),
                types: types.iter().map(|t| t.to_string()).collect(),
            };
            let mut direct = SketchMerger::default();
            for file in &files {
                if file.date < base + a || file.date > base + b {
                    continue;
                }
                for row in file
                    .rows
                    .iter()
                    .filter(|r| types.contains(&r.event_type.as_str()))
                {
                    direct.add(&row.users);
                }
            }
            assert_eq!(
                s.sum(&f).unique_users,
                round(direct.estimate()),
                "days {a}..={b} {types:?}"
            );
        }
    }
}

/// Writes `f` into a store as a daily aggregate file.
fn put_file(store: &dataflow_store::MemoryStore, f: &AggregateFile) {
    let bytes =
        crate::lake::parquet::encode_aggregate_file(&f.rows, &f.covers, f.generation).unwrap();
    store.insert("lake", &f.key, bytes);
}

/// Four months, three types, a date with two partials, a date compacted with its covered
/// partials still listed, and a type that appears in one month only.
fn lake_files() -> Vec<AggregateFile> {
    let base = parse_date("2024-01-20").unwrap();
    let mut files = Vec::new();
    for d in 0..100 {
        let date = format_date(base + d);
        let u = d as u32 * 13;
        let mut rows = vec![
            ("click", 10 + d as u64, u..u + 40),
            ("view", 3, u + 20..u + 30),
        ];
        if (30..40).contains(&d) {
            rows.push(("buy", 1, u..u + 2));
        }
        files.push(file(&format!("part-a{d}"), &date, &rows, &[]));
        if d % 9 == 0 {
            files.push(file(
                &format!("part-b{d}"),
                &date,
                &[("click", 2, 5000..5010)],
                &[],
            ));
        }
    }
    let date = format_date(base + 50);
    let covered = [
        file("part-x", &date, &[("view", 4, 0..9)], &[]),
        file("part-y", &date, &[("view", 6, 5..20)], &[]),
    ];
    files.push(file(
        "compacted-7",
        &date,
        &[("view", 10, 0..20)],
        &["part-x", "part-y"],
    ));
    files.extend(covered);
    files
}

/// The same questions to two views: summaries over many ranges and filters, and every
/// metrics page.
async fn answers(v: &View) -> Vec<String> {
    let base = parse_date("2024-01-20").unwrap();
    let mut out = Vec::new();
    let ranges = [
        (None, None),
        (Some(0), Some(99)),
        (Some(5), Some(17)),
        (Some(11), Some(12)),
        (Some(12), Some(70)),
        (Some(40), None),
        (None, Some(41)),
        (Some(-50), Some(500)),
    ];
    for (a, b) in ranges {
        for types in [vec![], vec!["click"], vec!["buy"], vec!["view", "buy"]] {
            let f = Filter {
                from: a.map(|a| base + a),
                to: b.map(|b| base + b),
                types: types.iter().map(|t| t.to_string()).collect(),
            };
            out.push(format!("{f:?} {:?}", v.summary(&f).await.unwrap()));
            let split = ["click".to_owned(), "view".to_owned()];
            out.push(format!("{f:?} {:?}", v.daily(&f, &split).await.unwrap()));
            let mut after = None;
            loop {
                let (rows, next) = v.metrics(&f, 37, after.as_ref()).await.unwrap();
                out.push(format!("{f:?} {after:?} {rows:?}"));
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
    }
    out
}

/// [`lake_files`] in a store, typed twice: for inspection and as the reader's port.
fn stored_lake() -> (
    Arc<dataflow_store::MemoryStore>,
    Arc<dyn ObjectStore>,
    Vec<AggregateFile>,
) {
    let store = Arc::new(dataflow_store::MemoryStore::default());
    let files = lake_files();
    for f in &files {
        put_file(&store, f);
    }
    (store.clone(), store, files)
}

fn reader(store: &Arc<dataflow_store::MemoryStore>) -> LakeReader {
    LakeReader::new(
        store.clone(),
        "lake".into(),
        Layout::default(),
        Duration::ZERO,
    )
}

#[tokio::test]
async fn rollups_answer_like_the_daily_files_before_during_and_after() {
    let (store, dyn_store, mut files) = stored_lake();
    let expected = answers(&snapshot(&files)).await;
    let layout = Layout::default();

    // Before any rollup: every month from its daily files.
    let before = reader(&store);
    let (v, g1) = before.snapshot().await.unwrap();
    assert_eq!(v.months_from_daily_files(), 4);
    assert_eq!(answers(&v).await, expected);

    let r = crate::rollup::refresh(&dyn_store, "lake", &layout, 1_000, 0)
        .await
        .unwrap();
    assert_eq!((r.months_rebuilt, r.months_unchanged), (4, 0));
    // The reader that saw the files switches to the rollups: a new generation, same answers.
    let (v, g2) = before.snapshot().await.unwrap();
    assert_eq!(v.months_from_daily_files(), 0);
    assert!(g2 > g1);
    assert_eq!(answers(&v).await, expected);
    // A cold reader reads the rollups alone.
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(v.months_from_daily_files(), 0);
    assert_eq!(answers(&v).await, expected);

    // Nothing changed: a second run writes nothing.
    let again = crate::rollup::refresh(&dyn_store, "lake", &layout, 2_000, 0)
        .await
        .unwrap();
    assert_eq!((again.months_rebuilt, again.objects_written), (0, 0));

    // A catalog from before `edges.bin` (its months without `objects`): served as it is,
    // and the next run writes every month again.
    let key = crate::rollup::catalog_key(&layout);
    let mut old: serde_json::Value =
        serde_json::from_slice(&store.get("lake", &key).await.unwrap().unwrap()).unwrap();
    for m in old["months"].as_object_mut().unwrap().values_mut() {
        m.as_object_mut().unwrap().remove("objects");
    }
    store.insert("lake", &key, serde_json::to_vec(&old).unwrap());
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(v.months_from_daily_files(), 0);
    assert_eq!(answers(&v).await, expected);
    let upgraded = crate::rollup::refresh(&dyn_store, "lake", &layout, 2_500, 0)
        .await
        .unwrap();
    assert_eq!((upgraded.months_rebuilt, upgraded.months_unchanged), (4, 0));
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(answers(&v).await, expected);

    // A late partial: its date (only) is built from the daily files until the next run.
    let late = file(
        "part-late",
        "2024-02-03",
        &[("click", 5, 9000..9100), ("new", 1, 1..2)],
        &[],
    );
    put_file(&store, &late);
    files.push(late);
    let expected = answers(&snapshot(&files)).await;
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!((v.months_from_daily_files(), v.months_patched()), (0, 1));
    assert!(v.event_types().contains("new"));
    assert_eq!(answers(&v).await, expected);
    let r = crate::rollup::refresh(&dyn_store, "lake", &layout, 3_000, 0)
        .await
        .unwrap();
    assert_eq!((r.months_rebuilt, r.months_unchanged), (1, 3));
    // The superseded version of February is pruned (grace 0); three months kept theirs.
    let versions: BTreeSet<String> = store
        .keys("lake")
        .into_iter()
        .filter(|k| k.contains("/_rollup/month="))
        .filter_map(|k| k.rsplit_once('/').map(|(v, _)| v.to_owned()))
        .collect();
    assert_eq!(versions.len(), 4, "{versions:?}");
    // February's old version (days.json and its click, view and buy objects) and 2024's old
    // year objects (buy, click, view). Its days are too small for edge tables.
    assert_eq!(r.objects_pruned, 4 + 3);
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(v.months_from_daily_files(), 0);
    assert_eq!(answers(&v).await, expected);

    // Compaction archiving covered partials keeps the rollup current.
    store
        .delete("lake", &files[files.len() - 2].key)
        .await
        .unwrap();
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(v.months_from_daily_files(), 0);

    // A rollup object gone (or garbage) mid-flight: the month is read from its daily files.
    let march: Vec<String> = store
        .keys("lake")
        .into_iter()
        .filter(|k| k.contains("month=2024-03/"))
        .collect();
    for k in &march {
        if k.ends_with("days.json") {
            store.delete("lake", k).await.unwrap();
        } else {
            store.insert("lake", k, b"garbage".to_vec());
        }
    }
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(answers(&v).await, expected);
}

/// Changes after a rollup — a partial removed, a date compacted, a date emptied, a late
/// partial — patch the dates they touch; answers equal a build of the files at every step.
#[tokio::test]
async fn changed_dates_patch_the_rollup() {
    let (store, dyn_store, mut files) = stored_lake();
    crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
        .await
        .unwrap();
    let remove = |files: &mut Vec<AggregateFile>, name: &str, date: &str| {
        let i = files
            .iter()
            .position(|f| f.name == name && format_date(f.date) == date)
            .unwrap();
        files.remove(i).key
    };
    let check = |files: Vec<AggregateFile>, patched: usize| {
        let store = store.clone();
        async move {
            let (v, _) = reader(&store).snapshot().await.unwrap();
            assert_eq!(
                (v.months_from_daily_files(), v.months_patched()),
                (0, patched)
            );
            assert_eq!(answers(&v).await, answers(&snapshot(&files)).await);
        }
    };
    // A partial removed (reprocessing took its object's outputs away).
    let key = remove(&mut files, "part-b9", "2024-01-29");
    store.delete("lake", &key).await.unwrap();
    check(files.clone(), 1).await;
    // A date compacted after the rollup: the compacted file in, its partials archived.
    let date = "2024-01-20";
    let compacted = file(
        "compacted-9",
        date,
        &[("click", 12, 0..40), ("view", 3, 20..30)],
        &["part-a0", "part-b0"],
    );
    for name in ["part-a0", "part-b0"] {
        let key = remove(&mut files, name, date);
        store.delete("lake", &key).await.unwrap();
    }
    put_file(&store, &compacted);
    files.push(compacted);
    check(files.clone(), 1).await;
    // Every file of a date gone, in another month.
    let key = remove(&mut files, "part-a21", "2024-02-10");
    store.delete("lake", &key).await.unwrap();
    check(files.clone(), 2).await;
    // A late partial with a type the month did not have, on a date the rollup holds.
    let late = file("part-late", "2024-03-02", &[("zzz", 4, 1..5)], &[]);
    put_file(&store, &late);
    files.push(late);
    check(files.clone(), 3).await;
    // The rollup's days of a patched month gone: that month is built from its files.
    let days: Vec<String> = store
        .keys("lake")
        .into_iter()
        .filter(|k| k.contains("month=2024-03/") && k.ends_with("days.json"))
        .collect();
    store.delete("lake", &days[0]).await.unwrap();
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!((v.months_from_daily_files(), v.months_patched()), (1, 2));
    assert_eq!(answers(&v).await, answers(&snapshot(&files)).await);
    // The next run folds every change in.
    let r = crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 2_000, 0)
        .await
        .unwrap();
    assert_eq!((r.months_rebuilt, r.months_unchanged), (3, 1));
    check(files, 0).await;
}

#[tokio::test]
async fn months_removed_from_the_lake_leave_the_catalog() {
    let (store, dyn_store, files) = stored_lake();
    let layout = Layout::default();
    crate::rollup::refresh(&dyn_store, "lake", &layout, 1_000, 0)
        .await
        .unwrap();
    // Reprocessing removed every output of January.
    for f in files.iter().filter(|f| f.key.contains("2024-01-")) {
        store.delete("lake", &f.key).await.unwrap();
    }
    let rest: Vec<AggregateFile> = files
        .iter()
        .filter(|f| !f.key.contains("2024-01-"))
        .cloned()
        .collect();
    let (v, _) = reader(&store).snapshot().await.unwrap();
    assert_eq!(answers(&v).await, answers(&snapshot(&rest)).await);
    let r = crate::rollup::refresh(&dyn_store, "lake", &layout, 2_000, 0)
        .await
        .unwrap();
    assert_eq!((r.months_dropped, r.months_unchanged), (1, 3));
    assert!(store
        .keys("lake")
        .iter()
        .all(|k| !k.contains("month=2024-01")));
}

/// However much history is queried, the details a warm reader keeps stay within its budget.
#[tokio::test]
async fn month_details_stay_within_the_cache_budget() {
    let (store, dyn_store, files) = stored_lake();
    crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
        .await
        .unwrap();
    // About half of what the questions touch (~78 KB of stored sketches and cells).
    let budget = 40_000;
    let r = LakeReader::with_cache_budget(
        store.clone(),
        "lake".into(),
        Layout::default(),
        Duration::ZERO,
        budget,
    );
    let (v, _) = r.snapshot().await.unwrap();
    let heads = v.heap_bytes();
    let expected = answers(&snapshot(&files)).await;
    assert_eq!(answers(&v).await, expected);
    let held = v.heap_bytes() - heads;
    assert!(held > budget / 2 && held <= budget, "held {held}");
}

/// A store that records the keys read and the prefixes listed, can refuse catalog writes (a
/// writer that dies after its month objects, before its catalog), and can hold its change-log
/// listings at a gate (a refresh in progress, held open).
struct Counting {
    inner: dataflow_store::MemoryStore,
    gets: std::sync::Mutex<Vec<String>>,
    /// Prefixes listed; `log:` before a listing of the change log from a position.
    lists: std::sync::Mutex<Vec<String>>,
    die_at_catalog: std::sync::atomic::AtomicBool,
    gate_closed: std::sync::atomic::AtomicBool,
    gate: tokio::sync::Semaphore,
}

impl Default for Counting {
    fn default() -> Self {
        Self {
            inner: Default::default(),
            gets: Default::default(),
            lists: Default::default(),
            die_at_catalog: Default::default(),
            gate_closed: Default::default(),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn head(&self, b: &str, k: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(b, k).await
    }
    async fn open(
        &self,
        b: &str,
        k: &str,
        e: Option<&str>,
    ) -> Result<dataflow_store::ObjectReader, StoreError> {
        self.inner.open(b, k, e).await
    }
    async fn get(&self, b: &str, k: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.lock().unwrap().push(k.to_owned());
        self.inner.get(b, k).await
    }
    async fn get_range(
        &self,
        b: &str,
        k: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets
            .lock()
            .unwrap()
            .push(format!("{k}@{offset}+{len}"));
        self.inner.get_range(b, k, offset, len).await
    }
    async fn put(
        &self,
        b: &str,
        k: &str,
        body: dataflow_store::Body,
        ct: &str,
    ) -> Result<(), StoreError> {
        if k.ends_with("catalog.json")
            && self
                .die_at_catalog
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Other("the writer died".into()));
        }
        self.inner.put(b, k, body, ct).await
    }
    async fn delete(&self, b: &str, k: &str) -> Result<(), StoreError> {
        self.inner.delete(b, k).await
    }
    async fn list(&self, b: &str, p: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.lists.lock().unwrap().push(p.to_owned());
        self.inner.list(b, p).await
    }
    async fn list_after(
        &self,
        b: &str,
        p: &str,
        after: &str,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        self.lists.lock().unwrap().push(format!("log:{p}"));
        if self.gate_closed.load(std::sync::atomic::Ordering::SeqCst) {
            let _pass = self.gate.acquire().await;
        }
        self.inner.list_after(b, p, after).await
    }
}

impl Counting {
    fn take_lists(&self) -> Vec<String> {
        std::mem::take(&mut *self.lists.lock().unwrap())
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.gets.lock().unwrap())
    }
}

/// A rollup writer that dies after writing a month's new objects and before the catalog: the
/// readers keep answering exactly (the late data patched in from the daily files), the next run
/// rolls the month up again and the dead run's objects are pruned.
#[tokio::test]
async fn a_rollup_writer_dying_before_its_catalog_loses_nothing() {
    let store = Arc::new(Counting::default());
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let mut files = lake_files();
    for f in &files {
        put_file(&store.inner, f);
    }
    let layout = Layout::default();
    crate::rollup::refresh(&dyn_store, "lake", &layout, 1_000, 0)
        .await
        .unwrap();
    let late = file("part-late", "2024-03-02", &[("click", 9, 7000..7090)], &[]);
    put_file(&store.inner, &late);
    files.push(late);
    let expected = answers(&snapshot(&files)).await;

    store
        .die_at_catalog
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = crate::rollup::refresh(&dyn_store, "lake", &layout, 2_000, 0).await;
    assert!(err.is_err(), "{err:?}");
    let march_versions = |s: &Counting| {
        s.inner
            .keys("lake")
            .into_iter()
            .filter(|k| k.contains("/month=2024-03/"))
            .filter_map(|k| k.rsplit_once('/').map(|(v, _)| v.to_owned()))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        march_versions(&store).len(),
        2,
        "the dead run left its objects"
    );
    let r = LakeReader::new(
        dyn_store.clone(),
        "lake".into(),
        layout.clone(),
        Duration::ZERO,
    );
    let (v, _) = r.snapshot().await.unwrap();
    assert_eq!(v.months_patched(), 1);
    assert_eq!(answers(&v).await, expected);

    store
        .die_at_catalog
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let again = crate::rollup::refresh(&dyn_store, "lake", &layout, 3_000, 0)
        .await
        .unwrap();
    assert_eq!((again.months_rebuilt, again.months_unchanged), (1, 3));
    assert_eq!(
        march_versions(&store).len(),
        1,
        "old and orphaned versions pruned"
    );
    let (v, _) = r.snapshot().await.unwrap();
    assert_eq!((v.months_patched(), v.months_from_daily_files()), (0, 0));
    assert_eq!(answers(&v).await, expected);
}

/// A cold reader over a rolled-up lake reads the catalog and nothing else for the whole
/// history's summary, and only the months a range or a type touches after that.
#[tokio::test]
async fn a_cold_start_reads_the_catalog_only() {
    let store = Arc::new(Counting::default());
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    for f in &lake_files() {
        put_file(&store.inner, f);
    }
    crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
        .await
        .unwrap();
    store.take();
    let r = LakeReader::new(dyn_store, "lake".into(), Layout::default(), Duration::ZERO);
    let (v, _) = r.snapshot().await.unwrap();
    let all = v.summary(&Filter::default()).await.unwrap();
    // click 10+d over 100 days, view 3 a day, buy 10, 12 extra partials of 2, compacted 10.
    assert_eq!(all.total_events, 5_950 + 300 + 10 + 24 + 10);
    assert_eq!(store.take(), vec!["aggregates/daily/_rollup/catalog.json"]);

    // A range cutting February and March: those months' days, nothing else.
    let f = Filter {
        from: parse_date("2024-02-10"),
        to: parse_date("2024-03-05"),
        types: vec![],
    };
    v.summary(&f).await.unwrap();
    let mut got = store.take();
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("month=2024-02/") && got[0].ends_with("/days.json"));
    assert!(got[1].contains("month=2024-03/") && got[1].ends_with("/days.json"));
    // Asked again: served from memory.
    v.summary(&f).await.unwrap();
    assert!(store.take().is_empty());

    // One type over the whole history: its year object, one read for four months.
    let click = Filter {
        types: vec!["click".into()],
        ..Filter::default()
    };
    assert_eq!(v.summary(&click).await.unwrap().total_events, 5_950 + 24);
    let got = store.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("/_rollup/year=2024/") && got[0].ends_with("/y1.json"));
    // A range cutting two months: the year object (cached) and the two months' objects of
    // the type for their days.
    let cut = Filter {
        from: parse_date("2024-02-10"),
        to: parse_date("2024-04-05"),
        types: vec!["click".into()],
    };
    v.summary(&cut).await.unwrap();
    let mut got = store.take();
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("month=2024-02/") && got[0].ends_with("/t1.json"));
    assert!(got[1].contains("month=2024-04/") && got[1].ends_with("/t0.json"));
}

/// Each day of `daily` is the summary of that one day: same events, same distinct users, and
/// the split adds up; days without data are absent.
#[tokio::test]
async fn daily_points_are_one_day_summaries() {
    let v = snapshot(&lake_files());
    let base = parse_date("2024-01-20").unwrap();
    for types in [vec![], vec!["click"], vec!["view", "buy"]] {
        let f = Filter {
            from: Some(base - 3),
            to: Some(base + 60),
            types: types.iter().map(|t| t.to_string()).collect(),
        };
        let split = vec!["buy".to_owned()];
        let d = v.daily(&f, &split).await.unwrap();
        assert!(!d.days.is_empty());
        let mut total = 0;
        for p in &d.days {
            let day = parse_date(&p.event_date).unwrap();
            let one = v
                .summary(&Filter {
                    from: Some(day),
                    to: Some(day),
                    types: f.types.clone(),
                })
                .await
                .unwrap();
            assert_eq!(p.event_count, one.total_events, "{types:?} {p:?}");
            assert!(p.event_count > 0, "{p:?}");
            assert_eq!(p.unique_users, one.unique_users, "{types:?} {p:?}");
            assert_eq!(p.by_type[0] + p.other_count, p.event_count);
            assert_eq!(
                p.by_type[0],
                one.events_by_type.get("buy").copied().unwrap_or(0)
            );
            total += p.event_count;
        }
        assert_eq!(total, v.summary(&f).await.unwrap().total_events);
        let dates: Vec<&str> = d.days.iter().map(|p| p.event_date.as_str()).collect();
        let mut sorted = dates.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(dates, sorted);
    }
    let empty = Filter {
        from: Some(base + 5000),
        to: Some(base + 5001),
        types: vec![],
    };
    assert!(v.daily(&empty, &[]).await.unwrap().days.is_empty());
}

#[test]
fn empty_lake() {
    let s = snapshot(&[]);
    assert!(s.is_empty());
    assert_eq!(s.sum(&Filter::default()).total_events, 0);
}

/// Dense sketches over two calendar years, served from rollups (months, year objects, edge
/// unions, and the cached unions of days, type days and runs of months) answer exactly as the
/// daily files do, cold and warm, all types and filtered, with room and with little room.
#[tokio::test]
async fn cached_unions_answer_like_the_daily_files_on_dense_sketches() {
    let base = parse_date("2024-11-10").unwrap();
    let files: Vec<AggregateFile> = (0..100)
        .map(|d| {
            let u = d as u32 * 700;
            file(
                &format!("part-{d}"),
                &format_date(base + d),
                &[
                    ("click", 5, u..u + 7_000),
                    ("view", 2, u + 1_000..u + 2_000),
                ],
                &[],
            )
        })
        .collect();
    let store = Arc::new(Counting::default());
    for f in &files {
        put_file(&store.inner, f);
    }
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let r = crate::rollup::refresh(&dyn_store, "lake", &Layout::default(), 1_000, 0)
        .await
        .unwrap();
    assert_eq!(r.months_dropped, 0);
    let direct = snapshot(&files);
    let ranges = [
        (0, 99),
        (0, 60),
        (21, 52),
        (21, 80),
        (5, 6),
        (30, 30),
        (22, 51),
        (20, 99),
        (19, 40),
        (35, 70),
        (52, 99),
        (22, 50),
        (21, 30),
        (49, 50),
    ];
    let mut questions = Vec::new();
    for (a, b) in ranges {
        for types in [vec![], vec!["click"], vec!["view", "click"]] {
            let f = Filter {
                from: Some(base + a),
                to: Some(base + b),
                types: types.iter().map(|t| t.to_string()).collect(),
            };
            let want = direct.summary(&f).await.unwrap();
            assert!(want.unique_users > 6_144, "dense: {want:?}");
            questions.push((f, want));
        }
    }
    // With little room only all-types questions, once: what the single slots serve.
    for (budget, passes) in [(DETAIL_CACHE_BYTES, 2), (300_000, 1)] {
        let served = LakeReader::with_cache_budget(
            dyn_store.clone(),
            "lake".into(),
            Layout::default(),
            Duration::ZERO,
            budget,
        );
        store.take();
        for pass in 0..passes {
            let (v, _) = served.snapshot().await.unwrap();
            assert_eq!(
                v.months_from_daily_files(),
                0,
                "every month from its rollup"
            );
            for (f, want) in &questions {
                if budget < DETAIL_CACHE_BYTES && !f.types.is_empty() {
                    continue;
                }
                assert_eq!(&v.summary(f).await.unwrap(), want, "pass {pass} {f:?}");
            }
            let read = store.take();
            let parts: Vec<&String> = read.iter().filter(|k| k.contains("/edges.bin@")).collect();
            if budget == DETAIL_CACHE_BYTES {
                if pass == 0 {
                    // Each end of a cut month: its part of `edges.bin`, read once.
                    let distinct: BTreeSet<&&String> = parts.iter().collect();
                    assert!(
                        !parts.is_empty() && distinct.len() == parts.len(),
                        "{read:?}"
                    );
                } else {
                    assert!(read.iter().all(|k| k.ends_with("catalog.json")), "{read:?}")
                }
            }
        }
    }
    // Edge objects gone bad, then gone: the day sketches answer, the same.
    let edges: Vec<String> = store
        .inner
        .keys("lake")
        .into_iter()
        .filter(|k| k.ends_with("/edges.bin"))
        .collect();
    assert_eq!(edges.len(), 4, "one per month");
    for gone in [false, true] {
        for k in &edges {
            match gone {
                false => store.inner.insert("lake", k, b"not a table".to_vec()),
                true => store.inner.delete("lake", k).await.unwrap(),
            }
        }
        let reader = LakeReader::new(
            dyn_store.clone(),
            "lake".into(),
            Layout::default(),
            Duration::ZERO,
        );
        let (v, _) = reader.snapshot().await.unwrap();
        for (f, want) in questions.iter().filter(|(f, _)| f.types.is_empty()) {
            assert_eq!(&v.summary(f).await.unwrap(), want, "gone {gone} {f:?}");
        }
    }
}

/// A refresh learns what changed from the change log: one LIST of the log and one of each month
/// it names, whatever the lake's age (1 and 5 years of daily files, 2 types a day); new data is
/// in the next answer, and a refresh with nothing new lists the log only.
#[tokio::test]
async fn a_refresh_lists_the_change_log_and_the_changed_month_only() {
    let layout = Layout::default();
    let mut requests = Vec::new();
    for years in [1, 5] {
        let store = Arc::new(Counting::default());
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let first = parse_date("2020-01-01").unwrap();
        let days = 365 * years;
        for d in 0..days {
            let f = file(
                "part-a",
                &format_date(first + d),
                &[("click", 2, 0..3), ("view", 1, 0..1)],
                &[],
            );
            put_file(&store.inner, &f);
        }
        let r = LakeReader::new(
            dyn_store.clone(),
            "lake".into(),
            layout.clone(),
            Duration::ZERO,
        );
        let (v, _) = r.snapshot().await.unwrap();
        let total = v.summary(&Filter::default()).await.unwrap().total_events;
        assert_eq!(total, 3 * days as u64);
        assert!(r.last_requests().full_listing);
        assert_eq!(store.take_lists(), vec!["aggregates/daily/event_date="]);

        // Nothing new: the log only.
        r.snapshot().await.unwrap();
        assert_eq!(store.take_lists(), vec!["log:aggregates/daily/_changes/"]);

        // A new partial in the last month, recorded as the ETL records it.
        let date = format_date(first + days - 1);
        let late = file("part-b", &date, &[("click", 5, 10..15)], &[]);
        put_file(&store.inner, &late);
        crate::lake::changes::record(
            &*dyn_store,
            "lake",
            &layout,
            [date.as_str()],
            crate::time::now_ms(),
        )
        .await
        .unwrap();
        store.take_lists();
        let (v, _) = r.snapshot().await.unwrap();
        assert_eq!(
            v.summary(&Filter::default()).await.unwrap().total_events,
            3 * days as u64 + 5
        );
        assert_eq!(
            store.take_lists(),
            vec![
                "log:aggregates/daily/_changes/".to_owned(),
                format!("aggregates/daily/event_date={}-", &date[..7])
            ]
        );
        requests.push(r.last_requests());
        // Seen once, acted on once.
        r.snapshot().await.unwrap();
        assert_eq!(store.take_lists(), vec!["log:aggregates/daily/_changes/"]);
    }
    assert_eq!(
        requests[0], requests[1],
        "the same requests at 1 and 5 years"
    );
}

/// A change the log never names (a writer outside the product) shows up at the next full
/// listing: the lake wins.
#[tokio::test]
async fn a_change_outside_the_log_shows_at_the_next_full_listing() {
    let store = Arc::new(Counting::default());
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let put = |name: &str, n: u64| {
        let f = file(name, "2024-01-05", &[("click", n, 0..1)], &[]);
        put_file(&store.inner, &f);
    };
    put("part-a", 1);
    let r = LakeReader::new(
        dyn_store.clone(),
        "lake".into(),
        Layout::default(),
        Duration::ZERO,
    )
    .with_full_listing_every(Duration::from_secs(3600));
    async fn total(r: &LakeReader) -> u64 {
        let (v, _) = r.snapshot().await.unwrap();
        v.summary(&Filter::default()).await.unwrap().total_events
    }
    assert_eq!(total(&r).await, 1);
    put("part-b", 2);
    assert_eq!(
        total(&r).await,
        1,
        "not in the log: not seen before a full listing"
    );
    let r = r.with_full_listing_every(Duration::ZERO);
    assert_eq!(total(&r).await, 3);
    assert!(r.last_requests().full_listing);
}

/// While one request refreshes a stale view (held open here), the others are answered at once
/// from the view there is, and the refresher itself after a second; the new data shows once the
/// refresh, gone on in the background, lands.
#[tokio::test]
async fn readers_do_not_wait_for_a_refresh_in_progress() {
    let store = Arc::new(Counting::default());
    let put = |name: &str, n: u64| {
        let f = file(name, "2024-01-05", &[("click", n, 0..1)], &[]);
        put_file(&store.inner, &f);
    };
    put("part-a", 1);
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let r = Arc::new(LakeReader::new(
        dyn_store.clone(),
        "lake".into(),
        Layout::default(),
        Duration::ZERO,
    ));
    let (v, g1) = r.snapshot().await.unwrap();
    assert_eq!(v.summary(&Filter::default()).await.unwrap().total_events, 1);
    put("part-b", 2);
    crate::lake::changes::record(
        &*dyn_store,
        "lake",
        &Layout::default(),
        ["2024-01-05"],
        crate::time::now_ms(),
    )
    .await
    .unwrap();
    store
        .gate_closed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refresher = tokio::spawn({
        let r = r.clone();
        async move { r.snapshot().await.unwrap() }
    });
    // The refresher holds the lock, waiting at the gate.
    while !r.refreshing() {
        tokio::task::yield_now().await;
    }
    let (v, g) = tokio::time::timeout(Duration::from_secs(5), r.snapshot())
        .await
        .expect("a reader waited for the refresh in progress")
        .unwrap();
    assert_eq!(g, g1, "the view there was");
    assert_eq!(v.summary(&Filter::default()).await.unwrap().total_events, 1);
    // The request that started the refresh is answered too, from the same view, once it has
    // waited its second; the refresh goes on.
    let (_, g) = tokio::time::timeout(Duration::from_secs(5), refresher)
        .await
        .expect("the refresher waited for its refresh past its budget")
        .unwrap();
    assert_eq!(g, g1);
    assert!(r.refreshing(), "the refresh goes on in the background");
    store.gate.add_permits(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (v, g) = r.snapshot().await.unwrap();
        if g > g1 {
            assert_eq!(v.summary(&Filter::default()).await.unwrap().total_events, 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background refresh never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
