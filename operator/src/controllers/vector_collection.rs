//! Reconciles a `VectorCollection` into its shard StatefulSets, Services, budgets and
//! RBAC, and derives its status from the StatefulSets' real status.

use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Observed};
use super::owned::{apply, prune};
use super::{Context, Error, instrumented, names, patch_status, publish_transitions};
use crate::api::{ShardStatus, VectorCollection, VectorCollectionStatus, condition_type};
use crate::builders::common::{selector_labels, selector_string};
use crate::builders::vector_collection::{self as build, HTTP_PORT, WORKLOAD};

/// Reconcile entry point handed to the kube-runtime `Controller`.
pub async fn reconcile(vc: Arc<VectorCollection>, ctx: Arc<Context>) -> Result<Action, Error> {
    instrumented(vc.clone(), ctx.clone(), reconcile_inner(vc, ctx)).await
}

async fn reconcile_inner(vc: Arc<VectorCollection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = vc.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let uid = vc.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let name = vc.name_any();
    let client = &ctx.client;
    if let Some(problem) = invalid_spec(&vc) {
        // Nothing is applied: the pods keep the last good spec, and none crash-loops on
        // a flag it cannot parse.
        ctx.publish(
            vc.as_ref(),
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            problem.clone(),
        )
        .await;
        let previous = vc.status.clone().unwrap_or_default();
        let status = refused_status(&vc, problem, Timestamp::now());
        if status != operator_owned(previous) {
            patch_status(client, vc.as_ref(), &status).await?;
        }
        return Ok(Action::await_change());
    }
    let children = build::build(&vc, &ctx.images);

    // Every child goes out at once (children unchanged since the last apply cost no
    // write). Pods of a StatefulSet created in the same instant as their ServiceAccount
    // may be refused once by admission; the StatefulSet controller retries them.
    let c = ctx.as_ref();
    let services = children
        .shard_services
        .iter()
        .chain([&children.client_service]);
    let (_, _, statefulsets, _, _) = tokio::try_join!(
        apply(c, &children.service_account),
        // A RoleBinding is refused while its Role does not exist yet.
        async {
            apply(c, &children.role).await?;
            apply(c, &children.role_binding).await
        },
        try_join_all(children.statefulsets.iter().map(|s| apply(c, s))),
        try_join_all(services.map(|s| apply(c, s))),
        try_join_all(children.pdbs.iter().map(|p| apply(c, p))),
    )?;

    // Children no longer desired: shards beyond spec.shards, budgets of a group shrunk
    // to one replica.
    let mut keep_services = names(&children.shard_services);
    keep_services.insert(name.clone());
    let (keep_sts, keep_pdbs) = (names(&children.statefulsets), names(&children.pdbs));
    let (pruned_sts, _, _) = tokio::try_join!(
        prune::<StatefulSet>(c, &ns, &uid, &keep_sts),
        prune::<Service>(c, &ns, &uid, &keep_services),
        prune::<PodDisruptionBudget>(c, &ns, &uid, &keep_pdbs),
    )?;
    if !pruned_sts.is_empty() {
        ctx.publish(
            vc.as_ref(),
            EventType::Normal,
            "ShardsRemoved",
            "Scale",
            format!("deleted shard StatefulSets {}", pruned_sts.join(", ")),
        )
        .await;
    }

    let previous = vc.status.clone().unwrap_or_default();
    let status = compute_status(&vc, &statefulsets, Timestamp::now());
    publish_transitions(&ctx, vc.as_ref(), &previous.conditions, &status.conditions).await;
    if status != operator_owned(previous) {
        patch_status(client, vc.as_ref(), &status).await?;
    }

    // Watches on the StatefulSets trigger reconciles as pods come and go; the periodic
    // requeue is a safety net.
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The part of a status the operator writes: without the fields the collection's own
/// pods report (`points`, `backups`, each shard's `leader`, `members`, `points`, `lag`,
/// `restoredFrom`, `restoreError`, `lastBackup`), which a forced server-side apply of
/// the whole status would otherwise take over from them. `shards` is a list keyed by
/// `index`, so the operator and the pods each own their fields of one entry.
pub fn operator_owned(mut status: VectorCollectionStatus) -> VectorCollectionStatus {
    status.points = None;
    status.backups.clear();
    for shard in &mut status.shards {
        shard.leader = None;
        shard.members.clear();
        shard.points = None;
        shard.lag = None;
        shard.restored_from = None;
        shard.restore_error = None;
        shard.last_backup = None;
    }
    status
}

/// What the API server's rules cannot check and the pods would fail on: a cron
/// schedule that has five fields but does not parse (minute 99, 30 February).
pub fn invalid_spec(vc: &VectorCollection) -> Option<String> {
    let schedule = vc.spec.durability.snapshots.schedule.as_deref()?;
    modelhub_contract::schedule::Schedule::parse(schedule)
        .err()
        .map(|e| format!("durability.snapshots.{e}; the collection keeps its last accepted spec"))
}

/// The operator's status of a spec it refuses: the previous one with Ready false.
pub fn refused_status(
    vc: &VectorCollection,
    problem: String,
    now: Timestamp,
) -> VectorCollectionStatus {
    let previous = operator_owned(vc.status.clone().unwrap_or_default());
    VectorCollectionStatus {
        observed_generation: vc.meta().generation,
        conditions: conditions::merge(
            &previous.conditions,
            vec![Observed::new(
                condition_type::READY,
                false,
                "InvalidSpec",
                problem,
            )],
            vc.meta().generation,
            now,
        ),
        ..previous
    }
}

/// Status of `vc` given its shard StatefulSets as stored in the API: the fields the
/// operator owns (see [`operator_owned`]).
pub fn compute_status(
    vc: &VectorCollection,
    statefulsets: &[StatefulSet],
    now: Timestamp,
) -> VectorCollectionStatus {
    let previous = vc.status.clone().unwrap_or_default();
    let desired = vc.spec.replicas;
    let quorum = desired / 2 + 1;
    let shards: Vec<ShardStatus> = statefulsets
        .iter()
        .enumerate()
        .map(|(i, sts)| {
            let st = sts.status.clone().unwrap_or_default();
            ShardStatus {
                index: i as i32,
                replicas: st.replicas,
                ready_replicas: st.ready_replicas.unwrap_or(0),
                ..ShardStatus::default()
            }
        })
        .collect();
    let ready_shards = shards
        .iter()
        .filter(|s| s.ready_replicas >= desired)
        .count() as i32;
    let all_ready = ready_shards == vc.spec.shards;
    let rolling = statefulsets.iter().any(|s| !rolled_out(s, desired));
    let below_quorum: Vec<String> = shards
        .iter()
        .filter(|s| s.ready_replicas < quorum)
        .map(|s| s.index.to_string())
        .collect();
    let was_ready = conditions::is_true(&previous.conditions, condition_type::READY)
        || conditions::is_true(&previous.conditions, condition_type::DEGRADED);

    let ready = if all_ready {
        Observed::new(
            condition_type::READY,
            true,
            "AllShardsReady",
            format!("{ready_shards}/{} shards ready", vc.spec.shards),
        )
    } else {
        Observed::new(
            condition_type::READY,
            false,
            "ShardsNotReady",
            format!("{ready_shards}/{} shards ready", vc.spec.shards),
        )
    };
    // Shards still loading the backup of `restoreFrom` (their leaders report when done).
    let restoring: Vec<String> = match &vc.spec.restore_from {
        Some(_) => (0..vc.spec.shards)
            .filter(|i| {
                !previous
                    .shards
                    .iter()
                    .any(|s| s.index == *i && s.restored_from.is_some())
            })
            .map(|i| i.to_string())
            .collect(),
        None => Vec::new(),
    };
    let restore_errors: Vec<String> = previous
        .shards
        .iter()
        .filter(|s| s.restored_from.is_none())
        .filter_map(|s| Some(format!("shard {}: {}", s.index, s.restore_error.as_ref()?)))
        .collect();
    let progressing = if !all_ready && !restoring.is_empty() {
        let mut message = format!(
            "shards loading the backup of {}: {}",
            vc.spec
                .restore_from
                .as_ref()
                .map(|r| r.collection.as_str())
                .unwrap_or_default(),
            restoring.join(", ")
        );
        if !restore_errors.is_empty() {
            message.push_str(&format!(" (retrying: {})", restore_errors.join("; ")));
        }
        Observed::new(condition_type::PROGRESSING, true, "Restoring", message)
    } else if rolling {
        Observed::new(
            condition_type::PROGRESSING,
            true,
            "RollingOut",
            "shard StatefulSets are being updated",
        )
    } else if !all_ready {
        Observed::new(
            condition_type::PROGRESSING,
            true,
            "WaitingForPods",
            "waiting for shard pods to become ready",
        )
    } else {
        Observed::new(
            condition_type::PROGRESSING,
            false,
            "Settled",
            "all shards run the current spec",
        )
    };
    let degraded = if was_ready && !below_quorum.is_empty() {
        Observed::new(
            condition_type::DEGRADED,
            true,
            "QuorumLost",
            format!("shards without a Raft quorum: {}", below_quorum.join(", ")),
        )
    } else if was_ready && !all_ready && !rolling {
        Observed::new(
            condition_type::DEGRADED,
            true,
            "ReplicasUnavailable",
            "some shard replicas are not ready",
        )
    } else {
        Observed::new(condition_type::DEGRADED, false, "AsExpected", "")
    };

    VectorCollectionStatus {
        observed_generation: vc.meta().generation,
        conditions: conditions::merge(
            &previous.conditions,
            vec![ready, progressing, degraded],
            vc.meta().generation,
            now,
        ),
        replicas: shards.iter().map(|s| s.replicas).min().unwrap_or(0),
        selector: Some(selector_string(&selector_labels(WORKLOAD, &vc.name_any()))),
        ready_shards,
        shards,
        points: None,
        backups: Vec::new(),
        endpoint: vc
            .namespace()
            .map(|ns| format!("http://{}.{ns}.svc:{HTTP_PORT}", vc.name_any())),
    }
}

/// Whether a StatefulSet runs its current spec with the desired number of pods.
pub fn rolled_out(sts: &StatefulSet, desired: i32) -> bool {
    let Some(st) = &sts.status else { return false };
    let generation_seen =
        st.observed_generation.unwrap_or(0) >= sts.metadata.generation.unwrap_or(0);
    let revision_done = match (&st.current_revision, &st.update_revision) {
        (Some(current), Some(update)) => current == update,
        _ => true,
    };
    generation_seen
        && revision_done
        && st.replicas == desired
        && st.updated_replicas.unwrap_or(0) >= desired
}

#[cfg(test)]
#[path = "vector_collection_tests.rs"]
mod tests;
