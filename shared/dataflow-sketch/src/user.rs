//! The distinct-users sketch itself: live while the ETL updates it, stored (its bytes, checked
//! and never decoded) once it is written or read back.

use std::sync::Arc;

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{Coupon, HllSketch, HllType};

use crate::format::Form;
use crate::{err, new_hll8, new_union, SketchError, SketchMerger};

#[derive(Clone)]
pub(crate) enum Repr {
    Live(HllSketch),
    Stored(Arc<[u8]>),
}

/// A distinct-users sketch, live or stored (see the crate's comment).
#[derive(Clone)]
pub struct UserSketch {
    pub(crate) repr: Repr,
}

impl std::fmt::Debug for UserSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSketch")
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl Default for UserSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl UserSketch {
    pub fn new() -> Self {
        Self {
            repr: Repr::Live(new_hll8()),
        }
    }

    /// The sketch to update: every update of the ETL's hot loop comes through here.
    #[inline(always)]
    fn live(&mut self) -> &mut HllSketch {
        if matches!(self.repr, Repr::Stored(_)) {
            self.make_live();
        }
        match &mut self.repr {
            Repr::Live(s) => s,
            Repr::Stored(_) => unreachable!("made live above"),
        }
    }

    #[cold]
    fn make_live(&mut self) {
        if let Repr::Stored(bytes) = &self.repr {
            // Stored bytes were checked when they came in; an unreadable one starts empty
            // rather than panic (it cannot happen for bytes that passed `from_bytes`).
            let mut union = new_union();
            if let Ok(s) = HllSketch::deserialize(bytes) {
                union.update(&s);
            }
            self.repr = Repr::Live(union.to_sketch(HllType::Hll8));
        }
    }

    /// Hashes the UTF-8 bytes of the id, like the Java/C++ libraries' `update(String)`.
    #[inline]
    pub fn insert(&mut self, user_id: &str) {
        self.live().update(raw_bytes::from_str(user_id));
    }

    /// The hashed form of an id; `insert_coupon(coupon(id))` is `insert(id)`. Splitting the two
    /// lets a caller hash while the id is hot in cache and apply updates later, in batches.
    #[inline]
    pub fn coupon(user_id: &str) -> Coupon {
        Coupon::from_value(raw_bytes::from_str(user_id))
    }

    #[inline]
    pub fn insert_coupon(&mut self, coupon: Coupon) {
        self.live().update_with_coupon(coupon);
    }

    pub fn estimate(&self) -> f64 {
        match &self.repr {
            Repr::Live(s) => s.estimate(),
            Repr::Stored(b) => HllSketch::deserialize(b).map_or(0.0, |s| s.estimate()),
        }
    }

    pub fn merge(&mut self, other: &UserSketch) {
        let mut m = SketchMerger::default();
        m.add(self);
        m.add(other);
        *self = m.finish();
    }

    /// Compact serialized form (HLL_4 when dense, DataSketches binary format).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.repr {
            Repr::Live(s) => {
                let mut union = new_union();
                union.update(s);
                union.to_sketch(HllType::Hll4).serialize()
            }
            Repr::Stored(b) => b.to_vec(),
        }
    }

    /// A stored sketch: the bytes are checked, not decoded.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        match Form::parse(bytes)? {
            Form::Dense(_) | Form::Empty => {}
            // Coupon lists are small; DataSketches checks them (and any other form) fully.
            Form::Coupons(_) | Form::Other => {
                HllSketch::deserialize(bytes).map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(Self {
            repr: Repr::Stored(bytes.into()),
        })
    }

    /// The same sketch in its stored form, for holding many of them.
    pub fn into_stored(self) -> Self {
        match self.repr {
            Repr::Stored(_) => self,
            Repr::Live(_) => Self {
                repr: Repr::Stored(self.to_bytes().into()),
            },
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Live(s) => s.estimated_size() + 64,
            Repr::Stored(b) => b.len() + 16,
        }
    }
}
