//! Restores a shard from a backup: the shard's Raft leader downloads the backup's
//! archives (only its own shard's when the shard counts match, else every shard's),
//! opens each as a scratch collection and writes the points that hash to this shard
//! through the shard's log — the one write path, so every replica gets them, and a
//! backup of any shard count lands on this one. Upserts are idempotent, so a restore
//! cut short (leader lost, pod restarted) simply runs again; the shard's pods stay
//! unready until it is known done, so no client write meets a half-loaded shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::bucket::{Bucket, Found, Manifest};
use super::{BackupConfig, BackupState, RestoreConfig};
use crate::cluster::hash::shard_of;
use crate::error::{ServiceError, ServiceResult};
use crate::params::DEFAULT_VECTOR;
use crate::replication::Replication;
use crate::service::CollectionService;
use crate::store::{NamedPoint, PointOut, PointsCollection, VectorOut, VectorSelection, Write};

/// Points written per proposal.
const BATCH: usize = 512;

/// Marker file of a finished restore when there is no Kubernetes API to record it.
pub fn marker_path(raft_dir: &Path) -> PathBuf {
    raft_dir.join("restored")
}

/// Runs until the shard is known restored: as the group's caught-up leader, loads the
/// backup; retries every 10 s after a failure. With `kube` the VectorCollection's status
/// records the end (the shard's report carries it, the pods' watch confirms it); else
/// the marker file at `marker` does.
pub async fn run_restore(
    service: CollectionService,
    cfg: Arc<BackupConfig>,
    state: Arc<BackupState>,
    repl: Option<Arc<Replication>>,
    marker: PathBuf,
    kube: bool,
) {
    let Some(rc) = cfg.restore.clone() else {
        return;
    };
    if let Ok(id) = std::fs::read_to_string(&marker) {
        state.confirm_restored(id.trim());
    }
    loop {
        if !state.restore_pending() || state.loaded.lock().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !repl.as_ref().is_none_or(|r| r.is_leader() && r.ready()) {
            continue;
        }
        match restore_once(&service, &cfg, &rc).await {
            Ok(id) => {
                *state.restore_error.lock() = None;
                *state.loaded.lock() = Some(id.clone());
                if !kube {
                    let written = marker
                        .parent()
                        .map_or(Ok(()), std::fs::create_dir_all)
                        .map_err(|e| crate::store::io(&marker, e))
                        .and_then(|()| crate::store::write_atomic(&marker, id.as_bytes()));
                    if let Err(e) = written {
                        tracing::error!(error = %e, "writing the restore marker");
                    }
                    state.confirm_restored(&id);
                }
            }
            Err(e) => {
                tracing::error!(source = format!("{}/{}", rc.namespace, rc.collection), error = %e, "restore failed; retrying in 10 s");
                *state.restore_error.lock() = Some(e.to_string());
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// The backup `rc` names (or the newest complete one) among `found` (newest first).
pub fn choose(found: Vec<Found>, rc: &RestoreConfig) -> ServiceResult<Found> {
    let source = format!("{}/{}", rc.namespace, rc.collection);
    let chosen = match &rc.backup {
        Some(id) => found.into_iter().find(|f| &f.id == id).ok_or_else(|| {
            ServiceError::not_found(format!("backup {id} of {source} is not in the bucket"))
        })?,
        None => found.into_iter().find(Found::complete).ok_or_else(|| {
            ServiceError::not_found(format!("the bucket holds no complete backup of {source}"))
        })?,
    };
    if !chosen.complete() {
        let have: Vec<u32> = chosen.manifests.keys().copied().collect();
        return Err(ServiceError::invalid(format!(
            "backup {} of {source} is incomplete: it has shards {have:?} of {}",
            chosen.id,
            chosen.shards()
        )));
    }
    Ok(chosen)
}

async fn restore_once(
    service: &CollectionService,
    cfg: &BackupConfig,
    rc: &RestoreConfig,
) -> ServiceResult<String> {
    let bucket = Bucket::open(&rc.s3, &rc.namespace, &rc.collection)?;
    let backup = choose(bucket.list().await?, rc)?;
    let params = service.local().describe(&cfg.collection).await?.params;
    let want = params
        .vectors
        .get(DEFAULT_VECTOR)
        .map(|v| (v.size, format!("{:?}", v.distance)));
    for m in backup.manifests.values() {
        if want.as_ref() != Some(&(m.dimension, m.distance.clone())) {
            return Err(ServiceError::invalid(format!(
                "backup {} holds vectors of dimension {} / {}, this collection has {want:?}",
                m.id, m.dimension, m.distance
            )));
        }
    }
    let n = backup.shards();
    // Same shard count: the hash puts every point of source shard i on shard i.
    let sources: Vec<&Manifest> = if n == cfg.shards {
        backup.manifests.get(&cfg.shard).into_iter().collect()
    } else {
        backup.manifests.values().collect()
    };
    tracing::info!(
        backup = backup.id,
        shards = n,
        reading = sources.len(),
        "restoring the shard from a backup"
    );
    let mut total = 0;
    for m in sources {
        total += load(service, cfg, &bucket, m).await?;
    }
    tracing::info!(
        backup = backup.id,
        points = total,
        "shard restored from the backup"
    );
    Ok(backup.id)
}

/// Downloads one archive and writes its points of this shard; returns how many.
async fn load(
    service: &CollectionService,
    cfg: &BackupConfig,
    bucket: &Bucket,
    m: &Manifest,
) -> ServiceResult<usize> {
    let scratch = service
        .registry()
        .data_dir()
        .join("snapshots")
        .join(format!(".restore-{}", uuid::Uuid::new_v4()));
    let archive = scratch.with_extension("snapshot");
    let result = async {
        bucket.download(m, &archive).await?;
        let (a, d) = (archive.clone(), scratch.clone());
        let source = crate::service::blocking(move || {
            crate::store::unpack_archive(&a, &d)?;
            PointsCollection::open(&d, "restore").map(Arc::new)
        })
        .await?;
        copy_points(service, cfg, source).await
    }
    .await;
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn copy_points(
    service: &CollectionService,
    cfg: &BackupConfig,
    source: Arc<PointsCollection>,
) -> ServiceResult<usize> {
    let local = service.local();
    let mut offset = None;
    let mut written = 0;
    loop {
        let src = source.clone();
        let (page, next) = crate::service::blocking(move || {
            src.scroll(None, BATCH, offset, true, &VectorSelection::All)
        })
        .await?;
        let mine: Vec<NamedPoint> = page
            .into_iter()
            .filter(|p| shard_of(&p.id, cfg.shards) == cfg.shard)
            .map(named)
            .collect();
        if !mine.is_empty() {
            written += mine.len();
            local.write(&cfg.collection, Write::Upsert(mine)).await?;
        }
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(written),
        }
    }
}

fn named(p: PointOut) -> NamedPoint {
    NamedPoint {
        id: p.id,
        vectors: match p.vector {
            Some(VectorOut::Single(v)) => BTreeMap::from([(DEFAULT_VECTOR.to_owned(), v)]),
            Some(VectorOut::Named(m)) => m,
            None => BTreeMap::new(),
        },
        payload: p.payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::bucket::S3Config;

    fn found(id: &str, shards: &[u32], of: u32) -> Found {
        Found {
            id: id.into(),
            manifests: shards
                .iter()
                .map(|&i| {
                    (
                        i,
                        Manifest {
                            id: id.into(),
                            namespace: "ml".into(),
                            collection: "docs".into(),
                            shard: i,
                            shards: of,
                            points: 0,
                            bytes: 0,
                            sha256: String::new(),
                            dimension: 4,
                            distance: "Cosine".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_newest_complete_backup_is_chosen_unless_one_is_named() {
        let rc = |backup: Option<&str>| RestoreConfig {
            s3: S3Config::default(),
            namespace: "ml".into(),
            collection: "docs".into(),
            backup: backup.map(str::to_owned),
        };
        let list = || {
            vec![
                found("20261204T070000Z", &[0], 2),
                found("20261204T060000Z", &[0, 1], 2),
                found("20261204T050000Z", &[0, 1], 2),
            ]
        };
        assert_eq!(choose(list(), &rc(None)).unwrap().id, "20261204T060000Z");
        assert_eq!(
            choose(list(), &rc(Some("20261204T050000Z"))).unwrap().id,
            "20261204T050000Z"
        );
        let e = choose(list(), &rc(Some("20261204T070000Z"))).unwrap_err();
        assert!(e.to_string().contains("incomplete"), "{e}");
        let e = choose(list(), &rc(Some("20261201T000000Z"))).unwrap_err();
        assert!(matches!(e, ServiceError::NotFound(_)), "{e}");
        let e = choose(vec![found("x", &[1], 2)], &rc(None)).unwrap_err();
        assert!(e.to_string().contains("no complete backup"), "{e}");
    }
}
