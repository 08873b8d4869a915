//! The shard-to-shard messages (proto/shard.proto) to and from the service's own
//! types. Everything a coordinator sends is re-checked by the receiving shard as if a
//! client had sent it, so a decoding error here is the peer's bug or a version skew
//! and is reported as such.

use std::collections::BTreeMap;

use vectorforge::{Filter, Payload, PayloadSchemaType, PointId, SearchRequest};

use super::pb;
use crate::error::{ServiceError, ServiceResult};
use crate::service::{SchemaCounts, Search, Target};
use crate::store::{Info, NamedPoint, PointOut, Selector, VectorOut, VectorSelection, Write};

fn skew(what: &str) -> ServiceError {
    ServiceError::internal(format!(
        "Service internal error: a shard-to-shard message has no valid {what} (are the pods on different versions?)"
    ))
}

pub fn id_to(id: PointId) -> pb::PointId {
    pb::PointId {
        kind: Some(match id {
            PointId::Num(n) => pb::point_id::Kind::Num(n),
            PointId::Uuid(u) => pb::point_id::Kind::Uuid(u.as_bytes().to_vec()),
        }),
    }
}

pub fn id_from(id: Option<pb::PointId>) -> ServiceResult<PointId> {
    match id.and_then(|i| i.kind) {
        Some(pb::point_id::Kind::Num(n)) => Ok(PointId::Num(n)),
        Some(pb::point_id::Kind::Uuid(b)) => uuid::Uuid::from_slice(&b)
            .map(PointId::Uuid)
            .map_err(|_| skew("uuid")),
        None => Err(skew("point id")),
    }
}

fn ids_from(ids: Vec<pb::PointId>) -> ServiceResult<Vec<PointId>> {
    ids.into_iter().map(|i| id_from(Some(i))).collect()
}

fn floats(v: Vec<f32>) -> pb::Floats {
    pb::Floats { values: v }
}

pub fn payload_to(p: &Payload) -> String {
    serde_json::Value::Object(p.clone()).to_string()
}

fn payload_from(s: &str) -> ServiceResult<Payload> {
    serde_json::from_str(s).map_err(|_| skew("payload"))
}

pub fn filter_to(f: &Filter) -> String {
    f.to_json().to_string()
}

pub fn filter_from(s: Option<String>) -> ServiceResult<Option<Filter>> {
    s.map(|s| {
        let v: serde_json::Value = serde_json::from_str(&s).map_err(|_| skew("filter"))?;
        Ok(Filter::from_json(&v)?)
    })
    .transpose()
}

fn point_to(p: NamedPoint) -> pb::Point {
    pb::Point {
        id: Some(id_to(p.id)),
        vectors: p.vectors.into_iter().map(|(k, v)| (k, floats(v))).collect(),
        payload_json: p.payload.as_ref().map(payload_to),
    }
}

fn point_from(p: pb::Point) -> ServiceResult<NamedPoint> {
    Ok(NamedPoint {
        id: id_from(p.id)?,
        vectors: p.vectors.into_iter().map(|(k, v)| (k, v.values)).collect(),
        payload: p.payload_json.as_deref().map(payload_from).transpose()?,
    })
}

fn selector_to(s: Selector) -> pb::Selector {
    pb::Selector {
        kind: Some(match s {
            Selector::Ids(ids) => pb::selector::Kind::Ids(pb::PointIds {
                ids: ids.into_iter().map(id_to).collect(),
            }),
            Selector::Filter(f) => pb::selector::Kind::FilterJson(filter_to(&f)),
        }),
    }
}

fn selector_from(s: Option<pb::Selector>) -> ServiceResult<Selector> {
    match s.and_then(|s| s.kind) {
        Some(pb::selector::Kind::Ids(ids)) => Ok(Selector::Ids(ids_from(ids.ids)?)),
        Some(pb::selector::Kind::FilterJson(f)) => filter_from(Some(f))?
            .map(Selector::Filter)
            .ok_or_else(|| skew("selector")),
        None => Err(skew("selector")),
    }
}

fn kind_name(k: PayloadSchemaType) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn kind_from(s: &str) -> ServiceResult<PayloadSchemaType> {
    PayloadSchemaType::from_json(&serde_json::Value::String(s.to_owned()))
        .map_err(|_| skew("payload index type"))
}

pub fn write_to(collection: &str, w: Write) -> pb::WriteRequest {
    use pb::write_request::Op;
    let set = |sel, payload: Payload, key| pb::SetPayload {
        selector: Some(selector_to(sel)),
        payload_json: payload_to(&payload),
        key,
    };
    let op = match w {
        Write::Upsert(points) => Op::Upsert(pb::Upsert {
            points: points.into_iter().map(point_to).collect(),
        }),
        Write::Delete(sel) => Op::Delete(selector_to(sel)),
        Write::SetPayload { sel, payload, key } => Op::SetPayload(set(sel, payload, key)),
        Write::OverwritePayload { sel, payload } => Op::OverwritePayload(set(sel, payload, None)),
        Write::DeletePayload { sel, keys } => Op::DeletePayload(pb::DeletePayload {
            selector: Some(selector_to(sel)),
            keys,
        }),
        Write::ClearPayload(sel) => Op::ClearPayload(selector_to(sel)),
        Write::CreateIndex { key, kind } => Op::CreateIndex(pb::CreateIndex {
            key,
            kind: kind_name(kind),
        }),
        Write::DropIndex { key } => Op::DropIndex(key),
    };
    pb::WriteRequest {
        collection: collection.to_owned(),
        op: Some(op),
    }
}

pub fn write_from(r: pb::WriteRequest) -> ServiceResult<(String, Write)> {
    use pb::write_request::Op;
    let w = match r.op.ok_or_else(|| skew("write"))? {
        Op::Upsert(u) => Write::Upsert(
            u.points
                .into_iter()
                .map(point_from)
                .collect::<ServiceResult<_>>()?,
        ),
        Op::Delete(sel) => Write::Delete(selector_from(Some(sel))?),
        Op::SetPayload(s) => Write::SetPayload {
            sel: selector_from(s.selector)?,
            payload: payload_from(&s.payload_json)?,
            key: s.key,
        },
        Op::OverwritePayload(s) => Write::OverwritePayload {
            sel: selector_from(s.selector)?,
            payload: payload_from(&s.payload_json)?,
        },
        Op::DeletePayload(d) => Write::DeletePayload {
            sel: selector_from(d.selector)?,
            keys: d.keys,
        },
        Op::ClearPayload(sel) => Write::ClearPayload(selector_from(Some(sel))?),
        Op::CreateIndex(c) => Write::CreateIndex {
            kind: kind_from(&c.kind)?,
            key: c.key,
        },
        Op::DropIndex(key) => Write::DropIndex { key },
    };
    Ok((r.collection, w))
}

pub fn selection_to(v: &VectorSelection) -> pb::VectorSelection {
    use pb::vector_selection::Kind;
    match v {
        VectorSelection::None => pb::VectorSelection {
            kind: Kind::None as i32,
            names: Vec::new(),
        },
        VectorSelection::All => pb::VectorSelection {
            kind: Kind::All as i32,
            names: Vec::new(),
        },
        VectorSelection::Names(n) => pb::VectorSelection {
            kind: Kind::Names as i32,
            names: n.clone(),
        },
    }
}

pub fn selection_from(v: Option<pb::VectorSelection>) -> VectorSelection {
    use pb::vector_selection::Kind;
    match v {
        Some(v) if v.kind == Kind::All as i32 => VectorSelection::All,
        Some(v) if v.kind == Kind::Names as i32 => VectorSelection::Names(v.names),
        _ => VectorSelection::None,
    }
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub fn search_to(s: &Search) -> pb::Search {
    use pb::search::Target as T;
    pb::Search {
        target: Some(match &s.target {
            Target::Vector(v) => T::Vector(floats(v.clone())),
            Target::Point(id) => T::Point(id_to(*id)),
            Target::None => T::None(true),
        }),
        using: s.using.clone(),
        limit: s.req.limit as u64,
        offset: s.req.offset as u64,
        ef: s.req.ef.map(|e| e as u64),
        exact: s.req.exact,
        score_threshold: s.req.score_threshold,
        filter_json: s.req.filter.as_ref().map(filter_to),
        with_payload: s.req.with_payload,
        vectors: Some(selection_to(&s.vectors)),
        quantization_json: (s.quantization != Default::default())
            .then(|| serde_json::to_string(&s.quantization).unwrap_or_default()),
    }
}

pub fn search_from(s: pb::Search) -> ServiceResult<Search> {
    use pb::search::Target as T;
    let target = match s.target.ok_or_else(|| skew("search target"))? {
        T::Vector(v) => Target::Vector(v.values),
        T::Point(id) => Target::Point(id_from(Some(id))?),
        T::None(_) => Target::None,
    };
    Ok(Search {
        target,
        using: s.using,
        req: SearchRequest {
            filter: filter_from(s.filter_json)?,
            limit: size(s.limit),
            offset: size(s.offset),
            ef: s.ef.map(size),
            exact: s.exact,
            score_threshold: s.score_threshold,
            with_payload: s.with_payload,
            ..SearchRequest::default()
        },
        vectors: selection_from(s.vectors),
        quantization: match s.quantization_json {
            Some(q) => serde_json::from_str(&q).map_err(|_| skew("quantization"))?,
            None => Default::default(),
        },
    })
}

pub fn point_out_to(p: PointOut) -> pb::PointOut {
    use pb::point_out::Vector;
    pb::PointOut {
        id: Some(id_to(p.id)),
        score: p.score,
        payload_json: p.payload.as_ref().map(payload_to),
        vector: p.vector.map(|v| match v {
            VectorOut::Single(v) => Vector::Single(floats(v)),
            VectorOut::Named(m) => Vector::Named(pb::NamedVectors {
                vectors: m.into_iter().map(|(k, v)| (k, floats(v))).collect(),
            }),
        }),
    }
}

pub fn point_out_from(p: pb::PointOut) -> ServiceResult<PointOut> {
    use pb::point_out::Vector;
    Ok(PointOut {
        id: id_from(p.id)?,
        score: p.score,
        payload: p.payload_json.as_deref().map(payload_from).transpose()?,
        vector: p.vector.map(|v| match v {
            Vector::Single(f) => VectorOut::Single(f.values),
            Vector::Named(n) => VectorOut::Named(
                n.vectors
                    .into_iter()
                    .map(|(k, v)| (k, v.values))
                    .collect::<BTreeMap<_, _>>(),
            ),
        }),
    })
}

pub fn points_from(points: Vec<pb::PointOut>) -> ServiceResult<Vec<PointOut>> {
    points.into_iter().map(point_out_from).collect()
}

/// One shard's part of CollectionInfo.
pub fn describe_to(
    info: &Info,
    schema: &[(String, PayloadSchemaType, usize)],
) -> pb::DescribeReply {
    pb::DescribeReply {
        points: info.points as u64,
        indexed_vectors: info.indexed_vectors as u64,
        stored_vectors: info.stored_vectors as u64,
        all_indexed: info.all_indexed,
        last_seq: info.last_seq,
        payload_schema: schema
            .iter()
            .map(|(k, t, n)| pb::FieldCount {
                key: k.clone(),
                kind: kind_name(*t),
                points: *n as u64,
            })
            .collect(),
    }
}

/// A shard's counts: (info, payload schema with per-field point counts).
pub fn describe_from(d: pb::DescribeReply) -> ServiceResult<(Info, SchemaCounts)> {
    let schema = d
        .payload_schema
        .into_iter()
        .map(|f| Ok((f.key, kind_from(&f.kind)?, size(f.points))))
        .collect::<ServiceResult<Vec<_>>>()?;
    Ok((
        Info {
            points: size(d.points),
            indexed_vectors: size(d.indexed_vectors),
            stored_vectors: size(d.stored_vectors),
            all_indexed: d.all_indexed,
            last_seq: d.last_seq,
            indexed_fields: schema.iter().map(|(k, t, _)| (k.clone(), *t)).collect(),
        },
        schema,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> Payload {
        json!({"lang": "en", "n": 3})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn writes_round_trip() {
        let u = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let filter =
            Filter::from_json(&json!({"must": [{"key": "lang", "match": {"value": "en"}}]}))
                .unwrap();
        let writes = vec![
            Write::Upsert(vec![NamedPoint {
                id: PointId::Uuid(u),
                vectors: BTreeMap::from([(String::new(), vec![1.0, -2.5])]),
                payload: Some(payload()),
            }]),
            Write::Delete(Selector::Ids(vec![PointId::Num(7), PointId::Uuid(u)])),
            Write::SetPayload {
                sel: Selector::Filter(filter.clone()),
                payload: payload(),
                key: Some("meta".into()),
            },
            Write::OverwritePayload {
                sel: Selector::Ids(vec![PointId::Num(1)]),
                payload: payload(),
            },
            Write::DeletePayload {
                sel: Selector::Filter(filter.clone()),
                keys: vec!["n".into()],
            },
            Write::ClearPayload(Selector::Ids(vec![PointId::Num(2)])),
            Write::CreateIndex {
                key: "lang".into(),
                kind: PayloadSchemaType::Keyword,
            },
            Write::DropIndex { key: "lang".into() },
        ];
        for w in writes {
            let want = format!("{w:?}");
            let (name, back) = write_from(write_to("docs", w)).unwrap();
            assert_eq!(name, "docs");
            assert_eq!(format!("{back:?}"), want);
        }
        // a message missing its operation is a version skew, not a client error
        let bad = pb::WriteRequest {
            collection: "docs".into(),
            op: None,
        };
        assert!(matches!(write_from(bad), Err(ServiceError::Internal(_))));
    }

    #[test]
    fn searches_and_results_round_trip() {
        let s = Search {
            target: Target::Point(PointId::Num(9)),
            using: "text".into(),
            req: SearchRequest {
                filter: Some(Filter::from_json(&json!({"must_not": {"has_id": [3]}})).unwrap()),
                limit: 5,
                offset: 2,
                ef: Some(64),
                exact: true,
                score_threshold: Some(0.25),
                with_payload: true,
                ..SearchRequest::default()
            },
            vectors: VectorSelection::Names(vec!["text".into()]),
            quantization: vectorforge::QuantizationSearchParams {
                ignore: false,
                rescore: Some(false),
                oversampling: Some(2.5),
            },
        };
        let back = search_from(search_to(&s)).unwrap();
        assert_eq!(back.target, s.target);
        assert_eq!(back.using, s.using);
        assert_eq!(format!("{:?}", back.req), format!("{:?}", s.req));
        assert_eq!(back.vectors, s.vectors);
        assert_eq!(back.quantization, s.quantization);
        for p in [
            PointOut {
                id: PointId::Num(1),
                score: Some(0.5),
                payload: Some(payload()),
                vector: Some(VectorOut::Single(vec![0.5, 1.5])),
            },
            PointOut {
                id: PointId::Num(2),
                score: None,
                payload: None,
                vector: Some(VectorOut::Named(BTreeMap::from([("a".into(), vec![1.0])]))),
            },
        ] {
            assert_eq!(point_out_from(point_out_to(p.clone())).unwrap(), p);
        }
    }
}
