//! Step tables: every suffix union of a month's days in ~1/7 of the sketches' bytes.

use crate::format::{Dense, Form, MAX_VALUE};
use crate::merger::Registers;
use crate::user::Repr;
use crate::{err, SketchError, SketchMerger, UserSketch, LG_K};

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
