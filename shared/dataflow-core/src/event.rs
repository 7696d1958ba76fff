//! The event contract: one JSON Lines line in, an accepted [`Event`] or a [`Reason`] it was rejected for.
//! See docs/event-contract.md. Parsing borrows from the line wherever the JSON has no escapes,
//! and reads only the fields the product keeps.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a line was rejected. The `code()` strings are part of the rejected-lines report contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidJson,
    NotAnObject,
    MissingEventType,
    InvalidEventType,
    MissingUserId,
    InvalidUserId,
    MissingTimestamp,
    InvalidTimestamp,
    InvalidEventId,
    LineTooLong,
    /// A valid timestamp outside the configured window (`ETL_MIN_DATE`, `ETL_MAX_FUTURE`).
    TimestampOutOfRange,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingEventType => "missing_event_type",
            Reason::InvalidEventType => "invalid_event_type",
            Reason::MissingUserId => "missing_user_id",
            Reason::InvalidUserId => "invalid_user_id",
            Reason::MissingTimestamp => "missing_timestamp",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::InvalidEventId => "invalid_event_id",
            Reason::LineTooLong => "line_too_long",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An accepted event, borrowing from its line where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Option<Cow<'a, str>>,
    pub user_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    /// Microseconds since the Unix epoch, UTC.
    pub event_time_us: i64,
    /// Days since the Unix epoch of the UTC calendar date of `event_time_us`.
    pub event_date: i32,
    /// The `properties` value as raw JSON text (any JSON type).
    pub properties: Option<&'a str>,
}

/// Earliest and latest accepted instants: years 1000..=9999 keep partition names `YYYY-MM-DD`.
const MIN_US: i64 = -30_610_224_000_000_000; // 1000-01-01T00:00:00Z
const MAX_US: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
const US_PER_DAY: i64 = 86_400_000_000;

/// A scalar field value as seen in the JSON, before validation.
#[derive(Debug, PartialEq)]
enum Field<'a> {
    Str(Cow<'a, str>),
    Int(i128),
    Other,
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::Int(v as i128))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field::Int(v as i128))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, PartialEq)]
struct RawEvent<'a> {
    event_type: Option<Field<'a>>,
    user_id: Option<Field<'a>>,
    timestamp: Option<Field<'a>>,
    event_id: Option<Field<'a>>,
    /// Raw JSON text of the value.
    properties: Option<&'a str>,
}

/// Field names, matched without allocating (a `Cow<str>` key would always be an owned String).
enum Key {
    EventType,
    UserId,
    Timestamp,
    EventId,
    Properties,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "event_type" => Key::EventType,
                    "user_id" => Key::UserId,
                    "timestamp" => Key::Timestamp,
                    "event_id" => Key::EventId,
                    "properties" => Key::Properties,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// `user_id` read from its raw JSON text, so that an integer of any size keeps its exact
/// decimal digits (serde_json would turn one beyond 64 bits into a float).
fn user_id_field(raw: &RawValue) -> Field<'_> {
    let text = raw.get();
    if text.starts_with('"') {
        return match serde_json::from_str::<&str>(text) {
            Ok(s) => Field::Str(Cow::Borrowed(s)),
            Err(_) => serde_json::from_str::<String>(text)
                .map_or(Field::Other, |s| Field::Str(Cow::Owned(s))),
        };
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Field::Other;
    }
    match text.parse::<i128>() {
        Ok(n) => Field::Int(n),
        // Beyond i128: the digits themselves ("-0" cannot get here: it fits).
        Err(_) => Field::Str(Cow::Borrowed(text)),
    }
}

/// Top level: an object becomes `Some(RawEvent)`, any other JSON value `None`.
struct Top<'a>(Option<RawEvent<'a>>);

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut ev = RawEvent::default();
                while let Some(key) = a.next_key::<Key>()? {
                    match key {
                        Key::EventType => ev.event_type = Some(a.next_value()?),
                        Key::UserId => ev.user_id = Some(user_id_field(a.next_value()?)),
                        Key::Timestamp => ev.timestamp = Some(a.next_value()?),
                        Key::EventId => ev.event_id = Some(a.next_value()?),
                        Key::Properties => ev.properties = Some(a.next_value::<&RawValue>()?.get()),
                        Key::Other => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Top(Some(ev)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Top(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Top(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one line (without its line terminator; a trailing `\r` is tolerated by the caller).
/// JSON text is UTF-8, so a line that is not is `invalid_json` wherever the bad byte sits.
pub fn parse_line(line: &[u8]) -> Result<Event<'_>, Reason> {
    let line = std::str::from_utf8(line).map_err(|_| Reason::InvalidJson)?;
    parse_line_str(line)
}

/// [`parse_line`] for text already known to be UTF-8. Callers that validate a whole chunk at
/// once use this: serde_json's `&[u8]` reader re-validates every string it meets, which cost
/// ~11% of the aggregate path's CPU.
pub fn parse_line_str(line: &str) -> Result<Event<'_>, Reason> {
    let raw = match flat::scan(line) {
        Some(raw) => raw,
        None => {
            let top: Top<'_> = serde_json::from_str(line).map_err(|_| Reason::InvalidJson)?;
            top.0.ok_or(Reason::NotAnObject)?
        }
    };
    validate(raw)
}

#[inline(always)]
fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, Reason> {
    let event_type = match raw.event_type {
        None => return Err(Reason::MissingEventType),
        Some(Field::Str(s)) if !is_blank(&s) => s,
        Some(_) => return Err(Reason::InvalidEventType),
    };
    let user_id = match raw.user_id {
        None => return Err(Reason::MissingUserId),
        Some(Field::Str(s)) if !is_blank(&s) => s,
        Some(Field::Int(i)) => Cow::Owned(i.to_string()),
        Some(_) => return Err(Reason::InvalidUserId),
    };
    let event_time_us = match raw.timestamp {
        None => return Err(Reason::MissingTimestamp),
        Some(Field::Str(s)) => parse_timestamp_str(&s).ok_or(Reason::InvalidTimestamp)?,
        Some(Field::Int(ms)) => ms
            .checked_mul(1_000)
            .and_then(|us| i64::try_from(us).ok())
            .ok_or(Reason::InvalidTimestamp)?,
        Some(Field::Other) => return Err(Reason::InvalidTimestamp),
    };
    if !(MIN_US..=MAX_US).contains(&event_time_us) {
        return Err(Reason::InvalidTimestamp);
    }
    let event_id = match raw.event_id {
        None => None,
        Some(Field::Str(s)) => Some(s),
        Some(_) => return Err(Reason::InvalidEventId),
    };
    Ok(Event {
        event_id,
        user_id,
        event_type,
        event_time_us,
        event_date: event_time_us.div_euclid(US_PER_DAY) as i32,
        properties: raw.properties,
    })
}

/// A scanner for the common line shape: one object of string, integer and literal members
/// without escapes, whose nested values (`properties`) serde_json checks. It returns `None` on
/// anything else (escapes, control characters, fractions, negative or long numbers, bad syntax),
/// and the caller parses the line with serde_json, which stays the reference: for every line
/// the two agree (property-tested). Skipping serde's visitor machinery for the flat members cut
/// the aggregate path's CPU by ~16% (docs/benchmarks.md).
mod flat {
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
}

/// Empty or only (Unicode) whitespace. Ids almost always start with a visible ASCII character,
/// which settles it without `trim`.
#[inline]
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b) if b.is_ascii_graphic() => false,
        _ => s.trim().is_empty(),
    }
}

/// RFC 3339 (`Z` or an offset), or ISO 8601 without an offset taken as UTC.
fn parse_timestamp_str(s: &str) -> Option<i64> {
    if let Some(us) = parse_utc_fast(s.as_bytes()) {
        return Some(us);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    const NAIVE: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    NAIVE
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc().timestamp_micros())
}

/// Fast path for the most common shape, `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`; anything else (or any
/// out-of-range field) returns `None` and goes to chrono, which stays the reference.
fn parse_utc_fast(b: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if *b.last()? != b'Z' {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, min, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let frac = &b[19..b.len() - 1];
    let micros = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let n = num(digits)? as u64;
            // Scale to 9 digits (nanoseconds), then truncate to microseconds like chrono.
            (n * 10u64.pow(9 - digits.len() as u32) / 1_000) as i64
        }
        _ => return None,
    };
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day)?;
    Some(
        days * US_PER_DAY
            + (hour as i64 * 3600 + min as i64 * 60 + sec as i64) * 1_000_000
            + micros,
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date, `None` for an impossible one. The
/// closed form (eras of 400 years, March-based years) replaced chrono's constructor on the
/// hot path, where that was ~2% of the ETL's CPU; chrono checks it in the tests.
fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` for a day number (days since 1970-01-01).
pub fn format_date(days: i32) -> String {
    match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => format!("invalid-day-{days}"),
    }
}

/// Inverse of [`format_date`].
pub fn parse_date(s: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.num_days_from_ce() - 719_163)
}

use chrono::Datelike;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    fn ok(line: &str) -> Event<'_> {
        parse_line(line.as_bytes()).unwrap_or_else(|r| panic!("{line}: {r}"))
    }
    fn bad(line: &str) -> Reason {
        parse_line(line.as_bytes()).expect_err(line)
    }

    #[test]
    fn accepts_the_contract() {
        let e = ok(
            r#"{"event_id":"e1","user_id":"u1","event_type":"click","timestamp":"2024-01-15T10:30:00Z","properties":{"a":[1,2]}}"#,
        );
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.user_id, "u1");
        assert_eq!(e.event_type, "click");
        assert_eq!(format_date(e.event_date), "2024-01-15");
        assert_eq!(e.event_time_us, 1_705_314_600_000_000);
        assert_eq!(e.properties, Some(r#"{"a":[1,2]}"#));
    }

    #[test]
    fn user_id_integer_and_timestamp_forms() {
        let e = ok(r#"{"user_id":42,"event_type":"x","timestamp":1705314600000}"#);
        assert_eq!(e.user_id, "42");
        assert_eq!(e.event_time_us, 1_705_314_600_000_000);
        // An offset moves the UTC date.
        let e = ok(r#"{"user_id":"u","event_type":"x","timestamp":"2024-01-15T23:30:00-02:00"}"#);
        assert_eq!(format_date(e.event_date), "2024-01-16");
        // No offset: UTC.
        let e = ok(r#"{"user_id":"u","event_type":"x","timestamp":"2024-01-15T23:30:00.123"}"#);
        assert_eq!(e.event_time_us, 1_705_361_400_123_000);
        let e = ok(r#"{"user_id":"u","event_type":"x","timestamp":"2024-01-15 23:30:00"}"#);
        assert_eq!(format_date(e.event_date), "2024-01-15");
        // Pre-epoch milliseconds land on the right day.
        let e = ok(r#"{"user_id":"u","event_type":"x","timestamp":-1}"#);
        assert_eq!(format_date(e.event_date), "1969-12-31");
    }

    #[test]
    fn integer_user_ids_of_any_size_keep_their_digits() {
        let line = |u: &str| format!(r#"{{"user_id":{u},"event_type":"x","timestamp":0}}"#);
        for u in [
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "9223372036854775808",
            "340282366920938463463374607431768211456123",
            "7",
        ] {
            assert_eq!(ok(&line(u)).user_id, u);
        }
        assert_eq!(ok(&line("-0")).user_id, "0");
        // Fractions and exponents are numbers, not integers.
        for u in ["1.5", "1e30", "12345678901234567890123.0"] {
            assert_eq!(bad(&line(u)), Reason::InvalidUserId, "{u}");
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e = ok(r#"{"user_id":"a\"b","event_type":"caf\u00e9","timestamp":0}"#);
        assert_eq!(e.user_id, "a\"b");
        assert_eq!(e.event_type, "café");
    }

    #[test]
    fn every_rejection_reason() {
        assert_eq!(bad("{not json"), Reason::InvalidJson);
        assert_eq!(bad(r#"{"a":1} trailing"#), Reason::InvalidJson);
        assert_eq!(bad("[1,2]"), Reason::NotAnObject);
        assert_eq!(bad("\"str\""), Reason::NotAnObject);
        assert_eq!(
            bad(r#"{"user_id":"u","timestamp":0}"#),
            Reason::MissingEventType
        );
        assert_eq!(
            bad(r#"{"event_type":"","user_id":"u","timestamp":0}"#),
            Reason::InvalidEventType
        );
        assert_eq!(
            bad(r#"{"event_type":5,"user_id":"u","timestamp":0}"#),
            Reason::InvalidEventType
        );
        assert_eq!(
            bad(r#"{"event_type":"x","timestamp":0}"#),
            Reason::MissingUserId
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"","timestamp":0}"#),
            Reason::InvalidUserId
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":1.5,"timestamp":0}"#),
            Reason::InvalidUserId
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":null,"timestamp":0}"#),
            Reason::InvalidUserId
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"u"}"#),
            Reason::MissingTimestamp
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"u","timestamp":"yesterday"}"#),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"u","timestamp":1.5}"#),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"u","timestamp":99999999999999999999}"#),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"u","timestamp":"2024-02-30T00:00:00Z"}"#),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            bad(r#"{"event_type":"x","user_id":"u","timestamp":0,"event_id":7}"#),
            Reason::InvalidEventId
        );
    }

    #[test]
    fn dates_roundtrip() {
        for d in [-1, 0, 19_737, 2_932_896] {
            assert_eq!(parse_date(&format_date(d)), Some(d));
        }
        assert_eq!(parse_date("2024-13-01"), None);
    }

    /// Lines the fast scanner must take (the product's usual shapes).
    #[test]
    fn usual_lines_take_the_fast_path() {
        for line in [
            r#"{"event_id":"evt_000000001","user_id":"user_012345","event_type":"click","timestamp":"2024-03-05T12:34:56.789Z","properties":{"session":"s1","value":42}}"#,
            r#" { "user_id" : 42 , "event_type" : "x" , "timestamp" : 1705314600000 , "properties" : [1, {"a": null}] } "#,
            r#"{"user_id":"ü","event_type":"x","timestamp":"t","ok":true,"no":false,"n":null}"#,
            "{}",
        ] {
            let fast = flat::scan(line).unwrap_or_else(|| panic!("slow path: {line}"));
            assert_eq!(Some(fast), serde_raw(line), "{line}");
        }
        let e = ok(r#"{"user_id":"u","event_type":"x","timestamp":0,"properties":  {"k":[1]}  }"#);
        assert_eq!(e.properties, Some(r#"{"k":[1]}"#));
    }

    /// What only serde_json decides: the scanner declines, and the result is serde_json's.
    #[test]
    fn unusual_lines_go_to_serde_json() {
        for line in [
            r#"{"user_id":"a\"b","event_type":"x","timestamp":0}"#,
            "{\"user_id\":\"a\tb\",\"event_type\":\"x\",\"timestamp\":0}",
            r#"{"user_id":-1,"event_type":"x","timestamp":0}"#,
            r#"{"user_id":-0,"event_type":"x","timestamp":0}"#,
            r#"{"user_id":01,"event_type":"x","timestamp":0}"#,
            r#"{"user_id":1.0,"event_type":"x","timestamp":0}"#,
            r#"{"user_id":1e3,"event_type":"x","timestamp":0}"#,
            r#"{"user_id":12345678901234567890,"event_type":"x","timestamp":0}"#,
            r#"{"user_id":"u","event_type":"x","timestamp":0,}"#,
            r#"{"user_id":"u" "event_type":"x"}"#,
            r#"{"user_id":"u","properties":{"a":}}"#,
            r#"{"user_id":tru}"#,
            r#"{"a":1} trailing"#,
            "[1]",
            "",
        ] {
            assert_eq!(flat::scan(line), None, "{line}");
        }
    }

    /// Nested values are checked by serde_json in both paths, at any depth.
    #[test]
    fn deep_nesting_agrees_with_serde_json() {
        for depth in [1, 127, 128, 129, 1000] {
            for key in ["properties", "other"] {
                let line = format!(
                    r#"{{"user_id":"u","event_type":"x","timestamp":0,"{key}":{}{}}}"#,
                    "[".repeat(depth),
                    "]".repeat(depth)
                );
                assert_eq!(flat::scan(&line), serde_raw(&line), "{key} {depth}");
                let unclosed = &line[..line.len() - 2];
                assert_eq!(flat::scan(unclosed), None, "{key} {depth}");
                assert_eq!(parse_line_str(unclosed), Err(Reason::InvalidJson));
            }
        }
    }

    #[test]
    fn nested_values_skipped_without_serde_json() {
        for v in [
            r#"{"session":"s1","value":42}"#,
            r#"[1, -2.5e+3, 0, 0.5E-1, {"a": [true, false, null]}, "x", ""]"#,
            "{}",
            "[]",
            r#"{ "a" : { "b" : [ ] } , "ü" : "é" }"#,
        ] {
            assert_eq!(flat::skip_nested(v, 0), Some(v.len()), "{v}");
            assert_eq!(
                flat::skip_nested(&format!("{v}, 1"), 0),
                Some(v.len()),
                "{v}"
            );
        }
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        for v in [
            r#"{"a":}"#,
            "[1,]",
            r#"{"a" 1}"#,
            "[01]",
            "[1.]",
            "[-]",
            "[1e]",
            r#"{"a":1]"#,
            "[1}",
            "{,}",
            r#"["\n"]"#,
            "[\"\t\"]",
            "[tru]",
            "[1",
            deep.as_str(),
        ] {
            assert_eq!(flat::skip_nested(v, 0), None, "{v}");
        }
    }

    fn serde_raw(line: &str) -> Option<RawEvent<'_>> {
        serde_json::from_str::<Top<'_>>(line).ok().and_then(|t| t.0)
    }

    fn json_piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("event_type"),
            Just("user_id"),
            Just("timestamp"),
            Just("event_id"),
            Just("properties"),
            Just("other"),
            Just("event\\u005ftype"),
        ];
        let value = prop_oneof![
            "[a-z0-9_ü\\\\\"\t]{0,8}".prop_map(|s| format!("\"{s}\"")),
            "-?[0-9]{1,21}(\\.[0-9])?([eE][+-]?[0-9])?",
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
            Just("nul".to_string()),
            "[\\[\\]{}:,\"a1 ]{0,10}",
            Just(r#"{"s":"x","v":[1,2.5,{"d":null}]}"#.to_string()),
            json_value(),
        ];
        let ws = "[ \t\r\n]{0,2}";
        (key, ws, value, ws).prop_map(|(k, w1, v, w2)| format!("\"{k}\"{w1}:{w2}{v}"))
    }

    /// JSON-like text: valid values mostly, with strings that may hold escapes, tabs or stray
    /// quotes and number-like runs that may not be numbers.
    fn json_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,2})?([eE][+-]?[0-9]{1,2})?",
            "[a-zü \\\\\"\t]{0,5}".prop_map(|s| format!("\"{s}\"")),
            "[-0-9.eE+]{1,4}",
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                (proptest::collection::vec(inner.clone(), 0..4), "[ ]{0,1}")
                    .prop_map(|(v, w)| format!("[{w}{}]", v.join(","))),
                proptest::collection::vec(("[a-z]{0,3}", "[ ]{0,1}", inner), 0..4).prop_map(|m| {
                    let members: Vec<String> = m
                        .iter()
                        .map(|(k, w, v)| format!("\"{k}\"{w}:{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        /// Nested values (valid, or with one byte cut out) are skipped exactly where
        /// serde_json's reading ends, and only when serde_json reads them.
        #[test]
        fn nested_values_agree_with_serde_json(
            value in json_value(),
            cut in proptest::option::of(0usize..64),
            key in proptest::prop_oneof![proptest::strategy::Just("properties"), proptest::strategy::Just("other")],
        ) {
            let mut value = value;
            if let Some(at) = cut {
                let at = at % value.len().max(1);
                if value.is_char_boundary(at) && value.is_char_boundary(at + 1) {
                    value.replace_range(at..at + 1, "");
                }
            }
            if let Some(end) = flat::skip_nested(&value, 0) {
                let mut values = serde_json::Deserializer::from_str(&value).into_iter::<IgnoredAny>();
                proptest::prop_assert!(matches!(values.next(), Some(Ok(_))), "{}", value);
                proptest::prop_assert_eq!(values.byte_offset(), end, "{}", value);
            }
            let line = format!(r#"{{"user_id":"u","{key}":{value},"event_type":"x"}}"#);
            if let Some(fast) = flat::scan(&line) {
                proptest::prop_assert_eq!(Some(fast), serde_raw(&line), "{}", line);
            }
        }
    }

    proptest::proptest! {
        /// The fast scanner accepts only what serde_json reads the same way.
        #[test]
        fn fast_scan_agrees_with_serde_json(
            members in proptest::collection::vec(json_piece(), 0..6),
            // Mostly valid separators and ends, so that many lines reach the fast path whole.
            seps in proptest::collection::vec(
                proptest::prop_oneof![8 => proptest::strategy::Just(",".to_string()), 1 => "[ ,]{1,3}"],
                6,
            ),
            lead in "[ \t]{0,2}",
            trail in proptest::prop_oneof![4 => proptest::strategy::Just(String::new()), 1 => "[ \t}x]{0,2}"],
        ) {
            let mut line = format!("{lead}{{");
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    line.push_str(&seps[i]);
                }
                line.push_str(m);
            }
            line.push('}');
            line.push_str(&trail);
            if let Some(fast) = flat::scan(&line) {
                proptest::prop_assert_eq!(Some(fast), serde_raw(&line), "{}", line);
            }
        }
    }

    proptest::proptest! {
        /// The word-at-a-time test finds the same first special byte as a byte loop.
        #[test]
        fn special_byte_search_matches_a_byte_loop(bytes in proptest::array::uniform8(proptest::prelude::any::<u8>())) {
            let expected = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            let m = flat::special(u64::from_le_bytes(bytes));
            let found = (m != 0).then(|| (m.trailing_zeros() / 8) as usize);
            proptest::prop_assert_eq!(found, expected);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_line(&bytes);
        }

        #[test]
        fn fast_timestamp_path_agrees_with_chrono(secs in -30_610_224_000i64..253_402_300_799, nanos in 0u32..1_000_000_000, digits in 0usize..10) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            let frac = format!("{:09}", nanos);
            let s = if digits == 0 { format!("{base}Z") } else { format!("{base}.{}Z", &frac[..digits]) };
            let reference = DateTime::parse_from_rfc3339(&s).unwrap().timestamp_micros();
            proptest::prop_assert_eq!(parse_utc_fast(s.as_bytes()), Some(reference));
        }

        #[test]
        fn epoch_millis_date_matches_chrono(ms in -30_610_224_000_000i64..253_402_300_799_999) {
            let line = format!(r#"{{"user_id":"u","event_type":"x","timestamp":{ms}}}"#);
            let e = parse_line(line.as_bytes()).unwrap();
            let expected = DateTime::from_timestamp_millis(ms).unwrap().date_naive().format("%Y-%m-%d").to_string();
            proptest::prop_assert_eq!(format_date(e.event_date), expected);
        }

        /// Impossible dates (month 0 or 13, day 0, 31 April, 29 February off leap years) too.
        #[test]
        fn civil_days_match_chrono(year in 0i64..=9999, month in 0u32..=13, day in 0u32..=32) {
            let expected = NaiveDate::from_ymd_opt(year as i32, month, day)
                .map(|d| (d.num_days_from_ce() - 719_163) as i64);
            proptest::prop_assert_eq!(days_from_civil(year, month, day), expected);
        }
    }
}
