//! `VectorCollection` (short name `vc`): a sharded, Raft-replicated vector collection
//! served by `vectorforge` pods — one StatefulSet per shard, its pods one Raft group.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BackupStatus, RestoreSource, S3Location, SecretKeyRef};

/// Desired state of a vector collection.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelhub.io",
    version = "v1alpha1",
    kind = "VectorCollection",
    namespaced,
    shortname = "vc",
    category = "modelhub",
    status = "VectorCollectionStatus",
    doc = "A sharded, replicated vector collection with HNSW search and payload filters, served by vectorforge.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Dim", type_ = "integer", json_path = ".spec.dimension"),
    printcolumn(name = "Distance", type_ = "string", json_path = ".spec.distance"),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready-Shards", type_ = "integer", json_path = ".status.readyShards"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters (shard StatefulSet names derive from it)"),
    validation = Rule::new("self.spec.quantization == 'None' || self.spec.distance != 'Manhattan'").message("quantization Int8 and Binary need Cosine, Dot or Euclid distance (vectorforge has no quantized Manhattan kernel)"),
    validation = Rule::new("!has(self.spec.quantizationQuantile) || self.spec.quantization == 'Int8'").message("quantizationQuantile applies to Int8 quantization only"),
    validation = Rule::new("has(self.spec.restoreFrom) == has(oldSelf.spec.restoreFrom)").message("restoreFrom can only be set when the VectorCollection is created"),
)]
#[serde(rename_all = "camelCase")]
pub struct VectorCollectionSpec {
    /// Number of components of every vector (1..65536). Immutable.
    #[schemars(range(min = 1, max = 65536))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("dimension is immutable"))]
    pub dimension: i32,

    /// Similarity measure used for search. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("distance is immutable"))]
    pub distance: Distance,

    /// Number of shards; points are spread over shards by a stable hash of their id.
    /// Immutable: moving points to a new shard count (resharding) is not built yet; to
    /// change it, create a new VectorCollection with `restoreFrom` a backup of this one
    /// (a restore places every point by the new count).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("shards is immutable: vectorforge cannot move points between shards of a running collection yet; create a new VectorCollection with restoreFrom a backup of this one to change the shard count"))]
    pub shards: i32,

    /// Replicas per shard (pods of one Raft group). Odd numbers tolerate (n-1)/2 failures.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// HNSW graph parameters.
    #[serde(default)]
    pub hnsw: HnswConfig,

    /// Vector quantization: searches walk the graph on the codes and rescore the best
    /// candidates with the original f32 vectors (kept). Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("quantization is immutable (the codes are built with the collection); create a new VectorCollection and re-ingest"))]
    pub quantization: Quantization,

    /// Int8 only: the central share of the values its ranges are trained on (Qdrant's
    /// `quantile`, 0.5..=1); unset: min/max. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 1.0))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("quantizationQuantile is immutable"))]
    pub quantization_quantile: Option<f64>,

    /// Payload fields indexed with roaring bitmaps for fast filtering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(x, self.exists_one(y, y.field == x.field))").message("payloadIndexes: each field may be indexed only once"))]
    pub payload_indexes: Vec<PayloadIndex>,

    /// Persistent storage of every pod. Immutable (volume claim templates cannot change).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable; resize the PersistentVolumeClaims directly"))]
    pub storage: StorageSpec,

    /// Write-ahead log and snapshot policy.
    #[serde(default)]
    pub durability: DurabilitySpec,

    /// Secret key holding the API key clients must send in the `api-key` header.
    /// When unset the collection's API is open inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,

    /// CPU and memory requests and limits of every vectorforge container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Start from a backup in an S3-compatible bucket: each shard's leader loads the
    /// points of the backup that hash to it (the backup's shard count may differ)
    /// before its pods turn Ready. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("restoreFrom is immutable"))]
    pub restore_from: Option<RestoreSource>,

    /// Container image overriding the operator's default vectorforge image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
}

fn default_one() -> i32 {
    1
}

/// Similarity measure between vectors.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distance {
    /// Cosine similarity (vectors are normalised at insert).
    Cosine,
    /// Euclidean (L2) distance.
    Euclid,
    /// Dot product.
    Dot,
    /// Manhattan (L1) distance.
    Manhattan,
}

impl Distance {
    /// The name vectorforge and Qdrant use on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "Cosine",
            Self::Euclid => "Euclid",
            Self::Dot => "Dot",
            Self::Manhattan => "Manhattan",
        }
    }
}

/// HNSW index parameters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.efConstruct >= self.m").message("hnsw.efConstruct must be at least hnsw.m"))]
pub struct HnswConfig {
    /// Edges per node on upper layers (layer 0 keeps 2*m).
    #[serde(default = "default_m")]
    #[schemars(range(min = 2, max = 128))]
    pub m: i32,
    /// Candidate list size while building the graph.
    #[serde(default = "default_ef_construct")]
    #[schemars(range(min = 4, max = 4096))]
    pub ef_construct: i32,
    /// Default candidate list size at query time (a query may override it).
    #[serde(default = "default_ef")]
    #[schemars(range(min = 1, max = 4096))]
    pub ef: i32,
}

fn default_m() -> i32 {
    16
}
fn default_ef_construct() -> i32 {
    100
}
fn default_ef() -> i32 {
    64
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self {
            m: default_m(),
            ef_construct: default_ef_construct(),
            ef: default_ef(),
        }
    }
}

/// Vector quantization.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantization {
    /// Full-precision f32 vectors only.
    #[default]
    None,
    /// Scalar int8 quantization (4x smaller, rescored with originals).
    Int8,
    /// Binary quantization (32x smaller, rescored with originals).
    Binary,
}

impl Quantization {
    /// The name passed to vectorforge.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Int8 => "int8",
            Self::Binary => "binary",
        }
    }
}

/// One indexed payload field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PayloadIndex {
    /// Key path of the field: `a.b` for nested objects, `a[]` for every array element.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.contains(' ') && !self.contains(',') && !self.contains('=')").message("payload index field must not contain spaces, ',' or '='"))]
    pub field: String,
    /// Value type stored in the field (the names Qdrant uses).
    #[serde(rename = "type")]
    pub type_: PayloadIndexType,
}

/// Type of an indexed payload field.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadIndexType {
    /// Exact-match strings.
    Keyword,
    /// 64-bit integers (match and range).
    Integer,
    /// 64-bit floats (range).
    Float,
    /// Booleans.
    Bool,
    /// RFC 3339 timestamps (range).
    Datetime,
    /// UUID strings.
    Uuid,
}

impl PayloadIndexType {
    /// The name passed to vectorforge.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Datetime => "datetime",
            Self::Uuid => "uuid",
        }
    }
}

/// Persistent volume of each vectorforge pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each pod's volume.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_owned())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Write-ahead log and snapshot policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DurabilitySpec {
    /// When the WAL is fsynced: `Always` before every acknowledgement (with group commit),
    /// or `Interval` every `walSyncInterval` (faster; a crash may lose that window).
    #[serde(default)]
    pub wal_sync: WalSync,
    /// Period between fsyncs when `walSync` is `Interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_sync_interval: Option<kube::core::Duration>,
    /// Snapshot schedule and retention.
    #[serde(default)]
    pub snapshots: SnapshotPolicy,
}

impl Default for DurabilitySpec {
    fn default() -> Self {
        Self {
            wal_sync: WalSync::Always,
            wal_sync_interval: None,
            snapshots: SnapshotPolicy::default(),
        }
    }
}

/// WAL fsync policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalSync {
    /// fsync before acknowledging each write.
    #[default]
    Always,
    /// fsync periodically.
    Interval,
}

/// When snapshots are taken, how many are kept and where they are backed up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.s3) || has(self.schedule)").message("snapshots.s3 needs snapshots.schedule: the backups are the scheduled snapshots"))]
pub struct SnapshotPolicy {
    /// Cron schedule (5 fields, UTC) for automatic snapshots; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^\\\\S+( \\\\S+){4}$')").message("snapshots.schedule must be a 5-field cron expression such as '0 */6 * * *'"))]
    pub schedule: Option<String>,
    /// Number of scheduled snapshots kept per shard replica (on its volume), and of
    /// backups kept in `s3`. Snapshots taken through the API are not counted.
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 100))]
    pub retention: i32,
    /// Upload every scheduled snapshot to this bucket (each shard's leader uploads its
    /// shard's), keeping the newest `retention` backups there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
}

fn default_retention() -> i32 {
    3
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            schedule: None,
            retention: default_retention(),
            s3: None,
        }
    }
}

/// Observed state of a vector collection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VectorCollectionStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Smallest number of replicas currently running in any shard (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of all pods of the collection (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Per-shard replica counts (written by the operator) and Raft leader, members,
    /// points and lag (reported by the shard's leader pod); a list keyed by `index`, so
    /// each writer owns its own fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["index".into()]))]
    pub shards: Vec<ShardStatus>,
    /// Shards whose every replica is ready.
    #[serde(default)]
    pub ready_shards: i32,
    /// Total points stored, as last reported by the shards (written by them, never by
    /// the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    /// Complete backups in `durability.snapshots.s3`, newest first (reported by shard
    /// 0's leader from the bucket).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupStatus>,
    /// In-cluster address of the collection's REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Observed state of one shard.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index (0-based).
    pub index: i32,
    /// Pods of the shard's StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods of the shard.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pod currently leading the shard's Raft group, when known (reported by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Pods voting in the shard's Raft group (reported by its leader).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Points stored in the shard (reported by its leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    /// Log entries the furthest-behind member lags the leader (reported by the leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// With `restoreFrom`: the backup id the shard finished loading (reported by the
    /// leader; the shard's pods stay unready until it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    /// Why the shard's last attempt to restore failed (reported by the leader, which
    /// retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_error: Option<String>,
    /// Id of the shard's newest backup upload (reported by the leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: VectorCollectionSpec =
            serde_json::from_str(r#"{"dimension": 384, "distance": "Cosine"}"#).unwrap();
        assert_eq!(spec.shards, 1);
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.hnsw, HnswConfig::default());
        assert_eq!(spec.quantization, Quantization::None);
        assert_eq!(spec.storage.size.0, "10Gi");
        assert_eq!(spec.durability.wal_sync, WalSync::Always);
        assert_eq!(spec.durability.snapshots.retention, 3);
    }

    #[test]
    fn unknown_distance_is_rejected() {
        let err = serde_json::from_str::<VectorCollectionSpec>(
            r#"{"dimension": 3, "distance": "Hamming"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn payload_index_type_uses_qdrant_names() {
        let idx: PayloadIndex =
            serde_json::from_str(r#"{"field": "a.b", "type": "datetime"}"#).unwrap();
        assert_eq!(idx.type_, PayloadIndexType::Datetime);
        assert_eq!(idx.type_.as_str(), "datetime");
    }
}
