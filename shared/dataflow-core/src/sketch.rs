//! Mergeable distinct-count sketch of user ids: Apache DataSketches HLL, so Spark, Druid and
//! DuckDB extensions can read the bytes we write.
//!
//! Two forms: a *live* sketch that takes updates (HLL_8 registers, fastest to update), and a
//! *stored* one that keeps its serialized bytes (HLL_4 when dense: half the registers' memory)
//! and is never decoded. The read side holds stored sketches and merges them straight from
//! their bytes ([`SketchMerger`]): a dense merge is a byte-wise maximum over the registers, and
//! the estimate is DataSketches' own, computed on the merged registers.

use std::sync::Arc;

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{Coupon, HllSketch, HllType, HllUnion};

/// lgK 16: unions are off by at most ~1.1% on the analytics bench's ranges (0.41% standard
/// error; lgK 14 missed 1.5% on some ranges, docs/benchmarks.md). A dense sketch is 32 KiB
/// stored; below 6,144 distinct users it stays a list of 4-byte coupons.
pub const LG_K: u8 = 16;

#[derive(Debug, thiserror::Error)]
#[error("invalid users sketch: {0}")]
pub struct SketchError(String);

fn err(msg: impl Into<String>) -> SketchError {
    SketchError(msg.into())
}

#[derive(Clone)]
enum Repr {
    Live(HllSketch),
    Stored(Arc<[u8]>),
}

/// A distinct-users sketch, live or stored (see the module's comment).
#[derive(Clone)]
pub struct UserSketch {
    repr: Repr,
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

fn new_hll8() -> HllSketch {
    // LG_K is a valid constant (4..=21), so construction cannot fail.
    match HllSketch::new(LG_K, HllType::Hll8) {
        Ok(s) => s,
        Err(_) => unreachable!("LG_K is within the supported range"),
    }
}

fn new_union() -> HllUnion {
    match HllUnion::new(LG_K) {
        Ok(u) => u,
        Err(_) => unreachable!("LG_K is within the supported range"),
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

// DataSketches HLL binary layout (the same in Java, C++ and Rust): an 8-byte header, then per
// mode a preamble and the payload.
const FAMILY_HLL: u8 = 7;
const FLAG_EMPTY: u8 = 4;
const FLAG_COMPACT: u8 = 8;
const FLAG_OUT_OF_ORDER: u8 = 16;
const MODE_LIST: u8 = 0;
const MODE_SET: u8 = 1;
const MODE_HLL: u8 = 2;
const TGT_HLL4: u8 = 0;
const TGT_HLL8: u8 = 2;
const HLL_PREAMBLE: usize = 40;
const AUX_TOKEN: u8 = 15;
const SLOT_MASK: u32 = (1 << 26) - 1;
const MAX_VALUE: u8 = 63;

/// What a serialized sketch holds, borrowed from its bytes.
enum Form<'a> {
    Empty,
    /// Little-endian coupons (`value << 26 | slot`), empty slots (0) included when not compact.
    Coupons(&'a [u8]),
    Dense(Dense<'a>),
    /// HLL_6 registers: merged through DataSketches.
    Other,
}

enum Dense<'a> {
    Hll8 {
        lg_k: u8,
        regs: &'a [u8],
    },
    Hll4 {
        lg_k: u8,
        cur_min: u8,
        packed: &'a [u8],
        aux: &'a [u8],
    },
}

impl<'a> Form<'a> {
    /// Checks the layout (lengths, lgK, register values) without decoding.
    fn parse(b: &'a [u8]) -> Result<Self, SketchError> {
        if b.len() < 8 {
            return Err(err("shorter than its header"));
        }
        let (pre_ints, version, family, lg_k, lg_arr, flags, state, mode) =
            (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
        if family != FAMILY_HLL || version != 1 {
            return Err(err("not a DataSketches HLL sketch"));
        }
        if !(4..=21).contains(&lg_k) {
            return Err(err(format!("lgK {lg_k} out of range")));
        }
        let compact = flags & FLAG_COMPACT != 0;
        let tgt = (mode >> 2) & 3;
        match mode & 3 {
            MODE_LIST | MODE_SET if flags & FLAG_EMPTY != 0 => Ok(Form::Empty),
            MODE_LIST => {
                let count = if compact {
                    state as usize
                } else {
                    1usize << lg_arr.min(26)
                };
                coupons(b, pre_ints, 2, 8, count)
            }
            MODE_SET => {
                let n = b.get(8..12).map_or(0, le32) as usize;
                let count = if compact { n } else { 1usize << lg_arr.min(26) };
                coupons(b, pre_ints, 3, 12, count)
            }
            MODE_HLL => {
                if pre_ints != 10 || b.len() < HLL_PREAMBLE {
                    return Err(err("HLL preamble truncated"));
                }
                let k = 1usize << lg_k;
                let body = &b[HLL_PREAMBLE..];
                match tgt {
                    TGT_HLL8 => {
                        let regs = body
                            .get(..k)
                            .ok_or_else(|| err("HLL_8 registers truncated"))?;
                        if regs.iter().any(|v| *v > MAX_VALUE) {
                            return Err(err("HLL_8 register value out of range"));
                        }
                        Ok(Form::Dense(Dense::Hll8 { lg_k, regs }))
                    }
                    TGT_HLL4 => {
                        let cur_min = state;
                        if cur_min > MAX_VALUE - AUX_TOKEN {
                            return Err(err("HLL_4 minimum out of range"));
                        }
                        let aux_count = u32::from_le_bytes([b[36], b[37], b[38], b[39]]) as usize;
                        if aux_count > k {
                            return Err(err("HLL_4 exceptions exceed k"));
                        }
                        let aux_slots = match (compact, aux_count) {
                            (_, 0) => 0,
                            (true, n) => n,
                            (false, _) => 1usize << lg_arr.min(26),
                        };
                        let packed = body
                            .get(..k / 2)
                            .ok_or_else(|| err("HLL_4 registers truncated"))?;
                        let aux = body
                            .get(k / 2..k / 2 + aux_slots * 4)
                            .ok_or_else(|| err("HLL_4 exceptions truncated"))?;
                        if aux.chunks_exact(4).any(|c| {
                            (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) >> 26) as u8 > MAX_VALUE
                        }) {
                            return Err(err("HLL_4 exception value out of range"));
                        }
                        Ok(Form::Dense(Dense::Hll4 {
                            lg_k,
                            cur_min,
                            packed,
                            aux,
                        }))
                    }
                    _ => Ok(Form::Other),
                }
            }
            _ => Err(err("unknown sketch mode")),
        }
    }
}

fn coupons<'a>(
    b: &'a [u8],
    pre_ints: u8,
    want: u8,
    start: usize,
    count: usize,
) -> Result<Form<'a>, SketchError> {
    if pre_ints != want {
        return Err(err("coupon preamble does not match its mode"));
    }
    count
        .checked_mul(4)
        .and_then(|n| b.get(start..start.checked_add(n)?))
        .map(Form::Coupons)
        .ok_or_else(|| err("coupons truncated"))
}

fn le32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

/// Merged registers at one lgK.
struct Registers {
    lg_k: u8,
    regs: Box<[u8]>,
}

impl Registers {
    fn new(lg_k: u8) -> Self {
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

    fn add_coupons(&mut self, raw: &[u8]) {
        for c in raw.chunks_exact(4).map(le32).filter(|c| *c != 0) {
            self.set_max((c & SLOT_MASK) as usize, (c >> 26) as u8);
        }
    }

    fn add_dense(&mut self, d: &Dense<'_>) {
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
    fn to_sketch(&self) -> Result<HllSketch, SketchError> {
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
    fn add_dense_union(&mut self, d: &Dense<'_>) {
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

/// The unions of every suffix of a run of up to 32 sketches (`run[lo..]` for each `lo`: a
/// month's days from any day to its end, or, the run reversed, from its start to any day),
/// held as the points where each register's running maximum, taken from the end of the run,
/// steps up. A month's edge unions for every cut fit in ~150 KiB at 500 types (32 KiB per
/// cut as sketches), and any of them is rebuilt in memory in a fraction of a millisecond.
/// Each union it gives is, byte for byte, [`SketchMerger::union_of`] of the same sketches;
/// the ones it cannot give that way (fewer than two sketches, or no dense one among them) it
/// does not give.
///
/// Layout (the same in memory and stored): `[1, lgK, len, last_dense]`; a nibble per register
/// (low nibble first): its number of steps; then per register, per step from the end of the
/// run, one byte `position << 3 | rise` where the value rose by `rise` (1..=7), or a rise of 0
/// and the new value in the next byte.
pub struct SuffixUnions {
    bytes: Box<[u8]>,
}

const STEPS_VERSION: u8 = 1;
const STEPS_HEADER: usize = 4;

impl SuffixUnions {
    /// `None` unless every sketch is stored, dense at [`LG_K`] or a coupon list, with at least
    /// one dense, the run has 2 to 32 sketches, and no register steps more than 15 times.
    pub fn new(run: &[&UserSketch]) -> Option<Self> {
        if !(2..=32).contains(&run.len()) {
            return None;
        }
        let mut days = Vec::with_capacity(run.len());
        let mut last_dense = None;
        for (i, s) in run.iter().enumerate() {
            let Repr::Stored(b) = &s.repr else {
                return None;
            };
            let mut r = Registers::new(LG_K);
            match Form::parse(b).ok()? {
                Form::Dense(d) => {
                    match &d {
                        Dense::Hll8 { lg_k, .. } | Dense::Hll4 { lg_k, .. } if *lg_k == LG_K => {}
                        _ => return None,
                    }
                    r.add_dense(&d);
                    last_dense = Some(i);
                }
                Form::Coupons(raw) => r.add_coupons(raw),
                Form::Empty | Form::Other => return None,
            }
            days.push(r.regs);
        }
        let k = 1usize << LG_K;
        let mut out = vec![STEPS_VERSION, LG_K, run.len() as u8, last_dense? as u8];
        out.resize(STEPS_HEADER + k / 2, 0);
        let mut steps = Vec::with_capacity(2 * k);
        for r in 0..k {
            let (mut top, mut count) = (0u8, 0u8);
            for pos in (0..days.len()).rev() {
                let v = days[pos][r];
                if v > top {
                    let rise = v - top;
                    if rise < 8 {
                        steps.push((pos as u8) << 3 | rise);
                    } else {
                        steps.push((pos as u8) << 3);
                        steps.push(v);
                    }
                    top = v;
                    count += 1;
                }
            }
            if count > 15 {
                return None;
            }
            out[STEPS_HEADER + r / 2] |= count << (4 * (r % 2));
        }
        out.extend_from_slice(&steps);
        Some(Self {
            bytes: out.into_boxed_slice(),
        })
    }

    /// Checks stored bytes: every step in range, positions falling and values rising.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let [version, lg_k, len, last_dense] = match bytes.get(..STEPS_HEADER) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => return Err(err("step table shorter than its header")),
        };
        if version != STEPS_VERSION || lg_k != LG_K || !(2..=32).contains(&len) || last_dense >= len
        {
            return Err(err("step table header out of range"));
        }
        let k = 1usize << lg_k;
        let counts = bytes
            .get(STEPS_HEADER..STEPS_HEADER + k / 2)
            .ok_or_else(|| err("step table counts truncated"))?;
        let mut at = STEPS_HEADER + k / 2;
        for r in 0..k {
            let count = (counts[r / 2] >> (4 * (r % 2))) & 15;
            let (mut top, mut last_pos) = (0u8, len);
            for _ in 0..count {
                let b = *bytes.get(at).ok_or_else(|| err("step table truncated"))?;
                at += 1;
                let (pos, rise) = (b >> 3, b & 7);
                let v = match rise {
                    0 => {
                        let v = *bytes.get(at).ok_or_else(|| err("step table truncated"))?;
                        at += 1;
                        v
                    }
                    rise => top + rise,
                };
                if pos >= last_pos || v <= top || v > MAX_VALUE {
                    return Err(err("step table out of order"));
                }
                (top, last_pos) = (v, pos);
            }
        }
        if at != bytes.len() {
            return Err(err("step table has trailing bytes"));
        }
        Ok(Self {
            bytes: bytes.into(),
        })
    }

    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn len(&self) -> usize {
        usize::from(self.bytes[2])
    }

    /// Merges the union of `run[lo..]` into `m`, as adding [`SketchMerger::union_of`] of those
    /// sketches would; `false` (nothing merged) when it is not one this can give.
    pub fn add_union_from(&self, lo: usize, m: &mut SketchMerger) -> bool {
        if lo + 2 > self.len() || lo > usize::from(self.bytes[3]) {
            return false;
        }
        let k = 1usize << self.bytes[1];
        let counts = &self.bytes[STEPS_HEADER..STEPS_HEADER + k / 2];
        let steps = &self.bytes[STEPS_HEADER + k / 2..];
        let mut regs = vec![0u8; k];
        let mut at = 0usize;
        for (r, reg) in regs.iter_mut().enumerate() {
            let count = (counts[r / 2] >> (4 * (r % 2))) & 15;
            let mut top = 0u8;
            for _ in 0..count {
                // Checked when built or read: every step and escape byte is there.
                let b = steps[at];
                at += 1;
                top = match b & 7 {
                    0 => {
                        at += 1;
                        steps[at - 1]
                    }
                    rise => top + rise,
                };
                // Positions fall: the last step at or after `lo` holds the maximum.
                if usize::from(b >> 3) >= lo {
                    *reg = top;
                }
            }
        }
        m.add_dense_union(&Dense::Hll8 {
            lg_k: self.bytes[1],
            regs: &regs,
        });
        true
    }

    /// The union of `run[lo..]` as a stored sketch, when it is one this can give.
    pub fn union_from(&self, lo: usize) -> Option<UserSketch> {
        let mut m = SketchMerger::default();
        self.add_union_from(lo, &mut m)
            .then(|| m.finish().into_stored())
    }

    pub fn heap_bytes(&self) -> usize {
        self.bytes.len() + 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_err(est: f64, exact: f64) -> f64 {
        (est - exact).abs() / exact
    }

    #[test]
    fn small_sets_are_exact() {
        let mut s = UserSketch::new();
        for i in 0..100 {
            s.insert(&format!("u{i}"));
            s.insert(&format!("u{i}"));
        }
        assert_eq!(s.estimate().round(), 100.0);
    }

    #[test]
    fn roundtrip_keeps_estimate() {
        let mut s = UserSketch::new();
        for i in 0..50_000 {
            s.insert(&format!("user-{i}"));
        }
        let bytes = s.to_bytes();
        assert!(
            (32_768..33_500).contains(&bytes.len()),
            "HLL_4 at lgK 16 is ~32 KiB dense, got {}",
            bytes.len()
        );
        let back = UserSketch::from_bytes(&bytes).unwrap();
        assert_eq!(back.estimate(), s.estimate());
        assert!(UserSketch::from_bytes(b"garbage").is_err());
    }

    /// Overlapping partials merged must estimate the union, within the product's 1.5% bound.
    #[test]
    fn merged_partials_stay_within_error_bound() {
        let mut errors = Vec::new();
        for trial in 0..20u32 {
            let mut merger = SketchMerger::default();
            let n_files = 25;
            let mut exact = std::collections::HashSet::new();
            for f in 0..n_files {
                let mut part = UserSketch::new();
                // Each file sees a window of users overlapping its neighbours.
                for u in (f * 2_000)..(f * 2_000 + 6_000) {
                    let id = format!("t{trial}-user-{u}");
                    part.insert(&id);
                    exact.insert(id);
                }
                let bytes = part.to_bytes();
                merger.add_bytes(&bytes).unwrap();
            }
            errors.push(rel_err(merger.estimate(), exact.len() as f64));
        }
        errors.sort_by(|a, b| a.total_cmp(b));
        let p95 = errors[(errors.len() * 95 / 100).min(errors.len() - 1)];
        assert!(p95 < 0.015, "p95 relative error {p95}");
    }

    fn sketch(lg_k: u8, ids: std::ops::Range<u32>, salt: u32) -> HllSketch {
        let mut s = HllSketch::new(lg_k, HllType::Hll8).unwrap();
        for i in ids {
            s.update(raw_bytes::from_str(&format!("{salt}-{i}")));
        }
        s
    }

    /// Serialized as the ETL stores it (HLL_4 through a union) or as HLL_8.
    fn stored(s: &HllSketch, hll8: bool) -> Vec<u8> {
        let mut u = HllUnion::new(s.lg_config_k()).unwrap();
        u.update(s);
        u.to_sketch(if hll8 { HllType::Hll8 } else { HllType::Hll4 })
            .serialize()
    }

    fn registers(s: &HllSketch) -> Vec<u8> {
        let b = {
            let mut u = HllUnion::new(s.lg_config_k()).unwrap();
            u.update(s);
            u.to_sketch(HllType::Hll8).serialize()
        };
        match Form::parse(&b).unwrap() {
            Form::Dense(Dense::Hll8 { regs, .. }) => regs.to_vec(),
            Form::Coupons(raw) => {
                let mut r = Registers::new(s.lg_config_k());
                r.add_coupons(raw);
                r.regs.to_vec()
            }
            _ => Vec::new(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Merging stored bytes gives DataSketches' own union: the same registers, the same
        /// composite estimate; a union of small sets stays the library's coupon estimate.
        #[test]
        fn merger_is_a_datasketches_union(
            parts in proptest::collection::vec(
                (proptest::sample::select(vec![12u8, 14, 16, 17]), 0u32..40_000, 1u32..20_000, proptest::bool::ANY),
                1..6,
            )
        ) {
            let mut ours = SketchMerger::default();
            let mut theirs = HllUnion::new(LG_K).unwrap();
            let mut dense = 0;
            for (i, (lg_k, start, len, hll8)) in parts.iter().enumerate() {
                let s = sketch(*lg_k, *start..start + len, i as u32 % 2);
                let bytes = stored(&s, *hll8);
                dense += usize::from(bytes[7] & 3 == MODE_HLL);
                ours.add_bytes(&bytes).unwrap();
                theirs.update(&HllSketch::deserialize(&bytes).unwrap());
            }
            // One sketch alone is the library's union of it, except a dense one larger than
            // LG_K, folded down (its own estimator no longer applies); any other dense result
            // is the library's composite estimate; a coupon result its coupon estimate.
            let their_bytes = theirs.to_sketch(HllType::Hll8).serialize();
            let alone = parts.len() == 1 && (dense == 0 || parts[0].0 <= LG_K);
            let expected = if their_bytes[7] & 3 == MODE_HLL && !alone {
                theirs.composite_estimate()
            } else {
                theirs.estimate()
            };
            let got = ours.estimate();
            proptest::prop_assert!(
                (got - expected).abs() <= expected.abs() * 1e-9,
                "ours {got} theirs {expected}"
            );
            let finished = ours.finish();
            let live = HllSketch::deserialize(&finished.to_bytes()).unwrap();
            let want = theirs.to_sketch(HllType::Hll8);
            proptest::prop_assert_eq!(live.lg_config_k(), want.lg_config_k());
            proptest::prop_assert_eq!(registers(&live), registers(&want));
        }

        /// However the inputs are grouped into partial unions, the answer is the same: what a
        /// cached partial union of a range's days or months relies on.
        #[test]
        fn grouping_does_not_change_the_answer(
            parts in proptest::collection::vec(
                (proptest::sample::select(vec![14u8, 16]), 0u32..30_000, 1u32..12_000, proptest::bool::ANY),
                1..7,
            ),
            split in 0usize..7,
        ) {
            let stored_parts: Vec<Vec<u8>> = parts
                .iter()
                .enumerate()
                .map(|(i, (lg_k, start, len, live))| {
                    let s = sketch(*lg_k, *start..start + len, i as u32 % 3);
                    if *live && *lg_k == LG_K {
                        // A live sketch, as the ETL holds it, through its own bytes.
                        let mut u = UserSketch::new();
                        for id in *start..start + len {
                            u.insert(&format!("{}-{id}", i as u32 % 3));
                        }
                        u.to_bytes()
                    } else {
                        stored(&s, false)
                    }
                })
                .collect();
            let mut direct = SketchMerger::default();
            for b in &stored_parts {
                direct.add_bytes(b).unwrap();
            }
            let split = split.min(stored_parts.len());
            let mut whole = SketchMerger::default();
            for group in [&stored_parts[..split], &stored_parts[split..]] {
                let mut g = SketchMerger::default();
                for b in group {
                    g.add(&UserSketch::from_bytes(b).unwrap());
                }
                whole.add(&g.finish().into_stored());
            }
            proptest::prop_assert_eq!(whole.estimate(), direct.estimate());
            let (a, b) = (whole.finish().to_bytes(), direct.finish().to_bytes());
            let (a, b) = (HllSketch::deserialize(&a).unwrap(), HllSketch::deserialize(&b).unwrap());
            proptest::prop_assert_eq!(registers(&a), registers(&b));
        }

        /// Every suffix union it gives is the merger's union of the same sketches, byte for
        /// byte; it gives one whenever the suffix has two sketches and a dense one.
        #[test]
        fn suffix_unions_are_the_mergers(
            parts in proptest::collection::vec((0u32..30_000, 1u32..14_000), 2..7),
        ) {
            let run: Vec<UserSketch> = parts
                .iter()
                .enumerate()
                .map(|(i, (start, len))| {
                    let s = sketch(LG_K, *start..start + len, i as u32 % 3);
                    UserSketch::from_bytes(&stored(&s, i % 2 == 1)).unwrap()
                })
                .collect();
            let refs: Vec<&UserSketch> = run.iter().collect();
            let dense: Vec<bool> = run.iter().map(|s| s.to_bytes()[7] & 3 == MODE_HLL).collect();
            match SuffixUnions::new(&refs) {
                None => proptest::prop_assert!(!dense.contains(&true)),
                Some(su) => {
                    let su = SuffixUnions::from_bytes(su.to_bytes()).unwrap();
                    for lo in 0..run.len() {
                        let want = lo + 2 <= run.len() && dense[lo..].contains(&true);
                        match su.union_from(lo) {
                            Some(u) => {
                                proptest::prop_assert!(want, "lo {}", lo);
                                proptest::prop_assert_eq!(
                                    u.to_bytes(),
                                    SketchMerger::union_of(&run[lo..]).to_bytes()
                                );
                            }
                            None => proptest::prop_assert!(!want, "lo {}", lo),
                        }
                    }
                }
            }
        }

        /// Any bytes: an error or a sketch, never a panic, whichever way they come in.
        #[test]
        fn hostile_bytes_never_panic(
            flips in proptest::collection::vec((0usize..33_000, proptest::num::u8::ANY), 0..8),
            cut in 0usize..34_000,
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let base = stored(&sketch(16, 0..30_000, 7), false);
            let mut b = base.clone();
            for (at, v) in flips {
                if let Some(x) = b.get_mut(at) {
                    *x = v;
                }
            }
            b.truncate(cut.max(1));
            for bytes in [&b, &raw] {
                let mut m = SketchMerger::default();
                m.add_bytes(&base).unwrap();
                let _ = m.add_bytes(bytes);
                let _ = m.estimate();
                if let Ok(s) = UserSketch::from_bytes(bytes) {
                    let _ = s.estimate();
                    let mut m = SketchMerger::default();
                    m.add(&s);
                    m.add(&s);
                    let _ = m.finish().to_bytes();
                }
            }
        }
    }

    /// A step table with bytes flipped or cut is refused or, if it still reads as one,
    /// answers without panicking; one with more than 15 steps in a register is not built.
    #[test]
    fn hostile_step_tables_never_panic() {
        let days: Vec<UserSketch> = (0..6u32)
            .map(|d| {
                UserSketch::from_bytes(&stored(&sketch(16, d * 3_000..d * 3_000 + 9_000, 1), false))
                    .unwrap()
            })
            .collect();
        let refs: Vec<&UserSketch> = days.iter().collect();
        let good = SuffixUnions::new(&refs).unwrap().to_bytes().to_vec();
        assert!(good.len() < 2 * 65_536, "{} bytes", good.len());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..300 {
            let mut b = good.clone();
            for _ in 0..1 + round % 4 {
                let at = next() as usize % b.len();
                b[at] = next() as u8;
            }
            if round % 3 == 0 {
                b.truncate(next() as usize % b.len());
            }
            if let Ok(t) = SuffixUnions::from_bytes(&b) {
                for lo in 0..8 {
                    let mut m = SketchMerger::default();
                    t.add_union_from(lo, &mut m);
                    let _ = m.estimate();
                }
            }
        }
        assert!(SuffixUnions::from_bytes(&good[..good.len() - 1]).is_err());
        assert!(SuffixUnions::from_bytes(&[]).is_err());
        // Sixteen days each one higher than the next in register 0: sixteen steps.
        let rising: Vec<UserSketch> = (0..16u8)
            .map(|d| {
                let mut r = Registers::new(LG_K);
                r.regs.fill(1);
                r.regs[0] = 20 - d;
                UserSketch {
                    repr: Repr::Live(r.to_sketch().unwrap()),
                }
                .into_stored()
            })
            .collect();
        let refs: Vec<&UserSketch> = rising.iter().collect();
        assert!(SuffixUnions::new(&refs).is_none());
        assert!(SuffixUnions::new(&refs[..15]).is_some());
    }

    /// A stored sketch is its bytes, half a live one's memory when dense, and merges the same.
    #[test]
    fn stored_sketches_stay_compact_and_merge_like_live_ones() {
        let mut live = UserSketch::new();
        for i in 0..40_000 {
            live.insert(&format!("user-{i}"));
        }
        let stored = live.clone().into_stored();
        assert!(stored.heap_bytes() < 34_000, "{}", stored.heap_bytes());
        assert!(live.heap_bytes() >= 65_536);
        assert_eq!(stored.estimate(), live.estimate());
        let mut other = UserSketch::new();
        for i in 30_000..60_000 {
            other.insert(&format!("user-{i}"));
        }
        let mut a = SketchMerger::default();
        a.add(&live);
        a.add(&other);
        let mut b = SketchMerger::default();
        b.add(&stored);
        b.add(&other.clone().into_stored());
        assert_eq!(a.estimate(), b.estimate());
        assert!(rel_err(b.estimate(), 60_000.0) < 0.015, "{}", b.estimate());
        // One stored sketch alone keeps its own (HIP) estimate.
        let mut one = SketchMerger::default();
        one.add(&stored);
        assert_eq!(one.estimate(), live.estimate());
        // Inserting into a stored sketch makes it live again, with nothing lost.
        let mut grown = stored.clone();
        grown.insert("someone-new");
        assert!(grown.estimate() >= stored.estimate());
    }

    /// The format's extremes: the smallest and largest sketches it allows merge (at the smaller
    /// size, as the library's union does), and 10 MB that only look like a sketch are refused.
    #[test]
    fn extreme_sketch_sizes_and_inputs() {
        let tiny = stored(&sketch(4, 0..1_000, 1), false);
        let huge = stored(&sketch(21, 0..3_000_000, 1), true);
        assert_eq!(huge.len(), HLL_PREAMBLE + (1 << 21));
        let mut m = SketchMerger::default();
        m.add_bytes(&huge).unwrap();
        assert!(
            rel_err(m.estimate(), 3_000_000.0) < 0.01,
            "{}",
            m.estimate()
        );
        m.add_bytes(&tiny).unwrap();
        let s = HllSketch::deserialize(&m.finish().to_bytes()).unwrap();
        assert_eq!(s.lg_config_k(), 4);
        let mut theirs = HllUnion::new(LG_K).unwrap();
        theirs.update(&HllSketch::deserialize(&huge).unwrap());
        theirs.update(&HllSketch::deserialize(&tiny).unwrap());
        assert_eq!(registers(&s), registers(&theirs.to_sketch(HllType::Hll8)));
        // A valid header in front of 10 MB of bytes out of range.
        let mut big = huge[..HLL_PREAMBLE].to_vec();
        big.resize(10 << 20, 0xff);
        assert!(UserSketch::from_bytes(&big).is_err());
        assert!(SketchMerger::default().add_bytes(&big).is_err());
        assert!(UserSketch::from_bytes(&vec![0u8; 10 << 20]).is_err());
    }

    /// A lake written at lgK 14 still answers, at lgK 14's precision, merged with new sketches.
    #[test]
    fn older_smaller_sketches_merge_at_their_size() {
        let old = stored(&sketch(14, 0..50_000, 1), false);
        let new = stored(&sketch(16, 25_000..75_000, 1), false);
        let mut m = SketchMerger::default();
        m.add_bytes(&old).unwrap();
        m.add_bytes(&new).unwrap();
        let s = HllSketch::deserialize(&m.finish().to_bytes()).unwrap();
        assert_eq!(s.lg_config_k(), 14);
        assert!(rel_err(s.estimate(), 75_000.0) < 0.03, "{}", s.estimate());
    }
}
