//! Backups of a `VectorCollection` to an S3-compatible bucket and restores from them:
//! where the bucket is (`S3Location`), which backup a new collection starts from
//! (`RestoreSource`) and the backups its status lists (`BackupStatus`).
//!
//! Object layout, written by the shards' leader pods (docs/architecture.md):
//! `<prefix>/<namespace>/<collection>/<backup id>/shard-<i>-of-<n>.snapshot` and a
//! `.json` manifest beside each; a backup is complete when all `n` manifests exist.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// An S3-compatible bucket (AWS S3, MinIO, Versity, Ceph RGW, ...).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// URL of an S3-compatible server, e.g. `http://minio.storage:9000`; unset: AWS S3
    /// in `region`. Requests use path-style addressing when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/ ]+(/.*)?$')").message("s3.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// Bucket name (S3 rules: 3-63 lower-case letters, digits, dots and dashes).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')").message("s3.bucket must be 3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit"))]
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')").message("s3.prefix must not start or end with '/'"))]
    pub prefix: Option<String>,
    /// Region of the bucket.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Secret in the collection's namespace with keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`; unset: the pods' own AWS credentials (environment,
    /// instance or web identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// The backup a new VectorCollection starts from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// Bucket the backup lies in.
    pub s3: S3Location,
    /// Name of the VectorCollection the backup was taken of.
    #[schemars(length(min = 1, max = 63))]
    pub collection: String,
    /// Its namespace; unset: this collection's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Backup id as the source's `status.backups` lists it (e.g. `20261204T060000Z`);
    /// unset: the newest complete backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{8}T[0-9]{6}Z$')").message("restoreFrom.backup must be a backup id such as 20261204T060000Z"))]
    pub backup: Option<String>,
}

/// A complete backup in the bucket (every shard's archive uploaded).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Backup id: the scheduled time, UTC.
    pub id: String,
    /// Shards the backup holds.
    pub shards: i32,
    /// Points in it, summed over its shards.
    pub points: i64,
    /// Size of its archives in bytes.
    pub bytes: i64,
}
