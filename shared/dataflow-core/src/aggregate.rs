//! Per-(event_date, event_type) aggregation: exact counts plus a distinct-user sketch.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::event::Event;
use crate::sketch::UserSketch;

#[derive(Debug, Clone)]
pub struct Group {
    pub event_count: u64,
    pub users: UserSketch,
    pub min_time_us: i64,
    pub max_time_us: i64,
}

impl Group {
    fn new() -> Self {
        Self {
            event_count: 0,
            users: UserSketch::new(),
            min_time_us: i64::MAX,
            max_time_us: i64::MIN,
        }
    }

    fn merge(&mut self, other: &Group) {
        self.event_count += other.event_count;
        self.users.merge(&other.users);
        self.min_time_us = self.min_time_us.min(other.min_time_us);
        self.max_time_us = self.max_time_us.max(other.max_time_us);
    }
}

/// Aggregates keyed by day number, then event type. Nested maps let the hot path look up a
/// borrowed `&str` without allocating.
#[derive(Debug, Default, Clone)]
pub struct Aggregates {
    by_date: FxHashMap<i32, FxHashMap<Box<str>, Group>>,
}

impl Aggregates {
    #[inline]
    pub fn add(&mut self, e: &Event<'_>) {
        let types = self.by_date.entry(e.event_date).or_default();
        let group = match types.get_mut(e.event_type.as_ref()) {
            Some(g) => g,
            None => types
                .entry(e.event_type.as_ref().into())
                .or_insert_with(Group::new),
        };
        group.event_count += 1;
        group.users.insert(&e.user_id);
        group.min_time_us = group.min_time_us.min(e.event_time_us);
        group.max_time_us = group.max_time_us.max(e.event_time_us);
    }

    pub fn merge(&mut self, other: Aggregates) {
        for (date, types) in other.by_date {
            let mine = self.by_date.entry(date).or_default();
            for (ty, g) in types {
                match mine.get_mut(&ty) {
                    Some(m) => m.merge(&g),
                    None => {
                        mine.insert(ty, g);
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_date.is_empty()
    }

    pub fn total_events(&self) -> u64 {
        self.by_date
            .values()
            .flat_map(|t| t.values())
            .map(|g| g.event_count)
            .sum()
    }

    /// Sorted view: date ascending, then event type.
    pub fn sorted(&self) -> BTreeMap<i32, BTreeMap<&str, &Group>> {
        self.by_date
            .iter()
            .map(|(d, types)| (*d, types.iter().map(|(t, g)| (t.as_ref(), g)).collect()))
            .collect()
    }

    pub fn max_time_us(&self) -> Option<i64> {
        self.by_date
            .values()
            .flat_map(|t| t.values())
            .map(|g| g.max_time_us)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_line;

    #[test]
    fn counts_and_merges() {
        let lines = [
            r#"{"user_id":"a","event_type":"click","timestamp":"2024-01-01T00:00:00Z"}"#,
            r#"{"user_id":"b","event_type":"click","timestamp":"2024-01-01T05:00:00Z"}"#,
            r#"{"user_id":"a","event_type":"click","timestamp":"2024-01-01T06:00:00Z"}"#,
            r#"{"user_id":"a","event_type":"view","timestamp":"2024-01-02T00:00:00Z"}"#,
        ];
        let mut a = Aggregates::default();
        let mut b = Aggregates::default();
        for (i, l) in lines.iter().enumerate() {
            let e = parse_line(l.as_bytes()).unwrap();
            if i % 2 == 0 {
                a.add(&e)
            } else {
                b.add(&e)
            }
        }
        a.merge(b);
        let s = a.sorted();
        assert_eq!(s.len(), 2);
        let jan1 = crate::event::parse_date("2024-01-01").unwrap();
        let click = s[&jan1]["click"];
        assert_eq!(click.event_count, 3);
        assert_eq!(click.users.estimate().round(), 2.0);
        assert_eq!(a.total_events(), 4);
    }
}
