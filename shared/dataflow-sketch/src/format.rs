//! The DataSketches HLL byte layout, read in place: what a serialized sketch holds, with its
//! lengths, lgK and register values checked, borrowed from its bytes.

use crate::{err, SketchError};

// DataSketches HLL binary layout (the same in Java, C++ and Rust): an 8-byte header, then per
// mode a preamble and the payload.
pub(crate) const FAMILY_HLL: u8 = 7;
pub(crate) const FLAG_EMPTY: u8 = 4;
pub(crate) const FLAG_COMPACT: u8 = 8;
pub(crate) const FLAG_OUT_OF_ORDER: u8 = 16;
pub(crate) const MODE_LIST: u8 = 0;
pub(crate) const MODE_SET: u8 = 1;
pub(crate) const MODE_HLL: u8 = 2;
pub(crate) const TGT_HLL4: u8 = 0;
pub(crate) const TGT_HLL8: u8 = 2;
pub(crate) const HLL_PREAMBLE: usize = 40;
pub(crate) const AUX_TOKEN: u8 = 15;
pub(crate) const SLOT_MASK: u32 = (1 << 26) - 1;
pub(crate) const MAX_VALUE: u8 = 63;

/// What a serialized sketch holds, borrowed from its bytes.
pub(crate) enum Form<'a> {
    Empty,
    /// Little-endian coupons (`value << 26 | slot`), empty slots (0) included when not compact.
    Coupons(&'a [u8]),
    Dense(Dense<'a>),
    /// HLL_6 registers: merged through DataSketches.
    Other,
}

pub(crate) enum Dense<'a> {
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
    pub(crate) fn parse(b: &'a [u8]) -> Result<Self, SketchError> {
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

pub(crate) fn le32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}
