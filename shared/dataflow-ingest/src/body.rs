//! Reading a request body: gzip, then one JSON object, a JSON array of objects, or JSON Lines.
//! Each event goes through the ETL's contract (`dataflow_contract::parse_line_str`) and the
//! event-time window, so what is accepted here is what the ETL accepts.

use std::io::Read;

use dataflow_contract::{parse_line_str, Reason, TimeWindow};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::{MAX_DECODED_BYTES, MAX_EVENTS, MAX_EVENT_BYTES};

/// How the body is framed, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: one object or an array of objects (JSON Lines also accepted, since
    /// many clients label everything JSON).
    Json,
    /// `application/x-ndjson`, `application/jsonl`, `application/json-lines`, `text/plain`.
    JsonLines,
}

impl Format {
    /// The format for a `Content-Type` value; `None` for anything else. A missing content type
    /// is read like JSON.
    pub fn from_content_type(ct: Option<&str>) -> Option<Self> {
        let Some(ct) = ct else {
            return Some(Format::Json);
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Format::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/json-lines"
            | "text/plain" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

/// One event the contract rejected: its position (array index, or 0-based line number in JSON
/// Lines) and the ETL's reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// The event's position: array index, or 0-based line number in JSON Lines.
    pub index: usize,
    /// The ETL's reason code (docs/event-contract.md).
    #[schema(value_type = String)]
    pub reason: &'static str,
}

/// What a body holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Accepted events, one JSON object per line (each ends with `\n`).
    pub lines: Vec<Vec<u8>>,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the body is empty: send a JSON object, an array of objects or JSON Lines")]
    Empty,
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("the body is larger than {limit} bytes once decompressed")]
    TooLarge { limit: usize },
    #[error("the request holds more than {limit} events")]
    TooManyEvents { limit: usize },
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("a JSON body must be an object or an array of objects")]
    NotAnArrayOrObject,
}

/// Gunzips `body` when `gzip` (Content-Encoding), stopping at [`MAX_DECODED_BYTES`]; a plain
/// body is borrowed as it is.
pub fn decode(body: &[u8], gzip: bool) -> Result<std::borrow::Cow<'_, [u8]>, BodyError> {
    if !gzip {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_DECODED_BYTES));
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(MAX_DECODED_BYTES as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > MAX_DECODED_BYTES {
        return Err(BodyError::TooLarge {
            limit: MAX_DECODED_BYTES,
        });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Reads a (decoded) body. Fails only when nothing in it can be used; otherwise bad events are
/// listed and the good ones kept.
pub fn parse(body: &[u8], format: Format, window: TimeWindow) -> Result<Parsed, BodyError> {
    if body.len() > MAX_DECODED_BYTES {
        return Err(BodyError::TooLarge {
            limit: MAX_DECODED_BYTES,
        });
    }
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    let parsed = match (format, first) {
        (_, None) => return Err(BodyError::Empty),
        (Format::Json, Some(b'[')) => parse_array(body, window)?,
        (Format::Json, Some(b'{')) | (Format::JsonLines, _) => parse_lines(body, window)?,
        (Format::Json, Some(_)) => {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => BodyError::NotAnArrayOrObject,
                    Err(e) => BodyError::NotJson(e.to_string()),
                },
            )
        }
    };
    if parsed.lines.is_empty() && parsed.rejected.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(parsed)
}

/// Whether the whole body is one JSON value (a pretty-printed object spans lines).
fn is_one_object(body: &[u8]) -> bool {
    serde_json::from_slice::<&RawValue>(body).is_ok()
}

fn parse_array(body: &[u8], window: TimeWindow) -> Result<Parsed, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
    if items.len() > MAX_EVENTS {
        return Err(BodyError::TooManyEvents { limit: MAX_EVENTS });
    }
    let mut out = Parsed::default();
    for (index, item) in items.into_iter().enumerate() {
        check(item.get(), index, window, &mut out);
    }
    Ok(out)
}

fn parse_lines(body: &[u8], window: TimeWindow) -> Result<Parsed, BodyError> {
    let mut out = Parsed::default();
    let mut events = 0usize;
    let whole = is_one_object(body);
    let lines: Box<dyn Iterator<Item = &[u8]>> = if whole {
        Box::new(std::iter::once(body))
    } else {
        Box::new(body.split(|b| *b == b'\n'))
    };
    for (index, line) in lines.enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        events += 1;
        if events > MAX_EVENTS {
            return Err(BodyError::TooManyEvents { limit: MAX_EVENTS });
        }
        match std::str::from_utf8(line) {
            Ok(text) => check(text, index, window, &mut out),
            Err(_) => out.rejected.push(Rejection {
                index,
                reason: Reason::InvalidJson.code(),
            }),
        }
    }
    Ok(out)
}

/// One event through the contract and the window; kept as one line of JSON.
fn check(text: &str, index: usize, window: TimeWindow, out: &mut Parsed) {
    let text = text.trim();
    if text.len() > MAX_EVENT_BYTES {
        out.rejected.push(Rejection {
            index,
            reason: Reason::LineTooLong.code(),
        });
        return;
    }
    let reason = match parse_line_str(text) {
        Ok(e) if window.contains(e.event_time_us) => None,
        Ok(_) => Some(Reason::TimestampOutOfRange),
        Err(r) => Some(r),
    };
    if let Some(r) = reason {
        out.rejected.push(Rejection {
            index,
            reason: r.code(),
        });
        return;
    }
    // A pretty-printed object spans lines; JSON Lines needs it on one.
    let mut line = if text.contains(['\n', '\r']) {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => v.to_string().into_bytes(),
            Err(_) => {
                out.rejected.push(Rejection {
                    index,
                    reason: Reason::InvalidJson.code(),
                });
                return;
            }
        }
    } else {
        text.as_bytes().to_vec()
    };
    line.push(b'\n');
    out.lines.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"user_id":"u1","event_type":"click","timestamp":"2024-03-01T10:00:00Z"}"#;

    fn open() -> TimeWindow {
        TimeWindow::open()
    }

    fn lines(p: &Parsed) -> Vec<String> {
        p.lines
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap())
            .collect()
    }

    #[test]
    fn formats_from_content_types() {
        assert_eq!(Format::from_content_type(None), Some(Format::Json));
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type(Some("Application/X-NDJSON")),
            Some(Format::JsonLines)
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-www-form-urlencoded")),
            None
        );
        assert_eq!(Format::from_content_type(Some("text/csv")), None);
    }

    #[test]
    fn an_object_an_array_and_json_lines() {
        let one = parse(OK.as_bytes(), Format::Json, open()).unwrap();
        assert_eq!(lines(&one), vec![format!("{OK}\n")]);
        let pretty = "{\n  \"user_id\": \"u1\",\n  \"event_type\": \"click\",\n  \"timestamp\": 1709287200000\n}";
        let p = parse(pretty.as_bytes(), Format::Json, open()).unwrap();
        assert_eq!(
            lines(&p),
            vec!["{\"event_type\":\"click\",\"timestamp\":1709287200000,\"user_id\":\"u1\"}\n"]
        );
        let arr = format!("[{OK}, {{\"event_type\":\"click\"}}, 3, {OK}]");
        let p = parse(arr.as_bytes(), Format::Json, open()).unwrap();
        assert_eq!(p.lines.len(), 2);
        assert_eq!(
            p.rejected,
            vec![
                Rejection {
                    index: 1,
                    reason: "missing_user_id"
                },
                Rejection {
                    index: 2,
                    reason: "not_an_object"
                }
            ]
        );
        let jl = format!("{OK}\r\n\n  \nnot json\n{OK}");
        for f in [Format::JsonLines, Format::Json] {
            let p = parse(jl.as_bytes(), f, open()).unwrap();
            assert_eq!(p.lines.len(), 2, "{f:?}");
            assert_eq!(
                p.rejected,
                vec![Rejection {
                    index: 3,
                    reason: "invalid_json"
                }]
            );
        }
    }

    #[test]
    fn a_body_cut_mid_line_keeps_the_whole_lines() {
        let body = format!("{OK}\n{OK}\n{}", &OK[..30]);
        let p = parse(body.as_bytes(), Format::JsonLines, open()).unwrap();
        assert_eq!(p.lines.len(), 2);
        assert_eq!(
            p.rejected,
            vec![Rejection {
                index: 2,
                reason: "invalid_json"
            }]
        );
    }

    #[test]
    fn invalid_utf8_rejects_only_its_line() {
        let mut body = format!("{OK}\n").into_bytes();
        body.extend_from_slice(
            b"{\"user_id\":\"\xff\xfe\",\"event_type\":\"x\",\"timestamp\":1}\n",
        );
        body.extend_from_slice(OK.as_bytes());
        let p = parse(&body, Format::JsonLines, open()).unwrap();
        assert_eq!(p.lines.len(), 2);
        assert_eq!(
            p.rejected,
            vec![Rejection {
                index: 1,
                reason: "invalid_json"
            }]
        );
        let arr = [b"[".as_slice(), &body[..10], b"\xff]"].concat();
        assert!(matches!(
            parse(&arr, Format::Json, open()),
            Err(BodyError::NotJson(_))
        ));
    }

    #[test]
    fn nothing_usable_is_an_error() {
        let blank = "\n".repeat(10_000);
        assert_eq!(
            parse(blank.as_bytes(), Format::JsonLines, open()),
            Err(BodyError::Empty)
        );
        assert_eq!(parse(b"", Format::Json, open()), Err(BodyError::Empty));
        assert_eq!(parse(b"[]", Format::Json, open()), Err(BodyError::Empty));
        assert!(matches!(
            parse(b"[1, 2", Format::Json, open()),
            Err(BodyError::NotJson(_))
        ));
        assert_eq!(
            parse(b"42", Format::Json, open()),
            Err(BodyError::NotAnArrayOrObject)
        );
        assert!(matches!(
            parse(b"nope", Format::Json, open()),
            Err(BodyError::NotJson(_))
        ));
    }

    #[test]
    fn limits() {
        let many = format!("{OK}\n").repeat(MAX_EVENTS + 1);
        assert_eq!(
            parse(many.as_bytes(), Format::JsonLines, open()),
            Err(BodyError::TooManyEvents { limit: MAX_EVENTS })
        );
        let exactly = format!("{OK}\n").repeat(MAX_EVENTS);
        assert_eq!(
            parse(exactly.as_bytes(), Format::JsonLines, open())
                .unwrap()
                .lines
                .len(),
            MAX_EVENTS
        );
        let big = format!(
            r#"{{"user_id":"u1","event_type":"click","timestamp":1,"properties":{{"p":"{}"}}}}"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        let p = parse(format!("{big}\n{OK}").as_bytes(), Format::JsonLines, open()).unwrap();
        assert_eq!(
            p.rejected,
            vec![Rejection {
                index: 0,
                reason: "line_too_long"
            }]
        );
    }

    /// Extreme values get the ETL's answers, never a panic: a 30-digit number, year 9999 (past
    /// the window), an epoch beyond i64, nesting 200 deep.
    #[test]
    fn extreme_values() {
        let body = [
            r#"{"user_id":123456789012345678901234567890,"event_type":"x","timestamp":1}"#,
            r#"{"user_id":"u","event_type":"x","timestamp":"9999-12-31T23:59:59Z"}"#,
            r#"{"user_id":"u","event_type":"x","timestamp":-99999999999999999999}"#,
            &format!(
                r#"{{"user_id":"u","event_type":"x","timestamp":1,"properties":{}1{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            OK,
        ]
        .join("\n");
        let w = TimeWindow {
            min_us: 0,
            max_us: 1_800_000_000_000_000,
        };
        let p = parse(body.as_bytes(), Format::JsonLines, w).unwrap();
        // As the ETL: a whole-number user id of any length is an id (kept as written), nested
        // properties are kept raw; year 9999 is outside the window, a timestamp beyond i64 is not
        // a time.
        assert_eq!(p.lines.len(), 3);
        assert!(p.lines[0].starts_with(br#"{"user_id":123456789012345678901234567890,"#));
        assert_eq!(
            p.rejected,
            vec![
                Rejection {
                    index: 1,
                    reason: "timestamp_out_of_range"
                },
                Rejection {
                    index: 2,
                    reason: "invalid_timestamp"
                }
            ]
        );
    }

    #[test]
    fn the_window_applies() {
        let w = TimeWindow {
            min_us: 0,
            max_us: 1_709_000_000_000_000,
        };
        let p = parse(OK.as_bytes(), Format::Json, w).unwrap();
        assert_eq!(
            p.rejected,
            vec![Rejection {
                index: 0,
                reason: "timestamp_out_of_range"
            }]
        );
    }

    #[test]
    fn gzip_and_bombs() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(OK.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decode(&gz, true).unwrap(), OK.as_bytes());
        assert!(matches!(
            decode(&gz[..gz.len() / 2], true),
            Err(BodyError::BadGzip(_))
        ));
        assert!(matches!(decode(b"plain", true), Err(BodyError::BadGzip(_))));
        // 1 GB of zeros compresses to ~1 MB: decoding stops at the limit.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 200_000);
        assert_eq!(
            decode(&bomb, true),
            Err(BodyError::TooLarge {
                limit: MAX_DECODED_BYTES
            })
        );
    }

    proptest::proptest! {
        /// Whatever the bytes, parsing never panics, every accepted line is one line of JSON the
        /// contract accepts, and accepted + rejected never exceed the non-blank lines.
        #[test]
        fn any_bytes(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(p) = parse(&body, Format::JsonLines, TimeWindow::open()) {
                let nonblank = body.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
                proptest::prop_assert!(p.lines.len() + p.rejected.len() <= nonblank);
                for l in &p.lines {
                    proptest::prop_assert!(l.ends_with(b"\n"));
                    proptest::prop_assert!(!l[..l.len() - 1].contains(&b'\n'));
                    proptest::prop_assert!(dataflow_contract::parse_line(&l[..l.len() - 1]).is_ok());
                }
            }
        }
    }
}
