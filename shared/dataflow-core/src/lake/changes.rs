//! The lake's change log: which months of the aggregates changed, and when, so a reader refreshes
//! by asking what is new rather than listing every file ever written.
//!
//! Every writer of date partitions (the ETL's outputs, compaction, removal of a replaced
//! version's outputs) puts one empty marker object after its writes:
//! `aggregates/daily/_changes/{ms:013}-{id}-{months}`, e.g.
//! `…/_changes/1733456789012-5f3a9c1e-2024-01.2024-02`. The months are in the key, so a reader
//! needs one LIST (`StartAfter` its last position) and no GET to know which months to list again;
//! a writer that touched more than [`MAX_MONTHS_IN_KEY`] months writes `all`.
//!
//! Markers are written after the data and before the checkpoint completes, so a crash between
//! the two re-runs the object and writes the marker again: the log may name a month twice, never
//! miss one that a counted object changed. Writers' clocks differ a little and a PUT may finish
//! after a later one, so readers re-read the last [`OVERLAP_MS`] of the log and skip markers they
//! have seen. Whatever the log says, readers list the whole lake again every few minutes: where
//! the two disagree the lake wins (`dataflow` doctor reports a disagreement).

use std::collections::BTreeSet;

use dataflow_store::{Body, ObjectStore, StoreError};

use crate::lake::layout::Layout;

/// Months named in a marker's key before it says `all` (keys stay far below S3's 1,024 bytes).
pub const MAX_MONTHS_IN_KEY: usize = 60;
/// How far back of its newest marker a reader looks again.
pub const OVERLAP_MS: i64 = 30_000;
/// How long markers are kept: far longer than any reader's refresh or full re-listing period.
pub const RETENTION_MS: i64 = 24 * 3_600_000;

const ALL: &str = "all";

/// What one marker says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Months as `YYYY-MM`.
    Months(BTreeSet<String>),
    /// Too many to name: list everything.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub key: String,
    pub at_ms: i64,
    pub changed: Changed,
}

pub fn prefix(layout: &Layout) -> String {
    format!("{}_changes/", layout.aggregates_prefix)
}

/// Where a reader that last saw time `ms` starts its next listing.
pub fn start_after(layout: &Layout, ms: i64) -> String {
    format!("{}{:013}", prefix(layout), (ms - OVERLAP_MS).max(0))
}

/// The marker key for a change to `dates` (`YYYY-MM-DD`) at `now_ms`; `None` when there are none.
///
/// ```
/// use dataflow_core::lake::changes::{marker_key, parse, Changed};
/// use dataflow_core::lake::layout::Layout;
///
/// let layout = Layout::default();
/// let key = marker_key(&layout, ["2024-02-03", "2024-01-31"], 1_733_456_789_012).unwrap();
/// assert!(key.starts_with("aggregates/daily/_changes/1733456789012-"));
/// let marker = parse(&layout, &key).unwrap();
/// assert_eq!(marker.changed, Changed::Months(["2024-01".into(), "2024-02".into()].into()));
/// ```
pub fn marker_key<'a>(
    layout: &Layout,
    dates: impl IntoIterator<Item = &'a str>,
    now_ms: i64,
) -> Option<String> {
    let months: BTreeSet<&str> = dates
        .into_iter()
        .filter_map(|d| d.get(..7))
        .filter(|m| is_month(m))
        .collect();
    if months.is_empty() {
        return None;
    }
    let named = if months.len() > MAX_MONTHS_IN_KEY {
        ALL.to_owned()
    } else {
        months.into_iter().collect::<Vec<_>>().join(".")
    };
    let id = unique_id();
    Some(format!(
        "{}{:013}-{id}-{named}",
        prefix(layout),
        now_ms.max(0)
    ))
}

/// Eight hex digits that differ between markers written in the same millisecond by any
/// writer (process id, a counter, the clock's nanoseconds), so no marker replaces another.
fn unique_id() -> String {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = format!(
        "{}:{}:{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..4])
}

/// Reads a marker's key; `None` for anything else under the prefix.
pub fn parse(layout: &Layout, key: &str) -> Option<Marker> {
    let rest = key.strip_prefix(prefix(layout).as_str())?;
    let (ms, rest) = rest.split_once('-')?;
    let (_, named) = rest.split_once('-')?;
    let at_ms = ms.parse().ok()?;
    let changed = if named == ALL {
        Changed::All
    } else {
        let months: BTreeSet<String> = named.split('.').map(str::to_owned).collect();
        if months.is_empty() || !months.iter().all(|m| is_month(m)) {
            return None;
        }
        Changed::Months(months)
    };
    Some(Marker {
        key: key.to_owned(),
        at_ms,
        changed,
    })
}

fn is_month(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[5..].iter().all(u8::is_ascii_digit)
}

/// Records that `dates` changed. Called after the data is written.
pub async fn record<'a>(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    dates: impl IntoIterator<Item = &'a str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    match marker_key(layout, dates, now_ms) {
        Some(key) => {
            store
                .put(bucket, &key, Body::Bytes(Vec::new()), "text/plain")
                .await
        }
        None => Ok(()),
    }
}

/// Deletes markers older than [`RETENTION_MS`] (the scheduled compaction run calls it); returns
/// how many. Keys sort by time, so it stops at the first young one.
pub async fn prune(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let cutoff = now_ms - RETENTION_MS;
    let mut removed = 0;
    for m in store.list(bucket, &prefix(layout)).await? {
        match parse(layout, &m.key) {
            Some(marker) if marker.at_ms >= cutoff => break,
            _ => {
                store.delete(bucket, &m.key).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflow_store::MemoryStore;

    #[test]
    fn keys_name_months_in_time_order() {
        let l = Layout::default();
        let k = marker_key(
            &l,
            ["2024-02-03", "2024-01-31", "2024-02-01"],
            1_733_456_789_012,
        )
        .unwrap();
        assert!(
            k.starts_with("aggregates/daily/_changes/1733456789012-"),
            "{k}"
        );
        assert!(k.ends_with("-2024-01.2024-02"), "{k}");
        let m = parse(&l, &k).unwrap();
        assert_eq!(m.at_ms, 1_733_456_789_012);
        assert_eq!(
            m.changed,
            Changed::Months(["2024-01".to_owned(), "2024-02".to_owned()].into())
        );
        let earlier = marker_key(&l, ["2030-12-01"], 999).unwrap();
        assert!(earlier < k, "zero-padded times sort as numbers");
        assert_eq!(marker_key(&l, ["not a date"], 1), None);
        assert_eq!(marker_key(&l, std::iter::empty(), 1), None);
    }

    #[test]
    fn many_months_say_all_and_strangers_are_ignored() {
        let l = Layout::default();
        let dates: Vec<String> = (0..61)
            .map(|i| format!("{}-{:02}-01", 2000 + i / 12, i % 12 + 1))
            .collect();
        let k = marker_key(&l, dates.iter().map(String::as_str), 5).unwrap();
        assert_eq!(parse(&l, &k).unwrap().changed, Changed::All);
        for bad in [
            "aggregates/daily/_changes/x",
            "aggregates/daily/_changes/12-ab-2024-13x",
            "aggregates/daily/event_date=2024-01-01/part-a.parquet",
        ] {
            assert_eq!(parse(&l, bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn prune_keeps_a_day() {
        let l = Layout::default();
        let s = MemoryStore::default();
        let now = 10 * RETENTION_MS;
        for at in [now - 2 * RETENTION_MS, now - RETENTION_MS - 1, now - 1000] {
            record(&s, "lake", &l, ["2024-01-01"], at).await.unwrap();
        }
        assert_eq!(prune(&s, "lake", &l, now).await.unwrap(), 2);
        let left = s.list("lake", &prefix(&l)).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(parse(&l, &left[0].key).unwrap().at_ms, now - 1000);
    }
}
