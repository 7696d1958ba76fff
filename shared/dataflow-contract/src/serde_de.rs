//! The serde reading of a line: the reference parser, used whenever the fast scanner declines.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A scalar field value as seen in the JSON, before validation.
#[derive(Debug, PartialEq)]
pub(super) enum Field<'a> {
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
pub(super) struct RawEvent<'a> {
    pub(super) event_type: Option<Field<'a>>,
    pub(super) user_id: Option<Field<'a>>,
    pub(super) timestamp: Option<Field<'a>>,
    pub(super) event_id: Option<Field<'a>>,
    /// Raw JSON text of the value.
    pub(super) properties: Option<&'a str>,
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
pub(super) struct Top<'a>(pub(super) Option<RawEvent<'a>>);

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
