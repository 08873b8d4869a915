//! Point routes: upsert (list and batch forms), retrieve, delete by ids or filter,
//! payload set / overwrite / delete / clear, scroll and count.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use vectorforge::{Payload, PointId};

use super::collections::wait_param;
use super::models::{self, PayloadSelector};
use super::{AppState, Body, Reply, reply, update_result};
use crate::error::{ServiceError, ServiceResult};
use crate::service::Scroll;
use crate::store::{NamedPoint, Selector, VectorSelection, Write};

type Q = Query<HashMap<String, String>>;

fn payload_of(v: Option<&Value>, what: &str) -> ServiceResult<Option<Payload>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(other) => Err(ServiceError::invalid(format!(
            "Wrong input: {what}: payload must be an object, got {other}"
        ))),
    }
}

/// Points of an upsert body: `{"points": [...]}` or `{"batch": {ids, vectors, payloads}}`.
fn upsert_points(body: &Value) -> ServiceResult<Vec<NamedPoint>> {
    if let Some(points) = body.get("points") {
        let arr = points
            .as_array()
            .ok_or_else(|| ServiceError::invalid("Wrong input: points: expected a list"))?;
        return arr
            .iter()
            .map(|p| {
                let id = models::point_id(p.get("id").unwrap_or(&Value::Null))?;
                let vector = p.get("vector").ok_or_else(|| {
                    ServiceError::invalid(format!("Wrong input: point {id}: vector is required"))
                })?;
                Ok(NamedPoint {
                    id,
                    vectors: models::point_vectors(vector, &id)?,
                    payload: payload_of(p.get("payload"), &format!("point {id}"))?,
                })
            })
            .collect();
    }
    let batch = body
        .get("batch")
        .ok_or_else(|| ServiceError::invalid("Wrong input: expected `points` or `batch`"))?;
    let ids = models::point_ids(
        batch
            .get("ids")
            .and_then(Value::as_array)
            .ok_or_else(|| ServiceError::invalid("Wrong input: batch.ids: expected a list"))?,
    )?;
    let n = ids.len();
    let vectors = batch
        .get("vectors")
        .ok_or_else(|| ServiceError::invalid("Wrong input: batch.vectors is required"))?;
    let mut per_point: Vec<std::collections::BTreeMap<String, Vec<f32>>> =
        vec![Default::default(); n];
    let mut fill = |name: &str, list: &Value| -> ServiceResult<()> {
        let list = list.as_array().filter(|l| l.len() == n).ok_or_else(|| {
            ServiceError::invalid(format!(
                "Wrong input: batch.vectors{}: expected a list of {n} vectors (one per id)",
                if name.is_empty() {
                    String::new()
                } else {
                    format!(".{name}")
                }
            ))
        })?;
        for (i, v) in list.iter().enumerate() {
            per_point[i].insert(
                name.to_string(),
                models::dense(v, &format!("point {}", ids[i]))?,
            );
        }
        Ok(())
    };
    match vectors {
        Value::Object(m) => {
            for (name, list) in m {
                fill(name, list)?;
            }
        }
        list => fill("", list)?,
    }
    let payloads: Vec<Option<Payload>> = match batch.get("payloads") {
        None | Some(Value::Null) => vec![None; n],
        Some(Value::Array(a)) if a.len() == n => a
            .iter()
            .enumerate()
            .map(|(i, p)| payload_of(Some(p), &format!("point {}", ids[i])))
            .collect::<ServiceResult<_>>()?,
        Some(_) => {
            return Err(ServiceError::invalid(format!(
                "Wrong input: batch.payloads: expected a list of {n} payloads"
            )));
        }
    };
    Ok(ids
        .into_iter()
        .zip(per_point)
        .zip(payloads)
        .map(|((id, vectors), payload)| NamedPoint {
            id,
            vectors,
            payload,
        })
        .collect())
}

async fn write(
    st: &AppState,
    name: &str,
    q: &HashMap<String, String>,
    w: Write,
) -> ServiceResult<Reply> {
    let seq = st.service.write(name, w).await?;
    reply(update_result(seq, wait_param(q)))
}

pub async fn upsert(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    st.service.require(&name)?;
    let points = upsert_points(&body)?;
    write(&st, &name, &q, Write::Upsert(points)).await
}

/// `{"points": [ids]}` or `{"filter": {...}}`.
fn selector(body: &Value) -> ServiceResult<Selector> {
    if let Some(p) = body.get("points").filter(|v| !v.is_null()) {
        let ids = p.as_array().ok_or_else(|| {
            ServiceError::invalid("Wrong input: points: expected a list of point ids")
        })?;
        return Ok(Selector::Ids(models::point_ids(ids)?));
    }
    match models::filter(body.get("filter"))? {
        Some(f) => Ok(Selector::Filter(f)),
        None => Err(ServiceError::invalid(
            "Wrong input: expected `points` (a list of ids) or `filter`",
        )),
    }
}

pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let sel = selector(&body)?;
    write(&st, &name, &q, Write::Delete(sel)).await
}

fn payload_body(body: &Value) -> ServiceResult<(Selector, Payload)> {
    let payload = payload_of(body.get("payload"), "payload")?
        .ok_or_else(|| ServiceError::invalid("Wrong input: payload is required"))?;
    Ok((selector(body)?, payload))
}

pub async fn set_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let (sel, payload) = payload_body(&body)?;
    let key = match body.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(other) => {
            return Err(ServiceError::invalid(format!(
                "Wrong input: key: expected a string, got {other}"
            )));
        }
    };
    write(&st, &name, &q, Write::SetPayload { sel, payload, key }).await
}

pub async fn overwrite_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let (sel, payload) = payload_body(&body)?;
    write(&st, &name, &q, Write::OverwritePayload { sel, payload }).await
}

pub async fn delete_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let keys: Vec<String> = body
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|k| k.as_str().map(str::to_string)).collect())
        .ok_or_else(|| ServiceError::invalid("Wrong input: keys: expected a list of strings"))?;
    let sel = selector(&body)?;
    write(&st, &name, &q, Write::DeletePayload { sel, keys }).await
}

pub async fn clear_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let sel = selector(&body)?;
    write(&st, &name, &q, Write::ClearPayload(sel)).await
}

pub async fn get_many(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    st.service.require(&name)?;
    let ids =
        models::point_ids(body.get("ids").and_then(Value::as_array).ok_or_else(|| {
            ServiceError::invalid("Wrong input: ids: expected a list of point ids")
        })?)?;
    let sel = PayloadSelector::parse(body.get("with_payload"), true)?;
    let vectors = models::vector_selection(body.get("with_vector").or(body.get("with_vectors")))?;
    let wp = sel.wanted();
    let points = st.service.retrieve(&name, ids, wp, vectors).await?;
    reply(
        points
            .into_iter()
            .map(|p| models::record_json(p, &sel))
            .collect::<Vec<_>>(),
    )
}

pub async fn get_one(
    State(st): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> ServiceResult<Reply> {
    let id: PointId = models::point_id_str(&id)?;
    let mut points = st
        .service
        .retrieve(&name, vec![id], true, VectorSelection::All)
        .await?;
    match points.pop() {
        Some(p) => reply(models::record_json(p, &PayloadSelector::All)),
        None => Err(ServiceError::not_found(format!(
            "Not found: No point with id {id} found"
        ))),
    }
}

pub async fn scroll(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    st.service.require(&name)?;
    if body.get("order_by").is_some_and(|v| !v.is_null()) {
        return Err(ServiceError::invalid(
            "Wrong input: order_by is not supported; scroll is ordered by point id",
        ));
    }
    let filter = models::filter(body.get("filter"))?;
    let limit = match body.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ServiceError::invalid("Wrong input: limit: expected a positive integer")
            })?,
    };
    let offset = match body.get("offset") {
        None | Some(Value::Null) => None,
        Some(v) => Some(models::point_id(v)?),
    };
    let sel = PayloadSelector::parse(body.get("with_payload"), true)?;
    let vectors = models::vector_selection(body.get("with_vector").or(body.get("with_vectors")))?;
    let scroll = Scroll {
        filter,
        limit,
        offset,
        with_payload: sel.wanted(),
        vectors,
    };
    let (points, next) = st.service.scroll(&name, scroll).await?;
    reply(json!({
        "points": points.into_iter().map(|p| models::record_json(p, &sel)).collect::<Vec<_>>(),
        "next_page_offset": next.as_ref().map(models::id_json),
    }))
}

pub async fn count(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    st.service.require(&name)?;
    let filter = models::filter(body.get("filter"))?;
    let n = st.service.count(&name, filter).await?;
    reply(json!({"count": n}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_batch_upserts_give_the_same_points() {
        let list = upsert_points(&json!({"points": [
            {"id": 1, "vector": {"a": [1, 2]}, "payload": {"x": 1}},
            {"id": 2, "vector": {"a": [3, 4]}}
        ]}))
        .unwrap();
        let batch = upsert_points(&json!({"batch": {"ids": [1, 2], "vectors": {"a": [[1, 2], [3, 4]]}, "payloads": [{"x": 1}, null]}})).unwrap();
        assert_eq!(list, batch);
        let e = upsert_points(&json!({"batch": {"ids": [1, 2], "vectors": [[1, 2]]}})).unwrap_err();
        assert!(e.to_string().contains("2 vectors"), "{}", e.to_string());
        assert!(upsert_points(&json!({"points": [{"id": -3, "vector": [1]}]})).is_err());
        assert!(
            upsert_points(&json!({"points": [{"id": 3, "vector": [1], "payload": 5}]})).is_err()
        );
    }

    #[test]
    fn selectors_need_ids_or_a_filter() {
        assert!(
            matches!(selector(&json!({"points": [1, 2]})).unwrap(), Selector::Ids(v) if v.len() == 2)
        );
        assert!(matches!(
            selector(&json!({"filter": {"must": []}})).unwrap(),
            Selector::Filter(_)
        ));
        assert!(selector(&json!({})).is_err());
        assert!(selector(&json!({"filter": {"must": [{"key": "a", "bogus": 1}]}})).is_err());
    }
}
