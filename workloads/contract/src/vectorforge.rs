//! The command line of a vectorforge shard pod, as the operator writes it into the
//! shard StatefulSet's container args and the `vectorforge` binary parses it (its own
//! test parses [`ShardArgs::to_args`] of [`ShardArgs::example`]).

/// When the write-ahead log is fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalSync {
    /// Before every acknowledgement.
    Always,
    /// On an interval ([`ShardArgs::wal_sync_interval`]).
    Interval,
}

impl WalSync {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Interval => "interval",
        }
    }
}

/// Everything the operator tells one shard pod. The shard's group size is not among
/// them: the pods follow the VectorCollection's `spec.replicas` through the API, so a
/// scale changes no pod template (and restarts no pod).
#[derive(Clone, Debug, PartialEq)]
pub struct ShardArgs {
    /// The collection (the VectorCollection's name).
    pub collection: String,
    /// This shard's index, 0-based, and the collection's shard count.
    pub shard: i32,
    pub shards: i32,
    pub dimension: i32,
    /// Qdrant's name of the distance: `Cosine`, `Euclid`, `Dot`, `Manhattan`.
    pub distance: String,
    pub hnsw_m: i32,
    pub hnsw_ef_construct: i32,
    pub hnsw_ef: i32,
    /// `none`, `int8` or `binary`.
    pub quantization: String,
    /// Share of the values int8 ranges are trained on (0.5..=1; unset: min/max).
    pub quantization_quantile: Option<f64>,
    pub data_dir: String,
    pub http_port: i32,
    pub grpc_port: i32,
    /// Port of shard-to-shard traffic (Raft, forwarding).
    pub raft_port: i32,
    pub wal_sync: WalSync,
    /// Interval of [`WalSync::Interval`] as the spec gives it (`100ms`, `1s`).
    pub wal_sync_interval: Option<String>,
    /// Cron schedule of snapshots, when the spec has one.
    pub snapshot_schedule: Option<String>,
    pub snapshot_retention: i32,
    /// Bucket the scheduled snapshots are uploaded to (`--backup-s3-*`); credentials
    /// in `VECTORFORGE_BACKUP_S3_ACCESS_KEY_ID` / `..._SECRET_ACCESS_KEY`.
    pub backup: Option<S3Target>,
    /// Backup the collection starts from (`--restore-*`); credentials in
    /// `VECTORFORGE_RESTORE_S3_ACCESS_KEY_ID` / `..._SECRET_ACCESS_KEY`.
    pub restore: Option<RestoreArgs>,
    /// Label selector of the shard's pods (its Raft peers).
    pub peer_selector: String,
    /// Indexed payload fields: (field, type), the type as vectorforge names it.
    pub payload_indexes: Vec<(String, String)>,
}

impl ShardArgs {
    /// The container args, `--flag=value` each.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--collection={}", self.collection),
            format!("--shard={}", self.shard),
            format!("--shards={}", self.shards),
            format!("--dimension={}", self.dimension),
            format!("--distance={}", self.distance),
            format!("--hnsw-m={}", self.hnsw_m),
            format!("--hnsw-ef-construct={}", self.hnsw_ef_construct),
            format!("--hnsw-ef={}", self.hnsw_ef),
            format!("--quantization={}", self.quantization),
            format!("--data-dir={}", self.data_dir),
            format!("--http-port={}", self.http_port),
            format!("--grpc-port={}", self.grpc_port),
            format!("--raft-port={}", self.raft_port),
            format!("--wal-sync={}", self.wal_sync.as_str()),
            format!("--snapshot-retention={}", self.snapshot_retention),
            format!("--peer-selector={}", self.peer_selector),
        ];
        if let Some(interval) = &self.wal_sync_interval {
            args.push(format!("--wal-sync-interval={interval}"));
        }
        if let Some(schedule) = &self.snapshot_schedule {
            args.push(format!("--snapshot-schedule={schedule}"));
        }
        if let Some(q) = self.quantization_quantile {
            args.push(format!("--quantization-quantile={q}"));
        }
        for (field, type_) in &self.payload_indexes {
            args.push(format!("--payload-index={field}={type_}"));
        }
        if let Some(b) = &self.backup {
            b.push_args("backup-s3", &mut args);
        }
        if let Some(r) = &self.restore {
            r.s3.push_args("restore-s3", &mut args);
            args.push(format!("--restore-source={}/{}", r.namespace, r.collection));
            if let Some(id) = &r.backup {
                args.push(format!("--restore-backup={id}"));
            }
        }
        args
    }

    /// A shard with every optional flag set, for the tests of both sides.
    pub fn example() -> Self {
        Self {
            collection: "docs".into(),
            shard: 1,
            shards: 2,
            dimension: 384,
            distance: "Cosine".into(),
            hnsw_m: 16,
            hnsw_ef_construct: 128,
            hnsw_ef: 64,
            quantization: "int8".into(),
            quantization_quantile: Some(0.99),
            data_dir: "/data".into(),
            http_port: 6333,
            grpc_port: 6334,
            raft_port: 6335,
            wal_sync: WalSync::Interval,
            wal_sync_interval: Some("100ms".into()),
            snapshot_schedule: Some("0 */6 * * *".into()),
            snapshot_retention: 3,
            backup: Some(S3Target {
                endpoint: Some("http://s3.storage:7070".into()),
                bucket: "backups".into(),
                prefix: Some("prod".into()),
                region: "us-east-1".into(),
            }),
            restore: Some(RestoreArgs {
                s3: S3Target {
                    endpoint: None,
                    bucket: "old-backups".into(),
                    prefix: None,
                    region: "eu-west-1".into(),
                },
                namespace: "ml".into(),
                collection: "docs-v1".into(),
                backup: Some("20261204T060000Z".into()),
            }),
            peer_selector: "app.kubernetes.io/instance=docs,modelhub.io/shard=1".into(),
            payload_indexes: vec![
                ("lang".into(), "keyword".into()),
                ("meta.views".into(), "integer".into()),
            ],
        }
    }
}

/// An S3-compatible bucket as the `--<what>-endpoint/bucket/prefix/region` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    /// Server URL; unset: AWS S3.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`).
    pub prefix: Option<String>,
    pub region: String,
}

impl S3Target {
    fn push_args(&self, flag: &str, args: &mut Vec<String>) {
        if let Some(e) = &self.endpoint {
            args.push(format!("--{flag}-endpoint={e}"));
        }
        args.push(format!("--{flag}-bucket={}", self.bucket));
        if let Some(p) = &self.prefix {
            args.push(format!("--{flag}-prefix={p}"));
        }
        args.push(format!("--{flag}-region={}", self.region));
    }
}

/// The backup a collection starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreArgs {
    pub s3: S3Target,
    /// Namespace and name of the VectorCollection the backup was taken of.
    pub namespace: String,
    pub collection: String,
    /// Backup id; unset: the newest complete one.
    pub backup: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_flags_appear_only_when_set() {
        let mut args = ShardArgs::example();
        let all = args.to_args();
        assert!(all.contains(&"--wal-sync-interval=100ms".to_owned()));
        assert!(all.contains(&"--snapshot-schedule=0 */6 * * *".to_owned()));
        assert!(all.contains(&"--payload-index=meta.views=integer".to_owned()));
        assert!(all.contains(&"--backup-s3-endpoint=http://s3.storage:7070".to_owned()));
        assert!(all.contains(&"--restore-source=ml/docs-v1".to_owned()));
        assert!(!all.iter().any(|a| a.starts_with("--restore-s3-endpoint")));
        args.wal_sync_interval = None;
        args.snapshot_schedule = None;
        args.payload_indexes.clear();
        args.backup = None;
        args.restore = None;
        let some = args.to_args();
        assert_eq!(some.len(), all.len() - 4 - 4 - 4);
        assert!(!some.iter().any(|a| a.starts_with("--wal-sync-interval")
            || a.starts_with("--snapshot-schedule")
            || a.starts_with("--payload-index")
            || a.starts_with("--backup-")
            || a.starts_with("--restore-")));
    }
}
