//! Qdrant's polymorphic request fields (point ids, vectors, `with_payload`,
//! `with_vector`, filters) parsed into server types, and points rendered back as
//! Qdrant's `Record` / `ScoredPoint`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use vectorforge::{Filter, Payload, PointId};

use crate::error::{ServiceError, ServiceResult};
use crate::store::{PointOut, VectorOut, VectorSelection};

pub fn point_id(v: &Value) -> ServiceResult<PointId> {
    PointId::from_json(v).map_err(|e| ServiceError::invalid(format!("Wrong input: {e}")))
}

/// A point id in a URL path: an unsigned integer or a UUID.
pub fn point_id_str(s: &str) -> ServiceResult<PointId> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(PointId::Num(n));
    }
    uuid::Uuid::parse_str(s).map(PointId::Uuid).map_err(|_| {
        ServiceError::invalid(format!(
            "Wrong input: point id {s:?} is neither an unsigned integer nor a UUID"
        ))
    })
}

pub fn point_ids(v: &[Value]) -> ServiceResult<Vec<PointId>> {
    v.iter().map(point_id).collect()
}

pub fn id_json(id: &PointId) -> Value {
    match id {
        PointId::Num(n) => json!(n),
        PointId::Uuid(u) => json!(u.to_string()),
    }
}

/// A dense vector: an array of finite numbers.
pub fn dense(v: &Value, what: &str) -> ServiceResult<Vec<f32>> {
    let arr = match v {
        Value::Array(a) => a,
        Value::Object(o) if o.contains_key("indices") => {
            return Err(ServiceError::invalid(format!(
                "Wrong input: {what}: sparse vectors are not supported by vectorforge"
            )));
        }
        _ => {
            return Err(ServiceError::invalid(format!(
                "Wrong input: {what}: expected an array of numbers"
            )));
        }
    };
    arr.iter()
        .map(|x| match x {
            Value::Number(n) => n.as_f64().map(|f| f as f32),
            Value::Array(_) => None,
            _ => None,
        })
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| {
            if arr.iter().any(Value::is_array) {
                ServiceError::invalid(format!(
                    "Wrong input: {what}: multi-vectors are not supported by vectorforge"
                ))
            } else {
                ServiceError::invalid(format!("Wrong input: {what}: expected an array of numbers"))
            }
        })
}

/// A point's `vector` field: one array (the unnamed vector) or `{name: array}`.
pub fn point_vectors(v: &Value, id: &PointId) -> ServiceResult<BTreeMap<String, Vec<f32>>> {
    match v {
        Value::Array(_) => Ok(BTreeMap::from([(
            String::new(),
            dense(v, &format!("point {id}"))?,
        )])),
        Value::Object(o) => o
            .iter()
            .map(|(name, x)| {
                Ok((
                    name.clone(),
                    dense(x, &format!("point {id}, vector {name:?}"))?,
                ))
            })
            .collect(),
        _ => Err(ServiceError::invalid(format!(
            "Wrong input: point {id}: vector must be an array or an object of named vectors"
        ))),
    }
}

/// An optional filter; `null` means none.
pub fn filter(v: Option<&Value>) -> ServiceResult<Option<Filter>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(f) => Filter::from_json(f)
            .map(Some)
            .map_err(|e| ServiceError::invalid(format!("Wrong input: {e}"))),
    }
}

/// Which payload keys to return.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PayloadSelector {
    #[default]
    None,
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

fn strings(v: &Value, what: &str) -> ServiceResult<Vec<String>> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
        .ok_or_else(|| {
            ServiceError::invalid(format!("Wrong input: {what}: expected a list of strings"))
        })
}

impl PayloadSelector {
    /// Parses `with_payload`: bool, list of keys, `{include}` or `{exclude}`.
    pub fn parse(v: Option<&Value>, default: bool) -> ServiceResult<Self> {
        Ok(match v {
            None | Some(Value::Null) => {
                if default {
                    Self::All
                } else {
                    Self::None
                }
            }
            Some(Value::Bool(true)) => Self::All,
            Some(Value::Bool(false)) => Self::None,
            Some(a @ Value::Array(_)) => Self::Include(strings(a, "with_payload")?),
            Some(Value::Object(o)) if o.contains_key("include") => {
                Self::Include(strings(&o["include"], "with_payload.include")?)
            }
            Some(Value::Object(o)) if o.contains_key("exclude") => {
                Self::Exclude(strings(&o["exclude"], "with_payload.exclude")?)
            }
            Some(other) => {
                return Err(ServiceError::invalid(format!(
                    "Wrong input: with_payload: expected a bool, a list of keys, {{include}} or {{exclude}}, got {other}"
                )));
            }
        })
    }

    pub fn wanted(&self) -> bool {
        *self != Self::None
    }

    pub fn apply(&self, p: Payload) -> Payload {
        match self {
            Self::None | Self::All => p,
            Self::Include(keys) => {
                let mut out = Map::new();
                for k in keys {
                    if let Some(v) = get_path(&p, k) {
                        set_path(&mut out, k, v.clone());
                    }
                }
                out
            }
            Self::Exclude(keys) => {
                let mut p = p;
                for k in keys {
                    remove_path(&mut p, k);
                }
                p
            }
        }
    }
}

fn get_path<'a>(p: &'a Payload, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = p.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn set_path(out: &mut Payload, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            out.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let e = out
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = e {
                set_path(m, rest, v);
            }
        }
    }
}

fn remove_path(p: &mut Payload, path: &str) {
    match path.split_once('.') {
        None => {
            p.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(m)) = p.get_mut(head) {
                remove_path(m, rest);
            }
        }
    }
}

/// Parses `with_vector` / `with_vectors`: bool or a list of vector names.
pub fn vector_selection(v: Option<&Value>) -> ServiceResult<VectorSelection> {
    Ok(match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => VectorSelection::None,
        Some(Value::Bool(true)) => VectorSelection::All,
        Some(a @ Value::Array(_)) => VectorSelection::Names(strings(a, "with_vector")?),
        Some(other) => {
            return Err(ServiceError::invalid(format!(
                "Wrong input: with_vector: expected a bool or a list of vector names, got {other}"
            )));
        }
    })
}

fn vector_json(v: &Option<VectorOut>) -> Value {
    match v {
        None => Value::Null,
        Some(VectorOut::Single(v)) => json!(v),
        Some(VectorOut::Named(m)) => json!(m),
    }
}

/// Qdrant's `Record`.
pub fn record_json(p: PointOut, sel: &PayloadSelector) -> Value {
    json!({
        "id": id_json(&p.id),
        "payload": p.payload.map(|x| sel.apply(x)),
        "vector": vector_json(&p.vector),
        "shard_key": null,
        "order_value": null,
    })
}

/// Qdrant's `ScoredPoint` (vectorforge keeps no per-point version: always 0).
pub fn scored_json(p: PointOut, sel: &PayloadSelector) -> Value {
    json!({
        "id": id_json(&p.id),
        "version": 0,
        "score": p.score.unwrap_or(0.0),
        "payload": p.payload.map(|x| sel.apply(x)),
        "vector": vector_json(&p.vector),
        "shard_key": null,
        "order_value": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn payload_selectors_include_and_exclude_nested_keys() {
        let inc = PayloadSelector::parse(Some(&json!(["a", "b.c"])), false).unwrap();
        assert_eq!(
            Value::Object(inc.apply(payload())),
            json!({"a": 1, "b": {"c": 2}})
        );
        let exc = PayloadSelector::parse(Some(&json!({"exclude": ["b.d", "e"]})), false).unwrap();
        assert_eq!(
            Value::Object(exc.apply(payload())),
            json!({"a": 1, "b": {"c": 2}})
        );
        assert_eq!(
            PayloadSelector::parse(None, true).unwrap(),
            PayloadSelector::All
        );
        assert!(PayloadSelector::parse(Some(&json!(3)), false).is_err());
    }

    #[test]
    fn vectors_and_ids_parse_with_clear_errors() {
        let id = PointId::Num(1);
        assert_eq!(
            point_vectors(&json!([1, 2.5]), &id).unwrap()[""],
            vec![1.0, 2.5]
        );
        assert_eq!(
            point_vectors(&json!({"t": [1]}), &id).unwrap()["t"],
            vec![1.0]
        );
        let e = point_vectors(&json!({"t": {"indices": [1], "values": [1]}}), &id).unwrap_err();
        assert!(e.to_string().contains("sparse"), "{}", e.to_string());
        assert!(
            point_vectors(&json!([[1, 2]]), &id)
                .unwrap_err()
                .to_string()
                .contains("multi")
        );
        assert!(point_vectors(&json!(["x"]), &id).is_err());
        assert_eq!(point_id_str("7").unwrap(), PointId::Num(7));
        assert!(point_id_str("-1").is_err());
        assert!(point_id(&json!("not-a-uuid")).is_err());
    }
}
