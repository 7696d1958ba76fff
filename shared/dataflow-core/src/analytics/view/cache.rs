//! Month details held by a warm reader, under a byte budget.

use std::sync::Arc;

use super::TypePiece;
use crate::rollup::{EdgePart, MonthBuild, MonthDays, TypeMonth};
use dataflow_sketch::UserSketch;

/// Default budget for month details held by a warm reader: a year of 50 types fits whole, and
/// five years of 500 types keep the API under 200 MB resident (docs/benchmarks.md).
pub const DETAIL_CACHE_BYTES: usize = 112 << 20;

#[derive(Clone)]
pub(super) enum Detail {
    Days(Arc<MonthDays>),
    Piece(Arc<TypePiece>),
    Type(Arc<TypeMonth>),
    Users(Arc<UserSketch>),
    Year(Arc<Vec<(i32, Arc<UserSketch>)>>),
    Build(Arc<MonthBuild>),
    Edges(Arc<EdgePart>),
}

type Lru = lru::LruCache<String, (usize, Detail)>;

/// One least-recently-used list with the sum of its entries' byte sizes.
struct Tier {
    lru: Lru,
    bytes: usize,
    budget: usize,
}

impl Tier {
    fn new(budget: usize) -> Self {
        Self {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    fn put(&mut self, key: String, bytes: usize, d: Detail) {
        if let Some((old, _)) = self.lru.put(key, (bytes, d)) {
            self.bytes -= old;
        }
        self.bytes += bytes;
        while self.bytes > self.budget && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((_, (b, _))) => self.bytes -= b,
                None => break,
            }
        }
    }
}

/// Month details loaded on demand, least recently used first out once over a byte budget, so a
/// warm function's memory stays bounded whatever the history.
///
/// Two lists: whole objects as read (a month's day sketches, a type's month, a year object)
/// get three eighths of the budget; what questions keep using (cells, step tables, month
/// sketches and the unions cut from those objects for a range) gets the rest. In one list,
/// every object read for a new range pushed out the small unions that earlier ranges keep
/// asking for; the larger share is what a warm reader answers from (docs/benchmarks.md).
pub(in crate::analytics) struct DetailCache {
    inner: std::sync::Mutex<(Tier, Tier)>,
}

impl DetailCache {
    pub(in crate::analytics) fn new(budget: usize) -> Self {
        let objects = budget / 8 * 3;
        Self {
            inner: std::sync::Mutex::new((Tier::new(budget - objects), Tier::new(objects))),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<Detail> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, d)) = g.0.lru.get(key) {
            return Some(d.clone());
        }
        g.1.lru.get(key).map(|(_, d)| d.clone())
    }

    pub(super) fn put(&self, key: String, bytes: usize, d: Detail) {
        let whole_object = match &d {
            Detail::Days(days) => !days.day_users.is_empty(),
            Detail::Type(_) | Detail::Year(_) | Detail::Build(_) => true,
            Detail::Users(_) | Detail::Piece(_) | Detail::Edges(_) => false,
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if whole_object {
            g.1.put(key, bytes, d);
        } else {
            g.0.put(key, bytes, d);
        }
    }

    pub(super) fn bytes(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.bytes + g.1.bytes
    }
}
