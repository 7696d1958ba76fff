//! A month's rollup with the dates whose files changed built fresh.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::*;
use crate::lake::LakeError;
use dataflow_sketch::{SketchMerger, UserSketch};

#[derive(Debug)]
pub struct Patch {
    /// The rollup's types, in its order (its `t{i}.json` objects).
    pub rollup_types: Vec<String>,
    /// Built from the changed dates' files only.
    pub fresh: MonthBuild,
    pub changed: BTreeSet<i32>,
    pub days: Arc<MonthDays>,
}

impl Patch {
    /// The rollup's head and days with `changed` dates taken from `fresh` instead.
    pub fn new(
        rollup: &MonthHead,
        rollup_days: &MonthDays,
        fresh: MonthBuild,
        changed: BTreeSet<i32>,
    ) -> (MonthHead, Self) {
        let mut types: BTreeSet<&str> = fresh.head.types.iter().map(String::as_str).collect();
        let kept = |d: &i32| !changed.contains(d);
        types.extend(
            rollup_days
                .cells
                .iter()
                .filter(|c| kept(&c.date))
                .filter_map(|c| rollup.types.get(c.ty as usize))
                .map(String::as_str),
        );
        let types: Vec<String> = types.into_iter().map(str::to_owned).collect();
        let index = |t: &str| types.partition_point(|x| x.as_str() < t) as u32;
        let mut cells: Vec<DayCell> = rollup_days
            .cells
            .iter()
            .filter(|c| kept(&c.date))
            .filter_map(|c| {
                let t = rollup.types.get(c.ty as usize)?;
                Some(DayCell { ty: index(t), ..*c })
            })
            .chain(fresh.days.cells.iter().map(|c| DayCell {
                ty: index(&fresh.head.types[c.ty as usize]),
                ..*c
            }))
            .collect();
        cells.sort_by_key(|c| (c.date, c.ty));
        let mut per_day: BTreeMap<i32, (u64, UserSketch)> = BTreeMap::new();
        for (i, d) in rollup.dates.iter().enumerate().filter(|(_, d)| kept(d)) {
            if let (Some(u), Some(s)) = (rollup.day_unique.get(i), rollup_days.day_users.get(i)) {
                per_day.insert(*d, (*u, s.clone()));
            }
        }
        for (i, d) in fresh.head.dates.iter().enumerate() {
            per_day.insert(
                *d,
                (fresh.head.day_unique[i], fresh.days.day_users[i].clone()),
            );
        }
        let mut type_counts = vec![0; types.len()];
        let mut type_unique_sum = vec![0; types.len()];
        for c in &cells {
            type_counts[c.ty as usize] += c.count;
            type_unique_sum[c.ty as usize] += c.unique;
        }
        let mut all = SketchMerger::default();
        for (_, s) in per_day.values() {
            all.add(s);
        }
        let head = MonthHead {
            month: rollup.month,
            dates: per_day.keys().copied().collect(),
            day_unique: per_day.values().map(|(u, _)| *u).collect(),
            types,
            type_counts,
            type_unique_sum,
            users: all.finish().into_stored(),
        };
        let days = Arc::new(MonthDays {
            cells,
            day_users: per_day.into_values().map(|(_, s)| s).collect(),
        });
        let patch = Patch {
            rollup_types: rollup.types.clone(),
            fresh,
            changed,
            days,
        };
        (head, patch)
    }

    /// One type over the month: the rollup's days of it outside the changed dates, and the fresh
    /// build's.
    pub fn type_month(&self, rollup: Option<&TypeMonth>, t: &str) -> Result<TypeMonth, LakeError> {
        let fresh = self
            .fresh
            .head
            .types
            .binary_search_by(|x| x.as_str().cmp(t))
            .ok()
            .and_then(|i| self.fresh.types.get(i));
        let mut days: Vec<TypeDay> = rollup
            .into_iter()
            .flat_map(|r| r.days.iter())
            .filter(|d| !self.changed.contains(&d.date))
            .chain(fresh.into_iter().flat_map(|f| f.days.iter()))
            .cloned()
            .collect();
        days.sort_by_key(|d| d.date);
        let mut all = SketchMerger::default();
        for d in &days {
            all.add_bytes(&d.sketch)
                .map_err(|e| LakeError::Rollup(e.to_string()))?;
        }
        Ok(TypeMonth {
            users: Arc::new(all.finish().into_stored()),
            days,
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.fresh.heap_bytes() + self.days.heap_bytes()
    }
}
