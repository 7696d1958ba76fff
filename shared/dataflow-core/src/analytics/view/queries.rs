//! The questions a view answers: metrics rows, a summary, and per-day series.

use std::collections::BTreeMap;

use super::*;

impl View {
    /// Rows sorted by date then type, strictly after `after`, at most `limit`; plus the key to
    /// continue from when more rows remain.
    pub async fn metrics(
        &self,
        f: &Filter,
        limit: usize,
        after: Option<&(i32, String)>,
    ) -> Result<(Vec<MetricRow>, Option<(i32, String)>), LakeError> {
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        let first_month = match (f.from, after) {
            (_, Some((d, _))) => month_of(from.max(*d)),
            (Some(d), None) => month_of(d),
            (None, None) => i32::MIN,
        };
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut last: Option<(i32, String)> = None;
        for e in self.months.range(first_month..).map(|(_, e)| e) {
            let h = &e.head;
            if h.dates.first().is_some_and(|d| *d > to) {
                break;
            }
            let wanted: Vec<bool> = h
                .types
                .iter()
                .map(|t| f.types.is_empty() || f.types.contains(t))
                .collect();
            if !wanted.contains(&true) || h.dates.last().is_none_or(|d| *d < from) {
                continue;
            }
            let days = self.days_part(e, false).await?;
            for c in &days.cells {
                if c.date < from || c.date > to || !wanted[c.ty as usize] {
                    continue;
                }
                let t = &h.types[c.ty as usize];
                if let Some((ad, at)) = after {
                    if (c.date, t.as_str()) <= (*ad, at.as_str()) {
                        continue;
                    }
                }
                if rows.len() == limit {
                    return Ok((rows, last));
                }
                rows.push(MetricRow {
                    event_date: format_date(c.date),
                    event_type: t.clone(),
                    event_count: c.count,
                    unique_users: c.unique,
                });
                last = Some((c.date, t.clone()));
            }
        }
        Ok((rows, None))
    }

    /// The months with days in the filter's range, each with the positions in its `dates` of
    /// the first day in range and one past the last.
    pub(super) fn months_in<'a>(
        &'a self,
        f: &Filter,
    ) -> impl Iterator<Item = (&'a MonthEntry, usize, usize)> + 'a {
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        let (m_lo, m_hi) = (
            f.from.map_or(i32::MIN, month_of),
            f.to.map_or(i32::MAX, month_of),
        );
        self.months
            .range(m_lo..=m_hi.max(m_lo))
            .filter_map(move |(_, e)| {
                let lo = e.head.dates.partition_point(|d| *d < from);
                let hi = e.head.dates.partition_point(|d| *d <= to);
                (lo < hi).then_some((e, lo, hi))
            })
    }

    pub async fn summary(&self, f: &Filter) -> Result<Summary, LakeError> {
        let (start, end) = match (f.from, f.to, self.bounds()) {
            (from, to, Some((lo, hi))) => (Some(from.unwrap_or(lo)), Some(to.unwrap_or(hi))),
            (from, to, None) => (from, to),
        };
        let mut summary = Summary {
            total_events: 0,
            events_by_type: BTreeMap::new(),
            start: start.map(format_date),
            end: end.map(format_date),
            unique_users_daily_sum: 0,
            unique_users: 0,
        };
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        if from > to {
            return Ok(summary);
        }
        let mut types: Vec<&str> = f.types.iter().map(String::as_str).collect();
        types.sort_unstable();
        types.dedup();
        let mut users = SketchMerger::default();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        let mut whole_months: BTreeMap<&str, Vec<(&MonthEntry, usize)>> = BTreeMap::new();
        let mut whole_all: Vec<&MonthEntry> = Vec::new();
        let mut all_counts = vec![
            0u64;
            if types.is_empty() {
                self.types.len()
            } else {
                0
            }
        ];
        for (e, lo, hi) in self.months_in(f) {
            let h = &e.head;
            let whole = lo == 0 && hi == h.dates.len();
            if types.is_empty() {
                summary.unique_users_daily_sum += h.day_unique[lo..hi].iter().sum::<u64>();
                let ids = self.type_ids.get(&h.month).map_or(&[][..], Vec::as_slice);
                if whole {
                    for (i, n) in ids.iter().zip(&h.type_counts) {
                        all_counts[*i] += n;
                    }
                    // Merged after the loop, in blocks.
                    whole_all.push(e);
                } else {
                    let days = self.days_part(e, false).await?;
                    let first = days.cells.partition_point(|c| c.date < from);
                    for c in days.cells[first..].iter().take_while(|c| c.date <= to) {
                        if let Some(i) = ids.get(c.ty as usize) {
                            all_counts[*i] += c.count;
                        }
                    }
                    if self.add_edge(e, lo, hi, &mut users).await? {
                        continue;
                    }
                    match self.day_piece(e, lo, hi).await? {
                        Some(u) => users.add(&u),
                        None => {
                            for s in self
                                .days_part(e, true)
                                .await?
                                .day_users
                                .get(lo..hi)
                                .unwrap_or_default()
                            {
                                users.add(s);
                            }
                        }
                    }
                }
                continue;
            }
            // Per-day unions across several types, for their daily distinct users.
            let mut per_day: BTreeMap<i32, SketchMerger> = BTreeMap::new();
            for &t in &types {
                let Ok(ti) = h.types.binary_search_by(|x| x.as_str().cmp(t)) else {
                    continue;
                };
                if whole {
                    *counts.entry(t).or_default() += h.type_counts[ti];
                    // Merged after the loop, a year's run of whole months at a time.
                    whole_months.entry(t).or_default().push((e, ti));
                    if types.len() == 1 {
                        summary.unique_users_daily_sum += h.type_unique_sum[ti];
                    }
                } else if types.len() == 1 {
                    // Keyed by the month's first and last day in range that hold data, so
                    // ranges that differ only in empty days share it.
                    let p = self.type_piece(e, ti, h.dates[lo], h.dates[hi - 1]).await?;
                    *counts.entry(t).or_default() += p.count;
                    summary.unique_users_daily_sum += p.unique_sum;
                    users.add(&p.users);
                } else {
                    let p = self.type_piece(e, ti, h.dates[lo], h.dates[hi - 1]).await?;
                    *counts.entry(t).or_default() += p.count;
                    users.add(&p.users);
                }
                if types.len() > 1 {
                    // Several types need their days for the per-day unions.
                    let tm = self.type_month(e, ti).await?;
                    for d in tm.days.iter().filter(|d| d.date >= from && d.date <= to) {
                        per_day
                            .entry(d.date)
                            .or_default()
                            .add_bytes(&d.sketch)
                            .map_err(|e| LakeError::Rollup(e.to_string()))?;
                    }
                }
            }
            summary.unique_users_daily_sum +=
                per_day.values().map(|m| round(m.estimate())).sum::<u64>();
        }
        self.add_whole_months(&whole_all, &mut users)?;
        // Each type's whole months: one union per year where the year's object serves them
        // all, the month sketches otherwise.
        for (t, months) in whole_months {
            for run in months
                .chunk_by(|a, b| a.0.head.month.div_euclid(12) == b.0.head.month.div_euclid(12))
            {
                let (first, last) = (run[0].0, run[run.len() - 1].0);
                let merged = match run.len() {
                    1 => None,
                    _ => self.year_run(t, first, last).await?,
                };
                match merged {
                    Some(u) => users.add(&u),
                    None => {
                        for (e, ti) in run {
                            users.add(&*self.type_users(e, *ti).await?);
                        }
                    }
                }
            }
        }
        let everything = self.types.iter().map(String::as_str).zip(all_counts);
        for (t, n) in counts.into_iter().chain(everything) {
            if n > 0 {
                summary.total_events += n;
                summary.events_by_type.insert(t.to_owned(), n);
            }
        }
        summary.unique_users = round(users.estimate());
        Ok(summary)
    }

    /// Per day with data in the filter's range: events split over `split` (types outside it
    /// count as other) and the day's distinct users over the filtered types (all types when the
    /// filter names none). One union per day for several types; a stored count otherwise.
    pub async fn daily(&self, f: &Filter, split: &[String]) -> Result<Daily, LakeError> {
        let (from, to) = (f.from.unwrap_or(i32::MIN), f.to.unwrap_or(i32::MAX));
        let mut out = Daily {
            types: split.to_vec(),
            days: Vec::new(),
        };
        if from > to {
            return Ok(out);
        }
        let slot = |t: &str| split.iter().position(|s| s == t);
        let mut types: Vec<&str> = f.types.iter().map(String::as_str).collect();
        types.sort_unstable();
        types.dedup();
        for (e, lo, hi) in self.months_in(f) {
            let h = &e.head;
            // The month's days in range, in date order, filled below.
            let mut points: BTreeMap<i32, (DayPoint, SketchMerger)> = BTreeMap::new();
            let point = |date: i32| DayPoint {
                event_date: format_date(date),
                event_count: 0,
                unique_users: 0,
                by_type: vec![0; split.len()],
                other_count: 0,
            };
            if types.is_empty() {
                let slots: Vec<Option<usize>> = h.types.iter().map(|t| slot(t)).collect();
                for (i, date) in h.dates[lo..hi].iter().enumerate() {
                    let mut p = point(*date);
                    p.unique_users = h.day_unique[lo + i];
                    points.insert(*date, (p, SketchMerger::default()));
                }
                let days = self.days_part(e, false).await?;
                let first = days.cells.partition_point(|c| c.date < from);
                for c in days.cells[first..].iter().take_while(|c| c.date <= to) {
                    if let Some((p, _)) = points.get_mut(&c.date) {
                        p.event_count += c.count;
                        match slots.get(c.ty as usize).copied().flatten() {
                            Some(i) => p.by_type[i] += c.count,
                            None => p.other_count += c.count,
                        }
                    }
                }
            } else {
                for &t in &types {
                    let Ok(ti) = h.types.binary_search_by(|x| x.as_str().cmp(t)) else {
                        continue;
                    };
                    let tm = self.type_month(e, ti).await?;
                    for d in tm.days.iter().filter(|d| d.date >= from && d.date <= to) {
                        let (p, users) = points
                            .entry(d.date)
                            .or_insert_with(|| (point(d.date), SketchMerger::default()));
                        p.event_count += d.count;
                        match slot(t) {
                            Some(i) => p.by_type[i] += d.count,
                            None => p.other_count += d.count,
                        }
                        if types.len() == 1 {
                            p.unique_users = d.unique;
                        } else {
                            users
                                .add_bytes(&d.sketch)
                                .map_err(|e| LakeError::Rollup(e.to_string()))?;
                        }
                    }
                }
                if types.len() > 1 {
                    for (p, users) in points.values_mut() {
                        p.unique_users = round(users.estimate());
                    }
                }
            }
            out.days.extend(points.into_values().map(|(p, _)| p));
        }
        Ok(out)
    }
}
