//! Values a filter condition compares with: match values, numeric and date-time
//! ranges, and the date-time parsing the payload index shares. A leaf: the filter
//! parser and the payload index both build on it.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub(super) fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidFilter(msg.into())
}

pub(super) fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be a JSON object, got {v}")))
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MatchValue {
    Keyword(String),
    Integer(i64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    Numeric {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    /// Bounds in microseconds since the epoch (UTC), from RFC 3339 strings.
    Datetime {
        gt: Option<i64>,
        gte: Option<i64>,
        lt: Option<i64>,
        lte: Option<i64>,
    },
}

impl MatchValue {
    pub(super) fn from_json(v: &Value) -> Result<MatchValue> {
        match v {
            Value::String(s) => Ok(MatchValue::Keyword(s.clone())),
            Value::Bool(b) => Ok(MatchValue::Bool(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(MatchValue::Integer)
                .ok_or_else(|| bad(format!("match value {n} must be an integer"))),
            other => Err(bad(format!(
                "match value must be a string, integer or boolean, got {other}"
            ))),
        }
    }

    pub(super) fn list(v: &Value, what: &str) -> Result<Vec<MatchValue>> {
        v.as_array()
            .ok_or_else(|| bad(format!("`{what}` must be a list")))?
            .iter()
            .map(MatchValue::from_json)
            .collect()
    }
}

impl Range {
    pub(super) fn from_json(v: &Value) -> Result<Range> {
        let o = object(v, "`range`")?;
        for k in o.keys() {
            if !matches!(k.as_str(), "gt" | "gte" | "lt" | "lte") {
                return Err(bad(format!("unknown range bound `{k}`")));
            }
        }
        let get = |k: &str| o.get(k).filter(|v| !v.is_null());
        let any_string = ["gt", "gte", "lt", "lte"]
            .iter()
            .any(|k| get(k).is_some_and(Value::is_string));
        if any_string {
            let dt = |k: &str| -> Result<Option<i64>> {
                match get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) => parse_datetime(s)
                        .map(Some)
                        .ok_or_else(|| bad(format!("range `{k}`: {s:?} is not a date-time"))),
                    Some(other) => Err(bad(format!(
                        "range `{k}`: mixing a date-time range with {other}"
                    ))),
                }
            };
            Ok(Range::Datetime {
                gt: dt("gt")?,
                gte: dt("gte")?,
                lt: dt("lt")?,
                lte: dt("lte")?,
            })
        } else {
            let num = |k: &str| -> Result<Option<f64>> {
                match get(k) {
                    None => Ok(None),
                    Some(x) => x
                        .as_f64()
                        .map(Some)
                        .ok_or_else(|| bad(format!("range `{k}` must be a number, got {x}"))),
                }
            };
            Ok(Range::Numeric {
                gt: num("gt")?,
                gte: num("gte")?,
                lt: num("lt")?,
                lte: num("lte")?,
            })
        }
    }
}

/// Parses an RFC 3339 date-time (or a plain date / "YYYY-MM-DD HH:MM:SS") to microseconds (UTC).
pub fn parse_datetime(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(d.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_micros())
}
