//! Merging many sketches at once: stored dense sketches fold straight into merged registers,
//! byte-wise maxima, and the estimate is DataSketches' own on the result.

use std::sync::Arc;

use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::format::{
    le32, Dense, Form, FAMILY_HLL, FLAG_OUT_OF_ORDER, HLL_PREAMBLE, MAX_VALUE, MODE_HLL, SLOT_MASK,
    TGT_HLL8,
};
use crate::user::Repr;
use crate::{err, new_hll8, new_union, SketchError, UserSketch, LG_K};

/// Merged registers at one lgK.
pub(crate) struct Registers {
    pub(crate) lg_k: u8,
    pub(crate) regs: Box<[u8]>,
}

impl Registers {
    pub(crate) fn new(lg_k: u8) -> Self {
        Self {
            lg_k,
            regs: vec![0u8; 1 << lg_k].into_boxed_slice(),
        }
    }

    /// Folds the registers down to a smaller lgK, as a DataSketches union does when it meets a
    /// sketch with fewer registers (a slot's low bits are the smaller sketch's slot).
    fn shrink_to(&mut self, lg_k: u8) {
        if lg_k >= self.lg_k {
            return;
        }
        let mut out = Registers::new(lg_k);
        let mask = (1usize << lg_k) - 1;
        for (i, v) in self.regs.iter().enumerate() {
            let o = &mut out.regs[i & mask];
            *o = (*o).max(*v);
        }
        *self = out;
    }

    fn set_max(&mut self, slot: usize, v: u8) {
        let mask = self.regs.len() - 1;
        let r = &mut self.regs[slot & mask];
        *r = (*r).max(v.min(MAX_VALUE));
    }

    pub(crate) fn add_coupons(&mut self, raw: &[u8]) {
        for c in raw.chunks_exact(4).map(le32).filter(|c| *c != 0) {
            self.set_max((c & SLOT_MASK) as usize, (c >> 26) as u8);
        }
    }

    pub(crate) fn add_dense(&mut self, d: &Dense<'_>) {
        let src_lg_k = match d {
            Dense::Hll8 { lg_k, .. } | Dense::Hll4 { lg_k, .. } => *lg_k,
        };
        self.shrink_to(src_lg_k);
        let same = src_lg_k == self.lg_k;
        match d {
            Dense::Hll8 { regs, .. } if same => {
                for (r, v) in self.regs.iter_mut().zip(regs.iter()) {
                    *r = (*r).max(*v);
                }
            }
            Dense::Hll8 { regs, .. } => {
                for (i, v) in regs.iter().enumerate() {
                    self.set_max(i, *v);
                }
            }
            Dense::Hll4 {
                cur_min,
                packed,
                aux,
                ..
            } => {
                if same {
                    for (pair, b) in self.regs.chunks_exact_mut(2).zip(packed.iter()) {
                        pair[0] = pair[0].max(cur_min + (b & 15));
                        pair[1] = pair[1].max(cur_min + (b >> 4));
                    }
                } else {
                    for (i, b) in packed.iter().enumerate() {
                        self.set_max(2 * i, cur_min + (b & 15));
                        self.set_max(2 * i + 1, cur_min + (b >> 4));
                    }
                }
                // An exception's nibble gave `cur_min + 15`, a lower bound of its value.
                let src_mask = (1u32 << src_lg_k) - 1;
                for c in aux.chunks_exact(4).map(le32).filter(|c| *c != 0) {
                    self.set_max((c & SLOT_MASK & src_mask) as usize, (c >> 26) as u8);
                }
            }
        }
    }

    /// The registers as a DataSketches HLL_8 sketch marked out of order, so its estimate is
    /// the library's composite estimator (what it uses for any union of dense sketches).
    pub(crate) fn to_sketch(&self) -> Result<HllSketch, SketchError> {
        let (mut kxq0, mut kxq1, mut zeros) = (0f64, 0f64, 0u32);
        // The same sums, in the same order, as DataSketches computes after a union; the
        // powers of two are looked up (exact either way) rather than divided per register.
        let mut inverse = [0f64; MAX_VALUE as usize + 1];
        for (v, x) in inverse.iter_mut().enumerate() {
            *x = 1.0 / (1u64 << v) as f64;
        }
        for v in self.regs.iter() {
            match *v {
                0 => {
                    kxq0 += 1.0;
                    zeros += 1;
                }
                v if v < 32 => kxq0 += inverse[v as usize],
                v => kxq1 += inverse[v.min(MAX_VALUE) as usize],
            }
        }
        let mut b = Vec::with_capacity(HLL_PREAMBLE + self.regs.len());
        b.extend_from_slice(&[
            10,
            1,
            FAMILY_HLL,
            self.lg_k,
            0,
            FLAG_OUT_OF_ORDER,
            0,
            MODE_HLL | (TGT_HLL8 << 2),
        ]);
        b.extend_from_slice(&0f64.to_le_bytes());
        b.extend_from_slice(&kxq0.to_le_bytes());
        b.extend_from_slice(&kxq1.to_le_bytes());
        b.extend_from_slice(&zeros.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.regs);
        HllSketch::deserialize(&b).map_err(|e| err(e.to_string()))
    }
}

/// Merges many sketches at once. Stored dense sketches go straight into merged registers;
/// coupon lists and live sketches go through a DataSketches union, so a union of small sets
/// keeps the library's exact-as-possible coupon estimate.
///
/// The estimate depends only on what is merged, never on how it was grouped: a union of one
/// sketch is that sketch; a union of more with a dense result is the composite estimator on the
/// merged registers; otherwise the coupon estimate of the merged coupons. So a range answered
/// from cached partial unions equals the same range merged sketch by sketch.
pub struct SketchMerger {
    union: HllUnion,
    union_used: bool,
    regs: Option<Registers>,
    /// Non-empty sketches merged.
    inputs: usize,
    /// The first input when it was stored and dense (its own estimate if it stays alone).
    single: Option<Arc<[u8]>>,
}

impl Default for SketchMerger {
    fn default() -> Self {
        Self {
            union: new_union(),
            union_used: false,
            regs: None,
            inputs: 0,
            single: None,
        }
    }
}

impl SketchMerger {
    pub fn add(&mut self, sketch: &UserSketch) {
        match &sketch.repr {
            Repr::Live(s) if s.is_empty() => {}
            Repr::Live(s) => {
                self.union.update(s);
                self.union_used = true;
                self.inputs += 1;
            }
            Repr::Stored(b) => {
                // Checked when stored; an error here cannot happen and would only skip it.
                let _ = self.add_stored(b, Some(b));
            }
        }
    }

    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<(), SketchError> {
        self.add_stored(bytes, None)
    }

    fn add_stored(&mut self, bytes: &[u8], shared: Option<&Arc<[u8]>>) -> Result<(), SketchError> {
        match Form::parse(bytes)? {
            Form::Empty => return Ok(()),
            Form::Coupons(raw) => match &mut self.regs {
                // Already dense: the coupons land in the registers directly.
                Some(r) => r.add_coupons(raw),
                None => {
                    let s = HllSketch::deserialize(bytes).map_err(|e| err(e.to_string()))?;
                    self.union.update(&s);
                    self.union_used = true;
                }
            },
            Form::Other => {
                let s = HllSketch::deserialize(bytes).map_err(|e| err(e.to_string()))?;
                self.union.update(&s);
                self.union_used = true;
            }
            Form::Dense(d) => {
                let src_lg_k = match &d {
                    Dense::Hll8 { lg_k, .. } | Dense::Hll4 { lg_k, .. } => *lg_k,
                };
                let regs = self
                    .regs
                    .get_or_insert_with(|| Registers::new(src_lg_k.min(LG_K)));
                regs.add_dense(&d);
                // A larger sketch is folded down to LG_K, as the library's union does, so it
                // is not "itself" any more.
                if self.inputs == 0 && src_lg_k <= LG_K {
                    self.single = Some(shared.cloned().unwrap_or_else(|| bytes.into()));
                }
            }
        }
        self.inputs += 1;
        Ok(())
    }

    /// A union of several sketches given as its registers: merged like a stored dense sketch,
    /// but never "the one input itself" (its estimate is the composite one, as that union's).
    pub(crate) fn add_dense_union(&mut self, d: &Dense<'_>) {
        let lg_k = match d {
            Dense::Hll8 { lg_k, .. } | Dense::Hll4 { lg_k, .. } => *lg_k,
        };
        self.regs
            .get_or_insert_with(|| Registers::new(lg_k.min(LG_K)))
            .add_dense(d);
        self.inputs += 1;
    }

    /// Everything merged as registers, when the result is dense.
    fn dense(&self) -> Result<Option<Registers>, SketchError> {
        let mut regs = self.regs.as_ref().map(|r| Registers {
            lg_k: r.lg_k,
            regs: r.regs.clone(),
        });
        if self.union_used {
            let bytes = self.union.to_sketch(HllType::Hll8).serialize();
            match Form::parse(&bytes)? {
                Form::Dense(d) => {
                    let lg_k = match &d {
                        Dense::Hll8 { lg_k, .. } | Dense::Hll4 { lg_k, .. } => (*lg_k).min(LG_K),
                    };
                    regs.get_or_insert_with(|| Registers::new(lg_k))
                        .add_dense(&d);
                }
                Form::Coupons(raw) => {
                    if let Some(r) = regs.as_mut() {
                        r.add_coupons(raw);
                    }
                }
                Form::Empty => {}
                Form::Other => return Err(err("union produced an unexpected form")),
            }
        }
        Ok(regs)
    }

    /// The result as a sketch: the one input itself, the merged registers, or the union.
    fn result(&self) -> Result<Result<HllSketch, Arc<[u8]>>, SketchError> {
        if self.inputs == 1 {
            if let Some(b) = &self.single {
                return Ok(Err(b.clone()));
            }
            if self.regs.is_none() {
                return Ok(Ok(self.union.to_sketch(HllType::Hll8)));
            }
        }
        if self.regs.is_none() {
            // Live sketches and coupons only: the library's union is the answer when it is
            // coupons, or dense and already estimating by its registers (the usual case).
            let s = self.union.to_sketch(HllType::Hll8);
            if s.estimate() == s.composite_estimate() || s.serialize()[7] & 3 != MODE_HLL {
                return Ok(Ok(s));
            }
        }
        Ok(Ok(match self.dense()? {
            Some(r) => r.to_sketch()?,
            None => self.union.to_sketch(HllType::Hll8),
        }))
    }

    pub fn estimate(&self) -> f64 {
        match self.result() {
            Ok(Ok(s)) => s.estimate(),
            Ok(Err(b)) => HllSketch::deserialize(&b).map_or(0.0, |s| s.estimate()),
            Err(_) => 0.0,
        }
    }

    /// The union of `sketches` in stored form: what the rollup keeps and what a reader cuts
    /// from the same sketches, byte for byte.
    pub fn union_of<'a>(sketches: impl IntoIterator<Item = &'a UserSketch>) -> UserSketch {
        let mut m = Self::default();
        for s in sketches {
            m.add(s);
        }
        m.finish().into_stored()
    }

    pub fn finish(self) -> UserSketch {
        let repr = match self.result() {
            Ok(Ok(s)) => Repr::Live(s),
            Ok(Err(b)) => Repr::Stored(b),
            Err(_) => Repr::Live(new_hll8()),
        };
        UserSketch { repr }
    }
}
