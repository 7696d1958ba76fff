//! Timestamps and dates of the contract.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::US_PER_DAY;

/// Empty or only (Unicode) whitespace. Ids almost always start with a visible ASCII character,
/// which settles it without `trim`.
#[inline]
pub(super) fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b) if b.is_ascii_graphic() => false,
        _ => s.trim().is_empty(),
    }
}

/// RFC 3339 (`Z` or an offset), or ISO 8601 without an offset taken as UTC.
pub(super) fn parse_timestamp_str(s: &str) -> Option<i64> {
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
pub(super) fn parse_utc_fast(b: &[u8]) -> Option<i64> {
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
pub(super) fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
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
