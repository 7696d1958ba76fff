//! Loading a month's details: rollup objects (whole or a byte range), their decoded parts, and
//! months built from the daily files when a rollup is missing or stale.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;

impl View {
    pub(super) async fn build(&self, e: &MonthEntry) -> Result<Arc<MonthBuild>, LakeError> {
        let (prefix, listed) = match &e.source {
            Source::Built(b) => return Ok(b.clone()),
            Source::Rollup { prefix, listed, .. } => (prefix, listed),
        };
        let loader = self.loader()?;
        let key = format!("{prefix}#build");
        if let Some(Detail::Build(b)) = loader.cache.get(&key) {
            return Ok(b);
        }
        let (b, _) = crate::rollup::build_month(
            &loader.store,
            &loader.bucket,
            &loader.layout,
            e.head.month,
            listed,
            &HashMap::new(),
        )
        .await?;
        let b = Arc::new(b);
        loader
            .cache
            .put(key, b.heap_bytes(), Detail::Build(b.clone()));
        Ok(b)
    }

    pub(super) fn loader(&self) -> Result<&Arc<Loader>, LakeError> {
        self.loader
            .as_ref()
            .ok_or_else(|| LakeError::Internal("no store to load a month from".into()))
    }

    /// A rollup object, or `None` when it is gone or unreadable (the caller then builds the
    /// month from its daily files).
    pub(super) async fn rollup_object<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&[u8]) -> Result<T, LakeError>,
    ) -> Result<Option<T>, LakeError> {
        self.rollup_part(key, None, decode).await
    }

    /// [`Self::rollup_object`], or only `len` bytes of it from `offset`.
    pub(super) async fn rollup_part<T>(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        decode: impl FnOnce(&[u8]) -> Result<T, LakeError>,
    ) -> Result<Option<T>, LakeError> {
        let loader = self.loader()?;
        let read = match range {
            None => loader.store.get(&loader.bucket, key).await?,
            Some((offset, len)) => {
                loader
                    .store
                    .get_range(&loader.bucket, key, offset, len)
                    .await?
            }
        };
        let Some(bytes) = read else {
            tracing::warn!(
                key,
                "rollup object missing; answering from the month's other sources"
            );
            return Ok(None);
        };
        match decode(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(key, error = %e, "rollup object unreadable; answering from the month's other sources");
                Ok(None)
            }
        }
    }

    /// A month's cells (`sketches == false`) or its day sketches: the two halves of `days.json`,
    /// cached apart, so questions that need only counts, or only a cached union of some days,
    /// do not keep a month's thirty day sketches in memory.
    pub(super) async fn days_part(
        &self,
        e: &MonthEntry,
        sketches: bool,
    ) -> Result<Arc<MonthDays>, LakeError> {
        let prefix = match &e.source {
            Source::Built(b) => return Ok(b.days.clone()),
            Source::Rollup { patch: Some(p), .. } => return Ok(p.days.clone()),
            Source::Rollup { prefix, .. } => prefix,
        };
        let key = crate::rollup::days_key(prefix);
        let (cells_key, sketches_key) = (format!("{key}#cells"), format!("{key}#sketches"));
        let loader = self.loader()?;
        if let Some(Detail::Days(d)) =
            loader
                .cache
                .get(if sketches { &sketches_key } else { &cells_key })
        {
            return Ok(d);
        }
        let full = match self.rollup_object(&key, crate::rollup::decode_days).await? {
            Some(d) if d.day_users.len() == e.head.dates.len() => d,
            _ => (*self.build(e).await?.days).clone(),
        };
        let cells = Arc::new(MonthDays {
            cells: full.cells,
            day_users: Vec::new(),
        });
        let days = Arc::new(MonthDays {
            cells: Vec::new(),
            day_users: full.day_users,
        });
        loader
            .cache
            .put(cells_key, cells.heap_bytes(), Detail::Days(cells.clone()));
        // A month with edge unions needs its day sketches only for ranges inside it: not
        // worth their place in the cache when the cells were what was asked for.
        let has_edges = matches!(e.source, Source::Rollup { edges: Some(_), .. });
        if sketches || !has_edges {
            loader
                .cache
                .put(sketches_key, days.heap_bytes(), Detail::Days(days.clone()));
        }
        Ok(if sketches { days } else { cells })
    }

    /// A per-type year object: each month's sketch.
    pub(super) async fn year_months(
        &self,
        key: &str,
    ) -> Result<Option<Arc<Vec<(i32, Arc<UserSketch>)>>>, LakeError> {
        let loader = self.loader()?;
        if let Some(Detail::Year(m)) = loader.cache.get(key) {
            return Ok(Some(m));
        }
        Ok(
            match self.rollup_object(key, crate::rollup::decode_year).await? {
                Some(m) => {
                    let m = Arc::new(m);
                    let bytes = m.iter().map(|(_, u)| u.heap_bytes() + 16).sum();
                    loader
                        .cache
                        .put(key.to_owned(), bytes, Detail::Year(m.clone()));
                    Some(m)
                }
                None => None,
            },
        )
    }

    pub(super) async fn type_month(
        &self,
        e: &MonthEntry,
        ti: usize,
    ) -> Result<Arc<TypeMonth>, LakeError> {
        let (prefix, patch) = match &e.source {
            Source::Built(_) => return self.built_type(e, ti).await,
            Source::Rollup { prefix, patch, .. } => (prefix, patch),
        };
        let key = match patch {
            None => crate::rollup::type_key(prefix, ti),
            Some(_) => format!("{}#t{ti}", e.signature),
        };
        let loader = self.loader()?;
        if let Some(Detail::Type(t)) = loader.cache.get(&key) {
            return Ok(t);
        }
        let t = match patch {
            None => match self.rollup_object(&key, crate::rollup::decode_type).await? {
                Some(t) => Arc::new(t),
                None => self.built_type(e, ti).await?,
            },
            Some(p) => {
                let t = e.head.types.get(ti).ok_or_else(|| {
                    LakeError::Rollup(format!("month {} has no type {ti}", e.head.month))
                })?;
                // The rollup's object of this type, if the rollup had it.
                let rollup = match p.rollup_types.binary_search(t) {
                    Ok(ri) => {
                        let rk = crate::rollup::type_key(prefix, ri);
                        match self.rollup_object(&rk, crate::rollup::decode_type).await? {
                            Some(r) => Some(r),
                            None => return self.built_type(e, ti).await,
                        }
                    }
                    Err(_) => None,
                };
                Arc::new(p.type_month(rollup.as_ref(), t)?)
            }
        };
        loader
            .cache
            .put(key, t.heap_bytes(), Detail::Type(t.clone()));
        Ok(t)
    }

    /// A type's sketch over a whole month.
    pub(super) async fn type_users(
        &self,
        e: &MonthEntry,
        ti: usize,
    ) -> Result<Arc<UserSketch>, LakeError> {
        let key = match &e.source {
            Source::Rollup { .. } => format!("{}#users{ti}", e.signature),
            Source::Built(_) => return Ok(self.type_month(e, ti).await?.users.clone()),
        };
        let loader = self.loader()?;
        if let Some(Detail::Users(u)) = loader.cache.get(&key) {
            return Ok(u);
        }
        let u = match self.year_users(e, ti).await? {
            Some(u) => u,
            None => self.type_month(e, ti).await?.users.clone(),
        };
        // Kept on its own: the object it came from is cached as a whole, in the smaller list.
        loader
            .cache
            .put(key, u.heap_bytes(), Detail::Users(u.clone()));
        Ok(u)
    }

    /// A type's month sketch from its year object, when the catalog has one built from the
    /// month version this view serves.
    pub(super) async fn year_users(
        &self,
        e: &MonthEntry,
        ti: usize,
    ) -> Result<Option<Arc<UserSketch>>, LakeError> {
        let Some(prefix) = e.rollup_prefix() else {
            return Ok(None);
        };
        let Some(y) = self.years.get(&e.head.month.div_euclid(12)) else {
            return Ok(None);
        };
        let (Some(t), Some(from)) = (
            e.head.types.get(ti),
            y.months.get(&month_label(e.head.month)),
        ) else {
            return Ok(None);
        };
        let Ok(yi) = y.types.binary_search(t) else {
            return Ok(None);
        };
        if from != prefix {
            return Ok(None);
        }
        let Some(months) = self
            .year_months(&crate::rollup::year_key(&y.prefix, yi))
            .await?
        else {
            return Ok(None);
        };
        Ok(months
            .iter()
            .find(|(m, _)| *m == e.head.month)
            .map(|(_, u)| u.clone()))
    }

    pub(super) async fn built_type(
        &self,
        e: &MonthEntry,
        ti: usize,
    ) -> Result<Arc<TypeMonth>, LakeError> {
        self.build(e)
            .await?
            .types
            .get(ti)
            .cloned()
            .ok_or_else(|| LakeError::Rollup(format!("month {} has no type {ti}", e.head.month)))
    }
}
