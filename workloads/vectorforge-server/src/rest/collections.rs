//! Collection routes: list, get (Qdrant's CollectionInfo), exists, create, update,
//! delete, and payload index create / delete.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use vectorforge::{HnswConfig, PayloadSchemaType, SyncPolicy};

use super::{AppState, Body, Reply, reply, update_result};
use crate::error::{ServiceError, ServiceResult};
use crate::params::{
    CollectionParams, HnswDiff, parse_quantization, parse_vectors, quantization_json,
};
use crate::service::Description;
use crate::store::Write;

pub async fn list(State(st): State<AppState>) -> ServiceResult<Reply> {
    let names: Vec<Value> = st
        .service
        .list()
        .into_iter()
        .map(|n| json!({"name": n}))
        .collect();
    reply(json!({"collections": names}))
}

pub async fn exists(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    reply(json!({"exists": st.service.exists(&name)}))
}

pub async fn get_one(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    let Description {
        info,
        payload_schema: schema,
        params: p,
    } = st.service.describe(&name).await?;
    let mut optimizer = json!({
        "deleted_threshold": 0.2,
        "vacuum_min_vector_number": 1000,
        "default_segment_number": 0,
        "max_segment_size": null,
        "memmap_threshold": null,
        "indexing_threshold": 0,
        "flush_interval_sec": 5,
        "max_optimization_threads": null,
    });
    if let (Some(Value::Object(given)), Value::Object(o)) = (&p.optimizers_config, &mut optimizer) {
        for (k, v) in given {
            o.insert(k.clone(), v.clone());
        }
    }
    let schema: serde_json::Map<String, Value> = schema
        .into_iter()
        .map(|(k, t, n)| (k, json!({"data_type": t, "params": null, "points": n})))
        .collect();
    reply(json!({
        "status": if info.all_indexed { "green" } else { "yellow" },
        "optimizer_status": "ok",
        "indexed_vectors_count": info.indexed_vectors,
        "points_count": info.points,
        "segments_count": p.vectors.len(),
        "config": {
            "params": {
                "vectors": p.vectors_json(),
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": false,
            },
            "hnsw_config": {
                "m": p.hnsw.m,
                "ef_construct": p.hnsw.ef_construct,
                "full_scan_threshold": p.hnsw.full_scan_threshold,
                "max_indexing_threads": 0,
                "on_disk": false,
            },
            "optimizer_config": optimizer,
            "wal_config": {"wal_capacity_mb": 64, "wal_segments_ahead": 0, "wal_retain_closed": 1},
            "quantization_config": quantization_json(&p.quantization),
            "strict_mode_config": null,
            "metadata": p.metadata,
        },
        "payload_schema": schema,
    }))
}

fn unsupported(body: &Value, field: &str, why: &str) -> ServiceResult<()> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(o)) if o.is_empty() => Ok(()),
        Some(_) => Err(ServiceError::invalid(format!(
            "Wrong input: {field}: {why}"
        ))),
    }
}

fn object_field(
    body: &Value,
    field: &str,
) -> ServiceResult<Option<serde_json::Map<String, Value>>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(other) => Err(ServiceError::invalid(format!(
            "Wrong input: {field}: expected an object, got {other}"
        ))),
    }
}

/// Builds the stored params from a Qdrant CreateCollection body.
fn params_from(
    body: &Value,
    default_sync: SyncPolicy,
    default_hnsw: &HnswConfig,
) -> ServiceResult<CollectionParams> {
    let vectors = parse_vectors(
        body.get("vectors")
            .ok_or_else(|| ServiceError::invalid("Wrong input: vectors: field is required"))?,
    )?;
    unsupported(
        body,
        "sparse_vectors",
        "sparse vectors are not supported by vectorforge",
    )?;
    unsupported(
        body,
        "init_from",
        "init_from is not supported; restore a snapshot instead",
    )?;
    for (field, max) in [("shard_number", 1), ("replication_factor", 1)] {
        if let Some(n) = body.get(field).and_then(Value::as_u64)
            && n > max
        {
            return Err(ServiceError::invalid(format!(
                "Wrong input: {field} = {n}: shards and replicas are set on the VectorCollection resource, a vectorforge server holds one"
            )));
        }
    }
    let mut hnsw = default_hnsw.clone();
    if let Some(h) = body.get("hnsw_config").filter(|v| !v.is_null()) {
        let diff: HnswDiff = serde_json::from_value(h.clone())
            .map_err(|e| ServiceError::invalid(format!("Wrong input: hnsw_config: {e}")))?;
        diff.apply(&mut hnsw);
    }
    let p = CollectionParams {
        vectors,
        hnsw,
        sync: default_sync,
        optimizers_config: object_field(body, "optimizers_config")?.map(Value::Object),
        metadata: object_field(body, "metadata")?,
        created_at: chrono::Utc::now().to_rfc3339(),
        quantization: parse_quantization(body.get("quantization_config"))?,
    };
    p.validate()?;
    Ok(p)
}

pub async fn create(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let d = st.service.defaults();
    let params = params_from(&body, d.sync, &d.hnsw)?;
    st.service.create(name, params).await?;
    reply(true)
}

pub async fn update(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    st.service.require(&name)?;
    unsupported(
        &body,
        "vectors",
        "vector params of an existing collection cannot change",
    )?;
    unsupported(
        &body,
        "hnsw_config",
        "HNSW params of an existing collection cannot change",
    )?;
    unsupported(
        &body,
        "quantization_config",
        "the quantization of an existing collection cannot change; create a new collection and re-ingest",
    )?;
    unsupported(
        &body,
        "sparse_vectors",
        "sparse vectors are not supported by vectorforge",
    )?;
    let optimizers = object_field(&body, "optimizers_config")?;
    let metadata = object_field(&body, "metadata")?;
    st.service
        .update_params(&name, |p| {
            if let Some(o) = optimizers {
                let mut cur = match p.optimizers_config.take() {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                cur.extend(o);
                p.optimizers_config = Some(Value::Object(cur));
            }
            if let Some(m) = metadata {
                p.metadata.get_or_insert_with(Default::default).extend(m);
            }
            Ok(())
        })
        .await?;
    reply(true)
}

pub async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    let existed = st.service.delete(name).await?;
    reply(existed)
}

/// `?wait=true` of a write request.
pub(super) fn wait_param(q: &HashMap<String, String>) -> bool {
    q.get("wait").is_some_and(|w| w == "true")
}

pub async fn create_index(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    st.service.require(&name)?;
    let key = body
        .get("field_name")
        .and_then(Value::as_str)
        .ok_or_else(|| ServiceError::invalid("Wrong input: field_name: expected a string"))?
        .to_string();
    let schema = body
        .get("field_schema")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ServiceError::invalid("Wrong input: field_schema is required (keyword, integer, float, bool, datetime or uuid)"))?;
    let kind = PayloadSchemaType::from_json(schema)
        .map_err(|e| ServiceError::invalid(format!("Wrong input: {e}")))?;
    let seq = st
        .service
        .write(&name, Write::CreateIndex { key, kind })
        .await?;
    reply(update_result(seq, wait_param(&q)))
}

pub async fn delete_index(
    State(st): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ServiceResult<Reply> {
    let seq = st
        .service
        .write(&name, Write::DropIndex { key: field })
        .await?;
    reply(update_result(seq, wait_param(&q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_map_to_params_and_unsupported_features_are_refused() {
        let h = HnswConfig::default();
        let p = params_from(
            &json!({"vectors": {"size": 4, "distance": "Dot"}, "hnsw_config": {"m": 32}, "optimizers_config": {"indexing_threshold": 0}}),
            SyncPolicy::Always,
            &h,
        )
        .unwrap();
        assert_eq!(p.hnsw.m, 32);
        assert!(p.is_unnamed());
        assert_eq!(p.quantization, vectorforge::Quantization::None);
        // Qdrant's scalar and binary quantization configs
        let q = params_from(
            &json!({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}}}),
            SyncPolicy::Always,
            &h,
        )
        .unwrap();
        assert_eq!(
            quantization_json(&q.quantization),
            json!({"scalar": {"type": "int8", "quantile": 0.99f32, "always_ram": true}})
        );
        assert_eq!(q.engine_config("").unwrap().quantization, q.quantization);
        for bad in [
            json!({}),
            json!({"vectors": {"size": 4, "distance": "Dot"}, "sparse_vectors": {"s": {}}}),
            json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 3}),
            json!({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"product": {"compression": "x16"}}}),
            json!({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"scalar": {"type": "int4"}}}),
            json!({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"scalar": {"type": "int8", "quantile": 0.2}}}),
            json!({"vectors": {"size": 4, "distance": "Manhattan"}, "quantization_config": {"binary": {}}}),
        ] {
            assert!(
                matches!(
                    params_from(&bad, SyncPolicy::Always, &h).unwrap_err(),
                    ServiceError::Invalid(_)
                ),
                "{bad}"
            );
        }
    }
}
