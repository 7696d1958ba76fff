//! The rollup objects and the catalog as stored: JSON, sketches as base64 of their DataSketches bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::*;
use crate::lake::layout::Layout;
use crate::lake::{name_of, LakeError};
use dataflow_sketch::UserSketch;
use dataflow_store::{ObjectMeta, ObjectStore};

pub(super) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod b64_list {
    use base64::Engine;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<&str>::deserialize(d)?;
        v.into_iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

fn sketch_of(bytes: &[u8], what: &str) -> Result<UserSketch, LakeError> {
    UserSketch::from_bytes(bytes).map_err(|e| LakeError::Rollup(format!("{what}: {e}")))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct HeadWire {
    pub(super) month: String,
    pub(super) dates: Vec<i32>,
    pub(super) day_unique: Vec<u64>,
    pub(super) types: Vec<String>,
    pub(super) type_counts: Vec<u64>,
    pub(super) type_unique_sum: Vec<u64>,
    #[serde(with = "b64")]
    pub(super) users: Vec<u8>,
}

impl HeadWire {
    pub(super) fn of(h: &MonthHead) -> Self {
        Self {
            month: month_label(h.month),
            dates: h.dates.clone(),
            day_unique: h.day_unique.clone(),
            types: h.types.clone(),
            type_counts: h.type_counts.clone(),
            type_unique_sum: h.type_unique_sum.clone(),
            users: h.users.to_bytes(),
        }
    }

    fn decode(&self) -> Result<MonthHead, LakeError> {
        let month = parse_month(&self.month)
            .ok_or_else(|| LakeError::Rollup(format!("bad month '{}'", self.month)))?;
        let n = self.types.len();
        if self.day_unique.len() != self.dates.len()
            || self.type_counts.len() != n
            || self.type_unique_sum.len() != n
        {
            return Err(LakeError::Rollup(format!(
                "month {}: column lengths disagree",
                self.month
            )));
        }
        Ok(MonthHead {
            month,
            dates: self.dates.clone(),
            day_unique: self.day_unique.clone(),
            types: self.types.clone(),
            type_counts: self.type_counts.clone(),
            type_unique_sum: self.type_unique_sum.clone(),
            users: sketch_of(&self.users, &self.month)?,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TypeWire {
    #[serde(with = "b64")]
    pub(super) users: Vec<u8>,
    pub(super) days: Vec<TypeDay>,
}

/// A month's entry in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogMonth {
    /// Where this version's `days.json` and `t{i}.json` are.
    pub prefix: String,
    /// The daily files it was built from (`YYYY-MM-DD/name` -> ETag).
    pub files: BTreeMap<String, String>,
    /// Files those cover (`YYYY-MM-DD/name`): still listed until compaction archives them, and
    /// counted through the file that covers them.
    pub covered: BTreeSet<String>,
    pub(super) head: HeadWire,
    /// Byte lengths of the two parts of this version's `edges.bin`, when it has one (months
    /// whose days allow no step table do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<[u32; 2]>,
    /// Which objects the version has: [`MONTH_OBJECTS`] for those written now; absent (0) for
    /// versions from before `edges.bin`, which the next rollup writes again.
    #[serde(default)]
    pub objects: u32,
}

/// The objects a month version written now has: 1 with `edges.bin`.
pub const MONTH_OBJECTS: u32 = 1;

impl CatalogMonth {
    pub fn head(&self) -> Result<MonthHead, LakeError> {
        self.head.decode()
    }

    /// Whether the month's listed daily files are exactly the ones this version was built from.
    pub fn matches(&self, listed: &[ObjectMeta], layout: &Layout) -> bool {
        self.changed_dates(listed, layout)
            .is_some_and(|c| c.is_empty())
    }

    /// The dates whose listed files differ from the ones this version was built from: a new
    /// file that nothing covers, or a counted file gone or changed. `None` when a listed key
    /// names no date.
    pub fn changed_dates(&self, listed: &[ObjectMeta], layout: &Layout) -> Option<BTreeSet<i32>> {
        let mut changed = BTreeSet::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for m in listed {
            let date = layout
                .date_of_aggregate_key(&m.key)
                .and_then(crate::event::parse_date)?;
            let id = file_id(layout, &m.key)?;
            match (self.files.get_key_value(&id), &m.etag) {
                (Some((k, want)), Some(etag)) if want == etag => {
                    seen.insert(k.as_str());
                }
                (None, _) if self.covered.contains(&id) => {}
                _ => {
                    changed.insert(date);
                }
            }
        }
        for id in self.files.keys().filter(|k| !seen.contains(k.as_str())) {
            let date = id
                .split_once('/')
                .and_then(|(d, _)| crate::event::parse_date(d))?;
            changed.insert(date);
        }
        Some(changed)
    }
}

/// A month's rollup with some dates replaced by a fresh build of their daily files: new data
/// since the last rollup costs a build of the dates it touched, not of the month.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DaysWire {
    pub(super) cells: Vec<DayCell>,
    #[serde(with = "b64_list")]
    pub(super) day_users: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub format: u32,
    pub written_ms: i64,
    /// By `YYYY-MM`.
    pub months: BTreeMap<String, CatalogMonth>,
    /// By `YYYY`: each type's month sketches of the year in one object, so a summary filtered by
    /// type over years reads one object per year, not one per month.
    #[serde(default)]
    pub years: BTreeMap<String, CatalogYear>,
}

/// One year's per-type objects (`y{i}.json`, `i` the type's position in `types`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogYear {
    pub prefix: String,
    pub types: Vec<String>,
    /// The month versions (`YYYY-MM` -> rollup prefix) the sketches were taken from: a reader
    /// uses a month's sketch only while that month is still served from that version.
    pub months: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct YearWire {
    pub(super) months: Vec<YearMonth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct YearMonth {
    pub(super) month: String,
    #[serde(with = "b64")]
    pub(super) users: Vec<u8>,
}

pub fn year_key(prefix: &str, index: usize) -> String {
    format!("{prefix}y{index}.json")
}

/// A type's month sketches over one year, by [`month_of`] number.
pub fn decode_year(bytes: &[u8]) -> Result<Vec<(i32, Arc<UserSketch>)>, LakeError> {
    let w: YearWire =
        serde_json::from_slice(bytes).map_err(|e| LakeError::Rollup(format!("year: {e}")))?;
    w.months
        .iter()
        .map(|m| {
            let month = parse_month(&m.month)
                .ok_or_else(|| LakeError::Rollup(format!("bad month '{}'", m.month)))?;
            Ok((month, Arc::new(sketch_of(&m.users, &m.month)?)))
        })
        .collect()
}

/// `YYYY-MM-DD/name` of a daily aggregate key.
pub(super) fn file_id(layout: &Layout, key: &str) -> Option<String> {
    Some(format!(
        "{}/{}",
        layout.date_of_aggregate_key(key)?,
        name_of(key)
    ))
}

pub fn catalog_key(layout: &Layout) -> String {
    format!("{}catalog.json", layout.rollup_prefix())
}

/// The catalog, if one was written. An unreadable catalog counts as none (every month is then
/// read from its daily files, and the next rollup writes a good one).
pub async fn read_catalog(
    store: &dyn ObjectStore,
    bucket: &str,
    layout: &Layout,
) -> Result<Option<Catalog>, LakeError> {
    let Some(bytes) = store.get(bucket, &catalog_key(layout)).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Catalog>(&bytes) {
        Ok(c) if c.format == FORMAT => Ok(Some(c)),
        Ok(c) => {
            tracing::warn!(
                format = c.format,
                "rollup catalog of another format ignored"
            );
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable rollup catalog ignored");
            Ok(None)
        }
    }
}

/// Listed aggregate files grouped by month.
pub fn days_key(prefix: &str) -> String {
    format!("{prefix}days.json")
}

pub fn type_key(prefix: &str, index: usize) -> String {
    format!("{prefix}t{index}.json")
}

pub fn decode_days(bytes: &[u8]) -> Result<MonthDays, LakeError> {
    let w: DaysWire =
        serde_json::from_slice(bytes).map_err(|e| LakeError::Rollup(format!("days: {e}")))?;
    Ok(MonthDays {
        cells: w.cells,
        day_users: w
            .day_users
            .iter()
            .map(|b| sketch_of(b, "day"))
            .collect::<Result<_, _>>()?,
    })
}

pub fn decode_type(bytes: &[u8]) -> Result<TypeMonth, LakeError> {
    let w: TypeWire =
        serde_json::from_slice(bytes).map_err(|e| LakeError::Rollup(format!("type: {e}")))?;
    Ok(TypeMonth {
        users: Arc::new(sketch_of(&w.users, "type month")?),
        days: w.days,
    })
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, LakeError> {
    serde_json::to_vec(v).map_err(|e| LakeError::Internal(e.to_string()))
}

/// A month's edge unions (`edges.bin`): all types from any day with data to the month's end,
/// and from its start to any day, so a range that cuts a month at one end never needs the
/// month's day sketches. Two parts, read apart with a ranged GET (their lengths are in the
/// catalog): *from* (day sketches in order) then *to* (reversed). Each part is the length of a
/// step table (u32, little-endian; 0 when there is none) and the table
/// ([`dataflow_sketch::SuffixUnions`]: every suffix union of two days or more), then the one-day
/// edge the table does not give: the last day's sketch (*from*) or the first day's (*to*).
pub fn edges_key(prefix: &str) -> String {
    format!("{prefix}edges.bin")
}

/// One part of `edges.bin`, decoded.
pub struct EdgePart {
    /// Every suffix union of two days or more, when the days allow one.
    pub table: Option<dataflow_sketch::SuffixUnions>,
    /// The run's last day alone (the month's last day, or, reversed, its first).
    pub last: UserSketch,
}

impl EdgePart {
    pub fn heap_bytes(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.heap_bytes()) + self.last.heap_bytes()
    }
}

/// `edges.bin` of a month's day sketches and the byte lengths of its two parts; `None` when
/// the days allow no step table (fewer than two, or no dense one: such a month's day sketches
/// are small, and read with its cells).
pub fn encode_edges(day_users: &[UserSketch]) -> Option<(Vec<u8>, [u32; 2])> {
    let (first, last) = (day_users.first()?, day_users.last()?);
    let forward: Vec<&UserSketch> = day_users.iter().collect();
    let backward: Vec<&UserSketch> = day_users.iter().rev().collect();
    let mut out = Vec::new();
    let mut lengths = [0u32; 2];
    for (i, (run, alone)) in [(forward, last), (backward, first)].into_iter().enumerate() {
        let start = out.len();
        let table = dataflow_sketch::SuffixUnions::new(&run)?;
        let table = table.to_bytes();
        out.extend_from_slice(&u32::try_from(table.len()).ok()?.to_le_bytes());
        out.extend_from_slice(table);
        out.extend_from_slice(&dataflow_sketch::SketchMerger::union_of([alone]).to_bytes());
        lengths[i] = u32::try_from(out.len() - start).ok()?;
    }
    Some((out, lengths))
}

/// One part of `edges.bin` as read.
pub fn decode_edge_part(part: &[u8]) -> Result<EdgePart, LakeError> {
    let bad = |what: &str| LakeError::Rollup(format!("edges: {what}"));
    let len = part
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
        .ok_or_else(|| bad("short"))?;
    let table = part
        .get(4..4usize.saturating_add(len))
        .ok_or_else(|| bad("table does not fit"))?;
    let table = match table.is_empty() {
        true => None,
        false => Some(
            dataflow_sketch::SuffixUnions::from_bytes(table).map_err(|e| bad(&e.to_string()))?,
        ),
    };
    Ok(EdgePart {
        table,
        last: sketch_of(&part[4 + len..], "edge")?,
    })
}
