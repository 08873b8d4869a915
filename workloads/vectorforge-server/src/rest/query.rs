//! Search routes: the universal `points/query` (nearest to a vector or to a stored
//! point, in any named vector space) and its batch form, plus the legacy
//! `points/search` and `points/search/batch`.

use axum::extract::{Path, State};
use serde_json::{Value, json};
use vectorforge::{QuantizationSearchParams, SearchRequest};

use super::models::{self, PayloadSelector};
use super::{AppState, Body, Reply, reply};
use crate::error::{ServiceError, ServiceResult};
use crate::service::{Search, Target};
use crate::store::PointOut;

/// One search as REST asks for it: the service's search plus which payload keys to show.
#[derive(Clone, Debug)]
struct Plan {
    search: Search,
    payload: PayloadSelector,
}

fn usize_field(body: &Value, field: &str, default: usize) -> ServiceResult<usize> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "Wrong input: {field}: expected a non-negative integer"
                ))
            }),
    }
}

fn common(
    body: &Value,
    target: Target,
    using: String,
    default_limit: Option<usize>,
) -> ServiceResult<Plan> {
    let limit = match default_limit {
        Some(d) => usize_field(body, "limit", d)?,
        None => usize_field(body, "limit", usize::MAX).and_then(|l| {
            if l == usize::MAX {
                Err(ServiceError::invalid("Wrong input: limit is required"))
            } else {
                Ok(l)
            }
        })?,
    };
    let offset = usize_field(body, "offset", 0)?;
    let params = body.get("params").filter(|p| !p.is_null());
    let ef = match params.and_then(|p| p.get("hnsw_ef")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    ServiceError::invalid(
                        "Wrong input: params.hnsw_ef: expected a positive integer",
                    )
                })?,
        ),
    };
    let exact = params
        .and_then(|p| p.get("exact"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let quantization = match params.and_then(|p| p.get("quantization")) {
        None | Some(Value::Null) => QuantizationSearchParams::default(),
        Some(q) => serde_json::from_value(q.clone())
            .map_err(|e| ServiceError::invalid(format!("Wrong input: params.quantization: {e}")))?,
    };
    let score_threshold = match body.get("score_threshold") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            ServiceError::invalid("Wrong input: score_threshold: expected a number")
        })? as f32),
    };
    let payload = PayloadSelector::parse(body.get("with_payload"), false)?;
    let vectors = models::vector_selection(body.get("with_vector").or(body.get("with_vectors")))?;
    Ok(Plan {
        search: Search {
            target,
            using,
            req: SearchRequest {
                vector: Vec::new(),
                filter: models::filter(body.get("filter"))?,
                limit,
                offset,
                ef,
                exact,
                score_threshold,
                with_payload: payload.wanted(),
                with_vector: false,
            },
            vectors,
            quantization,
        },
        payload,
    })
}

/// A legacy SearchRequest: `vector` is an array or `{"name", "vector"}`.
fn search_plan(body: &Value) -> ServiceResult<Plan> {
    let v = body
        .get("vector")
        .ok_or_else(|| ServiceError::invalid("Wrong input: vector is required"))?;
    let (using, vector) = match v {
        Value::Object(o) if o.contains_key("name") => (
            o.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            models::dense(o.get("vector").unwrap_or(&Value::Null), "vector")?,
        ),
        other => (String::new(), models::dense(other, "vector")?),
    };
    common(body, Target::Vector(vector), using, None)
}

/// A QueryRequest: `query` is a vector, a point id, or `{"nearest": either}`.
fn query_plan(body: &Value) -> ServiceResult<Plan> {
    for field in ["prefetch", "lookup_from"] {
        if body
            .get(field)
            .is_some_and(|v| !v.is_null() && v != &json!([]))
        {
            return Err(ServiceError::invalid(format!(
                "Wrong input: {field} is not supported by vectorforge"
            )));
        }
    }
    let target = match body.get("query") {
        None | Some(Value::Null) => Target::None,
        Some(q) => {
            let q = match q {
                Value::Object(o) if o.contains_key("nearest") => &o["nearest"],
                Value::Object(o) => {
                    let kind = o.keys().next().cloned().unwrap_or_default();
                    return Err(ServiceError::invalid(format!(
                        "Wrong input: query type {kind:?} is not supported by vectorforge (supported: a vector, a point id, nearest)"
                    )));
                }
                other => other,
            };
            match q {
                Value::Array(_) => Target::Vector(models::dense(q, "query")?),
                Value::Number(_) | Value::String(_) => Target::Point(models::point_id(q)?),
                _ => {
                    return Err(ServiceError::invalid(
                        "Wrong input: query.nearest: expected a vector or a point id",
                    ));
                }
            }
        }
    };
    let using = body
        .get("using")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    common(body, target, using, Some(10))
}

async fn run_all(
    st: &AppState,
    name: &str,
    plans: Vec<Plan>,
) -> ServiceResult<Vec<(Vec<PointOut>, PayloadSelector)>> {
    let (searches, selectors): (Vec<Search>, Vec<PayloadSelector>) =
        plans.into_iter().map(|p| (p.search, p.payload)).unzip();
    let hits = match <[Search; 1]>::try_from(searches) {
        Ok([s]) => vec![st.service.search(name, s).await?],
        Err(searches) => st.service.search_all(name, searches).await?,
    };
    Ok(hits.into_iter().zip(selectors).collect())
}

fn scored(hits: Vec<PointOut>, sel: &PayloadSelector) -> Vec<Value> {
    hits.into_iter()
        .map(|p| models::scored_json(p, sel))
        .collect()
}

fn batch_of(body: &Value) -> ServiceResult<&Vec<Value>> {
    body.get("searches")
        .and_then(Value::as_array)
        .ok_or_else(|| ServiceError::invalid("Wrong input: searches: expected a list of requests"))
}

pub async fn search(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let plan = search_plan(&body)?;
    let mut out = run_all(&st, &name, vec![plan]).await?;
    let (hits, sel) = out.pop().unwrap_or_default();
    reply(scored(hits, &sel))
}

pub async fn search_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let plans = batch_of(&body)?
        .iter()
        .map(search_plan)
        .collect::<ServiceResult<Vec<_>>>()?;
    let out = run_all(&st, &name, plans).await?;
    reply(
        out.into_iter()
            .map(|(h, s)| scored(h, &s))
            .collect::<Vec<_>>(),
    )
}

pub async fn query(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let plan = query_plan(&body)?;
    let mut out = run_all(&st, &name, vec![plan]).await?;
    let (hits, sel) = out.pop().unwrap_or_default();
    reply(json!({"points": scored(hits, &sel)}))
}

pub async fn query_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let plans = batch_of(&body)?
        .iter()
        .map(query_plan)
        .collect::<ServiceResult<Vec<_>>>()?;
    let out = run_all(&st, &name, plans).await?;
    reply(
        out.into_iter()
            .map(|(h, s)| json!({"points": scored(h, &s)}))
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorforge::PointId;

    #[test]
    fn query_shapes_parse() {
        let p = query_plan(&json!({"query": [1, 2], "using": "t", "limit": 3, "params": {"hnsw_ef": 64, "exact": true}})).unwrap();
        assert_eq!(p.search.target, Target::Vector(vec![1.0, 2.0]));
        assert_eq!(
            (
                p.search.using.as_str(),
                p.search.req.limit,
                p.search.req.ef,
                p.search.req.exact
            ),
            ("t", 3, Some(64), true)
        );
        let p = query_plan(&json!({"query": {"nearest": 5}})).unwrap();
        assert_eq!(
            (p.search.target, p.search.req.limit),
            (Target::Point(PointId::Num(5)), 10)
        );
        assert_eq!(query_plan(&json!({})).unwrap().search.target, Target::None);
        let e = query_plan(&json!({"query": {"recommend": {"positive": [1]}}})).unwrap_err();
        assert!(e.to_string().contains("recommend"), "{}", e.to_string());
        assert!(query_plan(&json!({"query": [1], "prefetch": [{"query": [1]}]})).is_err());
    }

    #[test]
    fn legacy_search_needs_a_limit_and_accepts_named_vectors() {
        let p =
            search_plan(&json!({"vector": {"name": "img", "vector": [1, 0]}, "limit": 2})).unwrap();
        assert_eq!(p.search.using, "img");
        assert!(search_plan(&json!({"vector": [1, 0]})).is_err());
        // limits are the service's (one rule for REST and gRPC), not the parser's
        let big = search_plan(&json!({"vector": [1, 0], "limit": 200000})).unwrap();
        assert_eq!(big.search.req.limit, 200_000);
    }
}
