//! The event contract: one JSON Lines line in, an accepted [`Event`] or a [`Rejection`] out.
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
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::MissingEventType,
        Reason::InvalidEventType,
        Reason::MissingUserId,
        Reason::InvalidUserId,
        Reason::MissingTimestamp,
        Reason::InvalidTimestamp,
        Reason::InvalidEventId,
        Reason::LineTooLong,
    ];

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

#[derive(Default)]
struct RawEvent<'a> {
    event_type: Option<Field<'a>>,
    user_id: Option<Field<'a>>,
    timestamp: Option<Field<'a>>,
    event_id: Option<Field<'a>>,
    properties: Option<&'a RawValue>,
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
                        Key::UserId => ev.user_id = Some(a.next_value()?),
                        Key::Timestamp => ev.timestamp = Some(a.next_value()?),
                        Key::EventId => ev.event_id = Some(a.next_value()?),
                        Key::Properties => ev.properties = Some(a.next_value()?),
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
    let top: Top<'_> = serde_json::from_str(line).map_err(|_| Reason::InvalidJson)?;
    let raw = top.0.ok_or(Reason::NotAnObject)?;

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
        properties: raw.properties.map(RawValue::get),
    })
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
