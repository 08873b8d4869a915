//! Reports a shard's Raft group into its VectorCollection's status (server-side apply
//! on the status subresource, field manager `vectorforge-shard-<i>`, so the operator's
//! fields and the other shards' stay theirs): the shard's leader pod writes
//! `status.shards[i]` {leader, members, points, lag, restoredFrom, restoreError,
//! lastBackup} and, for shard 0, the collection's total `status.points` and the complete
//! `status.backups`. Only the leader reports (a new leader takes the fields over under
//! the same manager), at most every few seconds and only on a change.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use crate::backup::BackupState;
use crate::replication::Replication;
use crate::service::CollectionService;

/// Where this pod's VectorCollection is.
#[derive(Clone, Debug)]
pub struct StatusTarget {
    pub namespace: String,
    /// The VectorCollection (= the collection's name).
    pub name: String,
    pub shard: u32,
    /// Pod names of this shard are `<prefix><ordinal>`.
    pub pod_prefix: String,
}

/// The `status` this shard's leader reports, from its group's metrics and what it
/// knows of backups.
pub fn shard_report(
    t: &StatusTarget,
    m: &vectorforge_raft::Metrics,
    shard_points: u64,
    total_points: Option<u64>,
    backups: &BackupState,
) -> Value {
    let pod = |id: u64| format!("{}{id}", t.pod_prefix);
    let lag = m.replication.values().map(|p| p.lag).max().unwrap_or(0);
    let mut status = json!({
        "shards": [{
            "index": t.shard,
            "leader": m.leader.map(pod),
            "members": m.voters.iter().map(|v| pod(*v)).collect::<Vec<_>>(),
            "points": shard_points,
            "lag": lag,
        }]
    });
    let shard = &mut status["shards"][0];
    for (key, value) in [
        ("restoredFrom", backups.restored_from()),
        ("restoreError", backups.restore_error()),
        ("lastBackup", backups.last_backup()),
    ] {
        if let Some(v) = value {
            shard[key] = v.into();
        }
    }
    if let Some(total) = total_points {
        status["points"] = total.into();
    }
    if t.shard == 0
        && let Some(complete) = backups.complete_backups()
    {
        status["backups"] = complete
            .iter()
            .map(|b| json!({"id": b.id, "shards": b.shards, "points": b.points, "bytes": b.bytes}))
            .collect();
    }
    json!({
        "apiVersion": "modelhub.io/v1alpha1",
        "kind": "VectorCollection",
        "metadata": {"name": t.name},
        "status": status,
    })
}

/// The VectorCollections of `namespace`, without the operator's types.
fn collections(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("modelhub.io", "v1alpha1", "VectorCollection");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "vectorcollections");
    Api::namespaced_with(client, namespace, &ar)
}

/// The backup id the status says shard `shard` finished restoring.
fn restored_in(obj: &Value, shard: u32) -> Option<&str> {
    obj["status"]["shards"]
        .as_array()?
        .iter()
        .find(|s| s["index"].as_u64() == Some(u64::from(shard)))?["restoredFrom"]
        .as_str()
}

/// Follows the VectorCollection's `spec.replicas` (the size of every shard's group)
/// and whether the shard's restore is recorded as done: a watch on the one object,
/// re-listed after errors, for the life of the process.
pub async fn follow_spec(
    client: kube::Client,
    t: StatusTarget,
    repl: Arc<Replication>,
    backups: Arc<BackupState>,
) {
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    let api = collections(client, &t.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", t.name));
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(Event::Apply(o) | Event::InitApply(o)) => {
                if let Some(n) = o.data["spec"]["replicas"].as_u64() {
                    repl.follow_replicas(u32::try_from(n).unwrap_or(u32::MAX));
                }
                if let Some(id) = restored_in(&o.data, t.shard) {
                    backups.confirm_restored(id);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the VectorCollection"),
        }
    }
}

/// Runs for the life of the process.
pub async fn report(
    client: kube::Client,
    t: StatusTarget,
    service: CollectionService,
    repl: Arc<Replication>,
    backups: Arc<BackupState>,
) {
    let api = collections(client, &t.namespace);
    let params = PatchParams::apply(&format!("vectorforge-shard-{}", t.shard)).force();
    let mut last: Option<Value> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if !repl.is_leader() {
            last = None;
            continue;
        }
        let local = service.local();
        let Ok(shard_points) = local.count(&t.name, None).await else {
            continue;
        };
        let total = if t.shard == 0 {
            service.count(&t.name, None).await.ok()
        } else {
            None
        };
        let body = shard_report(
            &t,
            &repl.metrics(),
            shard_points as u64,
            total.map(|n| n as u64),
            &backups,
        );
        if last.as_ref() == Some(&body) {
            continue;
        }
        match api
            .patch_status(&t.name, &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => last = Some(body),
            Err(e) => tracing::warn!(error = %e, "reporting the shard's status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn a_report_names_pods_and_keeps_other_shards_out() {
        let t = StatusTarget {
            namespace: "ml".into(),
            name: "docs".into(),
            shard: 1,
            pod_prefix: "docs-shard-1-".into(),
        };
        let m = vectorforge_raft::Metrics {
            id: 2,
            role: vectorforge_raft::Role::Leader,
            term: 4,
            leader: Some(2),
            voters: BTreeSet::from([0, 1, 2]),
            learners: BTreeSet::new(),
            last_log_index: Some(10),
            last_applied: Some(10),
            snapshot_index: None,
            purged_index: None,
            replication: BTreeMap::from([
                (
                    0,
                    vectorforge_raft::Progress {
                        matched: Some(10),
                        lag: 0,
                    },
                ),
                (
                    1,
                    vectorforge_raft::Progress {
                        matched: Some(7),
                        lag: 3,
                    },
                ),
            ]),
        };
        let none = BackupState::new(false);
        let r = shard_report(&t, &m, 99, None, &none);
        assert_eq!(r["status"]["shards"][0]["index"], 1);
        assert_eq!(r["status"]["shards"][0]["leader"], "docs-shard-1-2");
        assert_eq!(
            r["status"]["shards"][0]["members"],
            json!(["docs-shard-1-0", "docs-shard-1-1", "docs-shard-1-2"])
        );
        assert_eq!(r["status"]["shards"][0]["lag"], 3);
        assert!(
            r["status"].get("points").is_none(),
            "only shard 0 reports the total"
        );
        assert_eq!(
            shard_report(&t, &m, 99, Some(500), &none)["status"]["points"],
            500
        );
        assert!(r["status"]["shards"][0].get("restoredFrom").is_none());
        let restoring = BackupState::new(true);
        restoring.confirm_restored("20261204T060000Z");
        let r = shard_report(&t, &m, 99, None, &restoring);
        assert_eq!(r["status"]["shards"][0]["restoredFrom"], "20261204T060000Z");
        assert_eq!(
            restored_in(&r, 1),
            Some("20261204T060000Z"),
            "the watch reads back what the report writes"
        );
        assert_eq!(restored_in(&r, 0), None);
    }
}
