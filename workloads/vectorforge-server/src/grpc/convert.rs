//! Protocol messages to server types and back. Every input error is a
//! `ServiceError::Invalid` (INVALID_ARGUMENT) that names the field and, for points,
//! the point.

use std::collections::BTreeMap;

use serde_json::Value;
use vectorforge::{
    Distance, Filter, HnswConfig, Payload, PayloadSchemaType, PointId, SearchRequest,
};

use super::pb;
use crate::error::{ServiceError, ServiceResult};
use crate::params::{CollectionParams, DEFAULT_VECTOR, HnswDiff, VectorParams};
use crate::service::{Defaults, Search, Target};
use crate::store::{Info, NamedPoint, PointOut, VectorOut, VectorSelection};

/// `limit` when a request leaves it 0.
const DEFAULT_LIMIT: usize = 10;

fn bad(message: String) -> ServiceError {
    ServiceError::invalid(format!("Wrong input: {message}"))
}

fn size(n: u64, what: &str) -> ServiceResult<usize> {
    usize::try_from(n).map_err(|_| bad(format!("{what}: {n} is too large")))
}

pub fn point_id(id: Option<&pb::PointId>, what: &str) -> ServiceResult<PointId> {
    match id.and_then(|i| i.kind.as_ref()) {
        Some(pb::point_id::Kind::Num(n)) => Ok(PointId::Num(*n)),
        Some(pb::point_id::Kind::Uuid(s)) => uuid::Uuid::parse_str(s)
            .map(PointId::Uuid)
            .map_err(|e| bad(format!("{what}: point id {s:?} is not a UUID: {e}"))),
        None => Err(bad(format!("{what}: point id is required"))),
    }
}

pub fn point_ids(ids: &[pb::PointId], what: &str) -> ServiceResult<Vec<PointId>> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| point_id(Some(id), &format!("{what}[{i}]")))
        .collect()
}

pub fn id_out(id: PointId) -> pb::PointId {
    pb::PointId {
        kind: Some(match id {
            PointId::Num(n) => pb::point_id::Kind::Num(n),
            PointId::Uuid(u) => pb::point_id::Kind::Uuid(u.to_string()),
        }),
    }
}

/// `filter_json`: empty means no filter.
pub fn filter(text: &str) -> ServiceResult<Option<Filter>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("filter_json is not valid JSON: {e}")))?;
    Filter::from_json(&v)
        .map(Some)
        .map_err(|e| bad(format!("filter_json: {e}")))
}

/// A JSON object field; empty means none.
fn json_object(text: &str, what: &str) -> ServiceResult<Option<Payload>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(Some(o)),
        Ok(other) => Err(bad(format!("{what}: expected a JSON object, got {other}"))),
        Err(e) => Err(bad(format!("{what} is not valid JSON: {e}"))),
    }
}

/// A point of an upsert; `index` is its position in the message (named in errors
/// when the point has no valid id).
pub fn named_point(p: pb::Point, index: usize) -> ServiceResult<NamedPoint> {
    let id = point_id(p.id.as_ref(), &format!("points[{index}]"))?;
    if !p.vector.is_empty() && !p.vectors.is_empty() {
        return Err(bad(format!(
            "point {id}: set either `vector` (unnamed collection) or `vectors` (named vectors), not both"
        )));
    }
    let mut vectors: BTreeMap<String, Vec<f32>> = p
        .vectors
        .into_iter()
        .map(|(name, v)| (name, v.data))
        .collect();
    if !p.vector.is_empty() {
        vectors.insert(DEFAULT_VECTOR.to_string(), p.vector);
    }
    Ok(NamedPoint {
        id,
        vectors,
        payload: json_object(&p.payload_json, &format!("point {id}: payload_json"))?,
    })
}

fn payload_text(p: Option<Payload>) -> String {
    p.map(|p| Value::Object(p).to_string()).unwrap_or_default()
}

fn vectors_out(v: Option<VectorOut>) -> (Vec<f32>, BTreeMap<String, pb::Vector>) {
    match v {
        None => (Vec::new(), BTreeMap::new()),
        Some(VectorOut::Single(v)) => (v, BTreeMap::new()),
        Some(VectorOut::Named(m)) => (
            Vec::new(),
            m.into_iter()
                .map(|(k, data)| (k, pb::Vector { data }))
                .collect(),
        ),
    }
}

pub fn point_out(p: PointOut) -> pb::Point {
    let (vector, vectors) = vectors_out(p.vector);
    pb::Point {
        id: Some(id_out(p.id)),
        vector,
        vectors,
        payload_json: payload_text(p.payload),
    }
}

pub fn scored_out(p: PointOut) -> pb::ScoredPoint {
    let (vector, vectors) = vectors_out(p.vector);
    pb::ScoredPoint {
        id: Some(id_out(p.id)),
        score: p.score.unwrap_or(0.0),
        payload_json: payload_text(p.payload),
        vector,
        vectors,
    }
}

/// `with_vectors` + `vector_names`: the names when given, else all or none.
pub fn selection(with_vectors: bool, names: Vec<String>) -> VectorSelection {
    if !names.is_empty() {
        VectorSelection::Names(names)
    } else if with_vectors {
        VectorSelection::All
    } else {
        VectorSelection::None
    }
}

/// A search request as the service's search (its limits are the service's to check).
pub fn query(r: pb::SearchRequest) -> ServiceResult<Search> {
    let limit = match size(r.limit, "limit")? {
        0 => DEFAULT_LIMIT,
        n => n,
    };
    let offset = size(r.offset, "offset")?;
    let ef = r.hnsw_ef.map(|e| size(e, "hnsw_ef")).transpose()?;
    if r.vector.is_empty() {
        return Err(bad("vector: a query vector is required".to_string()));
    }
    Ok(Search {
        target: Target::Vector(r.vector),
        using: r.using,
        req: SearchRequest {
            vector: Vec::new(),
            filter: filter(&r.filter_json)?,
            limit,
            offset,
            ef,
            exact: r.exact,
            score_threshold: r.score_threshold,
            with_payload: r.with_payload,
            with_vector: false,
        },
        vectors: selection(r.with_vectors, r.vector_names),
        quantization: r
            .quantization
            .map(|q| vectorforge::QuantizationSearchParams {
                ignore: q.ignore,
                rescore: q.rescore,
                oversampling: q.oversampling,
            })
            .unwrap_or_default(),
    })
}

pub fn distance(d: i32, what: &str) -> ServiceResult<Distance> {
    match pb::Distance::try_from(d) {
        Ok(pb::Distance::Cosine) => Ok(Distance::Cosine),
        Ok(pb::Distance::Euclid) => Ok(Distance::Euclid),
        Ok(pb::Distance::Dot) => Ok(Distance::Dot),
        Ok(pb::Distance::Manhattan) => Ok(Distance::Manhattan),
        Ok(pb::Distance::Unspecified) | Err(_) => Err(bad(format!(
            "{what}.distance is required (COSINE, EUCLID, DOT or MANHATTAN)"
        ))),
    }
}

fn distance_out(d: Distance) -> pb::Distance {
    match d {
        Distance::Cosine => pb::Distance::Cosine,
        Distance::Euclid => pb::Distance::Euclid,
        Distance::Dot => pb::Distance::Dot,
        Distance::Manhattan => pb::Distance::Manhattan,
    }
}

fn hnsw_diff(h: Option<&pb::HnswConfig>, what: &str) -> ServiceResult<Option<HnswDiff>> {
    let Some(h) = h else { return Ok(None) };
    let field =
        |v: Option<u64>, name: &str| v.map(|n| size(n, &format!("{what}.{name}"))).transpose();
    Ok(Some(HnswDiff {
        m: field(h.m, "m")?,
        ef_construct: field(h.ef_construct, "ef_construct")?,
        full_scan_threshold: field(h.full_scan_threshold, "full_scan_threshold")?,
        ef: field(h.ef, "ef")?,
    }))
}

fn diff_out(h: &HnswDiff) -> pb::HnswConfig {
    pb::HnswConfig {
        m: h.m.map(|n| n as u64),
        ef_construct: h.ef_construct.map(|n| n as u64),
        full_scan_threshold: h.full_scan_threshold.map(|n| n as u64),
        ef: h.ef.map(|n| n as u64),
    }
}

fn hnsw_out(h: &HnswConfig) -> pb::HnswConfig {
    pb::HnswConfig {
        m: Some(h.m as u64),
        ef_construct: Some(h.ef_construct as u64),
        full_scan_threshold: Some(h.full_scan_threshold as u64),
        ef: Some(h.ef as u64),
    }
}

fn vector_params(v: &pb::VectorParams, what: &str) -> ServiceResult<VectorParams> {
    Ok(VectorParams {
        size: size(v.size, &format!("{what}.size"))?,
        distance: distance(v.distance, what)?,
        hnsw_config: hnsw_diff(v.hnsw_config.as_ref(), &format!("{what}.hnsw_config"))?,
        on_disk: None,
    })
}

fn vector_params_out(v: &VectorParams) -> pb::VectorParams {
    pb::VectorParams {
        size: v.size as u64,
        distance: distance_out(v.distance) as i32,
        hnsw_config: v.hnsw_config.as_ref().map(diff_out),
    }
}

pub fn schema_type(t: i32) -> ServiceResult<PayloadSchemaType> {
    match pb::PayloadSchemaType::try_from(t) {
        Ok(pb::PayloadSchemaType::Keyword) => Ok(PayloadSchemaType::Keyword),
        Ok(pb::PayloadSchemaType::Integer) => Ok(PayloadSchemaType::Integer),
        Ok(pb::PayloadSchemaType::Float) => Ok(PayloadSchemaType::Float),
        Ok(pb::PayloadSchemaType::Bool) => Ok(PayloadSchemaType::Bool),
        Ok(pb::PayloadSchemaType::Datetime) => Ok(PayloadSchemaType::Datetime),
        Ok(pb::PayloadSchemaType::Uuid) => Ok(PayloadSchemaType::Uuid),
        Ok(pb::PayloadSchemaType::Unspecified) | Err(_) => Err(bad(
            "field_type is required (KEYWORD, INTEGER, FLOAT, BOOL, DATETIME or UUID)".to_string(),
        )),
    }
}

fn schema_out(t: PayloadSchemaType) -> pb::PayloadSchemaType {
    match t {
        PayloadSchemaType::Keyword => pb::PayloadSchemaType::Keyword,
        PayloadSchemaType::Integer => pb::PayloadSchemaType::Integer,
        PayloadSchemaType::Float => pb::PayloadSchemaType::Float,
        PayloadSchemaType::Bool => pb::PayloadSchemaType::Bool,
        PayloadSchemaType::Datetime => pb::PayloadSchemaType::Datetime,
        PayloadSchemaType::Uuid => pb::PayloadSchemaType::Uuid,
    }
}

/// Stored params of a new collection (the server's defaults fill what the request leaves out).
pub fn create_params(
    r: &pb::CreateCollectionRequest,
    defaults: &Defaults,
) -> ServiceResult<CollectionParams> {
    let vectors: BTreeMap<String, VectorParams> = match (&r.vector, r.named_vectors.is_empty()) {
        (Some(v), true) => {
            BTreeMap::from([(DEFAULT_VECTOR.to_string(), vector_params(v, "vector")?)])
        }
        (None, false) => r
            .named_vectors
            .iter()
            .map(|(name, v)| {
                if name.is_empty() || name.len() > 256 {
                    return Err(bad(
                        "named_vectors: vector names must be 1..=256 characters".to_string(),
                    ));
                }
                Ok((
                    name.clone(),
                    vector_params(v, &format!("named_vectors[{name:?}]"))?,
                ))
            })
            .collect::<ServiceResult<_>>()?,
        (Some(_), false) => {
            return Err(bad(
                "set either `vector` or `named_vectors`, not both".to_string()
            ));
        }
        (None, true) => return Err(bad("vector or named_vectors is required".to_string())),
    };
    let mut hnsw = defaults.hnsw.clone();
    if let Some(d) = hnsw_diff(r.hnsw_config.as_ref(), "hnsw_config")? {
        d.apply(&mut hnsw);
    }
    Ok(CollectionParams {
        vectors,
        hnsw,
        sync: defaults.sync,
        optimizers_config: None,
        metadata: json_object(&r.metadata_json, "metadata_json")?,
        created_at: chrono::Utc::now().to_rfc3339(),
        quantization: Default::default(),
    })
}

pub fn collection_info(
    name: &str,
    info: Info,
    schema: Vec<(String, PayloadSchemaType, usize)>,
    p: &CollectionParams,
) -> pb::CollectionInfo {
    let (vector, named_vectors) = if p.is_unnamed() {
        (
            p.vectors.get(DEFAULT_VECTOR).map(vector_params_out),
            BTreeMap::new(),
        )
    } else {
        (
            None,
            p.vectors
                .iter()
                .map(|(k, v)| (k.clone(), vector_params_out(v)))
                .collect(),
        )
    };
    pb::CollectionInfo {
        name: name.to_string(),
        points_count: info.points as u64,
        indexed_vectors_count: info.indexed_vectors as u64,
        stored_vectors_count: info.stored_vectors as u64,
        all_indexed: info.all_indexed,
        last_operation_id: info.last_seq,
        vector,
        named_vectors,
        hnsw_config: Some(hnsw_out(&p.hnsw)),
        payload_indexes: schema
            .into_iter()
            .map(|(field_name, t, n)| pb::PayloadIndexInfo {
                field_name,
                field_type: schema_out(t) as i32,
                points: n as u64,
            })
            .collect(),
        metadata_json: payload_text(p.metadata.clone()),
        created_at: p.created_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: u64) -> pb::PointId {
        pb::PointId {
            kind: Some(pb::point_id::Kind::Num(n)),
        }
    }

    #[test]
    fn points_convert_with_errors_that_name_the_point() {
        let p = named_point(
            pb::Point {
                id: Some(num(7)),
                vector: vec![1.0, 2.0],
                payload_json: r#"{"a": 1}"#.into(),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(p.vectors[""], vec![1.0, 2.0]);
        assert_eq!(p.payload.unwrap()["a"], 1);
        let e = named_point(
            pb::Point {
                vector: vec![1.0],
                ..Default::default()
            },
            3,
        )
        .unwrap_err();
        assert!(e.to_string().contains("points[3]"), "{}", e.to_string());
        let e = named_point(
            pb::Point {
                id: Some(num(9)),
                vector: vec![1.0],
                payload_json: "[1]".into(),
                ..Default::default()
            },
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("point 9"), "{}", e.to_string());
        let both = pb::Point {
            id: Some(num(4)),
            vector: vec![1.0],
            vectors: BTreeMap::from([("a".to_string(), pb::Vector { data: vec![1.0] })]),
            ..Default::default()
        };
        assert!(
            named_point(both, 0)
                .unwrap_err()
                .to_string()
                .contains("point 4")
        );
        let uuid = pb::PointId {
            kind: Some(pb::point_id::Kind::Uuid("nope".into())),
        };
        assert!(matches!(
            point_id(Some(&uuid), "ids[0]").unwrap_err(),
            ServiceError::Invalid(_)
        ));
        let u = uuid::Uuid::new_v4();
        assert_eq!(
            point_id(Some(&id_out(PointId::Uuid(u))), "x").unwrap(),
            PointId::Uuid(u)
        );
    }

    #[test]
    fn filters_and_queries_are_checked() {
        assert!(filter("").unwrap().is_none());
        assert!(
            filter(r#"{"must": [{"key": "a", "match": {"value": 1}}]}"#)
                .unwrap()
                .is_some()
        );
        assert!(
            filter("{not json")
                .unwrap_err()
                .to_string()
                .contains("filter_json")
        );
        assert!(filter(r#"{"must": [{"key": "a", "bogus": 1}]}"#).is_err());
        let q = query(pb::SearchRequest {
            vector: vec![1.0],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.req.limit, 10);
        // a query needs a vector; limits (limit + offset, hnsw_ef, score_threshold) are
        // the collection service's, checked there for REST and gRPC alike
        assert!(matches!(
            query(pb::SearchRequest::default()).unwrap_err(),
            ServiceError::Invalid(_)
        ));
        let big = query(pb::SearchRequest {
            vector: vec![1.0],
            limit: 200_000,
            hnsw_ef: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((big.req.limit, big.req.ef), (200_000, Some(0)));
    }

    #[test]
    fn create_requests_need_exactly_one_vector_kind() {
        let d = Defaults {
            sync: vectorforge::SyncPolicy::Always,
            hnsw: HnswConfig::default(),
        };
        let vp = pb::VectorParams {
            size: 4,
            distance: pb::Distance::Dot as i32,
            hnsw_config: None,
        };
        let one = pb::CreateCollectionRequest {
            vector: Some(vp),
            ..Default::default()
        };
        assert!(create_params(&one, &d).unwrap().is_unnamed());
        let named = pb::CreateCollectionRequest {
            named_vectors: BTreeMap::from([("a".to_string(), vp), ("b".to_string(), vp)]),
            hnsw_config: Some(pb::HnswConfig {
                m: Some(8),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = create_params(&named, &d).unwrap();
        assert_eq!((p.vectors.len(), p.hnsw.m), (2, 8));
        let both = pb::CreateCollectionRequest {
            vector: Some(vp),
            ..named.clone()
        };
        assert!(create_params(&both, &d).is_err());
        assert!(create_params(&pb::CreateCollectionRequest::default(), &d).is_err());
        let no_distance = pb::CreateCollectionRequest {
            vector: Some(pb::VectorParams {
                size: 4,
                distance: 0,
                hnsw_config: None,
            }),
            ..Default::default()
        };
        assert!(
            create_params(&no_distance, &d)
                .unwrap_err()
                .to_string()
                .contains("distance")
        );
    }
}
