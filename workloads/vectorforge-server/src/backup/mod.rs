//! Scheduled snapshots, backups to an S3-compatible bucket and restores from them.
//!
//! - On every firing of the schedule (UTC) each pod archives its shard as
//!   `<collection>-scheduled-<id>.snapshot` (the id is the scheduled instant, so the
//!   shards' archives of one firing share it) and keeps the newest `retention` of them.
//! - With a bucket, the shard's Raft leader uploads that archive and its manifest
//!   ([`bucket`]) and keeps the newest `retention` backups of its shard there; shard
//!   0's leader lists the complete backups for the VectorCollection's status.
//! - With a restore source, the shard's leader loads the backup's points that hash to
//!   this shard through the shard's log before the shard's pods turn Ready
//!   ([`restore`]).

pub mod bucket;
pub mod restore;

use std::sync::Arc;
use std::time::Duration;

use modelhub_contract::schedule::Schedule;
use parking_lot::Mutex;

use crate::metrics::Metrics;
use crate::replication::Replication;
use crate::service::CollectionService;
use bucket::{Bucket, Manifest, S3Config};

/// Schedule, retention, bucket and restore source as the flags give them.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    pub schedule: Option<Schedule>,
    pub retention: usize,
    pub upload: Option<S3Config>,
    pub restore: Option<RestoreConfig>,
}

/// What a pod does about snapshots, backups and its restore.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub collection: String,
    /// Namespace of the VectorCollection (part of the object keys).
    pub namespace: String,
    pub shard: u32,
    pub shards: u32,
    pub schedule: Option<Schedule>,
    /// Scheduled archives kept per pod, and backups per shard in the bucket.
    pub retention: usize,
    pub upload: Option<S3Config>,
    pub restore: Option<RestoreConfig>,
}

/// The backup a collection starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreConfig {
    pub s3: S3Config,
    /// The VectorCollection the backup was taken of.
    pub namespace: String,
    pub collection: String,
    /// Backup id; unset: the newest complete backup.
    pub backup: Option<String>,
}

/// A complete backup in the bucket, for the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub id: String,
    pub shards: u32,
    pub points: u64,
    pub bytes: u64,
}

/// What this pod knows of its backups and restore (for `/readyz` and the status).
#[derive(Debug, Default)]
pub struct BackupState {
    restore_wanted: bool,
    /// This pod, as the shard's leader, finished loading this backup (reported next).
    loaded: Mutex<Option<String>>,
    /// The shard is known to be restored (the VectorCollection's status says so, or
    /// without the Kubernetes API this pod's marker file).
    confirmed: Mutex<Option<String>>,
    restore_error: Mutex<Option<String>>,
    last_backup: Mutex<Option<String>>,
    complete: Mutex<Option<Vec<BackupSummary>>>,
}

impl BackupState {
    pub fn new(restore_wanted: bool) -> BackupState {
        BackupState {
            restore_wanted,
            ..BackupState::default()
        }
    }

    /// A restore is asked for and not known to be done: the pod stays unready.
    pub fn restore_pending(&self) -> bool {
        self.restore_wanted && self.confirmed.lock().is_none()
    }

    /// The restore this shard is known to have finished (status or marker file).
    pub fn confirm_restored(&self, id: &str) {
        let mut c = self.confirmed.lock();
        if c.as_deref() != Some(id) {
            tracing::info!(backup = id, "the shard's restore is done");
            *c = Some(id.to_owned());
        }
    }

    /// The backup id to report as the shard's `restoredFrom`.
    pub fn restored_from(&self) -> Option<String> {
        self.confirmed.lock().clone().or(self.loaded.lock().clone())
    }

    pub fn restore_error(&self) -> Option<String> {
        self.restore_error.lock().clone()
    }

    pub fn last_backup(&self) -> Option<String> {
        self.last_backup.lock().clone()
    }

    /// The complete backups shard 0's leader last listed (None: not listed here).
    pub fn complete_backups(&self) -> Option<Vec<BackupSummary>> {
        self.complete.lock().clone()
    }
}

/// File name prefix of the scheduled archives of `collection`.
pub fn scheduled_prefix(collection: &str) -> String {
    format!("{collection}-scheduled-")
}

/// Backup id of a firing at `t`.
pub fn backup_id(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn is_leader(repl: &Option<Arc<Replication>>) -> bool {
    repl.as_ref().is_none_or(|r| r.is_leader())
}

/// Runs for the life of the process: snapshots on the schedule, uploads, retention,
/// and (shard 0's leader) the list of complete backups.
pub async fn run_schedule(
    service: CollectionService,
    cfg: Arc<BackupConfig>,
    state: Arc<BackupState>,
    repl: Option<Arc<Replication>>,
    metrics: Arc<Metrics>,
) {
    let Some(schedule) = cfg.schedule.clone() else {
        return;
    };
    let bucket = match cfg
        .upload
        .as_ref()
        .map(|s3| Bucket::open(s3, &cfg.namespace, &cfg.collection))
        .transpose()
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "backup bucket; scheduled snapshots stay local");
            None
        }
    };
    tracing::info!(schedule = schedule.as_str(), retention = cfg.retention, bucket = ?bucket, "scheduled snapshots");
    if let Some(b) = bucket.clone().filter(|_| cfg.shard == 0) {
        tokio::spawn(list_complete(b, state.clone(), repl.clone()));
    }
    let mut after = chrono::Utc::now();
    loop {
        let Some(next) = schedule.next_after(after) else {
            tracing::error!(
                schedule = schedule.as_str(),
                "the schedule fires no more; scheduled snapshots stop"
            );
            return;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        after = next;
        if state.restore_pending() {
            continue; // nothing of this collection's own to keep yet
        }
        let id = backup_id(next);
        match snapshot_once(
            &service,
            &cfg,
            &state,
            &repl,
            bucket.as_ref(),
            &id,
            &metrics,
        )
        .await
        {
            Ok(()) => metrics.backup_done(),
            Err(e) => tracing::error!(backup = id, error = %e, "scheduled snapshot"),
        }
    }
}

async fn snapshot_once(
    service: &CollectionService,
    cfg: &BackupConfig,
    state: &BackupState,
    repl: &Option<Arc<Replication>>,
    bucket: Option<&Bucket>,
    id: &str,
    metrics: &Metrics,
) -> crate::error::ServiceResult<()> {
    let local = service.local();
    let name = &cfg.collection;
    let prefix = scheduled_prefix(name);
    let points = local.count(name, None).await? as u64;
    let written = local
        .write_snapshot(name, format!("{prefix}{id}.snapshot"))
        .await;
    metrics.observe_backup("snapshot", written.is_ok());
    let (info, path) = written?;
    let pruned = local.prune_snapshots(name, &prefix, cfg.retention).await?;
    tracing::info!(backup = id, bytes = info.size, pruned = ?pruned, "scheduled snapshot");
    let Some(bucket) = bucket.filter(|_| is_leader(repl)) else {
        return Ok(());
    };
    let params = service.describe(name).await?.params;
    let vector = params.vectors.values().next();
    let manifest = Manifest {
        id: id.to_owned(),
        namespace: cfg.namespace.clone(),
        collection: name.clone(),
        shard: cfg.shard,
        shards: cfg.shards,
        points,
        bytes: info.size,
        sha256: info.checksum.clone().unwrap_or_default(),
        dimension: vector.map_or(0, |v| v.size),
        distance: vector.map_or_else(String::new, |v| format!("{:?}", v.distance)),
    };
    let uploaded = bucket.upload(&path, &manifest).await;
    metrics.observe_backup("upload", uploaded.is_ok());
    uploaded?;
    *state.last_backup.lock() = Some(id.to_owned());
    let removed = bucket.prune(cfg.shard, cfg.retention).await?;
    tracing::info!(backup = id, bucket = ?bucket, removed = ?removed, "backup uploaded");
    Ok(())
}

/// Shard 0's leader: the complete backups in the bucket, every 15 s.
async fn list_complete(bucket: Bucket, state: Arc<BackupState>, repl: Option<Arc<Replication>>) {
    loop {
        if is_leader(&repl) {
            match bucket.list().await {
                Ok(found) => {
                    let complete = found
                        .into_iter()
                        .filter(|f| f.complete())
                        .map(|f| BackupSummary {
                            shards: f.shards(),
                            points: f.manifests.values().map(|m| m.points).sum(),
                            bytes: f.manifests.values().map(|m| m.bytes).sum(),
                            id: f.id,
                        })
                        .collect();
                    *state.complete.lock() = Some(complete);
                }
                Err(e) => tracing::warn!(bucket = ?bucket, error = %e, "listing backups"),
            }
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
}
