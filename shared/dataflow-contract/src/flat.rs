//! A scanner for the common line shape: one object of string, integer and literal members
//! without escapes, whose nested values (`properties`) serde_json checks. It returns `None` on
//! anything else (escapes, control characters, fractions, negative or long numbers, bad syntax),
//! and the caller parses the line with serde_json, which stays the reference: for every line
//! the two agree (property-tested). Skipping serde's visitor machinery for the flat members cut
//! the aggregate path's CPU by ~16% (docs/benchmarks.md).

use std::borrow::Cow;

use serde::de::IgnoredAny;

use super::{Field, RawEvent};

// Inlined into its one caller: the event it returns is ~200 bytes, copied twice otherwise.
#[inline(always)]
pub(super) fn scan(line: &str) -> Option<RawEvent<'_>> {
    let b = line.as_bytes();
    let mut i = ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = ws(b, i + 1);
    let mut ev = RawEvent::default();
    if *b.get(i)? == b'}' {
        return (ws(b, i + 1) == b.len()).then_some(ev);
    }
    loop {
        if *b.get(i)? != b'"' {
            return None;
        }
        let key_end = string_end(b, i + 1)?;
        // Names compared as bytes: no `&str` is made for a name or an unused value.
        let key = b.get(i + 1..key_end)?;
        let slot = if is(key, b"event_type") {
            Some(&mut ev.event_type)
        } else if is(key, b"user_id") {
            Some(&mut ev.user_id)
        } else if is(key, b"timestamp") {
            Some(&mut ev.timestamp)
        } else if is(key, b"event_id") {
            Some(&mut ev.event_id)
        } else {
            None
        };
        let is_properties = slot.is_none() && is(key, b"properties");
        i = ws(b, key_end + 1);
        if *b.get(i)? != b':' {
            return None;
        }
        i = ws(b, i + 1);
        let start = i;
        let (field, after) = match *b.get(i)? {
            b'"' => {
                let end = string_end(b, i + 1)?;
                let field = match slot {
                    Some(_) => Field::Str(Cow::Borrowed(line.get(i + 1..end)?)),
                    None => Field::Other,
                };
                (field, end + 1)
            }
            b'0'..=b'9' => integer(b, i)?,
            b't' => literal(b, i, b"true")?,
            b'f' => literal(b, i, b"false")?,
            b'n' => literal(b, i, b"null")?,
            b'{' | b'[' => (Field::Other, nested(line, i)?),
            _ => return None,
        };
        if let Some(slot) = slot {
            *slot = Some(field);
        } else if is_properties {
            ev.properties = Some(line.get(start..after)?);
        }
        i = ws(b, after);
        match *b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => return (ws(b, i + 1) == b.len()).then_some(ev),
            _ => return None,
        }
    }
}

/// `key == name` as fixed-size loads instead of a `memcmp` call.
#[inline(always)]
fn is<const N: usize>(key: &[u8], name: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(key).is_ok_and(|k| k == name)
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
#[inline]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The index of the closing quote of the string whose text starts at `i`; `None` for
/// escapes, control characters or no closing quote.
#[inline(always)]
fn string_end(b: &[u8], mut j: usize) -> Option<usize> {
    // Eight bytes at a time until one is special (it was a byte loop: 15% of the CPU).
    while let Some(word) = b.get(j..j + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let m = special(u64::from_le_bytes(w));
        if m != 0 {
            j += (m.trailing_zeros() / 8) as usize;
            break;
        }
        j += 8;
    }
    loop {
        match *b.get(j)? {
            b'"' => return Some(j),
            b'\\' | 0..=0x1f => return None,
            _ => j += 1,
        }
    }
}

/// The high bit of each byte of `w` that is a quote, a backslash or a control character,
/// exact up to the first such byte (borrows can flag bytes above a true hit, never below).
#[inline]
pub(super) fn special(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x;
    let quote = zero(w ^ (LO * u64::from(b'"')));
    let backslash = zero(w ^ (LO * u64::from(b'\\')));
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (quote | backslash | control) & HI
}

/// A non-negative integer of at most 18 digits without a leading zero (it fits i64 and
/// u64 alike, as serde_json reads it); fractions, exponents and the rest go to serde_json.
#[inline]
fn integer(b: &[u8], i: usize) -> Option<(Field<'static>, usize)> {
    let mut j = i;
    let mut n: i128 = 0;
    while let Some(&c @ b'0'..=b'9') = b.get(j) {
        n = n * 10 + i128::from(c - b'0');
        j += 1;
        if j - i > 18 {
            return None;
        }
    }
    if (b.get(i) == Some(&b'0') && j - i > 1) || matches!(b.get(j), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((Field::Int(n), j))
}

#[inline]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<(Field<'static>, usize)> {
    b.get(i..)?
        .starts_with(word)
        .then_some((Field::Other, i + word.len()))
}

/// An object or array at `i`: the index after it. Values nested deeper than 64 levels or
/// holding escapes (rare in `properties`) go to serde_json's check instead.
fn nested(line: &str, i: usize) -> Option<usize> {
    skip_nested(line, i).or_else(|| {
        let rest = line.get(i..)?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
        values.next()?.ok()?;
        Some(i + values.byte_offset())
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Want {
    /// A value, or `]` right after `[`.
    Value { or_end: bool },
    /// A member name, or `}` right after `{`.
    Key { or_end: bool },
    /// `,` or the current container's closing bracket.
    Next,
}

/// A strict subset of JSON (strings without escapes, depth at most 64); `None` for
/// anything else, valid or not.
pub(super) fn skip_nested(line: &str, mut i: usize) -> Option<usize> {
    let b = line.as_bytes();
    // One bit per open container, 1 for an object; `depth` of them are in use.
    let mut stack: u64 = 0;
    let mut depth = 0u32;
    let mut want = Want::Value { or_end: false };
    if !matches!(b.get(ws(b, i)), Some(b'{' | b'[')) {
        return None;
    }
    loop {
        i = ws(b, i);
        let c = *b.get(i)?;
        let close = match (want, c) {
            (Want::Value { or_end: true }, b']') | (Want::Key { or_end: true }, b'}') => true,
            (Want::Next, b']') => stack & 1 == 0,
            (Want::Next, b'}') => stack & 1 == 1,
            _ => false,
        };
        if close {
            stack >>= 1;
            // A close is only recognised inside a container (the first byte is one).
            depth = depth.saturating_sub(1);
            i += 1;
            if depth == 0 {
                return Some(i);
            }
            want = Want::Next;
            continue;
        }
        match (want, c) {
            (Want::Value { .. }, b'{' | b'[') => {
                if depth == 64 {
                    return None;
                }
                stack = (stack << 1) | u64::from(c == b'{');
                depth += 1;
                i += 1;
                want = if c == b'{' {
                    Want::Key { or_end: true }
                } else {
                    Want::Value { or_end: true }
                };
            }
            (Want::Value { .. }, _) => {
                i = match c {
                    b'"' => string_end(b, i + 1)? + 1,
                    b'-' | b'0'..=b'9' => number(b, i)?,
                    b't' => literal(b, i, b"true")?.1,
                    b'f' => literal(b, i, b"false")?.1,
                    b'n' => literal(b, i, b"null")?.1,
                    _ => return None,
                };
                want = Want::Next;
            }
            (Want::Key { .. }, b'"') => {
                i = ws(b, string_end(b, i + 1)? + 1);
                if *b.get(i)? != b':' {
                    return None;
                }
                i += 1;
                want = Want::Value { or_end: false };
            }
            (Want::Next, b',') => {
                i += 1;
                want = if stack & 1 == 1 {
                    Want::Key { or_end: false }
                } else {
                    Want::Value { or_end: false }
                };
            }
            _ => return None,
        }
    }
}

/// A JSON number at `i` (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`): the index
/// after it.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |i: usize| {
        i + b
            .get(i..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}
