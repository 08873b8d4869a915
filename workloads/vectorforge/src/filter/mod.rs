//! Filters in Qdrant's grammar: must / should / must_not / min_should over
//! field conditions (match value/any/except/text, range, values_count),
//! is_empty, is_null, has_id and nested filters. Parsed from Qdrant's JSON
//! shapes with clear errors for anything malformed or unsupported.

mod eval;
mod json_out;
pub mod value;

pub use eval::{FilterContext, check};
pub use value::{MatchValue, Range, parse_datetime};

use value::{bad, object};

use std::collections::HashSet;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::payload::path::KeyPath;
use crate::types::PointId;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
    pub min_should: Option<MinShould>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MinShould {
    pub conditions: Vec<Condition>,
    pub min_count: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Field(FieldCondition),
    IsEmpty(KeyPath),
    IsNull(KeyPath),
    HasId(HashSet<PointId>),
    Nested { key: KeyPath, filter: Box<Filter> },
    Filter(Box<Filter>),
}

/// Conditions on one key; all present parts must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldCondition {
    pub key: KeyPath,
    pub r#match: Option<Match>,
    pub range: Option<Range>,
    pub values_count: Option<ValuesCount>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Match {
    Value(MatchValue),
    Any(Vec<MatchValue>),
    Except(Vec<MatchValue>),
    /// Substring match on string values (no full-text index).
    Text(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValuesCount {
    pub gt: Option<usize>,
    pub gte: Option<usize>,
    pub lt: Option<usize>,
    pub lte: Option<usize>,
}

fn conditions(v: Option<&Value>, what: &str) -> Result<Vec<Condition>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(Condition::from_json).collect(),
        Some(one @ Value::Object(_)) => Ok(vec![Condition::from_json(one)?]),
        Some(other) => Err(bad(format!(
            "`{what}` must be a condition or a list of conditions, got {other}"
        ))),
    }
}

fn key_of(o: &Map<String, Value>, what: &str) -> Result<KeyPath> {
    let k = o
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{what} needs a string `key`")))?;
    KeyPath::parse(k)
}

impl Filter {
    /// Parses Qdrant's filter JSON.
    pub fn from_json(v: &Value) -> Result<Filter> {
        let o = object(v, "a filter")?;
        for k in o.keys() {
            if !matches!(k.as_str(), "must" | "should" | "must_not" | "min_should") {
                return Err(bad(format!(
                    "unknown filter clause `{k}` (expected must, should, must_not, min_should)"
                )));
            }
        }
        let min_should = match o.get("min_should") {
            None | Some(Value::Null) => None,
            Some(m) => {
                let mo = object(m, "`min_should`")?;
                let min_count =
                    mo.get("min_count").and_then(Value::as_u64).ok_or_else(|| {
                        bad("`min_should` needs a non-negative integer `min_count`")
                    })? as usize;
                Some(MinShould {
                    conditions: conditions(mo.get("conditions"), "min_should.conditions")?,
                    min_count,
                })
            }
        };
        Ok(Filter {
            must: conditions(o.get("must"), "must")?,
            should: conditions(o.get("should"), "should")?,
            must_not: conditions(o.get("must_not"), "must_not")?,
            min_should,
        })
    }

    /// True when the filter has no clause at all (matches everything).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty()
            && self.should.is_empty()
            && self.must_not.is_empty()
            && self.min_should.is_none()
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Filter::from_json(&v).map_err(serde::de::Error::custom)
    }
}

impl Condition {
    pub fn from_json(v: &Value) -> Result<Condition> {
        let o = object(v, "a condition")?;
        if o.contains_key("key") {
            return FieldCondition::from_json(o).map(Condition::Field);
        }
        if let Some(x) = o.get("is_empty") {
            return Ok(Condition::IsEmpty(key_of(
                object(x, "`is_empty`")?,
                "`is_empty`",
            )?));
        }
        if let Some(x) = o.get("is_null") {
            return Ok(Condition::IsNull(key_of(
                object(x, "`is_null`")?,
                "`is_null`",
            )?));
        }
        if let Some(x) = o.get("has_id") {
            let ids = x
                .as_array()
                .ok_or_else(|| bad("`has_id` must be a list of point ids"))?;
            let ids = ids
                .iter()
                .map(|i| PointId::from_json(i).map_err(|e| bad(e.to_string())))
                .collect::<Result<_>>()?;
            return Ok(Condition::HasId(ids));
        }
        if let Some(x) = o.get("nested") {
            let n = object(x, "`nested`")?;
            let filter = Filter::from_json(
                n.get("filter")
                    .ok_or_else(|| bad("`nested` needs a `filter`"))?,
            )?;
            return Ok(Condition::Nested {
                key: key_of(n, "`nested`")?,
                filter: Box::new(filter),
            });
        }
        if ["must", "should", "must_not", "min_should"]
            .iter()
            .any(|k| o.contains_key(*k))
        {
            return Filter::from_json(v).map(|f| Condition::Filter(Box::new(f)));
        }
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        Err(bad(format!("unknown condition with keys {keys:?}")))
    }
}

impl FieldCondition {
    fn from_json(o: &Map<String, Value>) -> Result<FieldCondition> {
        let key = key_of(o, "a field condition")?;
        let mut fc = FieldCondition {
            key,
            r#match: None,
            range: None,
            values_count: None,
        };
        for (k, v) in o {
            match k.as_str() {
                "key" => {}
                "match" => fc.r#match = Some(Match::from_json(v)?),
                "range" => fc.range = Some(Range::from_json(v)?),
                "values_count" => fc.values_count = Some(ValuesCount::from_json(v)?),
                "geo_bounding_box" | "geo_radius" | "geo_polygon" => {
                    return Err(bad(format!("`{k}` conditions are not supported yet")));
                }
                other => return Err(bad(format!("unknown field condition clause `{other}`"))),
            }
        }
        if fc.r#match.is_none() && fc.range.is_none() && fc.values_count.is_none() {
            return Err(bad(format!(
                "field condition on `{}` needs `match`, `range` or `values_count`",
                fc.key.as_str()
            )));
        }
        Ok(fc)
    }
}

impl Match {
    fn from_json(v: &Value) -> Result<Match> {
        let o = object(v, "`match`")?;
        if o.len() != 1 {
            return Err(bad(
                "`match` needs exactly one of `value`, `any`, `except`, `text`",
            ));
        }
        let (k, x) = o.iter().next().ok_or_else(|| bad("empty `match`"))?;
        match k.as_str() {
            "value" => Ok(Match::Value(MatchValue::from_json(x)?)),
            "any" => Ok(Match::Any(MatchValue::list(x, "any")?)),
            "except" => Ok(Match::Except(MatchValue::list(x, "except")?)),
            "text" => x
                .as_str()
                .map(|s| Match::Text(s.to_string()))
                .ok_or_else(|| bad("`text` must be a string")),
            other => Err(bad(format!("unknown match kind `{other}`"))),
        }
    }
}

impl ValuesCount {
    fn from_json(v: &Value) -> Result<ValuesCount> {
        let o = object(v, "`values_count`")?;
        let mut c = ValuesCount::default();
        for (k, x) in o {
            let n = if x.is_null() {
                None
            } else {
                Some(x.as_u64().ok_or_else(|| {
                    bad(format!("values_count `{k}` must be a non-negative integer"))
                })? as usize)
            };
            match k.as_str() {
                "gt" => c.gt = n,
                "gte" => c.gte = n,
                "lt" => c.lt = n,
                "lte" => c.lte = n,
                other => return Err(bad(format!("unknown values_count bound `{other}`"))),
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_qdrant_shapes() {
        let f: Filter = serde_json::from_value(json!({
            "must": [
                {"key": "city", "match": {"value": "London"}},
                {"key": "price", "range": {"gte": 10, "lt": 20.5}},
                {"key": "tags", "match": {"any": ["a", "b"]}},
                {"key": "n", "match": {"except": [1, 2]}},
                {"has_id": [1, "550e8400-e29b-41d4-a716-446655440000"]},
                {"is_empty": {"key": "x"}},
                {"is_null": {"key": "y"}},
                {"key": "arr", "values_count": {"gt": 2}},
                {"nested": {"key": "items", "filter": {"must": {"key": "q", "match": {"value": true}}}}},
                {"should": [{"key": "a.b[0]", "match": {"text": "hi"}}]},
                {"key": "t", "range": {"gt": "2024-01-01T00:00:00Z"}}
            ],
            "must_not": {"key": "z", "match": {"value": 3}},
            "min_should": {"conditions": [{"key": "c", "match": {"value": 1}}], "min_count": 1}
        }))
        .unwrap();
        assert_eq!(f.must.len(), 11);
        assert_eq!(f.must_not.len(), 1);
        assert!(matches!(
            f.must[10],
            Condition::Field(FieldCondition {
                range: Some(Range::Datetime { .. }),
                ..
            })
        ));
    }

    #[test]
    fn malformed_filters_have_clear_errors() {
        let cases = [
            (json!({"musts": []}), "unknown filter clause `musts`"),
            (
                json!({"must": [{"key": "a"}]}),
                "needs `match`, `range` or `values_count`",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
                "must be an integer",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1, "any": [1]}}]}),
                "exactly one",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": "yesterday"}}]}),
                "not a date-time",
            ),
            (
                json!({"must": [{"key": "a", "geo_radius": {}}]}),
                "not supported",
            ),
            (json!({"must": [{"foo": 1}]}), "unknown condition"),
            (
                json!({"must": [{"has_id": [-1]}]}),
                "not an unsigned integer",
            ),
            (json!({"must": 5}), "must be a condition"),
            (
                json!({"must": [{"key": "a[", "match": {"value": 1}}]}),
                "unclosed",
            ),
        ];
        for (v, want) in cases {
            let err = Filter::from_json(&v).unwrap_err().to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }
}
