//! Distinct users over a range: unions of whole months, of the days at the range's two ends,
//! and of one type's days, each cut once and kept under the version it came from.

use std::sync::Arc;

use super::*;

/// A type's days of one month within a range, reduced: what a summary of that type needs.
pub(super) struct TypePiece {
    pub(super) count: u64,
    pub(super) unique_sum: u64,
    pub(super) users: UserSketch,
}

impl View {
    /// The union of the days `lo..hi` (positions in the head's `dates`) of a month, all types:
    /// cached per (rollup version, lo, hi) for months served from a rollup, `None` otherwise
    /// (the caller merges the resident day sketches itself).
    pub(super) async fn day_piece(
        &self,
        e: &MonthEntry,
        lo: usize,
        hi: usize,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let Some(prefix) = e.rollup_prefix() else {
            return Ok(None);
        };
        let key = format!("{}#union{lo}-{hi}", crate::rollup::days_key(prefix));
        let loader = self.loader()?;
        if let Some(Detail::Users(u)) = loader.cache.get(&key) {
            return Ok(Some(u));
        }
        let days = self.days_part(e, true).await?;
        let sketches = days.day_users.get(lo..hi).unwrap_or_default();
        Ok(Some(self.keep_union(key, sketches)?))
    }

    /// Merges into `users` the union of the days `lo..hi` of a month when the range cuts it
    /// at one end only, from the part of the version's `edges.bin` for that end (read alone
    /// with a ranged GET, then kept: every later cut at that end is answered from memory).
    /// `false` when the month has none, the part cannot be read, or its table cannot give
    /// that union (the caller cuts it from the day sketches: the same sketch).
    pub(super) async fn add_edge(
        &self,
        e: &MonthEntry,
        lo: usize,
        hi: usize,
        users: &mut SketchMerger,
    ) -> Result<bool, LakeError> {
        let (
            Some(prefix),
            Source::Rollup {
                edges: Some([from_len, to_len]),
                ..
            },
        ) = (e.rollup_prefix(), &e.source)
        else {
            return Ok(false);
        };
        let n = e.head.dates.len();
        // A run's suffix from `start`: the days in order, or reversed for a month's start.
        let (side, start, offset, len) = match (lo, hi) {
            (lo, hi) if lo > 0 && lo < n && hi == n => ("from", lo, 0, *from_len),
            (0, hi) if hi > 0 && hi < n => ("to", n - hi, u64::from(*from_len), *to_len),
            _ => return Ok(false),
        };
        let object = crate::rollup::edges_key(prefix);
        let key = format!("{object}#{side}");
        let loader = self.loader()?;
        let part = match loader.cache.get(&key) {
            Some(Detail::Edges(p)) => p,
            _ => {
                let range = Some((offset, u64::from(len)));
                let decode = crate::rollup::decode_edge_part;
                let Some(p) = self.rollup_part(&object, range, decode).await? else {
                    return Ok(false);
                };
                let p = Arc::new(p);
                loader
                    .cache
                    .put(key, p.heap_bytes() + 64, Detail::Edges(p.clone()));
                p
            }
        };
        if start + 1 == n {
            users.add(&part.last);
            return Ok(true);
        }
        Ok(part
            .table
            .as_ref()
            .is_some_and(|t| t.add_union_from(start, users)))
    }

    /// Adds the all-types sketches of `run`, consecutive whole months, as aligned blocks of
    /// 2^k months (by position in the view), each block's union kept under its months'
    /// versions: any run costs O(log months) unions, so an open-ended range over years merges a
    /// handful of sketches, not one per month.
    pub(super) fn add_whole_months(
        &self,
        run: &[&MonthEntry],
        users: &mut SketchMerger,
    ) -> Result<(), LakeError> {
        let Some(first) = run.first() else {
            return Ok(());
        };
        let base = self.months.range(..first.head.month).count();
        let (mut lo, hi) = (base, base + run.len());
        while lo < hi {
            let mut size = 1;
            while lo % (size * 2) == 0 && lo + size * 2 <= hi {
                size *= 2;
            }
            let block = &run[lo - base..lo - base + size];
            lo += size;
            let versions: Option<Vec<&str>> = block.iter().map(|e| e.rollup_prefix()).collect();
            match (size, versions, &self.loader) {
                (2.., Some(versions), Some(loader)) => {
                    use sha2::Digest;
                    let mut h = sha2::Sha256::new();
                    for v in versions {
                        h.update(v.as_bytes());
                        h.update([0]);
                    }
                    let key = format!("months:{}", hex::encode(h.finalize()));
                    let u = match loader.cache.get(&key) {
                        Some(Detail::Users(u)) => u,
                        _ => self.keep_union(key, block.iter().map(|e| &e.head.users))?,
                    };
                    users.add(&u);
                }
                _ => {
                    for e in block {
                        users.add(&e.head.users);
                    }
                }
            }
        }
        Ok(())
    }

    /// The union of `sketches`, kept under `key` (the immutable version it was cut from and
    /// the range it covers).
    pub(super) fn keep_union<'a>(
        &self,
        key: String,
        sketches: impl IntoIterator<Item = &'a UserSketch>,
    ) -> Result<Arc<UserSketch>, LakeError> {
        let u = Arc::new(SketchMerger::union_of(sketches));
        self.loader()?
            .cache
            .put(key, u.heap_bytes() + 64, Detail::Users(u.clone()));
        Ok(u)
    }

    /// One type's days of a month within `from..=to`: events, the sum of daily distinct users
    /// and their union. Cached per (object version, first and last day) for months served from
    /// a rollup, so a warm reader keeps this instead of the type's month object.
    pub(super) async fn type_piece(
        &self,
        e: &MonthEntry,
        ti: usize,
        from: i32,
        to: i32,
    ) -> Result<Arc<TypePiece>, LakeError> {
        let key = e
            .rollup_prefix()
            .map(|prefix| format!("{}#union{from}-{to}", crate::rollup::type_key(prefix, ti)));
        if let (Some(k), Ok(l)) = (&key, self.loader()) {
            if let Some(Detail::Piece(p)) = l.cache.get(k) {
                return Ok(p);
            }
        }
        let tm = self.type_month(e, ti).await?;
        let (mut count, mut unique_sum, mut m) = (0u64, 0u64, SketchMerger::default());
        for d in tm.days.iter().filter(|d| d.date >= from && d.date <= to) {
            count += d.count;
            unique_sum += d.unique;
            m.add_bytes(&d.sketch)
                .map_err(|e| LakeError::Rollup(e.to_string()))?;
        }
        let p = Arc::new(TypePiece {
            count,
            unique_sum,
            users: m.finish().into_stored(),
        });
        if let (Some(k), Ok(l)) = (key, self.loader()) {
            l.cache
                .put(k, p.users.heap_bytes() + 80, Detail::Piece(p.clone()));
        }
        Ok(p)
    }

    /// A type's union over the whole months `first..=last` of one year, from that year's
    /// object: `None` unless every one of those months is served from the version the object
    /// was built from. Cached per (object version, first, last): a warm reader keeps one sketch
    /// per year a question covers instead of the year's twelve.
    pub(super) async fn year_run(
        &self,
        t: &str,
        first: &MonthEntry,
        last: &MonthEntry,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let year = first.head.month.div_euclid(12);
        let Some(y) = self.years.get(&year) else {
            return Ok(None);
        };
        let Ok(yi) = y.types.binary_search_by(|x| x.as_str().cmp(t)) else {
            return Ok(None);
        };
        let (m_lo, m_hi) = (first.head.month, last.head.month);
        for (m, e) in self.months.range(m_lo..=m_hi) {
            let current = e.rollup_prefix().is_some_and(|prefix| {
                y.months.get(&month_label(*m)).map(String::as_str) == Some(prefix)
            });
            if !current {
                return Ok(None);
            }
        }
        let ykey = crate::rollup::year_key(&y.prefix, yi);
        let key = format!("{ykey}#union{m_lo}-{m_hi}");
        let loader = self.loader()?;
        if let Some(Detail::Users(u)) = loader.cache.get(&key) {
            return Ok(Some(u));
        }
        let months = match self.year_months(&ykey).await? {
            Some(m) => m,
            None => return Ok(None),
        };
        let run = months
            .iter()
            .filter(|(m, _)| (m_lo..=m_hi).contains(m))
            .map(|(_, u)| &**u);
        Ok(Some(self.keep_union(key, run)?))
    }
}
