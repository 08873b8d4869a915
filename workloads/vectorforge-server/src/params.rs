//! A collection's settings as the server stores them (`collection.json`) and as Qdrant
//! clients send them: one unnamed vector or several named vectors, each with its own
//! size, distance and HNSW overrides, plus collection-wide HNSW and WAL settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vectorforge::{CollectionConfig, Distance, HnswConfig, Quantization, SyncPolicy};

use crate::error::ServiceError;

/// Name of the unnamed vector (Qdrant's default vector).
pub const DEFAULT_VECTOR: &str = "";

/// HNSW settings as Qdrant's `HnswConfigDiff`: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HnswDiff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construct: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan_threshold: Option<usize>,
    /// vectorforge's default search ef (not a Qdrant field; Qdrant uses `hnsw_ef` per query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
}

impl HnswDiff {
    /// Overrides the fields of `base` that this diff sets.
    pub fn apply(&self, base: &mut HnswConfig) {
        if let Some(m) = self.m {
            base.m = m;
        }
        if let Some(e) = self.ef_construct {
            base.ef_construct = e;
        }
        if let Some(t) = self.full_scan_threshold {
            base.full_scan_threshold = t;
        }
        if let Some(e) = self.ef {
            base.ef = e;
        }
    }
}

/// One vector space of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorParams {
    pub size: usize,
    pub distance: Distance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw_config: Option<HnswDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
}

/// Everything stored about a collection besides its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionParams {
    /// Vector name → params; the unnamed vector is stored under "".
    pub vectors: BTreeMap<String, VectorParams>,
    pub hnsw: HnswConfig,
    pub sync: SyncPolicy,
    /// Optimizer settings sent by the client, echoed back (vectorforge has no segments to optimise).
    #[serde(default)]
    pub optimizers_config: Option<Value>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub created_at: String,
    /// Codes every vector space keeps beside its f32 vectors (searched first, the best
    /// candidates rescored with the f32 vectors).
    #[serde(default, skip_serializing_if = "Quantization::is_none")]
    pub quantization: Quantization,
}

/// Qdrant's `quantization_config` (`{"scalar": {"type": "int8", "quantile": 0.99,
/// "always_ram": true}}` or `{"binary": {"always_ram": true}}`); null or absent: none.
pub fn parse_quantization(v: Option<&Value>) -> Result<Quantization, ServiceError> {
    let bad = |m: &str| ServiceError::invalid(format!("Wrong input: quantization_config: {m}"));
    let o = match v {
        None | Some(Value::Null) => return Ok(Quantization::None),
        Some(Value::Object(o)) if o.is_empty() => return Ok(Quantization::None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("expected an object")),
    };
    let flag = |inner: &serde_json::Map<String, Value>, k: &str| -> Result<bool, ServiceError> {
        match inner.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(&format!("{k}: expected a boolean"))),
        }
    };
    let q = match (o.get("scalar"), o.get("binary"), o.get("product")) {
        (_, _, Some(_)) => {
            return Err(bad(
                "product quantization is not supported (use scalar or binary)",
            ));
        }
        (Some(Value::Object(s)), None, None) => {
            match s.get("type").and_then(Value::as_str) {
                Some("int8") => {}
                other => {
                    return Err(bad(&format!(
                        "scalar.type: {other:?} is not supported (int8)"
                    )));
                }
            }
            let quantile = match s.get("quantile") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .ok_or_else(|| bad("scalar.quantile: expected a number"))?
                        as f32,
                ),
            };
            Quantization::Int8 {
                quantile,
                always_ram: flag(s, "always_ram")?,
                global_range: false,
            }
        }
        (None, Some(Value::Object(b)), None) => Quantization::Binary {
            always_ram: flag(b, "always_ram")?,
        },
        _ => return Err(bad("expected one of scalar or binary")),
    };
    Ok(q)
}

/// [`parse_quantization`]'s shape, for CollectionInfo.
pub fn quantization_json(q: &Quantization) -> Value {
    match q {
        Quantization::None => Value::Null,
        Quantization::Int8 {
            quantile,
            always_ram,
            ..
        } => {
            serde_json::json!({"scalar": {"type": "int8", "quantile": quantile, "always_ram": always_ram}})
        }
        Quantization::Binary { always_ram } => {
            serde_json::json!({"binary": {"always_ram": always_ram}})
        }
    }
}

impl CollectionParams {
    /// True when the collection was created with one unnamed vector.
    pub fn is_unnamed(&self) -> bool {
        self.vectors.len() == 1 && self.vectors.contains_key(DEFAULT_VECTOR)
    }

    /// Engine configuration of one vector space.
    pub fn engine_config(&self, name: &str) -> Option<CollectionConfig> {
        let v = self.vectors.get(name)?;
        let mut cfg = CollectionConfig::new(v.size, v.distance);
        cfg.hnsw = self.hnsw.clone();
        if let Some(d) = &v.hnsw_config {
            d.apply(&mut cfg.hnsw);
        }
        cfg.sync = self.sync;
        cfg.quantization = self.quantization;
        Some(cfg)
    }

    /// Checks every vector space's engine settings.
    pub fn validate(&self) -> Result<(), ServiceError> {
        if self.vectors.is_empty() {
            return Err(ServiceError::invalid(
                "a collection needs at least one vector",
            ));
        }
        for name in self.vectors.keys() {
            if let Some(cfg) = self.engine_config(name) {
                cfg.validate().map_err(|e| {
                    ServiceError::invalid(if name.is_empty() {
                        e.to_string()
                    } else {
                        format!("vector {name:?}: {e}")
                    })
                })?;
            }
        }
        Ok(())
    }

    /// Qdrant's `vectors` field: a single `VectorParams` or a map of them.
    pub fn vectors_json(&self) -> Value {
        let one = |v: &VectorParams| {
            let mut o = serde_json::json!({"size": v.size, "distance": v.distance});
            if let Some(h) = &v.hnsw_config {
                o["hnsw_config"] = serde_json::to_value(h).unwrap_or(Value::Null);
            }
            if let Some(d) = v.on_disk {
                o["on_disk"] = Value::Bool(d);
            }
            o
        };
        if self.is_unnamed() {
            self.vectors
                .get(DEFAULT_VECTOR)
                .map(one)
                .unwrap_or(Value::Null)
        } else {
            Value::Object(
                self.vectors
                    .iter()
                    .map(|(k, v)| (k.clone(), one(v)))
                    .collect(),
            )
        }
    }
}

/// Parses Qdrant's `Distance` (case-insensitive, as the CLI and clients spell it).
pub fn parse_distance(s: &str) -> Result<Distance, ServiceError> {
    match s.to_ascii_lowercase().as_str() {
        "cosine" => Ok(Distance::Cosine),
        "euclid" | "euclidean" | "l2" => Ok(Distance::Euclid),
        "dot" => Ok(Distance::Dot),
        "manhattan" | "l1" => Ok(Distance::Manhattan),
        _ => Err(ServiceError::invalid(format!(
            "unknown distance {s:?} (expected Cosine, Euclid, Dot or Manhattan)"
        ))),
    }
}

/// Parses one `VectorParams` object as a client sends it.
fn parse_vector_params(v: &Value) -> Result<VectorParams, ServiceError> {
    let o = v.as_object().ok_or_else(|| {
        ServiceError::invalid("vector params must be an object with size and distance")
    })?;
    let size = o
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| ServiceError::invalid("vectors.size: expected a positive integer"))?;
    let distance = parse_distance(
        o.get("distance")
            .and_then(Value::as_str)
            .ok_or_else(|| ServiceError::invalid("vectors.distance: expected a string"))?,
    )?;
    let hnsw_config = match o.get("hnsw_config") {
        None | Some(Value::Null) => None,
        Some(h) => Some(
            serde_json::from_value::<HnswDiff>(h.clone())
                .map_err(|e| ServiceError::invalid(format!("hnsw_config: {e}")))?,
        ),
    };
    Ok(VectorParams {
        size: usize::try_from(size).map_err(|_| ServiceError::invalid("vectors.size too large"))?,
        distance,
        hnsw_config,
        on_disk: o.get("on_disk").and_then(Value::as_bool),
    })
}

/// Parses Qdrant's `vectors` field of a create-collection request.
pub fn parse_vectors(v: &Value) -> Result<BTreeMap<String, VectorParams>, ServiceError> {
    let o = v
        .as_object()
        .ok_or_else(|| ServiceError::invalid("vectors: expected an object"))?;
    if o.contains_key("size") {
        return Ok(BTreeMap::from([(
            DEFAULT_VECTOR.to_string(),
            parse_vector_params(v)?,
        )]));
    }
    let mut out = BTreeMap::new();
    for (name, p) in o {
        if name.is_empty() || name.len() > 256 {
            return Err(ServiceError::invalid(
                "vector names must be 1..=256 characters",
            ));
        }
        out.insert(
            name.clone(),
            parse_vector_params(p)
                .map_err(|e| ServiceError::invalid(format!("vectors.{name}: {e}")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_and_named_vectors_parse() {
        let one = parse_vectors(&json!({"size": 4, "distance": "Cosine"})).unwrap();
        assert_eq!(one[""].size, 4);
        let named = parse_vectors(&json!({
            "a": {"size": 3, "distance": "Dot", "hnsw_config": {"m": 8}},
            "b": {"size": 2, "distance": "Euclid"}
        }))
        .unwrap();
        assert_eq!(named.len(), 2);
        assert_eq!(named["a"].hnsw_config.as_ref().and_then(|h| h.m), Some(8));
        assert_eq!(named["b"].distance, Distance::Euclid);
    }

    #[test]
    fn bad_vector_params_are_rejected_with_the_field() {
        let e = parse_vectors(&json!({"size": 4, "distance": "Hamming"})).unwrap_err();
        assert!(e.to_string().contains("Hamming"), "{}", e.to_string());
        let e = parse_vectors(&json!({"a": {"distance": "Dot"}})).unwrap_err();
        assert!(e.to_string().contains("vectors.a"), "{}", e.to_string());
    }

    #[test]
    fn per_vector_hnsw_overrides_the_collection() {
        let p = CollectionParams {
            vectors: parse_vectors(
                &json!({"a": {"size": 3, "distance": "Dot", "hnsw_config": {"m": 8}}}),
            )
            .unwrap(),
            hnsw: HnswConfig::default(),
            sync: SyncPolicy::Always,
            optimizers_config: None,
            metadata: None,
            created_at: String::new(),
            quantization: Default::default(),
        };
        let cfg = p.engine_config("a").unwrap();
        assert_eq!(cfg.hnsw.m, 8);
        assert_eq!(cfg.hnsw.ef_construct, HnswConfig::default().ef_construct);
        assert!(p.validate().is_ok());
    }
}
