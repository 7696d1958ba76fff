//! Mergeable distinct-count sketch of user ids: Apache DataSketches HLL, so Spark, Druid and
//! DuckDB extensions can read the bytes we write.
//!
//! Two forms: a *live* sketch that takes updates (HLL_8 registers, fastest to update), and a
//! *stored* one that keeps its serialized bytes (HLL_4 when dense: half the registers' memory)
//! and is never decoded. The read side holds stored sketches and merges them straight from
//! their bytes ([`SketchMerger`]): a dense merge is a byte-wise maximum over the registers, and
//! the estimate is DataSketches' own, computed on the merged registers.
//!
//! The parts: [`UserSketch`] (`user`), the DataSketches byte layout read without decoding
//! (`format`), [`SketchMerger`] over merged registers (`merger`), and the step tables that hold
//! every suffix union of a month's days ([`SuffixUnions`], `steps`).

mod format;
mod merger;
mod steps;
mod user;

pub use datasketches::hll::Coupon;
pub use merger::SketchMerger;
pub use steps::SuffixUnions;
pub use user::UserSketch;

use datasketches::hll::{HllSketch, HllType, HllUnion};

/// lgK 16: unions are off by at most ~1.1% on the analytics bench's ranges (0.41% standard
/// error; lgK 14 missed 1.5% on some ranges, docs/benchmarks.md). A dense sketch is 32 KiB
/// stored; below 6,144 distinct users it stays a list of 4-byte coupons.
pub const LG_K: u8 = 16;

#[derive(Debug, thiserror::Error)]
#[error("invalid users sketch: {0}")]
pub struct SketchError(String);

pub(crate) fn err(msg: impl Into<String>) -> SketchError {
    SketchError(msg.into())
}

pub(crate) fn new_hll8() -> HllSketch {
    // LG_K is a valid constant (4..=21), so construction cannot fail.
    match HllSketch::new(LG_K, HllType::Hll8) {
        Ok(s) => s,
        Err(_) => unreachable!("LG_K is within the supported range"),
    }
}

pub(crate) fn new_union() -> HllUnion {
    match HllUnion::new(LG_K) {
        Ok(u) => u,
        Err(_) => unreachable!("LG_K is within the supported range"),
    }
}

#[cfg(test)]
mod tests;
