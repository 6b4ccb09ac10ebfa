//! Lenient readers of stored settings: OctoPrint stores whatever the settings dialog sent, so
//! numbers may arrive as text and unset values as None or "". Each reader accepts what a
//! hand-edited config.yaml or the page can produce and refuses (for `parse_lenient` in
//! `config.rs` to fall back to the key's default, with a warning) only what is unusable.

use serde::{Deserialize, Deserializer};

use crate::rules;

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Other(serde::de::IgnoredAny),
}

fn loose_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Int(i) => Some(i),
        Loose::Float(f) if f.fract() == 0.0 => Some(f as i64),
        Loose::Str(s) => s.trim().parse().ok(),
        _ => None,
    })
}

pub fn lenient_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = loose_int(d)?;
    v.and_then(|v| u16::try_from(v).ok()).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a number from 0 to 65535, got {v:?}"))
    })
}

/// A whole number within `range` (one of the field rules of rules.rs).
fn in_range<'de, D: Deserializer<'de>>(d: D, (min, max): (i64, i64)) -> Result<i64, D::Error> {
    let v = loose_int(d)?;
    v.filter(|v| (min..=max).contains(v)).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a whole number from {min} to {max}, got {v:?}"
        ))
    })
}

pub fn port_number<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    in_range(d, rules::PORT).map(|v| v as u16)
}

pub fn queue_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, rules::QUEUE_SIZE).map(|v| v as usize)
}

pub fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Int(i) => Ok(i as f64),
        Loose::Float(f) if f.is_finite() => Ok(f),
        Loose::Str(s) => s
            .trim()
            .parse()
            .ok()
            .filter(|f: &f64| f.is_finite())
            .ok_or_else(|| serde::de::Error::custom(format!("expected a number, got {s:?}"))),
        _ => Err(serde::de::Error::custom("expected a number")),
    }
}

/// Seconds of an interval: a number within [`rules::INTERVAL`].
pub fn interval_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let (min, max) = rules::INTERVAL;
    let v = lenient_f64(d)?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected a number of seconds from {min} to {max}, got {v}"
        )))
    }
}

/// MQTT 5's message expiry interval: whole seconds within [`rules::EXPIRY`].
pub fn expiry_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, rules::EXPIRY).map(|v| v as u32)
}

pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Bool(b) => Ok(b),
        Loose::Int(i) => Ok(i != 0),
        Loose::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
        _ => Err(serde::de::Error::custom("expected true or false")),
    }
}

pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(optional_string(d)?.unwrap_or_default())
}

/// How a settings value that is not what was expected is named in a log line.
fn kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value as V;
    match v {
        V::Null => "nothing (null)",
        V::Bool(_) => "true/false",
        V::Number(_) => "a number",
        V::String(_) => "text",
        V::Array(_) => "a list",
        V::Object(_) => "a dict",
    }
}

/// `broker.url`: only text is a host; a list or a number is refused (and so unset) rather
/// than read as no broker in silence.
pub fn host_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.is_empty() => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        other => Err(serde::de::Error::custom(format!(
            "expected the broker's host name or IP address as text, got {}",
            kind(&other)
        ))),
    }
}

/// Text, or nothing (`""`); anything else is refused, so that it is named in the log.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "expected text, got {}",
            kind(&other)
        ))),
    }
}

/// A JSON property name: non-empty text. An empty name would give payloads a `""` key.
pub fn field_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if !s.is_empty() => Ok(s),
        serde_json::Value::String(_) => Err(serde::de::Error::custom(
            "expected a property name, got empty text",
        )),
        other => Err(serde::de::Error::custom(format!(
            "expected a property name, got {}",
            kind(&other)
        ))),
    }
}

pub fn optional_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Str(s) if s.is_empty() => None,
        Loose::Str(s) => Some(s),
        Loose::Int(i) => Some(i.to_string()),
        Loose::Float(f) => Some(f.to_string()),
        _ => None,
    })
}

/// The entries of a list of event names or patterns as stored: a list of text, each entry
/// trimmed, or (hand-written) one text of comma-separated entries, where empty pieces are left
/// out; nothing is an empty list. `Err` says what else it was. Whether each entry is a usable
/// pattern is not judged here (see `glob::check`).
pub fn pattern_entries(v: &serde_json::Value) -> Result<Vec<String>, String> {
    use serde_json::Value as V;
    match v {
        V::Null => Ok(Vec::new()),
        V::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()),
        V::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                V::String(s) => Ok(s.trim().to_string()),
                other => Err(format!("entry {} is {}, not text", i + 1, kind(other))),
            })
            .collect(),
        other => Err(format!(
            "expected a list of event names or patterns, got {}",
            kind(other)
        )),
    }
}

pub fn pattern_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    pattern_entries(&serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `broker.failover`: a list of text, or one text of comma-separated addresses.
pub fn address_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde_json::Value as V;
    match V::deserialize(d)? {
        V::Null => Ok(Vec::new()),
        V::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()),
        V::Array(items) => items
            .into_iter()
            .map(|item| match item {
                V::String(s) => Ok(s.trim().to_string()),
                other => Err(serde::de::Error::custom(format!(
                    "expected addresses as text, got {}",
                    kind(&other)
                ))),
            })
            .filter(|a| !matches!(a, Ok(s) if s.is_empty()))
            .collect(),
        other => Err(serde::de::Error::custom(format!(
            "expected a list of host or host:port, got {}",
            kind(&other)
        ))),
    }
}
