//! Filters back to Qdrant's JSON: what a pod sends when it asks another shard to
//! resolve a filter (shard-to-shard calls carry filters as JSON). Whatever
//! [`Filter::from_json`] parses, [`Filter::to_json`] writes so that it parses back to
//! an equal filter.

use serde_json::{Map, Value, json};

use super::value::{MatchValue, Range};
use super::{Condition, FieldCondition, Filter, Match, ValuesCount};

impl Filter {
    /// The filter in Qdrant's JSON grammar.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        for (k, list) in [
            ("must", &self.must),
            ("should", &self.should),
            ("must_not", &self.must_not),
        ] {
            if !list.is_empty() {
                o.insert(k.into(), conditions(list));
            }
        }
        if let Some(m) = &self.min_should {
            o.insert(
                "min_should".into(),
                json!({"conditions": conditions(&m.conditions), "min_count": m.min_count}),
            );
        }
        Value::Object(o)
    }
}

fn conditions(list: &[Condition]) -> Value {
    Value::Array(list.iter().map(Condition::to_json).collect())
}

impl Condition {
    pub fn to_json(&self) -> Value {
        match self {
            Condition::Field(f) => f.to_json(),
            Condition::IsEmpty(k) => json!({"is_empty": {"key": k.as_str()}}),
            Condition::IsNull(k) => json!({"is_null": {"key": k.as_str()}}),
            Condition::HasId(ids) => {
                // sorted, so that equal filters give equal JSON
                let mut ids: Vec<_> = ids.iter().collect();
                ids.sort();
                json!({"has_id": ids})
            }
            Condition::Nested { key, filter } => {
                json!({"nested": {"key": key.as_str(), "filter": filter.to_json()}})
            }
            Condition::Filter(f) => f.to_json(),
        }
    }
}

impl FieldCondition {
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("key".into(), Value::String(self.key.as_str().to_owned()));
        if let Some(m) = &self.r#match {
            o.insert("match".into(), m.to_json());
        }
        if let Some(r) = &self.range {
            o.insert("range".into(), r.to_json());
        }
        if let Some(c) = &self.values_count {
            o.insert("values_count".into(), c.to_json());
        }
        Value::Object(o)
    }
}

impl Match {
    fn to_json(&self) -> Value {
        let list = |v: &[MatchValue]| Value::Array(v.iter().map(MatchValue::to_json).collect());
        match self {
            Match::Value(v) => json!({"value": v.to_json()}),
            Match::Any(v) => json!({"any": list(v)}),
            Match::Except(v) => json!({"except": list(v)}),
            Match::Text(t) => json!({"text": t}),
        }
    }
}

impl MatchValue {
    fn to_json(&self) -> Value {
        match self {
            MatchValue::Keyword(s) => Value::String(s.clone()),
            MatchValue::Integer(i) => Value::from(*i),
            MatchValue::Bool(b) => Value::Bool(*b),
        }
    }
}

fn bounds<T>(pairs: [(&str, Option<T>); 4], f: impl Fn(T) -> Value) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), f(v))))
            .collect(),
    )
}

impl Range {
    fn to_json(&self) -> Value {
        match *self {
            Range::Numeric { gt, gte, lt, lte } => {
                bounds([("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)], |x| {
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                })
            }
            Range::Datetime { gt, gte, lt, lte } => {
                bounds([("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)], |us| {
                    chrono::DateTime::from_timestamp_micros(us).map_or(Value::Null, |d| {
                        Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    })
                })
            }
        }
    }
}

impl ValuesCount {
    fn to_json(&self) -> Value {
        bounds(
            [
                ("gt", self.gt),
                ("gte", self.gte),
                ("lt", self.lt),
                ("lte", self.lte),
            ],
            Value::from,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_shape_round_trips() {
        let v = json!({
            "must": [
                {"key": "city", "match": {"value": "London"}},
                {"key": "price", "range": {"gte": 10, "lt": 20.5}},
                {"key": "tags", "match": {"any": ["a", "b"]}},
                {"key": "n", "match": {"except": [1, 2]}},
                {"key": "ok", "match": {"value": true}},
                {"has_id": [7, 1, "550e8400-e29b-41d4-a716-446655440000"]},
                {"is_empty": {"key": "x"}},
                {"is_null": {"key": "y"}},
                {"key": "arr", "values_count": {"gt": 2, "lte": 9}},
                {"nested": {"key": "items", "filter": {"must": {"key": "q", "match": {"value": true}}}}},
                {"should": [{"key": "a.b[0]", "match": {"text": "hi"}}]},
                {"key": "t", "range": {"gt": "2024-01-01T00:00:00Z", "lte": "2024-02-03T04:05:06.123456Z"}}
            ],
            "should": {"key": "s", "match": {"value": -3}},
            "must_not": {"key": "z", "match": {"value": 3}},
            "min_should": {"conditions": [{"key": "c", "match": {"value": 1}}], "min_count": 1}
        });
        let f = Filter::from_json(&v).unwrap();
        let back = Filter::from_json(&f.to_json()).unwrap();
        assert_eq!(back, f);
        // the empty filter stays empty
        let empty = Filter::default();
        assert_eq!(Filter::from_json(&empty.to_json()).unwrap(), empty);
    }
}
