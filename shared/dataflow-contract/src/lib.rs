//! The event contract: one JSON Lines line in, an accepted [`Event`] or a [`Reason`] it was rejected for.
//! See docs/event-contract.md. Parsing borrows from the line wherever the JSON has no escapes,
//! and reads only the fields the product keeps.

use std::borrow::Cow;
use std::fmt;

mod flat;
mod serde_de;
#[cfg(test)]
mod tests;
mod time;
pub mod window;

use serde_de::{Field, RawEvent, Top};
pub use time::{format_date, parse_date};
use time::{is_blank, parse_timestamp_str};
pub use window::{TimeWindow, WindowRule};

/// Why a line was rejected. The `code()` strings are part of the rejected-lines report contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidJson,
    NotAnObject,
    MissingEventType,
    InvalidEventType,
    /// An `event_type` longer than [`MAX_EVENT_TYPE_BYTES`].
    EventTypeTooLong,
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
            Reason::EventTypeTooLong => "event_type_too_long",
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

/// Longest accepted `event_type`, in UTF-8 bytes. Types are partition values, dashboard options
/// and summary keys: a name is a few words, and an unbounded one would make each of those as large
/// as the longest line.
pub const MAX_EVENT_TYPE_BYTES: usize = 256;

/// Earliest and latest accepted instants: years 1000..=9999 keep partition names `YYYY-MM-DD`.
const MIN_US: i64 = -30_610_224_000_000_000; // 1000-01-01T00:00:00Z
const MAX_US: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
const US_PER_DAY: i64 = 86_400_000_000;

/// Parses one line (without its line terminator; a trailing `\r` is tolerated by the caller).
/// JSON text is UTF-8, so a line that is not is `invalid_json` wherever the bad byte sits.
///
/// ```
/// use dataflow_contract::{parse_line, Reason};
///
/// let line = br#"{"user_id": 42, "event_type": "click", "timestamp": "2024-01-15T10:30:00Z"}"#;
/// let event = parse_line(line).unwrap();
/// assert_eq!((event.user_id.as_ref(), event.event_type.as_ref()), ("42", "click"));
/// assert_eq!(event.event_date, 19_737); // days since 1970-01-01: 2024-01-15
/// assert_eq!(parse_line(br#"{"user_id": "u"}"#), Err(Reason::MissingEventType));
/// ```
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
        Some(Field::Str(s)) if s.len() > MAX_EVENT_TYPE_BYTES => {
            return Err(Reason::EventTypeTooLong)
        }
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
