use super::time::{days_from_civil, parse_utc_fast};
use super::*;
use chrono::{DateTime, Datelike, NaiveDate};
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
    // The limit counts UTF-8 bytes: 256 are accepted, 257 are not (128 two-byte letters + 1).
    let typed = |t: &str| format!(r#"{{"event_type":"{t}","user_id":"u","timestamp":0}}"#);
    assert_eq!(
        ok(&typed(&"x".repeat(MAX_EVENT_TYPE_BYTES)))
            .event_type
            .len(),
        256
    );
    assert_eq!(
        bad(&typed(&format!("{}x", "é".repeat(128)))),
        Reason::EventTypeTooLong
    );
    assert_eq!(bad(&typed(&"x".repeat(100_000))), Reason::EventTypeTooLong);
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
